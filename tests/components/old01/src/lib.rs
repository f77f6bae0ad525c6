//! A QA policy built against `bmad:policy@0.1.0`, from the host's frozen copy of that WIT
//! (`host/wit/0.1.0/`), as a plugin written before 0.2.0 was: the host must keep loading and
//! running it (adapting its types) beside the 0.2.0 plugins.
//!
//! - `begin`: `invoke-agent` asking for a review of the story, logging through the 0.1.0 host.
//! - `end`: a failed call fails; a QA gate of PASS, CONCERNS or WAIVED sets the story `done`;
//!   a story already `done` completes; anything else goes back to Dev with one finding naming
//!   the gate and how many earlier rounds the story had (`findings-history`, which 0.1.0 has).
#![allow(unsafe_code)] // wit-bindgen's generated glue (exports, canonical ABI) is unsafe code.

wit_bindgen::generate!({
    path: "../../../host/wit/0.1.0",
    world: "agent-policy",
});

use bmad::policy::host::{self, Level};
use bmad::policy::types::{AgentRequest, OutcomeKind, ParseOutcome, StoryState};

struct Old;

impl Guest for Old {
    fn begin(story: Story, _document: String) -> Decision {
        host::log(
            Level::Info,
            &format!("0.1.0 policy reviewing story {}", story.id),
        );
        Decision::InvokeAgent(AgentRequest {
            prompt: format!(
                "Review story {} ({}) and write the QA gate at {}",
                story.id, story.path, story.gate_path
            ),
            max_turns: None,
            allowed_tools: Vec::new(),
            model: None,
            append_system_prompt: None,
        })
    }

    fn on_event(_story: Story, _event: AgentEvent) -> Directive {
        Directive::Continue
    }

    fn end(story: Story, report: StepReport) -> Decision {
        match &report.outcome {
            Some(o) if o.kind == OutcomeKind::Success => {}
            Some(o) => return Decision::Fail(format!("QA call failed: {}", o.message)),
            None => return Decision::Fail("no agent outcome".to_string()),
        }
        if let Some(gate) = &report.qa_gate
            && matches!(gate.gate.as_str(), "PASS" | "CONCERNS" | "WAIVED")
        {
            return Decision::SetState(StoryState::Done);
        }
        if let ParseOutcome::Found(v) = &report.status
            && v.state == Some(StoryState::Done)
        {
            return Decision::Complete;
        }
        Decision::SendBack(vec![format!(
            "old QA: gate {} after {} earlier rounds",
            report
                .qa_gate
                .map_or_else(|| "missing".to_string(), |g| g.gate),
            story.findings_history.len()
        )])
    }
}

export!(Old);
