//! Durable-execution engines beside the project's own journal: `bmad-host worker` and
//! `run --engine restate`, stories as Restate workflows (feature `restate`). A build without
//! the feature says how to get it.

#[cfg(feature = "restate")]
pub mod restate;
/// The same entry points in a build without the feature: each says how to get it.
#[cfg(not(feature = "restate"))]
#[path = "off.rs"]
pub mod restate;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::Overrides;
use crate::context::Options;
pub use crate::error::EngineError;

/// What `bmad-host worker` was given: how to resolve the project for each story (as `run`
/// would), where it is, and where the engine's ingress is.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The common flags (`--project`, `--plugins`, ...).
    pub options: Options,
    /// The setting flags.
    pub overrides: Overrides,
    /// The project's root (a git work tree).
    pub root: PathBuf,
    /// The Restate server's ingress, for the leases.
    pub ingress: String,
    /// How long a lease lasts without renewal.
    pub lease_ttl: Duration,
}
