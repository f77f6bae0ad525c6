//! Plain Rust mirrors of the `bmad:policy` WIT types the policies use.
//!
//! Decision logic takes and returns these, so it runs and is tested on the host target; the
//! wasm-only glue ([`crate::wit`]) converts from and to the generated bindings.

/// The canonical story states (WIT `story-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoryState {
    Backlog,
    Drafted,
    ReadyForDev,
    InProgress,
    Review,
    ChangesRequested,
    Done,
    Blocked,
}

impl StoryState {
    /// The WIT (kebab-case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoryState::Backlog => "backlog",
            StoryState::Drafted => "drafted",
            StoryState::ReadyForDev => "ready-for-dev",
            StoryState::InProgress => "in-progress",
            StoryState::Review => "review",
            StoryState::ChangesRequested => "changes-requested",
            StoryState::Done => "done",
            StoryState::Blocked => "blocked",
        }
    }
}

/// The BMAD project layout (WIT `layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `.bmad-core/` (BMAD 4.x).
    #[default]
    V4,
    /// `_bmad/` (BMAD 6.x).
    V6,
}

/// What the host knows about the story (WIT `story`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Story {
    pub id: String,
    pub epic: u32,
    pub title: String,
    /// Story file path relative to the project root.
    pub path: String,
    pub exists: bool,
    pub state: Option<StoryState>,
    pub raw_status: Option<String>,
    /// Dev/QA cycle, starting at 1.
    pub cycle: u32,
    pub max_cycles: u32,
    /// The previous attempt of this step was interrupted.
    pub retry: bool,
    pub layout: Layout,
    pub bmad_version: String,
    pub epic_path: String,
    /// QA gate file path (v4), empty when not applicable.
    pub gate_path: String,
    /// `sprint-status.yaml` path (v6), empty when not applicable.
    pub sprint_status_path: String,
    pub previous_findings: Vec<String>,
    pub findings_history: Vec<u32>,
}

/// A request to run the Claude agent (WIT `agent-request`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentRequest {
    pub prompt: String,
    pub max_turns: Option<u32>,
    pub allowed_tools: Vec<String>,
    pub model: Option<String>,
    pub append_system_prompt: Option<String>,
}

/// What a policy wants the host to do next (WIT `decision`).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    InvokeAgent(AgentRequest),
    RunGates,
    SetState(StoryState),
    SendBack(Vec<String>),
    Complete,
    Fail(String),
    Escalate(String),
}

/// A summarised line of the agent's stream (WIT `agent-event`).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Init(String),
    Text(String),
    ToolUse(String),
    ToolResult(bool),
    ApiRetry(u32),
}

/// A policy's answer to an event (WIT `directive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    Continue,
    Stop,
}

/// How an agent call ended (WIT `outcome-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Success,
    ErrorMaxTurns,
    ErrorMaxBudget,
    ErrorDuringExecution,
    ApiError,
    NoResult,
    TimedOut,
    IdleTimeout,
    StoppedByPolicy,
    Cancelled,
    UsageLimit,
    SpawnFailed,
}

impl OutcomeKind {
    /// The WIT (kebab-case) name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Success => "success",
            OutcomeKind::ErrorMaxTurns => "error-max-turns",
            OutcomeKind::ErrorMaxBudget => "error-max-budget",
            OutcomeKind::ErrorDuringExecution => "error-during-execution",
            OutcomeKind::ApiError => "api-error",
            OutcomeKind::NoResult => "no-result",
            OutcomeKind::TimedOut => "timed-out",
            OutcomeKind::IdleTimeout => "idle-timeout",
            OutcomeKind::StoppedByPolicy => "stopped-by-policy",
            OutcomeKind::Cancelled => "cancelled",
            OutcomeKind::UsageLimit => "usage-limit",
            OutcomeKind::SpawnFailed => "spawn-failed",
        }
    }
}

/// An agent call's outcome (WIT `call-outcome`).
#[derive(Debug, Clone, PartialEq)]
pub struct CallOutcome {
    pub kind: OutcomeKind,
    pub message: String,
    pub num_turns: u32,
    pub cost_usd: f64,
    pub duration_ms: u64,
}

impl CallOutcome {
    /// An outcome of this kind with a message (for tests and examples).
    pub fn new(kind: OutcomeKind, message: &str) -> Self {
        CallOutcome {
            kind,
            message: message.to_owned(),
            num_turns: 0,
            cost_usd: 0.0,
            duration_ms: 0,
        }
    }
}

/// One quality-gate command's result (WIT `gate-report`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateReport {
    pub name: String,
    pub passed: bool,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub output_tail: String,
}

/// A BMAD QA gate file (WIT `qa-gate`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QaGate {
    pub path: String,
    /// `PASS`, `CONCERNS`, `FAIL`, `WAIVED`, or what the file says.
    pub gate: String,
    pub text: String,
}

/// Where a status value was read (WIT `status-source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusSource {
    Section,
    Line,
    Frontmatter,
}

/// One status value as written (WIT `status-value`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusValue {
    pub raw: String,
    pub line: u32,
    pub source: StatusSource,
    pub state: Option<StoryState>,
}

/// Why no status could be read (WIT `missing-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingReason {
    EmptyFile,
    NotText,
    NoStatus,
    EmptyValue(u32),
}

/// The parsed status of a document (WIT `parse-outcome`).
#[derive(Debug, Clone, PartialEq)]
pub enum ParseOutcome {
    Found(StatusValue),
    Doubtful(StatusValue),
    Conflict(Vec<StatusValue>),
    Missing(MissingReason),
}

impl ParseOutcome {
    /// A found value in this state (for tests and examples).
    pub fn found(state: StoryState, raw: &str) -> Self {
        ParseOutcome::Found(StatusValue {
            raw: raw.to_owned(),
            line: 1,
            source: StatusSource::Section,
            state: Some(state),
        })
    }

    /// The state to act on: a found value's state only.
    pub fn state(&self) -> Option<StoryState> {
        match self {
            ParseOutcome::Found(v) => v.state,
            _ => None,
        }
    }

    /// One line describing the outcome, for reasons and logs: `review ("Ready for Review")`,
    /// `doubtful "Completed" (done?)`, `conflict: "Draft" / "Done"`, `missing (no status)`.
    pub fn describe(&self) -> String {
        match self {
            ParseOutcome::Found(v) => match v.state {
                Some(s) => format!("{} ({:?})", s.as_str(), v.raw),
                None => format!("{:?}", v.raw),
            },
            ParseOutcome::Doubtful(v) => match v.state {
                Some(s) => format!("doubtful {:?} ({}?)", v.raw, s.as_str()),
                None => format!("unknown {:?}", v.raw),
            },
            ParseOutcome::Conflict(vs) => {
                let raws: Vec<String> = vs.iter().map(|v| format!("{:?}", v.raw)).collect();
                format!("conflict: {}", raws.join(" / "))
            }
            ParseOutcome::Missing(reason) => match reason {
                MissingReason::EmptyFile => "missing (empty file)".to_owned(),
                MissingReason::NotText => "missing (not text)".to_owned(),
                MissingReason::NoStatus => "missing (no status)".to_owned(),
                MissingReason::EmptyValue(line) => format!("missing (empty value at line {line})"),
            },
        }
    }
}

impl Default for ParseOutcome {
    fn default() -> Self {
        ParseOutcome::Missing(MissingReason::EmptyFile)
    }
}

/// Everything the policy learns after a step (WIT `step-report`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepReport {
    /// `None` when the last decision was `run-gates`.
    pub outcome: Option<CallOutcome>,
    pub document: String,
    pub status: ParseOutcome,
    pub gates: Vec<GateReport>,
    pub qa_gate: Option<QaGate>,
}
