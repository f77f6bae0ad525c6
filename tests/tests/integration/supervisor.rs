//! `bmad_host::claude::run` against the fake Claude CLI: one test per misbehaviour, each asserting
//! the outcome AND that no process of the call is alive afterwards.

use std::time::Duration;

use bmad_host::claude::{self, CallReport, Directive, Event, ExitInfo, Interrupt, Limits, Outcome};
use bmad_host_tests::fake::{FakeCall, quick_limits};
use bmad_host_tests::fake_log;
use serde_json::json;
use tokio::sync::watch;

const FAKE: &str = env!("CARGO_BIN_EXE_fake-claude");

/// Runs the call with no policy, collecting its events.
async fn run(call: &FakeCall, limits: &Limits) -> (CallReport, Vec<Event>) {
    let (_tx, rx) = watch::channel(Interrupt::None);
    let mut events = Vec::new();
    let mut on_event = |e: &Event| {
        events.push(e.clone());
        Directive::Continue
    };
    let report = claude::run(&call.spec, limits, &mut on_event, &mut |_| {}, rx).await;
    (report, events)
}

/// Runs the call and asserts that nothing of it survives.
async fn run_clean(call: &FakeCall, limits: &Limits) -> (CallReport, Vec<Event>) {
    let (report, events) = run(call, limits).await;
    assert_gone(call, &report);
    (report, events)
}

fn assert_gone(call: &FakeCall, report: &CallReport) {
    assert_eq!(
        call.live(),
        Vec::<u32>::new(),
        "processes of the call survive; report {report:?}"
    );
    assert!(
        report.clean,
        "the supervisor could not prove the end: {report:?}\n{}",
        call.transcript()
    );
}

fn idle(ms: u64) -> Limits {
    Limits {
        idle_timeout: Duration::from_millis(ms),
        ..quick_limits()
    }
}

fn killed_by(sig: i32) -> Option<ExitInfo> {
    Some(ExitInfo {
        code: None,
        signal: Some(sig),
    })
}

fn exit_code(code: i32) -> Option<ExitInfo> {
    Some(ExitInfo {
        code: Some(code),
        signal: None,
    })
}

/// The `grandchild` pid the fake logged for its (only) process.
fn grandchild_pid(call: &FakeCall) -> u32 {
    let log = call.log();
    let pid = log
        .first()
        .and_then(|l| l["grandchild"].as_u64())
        .expect("the fake logged its grandchild");
    u32::try_from(pid).expect("pid")
}

#[tokio::test]
async fn plays_sm_and_passes_everything_the_cli_needs() {
    let call = FakeCall::new(FAKE, "sup-play", "sm", &json!({}));
    let (report, events) = run_clean(&call, &quick_limits()).await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(report.attempts, 1);
    assert_eq!(report.exit, exit_code(0));
    assert_eq!(report.session_id.as_deref(), Some(call.session.as_str()));
    assert!(report.num_turns >= 2, "{report:?}");
    assert!(report.cost_usd > 0.0 && report.input_tokens > 0 && report.output_tokens > 0);
    assert!(
        report
            .result_text
            .as_deref()
            .is_some_and(|t| t.contains("Drafted story 1.1"))
    );
    let story = std::fs::read_to_string(call.root().join("docs/stories/1.1.story.md"))
        .expect("story drafted");
    assert!(
        story.starts_with("# Story 1.1: Story 1.1\n\n## Status\n\nDraft\n"),
        "{story}"
    );
    assert!(
        matches!(&events[0], Event::Init { model, session_id } if model == "claude-test" && session_id.as_deref() == Some(call.session.as_str()))
    );
    assert!(events.contains(&Event::ToolUse {
        name: "Write".into()
    }));
    assert!(events.contains(&Event::ToolResult { is_error: false }));
    assert!(events.iter().any(|e| matches!(e, Event::Text(_))));

    // What the host passed.
    let log = call.log();
    assert_eq!(log.len(), 1);
    let l = &log[0];
    assert_eq!(Some(u64::from(report.pid.expect("pid"))), l["pid"].as_u64());
    assert_eq!(l["pid"], l["pgid"], "own process group");
    assert_eq!(l["stdin"], "/dev/null");
    assert_eq!(l["cwd"], call.root().display().to_string());
    let env = &l["env"];
    assert_eq!(env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
    assert_eq!(env["BMAD_HOST_ROLE"], "sm");
    assert_eq!(env["BMAD_HOST_STORY_ID"], "1.1");
    assert_eq!(env["BMAD_HOST_CYCLE"], "1");
    assert_eq!(env["BMAD_HOST_RUN_ID"], "run-test");
    assert!(
        env[claude::CALL_MARKER_ENV]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    let argv = fake_log::argv(l);
    assert_eq!(
        argv[1..],
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            "20",
            "--permission-mode",
            "acceptEdits",
            "--model",
            "claude-test",
            "--allowedTools",
            "Read,Edit",
            "--",
            "act as sm"
        ]
    );
    // Read as the real CLI reads it: the prompt after `--`.
    assert_eq!(fake_log::prompt(l), "act as sm");
    // The transcript holds every stdout line and the host's notes.
    let t = call.transcript();
    assert!(t.contains(r#""subtype":"init""#) && t.contains(r#""type":"result""#));
    assert!(t.contains(r#""bmad_host":"attempt""#) && t.contains(r#""bmad_host":"end""#));
}

#[tokio::test]
async fn hangs_silently_then_idle_timeout_and_sigint_suffices() {
    let call = FakeCall::new(FAKE, "sup-hang", "dev", &json!({"do": "hang"}));
    let (report, _) = run_clean(&call, &idle(300)).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
    // The fake acts like the real CLI on SIGINT while waiting: exit 0, no result line.
    assert_eq!(report.exit, exit_code(0));
    let t = call.transcript();
    assert!(t.contains("[Request interrupted by user]"));
    assert!(t.contains(r#""step":"SIGINT""#) && !t.contains(r#""step":"SIGTERM""#));
}

#[tokio::test]
async fn ignores_sigint_and_sigterm_then_sigkill() {
    let call = FakeCall::new(
        FAKE,
        "sup-ignore",
        "dev",
        &json!({"do": "hang", "ignore_signals": true}),
    );
    let (report, _) = run_clean(&call, &idle(300)).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
    assert_eq!(report.exit, killed_by(9));
    let t = call.transcript();
    assert!(
        t.contains(r#""step":"SIGINT""#)
            && t.contains(r#""step":"SIGTERM""#)
            && t.contains(r#""step":"SIGKILL""#)
    );
}

#[tokio::test]
async fn setsid_grandchild_of_a_hung_call_is_killed() {
    let call = FakeCall::new(
        FAKE,
        "sup-gc-hang",
        "dev",
        &json!({"do": "hang", "ignore_signals": true, "grandchild": true}),
    );
    let (report, _) = run_clean(&call, &idle(300)).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
    let gc = grandchild_pid(&call);
    assert!(
        bmad_host_tests::procs::process_state(gc).is_none_or(|s| s == 'Z'),
        "grandchild {gc} alive"
    );
}

#[tokio::test]
async fn setsid_grandchild_left_behind_by_a_finished_call_is_harvested() {
    // The grandchild holds stdout open: EOF comes only once the host has killed it.
    let call = FakeCall::new(
        FAKE,
        "sup-gc-done",
        "dev",
        &json!({"do": "slow", "lines": 1, "delay_ms": 1, "grandchild": true}),
    );
    let (report, _) = run_clean(&call, &quick_limits()).await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(report.exit, exit_code(0));
    let gc = grandchild_pid(&call);
    assert!(
        bmad_host_tests::procs::process_state(gc).is_none_or(|s| s == 'Z'),
        "grandchild {gc} alive"
    );
}

#[tokio::test]
async fn garbage_and_a_50_mb_line_are_survived() {
    // It measures the process's peak memory: no other test may run beside it.
    if !bmad_host_tests::alone!(garbage_and_a_50_mb_line_are_survived) {
        return;
    }
    let before = peak_rss_kb();
    let call = FakeCall::new(FAKE, "sup-garbage", "dev", &json!({"do": "garbage"}));
    let (report, _) = run_clean(&call, &quick_limits()).await;
    assert_eq!(report.outcome, Outcome::Success);
    let t = call.transcript();
    assert!(
        t.contains(r#""bmad_host":"line_too_long""#),
        "no line_too_long note"
    );
    assert!(t.contains("this is not JSON") && t.contains("mystery_line"));
    assert!(t.contains(r#""bmad_host":"stderr""#) && t.contains("stderr noise from fake-claude"));
    let len = std::fs::metadata(&call.spec.transcript)
        .expect("transcript")
        .len();
    assert!(
        len < 1024 * 1024,
        "the long line was kept: transcript is {len} bytes"
    );
    // The 50 MB line was never buffered whole (peak memory grew by far less than 50 MB).
    let grown = peak_rss_kb().saturating_sub(before);
    assert!(grown < 30 * 1024, "peak RSS grew by {grown} kB");
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn exit_0_without_a_result_line() {
    let call = FakeCall::new(FAKE, "sup-nores", "dev", &json!({"do": "no_result"}));
    let (report, _) = run_clean(&call, &quick_limits()).await;
    assert_eq!(
        report.outcome,
        Outcome::NoResult {
            exit: ExitInfo {
                code: Some(0),
                signal: None
            }
        }
    );
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn no_result_is_retried_with_fresh_processes() {
    let call = FakeCall::new(FAKE, "sup-nores-retry", "dev", &json!({"do": "no_result"}));
    let limits = Limits {
        retries: 2,
        ..quick_limits()
    };
    let mut pids = Vec::new();
    let (_tx, rx) = watch::channel(Interrupt::None);
    let report = claude::run(
        &call.spec,
        &limits,
        &mut |_| Directive::Continue,
        &mut |pid| pids.push(pid),
        rx,
    )
    .await;
    assert_gone(&call, &report);
    assert!(matches!(report.outcome, Outcome::NoResult { .. }));
    assert_eq!(report.attempts, 3);
    assert_eq!(call.log().len(), 3);
    pids.dedup();
    assert_eq!(pids.len(), 3, "each attempt is a fresh process");
    assert!(
        call.transcript()
            .matches(r#""bmad_host":"attempt""#)
            .count()
            == 3
    );
}

#[tokio::test]
async fn api_error_529_is_an_api_error() {
    let call = FakeCall::new(
        FAKE,
        "sup-529",
        "dev",
        &json!({"do": "api_error", "status": 529}),
    );
    let (report, events) = run_clean(&call, &quick_limits()).await;
    let Outcome::ApiError { status, message } = &report.outcome else {
        panic!("{report:?}")
    };
    assert_eq!(*status, Some(529));
    assert!(message.contains("Overloaded"));
    assert!(report.outcome.is_transient());
    assert_eq!(report.exit, exit_code(1));
    assert!(events.contains(&Event::ApiRetry {
        attempt: 1,
        status: Some(529)
    }));
}

#[tokio::test]
async fn transient_api_error_is_retried_then_succeeds() {
    let script = json!({"calls": [
        {"role": "dev", "story": "1.1", "occurrence": 1, "do": "api_error", "status": 529},
        {"role": "dev", "story": "1.1", "do": "slow", "lines": 1, "delay_ms": 1}
    ]});
    let call = FakeCall::new(FAKE, "sup-retry", "dev", &json!({})).with_script(&script);
    let limits = Limits {
        retries: 2,
        ..quick_limits()
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(report.attempts, 2);
    let log = call.log();
    assert_eq!(
        log.iter()
            .map(|l| l["do"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        ["api_error", "slow"]
    );
}

#[tokio::test]
async fn usage_limit_is_detected_with_its_reset_time_and_never_retried() {
    let call = FakeCall::new(
        FAKE,
        "sup-limit",
        "dev",
        &json!({"do": "usage_limit", "reset": "3pm (UTC)"}),
    );
    let limits = Limits {
        retries: 3,
        ..quick_limits()
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(
        report.outcome,
        Outcome::UsageLimit {
            message: "You've hit your session limit · resets 3pm (UTC)".into(),
            resets: Some("3pm (UTC)".into())
        }
    );
    assert_eq!(report.attempts, 1);
}

#[tokio::test]
async fn dies_by_sigkill() {
    let call = FakeCall::new(
        FAKE,
        "sup-kill",
        "dev",
        &json!({"do": "die", "signal": "KILL"}),
    );
    let (report, _) = run_clean(&call, &quick_limits()).await;
    assert_eq!(
        report.outcome,
        Outcome::NoResult {
            exit: ExitInfo {
                code: None,
                signal: Some(9)
            }
        }
    );
}

#[tokio::test]
async fn dies_by_sigsegv() {
    let call = FakeCall::new(
        FAKE,
        "sup-segv",
        "dev",
        &json!({"do": "die", "signal": "SEGV"}),
    );
    let (report, _) = run_clean(&call, &quick_limits()).await;
    assert_eq!(
        report.outcome,
        Outcome::NoResult {
            exit: ExitInfo {
                code: None,
                signal: Some(11)
            }
        }
    );
}

#[tokio::test]
async fn error_subtypes() {
    for (action, expected) in [
        ("max_turns", Outcome::MaxTurns),
        ("max_budget", Outcome::MaxBudget),
        ("during_execution", Outcome::DuringExecution),
    ] {
        let call = FakeCall::new(FAKE, "sup-subtype", "dev", &json!({"do": action}));
        let (report, _) = run_clean(&call, &quick_limits()).await;
        assert_eq!(report.outcome, expected, "{action}");
        assert_eq!(report.exit, exit_code(1));
    }
}

#[tokio::test]
async fn closes_stdout_but_keeps_running() {
    let call = FakeCall::new(FAKE, "sup-close", "dev", &json!({"do": "close_stdout"}));
    let (report, _) = run_clean(&call, &idle(300)).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
}

#[tokio::test]
async fn slow_output_within_the_idle_timeout_succeeds() {
    let call = FakeCall::new(
        FAKE,
        "sup-slow",
        "dev",
        &json!({"do": "slow", "lines": 4, "delay_ms": 50}),
    );
    let (report, events) = run_clean(&call, &idle(5_000)).await;
    assert_eq!(report.outcome, Outcome::Success);
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, Event::Text(_)))
            .count(),
        4
    );
}

#[tokio::test]
async fn slow_output_beyond_the_idle_timeout_is_stopped() {
    let call = FakeCall::new(
        FAKE,
        "sup-slower",
        "dev",
        &json!({"do": "slow", "lines": 3, "delay_ms": 3_000}),
    );
    let (report, _) = run_clean(&call, &idle(300)).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
}

#[tokio::test]
async fn idle_timeout_is_paused_while_a_tool_runs() {
    let call = FakeCall::new(
        FAKE,
        "sup-tool",
        "dev",
        &json!({"do": "slow_tool", "delay_ms": 1_000}),
    );
    let limits = Limits {
        tool_idle_timeout: Duration::from_secs(30),
        ..idle(300)
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(report.outcome, Outcome::Success, "{}", call.transcript());
}

#[tokio::test]
async fn a_tool_that_never_returns_hits_the_tool_idle_timeout() {
    let call = FakeCall::new(FAKE, "sup-tool-hang", "dev", &json!({"do": "hang_in_tool"}));
    let limits = Limits {
        idle_timeout: Duration::from_secs(60),
        tool_idle_timeout: Duration::from_millis(300),
        ..quick_limits()
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(report.outcome, Outcome::IdleTimeout);
    // SIGINT during a tool: the fake (like the CLI) answers with error_during_execution, which
    // does not change the outcome: the teardown came first.
    assert!(call.transcript().contains("error_during_execution"));
}

#[tokio::test]
async fn chatter_forever_hits_the_wall_clock_timeout() {
    let call = FakeCall::new(
        FAKE,
        "sup-chatter",
        "dev",
        &json!({"do": "chatter", "delay_ms": 20}),
    );
    let limits = Limits {
        timeout: Duration::from_millis(500),
        ..quick_limits()
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(report.outcome, Outcome::TimedOut);
}

#[tokio::test]
async fn a_process_that_lingers_after_its_result_keeps_its_outcome() {
    let call = FakeCall::new(
        FAKE,
        "sup-linger",
        "dev",
        &json!({"do": "slow", "lines": 0, "linger": true, "ignore_signals": true}),
    );
    let limits = Limits {
        exit_grace: Duration::from_millis(200),
        ..quick_limits()
    };
    let (report, _) = run_clean(&call, &limits).await;
    assert_eq!(
        report.outcome,
        Outcome::Success,
        "a teardown after the result is cleanup"
    );
    assert_eq!(report.exit, killed_by(9));
}

#[tokio::test]
async fn policy_stop_directive() {
    let call = FakeCall::new(
        FAKE,
        "sup-policy",
        "dev",
        &json!({"do": "slow_tool", "delay_ms": 60_000}),
    );
    let (_tx, rx) = watch::channel(Interrupt::None);
    let mut on_event = |e: &Event| {
        if matches!(e, Event::ToolUse { .. }) {
            Directive::Stop
        } else {
            Directive::Continue
        }
    };
    let report = claude::run(&call.spec, &quick_limits(), &mut on_event, &mut |_| {}, rx).await;
    assert_gone(&call, &report);
    assert_eq!(report.outcome, Outcome::StoppedByPolicy);
}

#[tokio::test]
async fn ctrl_c_once_tears_down_gracefully() {
    let call = FakeCall::new(FAKE, "sup-ctrlc", "dev", &json!({"do": "hang"}));
    let (tx, rx) = watch::channel(Interrupt::None);
    let mut on_event = |e: &Event| {
        if matches!(e, Event::Init { .. }) {
            let _ = tx.send(Interrupt::Graceful);
        }
        Directive::Continue
    };
    let report = claude::run(&call.spec, &quick_limits(), &mut on_event, &mut |_| {}, rx).await;
    assert_gone(&call, &report);
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.exit, exit_code(0));
}

#[tokio::test]
async fn ctrl_c_twice_kills_at_once_even_a_stubborn_tree() {
    let call = FakeCall::new(
        FAKE,
        "sup-ctrlc2",
        "dev",
        &json!({"do": "hang", "ignore_signals": true, "grandchild": true}),
    );
    // Were the graces not skipped, the transcript would show the SIGINT and SIGTERM steps.
    let limits = Limits {
        interrupt_grace: Duration::from_secs(5),
        term_grace: Duration::from_secs(5),
        ..quick_limits()
    };
    let (tx, rx) = watch::channel(Interrupt::None);
    let mut on_event = |e: &Event| {
        if matches!(e, Event::Init { .. }) {
            let _ = tx.send(Interrupt::Graceful);
            let _ = tx.send(Interrupt::Immediate);
        }
        Directive::Continue
    };
    let report = claude::run(&call.spec, &limits, &mut on_event, &mut |_| {}, rx).await;
    assert_gone(&call, &report);
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!(report.exit, killed_by(9));
    let t = call.transcript();
    assert!(
        !t.contains(r#""step":"SIGINT""#) && !t.contains(r#""step":"SIGTERM""#),
        "{t}"
    );
}

#[tokio::test]
async fn interrupted_before_the_call_starts_nothing() {
    let call = FakeCall::new(FAKE, "sup-pre", "dev", &json!({}));
    let (_tx, rx) = watch::channel(Interrupt::Graceful);
    let mut spawned = 0;
    let report = claude::run(
        &call.spec,
        &quick_limits(),
        &mut |_| Directive::Continue,
        &mut |_| spawned += 1,
        rx,
    )
    .await;
    assert_eq!(report.outcome, Outcome::Cancelled);
    assert_eq!((report.attempts, spawned), (0, 0));
    assert!(call.log().is_empty());
}

#[tokio::test]
async fn a_missing_binary_is_a_spawn_failure() {
    let mut call = FakeCall::new(FAKE, "sup-missing", "dev", &json!({}));
    call.spec.bin = call.root().join("no-such-claude");
    let limits = Limits {
        retries: 3,
        ..quick_limits()
    };
    let (report, _) = run(&call, &limits).await;
    assert!(
        matches!(&report.outcome, Outcome::SpawnFailed(m) if m.contains("no-such-claude")),
        "{report:?}"
    );
    assert_eq!(report.attempts, 1);
}
