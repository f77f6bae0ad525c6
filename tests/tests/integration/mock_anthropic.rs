//! mock-anthropic over real HTTP, without the Claude CLI (so CI covers it even where npm is
//! missing): SSE event order and reassembly, the non-streaming answer, scripts chosen by the
//! prompt with variables and `|abs` paths, resume after a cut-off response, HTTP errors with
//! `times`, the TCP reset, a hang, and the other endpoints.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

struct Mock {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock(scenario: &Value) -> Mock {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scenario.json");
    std::fs::write(&path, scenario.to_string()).expect("write scenario");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mock-anthropic"))
        .arg("--scenario")
        .arg(&path)
        .arg("--log")
        .arg(dir.path().join("log.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start mock-anthropic");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("readiness line");
    let addr = line
        .trim()
        .rsplit_once("http://")
        .map(|(_, a)| a.to_owned())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Mock {
        child,
        addr,
        _dir: dir,
    }
}

/// Status, lower-cased head, body (de-chunked).
struct Reply {
    status: u16,
    head: String,
    body: String,
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..eol]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
}

fn request(m: &Mock, method: &str, path: &str, session: &str, body: Option<&Value>) -> Reply {
    let mut s = TcpStream::connect(&m.addr).expect("connect");
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nX-Claude-Code-Session-Id: {session}\r\nConnection: close\r\n\r\n{body}",
        m.addr,
        body.len()
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the reply");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let rest = &raw[split + 4..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        head,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn messages(m: &Mock, session: &str, body: &Value) -> Reply {
    request(m, "POST", "/v1/messages?beta=true", session, Some(body))
}

/// `(event name, data)` of an SSE body.
fn sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = e
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or(Value::Null);
            (name, data)
        })
        .collect()
}

fn body(prompt: &str, stream: bool) -> Value {
    json!({
        "model": "claude-opus-5-5",
        "stream": stream,
        "system": [{"type": "text", "text": "You are Claude Code."}],
        "tools": [{"name": "Write"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt}]},
            {"role": "system", "content": [{"type": "text", "text": "# Environment\n - Primary working directory: /work/p\n"}]}
        ]
    })
}

const ROLES: &str = r#"{
  "turns": [{"error": {"status": 400, "message": "no script", "should_retry": false}}],
  "scripts": [
    {"name": "dev", "when": {"prompt": "Act as the Developer"},
     "vars": {"story": "Story file: `([^`]+)`"},
     "turns": [{"text": "Writing {{story}} in {{cwd}}.",
                "tool_use": {"name": "Write", "input": {"file_path": "{{story|abs}}", "content": "é ✓\n"}},
                "chunk_chars": 7}]}
  ]
}"#;

#[test]
fn streams_the_events_the_cli_needs() {
    let m = mock(&serde_json::from_str(ROLES).expect("scenario"));
    let r = messages(
        &m,
        "s1",
        &body("Act as the Developer\nStory file: `docs/1.md`", true),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.head.contains("content-type: text/event-stream"),
        "{}",
        r.head
    );
    assert!(r.head.contains("transfer-encoding: chunked"), "{}", r.head);
    let events = sse(&r.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "ping", "content_block_start"]
    );
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    let (text, input) =
        events
            .iter()
            .fold((String::new(), String::new()), |(mut t, mut i), (_, d)| {
                match d["delta"]["type"].as_str() {
                    Some("text_delta") => t.push_str(d["delta"]["text"].as_str().unwrap_or("")),
                    Some("input_json_delta") => {
                        i.push_str(d["delta"]["partial_json"].as_str().unwrap_or(""))
                    }
                    _ => {}
                }
                (t, i)
            });
    assert_eq!(text, "Writing docs/1.md in /work/p.");
    let input: Value = serde_json::from_str(&input).expect("tool input JSON");
    assert_eq!(
        input,
        json!({"file_path": "/work/p/docs/1.md", "content": "é ✓\n"})
    );
    let tool = events
        .iter()
        .find(|(_, d)| d["content_block"]["type"] == "tool_use")
        .expect("tool_use block");
    assert_eq!(tool.1["content_block"]["name"], "Write");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap_or(0) > 1);
}

#[test]
fn answers_without_streaming_and_refuses_unknown_prompts() {
    let m = mock(&serde_json::from_str(ROLES).expect("scenario"));
    let r = messages(
        &m,
        "s1",
        &body("Act as the Developer\nStory file: `/abs/2.md`", false),
    );
    assert_eq!(r.status, 200);
    let msg: Value = serde_json::from_str(&r.body).expect("JSON message");
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["stop_reason"], "tool_use");
    assert_eq!(msg["content"][1]["input"]["file_path"], "/abs/2.md");
    assert!(
        msg["content"][1]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("toolu_mock_"))
    );
    let r = messages(&m, "s1", &body("Act as the Scrum Master", false));
    assert_eq!(r.status, 400);
    assert!(r.head.contains("x-should-retry: false"), "{}", r.head);
    let err: Value = serde_json::from_str(&r.body).expect("error body");
    assert_eq!(err["error"]["type"], "invalid_request_error");
}

#[test]
fn the_unified_rate_limit_headers_of_the_captures_are_sent() {
    // The captured scenarios (what the real CLI was answered) run as they are.
    let captures =
        bmad_host_tests::components::workspace_root().join("tests/fixtures/claude-captures");
    let read = |name: &str| -> Value {
        let text = std::fs::read_to_string(captures.join(name).join("scenario.json"))
            .expect("scenario.json");
        serde_json::from_str(&text).expect("JSON")
    };
    let b = body("say hi", true);
    let warn = mock(&read("330-oauth-warn-5h"));
    let reply = messages(&warn, "a", &b);
    assert_eq!(reply.status, 200);
    assert!(
        reply
            .head
            .contains("anthropic-ratelimit-unified-status: allowed_warning"),
        "{}",
        reply.head
    );
    assert!(
        reply
            .head
            .contains("anthropic-ratelimit-unified-5h-utilization: 0.92"),
        "{}",
        reply.head
    );
    let rejected = mock(&read("330-oauth-rej-5h"));
    let reply = messages(&rejected, "a", &b);
    assert_eq!(reply.status, 429);
    assert!(
        reply
            .head
            .contains("anthropic-ratelimit-unified-representative-claim: five_hour"),
        "{}",
        reply.head
    );
    let err: Value = serde_json::from_str(&reply.body).expect("error body");
    assert_eq!(err["error"]["type"], "rate_limit_error");

    // A reset relative to the request: `{{now+N}}`.
    let relative = mock(&json!({"turns": [{"text": "ok", "error": {
        "status": 429, "type": "rate_limit_error", "message": "limited", "times": 1,
        "headers": {"anthropic-ratelimit-unified-status": "rejected", "anthropic-ratelimit-unified-reset": "{{now+5}}"}
    }}]}));
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let reply = messages(&relative, "a", &b);
    assert_eq!(reply.status, 429);
    let reset: u64 = reply
        .head
        .lines()
        .find_map(|l| l.strip_prefix("anthropic-ratelimit-unified-reset: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no reset header: {}", reply.head));
    assert!(
        (before + 5..=before + 7).contains(&reset),
        "{reset} vs {before}"
    );
    assert_eq!(
        messages(&relative, "a", &b).status,
        200,
        "only the first attempt"
    );
}

#[test]
fn overload_hits_the_first_attempts_of_each_session() {
    let m = mock(&json!({"turns": [{"text": "ok", "error": {"status": 529, "times": 2}}]}));
    let b = body("hi", false);
    assert_eq!(messages(&m, "a", &b).status, 529);
    let second = messages(&m, "a", &b);
    assert_eq!(second.status, 529);
    let err: Value = serde_json::from_str(&second.body).expect("error body");
    assert_eq!(err["error"]["type"], "overloaded_error");
    assert_eq!(messages(&m, "a", &b).status, 200);
    assert_eq!(
        messages(&m, "b", &b).status,
        529,
        "a new session counts again"
    );
    let global = mock(
        &json!({"turns": [{"text": "ok", "error": {"status": 529, "times": 2, "per": "global"}}]}),
    );
    assert_eq!(messages(&global, "a", &b).status, 529);
    assert_eq!(messages(&global, "b", &b).status, 529);
    assert_eq!(
        messages(&global, "c", &b).status,
        200,
        "global counts across sessions"
    );
}

#[test]
fn resumes_a_cut_off_response_with_the_remaining_blocks() {
    let m = mock(
        &json!({"turns": [{"text": "first", "tool_use": {"name": "Write", "input": {"file_path": "/a"}}}]}),
    );
    let b = json!({"stream": false, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "text", "text": "first"}]},
        {"role": "user", "content": [{"type": "text", "text": "Your response above was cut off mid-stream. Resume directly from where it stops."}]}
    ]});
    let r = messages(&m, "s", &b);
    let msg: Value = serde_json::from_str(&r.body).expect("JSON message");
    assert_eq!(msg["content"].as_array().map(Vec::len), Some(1));
    assert_eq!(msg["content"][0]["type"], "tool_use");
}

#[test]
fn drop_resets_the_connection_and_drop_after_cuts_the_stream() {
    let m = mock(&json!({"turns": [{"drop": {"times": 1}, "text": "x"}]}));
    let mut s = TcpStream::connect(&m.addr).expect("connect");
    let b = body("hi", true).to_string();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .expect("send");
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    assert!(buf.is_empty(), "no response byte before the reset");
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "a TCP reset, not a clean close"
    );
    assert_eq!(messages(&m, "-", &body("hi", true)).status, 200, "times: 1");

    let m = mock(&json!({"turns": [{"text": "hello", "cut_after": 4}]}));
    let r = messages(&m, "s", &body("hi", true));
    let names: Vec<String> = sse(&r.body).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta"
        ]
    );
}

#[test]
fn a_hang_sends_nothing_and_is_logged() {
    let m = mock(&json!({"turns": [{"hang": true}]}));
    let mut s = TcpStream::connect(&m.addr).expect("connect");
    let b = body("hi", true).to_string();
    write!(
        s,
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .expect("send");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let r = s.read(&mut byte);
    assert!(
        matches!(
            r.as_ref().map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        ),
        "a hung request gets no byte: {r:?}"
    );
    // The hang is logged once the request is in.
    let log: Value =
        serde_json::from_str(&request(&m, "GET", "/_mock/log", "-", None).body).expect("log");
    assert!(
        log.as_array()
            .is_some_and(|l| l.iter().any(|e| e["fault"] == "hang")),
        "{log}"
    );
}

#[test]
fn other_endpoints() {
    let m = mock(&json!({"model": "m-1", "turns": []}));
    assert_eq!(request(&m, "HEAD", "/", "-", None).status, 200);
    let models: Value =
        serde_json::from_str(&request(&m, "GET", "/v1/models", "-", None).body).expect("models");
    assert_eq!(models["data"][0]["id"], "m-1");
    let count = request(
        &m,
        "POST",
        "/v1/messages/count_tokens",
        "-",
        Some(&body("hi", false)),
    );
    assert!(
        serde_json::from_str::<Value>(&count.body).expect("count")["input_tokens"].as_u64()
            > Some(0)
    );
    let missing = request(&m, "GET", "/v2/nothing", "-", None);
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("not_found_error"));
    let health: Value =
        serde_json::from_str(&request(&m, "GET", "/_mock/health", "-", None).body).expect("health");
    assert_eq!(health["ok"], true);
    // Replacing the scenario takes effect for the next request.
    let put = request(
        &m,
        "POST",
        "/_mock/scenario",
        "-",
        Some(&json!({"turns": [{"text": "new"}]})),
    );
    assert_eq!(put.status, 200);
    let msg: Value =
        serde_json::from_str(&messages(&m, "s", &body("hi", false)).body).expect("msg");
    assert_eq!(msg["content"][0]["text"], "new");
    let bad = request(
        &m,
        "POST",
        "/_mock/scenario",
        "-",
        Some(&json!({"turns": [{"txt": 1}]})),
    );
    assert_eq!(bad.status, 400);
}
