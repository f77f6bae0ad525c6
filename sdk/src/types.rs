//! The `bmad:policy` types: the vocabulary a policy reads and answers in.
//!
//! These are the types wit-bindgen generates from `wit/policy.wit` (see [`crate::bindings`]),
//! re-exported as they are: the same [`Story`], [`Decision`], [`StepReport`], ... cross the
//! component boundary and appear in a policy's unit tests, with no mirror types and no
//! conversions. This module adds what the generated code lacks: `Default`s (so a test or a
//! request names only the fields it cares about), the WIT spelling of the enums, and a few
//! helpers on [`ParseOutcome`].

use std::hash::{Hash, Hasher};

pub use crate::bindings::types::*;

impl StoryState {
    /// Every state, in workflow order.
    pub const ALL: [StoryState; 8] = [
        StoryState::Backlog,
        StoryState::Drafted,
        StoryState::ReadyForDev,
        StoryState::InProgress,
        StoryState::Review,
        StoryState::ChangesRequested,
        StoryState::Done,
        StoryState::Blocked,
    ];

    /// The WIT (kebab-case) name: `ready-for-dev`, `changes-requested`, ...
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

    /// The state with this WIT (kebab-case) name, if any.
    pub fn from_name(name: &str) -> Option<StoryState> {
        StoryState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

// wit-bindgen derives `Eq` but not `Hash` for enums; a state is a natural map key.
impl Hash for StoryState {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (*self as u8).hash(state);
    }
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

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for Layout {
    fn default() -> Self {
        Layout::V4
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for Story {
    fn default() -> Self {
        Story {
            id: String::new(),
            epic: 0,
            title: String::new(),
            path: String::new(),
            exists: false,
            state: None,
            raw_status: None,
            cycle: 0,
            max_cycles: 0,
            retry: false,
            layout: Layout::default(),
            bmad_version: String::new(),
            epic_path: String::new(),
            gate_path: String::new(),
            sprint_status_path: String::new(),
            previous_findings: Vec::new(),
            findings_history: Vec::new(),
            rounds: Vec::new(),
        }
    }
}

impl RoundKind {
    /// The WIT (kebab-case) name: `review`, `gates`.
    pub fn as_str(self) -> &'static str {
        match self {
            RoundKind::Review => "review",
            RoundKind::Gates => "gates",
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for Candidate {
    fn default() -> Self {
        Candidate {
            id: String::new(),
            epic: 0,
            state: None,
            footprint: Vec::new(),
            footprint_known: false,
            depends_on: Vec::new(),
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for Running {
    fn default() -> Self {
        Running {
            id: String::new(),
            epic: 0,
            footprint: Vec::new(),
            footprint_known: false,
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for AgentRequest {
    fn default() -> Self {
        AgentRequest {
            prompt: String::new(),
            max_turns: None,
            allowed_tools: Vec::new(),
            model: None,
            append_system_prompt: None,
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for GateReport {
    fn default() -> Self {
        GateReport {
            name: String::new(),
            passed: false,
            exit_code: None,
            timed_out: false,
            output_tail: String::new(),
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for QaGate {
    fn default() -> Self {
        QaGate {
            path: String::new(),
            gate: String::new(),
            text: String::new(),
        }
    }
}

#[expect(
    clippy::derivable_impls,
    reason = "a type generated by wit-bindgen: a derive would have to go through its additional_derives"
)]
impl Default for StepReport {
    fn default() -> Self {
        StepReport {
            outcome: None,
            document: String::new(),
            status: ParseOutcome::default(),
            gates: Vec::new(),
            qa_gate: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in StoryState::ALL {
            assert_eq!(StoryState::from_name(state.as_str()), Some(state));
        }
        assert_eq!(StoryState::from_name("Done"), None);
    }

    #[test]
    fn outcomes_describe_themselves() {
        assert_eq!(
            ParseOutcome::found(StoryState::Review, "Ready for Review").describe(),
            "review (\"Ready for Review\")"
        );
        assert_eq!(ParseOutcome::default().describe(), "missing (empty file)");
        assert_eq!(
            ParseOutcome::found(StoryState::Done, "Done").state(),
            Some(StoryState::Done)
        );
    }
}
