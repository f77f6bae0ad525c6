//! Quality gates: the project's own check commands (`cargo test`, `npm test`, `ruff check`),
//! run by the host after Dev with the same process-tree supervision as agent calls. Each gate is
//! `sh -c COMMAND` at the project root, in its own process group, under its timeout; on timeout
//! or Ctrl-C the group gets SIGTERM, then SIGKILL, then every escaped descendant is killed and
//! reaped ([`crate::process`], as for agent calls). The result (pass/fail, exit status, a bounded
//! tail of the output) goes to the Dev and QA policies.

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
use crate::process::{self, CALL_MARKER_ENV, Interrupt, Tracker, ensure_subreaper};

/// Longest output tail kept per gate, in bytes.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// How long a gate may take to exit after SIGTERM before SIGKILL.
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
}

/// Runs one gate to its end: exit, timeout (then teardown) or interrupt. The gate has ended
/// only when its process is reaped, no descendant is alive and its output is at EOF.
pub async fn run_gate(
    gate: &GateConfig,
    root: &Path,
    env: &[(String, String)],
    mut interrupts: watch::Receiver<Interrupt>,
) -> GateRun {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let started = Instant::now();
    let marker = format!(
        "gate-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let subreaper = ensure_subreaper();
    let mut child = match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&gate.command)
        .current_dir(root)
        .env("BMAD_HOST_GATE", &gate.name)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env(CALL_MARKER_ENV, &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
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
    let mut tracker = Tracker::new(pid, format!("{CALL_MARKER_ENV}={marker}"), subreaper);
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(OUTPUT_TAIL_BYTES)));
    let readers = [
        child
            .stdout
            .take()
            .map(|s| tokio::spawn(keep_tail(s, tail.clone()))),
        child
            .stderr
            .take()
            .map(|s| tokio::spawn(keep_tail(s, tail.clone()))),
    ];

    let deadline = started + gate.timeout;
    let mut timed_out = false;
    let mut cancelled = false;
    let mut immediate = false;
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
                    immediate = *interrupts.borrow() == Interrupt::Immediate;
                    break None;
                }
                Ok(()) => {}
                Err(_) => interrupts_open = false,
            },
        }
    };
    let status = match status {
        Some(status) => Some(status),
        // Teardown: SIGTERM the group, give it a grace (none on a second Ctrl-C), then SIGKILL.
        None => {
            let first = if immediate {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            process::terminate(&mut child, &mut tracker, first, TERM_GRACE).await
        }
    };
    tracker.root_reaped();
    let survivors = tracker
        .kill_all((Instant::now() + TERM_GRACE).into_std())
        .await;
    for reader in readers.into_iter().flatten() {
        // Every writer of the pipes is dead, so the readers are at EOF (or end at the bound).
        let _ = tokio::time::timeout(TERM_GRACE, reader).await;
    }
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
    if !survivors.is_empty() {
        tracing::warn!(gate = %gate.name, ?survivors, "processes of the gate survived SIGKILL");
    }
    finish(
        gate,
        started,
        status.and_then(|s| s.code()),
        timed_out,
        cancelled,
        text,
    )
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
