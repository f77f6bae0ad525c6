//! The plugin host's error type: every message names the plugin (or folder), what was being done
//! and, for a broken limit, the limit and how to change it.

use std::path::PathBuf;

/// Why a plugin could not be loaded or a call into one failed.
///
/// Load-time errors (`Manifest`, `WitVersion`, `Component`, roles, grants) mean the plugin
/// folder or the configuration must be fixed. Call-time errors (`OutOfFuel`, `MemoryLimit`,
/// `StackOverflow`, `Trap`, `OutputTooLarge`, `Instance`, `Discarded`) mean that one call failed:
/// the instance is thrown away, the story fails, and the run goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin directory (`--plugins DIR`) cannot be read.
    #[error("plugin directory {}: {reason}", dir.display())]
    Directory {
        /// The folder.
        dir: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A plugin folder's `plugin.toml` is missing, unreadable, has unknown fields or
    /// inconsistent values.
    #[error("plugin folder {}: {problem}", dir.display())]
    Manifest {
        /// The folder.
        dir: PathBuf,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// The component was built for a `bmad:policy` version this host does not support.
    #[error(
        "plugin `{plugin}` ({}): {what} bmad:policy@{found}, but this host supports {supported}; rebuild the plugin against wit/policy.wit of this host",
        dir.display()
    )]
    WitVersion {
        /// The plugin.
        plugin: String,
        /// The folder.
        dir: PathBuf,
        /// Which part declares the version (the manifest or the component).
        what: &'static str,
        /// The version it was built for.
        found: String,
        /// The versions this host supports (`bmad:policy@0.1.0, bmad:policy@0.2.0`).
        supported: String,
    },

    /// The `.wasm` file cannot be read, compiled or linked.
    #[error("plugin `{plugin}`: cannot load component {}: {reason}", path.display())]
    Component {
        /// The plugin.
        plugin: String,
        /// The component file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// Two folders declare the same plugin name.
    #[error("two plugins are named `{name}`: {} and {}; names must be unique", first.display(), second.display())]
    DuplicateName {
        /// The name.
        name: String,
        /// The first folder with it.
        first: PathBuf,
        /// The second folder with it.
        second: PathBuf,
    },

    /// A role has no plugin, or its plugin does not exist or plays another role.
    #[error("role `{role}`: {problem}")]
    Role {
        /// The role.
        role: String,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// An operator grant (`[plugins.NAME] grant_read`) is not a valid relative glob.
    #[error("bmad-host.toml [plugins.{plugin}] grant_read: {problem}")]
    Grant {
        /// The plugin.
        plugin: String,
        /// What is wrong and how to fix it.
        problem: String,
    },

    /// `plugins export` cannot write a plugin folder, or will not overwrite one.
    #[error("plugins export: {what} {}", path.display())]
    Export {
        /// The file or folder that could not be written.
        path: PathBuf,
        /// What went wrong, worded for the message.
        what: &'static str,
        /// The I/O error behind it.
        #[source]
        source: std::io::Error,
    },

    /// The wasmtime engine could not be created.
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(
        /// What wasmtime said.
        String,
    ),

    /// A new instance could not be created (instantiation trapped, or the instance pool is full).
    #[error("plugin `{plugin}`: cannot create an instance for `{call}`: {reason}")]
    Instance {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// The call used up its fuel (an endless or very long loop).
    #[error(
        "plugin `{plugin}` ran out of fuel in `{call}` (limit: {limit} units): it loops or does too much work; lower the work or set [limits] fuel in its plugin.toml (at most the host's {host_limit})"
    )]
    OutOfFuel {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// The limit that applied.
        limit: u64,
        /// The host's ceiling, which a manifest may only lower.
        host_limit: u64,
    },

    /// The instance tried to grow its memory past its cap.
    #[error(
        "plugin `{plugin}` exceeded its memory limit in `{call}` (limit: {limit_mb} MiB, it asked for {wanted_mb} MiB); fix the plugin or set [limits] memory_mb in its plugin.toml (at most the host's {host_limit_mb})"
    )]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// The memory limit, in MiB.
        limit_mb: u64,
        /// The memory it asked for, in MiB.
        wanted_mb: u64,
        /// The host's ceiling, in MiB.
        host_limit_mb: u64,
    },

    /// The call overflowed the wasm stack (runaway recursion).
    #[error(
        "plugin `{plugin}` overflowed its stack in `{call}` (limit: {limit_kib} KiB of wasm stack): runaway recursion"
    )]
    StackOverflow {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// The wasm stack limit, in KiB.
        limit_kib: usize,
    },

    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access, `exit`, a forbidden
    /// import, an attempt to block).
    #[error("plugin `{plugin}` trapped in `{call}`: {message}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// The trap, with the guest's panic message or stderr when there is one.
        message: String,
    },

    /// The call returned more text than the output cap allows.
    #[error(
        "plugin `{plugin}` returned too much from `{call}`: {size} bytes, limit {limit} bytes (set [limits] max_output_kb in its plugin.toml, at most the host's {host_limit_kib})"
    )]
    OutputTooLarge {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// What it returned, in bytes.
        size: u64,
        /// The limit that applied.
        limit: u64,
        /// The host's ceiling, in KiB.
        host_limit_kib: u64,
    },

    /// A call on an instance that already failed: it was discarded; start a new step.
    #[error(
        "plugin `{plugin}`: `{call}` refused: this instance was discarded after an earlier failure ({earlier}); start a new step"
    )]
    Discarded {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// The failure that discarded it.
        earlier: String,
    },

    /// A call returned, but its answer breaks the world's contract (a scheduler naming a story
    /// that is not a candidate, twice, or more than the free slots).
    #[error("plugin `{plugin}`: `{call}` returned an answer the host cannot use: {problem}")]
    BadAnswer {
        /// The plugin.
        plugin: String,
        /// The export that was called.
        call: &'static str,
        /// What is wrong with the answer.
        problem: String,
    },
}

impl PluginError {
    /// The plugin the error is about, when there is one.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            PluginError::WitVersion { plugin, .. }
            | PluginError::Component { plugin, .. }
            | PluginError::Grant { plugin, .. }
            | PluginError::Instance { plugin, .. }
            | PluginError::OutOfFuel { plugin, .. }
            | PluginError::MemoryLimit { plugin, .. }
            | PluginError::StackOverflow { plugin, .. }
            | PluginError::Trap { plugin, .. }
            | PluginError::OutputTooLarge { plugin, .. }
            | PluginError::Discarded { plugin, .. }
            | PluginError::BadAnswer { plugin, .. } => Some(plugin),
            PluginError::DuplicateName { name, .. } => Some(name),
            PluginError::Directory { .. }
            | PluginError::Export { .. }
            | PluginError::Manifest { .. }
            | PluginError::Role { .. }
            | PluginError::Engine(_) => None,
        }
    }

    /// True for an error of one call (the plugin loaded; this call failed and its instance was
    /// discarded), false for a load or configuration error.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            PluginError::Instance { .. }
                | PluginError::OutOfFuel { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::StackOverflow { .. }
                | PluginError::Trap { .. }
                | PluginError::OutputTooLarge { .. }
                | PluginError::Discarded { .. }
                | PluginError::BadAnswer { .. }
        )
    }
}
