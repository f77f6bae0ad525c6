//! Process trees and their teardown, for every process the host starts: agent calls
//! ([`crate::claude`]) and quality gates ([`crate::gates`]).
//!
//! Each started process leads its own process group and carries [`CALL_MARKER_ENV`] in its
//! environment, with a value unique to the call or gate. The host is a child subreaper, so a
//! descendant whose parent dies is re-parented to the host and recognised by that marker. A
//! [`Tracker`] finds every descendant (Bash tools run in their own sessions, out of the group's
//! reach), kills them through pidfds after checking their start time (a recycled pid is never
//! signalled) and reaps the orphans. A process has ended only when it is reaped, no descendant
//! is alive and its output is at EOF; what keeps an end from being proven is a [`Survivor`].

pub mod keeper;
mod tree;

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::watch;

pub(crate) use tree::{
    BESIDE_MARKER, Tracker, ensure_subreaper, pipe_holders, pipe_inode, spawn_beside,
};
pub use tree::{Survivor, SurvivorKind, claim_adopted_orphans};

/// The least time a SIGKILLed process is given to disappear before it is called a survivor
/// (the graces are the limits' `term_grace` when longer). The wait ends as soon as it is gone;
/// on a loaded machine a killed process can take a few hundred milliseconds to be scheduled
/// and exit, and a survivor stops the run.
pub const KILLED_GONE_WITHIN: Duration = Duration::from_secs(2);

/// The deadline for SIGKILLed processes to be gone: `grace` from now, and at least
/// [`KILLED_GONE_WITHIN`].
pub(crate) fn killed_by(grace: Duration) -> Instant {
    Instant::now() + grace.max(KILLED_GONE_WITHIN)
}

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

/// How [`terminate`] ended.
#[derive(Debug)]
pub(crate) struct Terminated {
    /// How the process exited; None when it was not reaped (or waiting failed).
    pub status: Option<ExitStatus>,
    /// False when the process was still alive after SIGKILL and `grace`.
    pub reaped: bool,
}

/// Tears a process group the host started down like an agent call: each of `signals` in turn to
/// the group (SIGINT, then SIGTERM), each followed by its grace for `child` to exit, then
/// SIGKILL and one more `kill_grace`. An [`Interrupt::Immediate`] on `interrupts` skips the
/// remaining graces. Its descendants outside the group are the caller's to finish with
/// [`Tracker::kill_all`] once `child` is reaped.
pub(crate) async fn terminate(
    child: &mut Child,
    tracker: &mut Tracker,
    signals: &[(Signal, Duration)],
    kill_grace: Duration,
    interrupts: &mut watch::Receiver<Interrupt>,
) -> Terminated {
    let mut interrupts_open = true;
    'graces: for &(signal, grace) in signals {
        if *interrupts.borrow() == Interrupt::Immediate {
            break;
        }
        tracker.scan();
        tracing::debug!(pgid = child.id(), %signal, "teardown");
        tracker.signal_group(signal);
        let deadline = tokio::time::sleep(grace); // a deadline, raced with the exit
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                status = child.wait() => {
                    return Terminated { status: status.ok(), reaped: true };
                }
                () = &mut deadline => continue 'graces,
                changed = interrupts.changed(), if interrupts_open => match changed {
                    Ok(()) if *interrupts.borrow() == Interrupt::Immediate => break 'graces,
                    Ok(()) => {}
                    Err(_) => interrupts_open = false,
                },
            }
        }
    }
    tracker.scan();
    tracker.signal_group(Signal::SIGKILL);
    match tokio::time::timeout(kill_grace.max(KILLED_GONE_WITHIN), child.wait()).await {
        Ok(status) => Terminated {
            status: status.ok(),
            reaped: true,
        },
        Err(_) => Terminated {
            status: None,
            reaped: false,
        },
    }
}

/// Ends a supervised command (a gate, a notifier, a git command) whose wait returned `status`
/// (`None`: it was stopped, by its timeout or an interrupt, and still runs): tears its group
/// down with `signals` ([`terminate`]), names its root a survivor when it outlived SIGKILL, then
/// kills what is left of its tree ([`Tracker::kill_all`], `grace`). Returns how it exited and
/// the processes that keep its end from being proven (reading its output to EOF is the
/// caller's).
pub(crate) async fn end_command(
    child: &mut Child,
    tracker: &mut Tracker,
    status: Option<ExitStatus>,
    signals: &[(Signal, Duration)],
    grace: Duration,
    interrupts: &mut watch::Receiver<Interrupt>,
) -> (Option<ExitStatus>, Vec<Survivor>) {
    let mut survivors = Vec::new();
    let status = match status {
        Some(status) => Some(status),
        None => {
            let pid = child.id().and_then(|p| i32::try_from(p).ok());
            let ended = terminate(child, tracker, signals, grace, interrupts).await;
            if !ended.reaped {
                survivors.extend(pid.and_then(|p| Survivor::find(p, SurvivorKind::Alive)));
            }
            ended.status
        }
    };
    if survivors.is_empty() {
        tracker.root_reaped();
    }
    survivors.extend(tracker.kill_all(killed_by(grace)).await);
    (status, survivors)
}

/// Kills every live process whose environment holds `marker` (`KEY=value`), with its
/// descendants, and waits (up to `grace`) until they are gone. The run loop calls it when it
/// starts after a run whose host died (`kill -9`, a reboot), resumed or not (`--fresh`): that
/// host's agent or gate processes carry the run's `BMAD_HOST_RUN_ID` and must not keep editing
/// files while the next step runs. Returns the processes that survived.
pub async fn stop_leftovers(marker: &str, grace: Duration) -> Vec<Survivor> {
    let mut tracker = Tracker::new(0, marker.to_string(), false);
    tracker.root_reaped();
    tracker.kill_all(killed_by(grace)).await
}
