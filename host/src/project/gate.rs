//! BMAD v4 QA gate files (`{qaLocation}/gates/{epic}.{story}-{slug}.yml`): a tolerant reader,
//! and the names that make a gate file (a story's gate files are found through a
//! [`super::folder_index::FolderIndex`] of the gates folder).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::error::{ProjectError, Warning};
use super::fs::read_inside;
use super::id::StoryId;
use super::text::{numbered_lines, yaml_key_line};

/// Gate files larger than this are refused (they are a few KiB).
pub(crate) const MAX_GATE_BYTES: u64 = 1024 * 1024;

/// The four gate decisions of the BMAD QA gate schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GateVerdict {
    /// `PASS`.
    Pass,
    /// `CONCERNS`.
    Concerns,
    /// `FAIL`.
    Fail,
    /// `WAIVED`.
    Waived,
}

impl GateVerdict {
    /// The value as the schema spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            GateVerdict::Pass => "PASS",
            GateVerdict::Concerns => "CONCERNS",
            GateVerdict::Fail => "FAIL",
            GateVerdict::Waived => "WAIVED",
        }
    }

    fn exact(s: &str) -> Option<GateVerdict> {
        match s {
            "PASS" => Some(GateVerdict::Pass),
            "CONCERNS" => Some(GateVerdict::Concerns),
            "FAIL" => Some(GateVerdict::Fail),
            "WAIVED" => Some(GateVerdict::Waived),
            _ => None,
        }
    }
}

impl fmt::Display for GateVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A QA gate file as read by the host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QaGate {
    /// The gate file, relative to the project root.
    pub path: PathBuf,
    /// The `gate:` value as written (trimmed, unquoted); empty when the key is missing.
    pub gate: String,
    /// The value when it is one of `PASS|CONCERNS|FAIL|WAIVED` (any case); `None` otherwise
    /// (`PASSED` is not guessed to be `PASS`).
    pub verdict: Option<GateVerdict>,
    /// The whole file (lossy UTF-8).
    pub text: String,
    /// What was tolerated (bad values, bad YAML).
    pub warnings: Vec<Warning>,
}

impl QaGate {
    /// The WIT record handed to the QA policy.
    pub fn to_policy(&self) -> crate::policy::QaGate {
        crate::policy::QaGate {
            path: self.path.to_string_lossy().into_owned(),
            gate: self.gate.clone(),
            text: self.text.clone(),
        }
    }
}

/// Reads and checks the gate file at `root/rel`.
pub(crate) fn read_gate(root: &Path, rel: &Path) -> Result<QaGate, ProjectError> {
    let path = root.join(rel);
    let bytes = read_inside(root, &path, MAX_GATE_BYTES, "a QA gate")?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (gate, warnings) = parse_gate(&path, &text);
    let verdict = GateVerdict::exact(&gate.to_ascii_uppercase());
    Ok(QaGate {
        path: rel.to_owned(),
        gate,
        verdict,
        text,
        warnings,
    })
}

/// The `gate:` value and the warnings about the file. Never fails: bad YAML falls back to the
/// `gate:` line.
pub(crate) fn parse_gate(path: &Path, text: &str) -> (String, Vec<Warning>) {
    let mut warnings = Vec::new();
    let line_of = |key: &[&str]| yaml_key_line(text, key);
    let doc = match serde_yaml_ng::from_str::<Value>(text) {
        Ok(v) => Some(v),
        Err(e) => {
            let line = e.location().and_then(|l| u32::try_from(l.line()).ok());
            warnings.push(Warning::new(
                path,
                line,
                format!("not valid YAML ({e}): the gate was read from the `gate:` line"),
            ));
            None
        }
    };
    let gate = match &doc {
        Some(doc) => match doc.get("gate") {
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(b)) => Some(b.to_string()),
            Some(Value::Null) | None => None,
            Some(_) => {
                warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    "`gate` is a list or mapping: read as empty",
                ));
                Some(String::new())
            }
        },
        None => gate_line(text),
    };
    let gate = match gate {
        Some(g) => g,
        None => {
            warnings.push(Warning::new(
                path,
                None,
                "no `gate:` value: expected PASS|CONCERNS|FAIL|WAIVED",
            ));
            String::new()
        }
    };
    if !gate.is_empty() {
        match GateVerdict::exact(&gate) {
            Some(_) => {}
            None => match GateVerdict::exact(&gate.to_ascii_uppercase()) {
                Some(v) => warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    format!("gate `{gate}` is not upper case: read as {v}"),
                )),
                None => warnings.push(Warning::new(
                    path,
                    line_of(&["gate"]),
                    format!("gate `{gate}` is not one of PASS|CONCERNS|FAIL|WAIVED: passed on as written, with no verdict"),
                )),
            },
        }
    }
    if let Some(doc) = &doc {
        check_schema(path, text, doc, &mut warnings);
    }
    (gate, warnings)
}

/// Schema checks that only warn: the QA policy still gets the whole text.
fn check_schema(path: &Path, text: &str, doc: &Value, warnings: &mut Vec<Warning>) {
    if let Some(story) = doc.get("story")
        && !matches!(story, Value::String(_))
    {
        warnings.push(Warning::new(
            path,
            yaml_key_line(text, &["story"]),
            "`story` is not a quoted string (YAML reads 1.10 as 1.1): quote it, e.g. story: \"1.2\"",
        ));
    }
    if let Some(waiver) = doc.get("waiver")
        && !matches!(waiver, Value::Mapping(_) | Value::Null)
    {
        warnings.push(Warning::new(
            path,
            yaml_key_line(text, &["waiver"]),
            "`waiver` is not a mapping: expected `waiver: { active: false }`",
        ));
    }
    if let Some(issues) = doc.get("top_issues").and_then(Value::as_sequence) {
        for issue in issues {
            if let Some(sev) = issue.get("severity").and_then(Value::as_str)
                && !matches!(sev, "low" | "medium" | "high")
            {
                let line = numbered_lines(text)
                    .find(|(_, l)| l.trim_start().starts_with("severity:") && l.contains(sev))
                    .map(|(n, _)| n);
                warnings.push(Warning::new(
                    path,
                    line,
                    format!("severity `{sev}` is not one of low|medium|high"),
                ));
            }
        }
    }
}

/// The story a gate file name belongs to: `{epic}.{story}-*.yml` (or `.yaml`), the id in
/// dotted form (`1.2-…`, never `1-2-…`) and followed by a dash.
pub(crate) fn gate_story(name: &str) -> Option<StoryId> {
    if !(name.ends_with(".yml") || name.ends_with(".yaml")) {
        return None;
    }
    let (id, used) = StoryId::parse_prefix(name)?;
    let dotted = name.bytes().find(|b| matches!(b, b'.' | b'-')) == Some(b'.');
    (dotted && name[used..].starts_with('-')).then_some(id)
}

/// `gate: VALUE` at column 0, for files that are not valid YAML.
fn gate_line(text: &str) -> Option<String> {
    numbered_lines(text).find_map(|(_, l)| {
        let v = l.strip_prefix("gate:")?;
        let v = v
            .split(" #")
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['"', '\'']);
        Some(v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_tolerated_with_warnings() {
        let text = "schema: 1\nstory: 1.2\ngate: PASSED\nstatus_reason: Looks fine\ntop_issues:\n  - id: SEC-001\n    severity: critical\nwaiver: true\n";
        let (gate, warnings) = parse_gate(Path::new("g.yml"), text);
        assert_eq!(gate, "PASSED");
        let shown: Vec<String> = warnings.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("g.yml:3: gate `PASSED` is not one of"),
            "{shown:#?}"
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:2: `story` is not a quoted string"))
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:8: `waiver` is not a mapping"))
        );
        assert!(
            shown
                .iter()
                .any(|w| w.starts_with("g.yml:7: severity `critical`"))
        );
    }

    #[test]
    fn broken_yaml_falls_back_to_the_gate_line() {
        let (gate, warnings) = parse_gate(Path::new("g.yml"), "gate: 'FAIL'  # x\n\tbad: [\n");
        assert_eq!(gate, "FAIL");
        assert!(warnings[0].message.contains("not valid YAML"));
        let (gate, warnings) = parse_gate(Path::new("g.yml"), "schema: 1\n");
        assert_eq!(gate, "");
        assert!(warnings[0].message.contains("no `gate:` value"));
    }

    #[test]
    fn verdicts() {
        for (text, verdict, warns) in [
            ("gate: PASS\n", Some(GateVerdict::Pass), 0),
            ("gate: \"CONCERNS\"\n", Some(GateVerdict::Concerns), 0),
            ("gate: waived\n", Some(GateVerdict::Waived), 1),
            ("gate: PASSED\n", None, 1),
        ] {
            let (gate, warnings) = parse_gate(Path::new("g.yml"), text);
            assert_eq!(
                GateVerdict::exact(&gate.to_ascii_uppercase()),
                verdict,
                "{text}"
            );
            assert_eq!(warnings.len(), warns, "{text}: {warnings:?}");
        }
    }
}
