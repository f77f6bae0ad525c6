//! An example team QA policy, stricter than the default.
//!
//! Same prompts and rules as the default `qa` policy (see [`bmad_policy::qa`]) with
//! [`QaRules::STRICT`]:
//! - a CONCERNS gate counts as changes requested: `send-back` with the gate's findings;
//! - a story is done only when every acceptance-criterion and task checkbox in it is checked
//!   (`- [x]`); on a PASS / WAIVED gate (or a v6 review that set done) with unchecked boxes,
//!   those boxes go back to Dev as findings;
//! - convergence: besides the default rule (the previous round's findings all back, by
//!   fingerprint, escalates), every review round must have fewer findings than the one before.
//!
//! Select it with `[roles] qa = "qa-strict"` or `--policy qa=qa-strict`.

use bmad_policy::qa::{self, QaRules};
use bmad_policy::types::{Decision, StepReport, Story};
use bmad_policy::{Policy, prompt};

/// This policy's rules.
pub const RULES: QaRules = QaRules::STRICT;

/// The strict QA policy.
#[derive(Debug)]
pub struct QaStrict;

impl Policy for QaStrict {
    fn begin(story: &Story, _document: &str) -> Decision {
        Decision::InvokeAgent(prompt::qa(story))
    }

    fn end(story: &Story, report: &StepReport) -> Decision {
        qa::end(&RULES, story, report)
    }
}

bmad_policy::export_policy!(QaStrict);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::{CallOutcome, Layout, OutcomeKind, ParseOutcome, QaGate, StoryState};

    const GATE_CONCERNS: &str = r#"gate: CONCERNS
status_reason: "Minor gaps"
top_issues:
  - id: "MNT-001"
    severity: low
    finding: "Handler is long"
"#;

    const ALL_CHECKED: &str = r#"# Story 1.2: R

## Status

Review

## Acceptance Criteria

1. Works.

## Tasks / Subtasks

- [x] Task 1 (AC: 1)
  - [X] Subtask 1.1

## QA Results

- [ ] Nice to have
"#;

    const OPEN_TASKS: &str = r#"# Story 1.2: R

## Status

Review

## Tasks / Subtasks

- [x] Task 1
- [ ] Task 2: Tests (AC: 2)
  - [ ] Subtask 2.1: Integration test

```md
- [ ] in a fence
```
"#;

    fn story(history: &[u32]) -> Story {
        Story {
            id: "1.2".into(),
            path: "docs/stories/1.2.story.md".into(),
            exists: true,
            cycle: 1,
            max_cycles: 3,
            findings_history: history.to_vec(),
            ..Story::default()
        }
    }

    fn report(gate: Option<&str>, text: &str, doc: &str, status: ParseOutcome) -> StepReport {
        StepReport {
            outcome: Some(CallOutcome::new(OutcomeKind::Success, "ok")),
            document: doc.into(),
            status,
            qa_gate: gate.map(|g| QaGate {
                path: "docs/qa/gates/1.2-r.yml".into(),
                gate: g.into(),
                text: text.into(),
            }),
            ..StepReport::default()
        }
    }

    fn review() -> ParseOutcome {
        ParseOutcome::found(StoryState::Review, "Review")
    }

    #[test]
    fn concerns_is_changes_requested() {
        let d = QaStrict::end(
            &story(&[]),
            &report(Some("CONCERNS"), GATE_CONCERNS, ALL_CHECKED, review()),
        );
        assert_eq!(d, Decision::SendBack(vec!["low: Handler is long".into()]));
    }

    #[test]
    fn pass_with_every_box_checked_is_done() {
        let d = QaStrict::end(
            &story(&[]),
            &report(Some("PASS"), "gate: PASS\n", ALL_CHECKED, review()),
        );
        assert_eq!(d, Decision::SetState(StoryState::Done));
    }

    #[test]
    fn pass_with_unchecked_tasks_is_sent_back() {
        let d = QaStrict::end(
            &story(&[]),
            &report(Some("PASS"), "gate: PASS\n", OPEN_TASKS, review()),
        );
        assert_eq!(
            d,
            Decision::SendBack(vec![
                "unchecked item (line 10): Task 2: Tests (AC: 2)".into(),
                "unchecked item (line 11): Subtask 2.1: Integration test".into(),
            ])
        );
    }

    #[test]
    fn v6_done_with_unchecked_tasks_is_sent_back() {
        let mut s = story(&[]);
        s.layout = Layout::V6;
        let done = ParseOutcome::found(StoryState::Done, "done");
        let d = QaStrict::end(
            &s,
            &report(
                None,
                "",
                &OPEN_TASKS.replace("## Status\n\nReview", "Status: done"),
                done.clone(),
            ),
        );
        assert!(matches!(&d, Decision::SendBack(f) if f.len() == 2), "{d:?}");
        let d = QaStrict::end(&s, &report(None, "", ALL_CHECKED, done));
        assert_eq!(d, Decision::Complete);
    }

    #[test]
    fn strict_send_backs_also_obey_convergence() {
        let d = QaStrict::end(
            &story(&[2]),
            &report(Some("PASS"), "gate: PASS\n", OPEN_TASKS, review()),
        );
        assert!(
            matches!(&d, Decision::Escalate(r) if r.starts_with("review is not converging: 2 findings after 2 rounds")),
            "{d:?}"
        );
        // Strict: changed findings must also be fewer.
        let mut s = story(&[2]);
        s.previous_findings = vec!["low: a".into(), "low: b".into()];
        let d = QaStrict::end(
            &s,
            &report(Some("PASS"), "gate: PASS\n", OPEN_TASKS, review()),
        );
        assert!(
            matches!(&d, Decision::Escalate(r) if r.contains("2 findings after 2 rounds")),
            "{d:?}"
        );
        // And the same findings again are named, as in the default policy.
        s.previous_findings = vec!["unchecked item (line 9): Task 2: Tests (AC: 2)".into()];
        s.findings_history = vec![1];
        let d = QaStrict::end(
            &s,
            &report(Some("PASS"), "gate: PASS\n", OPEN_TASKS, review()),
        );
        assert!(
            matches!(&d, Decision::Escalate(r) if r.contains("finding is back, with 1 new: \"unchecked item (line 10): Task 2")),
            "{d:?}"
        );
        // Fewer and different: another round.
        s.previous_findings = vec!["low: a".into(), "low: b".into(), "low: c".into()];
        s.findings_history = vec![3];
        let d = QaStrict::end(
            &s,
            &report(Some("PASS"), "gate: PASS\n", OPEN_TASKS, review()),
        );
        assert!(matches!(&d, Decision::SendBack(f) if f.len() == 2), "{d:?}");
    }
}
