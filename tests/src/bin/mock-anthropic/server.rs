//! The HTTP/1.1 server (hyper): routes, the scripted `POST /v1/messages` with its faults, the
//! request log, and per-connection control (a TCP reset for `drop`, holding a connection open
//! until the client leaves for `hang`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

use crate::request::Facts;
use crate::response;
use crate::scenario::{Attempts, Fault, Scenario, Turn, substitute};

type Body = BoxBody<Bytes, Infallible>;

/// Where the log goes and where bodies are dumped.
#[derive(Debug, Default)]
pub struct Outputs {
    pub log: Option<File>,
    pub dump_dir: Option<PathBuf>,
}

#[derive(Debug)]
struct State {
    scenario: Arc<Scenario>,
    /// Attempts per (session, script, turn).
    session_attempts: HashMap<(String, String, usize), u64>,
    /// Attempts per (script, turn), every session.
    global_attempts: HashMap<(String, usize), u64>,
    log: Vec<Value>,
    seq: u64,
    log_file: Option<File>,
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    dump_dir: Option<PathBuf>,
    ids: AtomicU64,
    port: u16,
    started: Instant,
}

impl Shared {
    pub fn new(scenario: Scenario, outputs: Outputs, port: u16) -> Shared {
        Shared {
            state: Mutex::new(State {
                scenario: Arc::new(scenario),
                session_attempts: HashMap::new(),
                global_attempts: HashMap::new(),
                log: Vec::new(),
                seq: 0,
                log_file: outputs.log,
            }),
            dump_dir: outputs.dump_dir,
            ids: AtomicU64::new(0),
            port,
            started: Instant::now(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends an entry to the log (memory and file); returns its sequence number.
    fn record(&self, mut entry: Value) -> u64 {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut st = self.state();
        st.seq += 1;
        let seq = st.seq;
        if let Value::Object(o) = &mut entry {
            o.insert("seq".into(), json!(seq));
            o.insert("ts".into(), json!((ts * 1000.0).round() / 1000.0));
        }
        if let Some(f) = st.log_file.as_mut() {
            // Best effort: a full disk must not take the mock down mid-test.
            let _ = writeln!(f, "{entry}").and_then(|()| f.flush());
        }
        st.log.push(entry);
        seq
    }

    /// A fresh id with `prefix` (`msg_mock_`, `toolu_mock_`, `req_mock_`).
    fn new_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!("{prefix}{:08x}{:06x}{n:06x}", nanos, self.port)
    }
}

/// One client connection: a second handle on its socket, for a reset, and the kill switch.
#[derive(Debug)]
struct Conn {
    sock: std::net::TcpStream,
    kill: Notify,
    /// The request (log `seq`) this connection is hanging on, if any.
    hanging: Mutex<Option<(u64, Instant)>>,
}

impl Conn {
    /// Aborts the connection with a TCP RST (SO_LINGER 0, then close).
    fn reset(&self) {
        let _ = socket2::SockRef::from(&self.sock).set_linger(Some(Duration::ZERO));
        self.kill.notify_one();
    }

    /// Ends the connection early but cleanly (FIN after everything sent): the client gets
    /// all the bytes so far, then EOF.
    fn cut(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        self.kill.notify_one();
    }

    /// Sends nothing more: resolves only when the client closes the connection, which is
    /// then closed here too.
    async fn hang(&self, seq: u64) {
        *self.hanging.lock().unwrap_or_else(PoisonError::into_inner) = Some((seq, Instant::now()));
        if let Ok(dup) = self.sock.try_clone()
            && let Ok(s) = tokio::net::TcpStream::from_std(dup)
        {
            let mut b = [0u8; 1];
            // 0 bytes (EOF) or an error: the client went away. Data: a pipelined request,
            // which a hung connection never answers; wait for the kill instead.
            if let Ok(0) | Err(_) = s.peek(&mut b).await {
                self.kill.notify_one();
            }
        }
        std::future::pending::<()>().await;
    }
}

/// Serves connections from `listener` until the process ends.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("mock-anthropic: accept failed: {e}");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Some((stream, conn)) = split(stream) else {
                return;
            };
            let svc_conn = conn.clone();
            let svc_shared = shared.clone();
            let svc = service_fn(move |req| {
                let (shared, conn) = (svc_shared.clone(), svc_conn.clone());
                async move { Ok::<_, Infallible>(route(&shared, &conn, req).await) }
            });
            let http = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = http => {}
                () = conn.kill.notified() => {}
            }
            let hung = conn
                .hanging
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some((seq, since)) = hung {
                shared.record(json!({
                    "event": "hang_ended",
                    "request": seq,
                    "after_ms": since.elapsed().as_millis() as u64,
                }));
            }
        });
    }
}

/// The tokio stream for hyper and a second handle on the same socket.
fn split(stream: tokio::net::TcpStream) -> Option<(tokio::net::TcpStream, Arc<Conn>)> {
    let std = stream.into_std().ok()?;
    let dup = std.try_clone().ok()?;
    let stream = tokio::net::TcpStream::from_std(std).ok()?;
    Some((
        stream,
        Arc::new(Conn {
            sock: dup,
            kill: Notify::new(),
            hanging: Mutex::new(None),
        }),
    ))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn respond(status: u16, headers: &[(&str, String)], body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(*k), HeaderValue::from_str(v)) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

fn json_response(
    shared: &Shared,
    status: u16,
    value: &Value,
    extra: &[(&str, String)],
) -> Response<Body> {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("request-id", shared.new_id("req_mock_")),
    ];
    headers.extend(extra.iter().cloned());
    respond(status, &headers, full(value.to_string()))
}

fn error_response(shared: &Shared, status: u16, message: &str) -> Response<Body> {
    json_response(
        shared,
        status,
        &response::error_body(status, None, Some(message)),
        &[],
    )
}

/// Request headers for the log, with the credentials redacted.
fn headers_for_log(req: &Request<Incoming>) -> Value {
    let map = req
        .headers()
        .iter()
        .map(|(k, v)| {
            let key = k.as_str().to_ascii_lowercase();
            let value = if key == "x-api-key" || key == "authorization" {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (key, Value::String(value))
        })
        .collect();
    Value::Object(map)
}

fn header(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

async fn route(shared: &Arc<Shared>, conn: &Arc<Conn>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let path = req.uri().path().to_owned();
    let headers = headers_for_log(&req);
    let session = header(&req, "x-claude-code-session-id").unwrap_or_else(|| "-".into());
    let retry = header(&req, "x-stainless-retry-count");
    let raw = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(shared, 400, &format!("mock: cannot read the body: {e}")),
    };
    let logged_later = method == Method::POST && path == "/v1/messages";
    if !(path.starts_with("/_mock/") || logged_later) {
        shared.record(json!({"method": method.as_str(), "path": path_q, "bytes": raw.len(), "headers": headers}));
    }
    match (&method, path.as_str()) {
        (&Method::HEAD | &Method::GET, "/") => json_response(shared, 200, &json!({}), &[]),
        (&Method::GET, "/_mock/health") => {
            let description = shared.state().scenario.description.clone();
            let health = json!({"ok": true, "port": shared.port, "scenario": description,
                                "uptime_ms": shared.started.elapsed().as_millis() as u64});
            json_response(shared, 200, &health, &[])
        }
        (&Method::GET, "/_mock/log") => {
            let log = Value::Array(shared.state().log.clone());
            json_response(shared, 200, &log, &[])
        }
        (&Method::POST, "/_mock/scenario") => {
            match Scenario::from_json(&String::from_utf8_lossy(&raw)) {
                Ok(s) => {
                    let mut st = shared.state();
                    st.scenario = Arc::new(s);
                    st.session_attempts.clear();
                    st.global_attempts.clear();
                    drop(st);
                    json_response(shared, 200, &json!({"ok": true}), &[])
                }
                Err(e) => error_response(shared, 400, &format!("mock: {e}")),
            }
        }
        (&Method::POST, "/_mock/reset") => {
            let mut st = shared.state();
            st.session_attempts.clear();
            st.global_attempts.clear();
            st.log.clear();
            drop(st);
            json_response(shared, 200, &json!({"ok": true}), &[])
        }
        (&Method::GET, p) if p.starts_with("/v1/models") => {
            let model = shared.state().scenario.model.clone();
            let item = json!({"type": "model", "id": model, "display_name": "Mock model",
                              "created_at": "2025-01-01T00:00:00Z"});
            let body = if p.trim_end_matches('/') == "/v1/models" {
                json!({"data": [item], "has_more": false, "first_id": model, "last_id": model})
            } else {
                item
            };
            json_response(shared, 200, &body, &[])
        }
        (&Method::POST, "/v1/messages/count_tokens") => json_response(
            shared,
            200,
            &json!({"input_tokens": (raw.len() / 4).max(1)}),
            &[],
        ),
        (&Method::POST, "/v1/messages") => {
            let body: Value = match serde_json::from_slice(&raw) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    shared.record(json!({"method": "POST", "path": path_q, "bytes": raw.len(), "error": "body is not a JSON object"}));
                    return error_response(shared, 400, "mock: body is not a JSON object");
                }
            };
            let call = Call {
                path: path_q,
                session,
                retry,
                headers,
                raw,
            };
            messages(shared, conn, call, &body).await
        }
        _ => error_response(shared, 404, &format!("mock: no such endpoint {path}")),
    }
}

/// The parts of a messages request that the answer and the log need.
#[derive(Debug)]
struct Call {
    path: String,
    session: String,
    retry: Option<String>,
    headers: Value,
    raw: Bytes,
}

/// The scripted model.
async fn messages(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    call: Call,
    body: &Value,
) -> Response<Body> {
    let facts = Facts::from_body(body);
    let (scenario, script_name, turn_value, attempts, vars) = {
        let mut st = shared.state();
        let scenario = st.scenario.clone();
        if scenario.is_side(&facts) {
            let t = scenario.side_turn().clone();
            (
                scenario,
                "side".to_owned(),
                t,
                Attempts {
                    session: 1,
                    global: 1,
                },
                Default::default(),
            )
        } else {
            let script = scenario.select(&facts);
            let name = script.name.clone();
            let s = st
                .session_attempts
                .entry((call.session.clone(), name.clone(), facts.turn))
                .or_insert(0);
            *s += 1;
            let session = *s;
            let g = st
                .global_attempts
                .entry((name.clone(), facts.turn))
                .or_insert(0);
            *g += 1;
            let attempts = Attempts {
                session,
                global: *g,
            };
            let vars = script.vars(&facts);
            let t = script.turn(facts.turn);
            (scenario.clone(), name, t, attempts, vars)
        }
    };
    let mut vars = vars;
    let cwd = facts.cwd.clone().unwrap_or_else(|| {
        std::env::current_dir()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    });
    for (k, v) in [
        ("cwd", cwd),
        ("turn", facts.turn.to_string()),
        ("attempt", attempts.session.to_string()),
        ("global_attempt", attempts.global.to_string()),
        ("session", call.session.clone()),
        ("script", script_name.clone()),
        ("last_tool_result", facts.last_tool_result.clone()),
        ("last_user", facts.last_user.clone()),
        ("now", epoch_now().to_string()),
    ] {
        vars.entry(k.to_owned()).or_insert(v);
    }
    let turn_value = substitute(&turn_value, &vars);
    let mut entry = json!({
        "method": "POST", "path": call.path, "session": call.session, "retry": call.retry,
        "model": facts.model, "stream": facts.stream, "n_messages": facts.n_messages,
        "n_tools": facts.n_tools, "kind": if script_name == "side" { "side" } else { "main" },
        "script": script_name, "turn": facts.turn, "attempt": attempts.session,
        "global_attempt": attempts.global, "resume_from": facts.resume_from, "last_user": clip(&facts.last_user, 200),
        "headers": call.headers,
    });
    let parsed: Result<(Turn, _), String> = serde_json::from_value::<Turn>(turn_value)
        .map_err(|e| e.to_string())
        .and_then(|t| t.faults().map(|f| (t, f)));
    let (turn, faults) = match parsed {
        Ok(ok) => ok,
        Err(e) => {
            entry["fault"] = json!(format!("bad turn: {e}"));
            shared.record(entry);
            return error_response(
                shared,
                500,
                &format!("mock: bad turn after substitution: {e}"),
            );
        }
    };
    fn hits_of(f: &Option<Fault>, a: Attempts) -> Option<&Fault> {
        f.as_ref().filter(|f| f.hits(a))
    }
    let fault = if hits_of(&faults.hang, attempts).is_some() {
        Some("hang".to_owned())
    } else if hits_of(&faults.drop, attempts).is_some() {
        Some("drop".to_owned())
    } else if let Some(e) = hits_of(&faults.error, attempts) {
        Some(format!("error {}", e.value))
    } else if facts.stream {
        [
            ("drop_after", hits_of(&faults.drop_after, attempts)),
            ("cut_after", hits_of(&faults.cut_after, attempts)),
            ("stall_after", hits_of(&faults.stall_after, attempts)),
            (
                "sse_error_after",
                hits_of(&faults.sse_error_after, attempts),
            ),
        ]
        .iter()
        .find_map(|(n, f)| f.map(|f| format!("{n} {}", f.index())))
    } else {
        None
    };
    entry["fault"] = json!(fault);
    let seq = shared.record(entry);
    if let Some(dir) = &shared.dump_dir {
        let kind = if script_name == "side" {
            "side"
        } else {
            "main"
        };
        let _ = std::fs::write(dir.join(format!("{seq:05}-{kind}.json")), &call.raw);
    }

    // Faults before any response byte.
    if hits_of(&faults.hang, attempts).is_some() {
        conn.hang(seq).await;
    }
    if hits_of(&faults.drop, attempts).is_some() {
        conn.reset();
        std::future::pending::<()>().await;
    }
    if let Some(e) = hits_of(&faults.error, attempts) {
        let status = e
            .value
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(529);
        let spec = &e.spec;
        let s = |k: &str| spec.get(k).and_then(Value::as_str);
        let mut headers: Vec<(String, String)> = spec
            .get("headers")
            .and_then(Value::as_object)
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(r) = spec.get("retry_after").filter(|v| !v.is_null()) {
            headers.push((
                "retry-after".into(),
                r.as_str().map_or_else(|| r.to_string(), str::to_owned),
            ));
        }
        if let Some(b) = spec.get("should_retry").and_then(Value::as_bool) {
            headers.push(("x-should-retry".into(), b.to_string()));
        }
        let headers: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let body = response::error_body(status, s("type"), s("message"));
        return json_response(shared, status, &body, &headers);
    }

    let mut content = turn.content(&mut || shared.new_id("toolu_mock_"));
    if let Some(done) = facts.resume_from {
        // The CLI kept the blocks it got before the stream broke: send the rest.
        content.drain(..done.min(content.len()));
        if content.is_empty() {
            content.push(json!({"type": "text", "text": ""}));
        }
    }
    let stop_reason = turn.stop_reason.clone().unwrap_or_else(|| {
        let tool = content
            .iter()
            .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"));
        if tool { "tool_use" } else { "end_turn" }.to_owned()
    });
    let content_len = Value::Array(content.clone()).to_string().len() as u64;
    let model = facts
        .model
        .clone()
        .unwrap_or_else(|| scenario.model.clone());
    let message = response::message(
        shared.new_id("msg_mock_"),
        &model,
        content,
        &stop_reason,
        turn.input_tokens
            .unwrap_or((call.raw.len() as u64 / 4).max(1)),
        turn.output_tokens.unwrap_or((content_len / 4).max(1)),
    );
    let extra = turn.header_pairs();
    let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    if !facts.stream {
        return json_response(shared, 200, &message, &extra);
    }
    let events = response::events(&message, turn.chunk_chars.unwrap_or(40));
    let at = |f: &Option<Fault>| hits_of(f, attempts).map(Fault::index);
    let (drop_at, cut_at, stall_at, error_at) = (
        at(&faults.drop_after),
        at(&faults.cut_after),
        at(&faults.stall_after),
        at(&faults.sse_error_after),
    );
    let sse_error = response::sse_error(turn.sse_error.as_ref());
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let conn = conn.clone();
    tokio::spawn(async move {
        for (n, ev) in events.iter().enumerate() {
            if drop_at == Some(n) {
                // Once the previous event is taken, hyper has written it (one thread: it
                // flushes before this task runs again); then reset.
                let _ = tx.reserve().await;
                conn.reset();
                return;
            }
            if cut_at == Some(n) {
                let _ = tx.reserve().await;
                conn.cut();
                return;
            }
            if stall_at == Some(n) {
                conn.hang(seq).await;
                return;
            }
            if error_at == Some(n) {
                let _ = tx.send(sse_error.bytes()).await;
                return;
            }
            if tx.send(ev.bytes()).await.is_err() {
                return;
            }
        }
    });
    let mut headers = vec![
        ("content-type", "text/event-stream".to_owned()),
        ("cache-control", "no-cache".to_owned()),
        ("request-id", shared.new_id("req_mock_")),
    ];
    headers.extend(extra);
    respond(200, &headers, ChannelBody(rx).boxed())
}

/// Now, in epoch seconds (`{{now}}` in a scenario).
fn epoch_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn clip(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A response body fed by a channel: each message is one chunk; the body ends when every
/// sender is gone.
#[derive(Debug)]
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}
