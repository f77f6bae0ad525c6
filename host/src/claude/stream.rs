//! Parsing one stream-json line into the facts the supervisor needs, by key: unknown line types
//! and keys are ignored, a key of an unexpected type counts as absent, a line that is not a JSON
//! object is `Line::Invalid`. Pure; no I/O.

use serde_json::{Map, Value};

use super::{EVENT_TEXT_MAX, Event, RateLimit};

/// One content block of an `assistant` line that matters to the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Block {
    Text(String),
    ToolUse { id: String, name: String },
}

/// The `result` line's facts.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ResultLine {
    pub subtype: String,
    pub is_error: bool,
    pub text: Option<String>,
    pub errors: Vec<String>,
    pub api_error_status: Option<u16>,
    /// The CLI's name for the API error (`usage_limit_reached` when the account's limit was hit).
    pub api_error: Option<String>,
    pub num_turns: u32,
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub session_id: Option<String>,
}

/// A parsed stdout line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
    /// Not a JSON object.
    Invalid,
    Init {
        model: String,
        session_id: Option<String>,
    },
    Assistant {
        blocks: Vec<Block>,
        /// The CLI's synthetic API-error message (`model: "<synthetic>"` / `is_api_error_message`).
        api_error: bool,
    },
    /// Tool results: (tool_use_id, is_error).
    User {
        results: Vec<(String, bool)>,
    },
    ApiRetry {
        attempt: u32,
        status: Option<u16>,
    },
    TaskStarted {
        tool_use_id: Option<String>,
    },
    TaskEnded {
        tool_use_id: Option<String>,
    },
    /// `rate_limit_event`.
    RateLimit(RateLimit),
    Result(ResultLine),
    /// A known-shaped line of no interest, or an unknown type.
    Other,
}

fn str_of(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn u64_of(m: &Map<String, Value>, key: &str) -> Option<u64> {
    m.get(key).and_then(Value::as_u64)
}

fn u32_of(m: &Map<String, Value>, key: &str) -> Option<u32> {
    u64_of(m, key).map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

fn u16_of(m: &Map<String, Value>, key: &str) -> Option<u16> {
    u64_of(m, key).and_then(|v| u16::try_from(v).ok())
}

fn content_blocks(m: &Map<String, Value>) -> &[Value] {
    m.get("message")
        .and_then(Value::as_object)
        .and_then(|msg| msg.get("content"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Parses one line (without its newline).
pub(crate) fn parse(line: &[u8]) -> Line {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) else {
        return Line::Invalid;
    };
    let kind = m.get("type").and_then(Value::as_str).unwrap_or("");
    let subtype = m.get("subtype").and_then(Value::as_str).unwrap_or("");
    match (kind, subtype) {
        ("system", "init") => Line::Init {
            model: str_of(&m, "model").unwrap_or_default(),
            session_id: str_of(&m, "session_id"),
        },
        ("system", "api_retry") => Line::ApiRetry {
            attempt: u32_of(&m, "attempt").unwrap_or(0),
            status: u16_of(&m, "error_status"),
        },
        ("system", "task_started") => Line::TaskStarted {
            tool_use_id: str_of(&m, "tool_use_id"),
        },
        ("system", "task_notification") => Line::TaskEnded {
            tool_use_id: str_of(&m, "tool_use_id"),
        },
        ("rate_limit_event", _) => match m.get("rate_limit_info").and_then(Value::as_object) {
            Some(info) => Line::RateLimit(rate_limit(info)),
            None => Line::Other,
        },
        ("assistant", _) => {
            let blocks = content_blocks(&m)
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|b| match b.get("type").and_then(Value::as_str) {
                    Some("text") => str_of(b, "text").map(Block::Text),
                    Some("tool_use") => Some(Block::ToolUse {
                        id: str_of(b, "id").unwrap_or_default(),
                        name: str_of(b, "name").unwrap_or_default(),
                    }),
                    _ => None,
                })
                .collect();
            let synthetic = m
                .get("message")
                .and_then(Value::as_object)
                .and_then(|msg| msg.get("model"))
                .and_then(Value::as_str)
                == Some("<synthetic>");
            let flagged = m.get("is_api_error_message").and_then(Value::as_bool) == Some(true);
            Line::Assistant {
                blocks,
                api_error: synthetic || flagged,
            }
        }
        ("user", _) => Line::User {
            results: content_blocks(&m)
                .iter()
                .filter_map(Value::as_object)
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
                .map(|b| {
                    (
                        str_of(b, "tool_use_id").unwrap_or_default(),
                        b.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                    )
                })
                .collect(),
        },
        ("result", _) => {
            let usage = m.get("usage").and_then(Value::as_object);
            let tok = |key: &str| usage.and_then(|u| u64_of(u, key)).unwrap_or(0);
            Line::Result(ResultLine {
                subtype: subtype.to_owned(),
                is_error: m.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                text: str_of(&m, "result"),
                errors: m
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                api_error_status: u16_of(&m, "api_error_status"),
                api_error: str_of(&m, "api_error"),
                num_turns: u32_of(&m, "num_turns").unwrap_or(0),
                cost_usd: m
                    .get("total_cost_usd")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
                input_tokens: tok("input_tokens")
                    .saturating_add(tok("cache_creation_input_tokens"))
                    .saturating_add(tok("cache_read_input_tokens")),
                output_tokens: tok("output_tokens"),
                session_id: str_of(&m, "session_id"),
            })
        }
        _ => Line::Other,
    }
}

/// A `rate_limit_info` object. `utilization` comes from the limit's own window in
/// `unifiedWindows` when the top level does not state it (a rejection states it only there).
fn rate_limit(info: &Map<String, Value>) -> RateLimit {
    let kind = str_of(info, "rateLimitType");
    let window = kind.as_deref().and_then(|k| {
        info.get("unifiedWindows")
            .and_then(Value::as_object)
            .and_then(|w| w.get(k))
            .and_then(Value::as_object)
    });
    let utilization = info.get("utilization").and_then(Value::as_f64).or_else(|| {
        window
            .and_then(|w| w.get("utilization"))
            .and_then(Value::as_f64)
    });
    RateLimit {
        status: str_of(info, "status").unwrap_or_default(),
        kind,
        utilization,
        resets_at: info.get("resetsAt").and_then(epoch),
    }
}

/// An instant given as epoch seconds (or milliseconds, when the number is that large).
fn epoch(v: &Value) -> Option<jiff::Timestamp> {
    let n = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))?;
    if n.unsigned_abs() >= 100_000_000_000 {
        jiff::Timestamp::from_millisecond(n).ok()
    } else {
        jiff::Timestamp::from_second(n).ok()
    }
}

/// Cuts `text` to at most `max` bytes on a char boundary.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl Line {
    /// The summarised events this line gives the policy.
    pub(crate) fn events(&self) -> Vec<Event> {
        match self {
            Line::Init { model, session_id } => {
                vec![Event::Init {
                    model: model.clone(),
                    session_id: session_id.clone(),
                }]
            }
            Line::Assistant { blocks, .. } => blocks
                .iter()
                .map(|b| match b {
                    Block::Text(t) => Event::Text(truncate(t, EVENT_TEXT_MAX)),
                    Block::ToolUse { name, .. } => Event::ToolUse { name: name.clone() },
                })
                .collect(),
            Line::User { results } => results
                .iter()
                .map(|(_, is_error)| Event::ToolResult {
                    is_error: *is_error,
                })
                .collect(),
            Line::ApiRetry { attempt, status } => {
                vec![Event::ApiRetry {
                    attempt: *attempt,
                    status: *status,
                }]
            }
            Line::RateLimit(info) => vec![Event::RateLimit(info.clone())],
            _ => Vec::new(),
        }
    }

    /// The session id the line carries, if any.
    pub(crate) fn session_id(&self) -> Option<&str> {
        match self {
            Line::Init { session_id, .. } => session_id.as_deref(),
            Line::Result(r) => r.session_id.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines copied from PROTOCOL.md (2.1.330), some lists trimmed.
    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/tmp/rt","session_id":"4f88799b-010d-408a-b371-bfe0b9f42903","tools":["Task","Bash","CronCreate","..."],"mcp_servers":[],"model":"claude-opus-5-5","permissionMode":"acceptEdits","slash_commands":["deep-research","dataviz","update-config","..."],"apiKeySource":"ANTHROPIC_API_KEY","claude_code_version":"2.1.330","output_style":"default","agents":["claude","Explore","general-purpose","..."],"skills":["..."],"plugins":[{"name":"cc-plugin-agents-md","path":"builtin","source":"cc-plugin-agents-md@builtin"}],"capabilities":["interrupt_receipt_v1","..."],"analytics_disabled":true,"product_feedback_disabled":true,"served_by_anthropic":false,"uuid":"2b804249-e0c1-46f4-8c1e-8db224220b3c","memory_paths":{"auto":"/tmp/claude-mock.ZsDkZS/config/projects/-tmp-rt/memory/"},"original_cwd":"/tmp/rt","additional_directories":[],"messaging_socket_path":"/tmp/cc-socks/30616.sock","fast_mode_state":"off"}"#;
    const TEXT: &str = r#"{"type":"assistant","message":{"id":"msg_mock_91bdacefa2144ec6a28d","type":"message","role":"assistant","model":"claude-opus-5-5","content":[{"type":"text","text":"I'll create hello.txt."}],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12304,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"context_management":null},"parent_tool_use_id":null,"session_id":"4f88799b","uuid":"3d110c76","timestamp":"2026-11-23T05:20:01.257Z","request_id":"req_mock_afe3e39d6d0b4eac"}"#;
    const TOOL_USE: &str = r#"{"type":"assistant","message":{"id":"msg_mock_91bdacefa2144ec6a28d","content":[{"type":"tool_use","id":"toolu_mock_67a2b7fa917f444198f8","name":"Write","input":{"file_path":"/tmp/rt/hello.txt","content":"Hello from the mock model!\n"}}],"stop_reason":null},"parent_tool_use_id":null,"session_id":"4f88799b","uuid":"8f2559a6"}"#;
    const TOOL_RESULT: &str = r#"{"type":"user","message":{"role":"user","content":[{"tool_use_id":"toolu_mock_67a2b7fa917f444198f8","type":"tool_result","content":"File created successfully at: /tmp/rt/hello.txt (file state is current in your context — no need to Read it back)"}]},"parent_tool_use_id":null,"session_id":"4f88799b","uuid":"ede11f3a","timestamp":"2026-11-23T05:20:01.310Z","tool_use_result":{"type":"create","filePath":"/tmp/rt/hello.txt","content":"Hello from the mock model!\n","structuredPatch":[],"originalFile":null,"userModified":false},"tool_result_meta":[{"id":"toolu_mock_67a2b7fa917f444198f8","permission_decision":{"decision":"accept","source":"config","reason_type":"mode"}}]}"#;
    const REJECTED: &str = r#"{"type":"user","message":{"role":"user","content":[{"type":"tool_result","content":"The user doesn't want to proceed with this tool use.","is_error":true,"tool_use_id":"toolu_mock_e346"}]},"tool_use_result":"User rejected tool use"}"#;
    const TASK_STARTED: &str = r#"{"type":"system","subtype":"task_started","task_id":"b9dxb3lmx","run_id":"0mwsth6bx-5e3fbbf9","tool_use_id":"toolu_mock_1efe","description":"wait 3s","is_backgrounded":false,"task_type":"local_bash","uuid":"x","session_id":"567839c8"}"#;
    const TASK_DONE: &str = r#"{"type":"system","subtype":"task_notification","task_id":"b9dxb3lmx","run_id":"0mwsth6bx-5e3fbbf9","tool_use_id":"toolu_mock_1efe","status":"completed","output_file":"","summary":"wait 3s","uuid":"x","session_id":"567839c8"}"#;
    const SUCCESS: &str = r#"{"type":"result","subtype":"success","is_error":false,"api_error_status":null,"duration_ms":219,"duration_api_ms":45,"num_turns":2,"result":"Created hello.txt.","stop_reason":"end_turn","session_id":"4f88799b","total_cost_usd":0.100212,"usage":{"input_tokens":24718,"output_tokens":67,"cache_creation_input_tokens":0,"cache_read_input_tokens":0},"modelUsage":{"claude-opus-5-5":{"inputTokens":24718,"outputTokens":67,"costUSD":0.100212,"contextWindow":1000000}},"permission_denials":[],"terminal_reason":"completed","ttft_ms":134,"uuid":"2eb2a198"}"#;
    const API_RETRY: &str = r#"{"type":"system","subtype":"api_retry","attempt":1,"max_retries":2,"retry_delay_ms":564,"error_status":529,"error":"overloaded","session_id":"72976b2b","uuid":"x"}"#;
    const SYNTHETIC: &str = r#"{"type":"assistant","message":{"id":"c2dc56de","model":"<synthetic>","role":"assistant","stop_reason":"stop_sequence","type":"message","usage":{"input_tokens":0,"output_tokens":0},"content":[{"type":"text","text":"API Error: 529 Overloaded. This is a server-side issue, usually temporary — try again in a moment."}]},"session_id":"72976b2b","error":"server_error","is_api_error_message":true,"api_error_status":529,"api_error_type":"overloaded_error"}"#;
    const API_ERROR: &str = r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"api_error_type":"overloaded_error","num_turns":1,"result":"API Error: 529 Overloaded. This is a server-side issue, usually temporary.","stop_reason":"stop_sequence","terminal_reason":"api_error","total_cost_usd":0,"duration_ms":1805}"#;
    // 2.1.330 puts "type" late in result objects.
    const MAX_TURNS: &str = r#"{"subtype":"error_max_turns","is_error":true,"num_turns":2,"errors":["Reached maximum number of turns (1)"],"stop_reason":"tool_use","terminal_reason":"max_turns","duration_ms":204,"total_cost_usd":0.050316,"usage":{"input_tokens":10,"output_tokens":5,"cache_read_input_tokens":100},"permission_denials":[],"session_id":"600b70a8","uuid":"x","type":"result"}"#;

    #[test]
    fn init_gives_model_and_session() {
        let line = parse(INIT.as_bytes());
        assert_eq!(
            line,
            Line::Init {
                model: "claude-opus-5-5".into(),
                session_id: Some("4f88799b-010d-408a-b371-bfe0b9f42903".into())
            }
        );
        assert_eq!(
            line.session_id(),
            Some("4f88799b-010d-408a-b371-bfe0b9f42903")
        );
    }

    #[test]
    fn assistant_text_and_tool_use() {
        assert_eq!(
            parse(TEXT.as_bytes()).events(),
            vec![Event::Text("I'll create hello.txt.".into())]
        );
        let line = parse(TOOL_USE.as_bytes());
        assert_eq!(
            line,
            Line::Assistant {
                blocks: vec![Block::ToolUse {
                    id: "toolu_mock_67a2b7fa917f444198f8".into(),
                    name: "Write".into()
                }],
                api_error: false
            }
        );
        assert_eq!(
            line.events(),
            vec![Event::ToolUse {
                name: "Write".into()
            }]
        );
    }

    #[test]
    fn tool_results_with_and_without_is_error() {
        assert_eq!(
            parse(TOOL_RESULT.as_bytes()),
            Line::User {
                results: vec![("toolu_mock_67a2b7fa917f444198f8".into(), false)]
            }
        );
        assert_eq!(
            parse(REJECTED.as_bytes()).events(),
            vec![Event::ToolResult { is_error: true }]
        );
    }

    #[test]
    fn tasks_and_retries() {
        assert_eq!(
            parse(TASK_STARTED.as_bytes()),
            Line::TaskStarted {
                tool_use_id: Some("toolu_mock_1efe".into())
            }
        );
        assert_eq!(
            parse(TASK_DONE.as_bytes()),
            Line::TaskEnded {
                tool_use_id: Some("toolu_mock_1efe".into())
            }
        );
        assert_eq!(
            parse(API_RETRY.as_bytes()).events(),
            vec![Event::ApiRetry {
                attempt: 1,
                status: Some(529)
            }]
        );
    }

    #[test]
    fn synthetic_api_error_message_is_flagged() {
        let Line::Assistant { api_error, blocks } = parse(SYNTHETIC.as_bytes()) else {
            panic!("not an assistant line");
        };
        assert!(api_error);
        assert_eq!(blocks.len(), 1);
    }

    #[test]
    fn result_lines() {
        let Line::Result(r) = parse(SUCCESS.as_bytes()) else {
            panic!("not a result")
        };
        assert_eq!(r.subtype, "success");
        assert!(!r.is_error);
        assert_eq!(r.num_turns, 2);
        assert_eq!(r.text.as_deref(), Some("Created hello.txt."));
        assert_eq!((r.input_tokens, r.output_tokens), (24718, 67));
        assert!((r.cost_usd - 0.100212).abs() < 1e-9);
        assert_eq!(r.api_error_status, None);

        let Line::Result(r) = parse(API_ERROR.as_bytes()) else {
            panic!("not a result")
        };
        assert!(r.is_error);
        assert_eq!(r.api_error_status, Some(529));

        let Line::Result(r) = parse(MAX_TURNS.as_bytes()) else {
            panic!("not a result")
        };
        assert_eq!(r.subtype, "error_max_turns");
        assert_eq!(
            r.errors,
            vec!["Reached maximum number of turns (1)".to_owned()]
        );
        assert_eq!(r.input_tokens, 110);
    }

    #[test]
    fn garbage_unknown_and_odd_types() {
        assert_eq!(parse(b"not json at all"), Line::Invalid);
        assert_eq!(parse(b"[1,2,3]"), Line::Invalid);
        assert_eq!(parse(b""), Line::Invalid);
        assert_eq!(parse(b"\xff\xfe{"), Line::Invalid);
        assert_eq!(parse(br#"{"type":"stream_event","event":{}}"#), Line::Other);
        assert_eq!(
            parse(br#"{"type":"control_response","response":{}}"#),
            Line::Other
        );
        assert_eq!(parse(br#"{"no_type":1}"#), Line::Other);
        // A key of an unexpected type counts as absent, the line still counts.
        let Line::Result(r) = parse(br#"{"type":"result","subtype":"success","is_error":"yes","num_turns":"2","result":{"x":1}}"#) else {
            panic!("not a result")
        };
        assert!(!r.is_error);
        assert_eq!(r.num_turns, 0);
        assert_eq!(r.text, None);
        // Content that is not a list.
        assert_eq!(
            parse(br#"{"type":"assistant","message":{"content":"plain"}}"#).events(),
            vec![]
        );
    }

    #[test]
    fn text_is_cut_on_a_char_boundary() {
        let long = "é".repeat(EVENT_TEXT_MAX);
        let cut = truncate(&long, EVENT_TEXT_MAX);
        assert!(cut.len() <= EVENT_TEXT_MAX);
        assert!(cut.len() >= EVENT_TEXT_MAX - 1);
    }
}
