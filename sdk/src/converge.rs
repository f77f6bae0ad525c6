//! Convergence: does a send-back round improve on the previous one? Findings are compared by
//! fingerprint, so that a reviewer rewording its severity, renumbering its ids or moving a
//! `[file:line]` does not make an old finding look new.
//!
//! # Fingerprints ([`fingerprint`])
//!
//! The rules live in the `bmad-fingerprint` crate, re-exported here: the host computes the
//! fingerprints it hands over in `story.rounds` with the same function, so a policy comparing
//! a round's `fingerprint` fields with [`fingerprint`] of its own findings compares like with
//! like. In short: a review finding's text without tags, ids, positions, numbering, severity
//! labels and punctuation, lowercased; a failed quality gate's name and failing tests (else its
//! first error line, else how it failed).
//!
//! # The rule ([`repeats`])
//!
//! A round is not a strict improvement on the previous one when every fingerprint of the
//! previous round is found again in it (the same findings, or a superset): the default
//! policies escalate then, quoting the findings that came back ([`Repeat::reason`]). A round
//! that fixes some findings and reveals new ones is an improvement (another cycle may follow,
//! up to `max_cycles`). The rule is the default policies' choice, not the host's: a team
//! policy can use its own.
//!
//! # The history ([`last_round`], [`round_counts`])
//!
//! A policy sees every earlier send-back round in `story.rounds` (oldest first: its cycle,
//! whether review or the quality gates sent it, its findings' texts and fingerprints). A story
//! whose `rounds` is empty but whose 0.1.0-era fields are not (`previous-findings`, the last
//! round's texts; `findings-history`, each round's count: a story record journaled before
//! 0.2.0, or one built by hand in a test) is read from those instead, so both say the same.

use std::collections::BTreeSet;

pub use bmad_fingerprint::{
    GATE_FINDING_PREFIX, describe_gate, fingerprint, is_gate_finding, normalise,
};

use crate::markdown::clip;
use crate::types::{Finding, Story};

/// Findings quoted in a reason, at most.
pub const MAX_QUOTED: usize = 5;
/// Bytes of one quoted finding, at most.
pub const MAX_QUOTE_BYTES: usize = 160;

/// The previous round's findings all came back (see [`repeats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repeat {
    /// The findings of this round that were in the previous one, in this round's order, one per
    /// fingerprint.
    pub repeated: Vec<String>,
    /// How many findings of this round are new.
    pub added: usize,
}

impl Repeat {
    /// `WHAT is not converging: the same 2 findings as the previous round: "…"; "…"` (or
    /// `the previous round's 2 findings are all back, with 1 new: …` for a superset), each
    /// finding clipped to one line, at most [`MAX_QUOTED`] of them. `what` is the subject
    /// (`review`).
    pub fn reason(&self, what: &str) -> String {
        self.reason_with(&format!("{what} is"), "finding", "findings")
    }

    /// The reason for failed quality gates: `quality gates are not converging: the same
    /// failure as the previous round: "gate `unit` failed (exit 3): broken"`.
    pub fn gate_reason(&self) -> String {
        self.reason_with("quality gates are", "failure", "failures")
    }

    fn reason_with(&self, subject: &str, one: &str, many: &str) -> String {
        let n = self.repeated.len();
        let what = match (n, self.added) {
            (1, 0) => format!("the same {one} as the previous round"),
            (n, 0) => format!("the same {n} {many} as the previous round"),
            (1, added) => format!("the previous round's {one} is back, with {added} new"),
            (n, added) => format!("the previous round's {n} {many} are all back, with {added} new"),
        };
        format!(
            "{subject} not converging: {what}: {}",
            quote(&self.repeated)
        )
    }
}

/// Findings quoted for a reason: one line each, clipped, at most [`MAX_QUOTED`].
pub fn quote(findings: &[String]) -> String {
    let mut parts: Vec<String> = findings
        .iter()
        .take(MAX_QUOTED)
        .map(|f| {
            let line = describe_gate(f).unwrap_or_else(|| f.clone());
            let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("\"{}\"", clip(&line, MAX_QUOTE_BYTES))
        })
        .collect();
    if findings.len() > MAX_QUOTED {
        parts.push(format!("and {} more", findings.len() - MAX_QUOTED));
    }
    parts.join("; ")
}

/// Whether `current` is no strict improvement on `previous`: every fingerprint of `previous`
/// is in `current` (the same findings, or a superset). `None` when `previous` is empty (the
/// fingerprints say nothing) or when at least one previous finding is gone.
pub fn repeats(previous: &[&str], current: &[String]) -> Option<Repeat> {
    let previous: Vec<Finding> = previous.iter().map(|text| finding(text)).collect();
    repeats_round(&previous, current)
}

/// [`repeats`] against a round as the host hands it over (`story.rounds`): the previous
/// findings' fingerprints are the round's own.
pub fn repeats_round(previous: &[Finding], current: &[String]) -> Option<Repeat> {
    let before: BTreeSet<&str> = previous.iter().map(|f| f.fingerprint.as_str()).collect();
    if before.is_empty() {
        return None;
    }
    let now: Vec<String> = current.iter().map(|f| fingerprint(f)).collect();
    if !before.iter().all(|fp| now.iter().any(|n| n == fp)) {
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut repeated = Vec::new();
    let mut added = 0;
    for (text, fp) in current.iter().zip(&now) {
        if before.contains(fp.as_str()) {
            if seen.insert(fp.clone()) {
                repeated.push(text.clone());
            }
        } else {
            added += 1;
        }
    }
    Some(Repeat { repeated, added })
}

/// A finding with its fingerprint.
pub fn finding(text: &str) -> Finding {
    Finding {
        fingerprint: fingerprint(text),
        text: text.to_owned(),
    }
}

/// The findings of the last send-back round (empty when there was none): from `story.rounds`,
/// else from `previous-findings` (see the module documentation).
pub fn last_round(story: &Story) -> Vec<Finding> {
    match story.rounds.last() {
        Some(round) => round.findings.clone(),
        None => story.previous_findings.iter().map(|t| finding(t)).collect(),
    }
}

/// How many findings each earlier send-back round carried, oldest first: from `story.rounds`,
/// else from `findings-history`.
pub fn round_counts(story: &Story) -> Vec<u32> {
    if story.rounds.is_empty() {
        return story.findings_history.clone();
    }
    story
        .rounds
        .iter()
        .map(|r| u32::try_from(r.findings.len()).unwrap_or(u32::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn review_fingerprints_ignore_case_tags_ids_positions_and_severity() {
        let same = [
            "high: Duplicate check is case-sensitive (suggested: Lowercase the email)",
            "medium: duplicate check is CASE sensitive.",
            "[AI-Review][High] Duplicate check is case-sensitive [src/users.rs:33]",
            "REQ-001: Duplicate check is case-sensitive",
            "1. Duplicate check is case-sensitive (line 12)",
            "  Duplicate   check is case-sensitive src/users.rs:40:7 ",
            "[Review][Patch] Duplicate check is case—sensitive",
        ];
        for s in same {
            assert_eq!(fingerprint(s), "duplicate check is case sensitive", "{s}");
        }
        // Numbers that are not numbering, ids or positions still count.
        assert_ne!(
            fingerprint("No test for exactly 5 MB"),
            fingerprint("No test for exactly 6 MB")
        );
        assert_ne!(
            fingerprint("Acceptance criterion 2 has no test"),
            fingerprint("Acceptance criterion 3 has no test")
        );
        assert_eq!(
            fingerprint("unchecked item (line 10): Task 2: Tests (AC: 2)"),
            fingerprint("unchecked item (line 14): Task 2: Tests (AC: 2)")
        );
    }

    #[test]
    fn gate_fingerprints_name_the_gate_and_the_failing_tests() {
        let cargo = "quality gate `test` failed (exit 101); output tail:\n\
            test users::a ... ok\ntest users::dup ... FAILED\n\nfailures:\n    users::dup\n    users::other\n\n\
            test result: FAILED. 1 passed; 2 failed; finished in 0.31s";
        assert_eq!(
            fingerprint(cargo),
            "gate test: tests users::dup users::other"
        );
        // Another run of the same failures, other timings: the same fingerprint.
        let again = cargo
            .replace("0.31s", "0.52s")
            .replace("exit 101", "exit 1");
        assert_eq!(fingerprint(&again), fingerprint(cargo));
        let pytest = "quality gate `py` failed (exit 1); output tail:\n\
            FAILED tests/test_a.py::test_x - AssertionError: 1 != 2\n1 failed in 0.2s";
        assert_eq!(
            fingerprint(pytest),
            "gate py: tests tests/test_a.py::test_x"
        );
        let go = "quality gate `go` failed (exit 1); output tail:\n--- FAIL: TestX (0.00s)\nFAIL";
        assert_eq!(fingerprint(go), "gate go: tests TestX");
        let jest = "quality gate `js` failed (exit 1); output tail:\n  ✕ adds numbers (3 ms)";
        assert_eq!(fingerprint(jest), "gate js: tests adds numbers");
        // No test names: the first error line, positions away.
        let build = "quality gate `build` failed (exit 101); output tail:\n   Compiling x v0.1.0\n\
            error[E0425]: cannot find value `y` in this scope\n --> src/main.rs:3:5";
        assert_eq!(
            fingerprint(build),
            "gate build: error cannot find value y in this scope"
        );
        assert_eq!(
            fingerprint("quality gate `unit` failed (exit 3); output tail:\nbroken"),
            "gate unit: broken"
        );
        assert_eq!(
            fingerprint("quality gate `e2e` timed out with no output"),
            "gate e2e: timed out"
        );
        assert_ne!(
            fingerprint("quality gate `a` failed (exit 3); output tail:\nbroken"),
            fingerprint("quality gate `b` failed (exit 3); output tail:\nbroken")
        );
        assert!(is_gate_finding(cargo) && !is_gate_finding("high: x"));
    }

    #[test]
    fn the_same_findings_or_a_superset_repeat() {
        let prev = ["high: A is broken", "low: B is missing [src/b.rs:3]"];
        let same = owned(&["medium: a is broken.", "B is missing [src/b.rs:9]"]);
        let r = repeats(&prev, &same).expect("the same findings repeat");
        assert_eq!(r.added, 0);
        assert_eq!(r.repeated, same);
        assert_eq!(
            r.reason("review"),
            "review is not converging: the same 2 findings as the previous round: \
             \"medium: a is broken.\"; \"B is missing [src/b.rs:9]\""
        );
        let more = owned(&["A is broken", "C is new", "B is missing"]);
        let r = repeats(&prev, &more).expect("a superset repeats");
        assert_eq!(r.added, 1);
        assert!(
            r.reason("review").starts_with(
                "review is not converging: the previous round's 2 findings are all back, with 1 new: \"A is broken\""
            ),
            "{}",
            r.reason("review")
        );
        // Some fixed, some new: progress. Nothing before: nothing to say.
        assert_eq!(repeats(&prev, &owned(&["A is broken", "C is new"])), None);
        assert_eq!(repeats(&prev, &[]), None);
        assert_eq!(repeats(&[], &owned(&["A"])), None);
        let one = repeats(&["x"], &owned(&["X!"])).expect("repeat");
        assert_eq!(
            one.reason("review"),
            "review is not converging: the same finding as the previous round: \"X!\""
        );
    }

    #[test]
    fn the_history_comes_from_the_rounds_else_from_the_0_1_0_fields() {
        use crate::types::{Round, RoundKind};
        let mut story = Story {
            previous_findings: owned(&["high: A"]),
            findings_history: vec![3, 1],
            ..Story::default()
        };
        assert_eq!(last_round(&story), [finding("high: A")]);
        assert_eq!(last_round(&story)[0].fingerprint, "a");
        assert_eq!(round_counts(&story), [3, 1]);
        story.rounds = vec![
            Round {
                cycle: 1,
                kind: RoundKind::Gates,
                findings: vec![finding("x"), finding("y")],
            },
            Round {
                cycle: 2,
                kind: RoundKind::Review,
                findings: vec![finding("[High] B")],
            },
        ];
        assert_eq!(last_round(&story), [finding("[High] B")]);
        assert_eq!(round_counts(&story), [2, 1]);
        // The round's own fingerprints are compared, as the host computed them.
        let r = repeats_round(&last_round(&story), &owned(&["medium: b", "C"])).expect("repeat");
        assert_eq!((r.repeated, r.added), (owned(&["medium: b"]), 1));
        assert_eq!(RoundKind::Gates.as_str(), "gates");
    }

    #[test]
    fn quotes_are_clipped_and_counted() {
        let long = "y".repeat(400);
        let many: Vec<String> = (0..8).map(|i| format!("finding {i}\n{long}")).collect();
        let q = quote(&many);
        assert!(q.ends_with("; and 3 more"), "{q}");
        assert_eq!(q.matches('"').count(), 2 * MAX_QUOTED);
        assert!(!q.contains('\n'));
        assert!(
            q.len() < MAX_QUOTED * (MAX_QUOTE_BYTES + 8) + 20,
            "{}",
            q.len()
        );
        let gate = quote(&owned(&[
            "quality gate `unit` failed (exit 3); output tail:\nnoise\nerror: broken thing",
        ]));
        assert_eq!(gate, "\"gate `unit` failed (exit 3): error: broken thing\"");
    }
}
