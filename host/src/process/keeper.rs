//! The keeper: a small process between the host and one agent call that takes the call's whole
//! tree down when the host dies, so that no agent keeps editing files for a host that is gone
//! and a second host (another worker) cannot start the same call while the first still runs.
//!
//! The host starts `bmad-host __keep GRACE_MS PROGRAM ARGS…` in place of the call, with the read
//! end of a pipe (the *lifeline*) as its stdin; only the host holds the write end (close-on-exec,
//! so no other child inherits it). The keeper makes itself a child subreaper, starts the program
//! in the process group the host made for the call (the host's signals to that group reach both;
//! the keeper lets the program decide) and then waits for one of two things:
//! - the program exits: the keeper kills what is left of its tree (anything orphaned is now the
//!   keeper's child), reaps it, and exits with the program's status (a signal is raised again);
//! - the lifeline reaches EOF (the host died, even by `kill -9`): the keeper kills the program
//!   and its whole tree and reaps them, then exits.
//!
//! Because every descendant is re-parented to the keeper, "no child left to reap" proves the
//! tree gone: the keeper's exit is the moment the call has ended, which is what a lease's
//! expiry must outlast.

use std::ffi::OsString;
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};

use super::{CALL_MARKER_ENV, Tracker};

/// The first argument that makes `bmad-host` a keeper (not a subcommand: never shown).
pub const KEEPER_ARG: &str = "__keep";

/// The exit code of a keeper that could not start its program (as a shell's).
pub const KEEPER_SPAWN_FAILED: u8 = 127;

/// The host's end of a keeper's lifeline: the keeper tears its call down when this is dropped
/// (or the host dies).
#[derive(Debug)]
pub struct Lifeline(#[allow(dead_code, reason = "held open, never written")] OwnedFd);

/// A command that runs `program` under a keeper (`exe` is the `bmad-host` binary), with the
/// lifeline that keeps it alive. Add the program's arguments to the command; its stdin is the
/// lifeline, so do not set another.
pub fn command(
    exe: &Path,
    grace: Duration,
    program: &Path,
) -> std::io::Result<(tokio::process::Command, Lifeline)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg(KEEPER_ARG)
        .arg(grace.as_millis().to_string())
        .arg(program)
        .stdin(Stdio::from(read));
    Ok((cmd, Lifeline(write)))
}

/// Whether `program` can be started: a path to an executable file, or a name found on `PATH`.
/// The host asks before it starts a keeper, so that a missing program fails as a spawn does
/// rather than as a program that exited 127.
pub fn can_start(program: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        return runnable(program);
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))))
}

/// `bmad-host __keep GRACE_MS PROGRAM ARGS…`: runs the keeper (`args` are those after
/// [`KEEPER_ARG`]).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let mut args = args.into_iter();
    let grace = args
        .next()
        .and_then(|g| g.to_str()?.parse().ok())
        .map(Duration::from_millis);
    let (Some(grace), Some(program)) = (grace, args.next()) else {
        eprintln!(
            "usage: bmad-host {KEEPER_ARG} GRACE_MS PROGRAM [ARGS...] (started by bmad-host itself)"
        );
        return ExitCode::from(crate::exit::USAGE);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(keep(grace, program, args.collect())),
        Err(e) => {
            eprintln!("bmad-host keeper: cannot start its runtime: {e}");
            ExitCode::from(KEEPER_SPAWN_FAILED)
        }
    }
}

async fn keep(grace: Duration, program: OsString, args: Vec<OsString>) -> ExitCode {
    let subreaper = super::ensure_subreaper();
    // The keeper runs one call: every orphan it adopts is that call's.
    super::claim_adopted_orphans();
    let lifeline = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .and_then(tokio::net::unix::pipe::Receiver::from_owned_fd);
    let mut lifeline = match lifeline {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bmad-host keeper: stdin is not the host's lifeline pipe: {e}");
            return ExitCode::from(KEEPER_SPAWN_FAILED);
        }
    };
    // Caught (not ignored) signals: the program, which the host signals through the group, gets
    // the default dispositions back when it execs.
    let signals = (|| {
        Ok::<_, std::io::Error>([
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
            signal(SignalKind::quit())?,
        ])
    })();
    let [mut int, mut term, mut hup, mut quit] = match signals {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bmad-host keeper: cannot handle a signal: {e}");
            return ExitCode::from(KEEPER_SPAWN_FAILED);
        }
    };
    let spawned = tokio::process::Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", Path::new(&program).display());
            return ExitCode::from(KEEPER_SPAWN_FAILED);
        }
    };
    // The host reads the call's output to EOF: only the call may hold those pipes now.
    if let Ok(null) = std::fs::File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let marker = std::env::var(CALL_MARKER_ENV)
        .map(|v| format!("{CALL_MARKER_ENV}={v}"))
        .unwrap_or_default();
    let mut tracker = Tracker::new(child.id().unwrap_or(0), marker, subreaper);
    let mut buf = [0u8; 64];
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            read = lifeline.read(&mut buf) => {
                if matches!(read, Ok(0) | Err(_)) {
                    // The host is gone: nobody supervises this call any more.
                    tracker.scan();
                    let _ = child.start_kill();
                    break child.wait().await;
                }
            }
            // The program got the same signal through the group: it decides.
            _ = int.recv() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
            _ = quit.recv() => {}
        }
    };
    tracker.root_reaped();
    let _ = tracker.kill_all(super::killed_by(grace)).await;
    mirror(status)
}

/// Exits as the program did: its code, or its signal raised again.
fn mirror(status: std::io::Result<ExitStatus>) -> ExitCode {
    let status = match status {
        Ok(s) => s,
        Err(_) => return ExitCode::from(KEEPER_SPAWN_FAILED),
    };
    if let Some(code) = status.code() {
        return ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1));
    }
    let Some(number) = status.signal() else {
        return ExitCode::from(1);
    };
    if let Ok(sig) = nix::sys::signal::Signal::try_from(number) {
        die_by(sig);
    }
    ExitCode::from(u8::try_from(128 + (number & 0x7f)).unwrap_or(1))
}

// SAFETY: setting the default disposition installs no handler; the keeper raises the signal
// right after and exits (only a signal whose default is to be ignored returns here).
#[expect(
    unsafe_code,
    reason = "restoring a signal's default disposition to die by it, as the SAFETY comment says"
)]
fn die_by(sig: nix::sys::signal::Signal) {
    let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
    let _ = nix::sys::signal::raise(sig);
}
