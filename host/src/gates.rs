//! Quality gates: the project's own check commands (`cargo test`, `npm test`, `ruff check`),
//! run by the host after Dev with the same process-tree supervision as agent calls. Each gate is
//! `sh -c COMMAND` at the project root, in its own process group, under its timeout; on timeout
//! or Ctrl-C the group gets the teardown of an agent call (SIGINT, a grace, SIGTERM, a grace,
//! SIGKILL; Ctrl-C twice: SIGKILL at once), then every escaped descendant is killed and reaped
//! ([`crate::process`]). Its output readers are joined, or aborted and awaited: none is left
//! behind. The result (pass/fail, exit status, a bounded tail of the output) goes to the Dev and
//! QA policies; a gate whose end cannot be proven (a process alive after SIGKILL, its output
//! held open) says so ([`GateRun::clean`]), and the run stops. The notifiers' commands run under
//! the same supervision ([`run_beside`]), beside the run's calls and gates.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::GateConfig;
use crate::policy::GateReport;
use crate::process::{
    self, CALL_MARKER_ENV, Interrupt, Survivor, Tracker, ensure_subreaper, pipe_holders, pipe_inode,
};

/// Longest output tail kept per gate, in bytes.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// How long a gate may take to exit after SIGINT before SIGTERM (as an agent call).
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);

/// How long a gate may take to exit after SIGTERM before SIGKILL, and after SIGKILL (with its
/// descendants) before its end is given up as unproven; also how long its output may take to
/// reach EOF once every writer is dead.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// One gate's run.
#[derive(Debug, Clone)]
pub struct GateRun {
    /// What the policies are told: passed, exit status, the output's tail.
    pub report: GateReport,
    /// How long it ran, teardown included.
    pub duration: Duration,
    /// The operator interrupted it (the process tree was torn down).
    pub cancelled: bool,
    /// True when its end was proven: its process reaped, no descendant alive, its output at
    /// EOF. False when something survived SIGKILL or held its output open: `survivors` says who.
    pub clean: bool,
    /// The processes that keep its end from being proven (empty when `clean`).
    pub survivors: Vec<Survivor>,
}

/// Runs one gate to its end: exit, timeout (then teardown) or interrupt. The gate has ended
/// only when its process is reaped, no descendant is alive and its output is at EOF.
pub async fn run_gate(
    gate: &GateConfig,
    root: &Path,
    env: &[(String, String)],
    interrupts: watch::Receiver<Interrupt>,
) -> GateRun {
    run_supervised(gate, root, env, None, interrupts).await
}

/// Runs a command beside the run's calls and gates (a notifier) under the gates' supervision,
/// with `input` on its stdin: no call or gate that runs meanwhile takes its processes for
/// orphans of its own, and it takes none of theirs.
pub async fn run_beside(
    gate: &GateConfig,
    root: &Path,
    env: &[(String, String)],
    input: Vec<u8>,
    interrupts: watch::Receiver<Interrupt>,
) -> GateRun {
    run_supervised(gate, root, env, Some(input), interrupts).await
}

async fn run_supervised(
    gate: &GateConfig,
    root: &Path,
    env: &[(String, String)],
    input: Option<Vec<u8>>,
    mut interrupts: watch::Receiver<Interrupt>,
) -> GateRun {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    let beside = input.is_some();
    let marker = format!(
        "{}{}-{}",
        if beside {
            process::BESIDE_MARKER
        } else {
            "gate-"
        },
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let subreaper = ensure_subreaper();
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(&gate.command)
        .current_dir(root)
        .env("BMAD_HOST_GATE", &gate.name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(CALL_MARKER_ENV, &marker)
        .stdin(if beside {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let spawned = if beside {
        process::spawn_beside(&mut command).map(|(child, guard)| (child, Some(guard)))
    } else {
        command.spawn().map(|child| (child, None))
    };
    let (mut child, _beside) = match spawned {
        Ok(spawned) => spawned,
        Err(e) => {
            return finish(
                gate,
                started,
                None,
                false,
                false,
                format!("[bmad-host] cannot run `sh -c {}`: {e}", gate.command),
            );
        }
    };
    let pid = child.id().unwrap_or_default();
    let mut tracker = if beside {
        Tracker::beside(pid, format!("{CALL_MARKER_ENV}={marker}"), subreaper)
    } else {
        Tracker::new(pid, format!("{CALL_MARKER_ENV}={marker}"), subreaper)
    };
    // The input is written beside the wait (a command that never reads it must not block it),
    // and the writer is ended with the command.
    let writer = match (child.stdin.take(), input) {
        (Some(mut stdin), Some(input)) => Some(tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            // A command that exits without reading its input is not an error of the writer's.
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        })),
        _ => None,
    };
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_TAIL_BYTES)));
    let mut pipes = Vec::new();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        pipes.extend(pipe_inode(&out));
        readers.push(tokio::spawn(keep_tail(out, tail.clone())));
    }
    if let Some(err) = child.stderr.take() {
        pipes.extend(pipe_inode(&err));
        readers.push(tokio::spawn(keep_tail(err, tail.clone())));
    }

    let deadline = started + gate.timeout;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut interrupts_open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.ok(),
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                break None;
            }
            changed = interrupts.changed(), if interrupts_open => match changed {
                Ok(()) if *interrupts.borrow() != Interrupt::None => {
                    cancelled = true;
                    break None;
                }
                Ok(()) => {}
                Err(_) => interrupts_open = false,
            },
        }
    };
    // Teardown as for an agent call: SIGINT, SIGTERM, SIGKILL, each after its grace (none on a
    // second Ctrl-C).
    let (status, mut survivors) = process::end_command(
        &mut child,
        &mut tracker,
        status,
        &[
            (Signal::SIGINT, INTERRUPT_GRACE),
            (Signal::SIGTERM, TERM_GRACE),
        ],
        TERM_GRACE,
        &mut interrupts,
    )
    .await;
    // Every writer of the pipes is dead, so the readers reach EOF, unless a process outside the
    // tree holds a pipe open: then they are aborted (and awaited), and the holder is named.
    let eof_deadline = Instant::now() + TERM_GRACE;
    let mut at_eof = true;
    for mut reader in readers {
        if tokio::time::timeout_at(eof_deadline, &mut reader)
            .await
            .is_err()
        {
            at_eof = false;
            reader.abort();
            let _ = reader.await;
        }
    }
    if !at_eof {
        let holders = pipe_holders(&pipes);
        survivors.extend(holders);
    }
    if let Some(writer) = writer {
        writer.abort();
        let _ = writer.await;
    }
    let clean = at_eof && survivors.is_empty();
    let mut text = {
        let buf = tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buf.iter().copied().collect::<Vec<u8>>()).into_owned()
    };
    if timed_out {
        text.push_str(&format!(
            "\n[bmad-host] gate `{}` timed out after {}; its process tree was torn down",
            gate.name,
            humantime::format_duration(gate.timeout)
        ));
    }
    if !clean {
        tracing::error!(gate = %gate.name, ?survivors, "the end of the gate cannot be proven");
    }
    GateRun {
        clean,
        survivors,
        ..finish(
            gate,
            started,
            status.and_then(|s| s.code()),
            timed_out,
            cancelled,
            text,
        )
    }
}

fn finish(
    gate: &GateConfig,
    started: Instant,
    exit_code: Option<i32>,
    timed_out: bool,
    cancelled: bool,
    output_tail: String,
) -> GateRun {
    GateRun {
        report: GateReport {
            name: gate.name.clone(),
            passed: !timed_out && !cancelled && exit_code == Some(0),
            exit_code,
            timed_out,
            output_tail,
        },
        duration: started.elapsed(),
        cancelled,
        clean: true,
        survivors: Vec::new(),
    }
}

/// Reads a pipe to EOF, keeping only its last [`OUTPUT_TAIL_BYTES`] bytes (shared by stdout and stderr).
async fn keep_tail<R: tokio::io::AsyncRead + Unpin>(mut pipe: R, tail: Arc<Mutex<VecDeque<u8>>>) {
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut t = tail
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                t.extend(&buf[..n]);
                let excess = t.len().saturating_sub(OUTPUT_TAIL_BYTES);
                t.drain(..excess);
            }
        }
    }
}
