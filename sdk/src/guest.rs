//! The adapters [`crate::export_policy!`], [`crate::export_status_parser!`] and
//! [`crate::export_scheduler!`] call: from the generated `Guest` traits' owned arguments to a
//! [`Policy`], [`StatusParser`] or [`Scheduler`], with the decisions written to the host's
//! debug log.
//!
//! Not part of the API (the macros are); public only because the macros expand in the plugin's
//! crate.

use crate::host::{Level, log};
use crate::types::{
    AgentEvent, Candidate, Decision, Directive, ParseOutcome, Running, StepReport, Story,
};
use crate::{Policy, Scheduler, StatusParser, summary};

/// `begin` of policy `P`.
pub fn begin<P: Policy>(story: Story, document: String) -> Decision {
    let decision = P::begin(&story, &document);
    log(
        Level::Debug,
        &format!(
            "begin {} cycle {}: {}",
            story.id,
            story.cycle,
            summary(&decision)
        ),
    );
    decision
}

/// `on-event` of policy `P`.
pub fn on_event<P: Policy>(story: Story, event: AgentEvent) -> Directive {
    let directive = P::on_event(&story, &event);
    if directive == Directive::Stop {
        log(
            Level::Info,
            &format!("stop requested on {}", describe(&event)),
        );
    }
    directive
}

/// `end` of policy `P`.
pub fn end<P: Policy>(story: Story, report: StepReport) -> Decision {
    let decision = P::end(&story, &report);
    log(
        Level::Debug,
        &format!(
            "end {} cycle {} (status {}): {}",
            story.id,
            story.cycle,
            report.status.describe(),
            summary(&decision)
        ),
    );
    decision
}

/// `parse` of status parser `S`.
pub fn parse<S: StatusParser>(document: String) -> ParseOutcome {
    S::parse(&document)
}

/// `admit` of scheduler `S`.
pub fn admit<S: Scheduler>(
    candidates: Vec<Candidate>,
    running: Vec<Running>,
    slots: u32,
) -> Vec<String> {
    let admitted = S::admit(&candidates, &running, slots);
    log(
        Level::Debug,
        &format!(
            "admit: {} of {} candidates ({} running, {slots} free): {}",
            admitted.len(),
            candidates.len(),
            running.len(),
            admitted.join(", ")
        ),
    );
    admitted
}

/// An event as the log names it (the plain Rust debug form, as before the SDK).
fn describe(event: &AgentEvent) -> String {
    match event {
        AgentEvent::Init(m) => format!("Init({m:?})"),
        AgentEvent::Text(s) => format!("Text({s:?})"),
        AgentEvent::ToolUse(s) => format!("ToolUse({s:?})"),
        AgentEvent::ToolResult(e) => format!("ToolResult({e:?})"),
        AgentEvent::ApiRetry(n) => format!("ApiRetry({n:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_as_before() {
        assert_eq!(describe(&AgentEvent::Text("STOP".into())), "Text(\"STOP\")");
        assert_eq!(describe(&AgentEvent::ApiRetry(2)), "ApiRetry(2)");
    }
}
