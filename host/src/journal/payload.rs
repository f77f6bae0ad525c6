//! What the run loop journals for each kind of step: the intent committed before the step runs
//! and the result committed after, as typed records. They are stored as JSON objects (what
//! `bmad-host log` shows) whose shape is part of the journal format: a journal written by an
//! earlier bmad-host must still resume, so fields are only ever added, with a default.
//!
//! Fields are declared in alphabetical order, the order the journal has always stored them in.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::StepKind;
use crate::policy::{AgentRequest, CallOutcome, Decision, GateReport, ParseOutcome, StoryState};

/// A kind of journaled step: its intent's type, and the type of the result recorded for it.
pub trait StepIntent: Serialize {
    /// The kind of step this intent opens.
    const KIND: StepKind;
    /// What the step's result is, once it finished.
    type Result: Serialize + DeserializeOwned;
}

/// The intent of an `agent-call` step: the policy's request, as the agent is asked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentCallIntent {
    /// `--allowedTools` entries; empty for the CLI's default.
    pub allowed_tools: Vec<String>,
    /// The policy's turn limit, if it set one.
    pub max_turns: Option<u32>,
    /// The policy's model, if it chose one.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: String,
}

impl From<&AgentRequest> for AgentCallIntent {
    fn from(request: &AgentRequest) -> Self {
        AgentCallIntent {
            allowed_tools: request.allowed_tools.clone(),
            max_turns: request.max_turns,
            model: request.model.clone(),
            prompt: request.prompt.clone(),
        }
    }
}

impl StepIntent for AgentCallIntent {
    const KIND: StepKind = StepKind::AgentCall;
    type Result = AgentCallResult;
}

/// The result of an `agent-call` step: what the policy was told, and how the call ended.
/// A resumed run reuses `outcome` and never runs the agent again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentCallResult {
    /// Processes started (several when transient failures were retried).
    #[serde(default)]
    pub attempts: u32,
    /// Whether the end of the call was proven (process reaped, no descendant, output at EOF).
    #[serde(default)]
    pub clean: bool,
    /// What the policy was told of the call.
    pub outcome: CallOutcome,
    /// The last attempt's process id.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The transcript file.
    #[serde(default)]
    pub transcript: String,
}

/// The intent of a `status-write` step: the host setting a story's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusWriteIntent {
    /// The status text the story file had (`None`: none could be read).
    pub from: Option<String>,
    /// The state to write.
    #[serde(with = "state_name")]
    pub to: StoryState,
}

impl StepIntent for StatusWriteIntent {
    const KIND: StepKind = StepKind::StatusWrite;
    type Result = StatusWriteResult;
}

/// The result of a `status-write` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusWriteResult {
    /// The state written (or found already written).
    #[serde(with = "state_name")]
    pub written: StoryState,
}

/// The intent of a `gates` step: the gates about to run, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatesIntent {
    /// The active gates' names, in order.
    pub gates: Vec<String>,
}

impl StepIntent for GatesIntent {
    const KIND: StepKind = StepKind::Gates;
    type Result = GatesResult;
}

/// The result of a `gates` step: each gate's report, as the policy got them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatesResult {
    /// One report per gate, in order.
    #[serde(default)]
    pub reports: Vec<GateReport>,
}

/// The intent of a `teardown` record: whose end could not be proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownIntent {
    /// What ended unproven, in words (`the dev call of story 1.1 (cycle 1)`, `gate unit`).
    pub what: String,
}

impl StepIntent for TeardownIntent {
    const KIND: StepKind = StepKind::Teardown;
    type Result = TeardownResult;
}

/// The result of a `teardown` record: the processes that kept the end from being proven. A
/// later run checks each one (same pid, same start time) before it starts anything, and stops
/// while any is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeardownResult {
    /// The processes, as they were when the teardown gave up.
    #[serde(default)]
    pub survivors: Vec<SurvivorRecord>,
}

/// One process that kept the end of a call or gate from being proven.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorRecord {
    /// Its command line.
    pub command: String,
    /// True when it held the output open; false when it was alive after SIGKILL.
    #[serde(default)]
    pub holds_output: bool,
    /// Its pid.
    pub pid: i32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat`), which tells it from a
    /// later process with the same pid.
    pub start: u64,
}

/// The intent of a `sprint-sync` step: the host-owned values of v6 sprint-status the host is
/// about to put back, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SprintSyncIntent {
    /// The values to set, in file order.
    #[serde(default)]
    pub changes: Vec<SprintChange>,
    /// `sprint-status.yaml`, relative to the project root.
    pub file: String,
    /// What could not be reconciled, and why.
    #[serde(default)]
    pub problems: Vec<String>,
    /// `start` (drift found when the run began), `story-start`, `after-agent`, `story-end`
    /// or `retrospective`.
    pub when: String,
}

/// One sprint-status value the host sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SprintChange {
    /// The value it had.
    pub from: String,
    /// The key.
    pub key: String,
    /// Its line.
    pub line: u32,
    /// What the host knows that makes it so.
    pub reason: String,
    /// The value written.
    pub to: String,
}

impl StepIntent for SprintSyncIntent {
    const KIND: StepKind = StepKind::SprintSync;
    type Result = SprintSyncResult;
}

/// The result of a `sprint-sync` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SprintSyncResult {
    /// Whether the values were written (false: the write was refused, see `error`).
    pub applied: bool,
    /// Why the write was refused.
    #[serde(default)]
    pub error: Option<String>,
}

/// Which policy call a `decision` step records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyCall {
    /// The start of a role's step.
    Begin,
    /// After an agent call or a gate run.
    End,
}

/// The intent of a `decision` step: the policy call and the status it was taken on. Its result
/// is the [`Decision`] itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionIntent {
    /// `begin` or `end`.
    pub call: PolicyCall,
    /// The story's status as parsed when the policy was called.
    pub status: ParseOutcome,
}

impl StepIntent for DecisionIntent {
    const KIND: StepKind = StepKind::Decision;
    type Result = Decision;
}

/// What a lane of a parallel run does with a story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneWork {
    /// Drives it in its worktree (SM, Dev, QA, gates), to its end.
    Drive,
    /// Integrates it onto the integration branch (the integration lane).
    Integrate,
}

/// The intent of a `lane` step (`run --jobs N`): lane `lane` takes the story. A new record each
/// time a lane takes it (its sequence number counts the story's lane records), so the records
/// say, in order, which lane held the story when, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneIntent {
    /// The lane, from 1 (the integration lane carries the lane the story held).
    pub lane: u32,
    /// Driving or integrating.
    pub work: LaneWork,
}

impl StepIntent for LaneIntent {
    const KIND: StepKind = StepKind::Lane;
    type Result = LaneResult;
}

/// The result of a `lane` step: how the lane let the story go. A record with no result is a
/// lane stopped with the run (Ctrl-C, a halt, a kill).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneResult {
    /// The integration's commit on the integration branch (`None`: the story changed nothing,
    /// or it was not integrated).
    #[serde(default)]
    pub commit: Option<String>,
    /// Driving: the story's end (`done`, `escalated`, `failed`). Integrating: `integrated` or
    /// `not-integrated`.
    pub outcome: String,
    /// Why it was not integrated, or why it ended so.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The intent of an `after-story` step: `[git] after_story` about to run for a story that
/// landed as a commit. A resumed run does not run it again once it has a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterStoryIntent {
    /// The command.
    pub command: String,
    /// The story's commit (`None`: the story changed nothing).
    #[serde(default)]
    pub commit: Option<String>,
}

impl StepIntent for AfterStoryIntent {
    const KIND: StepKind = StepKind::AfterStory;
    type Result = AfterStoryResult;
}

/// The result of an `after-story` step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AfterStoryResult {
    /// Its exit code (`None`: killed by a signal, or timed out).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Whether it exited 0 in time.
    pub passed: bool,
    /// Whether it ran out of time (and was torn down).
    #[serde(default)]
    pub timed_out: bool,
}

/// A [`StoryState`] as its canonical name (`ready-for-dev`), as the journal stores states.
mod state_name {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    use crate::policy::{StoryState, parse_state, state_name};

    pub(super) fn serialize<S: Serializer>(state: &StoryState, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(state_name(*state))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<StoryState, D::Error> {
        let name = String::deserialize(d)?;
        parse_state(&name).ok_or_else(|| D::Error::custom(format!("unknown state `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::{Value, json};

    use super::*;
    use crate::policy::OutcomeKind;

    /// `bmad-host log --json` of a run written by bmad-host 0.1.0, before these types (when the
    /// run loop wrote its payloads with `json!`): the v4 sample project with a gate that fails
    /// once, so every kind of step is there.
    const OLD_LOG: &str = include_str!("testdata/log-0.1.0.ndjson");

    /// Decodes `stored` as a `T` and checks that encoding it again gives the same JSON.
    fn round_trips<T: Serialize + DeserializeOwned>(what: &str, stored: &Value) {
        let typed: T = serde_json::from_value(stored.clone())
            .unwrap_or_else(|e| panic!("the old {what} {stored} does not decode: {e}"));
        let encoded = serde_json::to_value(&typed).expect("encodes");
        assert_eq!(&encoded, stored, "{what} is stored differently now");
    }

    fn payloads<I: StepIntent + DeserializeOwned>(step: &Value) {
        let kind = I::KIND.as_str();
        round_trips::<I>(&format!("{kind} intent"), &step["intent"]);
        round_trips::<I::Result>(&format!("{kind} result"), &step["result"]);
    }

    #[test]
    fn every_payload_of_an_old_journal_decodes_and_is_stored_the_same() {
        let mut kinds = BTreeMap::new();
        for line in OLD_LOG.lines() {
            let step: Value = serde_json::from_str(line).expect("a log line");
            let kind = step["kind"].as_str().expect("kind").to_string();
            match kind.as_str() {
                "agent-call" => payloads::<AgentCallIntent>(&step),
                "decision" => payloads::<DecisionIntent>(&step),
                "gates" => payloads::<GatesIntent>(&step),
                "status-write" => payloads::<StatusWriteIntent>(&step),
                other => panic!("unexpected step kind {other}"),
            }
            *kinds.entry(kind).or_insert(0) += 1;
        }
        assert_eq!(
            kinds.keys().map(String::as_str).collect::<Vec<_>>(),
            ["agent-call", "decision", "gates", "status-write"],
            "the old log holds every kind of step the run loop writes"
        );
    }

    #[test]
    fn an_old_agent_call_result_with_only_its_outcome_still_resumes() {
        // The run loop only ever read `outcome` back.
        let old = json!({"outcome": {"kind": "ErrorMaxTurns", "message": "m", "num_turns": 9,
            "cost_usd": 1.5, "duration_ms": 7}});
        let result: AgentCallResult = serde_json::from_value(old).expect("decodes");
        assert_eq!(result.outcome.kind, OutcomeKind::ErrorMaxTurns);
        assert_eq!(result.outcome.num_turns, 9);
        let empty: GatesResult = serde_json::from_value(json!({})).expect("decodes");
        assert!(empty.reports.is_empty());
    }

    #[test]
    fn states_are_stored_by_their_canonical_names() {
        let intent = StatusWriteIntent {
            from: None,
            to: StoryState::ChangesRequested,
        };
        assert_eq!(
            serde_json::to_value(&intent).expect("encodes"),
            json!({"from": null, "to": "changes-requested"})
        );
        assert!(serde_json::from_value::<StatusWriteResult>(json!({"written": "Done"})).is_err());
    }
}
