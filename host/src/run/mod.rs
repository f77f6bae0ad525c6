//! The run loop: ties project, plugins, workflow, supervisor and journal together.
//!
//! For each selected story, in numeric order: read the story file, have the status plugin parse
//! it, ask the [`workflow`](crate::workflow) which role runs next, open a fresh policy instance
//! for that role and carry out its decisions (agent call, gates, state write) until it
//! completes, sends the story back, fails or escalates. Every step is journaled before and after
//! it runs, so a crash resumes where it stopped. The host owns all time, processes and
//! cancellation: Ctrl-C once tears the current call down cleanly and exits 130, twice kills
//! at once.
//!
//! The rooms: `entry` (the command: setup, the run in the journal, the stories in order),
//! `driver` (the state a story is driven with, and a role step's context),
//! `story` (the per-story driver and a role's step of decisions), `agent` (the agent step),
//! `steps` (state writes and gates), `journaled` (keying and journaling every step from its
//! context), `ends` (stopping on an end that cannot be proven, and checking it again at the
//! next start), `observe` (reading and judging a story's status, shared with `status` and
//! `--dry-run`), `limit` (when a usage limit resets), `reset` (waiting it out), `caps` (the spend caps), `summary` (totals, exit code, the table),
//! `ledger` (v6 sprint-status: reconciliation, epic closeout, the retrospective),
//! `lanes` (a parallel run, `--jobs N`: a worktree and a driver per story, one integration
//! lane) and `admit` (which waiting story may start: the scheduler).

pub(crate) mod admit;
mod agent;
mod build;
mod caps;
mod driver;
mod ends;
mod entry;
mod grant;
mod halt;
mod journaled;
mod landing;
pub(crate) mod lanes;
mod ledger;
mod limit;
mod observe;
mod reset;
mod steps;
mod story;
mod summary;

pub use build::flow_of;
pub use entry::run;
#[cfg(feature = "restate")]
pub(crate) use entry::{Hosted, run_with};
pub use observe::{StatusProblem, observed};
