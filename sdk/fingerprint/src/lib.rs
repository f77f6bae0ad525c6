//! Finding fingerprints: what identifies a finding across send-back rounds, so that a reviewer
//! rewording its severity, renumbering its ids or moving a `[file:line]` does not make an old
//! finding look new. One function, [`fingerprint`], shared by the bmad-host runtime (which
//! hands every earlier round's fingerprints to the policies, `story.rounds` in
//! `bmad:policy@0.2.0`) and the policy SDK (`bmad_policy::converge`, which re-exports it): both
//! depend on this crate, which depends on nothing, so the two can never disagree.
//!
//! - A review finding: its text with the SDK's ` (suggested: …)` suffix dropped, lowercased,
//!   every `[…]` tag removed (`[AI-Review]`, `[High]`, `[Review][Patch]`, `[src/a.rs:33]`),
//!   then word by word: ids such as `TEST-001` / `REQ-12` dropped, positions such as
//!   `src/a.rs:33` or `a.rs:33:5` dropped, `line 10` / `lines 3-5` dropped, leading numbering
//!   (`1.`, `2)`, `#3`) and leading severity labels (`high:`, `severity: low:`) dropped,
//!   punctuation turned into spaces and runs of spaces into one. Other numbers stay
//!   (`exactly 5 MB` is not `exactly 6 MB`).
//! - A quality gate's finding (it starts with [`GATE_FINDING_PREFIX`], as the default Dev
//!   policy writes it): `gate <name>:` and the failing tests named in its output tail when they
//!   are recognisable (cargo test's `test x ... FAILED`, `---- x stdout ----` and `failures:`
//!   list, pytest's `FAILED path::name`, go's `--- FAIL: Name`, jest / vitest's `✕ name`),
//!   sorted; otherwise the normalised first line mentioning an error (else the first line) of
//!   the output; with no output, how it failed (`timed out`, `failed exit 3`).
//!
//! The tests of these rules are in the SDK (`bmad_policy::converge`), next to the convergence
//! rule they serve.

use std::collections::BTreeSet;

/// How a failed quality gate's finding starts (the default Dev policy writes it so), so that a
/// gates send-back can be told from a review's.
pub const GATE_FINDING_PREFIX: &str = "quality gate `";

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

/// A failed gate's finding in one line, for a reason: the gate, how it failed, and its failing
/// tests or first error line (`gate `unit` failed (exit 3): failing a::b`); `None` for a
/// finding that is not a gate's.
pub fn describe_gate(finding: &str) -> Option<String> {
    gate_parts(finding).map(|gate| gate.describe())
}
