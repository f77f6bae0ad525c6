//! Durable-execution engines beside the project's own journal: `bmad-host worker` and
//! `run --engine restate`, stories as Restate workflows (feature `restate`). A build without
//! the feature says how to get it.

#[cfg(feature = "restate")]
pub mod restate;

use std::net::SocketAddr;

/// What goes wrong between bmad-host and an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The binary was built without the engine.
    #[error(
        "this bmad-host was built without the `restate` feature: install one with it (`cargo install --path host --features restate`)"
    )]
    NotBuilt,
    /// `worker --engine local`.
    #[error(
        "a worker serves an engine's workflows: use `--engine restate` (a local run needs no worker)"
    )]
    LocalWorker,
    /// The worker's address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The engine refused a request or could not be reached.
    #[error("Restate at {url}: {detail}")]
    Ingress {
        /// The request's URL.
        url: String,
        /// What happened.
        detail: String,
    },
}
