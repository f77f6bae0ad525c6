//! The Claude supervisor: spawns the Claude Code CLI headless (`-p`, stream-json), reads its
//! stream with a line-length cap, passes summarised events to the policy, enforces the host's
//! limits (wall-clock timeout, idle timeout paused during tool calls, retries with backoff),
//! judges each call from its `result` line (never the exit code), keeps the full transcript on
//! disk, and tears the whole process tree down (SIGINT → SIGTERM → SIGKILL on the group, then
//! every escaped descendant) so that a call ends only when its process is reaped, no descendant
//! is alive and its output is at EOF.
//!
//! Every spawned process gets the environment variable [`CALL_MARKER_ENV`] with a value unique
//! to the call; [`crate::process`] uses it to recognise the call's orphans (re-parented to the
//! host, which is a child subreaper) and tears the tree down.

mod attempt;
mod judge;
mod reader;
mod stream;
mod transcript;

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::policy::{self, AgentEvent, CallOutcome, OutcomeKind};

pub use crate::process::{CALL_MARKER_ENV, Interrupt};
pub use judge::usage_limit;

/// Longest assistant text passed to the policy in [`Event::Text`], in bytes (cut on a char boundary).
pub const EVENT_TEXT_MAX: usize = 2000;

/// The limits the host enforces on one agent call.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock limit for the whole call (one attempt).
    pub timeout: Duration,
    /// Longest time without a stdout line while no tool call is open.
    pub idle_timeout: Duration,
    /// Longest time without a stdout line while a tool call is open (between `tool_use` and its
    /// `tool_result`, or between `system/task_started` and its `task_notification`).
    pub tool_idle_timeout: Duration,
    /// `--max-turns`.
    pub max_turns: u32,
    /// `--max-budget-usd`, when set.
    pub max_budget_usd: Option<f64>,
    /// How many times a transient failure (API overload, 429, 5xx, dropped connection, a crash
    /// without a result line) is retried with a fresh process.
    pub retries: u32,
    /// The first retry's backoff; each further retry doubles it (capped at 10 minutes).
    pub retry_backoff: Duration,
    /// How long the process may take to exit after SIGINT before SIGTERM.
    pub interrupt_grace: Duration,
    /// How long the process may take to exit after SIGTERM before SIGKILL; also the bound on
    /// waiting for killed processes to disappear (at least
    /// [`crate::process::KILLED_GONE_WITHIN`]).
    pub term_grace: Duration,
    /// How long the process may take to exit on its own after its `result` line.
    pub exit_grace: Duration,
    /// Longest stdout or stderr line kept; longer lines are discarded and recorded as an error.
    pub max_line_bytes: usize,
}

/// The configuration's defaults (`[claude]` in [`crate::config`]).
impl Default for Limits {
    fn default() -> Self {
        Limits::from(&crate::config::ClaudeConfig::default())
    }
}

/// The limits `[claude]` sets; the host's own for the rest.
impl From<&crate::config::ClaudeConfig> for Limits {
    fn from(c: &crate::config::ClaudeConfig) -> Self {
        Self {
            timeout: c.timeout.value,
            idle_timeout: c.idle_timeout.value,
            tool_idle_timeout: c.tool_idle_timeout.value,
            max_turns: c.max_turns.value,
            max_budget_usd: c.max_budget_usd.value,
            retries: c.retries.value,
            retry_backoff: Duration::from_secs(5),
            interrupt_grace: Duration::from_secs(3),
            term_grace: Duration::from_secs(3),
            exit_grace: Duration::from_secs(10),
            max_line_bytes: 8 * 1024 * 1024,
        }
    }
}

/// What to run for one agent call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSpec {
    /// The `claude` executable.
    pub bin: PathBuf,
    /// The prompt: the last argument, after `--`.
    pub prompt: String,
    /// Working directory: the project root.
    pub cwd: PathBuf,
    /// Added to the host's environment (e.g. `BMAD_HOST_ROLE`, `BMAD_HOST_STORY_ID`).
    pub env: Vec<(String, String)>,
    /// `--model`; `None` leaves the CLI's default.
    pub model: Option<String>,
    /// `--permission-mode`.
    pub permission_mode: String,
    /// `--allowedTools` entries; empty means the CLI's default.
    pub allowed_tools: Vec<String>,
    /// `--append-system-prompt`, when the policy gives one.
    pub append_system_prompt: Option<String>,
    /// Appended after the host's own arguments.
    pub extra_args: Vec<String>,
    /// Where the transcript goes (appended to; parent directories are created).
    pub transcript: PathBuf,
    /// Run the call under a keeper ([`crate::process::keeper`]), this `bmad-host` binary, so
    /// that its process tree dies with the host; `None` runs it directly.
    pub keeper: Option<PathBuf>,
}

/// A policy's answer to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Let the call go on.
    Continue,
    /// Stop the call: the host tears it down ([`Outcome::StoppedByPolicy`]).
    Stop,
}

/// A summarised line of the agent's stream, for the policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `system/init`: the session started.
    Init {
        /// The model the CLI runs.
        model: String,
        /// The CLI's session id.
        session_id: Option<String>,
    },
    /// Assistant text, cut to [`EVENT_TEXT_MAX`] bytes.
    Text(String),
    /// A tool call.
    ToolUse {
        /// The tool's name (`Bash`, `Edit`, ...).
        name: String,
    },
    /// A tool result.
    ToolResult {
        /// Whether the tool failed.
        is_error: bool,
    },
    /// `system/api_retry`: the CLI is retrying an API call.
    ApiRetry {
        /// The CLI's attempt number.
        attempt: u32,
        /// The HTTP status that made it retry, if any.
        status: Option<u16>,
    },
    /// `rate_limit_event`: where the account stands against its usage limits (the CLI reports
    /// it for a subscriber login). Not passed to policies: the WIT has no word for it.
    RateLimit(RateLimit),
}

/// A `rate_limit_event` of the CLI (`rate_limit_info`): the account's use of its limits, from
/// the API's `anthropic-ratelimit-unified-*` headers.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// `allowed`, `allowed_warning` (close to a limit; never a stop) or `rejected`.
    pub status: String,
    /// The limit it is about (`rateLimitType`): `five_hour`, `seven_day`, `seven_day_opus`,
    /// `seven_day_sonnet`, `overage`; `None` when not stated.
    pub kind: Option<String>,
    /// The share of the limit used, 0 to 1, when stated (`utilization`, or the limit's window in
    /// `unifiedWindows`).
    pub utilization: Option<f64>,
    /// When the limit resets (`resetsAt`): the authority for the reset instant.
    pub resets_at: Option<jiff::Timestamp>,
}

impl RateLimit {
    /// Whether the API refused the request on this limit.
    pub fn is_rejected(&self) -> bool {
        self.status == "rejected"
    }
}

/// How a process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by {s}"),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// How an agent call ended, judged from the stream and the host's limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `result` with subtype `success` and `is_error: false`.
    Success,
    /// `error_max_turns`.
    MaxTurns,
    /// `error_max_budget_usd`.
    MaxBudget,
    /// `error_during_execution` (a turn was aborted).
    DuringExecution,
    /// `is_error: true` with subtype `success` (the CLI gave up on the API), or an unknown error subtype.
    ApiError {
        /// The HTTP status, when the CLI gave one.
        status: Option<u16>,
        /// The CLI's message.
        message: String,
    },
    /// The process ended on its own without a `result` line (crash, signal, early exit).
    NoResult {
        /// How the process exited.
        exit: ExitInfo,
    },
    /// The host's wall-clock timeout fired.
    TimedOut,
    /// No output line for the idle timeout (or the tool idle timeout while a tool was open).
    IdleTimeout,
    /// The policy returned [`Directive::Stop`].
    StoppedByPolicy,
    /// The operator interrupted the call.
    Cancelled,
    /// A usage-limit or quota message; `resets` is the reset time when the CLI stated it.
    UsageLimit {
        /// The CLI's message.
        message: String,
        /// When the limit resets, as the CLI stated it.
        resets: Option<String>,
    },
    /// The process could not be started (or its transcript could not be opened).
    SpawnFailed(String),
}

impl Outcome {
    /// A short stable name (`success`, `max-turns`, ...), as in the WIT `outcome-kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::MaxTurns => "error-max-turns",
            Outcome::MaxBudget => "error-max-budget",
            Outcome::DuringExecution => "error-during-execution",
            Outcome::ApiError { .. } => "api-error",
            Outcome::NoResult { .. } => "no-result",
            Outcome::TimedOut => "timed-out",
            Outcome::IdleTimeout => "idle-timeout",
            Outcome::StoppedByPolicy => "stopped-by-policy",
            Outcome::Cancelled => "cancelled",
            Outcome::UsageLimit { .. } => "usage-limit",
            Outcome::SpawnFailed(_) => "spawn-failed",
        }
    }

    /// Whether a fresh attempt may fix it (API overload, 429, 5xx, dropped connection, a crash).
    pub fn is_transient(&self) -> bool {
        judge::is_transient(self)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::MaxTurns => f.write_str("reached the maximum number of turns"),
            Outcome::MaxBudget => f.write_str("reached the maximum budget"),
            Outcome::DuringExecution => f.write_str("error during execution"),
            Outcome::ApiError {
                status: Some(s),
                message,
            } => write!(f, "API error {s}: {message}"),
            Outcome::ApiError {
                status: None,
                message,
            } => write!(f, "API error: {message}"),
            Outcome::NoResult { exit } => write!(f, "ended without a result line ({exit})"),
            Outcome::TimedOut => f.write_str("timed out"),
            Outcome::IdleTimeout => f.write_str("no output for too long (idle timeout)"),
            Outcome::StoppedByPolicy => f.write_str("stopped by the policy"),
            Outcome::Cancelled => f.write_str("cancelled by the operator"),
            Outcome::UsageLimit {
                message,
                resets: Some(r),
            } => {
                write!(f, "usage limit reached (resets {r}): {message}")
            }
            Outcome::UsageLimit {
                message,
                resets: None,
            } => {
                write!(f, "usage limit reached: {message}")
            }
            Outcome::SpawnFailed(m) => write!(f, "could not start the agent: {m}"),
        }
    }
}

/// The report of one call (all its attempts).
#[derive(Debug, Clone, PartialEq)]
pub struct CallReport {
    /// The last attempt's outcome.
    pub outcome: Outcome,
    /// The last attempt's process id.
    pub pid: Option<u32>,
    /// The last attempt's session id (from its stream).
    pub session_id: Option<String>,
    /// The last attempt's `result` text.
    pub result_text: Option<String>,
    /// Turns, cost and tokens summed over all attempts. Input tokens include cache reads and writes.
    pub num_turns: u32,
    /// The API-equivalent cost the CLI reported, in dollars.
    pub cost_usd: f64,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// From the first spawn to the end of the last teardown, backoffs included.
    pub duration: Duration,
    /// Processes started (0 when interrupted before the first).
    pub attempts: u32,
    /// The call's transcript file.
    pub transcript: PathBuf,
    /// How the last attempt's process exited.
    pub exit: Option<ExitInfo>,
    /// True when the end was proven: process reaped, no descendant alive, output at EOF. False
    /// only when something survived SIGKILL (or a process kept the output open) within the
    /// graces; `survivors` and the transcript say what. A call whose end is not proven is never
    /// retried: nothing starts after it.
    pub clean: bool,
    /// The processes that keep the end from being proven (empty when `clean`; possibly empty
    /// when the output is held open by a process the host may not inspect).
    pub survivors: Vec<crate::process::Survivor>,
    /// The last `rate_limit_event` of the last attempt that rejected a request: for a
    /// [`Outcome::UsageLimit`], when the limit resets (the authority over the message's text).
    pub rejected_by: Option<RateLimit>,
}

/// Runs one agent call, with retries of transient failures, and returns when it has ended (see
/// the module doc). `on_event` sees every summarised event and may stop the call; `on_spawn`
/// gets each attempt's pid; `interrupts` carries the operator's Ctrl-C.
pub async fn run(
    spec: &CallSpec,
    limits: &Limits,
    on_event: &mut (dyn FnMut(&Event) -> Directive + Send),
    on_spawn: &mut (dyn FnMut(u32) + Send),
    mut interrupts: watch::Receiver<Interrupt>,
) -> CallReport {
    let started = Instant::now();
    let mut totals = attempt::Totals::default();
    let mut attempts = 0u32;
    // `max_budget_usd` is the call's, not each attempt's: a retry gets what is left of it.
    let mut spent = 0.0_f64;
    loop {
        if *interrupts.borrow_and_update() != Interrupt::None {
            return totals.report(Outcome::Cancelled, spec, attempts, started, true);
        }
        let attempt_limits = Limits {
            // The first attempt gets the budget as configured.
            max_budget_usd: limits.max_budget_usd.map(|b| {
                if attempts == 0 {
                    b
                } else {
                    remaining_budget(b, spent)
                }
            }),
            ..limits.clone()
        };
        attempts += 1;
        let result = attempt::run_attempt(
            spec,
            &attempt_limits,
            attempts,
            on_event,
            on_spawn,
            &mut interrupts,
        )
        .await;
        spent += result.cost_usd;
        let budget_left = limits
            .max_budget_usd
            .is_none_or(|b| remaining_budget(b, spent) > 0.0);
        // An attempt whose end is not proven is never followed by another.
        let transient = result.outcome.is_transient() && attempts <= limits.retries && result.clean;
        totals.add(&result);
        if transient && !budget_left {
            // A retry would start with nothing to spend: the call ends on its budget.
            tracing::info!(attempt = attempts, outcome = %result.outcome, spent, "transient failure, but the call's budget is spent; not retrying");
            let clean = result.clean;
            let mut last = result;
            last.result_text = Some(format!(
                "the call's budget of ${} (max_budget_usd) is spent: ${spent:.2} over {attempts} \
                 attempt(s); the last ended with {}, and a retry would have nothing left",
                limits.max_budget_usd.unwrap_or_default(),
                last.outcome
            ));
            totals.last = Some(last);
            return totals.report(Outcome::MaxBudget, spec, attempts, started, clean);
        }
        let retry = transient;
        if !retry {
            let clean = result.clean;
            let outcome = result.outcome.clone();
            totals.last = Some(result);
            return totals.report(outcome, spec, attempts, started, clean);
        }
        let delay = backoff_delay(limits.retry_backoff, attempts);
        tracing::info!(attempt = attempts, outcome = %result.outcome, ?delay, "transient failure; retrying after backoff");
        totals.last = Some(result);
        let backoff = tokio::time::sleep(delay); // the documented retry backoff, the only sleep
        tokio::pin!(backoff);
        let mut interrupts_open = true;
        loop {
            tokio::select! {
                () = &mut backoff => break,
                changed = interrupts.changed(), if interrupts_open => match changed {
                    Ok(()) if *interrupts.borrow() != Interrupt::None => {
                        return totals.report(Outcome::Cancelled, spec, attempts, started, true);
                    }
                    Ok(()) => {}
                    Err(_) => interrupts_open = false,
                },
            }
        }
    }
}

/// What is left of a call's `budget` once its attempts spent `spent` (never negative; cents
/// below a thousandth of a dollar count as nothing).
fn remaining_budget(budget: f64, spent: f64) -> f64 {
    let left = budget - spent;
    if left < 0.001 {
        0.0
    } else {
        (left * 1e6).round() / 1e6
    }
}

/// The backoff before retry number `attempt` (1-based): `base * 2^(attempt-1)`, at most 10 minutes.
fn backoff_delay(base: Duration, attempt: u32) -> Duration {
    let factor = 1u32 << attempt.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(Duration::from_secs(600))
}

// What the policies learn of a call, in their vocabulary, and what they answer.

impl From<policy::Directive> for Directive {
    fn from(directive: policy::Directive) -> Self {
        match directive {
            policy::Directive::Continue => Directive::Continue,
            policy::Directive::Stop => Directive::Stop,
        }
    }
}

impl Event {
    /// The event in the policies' vocabulary; `None` for what the WIT has no word for (a
    /// rate-limit report, which the host shows to people and scripts itself).
    pub fn for_policy(&self) -> Option<AgentEvent> {
        Some(match self {
            Event::Init { model, .. } => AgentEvent::Init(model.clone()),
            Event::Text(t) => AgentEvent::Text(t.clone()),
            Event::ToolUse { name } => AgentEvent::ToolUse(name.clone()),
            Event::ToolResult { is_error } => AgentEvent::ToolResult(*is_error),
            Event::ApiRetry { attempt, .. } => AgentEvent::ApiRetry(*attempt),
            Event::RateLimit(_) => return None,
        })
    }
}

impl From<&Outcome> for OutcomeKind {
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Success => OutcomeKind::Success,
            Outcome::MaxTurns => OutcomeKind::ErrorMaxTurns,
            Outcome::MaxBudget => OutcomeKind::ErrorMaxBudget,
            Outcome::DuringExecution => OutcomeKind::ErrorDuringExecution,
            Outcome::ApiError { .. } => OutcomeKind::ApiError,
            Outcome::NoResult { .. } => OutcomeKind::NoResult,
            Outcome::TimedOut => OutcomeKind::TimedOut,
            Outcome::IdleTimeout => OutcomeKind::IdleTimeout,
            Outcome::StoppedByPolicy => OutcomeKind::StoppedByPolicy,
            Outcome::Cancelled => OutcomeKind::Cancelled,
            Outcome::UsageLimit { .. } => OutcomeKind::UsageLimit,
            Outcome::SpawnFailed(_) => OutcomeKind::SpawnFailed,
        }
    }
}

/// What the policy learns of a call: the result text for a failed call that has one, else the
/// outcome in words.
impl From<&CallReport> for CallOutcome {
    fn from(report: &CallReport) -> Self {
        let message = match &report.result_text {
            Some(text) if !matches!(report.outcome, Outcome::Success) => text.clone(),
            _ => report.outcome.to_string(),
        };
        CallOutcome {
            kind: OutcomeKind::from(&report.outcome),
            message: policy::outcome_message(&message),
            num_turns: report.num_turns,
            cost_usd: report.cost_usd,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_left_never_goes_negative() {
        assert!((remaining_budget(1.0, 0.25) - 0.75).abs() < 1e-9);
        assert_eq!(remaining_budget(1.0, 1.0), 0.0);
        assert_eq!(remaining_budget(1.0, 3.0), 0.0);
        assert_eq!(remaining_budget(0.5, 0.4995), 0.0);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff_delay(base, 1), Duration::from_millis(100));
        assert_eq!(backoff_delay(base, 2), Duration::from_millis(200));
        assert_eq!(backoff_delay(base, 4), Duration::from_millis(800));
        assert_eq!(backoff_delay(base, 40), Duration::from_secs(600));
    }

    #[test]
    fn exit_info_display() {
        assert_eq!(
            ExitInfo {
                code: Some(0),
                signal: None
            }
            .to_string(),
            "exit code 0"
        );
        assert_eq!(
            ExitInfo {
                code: None,
                signal: Some(9)
            }
            .to_string(),
            "killed by SIGKILL"
        );
    }
}
