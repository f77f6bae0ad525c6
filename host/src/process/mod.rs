//! Process trees and their teardown, for every process the host starts: agent calls
//! ([`crate::claude`]) and quality gates ([`crate::gates`]).
//!
//! Each started process leads its own process group and carries [`CALL_MARKER_ENV`] in its
//! environment, with a value unique to the call or gate. The host is a child subreaper, so a
//! descendant whose parent dies is re-parented to the host and recognised by that marker. A
//! [`Tracker`] finds every descendant (Bash tools run in their own sessions, out of the group's
//! reach), kills them through pidfds after checking their start time (a recycled pid is never
//! signalled) and reaps the orphans. A process has ended only when it is reaped and no
//! descendant is alive.

mod tree;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::Child;

pub(crate) use tree::{Tracker, ensure_subreaper};

/// Environment variable set on every process the host starts (agent calls and gates), with a
/// value unique to the call.
pub const CALL_MARKER_ENV: &str = "BMAD_HOST_CALL";

/// An operator interrupt, fed through a watch channel: Ctrl-C once, then twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interrupt {
    /// No interrupt yet.
    #[default]
    None,
    /// Tear the call down with the usual graces.
    Graceful,
    /// Kill now: skip the graces.
    Immediate,
}

/// Tears a process group the host started down: `first` to the group (SIGTERM, or SIGKILL when
/// the operator asked for it now), then SIGKILL when `child` has not exited after `grace`.
/// Returns how `child` exited (None if waiting failed). Its descendants outside the group are the
/// caller's to finish with [`Tracker::kill_all`] once `child` is reaped.
pub(crate) async fn terminate(
    child: &mut Child,
    tracker: &mut Tracker,
    first: Signal,
    grace: Duration,
) -> Option<ExitStatus> {
    tracker.scan();
    tracker.signal_group(first);
    let deadline = tokio::time::sleep(grace); // a deadline, raced with the exit
    tokio::pin!(deadline);
    tokio::select! {
        status = child.wait() => status.ok(),
        () = &mut deadline => {
            tracker.signal_group(Signal::SIGKILL);
            child.wait().await.ok()
        }
    }
}

/// Kills every live process whose environment holds `marker` (`KEY=value`), with its
/// descendants, and waits (up to `grace`) until they are gone. The run loop calls it when it
/// resumes a run whose host died (`kill -9`, a reboot): that host's agent or gate processes
/// carry the run's `BMAD_HOST_RUN_ID` and must not keep editing files while their step is
/// redone. Returns the pids that survived.
pub async fn stop_leftovers(marker: &str, grace: Duration) -> Vec<i32> {
    let mut tracker = Tracker::new(0, marker.to_string(), false);
    tracker.root_reaped();
    tracker.kill_all(Instant::now() + grace).await
}
