//! The default Developer policy: implement the story (or apply the review's fixes), then run
//! the project's quality gates.
//!
//! - `begin` → `invoke-agent` with the Dev prompt (v4 `develop-story`, or `apply-qa-fixes` on
//!   cycle > 1; v6 `dev-story`).
//! - `end` after the agent call: not a success → `fail` with the outcome kind and message;
//!   success and the status is now review (or done) → `run-gates`; success but the status did
//!   not move → `fail("dev did not set the story to review: status is …")`.
//! - In the build flow (BMAD 6.11+, [`prompt::is_build`]): `bmad-build-auto` on the story's spec
//!   instead of `dev-story`; a build that stops the spec as `blocked` → `escalate` with its
//!   `## Auto Run Result` (a person must answer what it asks).
//! - `end` after the gates (no agent outcome): all passed, or no gates → `complete`; some failed
//!   → `send-back` with one finding per failed gate (name, exit code or timeout, output tail),
//!   unless the previous send-back (the last of `story.rounds`) was the gates' too and every
//!   one of its failures is back
//!   (by [`fingerprint`](bmad_policy::converge::fingerprint): the gate and its failing tests or
//!   first error line): then `escalate` (`quality gates are not converging: the same failure
//!   as the previous round: "gate `unit` failed (exit 3): …"`).
//! - `on-event`: `stop` once the CLI reports its [`HOPELESS_API_RETRY`]th retry of one API
//!   call (minutes of failing calls: the host's own retry with backoff does better); otherwise
//!   continue.

use bmad_policy::converge::{is_gate_finding, last_round, repeats_round};
use bmad_policy::findings::GATE_FINDING_PREFIX;
use bmad_policy::types::{
    AgentEvent, Decision, Directive, GateReport, OutcomeKind, StepReport, Story, StoryState,
};
use bmad_policy::{Policy, markdown::clip, markdown::tail, prompt};

/// The CLI retry attempt at which the Dev policy stops the call.
pub const HOPELESS_API_RETRY: u32 = 6;

/// Output tail lines kept per failed gate.
const TAIL_LINES: usize = 15;
/// Output tail bytes kept per failed gate.
const TAIL_BYTES: usize = 1200;

/// The Dev policy.
#[derive(Debug)]
pub struct Dev;

impl Policy for Dev {
    fn begin(story: &Story, _document: &str) -> Decision {
        Decision::InvokeAgent(prompt::dev(story))
    }

    fn on_event(_story: &Story, event: &AgentEvent) -> Directive {
        match event {
            AgentEvent::ApiRetry(attempt) if *attempt >= HOPELESS_API_RETRY => Directive::Stop,
            _ => Directive::Continue,
        }
    }

    fn end(story: &Story, report: &StepReport) -> Decision {
        let Some(outcome) = &report.outcome else {
            return gates_decision(story, &report.gates);
        };
        if outcome.kind != OutcomeKind::Success {
            return Decision::Fail(format!(
                "dev agent call ended with {}: {}",
                outcome.kind.as_str(),
                clip(outcome.message.trim(), 400)
            ));
        }
        match report.status.state() {
            Some(StoryState::Review | StoryState::Done) => Decision::RunGates,
            Some(StoryState::Blocked) if prompt::is_build(story) => Decision::Escalate(format!(
                "the build stopped the spec `{}` as blocked: {}",
                story.path,
                auto_run_result(&report.document)
            )),
            _ => Decision::Fail(format!(
                "dev did not set the story to review: status is {}",
                report.status.describe()
            )),
        }
    }
}

/// The `## Auto Run Result` section of a `bmad-build-auto` spec (clipped), or a pointer to it.
fn auto_run_result(document: &str) -> String {
    let Some(start) = document.find("## Auto Run Result") else {
        return "see the spec".to_owned();
    };
    let body = &document[start + "## Auto Run Result".len()..];
    let end = body.find("\n## ").unwrap_or(body.len());
    let text = body[..end].split_whitespace().collect::<Vec<_>>().join(" ");
    clip(&text, 600)
}

/// After the gates: complete when all passed, otherwise send back the failures, or escalate
/// when the previous round's gate failures are all back.
fn gates_decision(story: &Story, gates: &[GateReport]) -> Decision {
    let failed: Vec<String> = gates
        .iter()
        .filter(|g| !g.passed)
        .map(gate_finding)
        .collect();
    if failed.is_empty() {
        return Decision::Complete;
    }
    let previous: Vec<_> = last_round(story)
        .into_iter()
        .filter(|f| is_gate_finding(&f.text))
        .collect();
    match repeats_round(&previous, &failed) {
        Some(repeat) => Decision::Escalate(repeat.gate_reason()),
        None => Decision::SendBack(failed),
    }
}

/// `quality gate `test` failed (exit 101):` and the output's last lines.
fn gate_finding(g: &GateReport) -> String {
    let how = if g.timed_out {
        "timed out".to_owned()
    } else {
        match g.exit_code {
            Some(code) => format!("failed (exit {code})"),
            None => "failed (killed by a signal)".to_owned(),
        }
    };
    let out = tail(&g.output_tail, TAIL_LINES, TAIL_BYTES);
    if out.is_empty() {
        format!("{GATE_FINDING_PREFIX}{}` {how} with no output", g.name)
    } else {
        format!(
            "{GATE_FINDING_PREFIX}{}` {how}; output tail:\n{out}",
            g.name
        )
    }
}

bmad_policy::export_policy!(Dev);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::{CallOutcome, Layout, MissingReason, ParseOutcome};

    fn story(cycle: u32) -> Story {
        Story {
            id: "1.2".into(),
            epic: 1,
            path: "docs/stories/1.2.story.md".into(),
            exists: true,
            state: Some(StoryState::ReadyForDev),
            cycle,
            max_cycles: 3,
            gate_path: "docs/qa/gates/1.2-user-registration.yml".into(),
            ..Story::default()
        }
    }

    fn after_agent(kind: OutcomeKind, status: ParseOutcome) -> StepReport {
        StepReport {
            outcome: Some(CallOutcome::new(kind, "boom")),
            status,
            ..StepReport::default()
        }
    }

    #[test]
    fn a_blocked_build_escalates_with_its_auto_run_result() {
        let mut s = story(1);
        s.layout = Layout::V6;
        s.path = "_bmad-output/implementation-artifacts/spec-1-2-x.md".into();
        let mut report = after_agent(
            OutcomeKind::Success,
            ParseOutcome::found(StoryState::Blocked, "blocked"),
        );
        report.document =
            "---\nstatus: 'blocked'\n---\n\n## Auto Run Result\n\nStatus: blocked\nBlocking condition: intent gap\n".into();
        match Dev::end(&s, &report) {
            Decision::Escalate(r) => assert!(
                r.contains("spec-1-2-x.md") && r.contains("Blocking condition: intent gap"),
                "{r}"
            ),
            other => panic!("expected escalate, got {other:?}"),
        }
        // Outside the build flow a blocked story is a failed dev step, as before.
        assert!(matches!(Dev::end(&story(1), &report), Decision::Fail(_)));
    }

    fn gate(name: &str, passed: bool, exit: Option<i32>, timed_out: bool, out: &str) -> GateReport {
        GateReport {
            name: name.into(),
            passed,
            exit_code: exit,
            timed_out,
            output_tail: out.into(),
        }
    }

    #[test]
    fn begin_always_invokes_the_agent_with_the_fix_task_on_later_cycles() {
        let Decision::InvokeAgent(first) = Dev::begin(&story(1), "") else {
            panic!("expected invoke-agent")
        };
        assert!(first.prompt.contains("*develop-story"), "{}", first.prompt);
        let mut s = story(2);
        s.previous_findings = vec!["medium: email case".into()];
        let Decision::InvokeAgent(second) = Dev::begin(&s, "") else {
            panic!("expected invoke-agent")
        };
        assert!(
            second.prompt.contains("apply-qa-fixes")
                && second.prompt.contains("- medium: email case")
        );
        s.layout = Layout::V6;
        let Decision::InvokeAgent(v6) = Dev::begin(&s, "") else {
            panic!("expected invoke-agent")
        };
        assert!(
            v6.prompt.contains("dev-story") && v6.prompt.contains("[AI-Review]"),
            "{}",
            v6.prompt
        );
    }

    #[test]
    fn a_failed_call_fails_with_its_kind_and_message() {
        let d = Dev::end(
            &story(1),
            &after_agent(
                OutcomeKind::IdleTimeout,
                ParseOutcome::found(StoryState::Review, "Review"),
            ),
        );
        assert_eq!(
            d,
            Decision::Fail("dev agent call ended with idle-timeout: boom".into())
        );
    }

    #[test]
    fn review_or_done_runs_the_gates() {
        for state in [StoryState::Review, StoryState::Done] {
            let d = Dev::end(
                &story(1),
                &after_agent(OutcomeKind::Success, ParseOutcome::found(state, "x")),
            );
            assert_eq!(d, Decision::RunGates);
        }
    }

    #[test]
    fn an_unmoved_status_fails() {
        let d = Dev::end(
            &story(1),
            &after_agent(
                OutcomeKind::Success,
                ParseOutcome::found(StoryState::InProgress, "InProgress"),
            ),
        );
        assert_eq!(
            d,
            Decision::Fail(
                "dev did not set the story to review: status is in-progress (\"InProgress\")"
                    .into()
            )
        );
        let d = Dev::end(
            &story(1),
            &after_agent(
                OutcomeKind::Success,
                ParseOutcome::Missing(MissingReason::NoStatus),
            ),
        );
        assert!(
            matches!(&d, Decision::Fail(r) if r.ends_with("missing (no status)")),
            "{d:?}"
        );
    }

    #[test]
    fn gates_passed_or_absent_complete() {
        let mut r = StepReport::default();
        assert_eq!(Dev::end(&story(1), &r), Decision::Complete);
        r.gates = vec![gate("test", true, Some(0), false, "ok")];
        assert_eq!(Dev::end(&story(1), &r), Decision::Complete);
    }

    #[test]
    fn failed_gates_are_sent_back_with_their_output_tail() {
        let long: String = (1..=40).map(|i| format!("line {i}\n")).collect();
        let r = StepReport {
            gates: vec![
                gate("fmt", true, Some(0), false, ""),
                gate("test", false, Some(101), false, &long),
                gate("e2e", false, None, true, ""),
            ],
            ..StepReport::default()
        };
        let Decision::SendBack(findings) = Dev::end(&story(1), &r) else {
            panic!("expected send-back")
        };
        assert_eq!(findings.len(), 2);
        assert!(
            findings[0]
                .starts_with("quality gate `test` failed (exit 101); output tail:\nline 26\n"),
            "{}",
            findings[0]
        );
        assert!(findings[0].ends_with("line 40") && !findings[0].contains("line 25\n"));
        assert_eq!(findings[1], "quality gate `e2e` timed out with no output");
    }

    #[test]
    fn a_gate_failing_the_same_way_twice_escalates() {
        let r = StepReport {
            gates: vec![gate(
                "test",
                false,
                Some(101),
                false,
                "test a::b ... FAILED\ntest result: FAILED. 0 passed; 1 failed; finished in 0.4s",
            )],
            ..StepReport::default()
        };
        let Decision::SendBack(first) = Dev::end(&story(1), &r) else {
            panic!("expected send-back")
        };
        // The next round: the previous send-back was these gate findings (other timings).
        let mut s = story(2);
        s.previous_findings = first.iter().map(|f| f.replace("0.4s", "0.9s")).collect();
        s.findings_history = vec![1];
        assert_eq!(
            Dev::end(&s, &r),
            Decision::Escalate(
                "quality gates are not converging: the same failure as the previous round: \
                 \"gate `test` failed (exit 101): failing a::b\""
                    .into()
            )
        );
        // Another failing test: progress, another round.
        let other = StepReport {
            gates: vec![gate(
                "test",
                false,
                Some(101),
                false,
                "test a::c ... FAILED",
            )],
            ..StepReport::default()
        };
        assert!(matches!(Dev::end(&s, &other), Decision::SendBack(_)));
        // After a review's send-back, gate failures are not compared with review findings.
        s.previous_findings = vec!["high: a::b fails".into()];
        assert!(matches!(Dev::end(&s, &r), Decision::SendBack(_)));
    }

    #[test]
    fn the_gates_round_of_0_2_0_is_compared_by_its_fingerprints() {
        use bmad_policy::converge::finding;
        use bmad_policy::types::{Round, RoundKind};
        let r = StepReport {
            gates: vec![gate(
                "test",
                false,
                Some(101),
                false,
                "test a::b ... FAILED",
            )],
            ..StepReport::default()
        };
        let mut s = story(2);
        s.rounds = vec![Round {
            cycle: 1,
            kind: RoundKind::Gates,
            findings: vec![finding(
                "quality gate `test` failed (exit 1); output tail:\ntest a::b ... FAILED",
            )],
        }];
        assert!(
            matches!(&Dev::end(&s, &r), Decision::Escalate(m) if m.contains("failing a::b")),
            "{:?}",
            Dev::end(&s, &r)
        );
        // After a review round, gate failures go back.
        s.rounds[0].kind = RoundKind::Review;
        s.rounds[0].findings = vec![finding("high: a::b fails")];
        assert!(matches!(Dev::end(&s, &r), Decision::SendBack(_)));
    }

    #[test]
    fn only_hopeless_api_retries_stop_the_call() {
        assert_eq!(
            Dev::on_event(&story(1), &AgentEvent::ApiRetry(2)),
            Directive::Continue
        );
        assert_eq!(
            Dev::on_event(&story(1), &AgentEvent::ApiRetry(HOPELESS_API_RETRY)),
            Directive::Stop
        );
        assert_eq!(
            Dev::on_event(&story(1), &AgentEvent::Text("API Error".into())),
            Directive::Continue
        );
    }
}
