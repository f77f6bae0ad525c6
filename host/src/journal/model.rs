//! The journal's vocabulary: ids, keys, records, and their text forms in the database.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::JournalError;
use crate::policy::StoryState;

/// A run's id: the UTC start second and 4 hex digits, `20261123T154700Z-1a2b`. Ids sort by start
/// time (to the second); the journal orders runs by insertion, so same-second runs stay ordered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `now`.
    pub(super) fn generate(now: SystemTime) -> RunId {
        let stamp: String = humantime::format_rfc3339_seconds(now)
            .to_string()
            .chars()
            .filter(|c| *c != '-' && *c != ':')
            .collect();
        let nanos = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let mut hasher = blake3::Hasher::new();
        hasher.update(&nanos.to_le_bytes());
        hasher.update(&std::process::id().to_le_bytes());
        let hash = hasher.finalize();
        let bytes = hash.as_bytes();
        RunId(format!("{stamp}-{:02x}{:02x}", bytes[0], bytes[1]))
    }

    /// The id as text (also its directory name under `.bmad-host/runs/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RunId {
    type Err = JournalError;

    /// Accepts ids of the generated shape's alphabet: ASCII letters, digits and `-`, not starting
    /// with `-`, at most 64 characters (so an id is always a safe directory name).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && !s.starts_with('-')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if ok {
            Ok(RunId(s.to_owned()))
        } else {
            Err(JournalError::BadRunId(s.to_owned()))
        }
    }
}

/// A step's row id in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepId(pub(super) i64);

impl StepId {
    /// The row id.
    pub fn get(self) -> i64 {
        self.0
    }

    /// A step id of another [`super::StepStore`] than the SQLite journal (numbered by it).
    pub fn of_store(n: i64) -> Self {
        Self(n)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Started and not finished: running now, or its process died.
    Running,
    /// Every selected story is done.
    Done,
    /// It ended with a story failed or escalated.
    Failed,
    /// Stopped by the operator (Ctrl-C) after a clean teardown; the next `run` resumes it.
    Interrupted,
    /// Left unfinished when a later `run --fresh` started; kept for the record, never resumed.
    Abandoned,
}

impl RunStatus {
    /// The text stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Abandoned => "abandoned",
        }
    }

    pub(super) fn parse(s: &str) -> Option<RunStatus> {
        Some(match s {
            "running" => RunStatus::Running,
            "done" => RunStatus::Done,
            "failed" => RunStatus::Failed,
            "interrupted" => RunStatus::Interrupted,
            "abandoned" => RunStatus::Abandoned,
            _ => return None,
        })
    }

    /// Whether the next `run` (without `--fresh`) resumes a run in this state.
    pub fn is_unfinished(self) -> bool {
        matches!(self, RunStatus::Running | RunStatus::Interrupted)
    }
}

/// One loaded plugin, as recorded for a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PluginFingerprint {
    /// The plugin's name.
    pub name: String,
    /// Its version, from its manifest.
    pub version: String,
    /// The role it serves: `status`, `sm`, `dev`, `qa`.
    pub role: String,
    /// Hash of the component's bytes (hex).
    pub wasm_hash: String,
}

/// What a run was started with, recorded so that a resume can tell whether it changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFingerprint {
    /// A hash (or any stable text) of the effective configuration.
    pub config: String,
    /// The command line, for the record (not compared on resume).
    pub args: Vec<String>,
    /// Every plugin loaded.
    pub plugins: Vec<PluginFingerprint>,
}

/// What [`super::Journal::start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub id: RunId,
    /// True when an unfinished run was resumed rather than a new one started.
    pub resumed: bool,
    /// When the run first started.
    pub started_at: SystemTime,
    /// Resumed with a different config fingerprint or plugin set than the run started with
    /// (worth a warning: replayed decisions may differ). Both sets of plugins are recorded.
    pub fingerprint_changed: bool,
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The run's id.
    pub id: RunId,
    /// When it first started.
    pub started_at: SystemTime,
    /// When it last finished, if it did.
    pub finished_at: Option<SystemTime>,
    /// How it stands.
    pub status: RunStatus,
    /// The configuration fingerprint the run started with.
    pub config: String,
    /// The command line the run started with.
    pub args: Vec<String>,
    /// Every plugin the run used, including those first seen on a resume.
    pub plugins: Vec<PluginFingerprint>,
}

/// How a story ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoryResult {
    /// The story is done.
    Done,
    /// A policy failed it, or the host could not go on with it.
    Failed,
    /// It needs a person (a status it cannot trust, a review that does not converge, ...).
    Escalated,
}

impl StoryResult {
    /// The text stored in the journal (and the `--json` `result` field).
    pub fn as_str(self) -> &'static str {
        match self {
            StoryResult::Done => "done",
            StoryResult::Failed => "failed",
            StoryResult::Escalated => "escalated",
        }
    }

    pub(super) fn parse(s: &str) -> Option<StoryResult> {
        Some(match s {
            "done" => StoryResult::Done,
            "failed" => StoryResult::Failed,
            "escalated" => StoryResult::Escalated,
            _ => return None,
        })
    }
}

/// Resources a story has used so far, summed over its agent calls.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    /// API-equivalent cost in USD, as the CLI reports it (not what a subscription user pays).
    pub cost_usd: f64,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Agent turns.
    pub turns: u32,
    /// Wall-clock time spent in agent calls and gates.
    pub duration: Duration,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.cost_usd += rhs.cost_usd;
        self.input_tokens = self.input_tokens.saturating_add(rhs.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(rhs.output_tokens);
        self.turns = self.turns.saturating_add(rhs.turns);
        self.duration = self.duration.saturating_add(rhs.duration);
    }
}

/// What the project's journal knows of a story across runs: how it first saw it, and whether its
/// `done` was accepted (it was done at that first sighting, or QA completed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The story id (`1.2`).
    pub story_id: String,
    /// Its state the first time the journal saw it; `None` when it had no readable state (no
    /// file yet, or a status that could not be trusted).
    pub first_state: Option<StoryState>,
    /// The run that first saw it.
    pub first_run: RunId,
    /// When.
    pub first_at: SystemTime,
    /// The run that accepted its `done`, while it stays done.
    pub done_run: Option<RunId>,
}

/// A story's progress within a run: what the run loop needs to pick it up again.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryRecord {
    /// The story id (`1.2`).
    pub story_id: String,
    /// Its title.
    pub title: String,
    /// The last canonical state the host saw or wrote.
    pub state: StoryState,
    /// Cycles used so far (one Dev + QA round is a cycle).
    pub cycle: u32,
    /// Set when the story is finished.
    pub result: Option<StoryResult>,
    /// What its agent calls and gates used.
    pub usage: Usage,
    /// The workflow's findings history (for example QA findings per cycle); opaque to the journal.
    pub findings: Value,
    /// A short line for people: the last thing that happened to the story.
    pub last_outcome: Option<String>,
}

impl StoryRecord {
    /// A story not started yet: cycle 0, no usage, findings `[]`.
    pub fn new(story_id: impl Into<String>, title: impl Into<String>, state: StoryState) -> Self {
        StoryRecord {
            story_id: story_id.into(),
            title: title.into(),
            state,
            cycle: 0,
            result: None,
            usage: Usage::default(),
            findings: Value::Array(Vec::new()),
            last_outcome: None,
        }
    }
}

/// One line of `bmad-host status`. Its `Display` is that line.
#[derive(Debug, Clone, PartialEq)]
pub struct StorySummary {
    /// The run it belongs to.
    pub run: RunId,
    /// The story's progress.
    pub record: StoryRecord,
    /// When it was last saved.
    pub updated_at: SystemTime,
}

/// The kinds of journaled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StepKind {
    /// Parsing the story's status with the status plugin.
    StatusParse,
    /// A policy call (`begin`, `end`) and the decision it returned.
    Decision,
    /// One Claude CLI call.
    AgentCall,
    /// Running the quality gates.
    Gates,
    /// The host writing a status into the story file / sprint-status.
    StatusWrite,
    /// A teardown whose end could not be proven: the processes that survived it, which a later
    /// run checks before it starts anything.
    Teardown,
    /// The host putting its own values of v6 sprint-status back (drift found at the start of a
    /// run, an agent's edit, an epic's closeout).
    SprintSync,
    /// A lane of a parallel run (`run --jobs N`) taking a story: to drive it in its worktree or
    /// to integrate it. Its intent and result times are when the lane held the story.
    Lane,
    /// `[git] after_story`: the operator's command run once a story landed as a commit.
    AfterStory,
}

impl StepKind {
    /// The text stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::StatusParse => "status-parse",
            StepKind::Decision => "decision",
            StepKind::AgentCall => "agent-call",
            StepKind::Gates => "gates",
            StepKind::StatusWrite => "status-write",
            StepKind::Teardown => "teardown",
            StepKind::SprintSync => "sprint-sync",
            StepKind::Lane => "lane",
            StepKind::AfterStory => "after-story",
        }
    }

    pub(super) fn parse(s: &str) -> Option<StepKind> {
        Some(match s {
            "status-parse" => StepKind::StatusParse,
            "decision" => StepKind::Decision,
            "agent-call" => StepKind::AgentCall,
            "gates" => StepKind::Gates,
            "status-write" => StepKind::StatusWrite,
            "teardown" => StepKind::Teardown,
            "sprint-sync" => StepKind::SprintSync,
            "lane" => StepKind::Lane,
            "after-story" => StepKind::AfterStory,
            _ => return None,
        })
    }
}

/// A step's identity. It must be deterministic: replaying a story after a crash produces the same
/// keys in the same order, which is how [`super::Journal::begin_step`] recognises finished and
/// interrupted steps.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepKey {
    /// The run.
    pub run: RunId,
    /// The story id.
    pub story: String,
    /// The Dev/QA cycle (0 while SM drafts).
    pub cycle: u32,
    /// `status`, `sm`, `dev`, `qa`, `gates`, `host`: whoever the step is for.
    pub role: String,
    /// What the step does.
    pub kind: StepKind,
    /// Distinguishes steps with the same (story, cycle, role, kind), in order.
    pub seq: u32,
}

/// What [`super::Journal::begin_step`] found for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum StepStart {
    /// New step: its intent is committed; run it, then [`super::Journal::finish_step`].
    Fresh(StepId),
    /// An earlier attempt has an intent but no result (the host died during it): run it again and
    /// tell the policy it is a retry (the agent may have changed files half-way). `attempt` counts
    /// from 1, so the first retry is 2.
    Retry {
        /// The step to finish.
        id: StepId,
        /// The attempt about to run.
        attempt: u32,
    },
    /// The step already finished: do not run it again; here is its result.
    Done(Value),
}

impl StepStart {
    /// The step to finish, unless it is already done.
    pub fn id(&self) -> Option<StepId> {
        match self {
            StepStart::Fresh(id) | StepStart::Retry { id, .. } => Some(*id),
            StepStart::Done(_) => None,
        }
    }

    /// The attempt about to run (1 for fresh), unless it is already done.
    pub fn attempt(&self) -> Option<u32> {
        match self {
            StepStart::Fresh(_) => Some(1),
            StepStart::Retry { attempt, .. } => Some(*attempt),
            StepStart::Done(_) => None,
        }
    }
}

/// One journaled step, for `bmad-host log`. Its `Display` is the log line.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Its row id.
    pub id: StepId,
    /// Its identity.
    pub key: StepKey,
    /// 1, or more if the step was redone after an interruption.
    pub attempt: u32,
    /// When the latest attempt's intent was committed.
    pub intent_at: SystemTime,
    /// What the step was about to do (a [`super::payload`] intent, as JSON).
    pub intent: Value,
    /// When its result was committed.
    pub result_at: Option<SystemTime>,
    /// None: the step is running, or its process died during it.
    pub result: Option<Value>,
}

/// Milliseconds since the Unix epoch (0 before it), as stored.
pub(super) fn to_ms(t: SystemTime) -> i64 {
    let ms = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub(super) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Compares story ids numerically where they have digits: `1.2` < `1.10` < `2.1`.
pub(super) fn story_order(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> impl Iterator<Item = (bool, &str)> {
        let mut rest = s;
        std::iter::from_fn(move || {
            let first = rest.chars().next()?;
            let digit = first.is_ascii_digit();
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digit)
                .unwrap_or(rest.len());
            let (chunk, tail) = rest.split_at(end);
            rest = tail;
            Some((digit, chunk))
        })
    }
    let mut left = chunks(a);
    let mut right = chunks(b);
    loop {
        match (left.next(), right.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some((true, x)), Some((true, y))) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                let ord = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
                if ord.is_ne() {
                    return ord;
                }
            }
            (Some((_, x)), Some((_, y))) => {
                let ord = x.cmp(y);
                if ord.is_ne() {
                    return ord;
                }
            }
        }
    }
}
