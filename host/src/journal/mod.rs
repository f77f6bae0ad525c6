//! The durable journal: one SQLite file per project (`.bmad-host/journal.sqlite`, WAL,
//! `synchronous=FULL`, a versioned schema) recording runs with their config and plugin
//! fingerprints, each story's progress, and every step of the run loop as an intent (committed
//! before the step starts) and a result (committed after). Every record is written when its call
//! returns, so a host killed at any point loses none; an agent call's intent is also fsynced
//! (the last commit before an agent starts), which makes everything written before it durable,
//! so that a gap between two agent calls waits for one journal fsync however many records it
//! writes (the others are relaxed commits; see [`Journal::finish_step`]). Replaying a story after a crash asks
//! [`Journal::begin_step`] for the same deterministic [`StepKey`] and learns whether that step is
//! done (reuse its result), was interrupted (redo it, flagged as a retry) or is new. The module
//! also owns the run lock (`.bmad-host/run.lock`, an OS `flock` the kernel releases when its holder
//! dies, however it dies) and the transcript paths (`.bmad-host/runs/<run-id>/`). A journal it
//! cannot read (not a database, damaged, another program's, a newer schema) is reported with what
//! to do and never written, moved or deleted.

mod bench;
mod display;
mod lock;
mod model;
mod paths;
mod payload;
mod schema;
mod steps;
mod store;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use bench::bench_step_cost;

/// The project's run lock (`.bmad-host/run.lock`) held without its journal: an engine's worker
/// holds its clone's for its life, so that no local run and no other worker uses the clone
/// meanwhile. Dropped, it is released.
#[derive(Debug)]
pub struct ProjectLock(#[allow(dead_code, reason = "held, never read")] lock::RunLock);

/// Takes `project_root`'s run lock without waiting ([`JournalError::Locked`] says who holds it).
pub fn lock_project(project_root: &std::path::Path) -> Result<ProjectLock, JournalError> {
    let dir = state_dir(project_root);
    std::fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
        action: "create",
        path: dir.clone(),
        source,
    })?;
    Ok(ProjectLock(lock::RunLock::acquire(&dir.join(LOCK_FILE))?))
}
pub use model::{
    PluginFingerprint, RunFingerprint, RunId, RunInfo, RunRecord, RunStatus, Sighting, StepId,
    StepKey, StepKind, StepRow, StepStart, StoryRecord, StoryResult, StorySummary, Usage,
};
pub use paths::{
    JOURNAL_FILE, LOCK_FILE, STATE_DIR, ignore_state_dir, journal_path, run_dir, state_dir,
    transcript_path,
};
pub use payload::{
    AfterStoryIntent, AfterStoryResult, AgentCallIntent, AgentCallResult, DecisionIntent,
    GatesIntent, GatesResult, LaneIntent, LaneResult, LaneWork, PolicyCall, SprintChange,
    SprintSyncIntent, SprintSyncResult, StatusWriteIntent, StatusWriteResult, StepIntent,
    SurvivorRecord, TeardownIntent, TeardownResult,
};
pub use schema::SCHEMA_VERSION;

/// Whether a `bmad-host run` holds the project's run lock now (so its run is live), read from
/// the kernel's table of locks without taking or touching the lock; `None` when that cannot be
/// told. For readers (`report`) that must tell a running run from one whose host died.
pub fn run_in_progress(project_root: &std::path::Path) -> Option<bool> {
    lock::held(&state_dir(project_root).join(LOCK_FILE))
}
pub use steps::StepStore;
pub use store::{Journal, JournalReader};

/// Everything that can go wrong in the journal. Each message names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A durable-execution engine's worker could not journal a step with the engine.
    #[error("the engine's journal could not keep step {step}: {detail}")]
    Engine {
        /// The step (its entry name).
        step: String,
        /// What went wrong.
        detail: String,
    },
    /// A file-system operation on the journal's directory or files failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done (`create`, `open`, `lock`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the run lock of this project.
    #[error(
        "another bmad-host run is in progress on this project ({}, lock file {}): wait for it to \
         finish or stop it, then run again",
        describe_holder(*pid),
        lock.display()
    )]
    Locked {
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid, as it wrote it (information only).
        pid: Option<u32>,
    },
    /// The journal file is not a readable bmad-host journal. It was not modified.
    #[error(
        "the journal {} cannot be used: {detail}. It was left untouched; move it aside (for \
         example `mv {0} {0}.bad`) to start a new journal",
        path.display()
    )]
    Corrupt {
        /// The journal file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The journal was written by a newer bmad-host. It was not modified.
    #[error(
        "the journal {} has schema version {found}, newer than this bmad-host understands \
         (version {supported}). It was left untouched; use a newer bmad-host, or move the file \
         aside to start a new journal",
        path.display()
    )]
    NewerSchema {
        /// The journal file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The version this host writes.
        supported: u32,
    },
    /// A read-only open found an older schema (a read-write open migrates it).
    #[error(
        "the journal {} has schema version {found}; this bmad-host reads version {supported}. \
         `bmad-host run` upgrades it",
        path.display()
    )]
    OlderSchema {
        /// The journal file.
        path: PathBuf,
        /// Its schema version.
        found: u32,
        /// The version this host reads.
        supported: u32,
    },
    /// SQLite reported an error.
    #[error("journal {}", path.display())]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// A value could not be encoded for, or decoded from, the journal.
    #[error("journal {}: bad {what}: {detail}", path.display())]
    Data {
        /// The journal file.
        path: PathBuf,
        /// Which value (`intent`, `result`, a time, ...).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// An entry the run reads (a story's workflow state, a step's intent or result, a
    /// sighting) cannot be decoded. The journal fails closed: the run stops before it writes
    /// anything, and the journal is left as it was.
    #[error(
        "the journal {} has an entry bmad-host cannot read: run {run}, story {story}, {step}: \
         {detail}. The journal was left untouched; run again with --fresh to start a new run \
         (the old one stays in the journal), or move the journal aside",
        path.display()
    )]
    Undecodable {
        /// The journal file.
        path: PathBuf,
        /// The run the entry belongs to.
        run: RunId,
        /// The story.
        story: String,
        /// Which entry: the step (`cycle 1 dev gates #2 result`) or `workflow state`.
        step: String,
        /// What is wrong with it.
        detail: String,
    },
    /// No run with this id in the journal.
    #[error("no run {0} in the journal")]
    UnknownRun(RunId),
    /// No step with this id in the journal.
    #[error("no step {0} in the journal")]
    UnknownStep(StepId),
    /// [`Journal::finish_step`] on a step that already has a result.
    #[error("step {0} already has a result")]
    StepAlreadyFinished(StepId),
    /// A string that is not a run id (`20261123T154700Z-1a2b`).
    #[error("{0:?} is not a run id (like 20261123T154700Z-1a2b)")]
    BadRunId(String),
}

fn describe_holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("held by pid {pid}"),
        None => "held by a process that has not written its pid yet".to_owned(),
    }
}
