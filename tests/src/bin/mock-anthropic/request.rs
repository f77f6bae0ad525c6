//! What a scenario may depend on in a `POST /v1/messages` body: the prompt text, the system
//! prompt, the CLI's working directory, the conversation's turn index and the last tool result.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Facts read from one Messages request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// Every text block of every `user` message (not tool results), joined by newlines: the
    /// `-p` prompt and whatever the CLI adds to it.
    pub prompt: String,
    /// Every text block of `system` and of `role: "system"` messages (where 2.1.330 states
    /// the environment), joined by newlines.
    pub system: String,
    /// `Primary working directory: <cwd>` from the system prompt (or a message), if stated.
    pub cwd: Option<String>,
    /// The scripted turn this request is for: the number of `assistant` messages (0 for a
    /// run's first call, +1 per tool round-trip), not counting cut-off responses that the CLI
    /// asked to resume (see [`RESUME_NUDGE`]).
    pub turn: usize,
    /// When the CLI asks to resume a response that was cut off mid-stream: how many content
    /// blocks of this turn it already has (the answer sends only the rest).
    pub resume_from: Option<usize>,
    /// Text of the last `tool_result` block.
    pub last_tool_result: String,
    /// The last user-typed text, skipping `<system-reminder>` blocks and tool results.
    pub last_user: String,
    pub model: Option<String>,
    pub stream: bool,
    pub n_messages: usize,
    pub n_tools: usize,
}

/// Text of a `content` value: a string, or the `text` blocks (and the text inside
/// `tool_result` blocks when `tool_results` is set) of a block list.
fn texts(content: &Value, tool_results: bool, out: &mut Vec<String>) {
    match content {
        Value::String(s) => out.push(s.clone()),
        Value::Array(blocks) => {
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(t) = b.get("text").and_then(Value::as_str) {
                            out.push(t.to_owned());
                        }
                    }
                    Some("tool_result") if tool_results => {
                        if let Some(c) = b.get("content") {
                            texts(c, true, out);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn messages(body: &Value) -> &[Value] {
    body.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn role(m: &Value) -> Option<&str> {
    m.get("role").and_then(Value::as_str)
}

/// What the CLI (2.1.330) says after a stream broke once at least one content block was
/// complete: it keeps those blocks and asks the model to go on ("Your response above was cut
/// off mid-stream. Resume directly from where it stops ...") instead of retrying the request.
pub const RESUME_NUDGE: &str = "was cut off mid-stream";

fn is_nudge(m: &Value) -> bool {
    if role(m) != Some("user") {
        return false;
    }
    let mut out = Vec::new();
    if let Some(c) = m.get("content") {
        texts(c, false, &mut out);
    }
    out.iter().any(|t| t.contains(RESUME_NUDGE))
}

fn block_count(m: &Value) -> usize {
    match m.get("content") {
        Some(Value::Array(b)) => b.len(),
        Some(Value::String(_)) => 1,
        _ => 0,
    }
}

/// (turn, resume_from): assistant messages minus resumed ones, and the blocks already
/// delivered when the conversation ends with resume nudges.
fn turn_of(msgs: &[Value]) -> (usize, Option<usize>) {
    let assistants = msgs.iter().filter(|m| role(m) == Some("assistant")).count();
    let resumed = msgs
        .windows(2)
        .filter(|w| role(&w[0]) == Some("assistant") && is_nudge(&w[1]))
        .count();
    let mut delivered = 0;
    let mut trailing = false;
    let mut end = msgs.len();
    while end >= 2 && role(&msgs[end - 2]) == Some("assistant") && is_nudge(&msgs[end - 1]) {
        delivered += block_count(&msgs[end - 2]);
        trailing = true;
        end -= 2;
    }
    (assistants - resumed, trailing.then_some(delivered))
}

static CWD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?:Primary working directory|Working directory): (\S+)").ok());

impl Facts {
    pub fn from_body(body: &Value) -> Facts {
        let msgs = messages(body);
        let mut system = Vec::new();
        if let Some(s) = body.get("system") {
            texts(s, false, &mut system);
        }
        for m in msgs.iter().filter(|m| role(m) == Some("system")) {
            if let Some(c) = m.get("content") {
                texts(c, false, &mut system);
            }
        }
        let mut prompt = Vec::new();
        for m in msgs.iter().filter(|m| role(m) == Some("user")) {
            if let Some(c) = m.get("content") {
                texts(c, false, &mut prompt);
            }
        }
        let (system, prompt) = (system.join("\n"), prompt.join("\n"));
        let cwd = CWD.as_ref().and_then(|re| {
            [&system, &prompt]
                .iter()
                .find_map(|t| re.captures(t).map(|c| c[1].to_owned()))
        });
        let (turn, resume_from) = turn_of(msgs);
        Facts {
            cwd,
            turn,
            resume_from,
            last_tool_result: last_tool_result(msgs),
            last_user: last_user(msgs),
            model: body.get("model").and_then(Value::as_str).map(str::to_owned),
            stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
            n_messages: msgs.len(),
            n_tools: body
                .get("tools")
                .and_then(Value::as_array)
                .map_or(0, Vec::len),
            prompt,
            system,
        }
    }
}

fn last_tool_result(msgs: &[Value]) -> String {
    for m in msgs.iter().rev().filter(|m| role(m) == Some("user")) {
        let Some(blocks) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        if let Some(b) = blocks
            .iter()
            .rev()
            .find(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
        {
            let mut out = Vec::new();
            if let Some(c) = b.get("content") {
                texts(c, true, &mut out);
            }
            return out.join("\n");
        }
    }
    String::new()
}

fn last_user(msgs: &[Value]) -> String {
    for m in msgs.iter().rev().filter(|m| role(m) == Some("user")) {
        let mut out = Vec::new();
        if let Some(c) = m.get("content") {
            texts(c, false, &mut out);
        }
        if let Some(t) = out
            .into_iter()
            .rev()
            .find(|t| !t.trim_start().starts_with("<system-reminder>"))
        {
            return t;
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn facts_of_a_tool_round_trip() {
        let body = json!({
            "model": "claude-opus-5-5",
            "stream": true,
            "system": [{"type": "text", "text": "You are Claude Code."}],
            "tools": [{"name": "Write"}, {"name": "Edit"}],
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "<system-reminder>ctx</system-reminder>"},
                    {"type": "text", "text": "Act as the BMAD Developer\nStory file: `docs/s.md`"}]},
                {"role": "system", "content": [{"type": "text",
                    "text": "# Environment\n - Primary working directory: /tmp/p\n - Is a git repository: false"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "ok 1"}]}]},
            ]
        });
        let f = Facts::from_body(&body);
        assert_eq!(f.cwd.as_deref(), Some("/tmp/p"));
        assert_eq!(f.turn, 1);
        assert!(f.prompt.contains("Act as the BMAD Developer"));
        assert!(
            !f.prompt.contains("ok 1"),
            "tool results are not prompt text"
        );
        assert_eq!(f.last_tool_result, "ok 1");
        assert!(f.last_user.starts_with("Act as the BMAD Developer"));
        assert!(f.stream);
        assert!(f.system.contains("You are Claude Code.") && f.system.contains("# Environment"));
        assert_eq!((f.n_messages, f.n_tools), (4, 2));
    }

    #[test]
    fn a_cut_off_response_resumes_the_same_turn() {
        let nudge = json!({"role": "user", "content": [{"type": "text",
            "text": "Your response above was cut off mid-stream. Resume directly from where it stops."}]});
        let body = json!({"messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Implementing."}]},
            nudge.clone(),
        ]});
        let f = Facts::from_body(&body);
        assert_eq!((f.turn, f.resume_from), (1, Some(1)));
        let mut msgs = body["messages"].as_array().cloned().unwrap_or_default();
        msgs.push(json!({"role": "assistant", "content": [{"type": "text", "text": "more"}]}));
        msgs.push(nudge);
        let f = Facts::from_body(&json!({"messages": msgs.clone()}));
        assert_eq!((f.turn, f.resume_from), (1, Some(2)), "two cuts in a row");
        msgs.push(json!({"role": "assistant", "content": [{"type": "tool_use", "id": "t2", "name": "Write", "input": {}}]}));
        msgs.push(json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "ok"}]}));
        let f = Facts::from_body(&json!({"messages": msgs}));
        assert_eq!(
            (f.turn, f.resume_from),
            (2, None),
            "the resumed turn counts once"
        );
    }

    #[test]
    fn string_content_and_missing_fields() {
        let f = Facts::from_body(&json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(f.prompt, "hi");
        assert_eq!(f.turn, 0);
        assert_eq!(f.cwd, None);
        assert!(!f.stream);
        assert_eq!(Facts::from_body(&json!(null)), Facts::default());
    }
}
