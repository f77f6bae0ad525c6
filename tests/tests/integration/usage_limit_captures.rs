//! The real CLI's usage-limit streams through the real binary: every capture of
//! `tests/fixtures/claude-captures` (Claude Code 2.1.330 and 2.1.332 against a mock API sending
//! `anthropic-ratelimit-unified-*` headers) is replayed by the fake Claude as the first Dev call
//! of story 1.1, and bmad-host's judgment is checked: a usage limit (the run stops, exit 1, the
//! reset instant from the `rate_limit_event`, shown in the operator's zone and in UTC), a
//! transient rate limit (retried), or a success; and the `rate_limit` events it reports. Then the
//! text fallback in any zone, `--wait-on-limit` in a non-UTC zone, Ctrl-C during the wait, and a
//! limit that outlives its stated reset.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bmad_host_tests::components::workspace_root;
use bmad_host_tests::harness::{Project, Run, run_command};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// The capture folders.
fn captures() -> PathBuf {
    workspace_root().join("tests/fixtures/claude-captures")
}

/// What bmad-host must make of a capture.
#[derive(Debug, Clone, Copy)]
enum Judged {
    /// A usage limit resetting at this epoch second.
    Limit(i64),
    /// A rate limit the CLI gave up on: retried by the host, then the story goes on.
    Transient,
    /// A successful call.
    Success,
}

/// An expected `rate_limit` event: status, type, utilization, resets_at (epoch seconds).
type Report = (&'static str, Option<&'static str>, Option<f64>, Option<i64>);

const H5: i64 = 1_796_191_200; // 2026-12-02T06:00:00Z
const H5_07: i64 = 1_796_191_624; // 2026-12-02T06:07:04Z
const D7: i64 = 1_796_461_200; // 2026-12-05T09:00:00Z
const D7_30: i64 = 1_796_463_000; // 2026-12-05T09:30:00Z

const WARN_5H: Report = ("allowed_warning", Some("five_hour"), Some(0.92), Some(H5));
const REJ_5H: Report = ("rejected", Some("five_hour"), Some(1.0), Some(H5));
const REJ_5H_BARE: Report = ("rejected", Some("five_hour"), None, Some(H5));

/// Every capture with a stream-json stdout, and what it must give.
const EXPECTED: &[(&str, Judged, &[Report])] = &[
    ("330-apikey-plain-noheaders", Judged::Success, &[]),
    // An API key: the CLI ignores the unified headers; a 429 is a rate limit, retried.
    ("330-apikey-rej-5h", Judged::Transient, &[]),
    ("330-apikey-warn-5h", Judged::Success, &[]),
    ("330-gateway-rej-5h", Judged::Limit(H5), &[REJ_5H]),
    ("330-gateway-warn-5h", Judged::Success, &[WARN_5H]),
    (
        "330-oauth-max-rej-5h-out-of-credits",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    // `allowed` is no news: no event.
    ("330-oauth-plain-noheaders", Judged::Success, &[]),
    ("330-oauth-pro-warn-5h", Judged::Success, &[WARN_5H]),
    ("330-oauth-rej-5h", Judged::Limit(H5), &[REJ_5H]),
    (
        "330-oauth-rej-5h-minimal",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    (
        "330-oauth-rej-5h-minutes",
        Judged::Limit(H5_07),
        &[("rejected", Some("five_hour"), None, Some(H5_07))],
    ),
    (
        "330-oauth-rej-5h-out-of-credits",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    (
        "330-oauth-rej-7d",
        Judged::Limit(D7),
        &[("rejected", Some("seven_day"), Some(1.0), Some(D7))],
    ),
    (
        "330-oauth-rej-7d-opus",
        Judged::Limit(D7_30),
        &[("rejected", Some("seven_day_opus"), None, Some(D7_30))],
    ),
    (
        "330-oauth-rej-7d-sonnet",
        Judged::Limit(D7),
        &[("rejected", Some("seven_day_sonnet"), None, Some(D7))],
    ),
    // "Server is temporarily limiting requests (not your usage limit)": retried.
    (
        "330-oauth-rej-bare",
        Judged::Transient,
        &[("rejected", None, None, Some(H5))],
    ),
    (
        "330-oauth-rej-overage-out-of-credits",
        Judged::Limit(H5),
        &[("rejected", Some("overage"), None, Some(H5))],
    ),
    (
        "330-oauth-rej-overage-spend-cap",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    ("330-oauth-tzNY-rej-5h", Judged::Limit(H5), &[REJ_5H]),
    (
        "330-oauth-tzNY-rej-7d-opus",
        Judged::Limit(D7_30),
        &[("rejected", Some("seven_day_opus"), None, Some(D7_30))],
    ),
    ("330-oauth-warn-5h", Judged::Success, &[WARN_5H]),
    (
        "330-oauth-warn-7d",
        Judged::Success,
        &[(
            "allowed_warning",
            Some("seven_day"),
            Some(0.78),
            Some(D7_30),
        )],
    ),
    (
        "330-oauth-warn-then-rej",
        Judged::Limit(H5),
        &[WARN_5H, REJ_5H],
    ),
    ("330-oauth-warn-top-only", Judged::Success, &[]),
    ("332-apikey-rej-5h", Judged::Transient, &[]),
    ("332-gateway-rej-5h", Judged::Limit(H5), &[REJ_5H]),
    (
        "332-oauth-max-rej-5h-out-of-credits",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    (
        "332-oauth-rej-5h-out-of-credits",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    ("332-oauth-rej-5h", Judged::Limit(H5), &[REJ_5H]),
    (
        "332-oauth-rej-7d",
        Judged::Limit(D7),
        &[("rejected", Some("seven_day"), Some(1.0), Some(D7))],
    ),
    (
        "332-oauth-rej-7d-opus",
        Judged::Limit(D7_30),
        &[("rejected", Some("seven_day_opus"), None, Some(D7_30))],
    ),
    (
        "332-oauth-rej-bare",
        Judged::Transient,
        &[("rejected", None, None, Some(H5))],
    ),
    (
        "332-oauth-rej-overage-out-of-credits",
        Judged::Limit(H5),
        &[("rejected", Some("overage"), None, Some(H5))],
    ),
    (
        "332-oauth-rej-overage-spend-cap",
        Judged::Limit(H5),
        &[REJ_5H_BARE],
    ),
    ("332-oauth-warn-5h", Judged::Success, &[WARN_5H]),
    (
        "332-oauth-warn-7d",
        Judged::Success,
        &[(
            "allowed_warning",
            Some("seven_day"),
            Some(0.78),
            Some(D7_30),
        )],
    ),
    ("332-oauth-warn-top-only", Judged::Success, &[]),
];

/// An epoch second as bmad-host writes instants in NDJSON (RFC 3339, UTC).
fn rfc3339(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .expect("an instant")
        .to_string()
}

/// How the stop message shows an instant to an operator in America/New_York.
fn new_york(epoch: i64) -> &'static str {
    match epoch {
        H5 => "2026-12-02 01:00 EST (06:00 UTC)",
        H5_07 => "2026-12-02 01:07 EST (06:07 UTC)",
        D7 => "2026-12-05 04:00 EST (09:00 UTC)",
        D7_30 => "2026-12-05 04:30 EST (09:30 UTC)",
        other => panic!("no text for {other}"),
    }
}

/// Runs story 1.1 of the v4 sample with its first Dev call replaying `stream` (exit code
/// `exit`; a successful one plays the role after the capture's lines), `TZ` set to `tz`.
fn replay_run(stream: &Path, exit: u8, tz: &str, args: &[&str]) -> (Run, Project) {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{
            "role": "dev", "story": "1.1", "occurrence": 1, "do": "replay",
            "file": stream, "exit_code": exit, "play": exit == 0,
        }]
    }));
    let mut all = vec!["--story", "1.1"];
    all.extend_from_slice(args);
    let run = Run::project(
        &project,
        &all,
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("TZ", tz),
        ],
    );
    (run, project)
}

/// The mismatches between a capture's run and what it must give.
fn check_capture(name: &str, judged: Judged, reports: &[Report]) -> Vec<String> {
    let dir = captures().join(name);
    let exit: u8 = std::fs::read_to_string(dir.join("exit_code"))
        .expect("exit_code")
        .trim()
        .parse()
        .expect("a number");
    let (run, _project) = replay_run(&dir.join("stdout.jsonl"), exit, "America/New_York", &[]);
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("{name}: {what}"));
        }
    };
    let events: Vec<Value> = run
        .events_named("rate_limit")
        .into_iter()
        .cloned()
        .collect();
    expect(
        events.len() == reports.len(),
        format!("rate_limit events {events:?}, expected {reports:?}"),
    );
    for (e, (status, kind, utilization, at)) in events.iter().zip(reports) {
        let same = e["status"] == *status
            && e["type"].as_str() == *kind
            && e["utilization"].as_f64() == *utilization
            && e["resets_at"].as_str().map(str::to_owned) == at.map(rfc3339)
            && e["story"] == "1.1"
            && e["role"] == "dev";
        expect(
            same,
            format!("rate_limit event {e}, expected {status} {kind:?} {utilization:?} {at:?}"),
        );
    }
    let dev_started = run
        .events_named("agent_started")
        .iter()
        .filter(|e| e["role"] == "dev")
        .count();
    let first = run
        .events_named("agent_finished")
        .first()
        .map(|e| e["outcome"].as_str().unwrap_or("").to_owned());
    let limits = run.events_named("usage_limit");
    match judged {
        Judged::Limit(at) => {
            expect(run.code() == 1, format!("exit {}", run.code()));
            expect(
                first.as_deref() == Some("usage_limit"),
                format!("first outcome {first:?}"),
            );
            expect(dev_started == 1, format!("{dev_started} dev calls"));
            expect(
                limits.len() == 1
                    && limits[0]["resets_at"].as_str() == Some(rfc3339(at).as_str())
                    && limits[0]["wait"] == false
                    && limits[0]["story"] == "1.1"
                    && limits[0]["role"] == "dev",
                format!(
                    "usage_limit events {limits:?}, expected reset {}",
                    rfc3339(at)
                ),
            );
            expect(
                run.stderr()
                    .contains(&format!("the limit resets {}", new_york(at))),
                format!("stderr lacks the reset {}:\n{}", new_york(at), run.stderr()),
            );
            expect(
                run.events_named("story_finished").is_empty(),
                "the story finished".into(),
            );
        }
        Judged::Transient => {
            expect(
                run.code() == 0,
                format!("exit {}\n{}", run.code(), run.stderr()),
            );
            expect(limits.is_empty(), format!("usage_limit events {limits:?}"));
            expect(
                dev_started == 2,
                format!("{dev_started} dev processes, expected a retry"),
            );
            expect(
                first.as_deref() == Some("success"),
                format!("first outcome {first:?}"),
            );
            expect(done(&run), "story not done".into());
        }
        Judged::Success => {
            expect(
                run.code() == 0,
                format!("exit {}\n{}", run.code(), run.stderr()),
            );
            expect(limits.is_empty(), format!("usage_limit events {limits:?}"));
            expect(dev_started == 1, format!("{dev_started} dev calls"));
            expect(done(&run), "story not done".into());
        }
    }
    bad
}

/// Whether story 1.1 finished done.
fn done(run: &Run) -> bool {
    run.events_named("story_finished")
        .iter()
        .any(|e| e["story"] == "1.1" && e["result"] == "done")
}

#[test]
fn every_capture_is_judged_with_its_reset_instant_and_warnings() {
    // The table covers exactly the captures there are.
    let mut on_disk: Vec<String> = std::fs::read_dir(captures())
        .expect("captures")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("stdout.jsonl").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = EXPECTED.iter().map(|(n, ..)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "a capture without an expectation, or the reverse"
    );

    let queue = Mutex::new(EXPECTED.iter());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let next = queue.lock().expect("queue").next();
                    let Some((name, judged, reports)) = next else {
                        break;
                    };
                    let bad = check_capture(name, *judged, reports);
                    failures.lock().expect("failures").extend(bad);
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A capture with its reset `from` replaced by `epoch` everywhere, in `project`. The text keeps
/// the old time (in another zone than UTC, so a host that read the text instead of `resetsAt`
/// would stop or wait hours, not pass).
fn shifted(project: &Project, capture: &str, from: i64, epoch: i64) -> PathBuf {
    let text =
        std::fs::read_to_string(captures().join(capture).join("stdout.jsonl")).expect("capture");
    let path = project.path().join(".shifted.jsonl");
    let text = text
        .replace(&from.to_string(), &epoch.to_string())
        .replace("6am (UTC)", "1am (America/New_York)");
    std::fs::write(&path, text).expect("write");
    path
}

fn now_epoch() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[test]
fn without_a_rate_limit_event_the_text_is_read_in_its_own_zone() {
    // The tzNY capture's text says "resets Dec 5, 4:30am (America/New_York)"; without the
    // rate_limit_event the host reads it, whatever the operator's own zone.
    let text = std::fs::read_to_string(captures().join("330-oauth-tzNY-rej-7d-opus/stdout.jsonl"))
        .expect("capture");
    let stripped: String = text
        .lines()
        .filter(|l| !l.contains("\"rate_limit_event\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let stream = dir.path().join("stdout.jsonl");
    std::fs::write(&stream, stripped).expect("write");
    // Dec 5, 4:30 New York time, this year or (once it is more than a day past) the next.
    let ny = jiff::tz::TimeZone::get("America/New_York").expect("zone");
    let now = jiff::Timestamp::now();
    let year = now.to_zoned(ny.clone()).year();
    let on = |y: i16| {
        jiff::civil::date(y, 12, 5)
            .at(4, 30, 0, 0)
            .to_zoned(ny.clone())
            .expect("a time")
            .timestamp()
    };
    let mut expected = on(year);
    if expected < now - jiff::SignedDuration::from_hours(24) {
        expected = on(year + 1);
    }
    let (run, _project) = replay_run(&stream, 1, "Asia/Tokyo", &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.events_named("rate_limit").is_empty());
    let limit = run.events_named("usage_limit");
    assert_eq!(
        limit[0]["resets_at"].as_str(),
        Some(expected.to_string().as_str()),
        "{}",
        run.stderr()
    );
    // Shown in the operator's zone (Tokyo) and in UTC.
    let tokyo = expected
        .to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").expect("zone"))
        .strftime("%Y-%m-%d %H:%M JST")
        .to_string();
    assert!(
        run.stderr()
            .contains(&format!("the limit resets {tokyo} (09:30 UTC)")),
        "{tokyo}:\n{}",
        run.stderr()
    );
}

#[test]
fn wait_on_limit_waits_for_the_events_reset_in_new_york_and_redoes_the_step() {
    let project = Project::fixture("v4-sample");
    // The limit resets 2 s from now (the text still says 1am New York: the event wins).
    let reset = now_epoch() + 2;
    let stream = shifted(&project, "330-oauth-tzNY-rej-5h", H5, reset);
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "replay", "file": stream, "exit_code": 1 }]
    }));
    let started = Instant::now();
    let run = Run::project(
        &project,
        &["--story", "1.1", "--wait-on-limit"],
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("TZ", "America/New_York"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "waited too long"
    );
    let limit = run.events_named("usage_limit");
    assert_eq!(limit.len(), 1, "{}", run.stderr());
    assert_eq!(
        limit[0]["resets_at"].as_str(),
        Some(rfc3339(reset).as_str())
    );
    assert_eq!(limit[0]["wait"], true);
    let waits = run.events_named("waiting_for_reset");
    assert!(!waits.is_empty(), "{}", run.stderr());
    assert_eq!(waits[0]["story"], "1.1");
    assert_eq!(
        waits[0]["resets_at"].as_str(),
        Some(rfc3339(reset).as_str())
    );
    let remaining = waits[0]["remaining_ms"].as_u64().expect("remaining_ms");
    assert!(remaining > 0 && remaining <= 5_000, "{remaining}");
    let outcomes: Vec<&str> = run
        .events_named("agent_finished")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["usage_limit", "success", "success"]);
    let started = run.events_named("agent_started");
    let dev: Vec<&Value> = started
        .iter()
        .copied()
        .filter(|e| e["role"] == "dev")
        .collect();
    assert_eq!(dev.len(), 2);
    assert_eq!(dev[1]["retry"], true, "the limited step is redone");
    assert_eq!(run.story_result("1.1")["result"], "done");
    assert_eq!(
        run.story_result("1.1")["cycles"],
        1,
        "the cycle was not charged"
    );
    // Events in order: the limit, the wait, then the redone call.
    let names: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    let at = |n: &str| names.iter().position(|x| *x == n).expect(n);
    assert!(at("usage_limit") < at("waiting_for_reset"));
}

#[test]
fn ctrl_c_ends_the_wait_and_the_next_run_redoes_the_step() {
    let project = Project::fixture("v4-sample");
    let stream = shifted(&project, "332-oauth-rej-5h", H5, now_epoch() + 3600);
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "replay", "file": stream, "exit_code": 1 }]
    }));
    let mut cmd = run_command(&project);
    cmd.args(["--json", "--story", "1.1", "--wait-on-limit"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("FAKE_CLAUDE_SCRIPT", &script)
        .env("TZ", "Europe/Berlin");
    let mut child = cmd.spawn().expect("spawn bmad-host");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let stdout = child.stdout.take().expect("stdout");
    // A host that waits without saying so would wait an hour: end it after a minute.
    let (done, watchdog) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = kill(pid, Signal::SIGKILL);
        }
    });
    let mut events = Vec::new();
    let mut sent = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if sent.is_none() && event["event"] == "waiting_for_reset" {
            let remaining = event["remaining_ms"].as_u64().expect("remaining_ms");
            assert!(remaining > 3_500_000, "{event}");
            kill(pid, Signal::SIGINT).expect("SIGINT bmad-host");
            sent = Some(Instant::now());
        }
        events.push(event);
    }
    let status = child.wait().expect("wait bmad-host");
    let _ = done.send(());
    let sent = sent.unwrap_or_else(|| panic!("no wait: {events:?}"));
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "the wait ignored Ctrl-C"
    );
    assert_eq!(status.code(), Some(130), "{events:?}");
    let last = events.last().expect("events");
    assert_eq!(last["event"], "run_finished");
    assert_eq!(last["interrupted"], true);

    // The next run resumes: the limited step is redone (a retry), nothing was charged.
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("agent_started")[0]["retry"], true);
    assert_eq!(run.story_result("1.1")["cycles"], 1);
}

#[test]
fn a_limit_that_still_refuses_after_its_reset_stops_the_run() {
    let project = Project::fixture("v4-sample");
    let reset = now_epoch() + 1;
    let stream = shifted(&project, "330-oauth-rej-5h", H5, reset);
    let replay =
        json!({ "role": "dev", "story": "1.1", "do": "replay", "file": stream, "exit_code": 1 });
    let script = project.script(&json!({ "calls": [replay] }));
    let run = Run::project(
        &project,
        &["--story", "1.1", "--wait-on-limit"],
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("TZ", "UTC"),
        ],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let limits = run.events_named("usage_limit");
    assert_eq!(limits.len(), 2, "{}", run.stderr());
    assert_eq!(limits[0]["wait"], true);
    assert_eq!(limits[1]["wait"], false);
    assert!(
        run.stderr()
            .contains("still refuses after the reset it stated"),
        "{}",
        run.stderr()
    );
}
