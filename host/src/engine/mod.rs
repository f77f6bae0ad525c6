//! Durable-execution engines beside the project's own journal: `bmad-host worker` and
//! `run --engine restate`, stories as Restate workflows (feature `restate`). A build without
//! the feature says how to get it.

#[cfg(feature = "restate")]
pub mod restate;

pub use crate::error::EngineError;
