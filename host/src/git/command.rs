//! One `git` command under the host's process supervision: its own process group, a marker
//! unique to it, started beside the calls and gates ([`crate::process`]'s `spawn_beside`, so no
//! agent call running in another lane takes its processes for orphans of its own), bounded by a
//! timeout and torn down like a gate on timeout or Ctrl-C (SIGINT, SIGTERM, SIGKILL on the group,
//! then every escaped descendant). Its stdout and stderr are read to EOF, each kept up to
//! [`MAX_OUTPUT_BYTES`].

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt as _;
use tokio::sync::watch;
use tokio::time::Instant;

use super::GitError;
use crate::process::{self, BESIDE_MARKER, CALL_MARKER_ENV, Interrupt, Tracker, ensure_subreaper};

/// The most of each of stdout and stderr kept from one git command.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// How long git may take to exit after each signal of the teardown.
const GRACE: Duration = Duration::from_secs(3);

/// How one git command ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Its standard output (lossy UTF-8, at most [`MAX_OUTPUT_BYTES`]).
    pub stdout: String,
    /// Its standard error (lossy UTF-8, at most [`MAX_OUTPUT_BYTES`]).
    pub stderr: String,
}

impl Output {
    /// Whether git exited 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout then stderr, trimmed: what a person is shown of a failure.
    pub fn text(&self) -> String {
        let mut text = self.stdout.trim_end().to_string();
        let err = self.stderr.trim_end();
        if !err.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(err);
        }
        text
    }
}

/// Runs `git args...` in `dir` to its proven end. An exit code other than 0 is not an error
/// here (the caller decides what it means); a git that cannot start, times out, is interrupted
/// or leaves a process behind is.
pub(super) async fn run(
    dir: &Path,
    args: &[&str],
    timeout: Duration,
    mut interrupts: watch::Receiver<Interrupt>,
) -> Result<Output, GitError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let what = || format!("git {}", args.join(" "));
    if *interrupts.borrow() != Interrupt::None {
        return Err(GitError::Interrupted { command: what() });
    }
    let marker = format!(
        "{BESIDE_MARKER}git-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let subreaper = ensure_subreaper();
    let mut command = tokio::process::Command::new("git");
    command
        .args(args)
        .current_dir(dir)
        // Never a prompt (credentials, an editor): the host runs unattended.
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_EDITOR", "true")
        .env("GIT_SEQUENCE_EDITOR", "true")
        .env("GIT_MERGE_AUTOEDIT", "no")
        // Messages the host reads (`CONFLICT (content): ...`) in one language.
        .env("LC_ALL", "C")
        .env(CALL_MARKER_ENV, &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, _beside) =
        process::spawn_beside(&mut command).map_err(|source| GitError::Spawn {
            dir: dir.to_path_buf(),
            source,
        })?;
    let pid = child.id().unwrap_or_default();
    let mut tracker = Tracker::beside(pid, format!("{CALL_MARKER_ENV}={marker}"), subreaper);
    let out = child.stdout.take().map(|p| tokio::spawn(read_capped(p)));
    let err = child.stderr.take().map(|p| tokio::spawn(read_capped(p)));
    let deadline = Instant::now() + timeout;
    let mut interrupts_open = true;
    let mut stopped: Option<GitError> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            () = tokio::time::sleep_until(deadline) => {
                stopped = Some(GitError::TimedOut { command: what(), timeout });
                break None;
            }
            changed = interrupts.changed(), if interrupts_open => match changed {
                Ok(()) if *interrupts.borrow() != Interrupt::None => {
                    stopped = Some(GitError::Interrupted { command: what() });
                    break None;
                }
                Ok(()) => {}
                Err(_) => interrupts_open = false,
            },
        }
    };
    let (status, survivors) = process::end_command(
        &mut child,
        &mut tracker,
        status,
        &[(Signal::SIGINT, GRACE), (Signal::SIGTERM, GRACE)],
        GRACE,
        &mut interrupts,
    )
    .await;
    let eof = Instant::now() + GRACE;
    let read = |task: Option<tokio::task::JoinHandle<Vec<u8>>>| async move {
        let Some(mut task) = task else {
            return Some(Vec::new());
        };
        match tokio::time::timeout_at(eof, &mut task).await {
            Ok(bytes) => Some(bytes.unwrap_or_default()),
            Err(_) => {
                task.abort();
                let _ = task.await;
                None
            }
        }
    };
    let stdout = read(out).await;
    let stderr = read(err).await;
    if !survivors.is_empty() || stdout.is_none() || stderr.is_none() {
        return Err(GitError::Unproven {
            command: what(),
            survivors,
        });
    }
    if let Some(stopped) = stopped {
        return Err(stopped);
    }
    let text = |b: Option<Vec<u8>>| String::from_utf8_lossy(&b.unwrap_or_default()).into_owned();
    Ok(Output {
        code: status.and_then(|s| s.code()),
        stdout: text(stdout),
        stderr: text(stderr),
    })
}

/// Reads a pipe to EOF, keeping its first [`MAX_OUTPUT_BYTES`] bytes (the rest is drained).
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(mut pipe: R) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
