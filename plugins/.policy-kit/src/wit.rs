//! The `agent-policy` WIT glue (wasm32 only): generated bindings, conversions between the
//! generated types and [`crate::types`], and the adapters [`crate::export_policy!`] calls.
#![allow(unsafe_code)] // wit-bindgen's generated glue (imports, canonical ABI) is unsafe code.

wit_bindgen::generate!({
    world: "agent-policy",
    path: "../../wit",
    pub_export_macro: true,
    default_bindings_module: "bmad_policy_kit::wit",
});

use bmad::policy::host::{self, Level as WitLevel};
use bmad::policy::types as w;

use crate::types as t;
use crate::{Level, Policy, log as kit_log, summary};

pub use w::{AgentEvent as WitEvent, Decision as WitDecision, Directive as WitDirective};
pub use w::{StepReport as WitReport, Story as WitStory};

/// Forwards a log line to the host.
pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => WitLevel::Trace,
        Level::Debug => WitLevel::Debug,
        Level::Info => WitLevel::Info,
        Level::Warn => WitLevel::Warn,
        Level::Error => WitLevel::Error,
    };
    host::log(level, message);
}

/// `begin` of policy `P`, over the WIT types.
pub fn begin<P: Policy>(story: WitStory, document: String) -> WitDecision {
    let story = story_from(story);
    let decision = P::begin(&story, &document);
    kit_log(
        Level::Debug,
        &format!(
            "begin {} cycle {}: {}",
            story.id,
            story.cycle,
            summary(&decision)
        ),
    );
    decision_to(decision)
}

/// `on-event` of policy `P`, over the WIT types.
pub fn on_event<P: Policy>(story: WitStory, event: WitEvent) -> WitDirective {
    let event = match event {
        w::AgentEvent::Init(m) => t::AgentEvent::Init(m),
        w::AgentEvent::Text(s) => t::AgentEvent::Text(s),
        w::AgentEvent::ToolUse(s) => t::AgentEvent::ToolUse(s),
        w::AgentEvent::ToolResult(e) => t::AgentEvent::ToolResult(e),
        w::AgentEvent::ApiRetry(n) => t::AgentEvent::ApiRetry(n),
    };
    match P::on_event(&story_from(story), &event) {
        t::Directive::Continue => w::Directive::Continue,
        t::Directive::Stop => {
            kit_log(Level::Info, &format!("stop requested on {event:?}"));
            w::Directive::Stop
        }
    }
}

/// `end` of policy `P`, over the WIT types.
pub fn end<P: Policy>(story: WitStory, report: WitReport) -> WitDecision {
    let story = story_from(story);
    let report = report_from(report);
    let decision = P::end(&story, &report);
    kit_log(
        Level::Debug,
        &format!(
            "end {} cycle {} (status {}): {}",
            story.id,
            story.cycle,
            report.status.describe(),
            summary(&decision)
        ),
    );
    decision_to(decision)
}

fn state_from(s: w::StoryState) -> t::StoryState {
    match s {
        w::StoryState::Backlog => t::StoryState::Backlog,
        w::StoryState::Drafted => t::StoryState::Drafted,
        w::StoryState::ReadyForDev => t::StoryState::ReadyForDev,
        w::StoryState::InProgress => t::StoryState::InProgress,
        w::StoryState::Review => t::StoryState::Review,
        w::StoryState::ChangesRequested => t::StoryState::ChangesRequested,
        w::StoryState::Done => t::StoryState::Done,
        w::StoryState::Blocked => t::StoryState::Blocked,
    }
}

fn state_to(s: t::StoryState) -> w::StoryState {
    match s {
        t::StoryState::Backlog => w::StoryState::Backlog,
        t::StoryState::Drafted => w::StoryState::Drafted,
        t::StoryState::ReadyForDev => w::StoryState::ReadyForDev,
        t::StoryState::InProgress => w::StoryState::InProgress,
        t::StoryState::Review => w::StoryState::Review,
        t::StoryState::ChangesRequested => w::StoryState::ChangesRequested,
        t::StoryState::Done => w::StoryState::Done,
        t::StoryState::Blocked => w::StoryState::Blocked,
    }
}

fn story_from(s: WitStory) -> t::Story {
    t::Story {
        id: s.id,
        epic: s.epic,
        title: s.title,
        path: s.path,
        exists: s.exists,
        state: s.state.map(state_from),
        raw_status: s.raw_status,
        cycle: s.cycle,
        max_cycles: s.max_cycles,
        retry: s.retry,
        layout: match s.layout {
            w::Layout::V4 => t::Layout::V4,
            w::Layout::V6 => t::Layout::V6,
        },
        bmad_version: s.bmad_version,
        epic_path: s.epic_path,
        gate_path: s.gate_path,
        sprint_status_path: s.sprint_status_path,
        previous_findings: s.previous_findings,
        findings_history: s.findings_history,
    }
}

fn value_from(v: w::StatusValue) -> t::StatusValue {
    t::StatusValue {
        raw: v.raw,
        line: v.line,
        source: match v.source {
            w::StatusSource::Section => t::StatusSource::Section,
            w::StatusSource::Line => t::StatusSource::Line,
            w::StatusSource::Frontmatter => t::StatusSource::Frontmatter,
        },
        state: v.state.map(state_from),
    }
}

fn report_from(r: WitReport) -> t::StepReport {
    t::StepReport {
        outcome: r.outcome.map(|o| t::CallOutcome {
            kind: match o.kind {
                w::OutcomeKind::Success => t::OutcomeKind::Success,
                w::OutcomeKind::ErrorMaxTurns => t::OutcomeKind::ErrorMaxTurns,
                w::OutcomeKind::ErrorMaxBudget => t::OutcomeKind::ErrorMaxBudget,
                w::OutcomeKind::ErrorDuringExecution => t::OutcomeKind::ErrorDuringExecution,
                w::OutcomeKind::ApiError => t::OutcomeKind::ApiError,
                w::OutcomeKind::NoResult => t::OutcomeKind::NoResult,
                w::OutcomeKind::TimedOut => t::OutcomeKind::TimedOut,
                w::OutcomeKind::IdleTimeout => t::OutcomeKind::IdleTimeout,
                w::OutcomeKind::StoppedByPolicy => t::OutcomeKind::StoppedByPolicy,
                w::OutcomeKind::Cancelled => t::OutcomeKind::Cancelled,
                w::OutcomeKind::UsageLimit => t::OutcomeKind::UsageLimit,
                w::OutcomeKind::SpawnFailed => t::OutcomeKind::SpawnFailed,
            },
            message: o.message,
            num_turns: o.num_turns,
            cost_usd: o.cost_usd,
            duration_ms: o.duration_ms,
        }),
        document: r.document,
        status: match r.status {
            w::ParseOutcome::Found(v) => t::ParseOutcome::Found(value_from(v)),
            w::ParseOutcome::Doubtful(v) => t::ParseOutcome::Doubtful(value_from(v)),
            w::ParseOutcome::Conflict(vs) => {
                t::ParseOutcome::Conflict(vs.into_iter().map(value_from).collect())
            }
            w::ParseOutcome::Missing(m) => t::ParseOutcome::Missing(match m {
                w::MissingReason::EmptyFile => t::MissingReason::EmptyFile,
                w::MissingReason::NotText => t::MissingReason::NotText,
                w::MissingReason::NoStatus => t::MissingReason::NoStatus,
                w::MissingReason::EmptyValue(line) => t::MissingReason::EmptyValue(line),
            }),
        },
        gates: r
            .gates
            .into_iter()
            .map(|g| t::GateReport {
                name: g.name,
                passed: g.passed,
                exit_code: g.exit_code,
                timed_out: g.timed_out,
                output_tail: g.output_tail,
            })
            .collect(),
        qa_gate: r.qa_gate.map(|g| t::QaGate {
            path: g.path,
            gate: g.gate,
            text: g.text,
        }),
    }
}

fn decision_to(d: t::Decision) -> WitDecision {
    match d {
        t::Decision::InvokeAgent(r) => w::Decision::InvokeAgent(w::AgentRequest {
            prompt: r.prompt,
            max_turns: r.max_turns,
            allowed_tools: r.allowed_tools,
            model: r.model,
            append_system_prompt: r.append_system_prompt,
        }),
        t::Decision::RunGates => w::Decision::RunGates,
        t::Decision::SetState(s) => w::Decision::SetState(state_to(s)),
        t::Decision::SendBack(f) => w::Decision::SendBack(f),
        t::Decision::Complete => w::Decision::Complete,
        t::Decision::Fail(r) => w::Decision::Fail(r),
        t::Decision::Escalate(r) => w::Decision::Escalate(r),
    }
}
