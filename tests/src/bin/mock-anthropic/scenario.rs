//! Scenarios: which scripted turn answers a request, with which faults.
//!
//! A scenario has a default script (`turns`, `after_last`) and named `scripts`, each chosen by
//! regexes on the request (`when.prompt` on the user text, `when.system` on the system prompt;
//! all must match; the first matching script wins, else the default). A script's turn `i`
//! answers requests with `i` assistant messages. Strings in a turn may use `{{name}}`: the
//! built-ins `cwd`, `turn`, `attempt`, `session`, `script`, `last_tool_result`, `last_user`, and
//! the script's `vars` (regexes whose first group is taken from the prompt, else the system
//! prompt; empty when absent). `{{name|abs}}` makes a relative path absolute against `cwd`.
//! Faults (`hang`, `drop`, `error`, `drop_after`, `cut_after`, `stall_after`,
//! `sse_error_after`) take a plain value or `{"<key>": value, "times": N, "per":
//! "session"|"global"}`: with `times` the fault hits only the first N attempts of that turn,
//! counted per CLI session (default) or
//! across sessions (`global`, so a fault can outlast the CLI's own retries and reach the
//! host's). See `tests/e2e/README.md` for the whole format.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::request::Facts;

/// A scenario that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{0}")]
    File(String),
    #[error("the scenario is not valid JSON for a scenario: {0}")]
    Json(#[from] serde_json::Error),
    #[error("script `{script}`: bad regex {pattern:?}: {source}")]
    Regex {
        script: String,
        pattern: String,
        source: regex::Error,
    },
    #[error("script `{script}`, {which}: {message}")]
    Turn {
        script: String,
        which: String,
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    #[serde(default)]
    prompt: OneOrMany,
    #[serde(default)]
    system: OneOrMany,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    name: String,
    #[serde(default, rename = "description")]
    _description: Option<String>,
    #[serde(default)]
    when: RawWhen,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    #[serde(default)]
    turns: Vec<Value>,
    #[serde(default)]
    after_last: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    scripts: Vec<RawScript>,
    #[serde(default)]
    turns: Vec<Value>,
    #[serde(default)]
    after_last: Option<Value>,
    #[serde(default)]
    side: Option<Value>,
    #[serde(default)]
    side_model_pattern: Option<String>,
}

/// One script: the turns of one kind of conversation.
#[derive(Debug)]
pub struct Script {
    pub name: String,
    when_prompt: Vec<Regex>,
    when_system: Vec<Regex>,
    vars: Vec<(String, Regex)>,
    turns: Vec<Value>,
    after_last: Option<Value>,
}

/// A loaded, validated scenario.
#[derive(Debug)]
pub struct Scenario {
    pub description: String,
    pub model: String,
    scripts: Vec<Script>,
    default: Script,
    side: Value,
    side_model: Option<Regex>,
}

fn regex(script: &str, pattern: &str) -> Result<Regex, ScenarioError> {
    Regex::new(pattern).map_err(|source| ScenarioError::Regex {
        script: script.to_owned(),
        pattern: pattern.to_owned(),
        source,
    })
}

fn compile(raw: RawScript) -> Result<Script, ScenarioError> {
    let name = raw.name;
    let when_prompt = raw
        .when
        .prompt
        .into_vec()
        .iter()
        .map(|p| regex(&name, p))
        .collect::<Result<_, _>>()?;
    let when_system = raw
        .when
        .system
        .into_vec()
        .iter()
        .map(|p| regex(&name, p))
        .collect::<Result<_, _>>()?;
    let vars = raw
        .vars
        .iter()
        .map(|(k, p)| Ok((k.clone(), regex(&name, p)?)))
        .collect::<Result<_, ScenarioError>>()?;
    let script = Script {
        name,
        when_prompt,
        when_system,
        vars,
        turns: raw.turns,
        after_last: raw.after_last,
    };
    for (i, t) in script.turns.iter().enumerate() {
        validate(&script.name, &format!("turn {i}"), t)?;
    }
    if let Some(t) = &script.after_last {
        validate(&script.name, "after_last", t)?;
    }
    Ok(script)
}

fn validate(script: &str, which: &str, turn: &Value) -> Result<(), ScenarioError> {
    let err = |message: String| ScenarioError::Turn {
        script: script.to_owned(),
        which: which.to_owned(),
        message,
    };
    let t: Turn = serde_json::from_value(turn.clone()).map_err(|e| err(e.to_string()))?;
    t.faults().map_err(err)?;
    Ok(())
}

impl Scenario {
    /// A scenario file, with its includes and patches (see [`crate::compose`]).
    pub fn load(path: &std::path::Path) -> Result<Scenario, ScenarioError> {
        Scenario::from_value(crate::compose::load(path).map_err(ScenarioError::File)?)
    }

    /// A scenario given as text (no includes: they need a file to be relative to).
    pub fn from_json(text: &str) -> Result<Scenario, ScenarioError> {
        let mut value: Value = serde_json::from_str(text)?;
        if let Value::Object(obj) = &mut value {
            if obj.contains_key("include") {
                return Err(ScenarioError::File(
                    "`include` works only in a scenario file".into(),
                ));
            }
            crate::compose::patch(obj).map_err(ScenarioError::File)?;
        }
        Scenario::from_value(value)
    }

    fn from_value(value: Value) -> Result<Scenario, ScenarioError> {
        let raw: RawScenario = serde_json::from_value(value)?;
        let side_pattern = raw.side_model_pattern.unwrap_or_else(|| "haiku".into());
        let side_model = if side_pattern.is_empty() {
            None
        } else {
            Some(regex("side", &side_pattern)?)
        };
        let side = raw
            .side
            .unwrap_or_else(|| json!({"text": "Mock side reply"}));
        validate("side", "side", &side)?;
        Ok(Scenario {
            description: raw.description.unwrap_or_default(),
            model: raw.model.unwrap_or_else(|| "claude-mock-1".into()),
            scripts: raw
                .scripts
                .into_iter()
                .map(compile)
                .collect::<Result<_, _>>()?,
            default: compile(RawScript {
                name: "default".into(),
                _description: None,
                when: RawWhen::default(),
                vars: BTreeMap::new(),
                turns: raw.turns,
                after_last: raw.after_last,
            })?,
            side,
            side_model,
        })
    }

    /// A side call (title, summary): no tools and a model matching `side_model_pattern`.
    pub fn is_side(&self, facts: &Facts) -> bool {
        facts.n_tools == 0
            && self
                .side_model
                .as_ref()
                .is_some_and(|re| re.is_match(facts.model.as_deref().unwrap_or("")))
    }

    pub fn side_turn(&self) -> &Value {
        &self.side
    }

    /// The first script whose conditions all hold, else the default script.
    pub fn select(&self, facts: &Facts) -> &Script {
        self.scripts
            .iter()
            .find(|s| {
                s.when_prompt.iter().all(|re| re.is_match(&facts.prompt))
                    && s.when_system.iter().all(|re| re.is_match(&facts.system))
            })
            .unwrap_or(&self.default)
    }
}

impl Script {
    /// The turn for a request with `index` assistant messages.
    pub fn turn(&self, index: usize) -> Value {
        self.turns
            .get(index)
            .or(self.after_last.as_ref())
            .cloned()
            .unwrap_or_else(|| json!({"text": "(mock: script exhausted)"}))
    }

    /// The script's variables, read from the request.
    pub fn vars(&self, facts: &Facts) -> BTreeMap<String, String> {
        self.vars
            .iter()
            .map(|(name, re)| {
                let found = [&facts.prompt, &facts.system].iter().find_map(|t| {
                    re.captures(t).map(|c| {
                        c.get(1)
                            .or_else(|| c.get(0))
                            .map_or("", |m| m.as_str())
                            .trim()
                            .to_owned()
                    })
                });
                (name.clone(), found.unwrap_or_default())
            })
            .collect()
    }
}

static PLACEHOLDER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:([+-])\s*([0-9]+)\s*)?(\|\s*abs\s*)?\}\}")
        .ok()
});

/// Replaces `{{name}}`, `{{name|abs}}` and, for a number, `{{name+N}}` / `{{name-N}}` (e.g.
/// `{{now+5}}`, epoch seconds 5 s after the request) in every string of `value`; unknown names
/// stay.
pub fn substitute(value: &Value, vars: &BTreeMap<String, String>) -> Value {
    match value {
        Value::String(s) => Value::String(substitute_str(s, vars)),
        Value::Array(items) => Value::Array(items.iter().map(|v| substitute(v, vars)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), substitute(v, vars)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn substitute_str(s: &str, vars: &BTreeMap<String, String>) -> String {
    let Some(re) = PLACEHOLDER.as_ref() else {
        return s.to_owned();
    };
    re.replace_all(s, |c: &regex::Captures<'_>| {
        let Some(v) = vars.get(&c[1]) else {
            return c[0].to_owned();
        };
        if let (Some(sign), Some(n)) = (c.get(2), c.get(3)) {
            let (Ok(base), Ok(n)) = (v.parse::<i64>(), n.as_str().parse::<i64>()) else {
                return c[0].to_owned();
            };
            let sum = if sign.as_str() == "-" {
                base.saturating_sub(n)
            } else {
                base.saturating_add(n)
            };
            return sum.to_string();
        }
        if c.get(4).is_some() && !v.is_empty() && !v.starts_with('/') {
            let cwd = vars.get("cwd").map_or("", String::as_str);
            format!("{}/{v}", cwd.trim_end_matches('/'))
        } else {
            v.clone()
        }
    })
    .into_owned()
}

/// A scripted turn, after substitution.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// A comment for the reader of the scenario.
    #[serde(default, rename = "note")]
    pub _note: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    /// `{"name", "input", "id"?}` or a list of them.
    #[serde(default)]
    pub tool_use: Option<Value>,
    /// The full content block list instead of `text` / `tool_use`.
    #[serde(default)]
    pub content: Option<Vec<Value>>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub output_tokens: Option<u64>,
    #[serde(default)]
    pub chunk_chars: Option<usize>,
    #[serde(default)]
    pub hang: Option<Value>,
    #[serde(default)]
    pub drop: Option<Value>,
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default)]
    pub drop_after: Option<Value>,
    #[serde(default)]
    pub cut_after: Option<Value>,
    #[serde(default)]
    pub stall_after: Option<Value>,
    #[serde(default)]
    pub sse_error_after: Option<Value>,
    #[serde(default)]
    pub sse_error: Option<Value>,
    /// Response headers of a successful answer, e.g. the `anthropic-ratelimit-unified-*` ones
    /// (an `error` carries its own). Values may use `{{now+N}}`.
    #[serde(default)]
    pub headers: Option<serde_json::Map<String, Value>>,
}

impl Turn {
    /// [`Turn::headers`] as header pairs (non-string values written as JSON).
    pub fn header_pairs(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .flatten()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                )
            })
            .collect()
    }
}

/// Which attempts a fault's `times` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Per {
    /// Attempts of this turn in one CLI session (`X-Claude-Code-Session-Id`).
    #[default]
    Session,
    /// Attempts of this script's turn in every session.
    Global,
}

/// A fault: its value (a status, an event index, `true`) and which attempts it hits.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub value: Value,
    pub spec: Value,
    pub times: Option<u64>,
    pub per: Per,
}

/// The attempt numbers (from 1) of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    pub session: u64,
    pub global: u64,
}

impl Fault {
    fn parse(v: Option<&Value>, key: &str) -> Result<Option<Fault>, String> {
        let Some(v) = v else { return Ok(None) };
        match v {
            Value::Null | Value::Bool(false) => Ok(None),
            Value::Object(o) => {
                let times = match o.get("times") {
                    None | Some(Value::Null) => None,
                    Some(t) => Some(
                        t.as_u64()
                            .ok_or_else(|| format!("`times` must be a number, not {t}"))?,
                    ),
                };
                let per = match o.get("per").and_then(Value::as_str) {
                    None | Some("session") => Per::Session,
                    Some("global") => Per::Global,
                    Some(other) => {
                        return Err(format!("`per` must be session or global, not {other:?}"));
                    }
                };
                let value = o.get(key).cloned().unwrap_or(Value::Bool(true));
                Ok(Some(Fault {
                    value,
                    spec: v.clone(),
                    times,
                    per,
                }))
            }
            other => Ok(Some(Fault {
                value: other.clone(),
                spec: other.clone(),
                times: None,
                per: Per::Session,
            })),
        }
    }

    /// Whether this fault hits the attempt.
    pub fn hits(&self, a: Attempts) -> bool {
        let n = match self.per {
            Per::Session => a.session,
            Per::Global => a.global,
        };
        self.times.is_none_or(|t| n <= t)
    }

    /// The value as an SSE event index (default 1).
    pub fn index(&self) -> usize {
        self.value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(1)
    }
}

/// A turn's faults, parsed.
#[derive(Debug, Default)]
pub struct Faults {
    pub hang: Option<Fault>,
    pub drop: Option<Fault>,
    pub error: Option<Fault>,
    pub drop_after: Option<Fault>,
    pub cut_after: Option<Fault>,
    pub stall_after: Option<Fault>,
    pub sse_error_after: Option<Fault>,
}

impl Turn {
    pub fn faults(&self) -> Result<Faults, String> {
        let f = |v: &Option<Value>, key: &str, name: &str| {
            Fault::parse(v.as_ref(), key).map_err(|e| format!("`{name}`: {e}"))
        };
        let faults = Faults {
            hang: f(&self.hang, "hang", "hang")?,
            drop: f(&self.drop, "drop", "drop")?,
            error: f(&self.error, "status", "error")?,
            drop_after: f(&self.drop_after, "after", "drop_after")?,
            cut_after: f(&self.cut_after, "after", "cut_after")?,
            stall_after: f(&self.stall_after, "after", "stall_after")?,
            sse_error_after: f(&self.sse_error_after, "after", "sse_error_after")?,
        };
        if let Some(e) = &faults.error
            && e.value.as_u64().is_none()
        {
            return Err(format!(
                "`error`: the status must be a number, not {}",
                e.value
            ));
        }
        Ok(faults)
    }

    /// The API content blocks of this turn (`content` verbatim, else text + tool_use), with a
    /// generated `id` for tool uses that have none.
    pub fn content(&self, new_id: &mut dyn FnMut() -> String) -> Vec<Value> {
        let mut blocks = match &self.content {
            Some(c) => c.clone(),
            None => {
                let mut b: Vec<Value> = self
                    .text
                    .iter()
                    .map(|t| json!({"type": "text", "text": t}))
                    .collect();
                match &self.tool_use {
                    Some(Value::Array(items)) => b.extend(items.iter().cloned()),
                    Some(one @ Value::Object(_)) => b.push(one.clone()),
                    _ => {}
                }
                if b.is_empty() {
                    b.push(json!({"type": "text", "text": ""}));
                }
                b
            }
        };
        for b in &mut blocks {
            let Value::Object(o) = b else { continue };
            if o.contains_key("name") && !o.contains_key("type") {
                o.insert("type".into(), json!("tool_use"));
            }
            if o.get("type").and_then(Value::as_str) == Some("tool_use") {
                if !o.contains_key("id") {
                    o.insert("id".into(), json!(new_id()));
                }
                o.entry("input").or_insert_with(|| json!({}));
            }
        }
        blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(prompt: &str) -> Facts {
        Facts {
            prompt: prompt.into(),
            system: "Primary working directory: /w".into(),
            cwd: Some("/w".into()),
            n_tools: 12,
            ..Facts::default()
        }
    }

    const SCENARIO: &str = r#"{
        "scripts": [
            {"name": "dev", "when": {"prompt": ["Act as the BMAD Developer", "Cycle: 1 "]},
             "vars": {"story": "Story file: `([^`]+)`", "missing": "nope (\\d+)"},
             "turns": [{"tool_use": {"name": "Read", "input": {"file_path": "{{story|abs}}"}}},
                       {"text": "{{missing}}|{{unknown}}|{{story}}"}],
             "after_last": {"text": "after"}},
            {"name": "any-dev", "when": {"prompt": "Act as the BMAD Developer"}, "turns": []}
        ],
        "turns": [{"text": "default"}]
    }"#;

    #[test]
    fn scripts_are_chosen_by_every_condition_in_order() {
        let s = Scenario::from_json(SCENARIO).expect("valid");
        let dev1 = facts("Act as the BMAD Developer\nCycle: 1 of 3\nStory file: `docs/s.md`");
        let dev2 = facts("Act as the BMAD Developer\nCycle: 2 of 3");
        assert_eq!(s.select(&dev1).name, "dev");
        assert_eq!(s.select(&dev2).name, "any-dev");
        assert_eq!(s.select(&facts("Act as the BMAD QA")).name, "default");
        assert_eq!(
            s.select(&dev2).turn(0),
            json!({"text": "(mock: script exhausted)"})
        );
        assert_eq!(s.select(&dev1).turn(7), json!({"text": "after"}));
    }

    #[test]
    fn vars_and_placeholders() {
        let s = Scenario::from_json(SCENARIO).expect("valid");
        let f = facts("Act as the BMAD Developer\nCycle: 1 of 3\nStory file: `docs/s.md`");
        let script = s.select(&f);
        let mut vars = script.vars(&f);
        assert_eq!(vars["story"], "docs/s.md");
        assert_eq!(vars["missing"], "");
        vars.insert("cwd".into(), "/w/".into());
        assert_eq!(
            substitute(&script.turn(0), &vars),
            json!({"tool_use": {"name": "Read", "input": {"file_path": "/w/docs/s.md"}}})
        );
        assert_eq!(
            substitute(&script.turn(1), &vars),
            json!({"text": "|{{unknown}}|docs/s.md"})
        );
        vars.insert("story".into(), "/abs/s.md".into());
        assert_eq!(substitute_str("{{ story | abs }}", &vars), "/abs/s.md");
    }

    #[test]
    fn time_relative_headers() {
        let vars = BTreeMap::from([("now".to_owned(), "1796191200".to_owned())]);
        assert_eq!(substitute_str("{{now+5}}", &vars), "1796191205");
        assert_eq!(substitute_str("{{ now - 60 }}", &vars), "1796191140");
        assert_eq!(substitute_str("{{story+5}}", &vars), "{{story+5}}");
        // A capture's scenario.json turn, as the real CLI was answered.
        let t: Turn = serde_json::from_value(substitute(
            &json!({"text": "Hello from the mock.", "headers": {
                "anthropic-ratelimit-unified-status": "allowed_warning",
                "anthropic-ratelimit-unified-reset": "{{now+3600}}",
                "anthropic-ratelimit-unified-5h-utilization": 0.92
            }}),
            &vars,
        ))
        .expect("a turn");
        assert_eq!(
            t.header_pairs(),
            [
                (
                    "anthropic-ratelimit-unified-5h-utilization".to_owned(),
                    "0.92".to_owned()
                ),
                (
                    "anthropic-ratelimit-unified-reset".to_owned(),
                    "1796194800".to_owned()
                ),
                (
                    "anthropic-ratelimit-unified-status".to_owned(),
                    "allowed_warning".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn faults_and_their_attempts() {
        let t: Turn = serde_json::from_value(json!({
            "error": {"status": 529, "times": 4, "per": "global"},
            "drop_after": 3,
            "hang": {"times": 1}
        }))
        .expect("turn");
        let f = t.faults().expect("faults");
        let err = f.error.expect("error");
        assert_eq!(err.value, json!(529));
        let at = |session, global| Attempts { session, global };
        assert!(err.hits(at(1, 4)) && !err.hits(at(1, 5)));
        let hang = f.hang.expect("hang");
        assert!(hang.hits(at(1, 9)) && !hang.hits(at(2, 2)));
        let drop = f.drop_after.expect("drop_after");
        assert_eq!(drop.index(), 3);
        assert!(drop.hits(at(100, 100)));
        assert!(f.drop.is_none() && f.stall_after.is_none());
    }

    #[test]
    fn bad_scenarios_say_where() {
        let typo = r#"{"scripts": [{"name": "sm", "turns": [{"txt": "x"}]}]}"#;
        let e = Scenario::from_json(typo).expect_err("typo").to_string();
        assert!(
            e.contains("script `sm`, turn 0") && e.contains("txt"),
            "{e}"
        );
        let per = r#"{"turns": [{"error": {"status": 529, "per": "process"}}]}"#;
        let e = Scenario::from_json(per).expect_err("per").to_string();
        assert!(e.contains("`per`"), "{e}");
        let status = r#"{"turns": [{"error": "busy"}]}"#;
        assert!(Scenario::from_json(status).is_err());
        let re = r#"{"scripts": [{"name": "x", "when": {"prompt": "("}}]}"#;
        let e = Scenario::from_json(re).expect_err("regex").to_string();
        assert!(e.contains("bad regex"), "{e}");
    }

    #[test]
    fn content_blocks_get_types_and_ids() {
        let t: Turn = serde_json::from_value(json!({
            "text": "hi",
            "tool_use": [{"name": "Write", "input": {"file_path": "/a"}}, {"name": "Bash", "id": "x"}]
        }))
        .expect("turn");
        let mut n = 0;
        let blocks = t.content(&mut || {
            n += 1;
            format!("toolu_{n}")
        });
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[1]["type"], "tool_use");
        assert_eq!(blocks[1]["id"], "toolu_1");
        assert_eq!(blocks[2]["id"], "x");
        assert_eq!(blocks[2]["input"], json!({}));
        let empty = Turn::default().content(&mut String::new);
        assert_eq!(empty, vec![json!({"type": "text", "text": ""})]);
    }
}
