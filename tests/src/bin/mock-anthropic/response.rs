//! The model's answer as the Messages API sends it: one JSON message (non-streaming), or the
//! SSE event sequence the Claude CLI needs (`message_start`, `ping`, per content block
//! `content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) /
//! `content_block_stop`, then `message_delta` with `stop_reason` and `usage.output_tokens`, and
//! `message_stop`).

use bytes::Bytes;
use serde_json::{Value, json};

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub name: &'static str,
    pub data: Value,
}

impl SseEvent {
    pub fn bytes(&self) -> Bytes {
        Bytes::from(format!("event: {}\ndata: {}\n\n", self.name, self.data))
    }
}

/// A complete assistant message.
pub fn message(
    id: String,
    model: &str,
    content: Vec<Value>,
    stop_reason: &str,
    input_tokens: u64,
    output_tokens: u64,
) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0
        }
    })
}

/// `s` in pieces of at most `n` characters (never splitting a character).
fn pieces(s: &str, n: usize) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    chars.chunks(n.max(1)).map(|c| c.iter().collect()).collect()
}

/// The SSE events that stream `message` (as built by [`message`]), deltas of `chunk_chars`.
pub fn events(message: &Value, chunk_chars: usize) -> Vec<SseEvent> {
    let mut start = message.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut ev = vec![
        SseEvent {
            name: "message_start",
            data: json!({"type": "message_start", "message": start}),
        },
        SseEvent {
            name: "ping",
            data: json!({"type": "ping"}),
        },
    ];
    let empty = Vec::new();
    let blocks = message["content"].as_array().unwrap_or(&empty);
    for (i, block) in blocks.iter().enumerate() {
        let (first, deltas) = match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let text = block.get("text").and_then(Value::as_str).unwrap_or("");
                let deltas = pieces(text, chunk_chars)
                    .into_iter()
                    .map(|t| json!({"type": "text_delta", "text": t}))
                    .collect();
                (json!({"type": "text", "text": ""}), deltas)
            }
            Some("tool_use") => {
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let deltas = pieces(&input.to_string(), chunk_chars)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect();
                (
                    json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                    deltas,
                )
            }
            // Any other block type (thinking, ...) is sent whole.
            _ => (block.clone(), Vec::new()),
        };
        ev.push(SseEvent {
            name: "content_block_start",
            data: json!({"type": "content_block_start", "index": i, "content_block": first}),
        });
        ev.extend(deltas.into_iter().map(|d: Value| SseEvent {
            name: "content_block_delta",
            data: json!({"type": "content_block_delta", "index": i, "delta": d}),
        }));
        ev.push(SseEvent {
            name: "content_block_stop",
            data: json!({"type": "content_block_stop", "index": i}),
        });
    }
    ev.push(SseEvent {
        name: "message_delta",
        data: json!({
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": null},
            "usage": {"output_tokens": message["usage"]["output_tokens"]}
        }),
    });
    ev.push(SseEvent {
        name: "message_stop",
        data: json!({"type": "message_stop"}),
    });
    ev
}

/// An SSE `error` event.
pub fn sse_error(spec: Option<&Value>) -> SseEvent {
    let field = |k: &str, default: &str| {
        spec.and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    SseEvent {
        name: "error",
        data: json!({"type": "error", "error": {
            "type": field("type", "overloaded_error"),
            "message": field("message", "Overloaded"),
        }}),
    }
}

/// The Anthropic error type for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An Anthropic error body.
pub fn error_body(status: u16, etype: Option<&str>, message: Option<&str>) -> Value {
    let etype = etype.unwrap_or_else(|| error_type(status));
    let message = message.unwrap_or(match status {
        429 => "Rate limited (mock)",
        500 => "Internal server error (mock)",
        529 => "Overloaded",
        _ => etype,
    });
    json!({"type": "error", "error": {"type": etype, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_reassembles_to_the_message() {
        let content = vec![
            json!({"type": "text", "text": "Grüße, wörld! ✓"}),
            json!({"type": "tool_use", "id": "toolu_1", "name": "Write",
                   "input": {"file_path": "/p/a.txt", "content": "é\n"}}),
        ];
        let msg = message("msg_1".into(), "m", content, "tool_use", 10, 20);
        let ev = events(&msg, 3);
        let names: Vec<&str> = ev.iter().map(|e| e.name).collect();
        assert_eq!(
            &names[..3],
            ["message_start", "ping", "content_block_start"]
        );
        assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
        assert_eq!(ev[0].data["message"]["content"], json!([]));
        assert_eq!(ev[0].data["message"]["usage"]["output_tokens"], 1);
        let delta = &ev[ev.len() - 2].data;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(delta["usage"]["output_tokens"], 20);
        // Rebuild the blocks from the deltas, as a client does.
        let (mut text, mut json_in) = (String::new(), String::new());
        for e in &ev {
            match e.data["delta"]["type"].as_str() {
                Some("text_delta") => text.push_str(e.data["delta"]["text"].as_str().unwrap_or("")),
                Some("input_json_delta") => {
                    json_in.push_str(e.data["delta"]["partial_json"].as_str().unwrap_or(""));
                }
                _ => {}
            }
        }
        assert_eq!(text, "Grüße, wörld! ✓");
        let input: Value = serde_json::from_str(&json_in).expect("input json");
        assert_eq!(input, msg["content"][1]["input"]);
        let tool_start = ev
            .iter()
            .find(|e| e.data["content_block"]["type"] == "tool_use")
            .expect("tool start");
        assert_eq!(tool_start.data["content_block"]["input"], json!({}));
        assert_eq!(tool_start.data["index"], 1);
        let b = String::from_utf8(ev[1].bytes().to_vec()).expect("utf8");
        assert_eq!(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
    }

    #[test]
    fn errors() {
        assert_eq!(
            error_body(529, None, None)["error"]["type"],
            "overloaded_error"
        );
        assert_eq!(
            error_body(429, None, None)["error"]["message"],
            "Rate limited (mock)"
        );
        let e = sse_error(Some(&json!({"message": "boom"})));
        assert_eq!(e.data["error"]["message"], "boom");
        assert_eq!(e.data["error"]["type"], "overloaded_error");
    }
}
