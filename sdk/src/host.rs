//! What the host offers a plugin: a log and reading granted project files. Nothing else: no
//! clock, environment, network, process or filesystem of its own.
//!
//! Inside the sandbox (`wasm32`) these call the host's `bmad:policy/host` imports. On any other
//! target there is no host: [`log`] does nothing and [`read_file`] returns an error, so a policy's
//! decision logic runs unchanged in native unit tests.

pub use crate::bindings::host::Level;

/// Writes a line to the host's log, attributed to the plugin (a no-op outside `wasm32`).
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, message);
}

/// Reads a project file by its path relative to the project root. Only what the plugin's
/// `plugin.toml` requests (`[capabilities] read`) and the operator grants is readable; anything
/// else is an error string from the host. Outside `wasm32` it is always an error.
pub fn read_file(path: &str) -> Result<String, String> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::host::read_file(path);
    #[cfg(not(target_arch = "wasm32"))]
    Err(format!(
        "cannot read `{path}`: there is no bmad-host outside the WebAssembly sandbox"
    ))
}
