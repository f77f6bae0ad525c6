//! Components built for `bmad:policy@0.1.0`: the conversions between the current types
//! (`crate::policy`, 0.2.0) and those of the frozen 0.1.0 bindings
//! (`crate::bindings::v0_1`), so that [`super::PolicySession`] runs a 0.1.0 agent policy with
//! the same calls as a current one.
//!
//! What crosses into a 0.1.0 guest (story, event, step report) loses what 0.1.0 does not know
//! (`story.rounds`; its `previous-findings` and `findings-history` still say what the last
//! round said and how many findings each round carried); what comes back (decision,
//! directive) is the same in both versions. The status parser needs none of this: its world's
//! types did not change, and the component model checks types by structure.

use crate::bindings::v0_1::types as old;
use crate::policy as cur;

/// `From` both ways between two enums of the same cases.
macro_rules! same_enum {
    ($name:ident { $($case:ident),* $(,)? }) => {
        impl From<cur::$name> for old::$name {
            fn from(value: cur::$name) -> old::$name {
                match value {
                    $(cur::$name::$case => old::$name::$case,)*
                }
            }
        }

        impl From<old::$name> for cur::$name {
            fn from(value: old::$name) -> cur::$name {
                match value {
                    $(old::$name::$case => cur::$name::$case,)*
                }
            }
        }
    };
}

same_enum!(StoryState {
    Backlog,
    Drafted,
    ReadyForDev,
    InProgress,
    Review,
    ChangesRequested,
    Done,
    Blocked,
});
same_enum!(StatusSource {
    Section,
    Line,
    Frontmatter
});
same_enum!(Layout { V4, V6 });
same_enum!(Directive { Continue, Stop });
same_enum!(OutcomeKind {
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
});

impl From<&cur::Story> for old::Story {
    fn from(s: &cur::Story) -> old::Story {
        old::Story {
            id: s.id.clone(),
            epic: s.epic,
            title: s.title.clone(),
            path: s.path.clone(),
            exists: s.exists,
            state: s.state.map(Into::into),
            raw_status: s.raw_status.clone(),
            cycle: s.cycle,
            max_cycles: s.max_cycles,
            retry: s.retry,
            layout: s.layout.into(),
            bmad_version: s.bmad_version.clone(),
            epic_path: s.epic_path.clone(),
            gate_path: s.gate_path.clone(),
            sprint_status_path: s.sprint_status_path.clone(),
            previous_findings: s.previous_findings.clone(),
            findings_history: s.findings_history.clone(),
        }
    }
}

impl From<&cur::AgentEvent> for old::AgentEvent {
    fn from(e: &cur::AgentEvent) -> old::AgentEvent {
        match e {
            cur::AgentEvent::Init(model) => old::AgentEvent::Init(model.clone()),
            cur::AgentEvent::Text(text) => old::AgentEvent::Text(text.clone()),
            cur::AgentEvent::ToolUse(tool) => old::AgentEvent::ToolUse(tool.clone()),
            cur::AgentEvent::ToolResult(error) => old::AgentEvent::ToolResult(*error),
            cur::AgentEvent::ApiRetry(attempt) => old::AgentEvent::ApiRetry(*attempt),
        }
    }
}

impl From<&cur::StatusValue> for old::StatusValue {
    fn from(v: &cur::StatusValue) -> old::StatusValue {
        old::StatusValue {
            raw: v.raw.clone(),
            line: v.line,
            source: v.source.into(),
            state: v.state.map(Into::into),
        }
    }
}

impl From<&cur::MissingReason> for old::MissingReason {
    fn from(r: &cur::MissingReason) -> old::MissingReason {
        match r {
            cur::MissingReason::EmptyFile => old::MissingReason::EmptyFile,
            cur::MissingReason::NotText => old::MissingReason::NotText,
            cur::MissingReason::NoStatus => old::MissingReason::NoStatus,
            cur::MissingReason::EmptyValue(line) => old::MissingReason::EmptyValue(*line),
        }
    }
}

impl From<&cur::ParseOutcome> for old::ParseOutcome {
    fn from(p: &cur::ParseOutcome) -> old::ParseOutcome {
        match p {
            cur::ParseOutcome::Found(v) => old::ParseOutcome::Found(v.into()),
            cur::ParseOutcome::Doubtful(v) => old::ParseOutcome::Doubtful(v.into()),
            cur::ParseOutcome::Conflict(vs) => {
                old::ParseOutcome::Conflict(vs.iter().map(Into::into).collect())
            }
            cur::ParseOutcome::Missing(r) => old::ParseOutcome::Missing(r.into()),
        }
    }
}

impl From<&cur::CallOutcome> for old::CallOutcome {
    fn from(o: &cur::CallOutcome) -> old::CallOutcome {
        old::CallOutcome {
            kind: o.kind.into(),
            message: o.message.clone(),
            num_turns: o.num_turns,
            cost_usd: o.cost_usd,
            duration_ms: o.duration_ms,
        }
    }
}

impl From<&cur::GateReport> for old::GateReport {
    fn from(g: &cur::GateReport) -> old::GateReport {
        old::GateReport {
            name: g.name.clone(),
            passed: g.passed,
            exit_code: g.exit_code,
            timed_out: g.timed_out,
            output_tail: g.output_tail.clone(),
        }
    }
}

impl From<&cur::QaGate> for old::QaGate {
    fn from(g: &cur::QaGate) -> old::QaGate {
        old::QaGate {
            path: g.path.clone(),
            gate: g.gate.clone(),
            text: g.text.clone(),
        }
    }
}

impl From<&cur::StepReport> for old::StepReport {
    fn from(r: &cur::StepReport) -> old::StepReport {
        old::StepReport {
            outcome: r.outcome.as_ref().map(Into::into),
            document: r.document.clone(),
            status: (&r.status).into(),
            gates: r.gates.iter().map(Into::into).collect(),
            qa_gate: r.qa_gate.as_ref().map(Into::into),
        }
    }
}

impl From<old::AgentRequest> for cur::AgentRequest {
    fn from(r: old::AgentRequest) -> cur::AgentRequest {
        cur::AgentRequest {
            prompt: r.prompt,
            max_turns: r.max_turns,
            allowed_tools: r.allowed_tools,
            model: r.model,
            append_system_prompt: r.append_system_prompt,
        }
    }
}

impl From<old::Decision> for cur::Decision {
    fn from(d: old::Decision) -> cur::Decision {
        match d {
            old::Decision::InvokeAgent(request) => cur::Decision::InvokeAgent(request.into()),
            old::Decision::RunGates => cur::Decision::RunGates,
            old::Decision::SetState(state) => cur::Decision::SetState(state.into()),
            old::Decision::SendBack(findings) => cur::Decision::SendBack(findings),
            old::Decision::Complete => cur::Decision::Complete,
            old::Decision::Fail(reason) => cur::Decision::Fail(reason),
            old::Decision::Escalate(reason) => cur::Decision::Escalate(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_story_reaches_a_0_1_0_guest_without_its_rounds() {
        let story = cur::Story {
            id: "1.2".into(),
            epic: 1,
            title: "T".into(),
            path: "docs/stories/1.2.md".into(),
            exists: true,
            state: Some(cur::StoryState::ChangesRequested),
            raw_status: Some("InProgress".into()),
            cycle: 2,
            max_cycles: 3,
            retry: false,
            layout: cur::Layout::V6,
            bmad_version: "6.0.4".into(),
            epic_path: String::new(),
            gate_path: String::new(),
            sprint_status_path: "s.yaml".into(),
            previous_findings: vec!["high: A".into()],
            findings_history: vec![1],
            rounds: vec![cur::Round {
                cycle: 1,
                kind: cur::RoundKind::Review,
                findings: vec![cur::Finding {
                    fingerprint: "a".into(),
                    text: "high: A".into(),
                }],
            }],
        };
        let old = old::Story::from(&story);
        assert_eq!(old.state, Some(old::StoryState::ChangesRequested));
        assert_eq!(old.layout, old::Layout::V6);
        assert_eq!(old.previous_findings, story.previous_findings);
        assert_eq!(old.findings_history, [1]);
        let back: cur::Decision = old::Decision::SendBack(vec!["x".into()]).into();
        assert!(
            matches!(&back, cur::Decision::SendBack(f) if f == &["x"]),
            "{back:?}"
        );
        let back: cur::Decision = old::Decision::SetState(old::StoryState::Done).into();
        assert!(
            matches!(back, cur::Decision::SetState(cur::StoryState::Done)),
            "{back:?}"
        );
    }
}
