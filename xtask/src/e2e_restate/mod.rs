//! `cargo xtask e2e-restate`: stories as Restate workflows on two workers. Needs npm (not part
//! of `cargo xtask test`; step 3 of `.ci/run`).
//!
//! It runs the engine's unit tests (built with the `restate` feature), installs the pinned
//! `@restatedev/restate-server` with npm into `target/e2e-restate/npm` (reused when present),
//! builds `bmad-host` with the feature (linted by clippy) and the fake Claude, then makes eight
//! checks, each with its own server, a bare git repository as the shared remote, two workers on
//! loopback each in a clone of its own, and `bmad-host balance` in front of them as the one
//! deployment the server knows (but in check 8); `bmad-host run --engine restate` (two jobs, but
//! in check 3) drives a BMAD epic from a third clone. Checks named on the command line (`run`,
//! `limit`, `cut`, `v6`, `conflict`, `gate`, `unresolved`, `jobs`) run alone.
//!
//! 1. A worker killed (8 stories). The Dev calls of 1.1 and 1.2 each wait on a FIFO the check
//!    holds open until both have opened theirs: both alive at once, each under its own worker
//!    (the balancer spread them), and the client prints their starts while they run. The Dev
//!    call of 1.4 is held on a FIFO, and once the client has printed its start, the worker
//!    running it is killed with SIGKILL. It asserts: exit 0 and every story done; the
//!    killed call made again (once) and no other agent call twice (the fake's calls are the
//!    journal's finished agent-call entries plus the killed one); the survivor waited for the
//!    dead worker's lease; never two copies of one story's call alive at once (the fake holds a
//!    lock per story and role for its whole life); each story's start and end printed once;
//!    every story landed exactly once on the shared branch, and is done there; `status` and
//!    `log --restate-admin` read the engine; nothing of the killed worker's call left (its
//!    keeper took the tree down at once); no process of the check left at the end, the
//!    server's included.
//! 2. A usage limit (4 stories). Worker-b's first Dev call hits its account's usage limit,
//!    resetting in 10 minutes. It asserts: exit 0 and every story done, long before the reset;
//!    worker-b made no call after the limited one and said it paused; the balancer skipped it;
//!    the limited call was redone on worker-a; every agent-call step made once but the limited
//!    one (twice); no overlap, nothing left.
//! 3. A worker cut off (1 story, the client for people). The ingress link of the worker running
//!    the Dev call is cut while the call runs. It asserts: the worker took its lease for lost
//!    and killed the call by itself; the other worker redid it, never beside the first copy;
//!    the local run's table printed; nothing left.
//! 4. BMAD v6 side by side (the v6 sample, 3 stories): every story done and landed, a
//!    sprint-status merged key by key, all three done in the shared branch's sprint-status.
//! 5. A conflict (2 stories whose Dev calls both create one file): the second's landing is
//!    refused (`integration_failed`, `back_to_dev`, naming the file) and it goes back to Dev in
//!    cycle 2, told the conflict; the worker running that Dev call is killed, the other one
//!    replays the first round, the refusal and the merge, and its Dev call resolves the
//!    conflict; both land (no other call made twice), exit 0.
//! 6. A gate on the merged result (2 stories, each adding a file of its own; the project's gate
//!    fails with both unless a fix is there): the second is refused naming the gate, back to
//!    Dev, whose call adds the fix; both land, exit 0.
//! 7. Conflict markers left (as 5, but Dev's second call leaves the conflict): the lane refuses
//!    the markers, the story escalates (exit 1), no marker lands.
//! 8. One worker, `--jobs 2`, registered alone: a stale worktree removed at its start, a second
//!    worker in its clone refused; 1.1's and 1.2's Dev calls alive at once under it, each in a
//!    worktree of its own; both land; the worktrees removed, its checkout as it was.
//!
//! `--bench` drives a 20-story epic once locally and once through one worker, and writes the
//! engine's cost per step and per story into BENCHMARKS.md.

mod bench;
mod cut;
mod harness;
mod killed;
mod landing;
mod limit;

use std::path::Path;

use anyhow::{Result, bail};

pub use bench::BENCH_MARKER;
use bench::bench;
use cut::cut_off_worker;
use harness::Setup;
use killed::killed_worker;
use landing::{NotLanded, not_landed, one_worker_two_stories, v6_side_by_side};
use limit::limited_worker;

/// `cargo xtask e2e-restate [--bench | CHECK...]`.
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    if args.iter().any(|a| a == "--bench") {
        return bench(root);
    }
    // Checks named on the command line (`run`, `limit`, ...): only those.
    let only: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let wanted = |name: &str| only.is_empty() || only.contains(&name);
    let setup = Setup::new(root, "run")?;
    if wanted("run") {
        killed_worker(root, &setup)?;
    }
    if wanted("limit") {
        limited_worker(&setup.sibling("limit")?)?;
    }
    if wanted("cut") {
        cut_off_worker(&setup.sibling("cut")?)?;
    }
    if wanted("v6") {
        v6_side_by_side(root, &setup.sibling("v6")?)?;
    }
    if wanted("conflict") {
        not_landed(&setup.sibling("conflict")?, NotLanded::Conflict)?;
    }
    if wanted("gate") {
        not_landed(&setup.sibling("gate")?, NotLanded::Gate)?;
    }
    if wanted("unresolved") {
        not_landed(&setup.sibling("unresolved")?, NotLanded::Unresolved)?;
    }
    if wanted("jobs") {
        one_worker_two_stories(&setup.sibling("jobs")?)?;
    }
    Ok(())
}

/// A check's findings: what failed, said at the end.
#[derive(Debug, Default)]
struct Checks(Vec<String>);

impl Checks {
    /// Notes `what` unless `ok`.
    fn check(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }

    /// Notes a client that did not exit with `want`, with what it said.
    fn exit_code(&mut self, finished: &std::process::Output, want: i32) {
        let code = finished.status.code();
        self.check(
            code == Some(want),
            format!(
                "run exit code {code:?}, not {want}: {}",
                String::from_utf8_lossy(&finished.stderr)
            ),
        );
    }

    /// Notes a run whose `run_finished` does not count `n` stories done, or that did not print
    /// `n` `story_landed`.
    fn done_and_landed(&mut self, events: &[serde_json::Value], n: usize) {
        let landed = events
            .iter()
            .filter(|e| e["event"] == "story_landed")
            .count();
        let run_finished = events.iter().find(|e| e["event"] == "run_finished");
        self.check(
            run_finished.is_some_and(|f| f["done"] == n) && landed == n,
            format!("run_finished: {run_finished:?}; {landed} stories landed"),
        );
    }

    /// `PASS` and the line `pass` makes when nothing failed; else each failure, and an error
    /// naming the check's folder `work`.
    fn report(self, work: &Path, pass: impl FnOnce() -> String) -> Result<()> {
        if self.0.is_empty() {
            println!("e2e-restate PASS  {}", pass());
            return Ok(());
        }
        for f in &self.0 {
            eprintln!("e2e-restate FAIL: {f}");
        }
        bail!(
            "{} check(s) failed; the run's files are in {}",
            self.0.len(),
            work.display()
        )
    }
}
