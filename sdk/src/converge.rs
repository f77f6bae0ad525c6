//! Convergence: does a send-back round improve on the previous one? Findings are compared by
//! fingerprint, so that a reviewer rewording its severity, renumbering its ids or moving a
//! `[file:line]` does not make an old finding look new.
//!
//! # Fingerprints ([`fingerprint`])
//!
//! - A review finding: its text with this crate's ` (suggested: …)` suffix dropped, lowercased,
//!   every `[…]` tag removed (`[AI-Review]`, `[High]`, `[Review][Patch]`, `[src/a.rs:33]`),
//!   then word by word: ids such as `TEST-001` / `REQ-12` dropped, positions such as
//!   `src/a.rs:33` or `a.rs:33:5` dropped, `line 10` / `lines 3-5` dropped, leading numbering
//!   (`1.`, `2)`, `#3`) and leading severity labels (`high:`, `severity: low:`) dropped,
//!   punctuation turned into spaces and runs of spaces into one. Other numbers stay
//!   (`exactly 5 MB` is not `exactly 6 MB`).
//! - A quality gate's finding (it starts with [`GATE_FINDING_PREFIX`], as the Dev policy
//!   writes it): `gate <name>:` and the failing tests named in its output tail when they are
//!   recognisable (cargo test's `test x ... FAILED`, `---- x stdout ----` and `failures:` list,
//!   pytest's `FAILED path::name`, go's `--- FAIL: Name`, jest / vitest's `✕ name`), sorted;
//!   otherwise the normalised first line mentioning an error (else the first line) of the
//!   output; with no output, how it failed (`timed out`, `failed exit 3`).
//!
//! # The rule ([`repeats`])
//!
//! A round is not a strict improvement on the previous one when every fingerprint of the
//! previous round is found again in it (the same findings, or a superset): the default
//! policies escalate then, quoting the findings that came back ([`Repeat::reason`]). A round
//! that fixes some findings and reveals new ones is an improvement (another cycle may follow,
//! up to `max_cycles`). The rule is the default policies' choice, not the host's: a team
//! policy can use its own.

use std::collections::BTreeSet;

use crate::findings::GATE_FINDING_PREFIX;
use crate::markdown::clip;

/// Findings quoted in a reason, at most.
pub const MAX_QUOTED: usize = 5;
/// Bytes of one quoted finding, at most.
pub const MAX_QUOTE_BYTES: usize = 160;

/// Severity labels dropped from the start of a finding.
const SEVERITIES: &[&str] = &[
    "severity", "critical", "blocker", "high", "major", "medium", "moderate", "minor", "low",
    "info", "nit", "trivial",
];

/// Whether a finding is a failed quality gate's (the Dev policy's send-back).
pub fn is_gate_finding(finding: &str) -> bool {
    finding.starts_with(GATE_FINDING_PREFIX)
}

/// The fingerprint of a finding, review or gate (see the module documentation).
pub fn fingerprint(finding: &str) -> String {
    match gate_parts(finding) {
        Some(gate) => format!("gate {}: {}", gate.name, gate.key()),
        None => normalise(finding),
    }
}

/// A failed gate's finding, taken apart.
struct GateParts<'a> {
    name: &'a str,
    /// `failed (exit 3)`, `timed out`, ...
    how: &'a str,
    /// The output tail (empty when none).
    output: &'a str,
}

impl GateParts<'_> {
    /// What identifies the failure: the failing tests, else the first error line, else how.
    fn key(&self) -> String {
        let tests = failing_tests(self.output);
        if !tests.is_empty() {
            return format!("tests {}", tests.into_iter().collect::<Vec<_>>().join(" "));
        }
        match error_line(self.output) {
            Some(line) => normalise(line),
            None => normalise(self.how),
        }
    }

    /// A short description for a reason: the gate and its failing tests or first error line.
    fn describe(&self) -> String {
        let tests = failing_tests(self.output);
        if !tests.is_empty() {
            let list: Vec<_> = tests.into_iter().collect();
            return format!(
                "gate `{}` {}: failing {}",
                self.name,
                self.how,
                list.join(", ")
            );
        }
        match error_line(self.output) {
            Some(line) => format!("gate `{}` {}: {}", self.name, self.how, line.trim()),
            None => format!("gate `{}` {}", self.name, self.how),
        }
    }
}

/// `quality gate `NAME` HOW; output tail:\nOUT` or `quality gate `NAME` HOW with no output`.
fn gate_parts(finding: &str) -> Option<GateParts<'_>> {
    let rest = finding.strip_prefix(GATE_FINDING_PREFIX)?;
    let (name, rest) = rest.split_once('`')?;
    let rest = rest.trim_start();
    let (how, output) = match rest.split_once("; output tail:") {
        Some((how, out)) => (how, out.trim_start_matches([' ', '\n', '\r'])),
        None => (rest.strip_suffix(" with no output").unwrap_or(rest), ""),
    };
    Some(GateParts {
        name,
        how: how.trim(),
        output,
    })
}

/// Test names a test runner's output reports as failing (see the module documentation).
fn failing_tests(output: &str) -> BTreeSet<String> {
    let mut tests = BTreeSet::new();
    let mut in_failures = false;
    for line in output.lines() {
        let t = line.trim();
        if t == "failures:" {
            in_failures = true;
            continue;
        }
        if in_failures {
            if line.starts_with([' ', '\t']) && !t.is_empty() && !t.contains(' ') {
                tests.insert(t.to_owned());
                continue;
            }
            in_failures = false;
        }
        let name = failing_test(t);
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            tests.insert(name.to_owned());
        }
    }
    tests
}

/// The test a line of a test runner's output reports as failing.
fn failing_test(t: &str) -> Option<&str> {
    if let Some(rest) = t.strip_prefix("test ") {
        return rest.strip_suffix(" ... FAILED");
    }
    if let Some(rest) = t.strip_prefix("---- ") {
        return rest.strip_suffix(" stdout ----");
    }
    if let Some(rest) = t.strip_prefix("FAILED ") {
        return rest.split(" - ").next();
    }
    if let Some(rest) = t.strip_prefix("--- FAIL: ") {
        return rest.split(" (").next();
    }
    t.strip_prefix("✕ ")
        .or_else(|| t.strip_prefix("× "))
        .map(strip_duration)
}

/// `name (12 ms)` → `name`.
fn strip_duration(s: &str) -> &str {
    match s.rfind(" (") {
        Some(i) if s.ends_with("ms)") || s.ends_with("s)") => &s[..i],
        _ => s,
    }
}

/// The first output line that mentions an error, else the first non-empty line.
fn error_line(output: &str) -> Option<&str> {
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.clone().next()?;
    Some(
        lines
            .find(|l| l.to_ascii_lowercase().contains("error"))
            .unwrap_or(first),
    )
}

/// A review finding's normalised text (see the module documentation).
pub fn normalise(finding: &str) -> String {
    let mut text = finding.trim();
    if text.ends_with(')')
        && let Some(i) = text.rfind(" (suggested: ")
    {
        text = &text[..i];
    }
    let lower = strip_tags(&text.to_lowercase());
    let raw: Vec<&str> = lower.split_whitespace().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let token = raw[i];
        let word = token.trim_matches(|c: char| !c.is_alphanumeric());
        i += 1;
        if word.is_empty() || is_id(word) || is_position(word) {
            continue;
        }
        if (word == "line" || word == "lines")
            && let Some(next) = raw.get(i)
            && next
                .trim_matches(|c: char| !c.is_alphanumeric())
                .starts_with(|c: char| c.is_ascii_digit())
        {
            i += 1;
            continue;
        }
        if kept.is_empty() {
            // Leading numbering (`1.`, `2)`, `#3`) and severity labels (`high:`).
            if word.chars().all(|c| c.is_ascii_digit()) && token != word {
                continue;
            }
            if SEVERITIES.contains(&word) && token.ends_with(':') {
                continue;
            }
        }
        kept.push(token);
    }
    let mut out = String::new();
    for token in kept {
        for piece in token.split(|c: char| !c.is_alphanumeric()) {
            if piece.is_empty() {
                continue;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(piece);
        }
    }
    out
}

/// The text without `[…]` groups (tags, severities, positions).
fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        match rest[open..].find(']') {
            Some(close) if !rest[open + 1..open + close].contains('[') => {
                out.push_str(&rest[..open]);
                out.push(' ');
                rest = &rest[open + close + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `test-001`, `req-12`, `ac-3`: letters, a dash, digits.
fn is_id(word: &str) -> bool {
    let Some((letters, digits)) = word.split_once('-') else {
        return false;
    };
    !letters.is_empty()
        && letters.chars().all(|c| c.is_ascii_alphabetic())
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// `src/a.rs:33`, `a.rs:33:5`: something, then `:digits` once or twice.
fn is_position(word: &str) -> bool {
    let mut parts = word.rsplit(':');
    let mut numbers = 0;
    let mut head = "";
    for part in parts.by_ref() {
        if !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()) && numbers < 2 {
            numbers += 1;
        } else {
            head = part;
            break;
        }
    }
    numbers > 0 && !head.is_empty() && head.contains(['.', '/'])
}

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
            let line = match gate_parts(f) {
                Some(gate) => gate.describe(),
                None => f.clone(),
            };
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
    let before: BTreeSet<String> = previous.iter().map(|f| fingerprint(f)).collect();
    if before.is_empty() {
        return None;
    }
    let now: Vec<String> = current.iter().map(|f| fingerprint(f)).collect();
    if !before.iter().all(|fp| now.contains(fp)) {
        return None;
    }
    let mut seen = BTreeSet::new();
    let mut repeated = Vec::new();
    let mut added = 0;
    for (text, fp) in current.iter().zip(&now) {
        if before.contains(fp) {
            if seen.insert(fp.clone()) {
                repeated.push(text.clone());
            }
        } else {
            added += 1;
        }
    }
    Some(Repeat { repeated, added })
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
