//! The QA decision rules, shared by the default `qa` policy and stricter team policies.
//!
//! After a successful QA call:
//! - with a QA gate file (v4): PASS / WAIVED → done; CONCERNS → done when
//!   [`QaRules::concerns_pass`], else send back; FAIL → send back with the gate's `top_issues`
//!   (else the story's unchecked `QA Results` items, else the gate's `status_reason`); any other
//!   gate value → escalate;
//! - without one (v6 code-review sets the status itself): done → complete; in-progress or
//!   changes-requested → send back with the story's open review action items; still review →
//!   fail; anything else → fail naming the status.
//!
//! "Done" is `set-state(done)` when the file does not say done yet (v4: QA must not change
//! Status), `complete` when it already does. With [`QaRules::require_all_checked`] a story is
//! done only when every acceptance-criterion and task checkbox is ticked; otherwise the
//! unchecked ones go back as findings. Every send-back passes the convergence rule of
//! [`send_back`]: when this round's findings are the previous round's again (by
//! [`fingerprint`](crate::converge::fingerprint): the same, or a superset), escalate quoting
//! them; with [`QaRules::count_must_shrink`] also when there are no fewer of them.

use crate::converge::{is_gate_finding, last_round, repeats_round, round_counts};
use crate::findings::{
    Verdict, gate_field, gate_issues, qa_results_items, review_action_items, unchecked_work,
};
use crate::markdown::clip;
use crate::types::{Decision, OutcomeKind, StepReport, Story, StoryState};

/// Most findings passed on in one send-back (the count for convergence is the full count).
pub const MAX_FINDINGS: usize = 100;

/// A QA policy's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QaRules {
    /// A CONCERNS gate counts as a pass.
    pub concerns_pass: bool,
    /// Done needs every acceptance-criterion and task checkbox ticked.
    pub require_all_checked: bool,
    /// Convergence also needs each review round to have fewer findings than the previous one
    /// (besides the fingerprint rule every policy here applies).
    pub count_must_shrink: bool,
}

impl QaRules {
    /// The default policy: CONCERNS passes, checkboxes are QA's business.
    pub const LENIENT: QaRules = QaRules {
        concerns_pass: true,
        require_all_checked: false,
        count_must_shrink: false,
    };
    /// A strict team policy: CONCERNS is a change request, done means every box ticked.
    pub const STRICT: QaRules = QaRules {
        concerns_pass: false,
        require_all_checked: true,
        count_must_shrink: true,
    };
}

/// The QA `end` decision.
pub fn end(rules: &QaRules, story: &Story, report: &StepReport) -> Decision {
    let Some(outcome) = &report.outcome else {
        return Decision::Fail(
            "QA policy got a gates report, but QA never asks for gates".to_owned(),
        );
    };
    if outcome.kind != OutcomeKind::Success {
        return Decision::Fail(format!(
            "QA agent call ended with {}: {}",
            outcome.kind.as_str(),
            clip(outcome.message.trim(), 400)
        ));
    }
    if let Some(gate) = &report.qa_gate {
        let verdict = Verdict::parse(&gate.gate);
        return match verdict {
            Verdict::Pass | Verdict::Waived => done(rules, story, report),
            Verdict::Concerns if rules.concerns_pass => done(rules, story, report),
            Verdict::Concerns | Verdict::Fail => {
                let mut findings = gate_issues(&gate.text);
                if findings.is_empty() {
                    findings = qa_results_items(&report.document);
                }
                if findings.is_empty()
                    && let Some(reason) = gate_field(&gate.text, "status_reason")
                {
                    findings.push(clip(reason, 600));
                }
                if findings.is_empty() {
                    findings.push(format!(
                        "QA gate {} in `{}`: see the story's QA Results",
                        verdict.as_str(),
                        gate.path
                    ));
                }
                send_back(rules, story, findings)
            }
            Verdict::Unknown(value) => Decision::Escalate(format!(
                "QA gate `{}` has the decision {value:?}, not PASS, CONCERNS, FAIL or WAIVED",
                gate.path
            )),
        };
    }
    match report.status.state() {
        Some(StoryState::Done) => done(rules, story, report),
        Some(StoryState::InProgress | StoryState::ChangesRequested) => {
            let mut findings = review_action_items(&report.document);
            if findings.is_empty() {
                findings.push(format!(
                    "the code review set the story to {} without open action items: see its review \
                     section in `{}`",
                    report.status.describe(),
                    story.path
                ));
            }
            send_back(rules, story, findings)
        }
        Some(StoryState::Review) => {
            Decision::Fail("QA left the story in review without a gate decision".to_owned())
        }
        _ => Decision::Fail(format!(
            "QA finished without a gate decision{}; the story status is {}",
            if story.gate_path.is_empty() {
                String::new()
            } else {
                format!(" (no `{}`)", story.gate_path)
            },
            report.status.describe()
        )),
    }
}

/// The story passed review: done, unless strict rules find unchecked work.
fn done(rules: &QaRules, story: &Story, report: &StepReport) -> Decision {
    if rules.require_all_checked {
        let open = unchecked_work(&report.document);
        if !open.is_empty() {
            let findings = open
                .into_iter()
                .map(|b| {
                    clip(
                        &format!("unchecked item (line {}): {}", b.line, b.text),
                        600,
                    )
                })
                .collect();
            return send_back(rules, story, findings);
        }
    }
    if report.status.state() == Some(StoryState::Done) {
        Decision::Complete
    } else {
        Decision::SetState(StoryState::Done)
    }
}

/// Sends the findings back, or escalates when review does not converge:
/// - the previous send-back round's findings (the last of `story.rounds`, see
///   [`crate::converge::last_round`]) are all back, by fingerprint (the same findings, or a
///   superset): escalate quoting them (see [`crate::converge`]);
/// - with [`QaRules::count_must_shrink`], or when the fingerprints say nothing (the previous
///   round carried no finding, or only its count is known): an earlier send-back exists and
///   this one has no fewer findings.
///
/// When the previous send-back was the quality gates' (its findings are all gate failures),
/// neither its texts nor its count say anything about review, so the rule waits for the next
/// round; gate findings among a review's are left out of the comparison.
pub fn send_back(rules: &QaRules, story: &Story, mut findings: Vec<String>) -> Decision {
    let count = findings.len();
    let last = last_round(story);
    let counts = round_counts(story);
    let previous: Vec<_> = last
        .iter()
        .filter(|f| !is_gate_finding(&f.text))
        .cloned()
        .collect();
    let after_gates = !last.is_empty() && previous.is_empty();
    if let Some(repeat) = repeats_round(&previous, &findings) {
        return Decision::Escalate(repeat.reason("review"));
    }
    let count_rule = rules.count_must_shrink || last.is_empty();
    if let Some(last) = counts.last()
        && count_rule
        && !after_gates
        && u32::try_from(count).unwrap_or(u32::MAX) >= *last
    {
        return Decision::Escalate(format!(
            "review is not converging: {count} findings after {} rounds (previous round: {last})",
            counts.len() + 1
        ));
    }
    findings.truncate(MAX_FINDINGS);
    Decision::SendBack(findings)
}
