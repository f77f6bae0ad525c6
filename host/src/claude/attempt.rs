//! One attempt of a call: spawn the CLI, read its stream under the deadlines (wall clock, idle,
//! exit after the result), hand events to the policy, tear the process tree down when a deadline,
//! the policy or the operator says so, and judge the outcome. Waiting is always on events: a line,
//! the child's exit, the interrupt channel, or the current deadline.

use std::collections::HashSet;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio::sync::watch;

use crate::process::{self, Survivor, SurvivorKind, Tracker, keeper, pipe_holders, pipe_inode};

use super::judge::{judge_result, usage_limit};
use super::reader::{LineReader, Read};
use super::stream::{self, Block, Line, ResultLine};
use super::transcript::Transcript;
use super::{
    CALL_MARKER_ENV, CallReport, CallSpec, Directive, Event, ExitInfo, Interrupt, Limits, Outcome,
    RateLimit,
};

/// What one attempt produced.
#[derive(Debug, Clone)]
pub(crate) struct AttemptResult {
    pub outcome: Outcome,
    pub pid: Option<u32>,
    pub session_id: Option<String>,
    pub result_text: Option<String>,
    pub num_turns: u32,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub exit: Option<ExitInfo>,
    pub clean: bool,
    pub survivors: Vec<Survivor>,
    /// The last `rate_limit_event` that rejected a request.
    pub rejected_by: Option<RateLimit>,
}

impl AttemptResult {
    fn spawn_failed(message: String) -> Self {
        Self {
            outcome: Outcome::SpawnFailed(message),
            pid: None,
            session_id: None,
            result_text: None,
            num_turns: 0,
            cost_usd: 0.0,
            input_tokens: 0,
            output_tokens: 0,
            exit: None,
            clean: true,
            survivors: Vec::new(),
            rejected_by: None,
        }
    }
}

/// Sums over the attempts of a call.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    num_turns: u32,
    cost_usd: f64,
    input_tokens: u64,
    output_tokens: u64,
    pub last: Option<AttemptResult>,
}

impl Totals {
    pub(crate) fn add(&mut self, r: &AttemptResult) {
        self.num_turns = self.num_turns.saturating_add(r.num_turns);
        self.cost_usd += r.cost_usd;
        self.input_tokens = self.input_tokens.saturating_add(r.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(r.output_tokens);
    }

    pub(crate) fn report(
        self,
        outcome: Outcome,
        spec: &CallSpec,
        attempts: u32,
        started: Instant,
        clean: bool,
    ) -> CallReport {
        let last = self.last;
        let survivors = last
            .as_ref()
            .map(|l| l.survivors.clone())
            .unwrap_or_default();
        CallReport {
            outcome,
            pid: last.as_ref().and_then(|l| l.pid),
            session_id: last.as_ref().and_then(|l| l.session_id.clone()),
            result_text: last.as_ref().and_then(|l| l.result_text.clone()),
            num_turns: self.num_turns,
            cost_usd: self.cost_usd,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            duration: started.elapsed(),
            attempts,
            transcript: spec.transcript.clone(),
            exit: last.as_ref().and_then(|l| l.exit),
            clean,
            survivors,
            rejected_by: last.and_then(|l| l.rejected_by),
        }
    }
}

/// The command line for one call: the options, then `--` and the prompt, so that no prompt
/// (one starting with `--dangerously-skip-permissions`, say) can be read as an option.
pub(crate) fn build_args(spec: &CallSpec, limits: &Limits) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "-p".into(),
        "--output-format".into(),
        "stream-json".into(),
        "--verbose".into(),
        "--max-turns".into(),
        limits.max_turns.to_string(),
        "--permission-mode".into(),
        spec.permission_mode.clone(),
    ];
    if let Some(model) = &spec.model {
        args.extend(["--model".into(), model.clone()]);
    }
    if !spec.allowed_tools.is_empty() {
        // One comma-separated value, as the SDKs pass it (the option is variadic).
        args.extend(["--allowedTools".into(), spec.allowed_tools.join(",")]);
    }
    if let Some(text) = &spec.append_system_prompt {
        args.extend(["--append-system-prompt".into(), text.clone()]);
    }
    if let Some(usd) = limits.max_budget_usd {
        args.extend(["--max-budget-usd".into(), usd.to_string()]);
    }
    args.extend(spec.extra_args.iter().cloned());
    args.extend(["--".into(), spec.prompt.clone()]);
    args
}

/// A value unique to this call, for [`CALL_MARKER_ENV`].
fn new_marker() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn exit_info(status: &ExitStatus) -> ExitInfo {
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
    }
}

/// Why the host tore the process down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Timeout,
    Idle,
    Policy,
    Operator,
    /// The process did not exit (or close its output) in time after its result line.
    Lingering,
}

impl Reason {
    fn name(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Idle => "idle-timeout",
            Reason::Policy => "policy-stop",
            Reason::Operator => "operator-interrupt",
            Reason::Lingering => "no-exit-after-result",
        }
    }
}

/// Teardown steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// SIGINT sent; waiting `interrupt_grace`.
    Interrupt,
    /// SIGTERM sent; waiting `term_grace`.
    Terminate,
    /// SIGKILL sent to everything; waiting `term_grace` for the exit and EOF.
    Kill,
    /// The process is gone; waiting `term_grace` for EOF.
    Final,
}

#[derive(Debug)]
struct Teardown {
    reason: Reason,
    step: Step,
    deadline: Instant,
}

/// The process's handles: what the select loop waits on.
#[derive(Debug)]
struct Io {
    child: Child,
    out: Option<LineReader<ChildStdout>>,
    err: Option<LineReader<ChildStderr>>,
}

/// Everything else an attempt tracks.
struct State<'a> {
    limits: &'a Limits,
    on_event: &'a mut (dyn FnMut(&Event) -> Directive + Send),
    transcript: Transcript,
    tracker: Tracker,
    started: Instant,
    wall: Instant,
    last_line: Instant,
    open_tools: HashSet<String>,
    open_tasks: HashSet<String>,
    result: Option<ResultLine>,
    result_at: Option<Instant>,
    /// True when the result line came before any teardown: it then decides the outcome.
    result_first: bool,
    session_id: Option<String>,
    usage_hint: Option<Outcome>,
    rejected_by: Option<RateLimit>,
    exited: Option<ExitInfo>,
    teardown: Option<Teardown>,
    clean: bool,
    gave_up: bool,
    /// The started process's pid.
    pid: u32,
    /// The inodes of the stdout and stderr pipes, to name who holds them open.
    pipes: Vec<u64>,
    /// What keeps the end from being proven.
    survivors: Vec<Survivor>,
    /// True once a harvest after the process was reaped found nothing of the call left: then
    /// nothing of it can appear any more (a process comes only from a live one), and the last
    /// scan of [`State::finish`] has nothing to look for.
    proven_gone: bool,
}

pub(crate) async fn run_attempt(
    spec: &CallSpec,
    limits: &Limits,
    attempt: u32,
    on_event: &mut (dyn FnMut(&Event) -> Directive + Send),
    on_spawn: &mut (dyn FnMut(u32) + Send),
    interrupts: &mut watch::Receiver<Interrupt>,
) -> AttemptResult {
    let mut transcript = match Transcript::open(&spec.transcript) {
        Ok(t) => t,
        Err(e) => {
            return AttemptResult::spawn_failed(format!(
                "cannot open the transcript {}: {e}",
                spec.transcript.display()
            ));
        }
    };
    let subreaper = process::ensure_subreaper();
    let marker = new_marker();
    let args = build_args(spec, limits);
    // Under a keeper, the call's tree dies with the host (`kill -9` included): the keeper holds
    // the lifeline's other end, dropped with this function's frame once the call has ended.
    let (mut cmd, _lifeline) = match &spec.keeper {
        Some(_) if !keeper::can_start(&spec.bin) => {
            let message = format!("{}: no such executable", spec.bin.display());
            transcript.note("spawn_failed", json!({ "error": message }));
            return AttemptResult::spawn_failed(message);
        }
        Some(exe) => match keeper::command(exe, limits.term_grace, &spec.bin) {
            Ok((cmd, lifeline)) => (cmd, Some(lifeline)),
            Err(e) => {
                let message = format!("cannot make the keeper's lifeline pipe: {e}");
                transcript.note("spawn_failed", json!({ "error": message }));
                return AttemptResult::spawn_failed(message);
            }
        },
        None => {
            let mut cmd = Command::new(&spec.bin);
            cmd.stdin(Stdio::null());
            (cmd, None)
        }
    };
    cmd.args(&args)
        .current_dir(&spec.cwd)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(CALL_MARKER_ENV, &marker);
    transcript.note(
        "attempt",
        json!({ "attempt": attempt, "bin": spec.bin.display().to_string(), "args": args, "cwd": spec.cwd.display().to_string(), "marker": marker, "keeper": spec.keeper.is_some() }),
    );
    if let Err(e) = std::fs::read_dir(&spec.cwd) {
        let message = format!("working directory {}: {e}", spec.cwd.display());
        transcript.note("spawn_failed", json!({ "error": message }));
        return AttemptResult::spawn_failed(message);
    }
    let spawned = cmd.spawn().and_then(|c| match c.id() {
        Some(pid) => Ok((c, pid)),
        None => Err(io::Error::other(
            "the process exited before its pid was known",
        )),
    });
    let (mut child, pid) = match spawned {
        Ok(ok) => ok,
        Err(e) => {
            let message = format!("{}: {e}", spec.bin.display());
            transcript.note("spawn_failed", json!({ "error": message }));
            return AttemptResult::spawn_failed(message);
        }
    };
    let started = Instant::now();
    tracing::debug!(pid, attempt, "claude started");
    transcript.note("spawned", json!({ "pid": pid }));
    on_spawn(pid);
    let pipes = [
        child.stdout.as_ref().and_then(pipe_inode),
        child.stderr.as_ref().and_then(pipe_inode),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut io = Io {
        out: child
            .stdout
            .take()
            .map(|s| LineReader::new(s, limits.max_line_bytes)),
        err: child
            .stderr
            .take()
            .map(|s| LineReader::new(s, limits.max_line_bytes)),
        child,
    };
    let mut st = State {
        limits,
        on_event,
        transcript,
        tracker: Tracker::new(pid, format!("{CALL_MARKER_ENV}={marker}"), subreaper),
        started,
        wall: started + limits.timeout,
        last_line: started,
        open_tools: HashSet::new(),
        open_tasks: HashSet::new(),
        result: None,
        result_at: None,
        result_first: false,
        session_id: None,
        usage_hint: None,
        rejected_by: None,
        exited: None,
        teardown: None,
        clean: true,
        gave_up: false,
        pid,
        pipes,
        survivors: Vec::new(),
        proven_gone: false,
    };
    st.supervise(&mut io, interrupts).await;
    st.finish(pid).await
}

impl State<'_> {
    async fn supervise(&mut self, io: &mut Io, interrupts: &mut watch::Receiver<Interrupt>) {
        let mut interrupts_open = true;
        loop {
            if self.exited.is_some() && io.out.is_none() && io.err.is_none() {
                return;
            }
            let deadline = self.deadline();
            if Instant::now() >= deadline {
                // Checked here too, so a process that floods its output cannot starve the timers.
                self.on_deadline().await;
                if self.gave_up {
                    return;
                }
                continue;
            }
            tokio::select! {
                biased;
                changed = interrupts.changed(), if interrupts_open => match changed {
                    Err(_) => interrupts_open = false,
                    Ok(()) => {
                        let value = *interrupts.borrow_and_update();
                        match value {
                            Interrupt::None => {}
                            Interrupt::Graceful => self.begin_teardown(Reason::Operator, false).await,
                            Interrupt::Immediate => self.begin_teardown(Reason::Operator, true).await,
                        }
                    }
                },
                status = io.child.wait(), if self.exited.is_none() => self.on_exit(status).await,
                read = next_line(&mut io.out) => match read {
                    Ok(Read::Line(line)) => self.on_stdout_line(&line).await,
                    Ok(Read::TooLong(bytes)) => {
                        self.last_line = Instant::now();
                        self.transcript.note("line_too_long", json!({ "stream": "stdout", "bytes": bytes, "cap": self.limits.max_line_bytes }));
                        tracing::warn!(bytes, "discarded an over-long stdout line");
                    }
                    Ok(Read::Eof) => io.out = None,
                    Err(e) => {
                        self.transcript.note("read_error", json!({ "stream": "stdout", "error": e.to_string() }));
                        io.out = None;
                    }
                },
                read = next_line(&mut io.err) => match read {
                    Ok(Read::Line(line)) => {
                        self.transcript.stderr(&line);
                        if self.usage_hint.is_none() {
                            self.usage_hint = usage_limit(&String::from_utf8_lossy(&line));
                        }
                    }
                    Ok(Read::TooLong(bytes)) => {
                        self.transcript.note("line_too_long", json!({ "stream": "stderr", "bytes": bytes, "cap": self.limits.max_line_bytes }));
                    }
                    Ok(Read::Eof) => io.err = None,
                    Err(e) => {
                        self.transcript.note("read_error", json!({ "stream": "stderr", "error": e.to_string() }));
                        io.err = None;
                    }
                },
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.on_deadline().await;
                    if self.gave_up {
                        return;
                    }
                }
            }
        }
    }

    /// The instant the next deadline expires.
    fn deadline(&self) -> Instant {
        if let Some(t) = &self.teardown {
            return t.deadline;
        }
        let idle = if self.open_tools.is_empty() && self.open_tasks.is_empty() {
            self.limits.idle_timeout
        } else {
            self.limits.tool_idle_timeout
        };
        let mut deadline = self.wall.min(self.last_line + idle);
        if let Some(at) = self.result_at {
            deadline = deadline.min(at + self.limits.exit_grace);
        }
        deadline
    }

    async fn on_deadline(&mut self) {
        let now = Instant::now();
        match self.teardown.as_ref().map(|t| t.step) {
            None => {
                let reason = if self
                    .result_at
                    .is_some_and(|at| now >= at + self.limits.exit_grace)
                {
                    Reason::Lingering
                } else if now >= self.wall {
                    Reason::Timeout
                } else {
                    Reason::Idle
                };
                self.begin_teardown(reason, false).await;
            }
            Some(Step::Interrupt) => {
                self.tracker.scan();
                self.transcript
                    .note("teardown", json!({ "step": "SIGTERM" }));
                self.tracker.signal_group(Signal::SIGTERM);
                self.set_step(Step::Terminate, now + self.limits.term_grace);
            }
            Some(Step::Terminate) => self.kill_now().await,
            Some(Step::Kill | Step::Final) => {
                let what = if self.exited.is_none() {
                    "the process survived SIGKILL"
                } else {
                    "the output did not reach EOF"
                };
                tracing::error!(what, "giving up on the teardown");
                if self.exited.is_none() {
                    let pid = i32::try_from(self.pid).unwrap_or(i32::MAX);
                    self.add_survivors(
                        Survivor::find(pid, SurvivorKind::Alive)
                            .into_iter()
                            .collect(),
                    );
                } else {
                    self.add_survivors(pipe_holders(&self.pipes));
                }
                self.transcript.note(
                    "teardown_incomplete",
                    json!({ "what": what, "survivors": survivors_json(&self.survivors) }),
                );
                self.clean = false;
                self.gave_up = true;
            }
        }
    }

    fn set_step(&mut self, step: Step, deadline: Instant) {
        if let Some(t) = self.teardown.as_mut() {
            t.step = step;
            t.deadline = deadline;
        }
    }

    /// Starts the teardown (or, for an immediate one, escalates it to SIGKILL).
    async fn begin_teardown(&mut self, reason: Reason, immediate: bool) {
        let now = Instant::now();
        match &self.teardown {
            None => {
                tracing::debug!(reason = reason.name(), immediate, "teardown");
                self.transcript.note(
                    "teardown",
                    json!({ "reason": reason.name(), "immediate": immediate }),
                );
                self.teardown = Some(Teardown {
                    reason,
                    step: Step::Interrupt,
                    deadline: now,
                });
            }
            Some(t) if immediate && matches!(t.step, Step::Interrupt | Step::Terminate) => {
                self.transcript.note(
                    "teardown",
                    json!({ "reason": reason.name(), "immediate": true }),
                );
            }
            Some(_) => return,
        }
        if self.exited.is_some() {
            // The process is gone; its descendants may still hold the output open.
            self.harvest().await;
            self.set_step(Step::Final, Instant::now() + self.limits.term_grace);
        } else if immediate {
            self.kill_now().await;
        } else {
            self.tracker.scan();
            self.transcript
                .note("teardown", json!({ "step": "SIGINT" }));
            self.tracker.signal_group(Signal::SIGINT);
            self.set_step(Step::Interrupt, now + self.limits.interrupt_grace);
        }
    }

    /// SIGKILL to the group and to every descendant.
    async fn kill_now(&mut self) {
        self.tracker.scan();
        self.transcript
            .note("teardown", json!({ "step": "SIGKILL" }));
        self.tracker.signal_group(Signal::SIGKILL);
        self.harvest().await;
        self.set_step(Step::Kill, Instant::now() + self.limits.term_grace);
    }

    /// Kills and reaps every remaining process of the call but the Claude process itself.
    async fn harvest(&mut self) {
        let survivors = self
            .tracker
            .kill_all(process::killed_by(self.limits.term_grace))
            .await;
        // The process itself is reaped and none of its descendants is alive.
        self.proven_gone = survivors.is_empty() && self.exited.is_some();
        if !survivors.is_empty() {
            tracing::error!(?survivors, "descendants survived SIGKILL");
            self.transcript.note(
                "survivors",
                json!({ "pids": survivors.iter().map(|s| s.pid).collect::<Vec<_>>(), "survivors": survivors_json(&survivors) }),
            );
            self.add_survivors(survivors);
            self.clean = false;
        }
    }

    /// Remembers processes that keep the end from being proven (each once).
    fn add_survivors(&mut self, found: Vec<Survivor>) {
        for s in found {
            if !self
                .survivors
                .iter()
                .any(|k| k.pid == s.pid && k.start == s.start)
            {
                self.survivors.push(s);
            }
        }
    }

    async fn on_exit(&mut self, status: io::Result<ExitStatus>) {
        let exit = match status {
            Ok(s) => exit_info(&s),
            Err(e) => {
                self.transcript
                    .note("wait_error", json!({ "error": e.to_string() }));
                ExitInfo {
                    code: None,
                    signal: None,
                }
            }
        };
        self.exited = Some(exit);
        self.tracker.root_reaped();
        self.transcript.note("exit", json!({ "code": exit.code, "signal": exit.signal, "after_ms": ms(self.started.elapsed()) }));
        // Whatever it left behind (background commands) goes now: it may hold the output open.
        self.harvest().await;
        if self.teardown.is_some() {
            self.set_step(Step::Final, Instant::now() + self.limits.term_grace);
        }
    }

    async fn on_stdout_line(&mut self, bytes: &[u8]) {
        self.last_line = Instant::now();
        self.transcript.stdout(bytes);
        let line = stream::parse(bytes);
        match &line {
            Line::Invalid => {
                if self.usage_hint.is_none() {
                    self.usage_hint = usage_limit(&String::from_utf8_lossy(bytes));
                }
            }
            Line::Assistant { blocks, api_error } => {
                for block in blocks {
                    match block {
                        Block::ToolUse { id, .. } => {
                            self.open_tools.insert(id.clone());
                        }
                        Block::Text(text) if *api_error && self.usage_hint.is_none() => {
                            self.usage_hint = usage_limit(text);
                        }
                        Block::Text(_) => {}
                    }
                }
            }
            Line::User { results } => {
                for (id, _) in results {
                    self.open_tools.remove(id);
                }
                if !results.is_empty() {
                    // A finished tool may have left background processes behind.
                    self.tracker.note_orphans();
                }
            }
            Line::TaskStarted { tool_use_id } => {
                self.open_tasks
                    .insert(tool_use_id.clone().unwrap_or_default());
            }
            Line::TaskEnded { tool_use_id } => {
                self.open_tasks
                    .remove(tool_use_id.as_deref().unwrap_or_default());
            }
            Line::Result(r) => {
                if self.result.is_none() {
                    self.result = Some(r.clone());
                    self.result_at = Some(Instant::now());
                    self.result_first = self.teardown.is_none();
                }
            }
            Line::RateLimit(info) if info.is_rejected() => self.rejected_by = Some(info.clone()),
            Line::Init { .. } | Line::ApiRetry { .. } | Line::RateLimit(_) | Line::Other => {}
        }
        if self.session_id.is_none() {
            self.session_id = line.session_id().map(str::to_owned);
        }
        if self.teardown.is_some() || self.result.is_some() {
            return;
        }
        for event in line.events() {
            if (self.on_event)(&event) == Directive::Stop {
                self.begin_teardown(Reason::Policy, false).await;
                return;
            }
        }
    }

    /// The outcome, after the process has ended.
    fn judge(&self) -> Outcome {
        let from_result = self.result.as_ref().map(judge_result);
        if self.result_first
            && let Some(outcome) = from_result
        {
            return match (outcome, &self.usage_hint) {
                (Outcome::ApiError { .. }, Some(hint)) => hint.clone(),
                (outcome, _) => outcome,
            };
        }
        match self.teardown.as_ref().map(|t| t.reason) {
            Some(Reason::Operator) => Outcome::Cancelled,
            Some(Reason::Policy) => Outcome::StoppedByPolicy,
            Some(reason @ (Reason::Timeout | Reason::Idle | Reason::Lingering)) => {
                self.usage_hint.clone().unwrap_or(match reason {
                    Reason::Timeout => Outcome::TimedOut,
                    _ => Outcome::IdleTimeout,
                })
            }
            None => self.usage_hint.clone().unwrap_or(Outcome::NoResult {
                exit: self.exited.unwrap_or(ExitInfo {
                    code: None,
                    signal: None,
                }),
            }),
        }
    }

    async fn finish(mut self, pid: u32) -> AttemptResult {
        // Proof: nothing of the call may be left (a last scan; kills and reaps if needed), unless
        // a harvest after the exit proved it already.
        if !self.gave_up && !self.proven_gone {
            self.harvest().await;
        }
        let outcome = self.judge();
        let r = self.result.clone().unwrap_or_default();
        self.transcript.note(
            "end",
            json!({
                "outcome": outcome.kind(),
                "detail": outcome.to_string(),
                "exit_code": self.exited.and_then(|e| e.code),
                "exit_signal": self.exited.and_then(|e| e.signal),
                "clean": self.clean,
                "duration_ms": ms(self.started.elapsed()),
            }),
        );
        self.transcript.flush();
        tracing::debug!(pid, outcome = %outcome, clean = self.clean, "claude call ended");
        AttemptResult {
            outcome,
            pid: Some(pid),
            session_id: self.session_id.clone().or(r.session_id),
            result_text: r.text,
            num_turns: r.num_turns,
            cost_usd: r.cost_usd,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            exit: self.exited,
            clean: self.clean,
            survivors: self.survivors,
            rejected_by: self.rejected_by.clone(),
        }
    }
}

/// Survivors as the transcript notes them.
fn survivors_json(survivors: &[Survivor]) -> serde_json::Value {
    survivors
        .iter()
        .map(|s| json!({ "pid": s.pid, "command": s.command, "holds_output": s.kind == SurvivorKind::HoldsOutput }))
        .collect()
}

/// The next line of an optional reader; pending forever once the reader is gone (the branch is
/// then disabled by the caller's state, never polled in a loop).
async fn next_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut Option<LineReader<R>>,
) -> io::Result<Read> {
    match reader {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn command_line() {
        let spec = CallSpec {
            bin: PathBuf::from("claude"),
            prompt: "do it".into(),
            cwd: PathBuf::from("/tmp"),
            env: vec![],
            model: Some("opus".into()),
            permission_mode: "acceptEdits".into(),
            allowed_tools: vec!["Read".into(), "Bash(git:*)".into()],
            append_system_prompt: Some("be brief".into()),
            extra_args: vec!["--debug".into()],
            transcript: PathBuf::from("/tmp/t"),
            keeper: None,
        };
        let limits = Limits {
            max_turns: 7,
            max_budget_usd: Some(1.5),
            ..Limits::default()
        };
        assert_eq!(
            build_args(&spec, &limits),
            [
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--max-turns",
                "7",
                "--permission-mode",
                "acceptEdits",
                "--model",
                "opus",
                "--allowedTools",
                "Read,Bash(git:*)",
                "--append-system-prompt",
                "be brief",
                "--max-budget-usd",
                "1.5",
                "--debug",
                "--",
                "do it"
            ]
        );
    }
}
