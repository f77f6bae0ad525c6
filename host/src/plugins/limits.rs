//! The limits every plugin call runs under: the host's ceilings, and a plugin's own (tighter)
//! limits from its manifest.

use serde::Serialize;

/// Per-call limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Fuel for one call (about one unit per wasm instruction), refilled before every call.
    pub fuel: u64,
    /// Cap on an instance's linear memory, in bytes. Growing past it traps.
    pub memory_bytes: u64,
    /// Cap on what one call may return: the bytes of every string plus
    /// [`OUTPUT_ITEM_OVERHEAD`] per list item or string.
    pub max_output_bytes: u64,
}

impl Limits {
    /// The host's limits: the defaults, and the ceiling a manifest may only lower.
    ///
    /// 100 M fuel is roughly a tenth of a second of busy wasm: a status parse of a large story
    /// uses well under 1% of it. 64 MiB of memory is more than a policy needs and less than a
    /// 100 MB string. 1 MiB of output is ample for a prompt or a list of findings.
    pub const HOST: Limits = Limits {
        fuel: 100_000_000,
        memory_bytes: 64 << 20,
        max_output_bytes: 1 << 20,
    };

    /// The memory cap in MiB (rounded down).
    pub fn memory_mb(&self) -> u64 {
        self.memory_bytes >> 20
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::HOST
    }
}

/// Maximum wasm stack for any call, in bytes (an engine-wide setting). Deeper recursion traps.
pub const MAX_WASM_STACK: usize = 512 << 10;

/// Bytes counted for each returned list item or string on top of its text, so that a million
/// empty strings count as output too.
pub const OUTPUT_ITEM_OVERHEAD: u64 = 16;

/// Longest `log` message kept; the rest is cut (on a character boundary) and marked.
pub const LOG_MAX_MESSAGE_BYTES: usize = 4 << 10;

/// Most `log` calls one plugin call may make; further messages are dropped (one warning says so).
pub const LOG_MAX_PER_CALL: u32 = 256;

/// Largest file `read-file` returns.
pub const READ_MAX_FILE_BYTES: u64 = 4 << 20;

/// Most `read-file` calls one plugin call may make; further calls get an error.
pub const READ_MAX_PER_CALL: u32 = 64;

/// Fuel a guest pays for each call to a host import (`log`, `read-file`), on top of
/// [`HOST_BYTES_PER_FUEL`]: host work on a guest's behalf is metered like its own.
pub const HOST_CALL_FUEL: u64 = 10_000;

/// Bytes handed between guest and host by an import per unit of fuel charged.
pub const HOST_BYTES_PER_FUEL: usize = 4;

/// Bytes of a guest's stderr kept to explain a trap (a panic message); stdout is discarded.
pub const STDERR_KEEP_BYTES: usize = 2 << 10;
