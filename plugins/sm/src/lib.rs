//! The default Scrum Master policy: draft the story the host names, at the path it names.
//!
//! - `begin`: the story file exists → `complete` (an existing story is never redrafted or
//!   overwritten); otherwise → `invoke-agent` with the SM prompt (v4 `create-next-story` for this
//!   id, v6 `create-story`).
//! - `end`: the call succeeded and the document now exists with a parsed status (found or
//!   doubtful: the SM wrote *a* status; the workflow judges it) → `complete`; otherwise → `fail`
//!   naming the expected path and what happened.
//! - `on-event`: always continue (the host enforces the limits).

use bmad_policy::types::{Decision, OutcomeKind, ParseOutcome, StepReport, Story};
use bmad_policy::{Policy, markdown::clip, prompt};

/// The SM policy.
#[derive(Debug)]
pub struct Sm;

impl Policy for Sm {
    fn begin(story: &Story, _document: &str) -> Decision {
        if story.exists {
            return Decision::Complete;
        }
        Decision::InvokeAgent(prompt::sm(story))
    }

    fn end(story: &Story, report: &StepReport) -> Decision {
        match &report.outcome {
            Some(o) if o.kind == OutcomeKind::Success => {}
            Some(o) => {
                return Decision::Fail(format!(
                    "SM did not draft `{}`: the agent call ended with {}: {}",
                    story.path,
                    o.kind.as_str(),
                    clip(o.message.trim(), 400)
                ));
            }
            None => return Decision::Fail(format!("SM got no agent outcome for `{}`", story.path)),
        }
        match &report.status {
            ParseOutcome::Found(_) | ParseOutcome::Doubtful(_) => Decision::Complete,
            _ if report.document.trim().is_empty() => Decision::Fail(format!(
                "SM finished but `{}` was not written (or is empty): status {}",
                story.path,
                report.status.describe()
            )),
            other => Decision::Fail(format!(
                "SM wrote `{}` but it has no usable status: {}",
                story.path,
                other.describe()
            )),
        }
    }
}

bmad_policy::export_policy!(Sm);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::{CallOutcome, Layout, MissingReason, StoryState};

    fn story(exists: bool) -> Story {
        Story {
            id: "1.4".into(),
            epic: 1,
            path: "docs/stories/1.4.story.md".into(),
            exists,
            cycle: 1,
            max_cycles: 3,
            ..Story::default()
        }
    }

    fn report(kind: OutcomeKind, document: &str, status: ParseOutcome) -> StepReport {
        StepReport {
            outcome: Some(CallOutcome::new(kind, "msg")),
            document: document.into(),
            status,
            ..StepReport::default()
        }
    }

    #[test]
    fn an_existing_story_is_never_redrafted() {
        assert_eq!(Sm::begin(&story(true), "# Story 1.4\n"), Decision::Complete);
    }

    #[test]
    fn a_missing_story_is_drafted_at_its_path() {
        for layout in [Layout::V4, Layout::V6] {
            let mut s = story(false);
            s.layout = layout;
            match Sm::begin(&s, "") {
                Decision::InvokeAgent(req) => {
                    assert!(
                        req.prompt.contains("`docs/stories/1.4.story.md`"),
                        "{}",
                        req.prompt
                    );
                    assert!(req.prompt.contains("1.4"));
                }
                other => panic!("expected invoke-agent, got {other:?}"),
            }
        }
    }

    #[test]
    fn end_completes_when_the_story_now_has_a_status() {
        let found = ParseOutcome::found(StoryState::Drafted, "Draft");
        assert_eq!(
            Sm::end(
                &story(false),
                &report(OutcomeKind::Success, "## Status\n\nDraft\n", found)
            ),
            Decision::Complete
        );
    }

    #[test]
    fn end_fails_naming_the_path_and_outcome() {
        let missing = ParseOutcome::Missing(MissingReason::EmptyFile);
        let d = Sm::end(&story(false), &report(OutcomeKind::Success, "", missing));
        assert!(
            matches!(&d, Decision::Fail(r) if r.contains("docs/stories/1.4.story.md") && r.contains("not written")),
            "{d:?}"
        );

        let no_status = ParseOutcome::Missing(MissingReason::NoStatus);
        let d = Sm::end(
            &story(false),
            &report(OutcomeKind::Success, "# Story\n", no_status),
        );
        assert!(
            matches!(&d, Decision::Fail(r) if r.contains("no usable status") && r.contains("no status")),
            "{d:?}"
        );

        let found = ParseOutcome::found(StoryState::Drafted, "Draft");
        let d = Sm::end(
            &story(false),
            &report(OutcomeKind::ErrorMaxTurns, "x", found),
        );
        assert!(
            matches!(&d, Decision::Fail(r) if r.contains("error-max-turns") && r.contains("1.4.story.md")),
            "{d:?}"
        );
    }

    #[test]
    fn events_never_stop_the_sm() {
        use bmad_policy::types::{AgentEvent, Directive};
        assert_eq!(
            Sm::on_event(&story(false), &AgentEvent::ApiRetry(9)),
            Directive::Continue
        );
    }
}
