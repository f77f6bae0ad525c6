//! Findings: what a review asked for, pulled out of a QA gate file or a story document.
//!
//! - A v4 QA gate (`docs/qa/gates/*.yml`): its decision and each `top_issues` entry's
//!   `finding:` (or `issue:`), with severity and suggested action, read line by line (no YAML
//!   library in the guest; the gate schema is flat enough).
//! - A v4 story's `## QA Results`: the unchecked improvements (not the ones marked future).
//! - A v6 story after code review: unchecked `[AI-Review]` / `[Review]` action items (6.12's
//!   `[Review][Defer]` excluded) and unchecked items under a review heading (`Review
//!   Follow-ups (AI)`, `Senior Developer Review (AI)` / `Action Items`, `Review Findings`).

use crate::markdown::{Checkbox, checkboxes, clip, contains_ci};

/// How a failed quality gate's finding starts (Dev policy), so that QA can tell a gates
/// send-back from a review's (defined with the fingerprints, in `bmad-fingerprint`).
pub use bmad_fingerprint::GATE_FINDING_PREFIX;

/// Longest finding passed on, in bytes.
pub const MAX_FINDING_BYTES: usize = 600;

/// A QA gate decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Concerns,
    Fail,
    Waived,
    /// Anything else, as written.
    Unknown(String),
}

impl Verdict {
    /// Reads a gate value: quotes and spaces trimmed, case ignored.
    pub fn parse(gate: &str) -> Verdict {
        let v = gate.trim().trim_matches(['"', '\'']).trim();
        match v.to_ascii_uppercase().as_str() {
            "PASS" => Verdict::Pass,
            "CONCERNS" => Verdict::Concerns,
            "FAIL" => Verdict::Fail,
            "WAIVED" => Verdict::Waived,
            _ => Verdict::Unknown(v.to_owned()),
        }
    }

    /// The canonical spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Concerns => "CONCERNS",
            Verdict::Fail => "FAIL",
            Verdict::Waived => "WAIVED",
            Verdict::Unknown(v) => v,
        }
    }
}

/// A scalar YAML value without quotes.
fn unquote(v: &str) -> &str {
    let v = v.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.trim();
        }
    }
    v
}

/// A top-level `key: value` of a gate file.
pub fn gate_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix(':')?;
        let v = unquote(rest);
        (!v.is_empty()).then_some(v)
    })
}

/// The `top_issues` of a gate file, one finding each: `severity: finding (suggested: action)`.
pub fn gate_issues(text: &str) -> Vec<String> {
    #[derive(Default)]
    struct Issue<'a> {
        severity: Option<&'a str>,
        finding: Option<&'a str>,
        action: Option<&'a str>,
    }
    let mut issues: Vec<Issue<'_>> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if !inside {
            inside = line.trim_end() == "top_issues:";
            continue;
        }
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !line.starts_with([' ', '\t', '-']) {
            break;
        }
        let item = match trimmed.strip_prefix('-') {
            Some(rest) => {
                issues.push(Issue::default());
                rest.trim_start()
            }
            None => trimmed,
        };
        let Some(current) = issues.last_mut() else {
            continue;
        };
        let Some((key, value)) = item.split_once(':') else {
            continue;
        };
        let value = unquote(value);
        match key.trim() {
            "severity" => current.severity = Some(value),
            "finding" | "issue" => current.finding = Some(value),
            "suggested_action" => current.action = Some(value),
            _ => {}
        }
    }
    issues
        .into_iter()
        .filter_map(|i| {
            let finding = i.finding.filter(|f| !f.is_empty())?;
            let mut s = match i.severity {
                Some(sev) if !sev.is_empty() => format!("{sev}: {finding}"),
                _ => finding.to_owned(),
            };
            if let Some(action) = i.action.filter(|a| !a.is_empty()) {
                s.push_str(&format!(" (suggested: {action})"));
            }
            Some(clip(&s, MAX_FINDING_BYTES))
        })
        .collect()
}

/// Unchecked items of the story's `QA Results` section, except those marked as future work.
pub fn qa_results_items(doc: &str) -> Vec<String> {
    checkboxes(doc)
        .into_iter()
        .filter(|b| !b.checked && b.under("QA Results") && !contains_ci(&b.text, "future"))
        .map(|b| clip(&b.text, MAX_FINDING_BYTES))
        .collect()
}

/// Whether a checkbox is an open code-review action item.
fn is_review_item(b: &Checkbox) -> bool {
    if b.checked || contains_ci(&b.text, "[Defer]") {
        return false;
    }
    let tagged = contains_ci(&b.text, "[AI-Review]") || contains_ci(&b.text, "[Review]");
    tagged || b.under("review")
}

/// Open code-review action items of a story (v6 code-review), in document order.
pub fn review_action_items(doc: &str) -> Vec<String> {
    checkboxes(doc)
        .into_iter()
        .filter(is_review_item)
        .map(|b| clip(&b.text, MAX_FINDING_BYTES))
        .collect()
}

/// Unchecked acceptance-criterion and task checkboxes (sections whose heading mentions
/// "acceptance criteria" or "tasks", subsections included).
pub fn unchecked_work(doc: &str) -> Vec<Checkbox> {
    checkboxes(doc)
        .into_iter()
        .filter(|b| !b.checked && (b.under("acceptance criteria") || b.under("tasks")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GATE: &str = r#"schema: 1
story: "1.2"
gate: CONCERNS
status_reason: "Mixed-case duplicates return 500."
waiver: { active: false }

top_issues:
  - id: "REQ-001"
    severity: medium
    finding: "Duplicate check is case-sensitive"
    suggested_action: "Lowercase the email"
  - id: "TEST-001"
    severity: low
    finding: "No test covers mixed case"

risk_summary:
  totals: { critical: 0 }
  finding: "not an issue"
"#;

    #[test]
    fn gate_fields_and_issues() {
        assert_eq!(
            Verdict::parse(gate_field(GATE, "gate").unwrap_or_default()),
            Verdict::Concerns
        );
        assert_eq!(
            gate_field(GATE, "status_reason"),
            Some("Mixed-case duplicates return 500.")
        );
        assert_eq!(
            gate_issues(GATE),
            vec![
                "medium: Duplicate check is case-sensitive (suggested: Lowercase the email)"
                    .to_owned(),
                "low: No test covers mixed case".to_owned(),
            ]
        );
        assert!(gate_issues("gate: FAIL\ntop_issues: []\n").is_empty());
        let compact = r#"top_issues:
- issue: A
- finding: 'B'
  severity: high
next: 1
"#;
        assert_eq!(
            gate_issues(compact),
            vec!["A".to_owned(), "high: B".to_owned()]
        );
    }

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::parse(" 'pass' "), Verdict::Pass);
        assert_eq!(Verdict::parse("WAIVED"), Verdict::Waived);
        assert_eq!(Verdict::parse("PASSED"), Verdict::Unknown("PASSED".into()));
    }

    #[test]
    fn review_items_from_v6_code_review() {
        let doc = r#"# S

## Tasks / Subtasks

- [x] Task 1
- [ ] Review Follow-ups (AI)
  - [ ] [AI-Review][High] Ownership check missing

### Review Findings

- [ ] [Review][Patch] Name not trimmed
- [x] [Review][Defer] Old
- [ ] [Review][Defer] Later

## Senior Developer Review (AI)

### Action Items

- [ ] [High] Add ownership check
"#;
        assert_eq!(
            review_action_items(doc),
            vec![
                "[AI-Review][High] Ownership check missing".to_owned(),
                "[Review][Patch] Name not trimmed".to_owned(),
                "[High] Add ownership check".to_owned(),
            ]
        );
    }

    #[test]
    fn qa_results_and_unchecked_work() {
        let doc = r#"# S
## Acceptance Criteria
- [ ] AC 1
## Tasks / Subtasks
- [x] T1
  - [ ] T1.1
## QA Results
- [ ] Normalise email
- [ ] Add rate limiting (future)
"#;
        assert_eq!(qa_results_items(doc), vec!["Normalise email".to_owned()]);
        let open: Vec<String> = unchecked_work(doc).into_iter().map(|b| b.text).collect();
        assert_eq!(open, vec!["AC 1".to_owned(), "T1.1".to_owned()]);
    }
}
