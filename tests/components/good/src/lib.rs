//! A small, well-behaved test component: both a `status-parser` and an `agent-policy`.
//!
//! Used only by the plugin host's integration tests and benchmarks. Its behaviour is simple and
//! predictable so that tests can assert exact results:
//! - `parse`: the first `Status: VALUE` line, mapped onto a canonical state (`Missing` otherwise).
//! - `begin`: a document starting `READ:PATH` reads PATH with the host's `read-file` and answers
//!   `invoke-agent` with the file's text as prompt, or `escalate` with the host's error; any other
//!   document gets `invoke-agent` with a prompt naming the story.
//! - `on-event`: `stop` for assistant text containing `STOP`, `continue` otherwise.
//! - `end`: `complete` when the agent call succeeded (or gates ran), `fail` otherwise.
//!
//! Written with the policy SDK's traits and export macros, as a plugin author would.

use bmad_policy::host::{self, Level};
use bmad_policy::types::{
    AgentEvent, AgentRequest, Decision, Directive, MissingReason, OutcomeKind, ParseOutcome,
    StatusSource, StatusValue, StepReport, Story, StoryState,
};
use bmad_policy::{Policy, StatusParser};

struct Good;

fn state_of(raw: &str) -> Option<StoryState> {
    Some(match raw.to_ascii_lowercase().as_str() {
        "backlog" => StoryState::Backlog,
        "draft" | "drafted" => StoryState::Drafted,
        "approved" | "ready-for-dev" => StoryState::ReadyForDev,
        "inprogress" | "in-progress" => StoryState::InProgress,
        "review" => StoryState::Review,
        "changes-requested" => StoryState::ChangesRequested,
        "done" => StoryState::Done,
        "blocked" => StoryState::Blocked,
        _ => return None,
    })
}

impl StatusParser for Good {
    fn parse(document: &str) -> ParseOutcome {
        if document.trim().is_empty() {
            return ParseOutcome::Missing(MissingReason::EmptyFile);
        }
        for (i, line) in document.lines().enumerate() {
            if let Some(value) = line.strip_prefix("Status:") {
                let raw = value.trim().to_string();
                let state = state_of(&raw);
                let v = StatusValue {
                    line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    source: StatusSource::Line,
                    state,
                    raw,
                };
                return match state {
                    Some(_) => ParseOutcome::Found(v),
                    None => ParseOutcome::Doubtful(v),
                };
            }
        }
        ParseOutcome::Missing(MissingReason::NoStatus)
    }
}

impl Policy for Good {
    fn begin(story: &Story, document: &str) -> Decision {
        if let Some(path) = document.strip_prefix("READ:") {
            return match host::read_file(path.trim()) {
                Ok(text) => Decision::InvokeAgent(request(text)),
                Err(e) => Decision::Escalate(e),
            };
        }
        host::log(Level::Info, &format!("begin story {}", story.id));
        Decision::InvokeAgent(request(format!(
            "Work on story {}: {} (cycle {})",
            story.id, story.title, story.cycle
        )))
    }

    fn on_event(_story: &Story, event: &AgentEvent) -> Directive {
        match event {
            AgentEvent::Text(t) if t.contains("STOP") => Directive::Stop,
            _ => Directive::Continue,
        }
    }

    fn end(_story: &Story, report: &StepReport) -> Decision {
        match &report.outcome {
            Some(o) if o.kind != OutcomeKind::Success => Decision::Fail(o.message.clone()),
            _ => Decision::Complete,
        }
    }
}

fn request(prompt: String) -> AgentRequest {
    AgentRequest {
        prompt,
        max_turns: Some(10),
        allowed_tools: Vec::new(),
        model: None,
        append_system_prompt: None,
    }
}

bmad_policy::export_policy!(Good);
bmad_policy::export_status_parser!(Good);
