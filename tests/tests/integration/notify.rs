//! Notifiers (`[[notify]]`) through the real binary: each event (`limit_warning`, `failed`,
//! `escalated`, `usage_limit`, `run_finished`) reaches a webhook (a local HTTP listener on a
//! tokio `TcpListener`) and a command (which writes its stdin to a file), as the event's JSON; a
//! failing notifier (exit 1, HTTP 500 twice: one retry) is reported (`notify_failed`) and the run's
//! result is unchanged; a hanging one is torn down at its timeout, its process tree with it, while
//! calls run beside it; a project file's notifier needs trust.
//!
//! Every wait is on an event: the run's exit (which waits for its notifiers), a request read to
//! its end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bmad_host_tests::fake::unique_tag;
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, fixtures};
use bmad_host_tests::procs::processes_with_env;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Every event a notifier may be told of.
const ALL: &str = r#"["escalated", "failed", "usage_limit", "limit_warning", "run_finished"]"#;

/// A local HTTP listener: every request's path and JSON body go to `requests`; the answers'
/// statuses are `statuses` in turn (the last repeats).
struct Listener {
    url: String,
    requests: mpsc::Receiver<(String, Value)>,
}

impl Listener {
    fn start(statuses: &[u16]) -> Listener {
        let statuses = statuses.to_vec();
        let (tx, requests) = mpsc::channel();
        let (addr_tx, addr_rx) = mpsc::channel();
        // The listener's thread ends with the test process.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send the address");
                let mut served = 0;
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let status = statuses
                        .get(served)
                        .or(statuses.last())
                        .copied()
                        .unwrap_or(200);
                    served += 1;
                    serve(socket, status, tx.clone()).await;
                }
            });
        });
        let addr = addr_rx.recv().expect("the listener's address");
        Listener {
            url: format!("http://{addr}/hook"),
            requests,
        }
    }

    /// The requests received so far (the run waited for its notifiers before it exited).
    fn received(&self) -> Vec<(String, Value)> {
        self.requests.try_iter().collect()
    }
}

/// Reads one request to the end of its body, records it and answers `status`.
async fn serve(mut socket: tokio::net::TcpStream, status: u16, tx: mpsc::Sender<(String, Value)>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    let (head, body) = loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break (head.to_owned(), body.to_owned());
            }
        }
        if n == 0 {
            return;
        }
    };
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let json = serde_json::from_str(&body).unwrap_or(Value::String(body));
    let _ = tx.send((path, json));
    let answer = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// A user configuration directory (`XDG_CONFIG_HOME`) whose `bmad-host/config.toml` is `text`.
fn user_config(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("bmad-host")).expect("mkdir");
    std::fs::write(dir.path().join("bmad-host/config.toml"), text).expect("write config");
    dir
}

/// `run` of `project` with the user configuration `config`, the fake's `calls` and `env`.
fn run(project: &Project, config: &Path, calls: Value, args: &[&str], env: &[(&str, &str)]) -> Run {
    let script = project.script(&json!({ "calls": calls }));
    let script = script.to_str().expect("utf-8").to_owned();
    let log = fake_log::env_value(project);
    let mut all = vec![
        ("XDG_CONFIG_HOME", config.to_str().expect("utf-8")),
        ("FAKE_CLAUDE_SCRIPT", script.as_str()),
        ("FAKE_CLAUDE_LOG", log.as_str()),
    ];
    all.extend_from_slice(env);
    Run::project(project, args, &all)
}

/// The events a command notifier wrote to `<project>/notified/<event>-<pid>.json`, by the name
/// the notifier was told (`BMAD_HOST_EVENT`).
fn written(project: &Project) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let dir = project.path().join("notified");
    for entry in std::fs::read_dir(&dir).expect("read notified/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split_once('-'))
            .map(|(event, _)| event.to_owned())
            .expect("<event>-<pid>.json");
        let text = std::fs::read_to_string(&path).expect("read");
        let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        out.entry(name).or_default().push(value);
    }
    out
}

/// Which `[[notify]]` event name a notification is about, from its JSON.
fn event_name(v: &Value) -> String {
    match v["event"].as_str().unwrap_or_default() {
        "story_finished" => v["result"].as_str().unwrap_or_default().to_owned(),
        "rate_limit" => "limit_warning".to_owned(),
        other => other.to_owned(),
    }
}

fn capture(name: &str) -> PathBuf {
    fixtures()
        .join("claude-captures")
        .join(name)
        .join("stdout.jsonl")
}

#[test]
fn every_event_reaches_a_webhook_and_a_command_as_its_json() {
    let listener = Listener::start(&[200]);
    let config = user_config(&format!(
        "[workflow]\napprove_drafts = false\n\
         [[notify]]\non = {ALL}\nwebhook = \"{}\"\n\
         [[notify]]\non = {ALL}\ncommand = 'cat > \"notified/$BMAD_HOST_EVENT-$$.json\"'\n",
        listener.url
    ));
    // 1.1: Dev's call runs out of turns, the story fails; 1.2: a draft, which waits for a
    // person (escalated); 1.3: SM's call reports a limit warning and drafts it (escalated too).
    let project = Project::fixture("v4-sample");
    std::fs::create_dir(project.path().join("notified")).expect("mkdir");
    let calls = json!([
        { "role": "dev", "story": "1.1", "do": "max_turns" },
        { "role": "sm", "story": "1.3", "occurrence": 1, "do": "replay",
          "file": capture("330-oauth-warn-5h"), "play": true }
    ]);
    let first = run(&project, config.path(), calls, &[], &[]);
    assert_eq!(first.code(), 1, "{}", first.stderr());
    assert_eq!(first.story_result("1.1")["result"], "failed");
    assert_eq!(first.story_result("1.2")["result"], "escalated");
    assert_eq!(first.story_result("1.3")["result"], "escalated");
    assert!(
        first.events_named("notify_failed").is_empty(),
        "{}",
        first.stderr()
    );

    // A usage limit, on another copy of the project.
    let limited = Project::fixture("v4-sample");
    std::fs::create_dir(limited.path().join("notified")).expect("mkdir");
    let calls = json!([{ "role": "dev", "story": "1.1", "do": "usage_limit" }]);
    let second = run(&limited, config.path(), calls, &["--story", "1.1"], &[]);
    assert_eq!(second.code(), 1, "{}", second.stderr());
    assert_eq!(second.events_named("usage_limit").len(), 1);

    let mut posted: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (path, body) in listener.received() {
        assert_eq!(path, "/hook");
        posted.entry(event_name(&body)).or_default().push(body);
    }
    let names = |m: &BTreeMap<String, Vec<Value>>| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect::<Vec<_>>()
    };
    let want: Vec<(String, usize)> = [
        ("escalated", 2),
        ("failed", 1),
        ("limit_warning", 1),
        ("run_finished", 2),
        ("usage_limit", 1),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), *n))
    .collect();
    assert_eq!(names(&posted), want, "{posted:#?}");
    // The command was told the same, with the name it is listed by.
    let mut told = written(&project);
    for (k, v) in written(&limited) {
        told.entry(k).or_default().extend(v);
    }
    assert_eq!(names(&told), want, "{told:#?}");
    for (name, bodies) in &told {
        for body in bodies {
            assert_eq!(&event_name(body), name, "{body}");
        }
    }
    // The JSON is the `--json` event itself.
    let mut escalated: Vec<&str> = posted["escalated"]
        .iter()
        .filter_map(|e| e["story"].as_str())
        .collect();
    escalated.sort_unstable();
    assert_eq!(escalated, ["1.2", "1.3"]);
    assert!(posted["escalated"][0]["ts"].is_string(), "{posted:#?}");
    assert_eq!(posted["limit_warning"][0]["status"], "allowed_warning");
    assert_eq!(posted["limit_warning"][0]["story"], "1.3");
    assert_eq!(posted["failed"][0]["story"], "1.1");
    let finished = first.events_named("run_finished")[0];
    let posted_finished = posted["run_finished"]
        .iter()
        .find(|f| f["run_id"] == finished["run_id"])
        .expect("the first run's run_finished");
    assert_eq!(posted_finished["escalated"], 2);
    assert_eq!(posted_finished["failed"], 1);
}

#[test]
fn a_failing_notifier_is_reported_and_changes_nothing() {
    // The webhook answers 500 to the first attempt and to its retry.
    let listener = Listener::start(&[500]);
    let config = user_config(&format!(
        "[[notify]]\non = [\"run_finished\"]\nwebhook = \"{}\"\n\
         [[notify]]\non = [\"run_finished\"]\ncommand = \"echo no route to the phone >&2; exit 1\"\n",
        listener.url
    ));
    let project = Project::fixture("v4-sample");
    let run = run(&project, config.path(), json!([]), &["--story", "1.1"], &[]);
    assert_eq!(
        run.code(),
        0,
        "the run's result is unchanged: {}",
        run.stderr()
    );
    assert_eq!(run.story_result("1.1")["result"], "done");
    let failed = run.events_named("notify_failed");
    assert_eq!(failed.len(), 2, "{failed:#?}");
    let by = |what: &str| {
        failed
            .iter()
            .find(|f| f["notifier"].as_str().unwrap_or_default().starts_with(what))
            .unwrap_or_else(|| panic!("no failure of a {what}: {failed:#?}"))
    };
    let hook = by("webhook");
    assert_eq!(hook["on"], "run_finished");
    let error = hook["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("HTTP 500") && error.contains("after one retry"),
        "{error}"
    );
    let command = by("command");
    let error = command["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("exit code 1") && error.contains("no route to the phone"),
        "{error}"
    );
    assert_eq!(listener.received().len(), 2, "one attempt and one retry");
    assert!(
        run.stderr().contains("warning: notify[0]"),
        "{}",
        run.stderr()
    );
    // `run_finished` is the last event of the run on stdout but for the failures it caused.
    let names: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| *e != "notify_failed")
        .collect();
    assert_eq!(names.last(), Some(&"run_finished"));
}

#[test]
fn a_hanging_notifier_is_torn_down_at_its_timeout_with_its_tree_and_the_run_goes_on() {
    let tag = unique_tag("notify-hang");
    // It hangs with a child in a session of its own (out of its process group's reach).
    let config = user_config(
        "[[notify]]\non = [\"limit_warning\", \"run_finished\"]\ntimeout = \"2s\"\n\
         command = \"setsid sleep 3600 & exec sleep 3600\"\n",
    );
    let project = Project::fixture("v4-sample");
    // The warning comes during story 1.1's first call: the notifier hangs while the run's other
    // calls start, end and are torn down beside it.
    let calls = json!([
        { "role": "dev", "story": "1.1", "occurrence": 1, "do": "replay",
          "file": capture("330-oauth-warn-5h"), "play": true }
    ]);
    let run = run(
        &project,
        config.path(),
        calls,
        &[],
        &[("NOTIFY_HANG_TAG", tag.as_str())],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for story in ["1.1", "1.2", "1.3"] {
        assert_eq!(run.story_result(story)["result"], "done");
    }
    let failed = run.events_named("notify_failed");
    let ons: Vec<&str> = failed.iter().filter_map(|f| f["on"].as_str()).collect();
    assert_eq!(ons.len(), 2, "{failed:#?}");
    assert!(
        ons.contains(&"limit_warning") && ons.contains(&"run_finished"),
        "{ons:?}"
    );
    for f in &failed {
        // Torn down by its own timeout, not killed with the agent call it ran beside.
        let error = f["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("timed out after 2s"), "{f}");
    }
    // Nothing of it is left: the host, the fake and every notifier carried the tag.
    assert_eq!(
        processes_with_env("NOTIFY_HANG_TAG", &tag),
        Vec::<u32>::new()
    );
}

#[test]
fn a_project_files_notifier_needs_trust() {
    let project = Project::fixture("v4-sample");
    project.write(
        "bmad-host.toml",
        "[[notify]]\non = [\"run_finished\"]\ncommand = \"curl -d @- https://example.invalid\"\n",
    );
    let config = user_config("");
    let refused = run(&project, config.path(), json!([]), &["--story", "1.1"], &[]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("notify[0]"),
        "{}",
        refused.stderr()
    );
    assert!(
        refused
            .stderr()
            .contains("curl -d @- https://example.invalid"),
        "{}",
        refused.stderr()
    );
    assert!(fake_log::calls(&project).is_empty());
    // Trusted, it runs.
    project.write(
        "bmad-host.toml",
        "[[notify]]\non = [\"run_finished\"]\ncommand = \"cat > notified.json\"\n",
    );
    let trusted = run(
        &project,
        config.path(),
        json!([]),
        &["--story", "1.1", "--trust"],
        &[],
    );
    assert_eq!(trusted.code(), 0, "{}", trusted.stderr());
    let told: Value =
        serde_json::from_str(&project.read("notified.json")).expect("the event's JSON");
    assert_eq!(told["event"], "run_finished");
}
