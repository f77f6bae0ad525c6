//! Stories as Restate workflows (feature `restate`): the worker that serves them and the client
//! side of `run --engine restate`.
//!
//! A story's workflow (`StoryWorkflow`, keyed `<project>.<story>.<run>`) runs the same run loop
//! as a local run, for that one story, on the worker's own thread, with its steps journaled by
//! Restate ([`steps`]): each agent call, gate run, status write and policy decision is one entry
//! of the workflow's journal, so a worker that takes a story over replays what is journaled and
//! runs only what is not. Every call runs under a keeper ([`crate::process::keeper`]): a killed
//! worker's agent dies with it. A worker drives up to `--jobs` stories at once, each in a
//! worktree of its clone ([`tree`]).

mod balance;
mod client;
mod events;
mod inspect;
mod lane;
mod lease;
mod pause;
mod steps;
mod tree;
// The workflow macro writes a public client whose methods carry no docs.
#[allow(
    missing_docs,
    reason = "the restate macro's generated client has no docs"
)]
mod workflow;

use std::net::SocketAddr;
use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

pub use balance::balance;
pub use client::run;
pub use inspect::{log, status};

use super::{EngineError, WorkerSpec};
use crate::context::Context;

/// The path at which the Restate server invokes a story's workflow (its `run`).
const STORY_INVOCATION: &str = "/invoke/StoryWorkflow/run";

/// The header of a worker's every answer that says how many stories it drives at once (its
/// `--jobs`), for `bmad-host balance`.
const SLOTS_HEADER: &str = "bmad-host-slots";

/// What a story's workflow is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoryInput {
    /// The story id (`1.2`).
    pub story: String,
    /// The project's key: its integration lane's.
    #[serde(default)]
    pub project: String,
}

/// What a story's workflow returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoryOutput {
    /// The story id.
    pub story: String,
    /// The exit code a local run of the story alone would have ([`crate::exit`]).
    pub exit_code: u8,
    /// The error that stopped it, if one did.
    pub error: Option<String>,
    /// Its NDJSON events, in order.
    pub events: Vec<serde_json::Value>,
    /// Where it landed on the shared branch (workers with a shared remote, a story done).
    #[serde(default)]
    pub landed: Option<lane::Landed>,
}

impl WorkerSpec {
    fn context(&self) -> Result<Context, crate::error::Error> {
        let mut context = Context::resolve(self.options.clone(), &self.overrides)?;
        context.config.require_trust()?;
        // A call must be gone before another worker may start it again.
        context.config.claude.keeper.value = true;
        // A usage limit pauses the worker and sends the story elsewhere ([`pause`]), instead of
        // holding it here until the reset.
        context.config.claude.wait_on_limit.value = false;
        Ok(context)
    }
}

/// `bmad-host worker --engine restate --listen ADDR`: serves the story workflow until killed.
pub fn worker(spec: WorkerSpec, listen: SocketAddr) -> Result<u8, crate::error::Error> {
    // A configuration or project that cannot run fails now, not at the first story.
    let context = spec.context()?;
    let timeout = context.config.claude.timeout.value;
    let gates: Vec<crate::config::GateConfig> = context.config.active_gates().cloned().collect();
    let jobs = context.config.workflow.jobs.value.max(1);
    runtime()?.block_on(async move {
        // Each step's files are a commit of the project's work tree (see `steps`).
        let checkout = std::sync::Arc::new(tree::Checkout::open(spec.root.clone()).await?);
        let slots = if checkout.shared() || jobs == 1 {
            jobs
        } else {
            tracing::warn!(
                jobs,
                "this clone has no `origin`, so its stories are driven in its one work tree: one at a time"
            );
            1
        };
        let listener = bind(listen).await?;
        // Restate gives up on an invocation that shows no progress for `inactivity_timeout` +
        // `abort_timeout` and retries it: longer than the longest agent call (its timeout and
        // the teardown graces), so that a long call is never abandoned and run again.
        let options = ServiceOptions::new()
            .inactivity_timeout(timeout + Duration::from_secs(5 * 60))
            .abort_timeout(Duration::from_secs(10 * 60));
        // Landing runs the gates: as long as the longest of them.
        let longest_gate = gates.iter().map(|g| g.timeout).max().unwrap_or_default();
        let lane_options = ServiceOptions::new()
            .inactivity_timeout(longest_gate + Duration::from_secs(5 * 60))
            .abort_timeout(Duration::from_secs(10 * 60));
        let holder = format!("{}:{listen}:{}", hostname(), std::process::id());
        let leases = lease::Leases {
            ingress: spec.ingress.clone(),
            holder,
            ttl: spec.lease_ttl,
        };
        let pause = std::sync::Arc::new(pause::Pause::default());
        let workflow = workflow::StoryWorkflow::new(
            spec,
            std::sync::Arc::clone(&checkout),
            usize::try_from(slots).unwrap_or(1),
            leases,
            std::sync::Arc::clone(&pause),
        );
        let endpoint = Endpoint::builder()
            .bind(workflow.into_service_definition().options(options))
            .bind(lease::StoryLease)
            .bind(events::StoryEvents)
            .bind(
                lane::IntegrationLane { checkout, gates }
                .into_service_definition()
                .options(lane_options),
            )
            .build();
        eprintln!(
            "bmad-host worker: serving the story workflow on http://{listen}/ ({slots} {} at once; register it with the Restate server)",
            if slots == 1 { "story" } else { "stories" }
        );
        pause::serve(listener, endpoint, pause, slots).await;
        Ok(crate::exit::OK)
    })
}

/// A listener on `addr`, or the error that names it.
async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, EngineError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| EngineError::Listen { addr, source })
}

/// The runtime of a long-running engine process (a worker, the balancer).
fn runtime() -> Result<tokio::runtime::Runtime, crate::error::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(crate::error::Error::Runtime)
}

/// This machine's name, for the lease's holder.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
