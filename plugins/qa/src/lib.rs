//! The default QA policy: review the story, then turn the review's decision into a state.
//!
//! - `begin` → `invoke-agent` with the QA prompt (v4 `review-story` + `qa-gate`, gate file at
//!   the host's `gate-path`, Status untouched; v6 `code-review`, told to create action items and
//!   set the status itself).
//! - `end` ([`QaRules::LENIENT`], see [`bmad_policy::qa`]): not a success → `fail`. A gate
//!   file: PASS, WAIVED or CONCERNS → `set-state(done)`; FAIL → `send-back` with the gate's
//!   `top_issues` (or the story's QA Results); another value → `escalate`. No gate file: done →
//!   `complete`; in-progress / changes-requested → `send-back` with the open review action
//!   items; still review → `fail("QA left the story in review without a gate decision")`.
//!   A send-back whose findings are the previous round's again (by fingerprint: the same, or a
//!   superset) escalates quoting them (`review is not converging: the same 2 findings as the
//!   previous round: "…"; "…"`); when only the previous round's count is known, one with no
//!   fewer findings does (`review is not converging: 2 findings after 2 rounds …`). A round
//!   that fixes some findings and reveals new ones goes on, up to `max_cycles`.
//! - `on-event`: always continue.

use bmad_policy::qa::{self, QaRules};
use bmad_policy::types::{Decision, StepReport, Story};
use bmad_policy::{Policy, prompt};

/// This policy's rules.
pub const RULES: QaRules = QaRules::LENIENT;

/// The default QA policy.
#[derive(Debug)]
pub struct Qa;

impl Policy for Qa {
    fn begin(story: &Story, _document: &str) -> Decision {
        Decision::InvokeAgent(prompt::qa(story))
    }

    fn end(story: &Story, report: &StepReport) -> Decision {
        qa::end(&RULES, story, report)
    }
}

bmad_policy::export_policy!(Qa);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::{
        AgentEvent, CallOutcome, Directive, Layout, MissingReason, OutcomeKind, ParseOutcome,
        QaGate, StoryState,
    };

    const GATE_FAIL: &str = r#"schema: 1
story: "1.2"
gate: FAIL
status_reason: "AC 2 fails"

top_issues:
  - id: "REQ-001"
    severity: high
    finding: "Duplicate check is case-sensitive"
    suggested_action: "Lowercase the email"
  - id: "TEST-001"
    severity: low
    finding: "No test covers mixed case"

history:
  - gate: FAIL
"#;

    const STORY_V4: &str = r#"# Story 1.2: Registration

## Status

Review

## Tasks / Subtasks

- [x] Task 1

## QA Results

### Improvements Checklist

- [ ] Normalise email to lowercase
- [ ] Add rate limiting (future)
"#;

    const STORY_V6_BACK: &str = r#"# Story 1.2: R

Status: in-progress

## Tasks / Subtasks

- [x] Task 1

### Review Follow-ups (AI)

- [ ] [AI-Review][High] Size limit checked too late [src/a.rs:33]
- [ ] [AI-Review][Medium] No test for exactly 5 MB
- [x] [AI-Review][Low] Typo
"#;

    fn story(layout: Layout, history: &[u32]) -> Story {
        Story {
            id: "1.2".into(),
            epic: 1,
            path: "docs/stories/1.2.story.md".into(),
            exists: true,
            state: Some(StoryState::Review),
            cycle: history.len() as u32 + 1,
            max_cycles: 5,
            layout,
            gate_path: if layout == Layout::V4 {
                "docs/qa/gates/1.2-registration.yml".into()
            } else {
                String::new()
            },
            findings_history: history.to_vec(),
            ..Story::default()
        }
    }

    fn with_gate(gate: &str, text: &str, doc: &str) -> StepReport {
        StepReport {
            outcome: Some(CallOutcome::new(OutcomeKind::Success, "reviewed")),
            document: doc.into(),
            status: ParseOutcome::found(StoryState::Review, "Review"),
            qa_gate: Some(QaGate {
                path: "docs/qa/gates/1.2-registration.yml".into(),
                gate: gate.into(),
                text: text.into(),
            }),
            ..StepReport::default()
        }
    }

    fn without_gate(status: ParseOutcome, doc: &str) -> StepReport {
        StepReport {
            outcome: Some(CallOutcome::new(OutcomeKind::Success, "reviewed")),
            document: doc.into(),
            status,
            ..StepReport::default()
        }
    }

    #[test]
    fn begin_invokes_the_reviewer() {
        let Decision::InvokeAgent(req) = Qa::begin(&story(Layout::V4, &[]), STORY_V4) else {
            panic!("expected invoke-agent")
        };
        assert!(
            req.prompt.contains("docs/qa/gates/1.2-registration.yml")
                && req.prompt.contains("review-story")
        );
        assert_eq!(
            Qa::on_event(&story(Layout::V4, &[]), &AgentEvent::ApiRetry(50)),
            Directive::Continue
        );
    }

    #[test]
    fn pass_waived_and_concerns_are_done() {
        for gate in ["PASS", "WAIVED", "CONCERNS", "'pass'"] {
            let d = Qa::end(
                &story(Layout::V4, &[]),
                &with_gate(gate, "gate: x\n", STORY_V4),
            );
            assert_eq!(d, Decision::SetState(StoryState::Done), "{gate}");
        }
    }

    #[test]
    fn a_pass_on_a_story_already_done_completes() {
        let mut r = with_gate("PASS", "", STORY_V4);
        r.status = ParseOutcome::found(StoryState::Done, "Done");
        assert_eq!(Qa::end(&story(Layout::V4, &[]), &r), Decision::Complete);
    }

    #[test]
    fn fail_sends_back_the_gate_top_issues() {
        let d = Qa::end(
            &story(Layout::V4, &[]),
            &with_gate("FAIL", GATE_FAIL, STORY_V4),
        );
        assert_eq!(
            d,
            Decision::SendBack(vec![
                "high: Duplicate check is case-sensitive (suggested: Lowercase the email)".into(),
                "low: No test covers mixed case".into(),
            ])
        );
    }

    #[test]
    fn fail_without_top_issues_uses_the_qa_results_then_the_reason() {
        let d = Qa::end(
            &story(Layout::V4, &[]),
            &with_gate("FAIL", "gate: FAIL\nstatus_reason: 'AC 2'\n", STORY_V4),
        );
        assert_eq!(
            d,
            Decision::SendBack(vec!["Normalise email to lowercase".into()])
        );
        let d = Qa::end(
            &story(Layout::V4, &[]),
            &with_gate("FAIL", "gate: FAIL\nstatus_reason: 'AC 2'\n", "# S\n"),
        );
        assert_eq!(d, Decision::SendBack(vec!["AC 2".into()]));
    }

    #[test]
    fn an_unknown_gate_value_escalates() {
        let d = Qa::end(
            &story(Layout::V4, &[]),
            &with_gate("PASSED", "gate: PASSED\n", STORY_V4),
        );
        assert!(
            matches!(&d, Decision::Escalate(r) if r.contains("\"PASSED\"")),
            "{d:?}"
        );
    }

    #[test]
    fn a_failed_call_fails() {
        let mut r = with_gate("PASS", "", STORY_V4);
        r.outcome = Some(CallOutcome::new(OutcomeKind::NoResult, "crashed"));
        assert_eq!(
            Qa::end(&story(Layout::V4, &[]), &r),
            Decision::Fail("QA agent call ended with no-result: crashed".into())
        );
    }

    #[test]
    fn v6_done_completes() {
        let r = without_gate(
            ParseOutcome::found(StoryState::Done, "done"),
            "# S\nStatus: done\n",
        );
        assert_eq!(Qa::end(&story(Layout::V6, &[]), &r), Decision::Complete);
    }

    #[test]
    fn v6_in_progress_sends_back_the_open_action_items() {
        let r = without_gate(
            ParseOutcome::found(StoryState::InProgress, "in-progress"),
            STORY_V6_BACK,
        );
        assert_eq!(
            Qa::end(&story(Layout::V6, &[]), &r),
            Decision::SendBack(vec![
                "[AI-Review][High] Size limit checked too late [src/a.rs:33]".into(),
                "[AI-Review][Medium] No test for exactly 5 MB".into(),
            ])
        );
    }

    #[test]
    fn v6_left_in_review_fails() {
        let r = without_gate(
            ParseOutcome::found(StoryState::Review, "review"),
            "# S\nStatus: review\n",
        );
        assert_eq!(
            Qa::end(&story(Layout::V6, &[]), &r),
            Decision::Fail("QA left the story in review without a gate decision".into())
        );
        let r = without_gate(ParseOutcome::Missing(MissingReason::NoStatus), "# S\n");
        assert!(
            matches!(Qa::end(&story(Layout::V6, &[]), &r), Decision::Fail(m) if m.contains("no status"))
        );
    }

    #[test]
    fn review_that_does_not_shrink_escalates() {
        // Two findings after a round with two: not converging.
        let d = Qa::end(
            &story(Layout::V4, &[2]),
            &with_gate("FAIL", GATE_FAIL, STORY_V4),
        );
        assert_eq!(
            d,
            Decision::Escalate(
                "review is not converging: 2 findings after 2 rounds (previous round: 2)".into()
            )
        );
        // Fewer than last time: another round.
        let d = Qa::end(
            &story(Layout::V4, &[4, 3]),
            &with_gate("FAIL", GATE_FAIL, STORY_V4),
        );
        assert!(matches!(d, Decision::SendBack(f) if f.len() == 2));
        // v6 action items count the same way.
        let r = without_gate(
            ParseOutcome::found(StoryState::InProgress, "in-progress"),
            STORY_V6_BACK,
        );
        assert!(
            matches!(Qa::end(&story(Layout::V6, &[1]), &r), Decision::Escalate(m) if m.contains("2 findings"))
        );
    }

    #[test]
    fn a_gates_send_back_does_not_count_as_a_review_round() {
        let mut s = story(Layout::V4, &[1]);
        s.previous_findings =
            vec!["quality gate `test` failed (exit 101); output tail:\nboom".into()];
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(matches!(d, Decision::SendBack(f) if f.len() == 2));
        // Gate findings among the previous ones are left out: the review findings decide.
        s.previous_findings
            .push("medium: No test covers mixed case".into());
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(matches!(d, Decision::Escalate(_)), "{d:?}");
    }

    #[test]
    fn the_same_findings_again_escalate_quoting_them() {
        let mut s = story(Layout::V4, &[2]);
        s.previous_findings = vec![
            "medium: Duplicate check is case-sensitive (suggested: Use lowercase)".into(),
            "No test covers mixed case".into(),
        ];
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert_eq!(
            d,
            Decision::Escalate(
                "review is not converging: the same 2 findings as the previous round: \
                 \"high: Duplicate check is case-sensitive (suggested: Lowercase the email)\"; \
                 \"low: No test covers mixed case\""
                    .into()
            )
        );
        // A superset (one fixed finding came back with a new one) escalates as well.
        s.previous_findings.truncate(1);
        s.findings_history = vec![1];
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(
            matches!(&d, Decision::Escalate(r) if r.contains("finding is back, with 1 new")),
            "{d:?}"
        );
    }

    #[test]
    fn the_rounds_of_0_2_0_carry_the_history() {
        use bmad_policy::converge::finding;
        use bmad_policy::types::{Round, RoundKind};
        // Only `rounds` filled (the 0.1.0 fields empty): the same rule, from the rounds.
        let mut s = story(Layout::V4, &[]);
        s.cycle = 3;
        s.rounds = vec![
            Round {
                cycle: 1,
                kind: RoundKind::Review,
                findings: vec![finding("high: Password is logged")],
            },
            Round {
                cycle: 2,
                kind: RoundKind::Review,
                findings: vec![
                    finding("medium: Duplicate check is case-sensitive"),
                    finding("No test covers mixed case"),
                ],
            },
        ];
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(
            matches!(&d, Decision::Escalate(r) if r.starts_with("review is not converging: the same 2 findings")),
            "{d:?}"
        );
        // The last round was the gates': review waits for its next round.
        s.rounds[1] = Round {
            cycle: 2,
            kind: RoundKind::Gates,
            findings: vec![finding(
                "quality gate `unit` failed (exit 1); output tail:\nbroken",
            )],
        };
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(matches!(&d, Decision::SendBack(f) if f.len() == 2), "{d:?}");
    }

    #[test]
    fn changed_findings_go_on_even_when_as_many() {
        // One fixed, one new: as many findings as before, but progress.
        let mut s = story(Layout::V4, &[2]);
        s.previous_findings = vec![
            "high: Duplicate check is case-sensitive".into(),
            "high: Password is logged".into(),
        ];
        let d = Qa::end(&s, &with_gate("FAIL", GATE_FAIL, STORY_V4));
        assert!(matches!(&d, Decision::SendBack(f) if f.len() == 2), "{d:?}");
        // v6 action items, positions and tags moved: the same findings.
        let r = without_gate(
            ParseOutcome::found(StoryState::InProgress, "in-progress"),
            STORY_V6_BACK,
        );
        let mut s = story(Layout::V6, &[2]);
        s.previous_findings = vec![
            "[AI-Review][Medium] No test for exactly 5 MB".into(),
            "[AI-Review][High] Size limit checked too late [src/a.rs:12]".into(),
        ];
        assert!(
            matches!(Qa::end(&s, &r), Decision::Escalate(m) if m.contains("the same 2 findings")),
        );
    }

    #[test]
    fn the_corpus_concerns_gate_is_done_for_the_default_policy() {
        let gate = corpus("v4/docs/qa/gates/1.2-user-registration.yml");
        let doc = corpus("v4/docs/stories/1.2.story.md");
        let d = Qa::end(&story(Layout::V4, &[]), &with_gate("CONCERNS", &gate, &doc));
        assert_eq!(d, Decision::SetState(StoryState::Done));
    }

    /// A file of the shared BMAD corpus (`../../tests/corpus` from this crate, a vendored copy).
    fn corpus(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/corpus")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "corpus file {} is missing (tests/corpus): {e}",
                path.display()
            )
        })
    }
}
