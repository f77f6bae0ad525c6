//! The supervisor's key misbehaviour cases through the real `bmad-host run` binary: the first Dev
//! call of story 1.1 (v4 sample) misbehaves as scripted; each test asserts the call's outcome in
//! the NDJSON `agent_finished` event AND that no process of the run (all carry the test's
//! `FAKE_CLAUDE_TAG`) is alive once `bmad-host` has exited. Ctrl-C is a real SIGINT to bmad-host.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use bmad_host_tests::fake::unique_tag;
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, run_command};
use bmad_host_tests::procs::live_processes_with_marker;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// A v4 sample project whose first Dev call of story 1.1 behaves as `behaviour`; every other
/// call plays its role.
fn project_with(behaviour: Value) -> (Project, String) {
    let project = Project::fixture("v4-sample");
    let mut entry = json!({"role": "dev", "story": "1.1", "occurrence": 1});
    if let (Some(e), Value::Object(b)) = (entry.as_object_mut(), behaviour) {
        e.extend(b);
    }
    let script = project.script(&json!({ "calls": [entry] }));
    (project, script.display().to_string())
}

fn run(behaviour: Value, args: &[&str], env: &[(&str, &str)]) -> (Run, Project) {
    let (project, script) = project_with(behaviour);
    let tag = unique_tag("sup-cli");
    let log = fake_log::env_value(&project);
    let mut all_env = vec![
        ("FAKE_CLAUDE_SCRIPT", script.as_str()),
        ("FAKE_CLAUDE_TAG", tag.as_str()),
        ("FAKE_CLAUDE_LOG", log.as_str()),
        ("BMAD_HOST_CLAUDE_RETRIES", "0"),
    ];
    all_env.extend_from_slice(env);
    let mut all_args = vec!["--story", "1.1"];
    all_args.extend_from_slice(args);
    let run = Run::project(&project, &all_args, &all_env);
    assert_eq!(
        live_processes_with_marker(&tag),
        Vec::<u32>::new(),
        "processes of the run survive bmad-host\n{}",
        run.stderr()
    );
    (run, project)
}

/// The first `agent_finished` event (the scripted Dev call).
fn first_outcome(run: &Run) -> (String, String) {
    let e = run
        .events_named("agent_finished")
        .first()
        .copied()
        .cloned()
        .unwrap_or_else(|| panic!("no agent_finished event\n{}", run.stderr()));
    assert_eq!(e["role"], "dev", "{e}");
    (
        e["outcome"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[test]
fn hang_is_an_idle_timeout() {
    let (run, _) = run(json!({"do": "hang"}), &["--idle-timeout", "300ms"], &[]);
    assert_eq!(first_outcome(&run).0, "idle_timeout", "{}", run.stderr());
}

#[test]
fn stubborn_process_with_a_setsid_grandchild_is_torn_down() {
    let (run, _) = run(
        json!({"do": "hang", "ignore_signals": true, "grandchild": true}),
        &["--idle-timeout", "300ms"],
        &[],
    );
    assert_eq!(first_outcome(&run).0, "idle_timeout", "{}", run.stderr());
}

#[test]
fn garbage_and_a_50_mb_line_still_succeed() {
    let (run, _) = run(json!({"do": "garbage"}), &[], &[]);
    // Success judged from the result line (the fake edits nothing here, so the story then fails).
    assert_eq!(first_outcome(&run).0, "success", "{}", run.stderr());
}

#[test]
fn exit_without_result_is_retried_with_a_fresh_process() {
    let (run, project) = run(
        json!({"do": "no_result"}),
        &[],
        &[("BMAD_HOST_CLAUDE_RETRIES", "2")],
    );
    assert_eq!(first_outcome(&run).0, "success", "{}", run.stderr());
    let dev_calls: Vec<u64> = fake_log::calls(&project)
        .iter()
        .filter(|c| c["role"] == "dev")
        .filter_map(|c| c["pid"].as_u64())
        .collect();
    assert_eq!(dev_calls.len(), 2, "one crash, one retry");
    assert_ne!(dev_calls[0], dev_calls[1]);
}

#[test]
fn api_error_is_reported() {
    let (run, _) = run(json!({"do": "api_error", "status": 529}), &[], &[]);
    let (outcome, message) = first_outcome(&run);
    assert_eq!(outcome, "api_error", "{}", run.stderr());
    assert!(message.contains("529"), "{message}");
}

#[test]
fn usage_limit_stops_the_run_with_the_reset_time() {
    let (run, project) = run(json!({"do": "usage_limit", "reset": "3pm (UTC)"}), &[], &[]);
    assert_eq!(first_outcome(&run).0, "usage_limit", "{}", run.stderr());
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("3pm (UTC)"), "{}", run.stderr());
    assert_eq!(
        fake_log::calls(&project).len(),
        1,
        "no call after the usage limit"
    );
}

#[test]
fn death_by_signal_is_a_missing_result() {
    let (run, _) = run(json!({"do": "die", "signal": "SEGV"}), &[], &[]);
    let (outcome, message) = first_outcome(&run);
    assert_eq!(outcome, "no_result", "{}", run.stderr());
    assert!(message.contains("SIGSEGV"), "{message}");
}

/// Runs bmad-host, sends SIGINT once the scripted Dev call has started, and returns the exit code
/// and the NDJSON events.
fn interrupted_run(behaviour: Value) -> (i32, Vec<Value>) {
    let (project, script) = project_with(behaviour);
    let tag = unique_tag("sup-cli-int");
    let mut cmd = run_command(&project);
    cmd.args(["--json", "--story", "1.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("FAKE_CLAUDE_SCRIPT", &script)
        .env("FAKE_CLAUDE_TAG", &tag)
        .env("BMAD_HOST_CLAUDE_RETRIES", "0");
    let mut child = cmd.spawn().expect("spawn bmad-host");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let stdout = child.stdout.take().expect("stdout");
    let mut events = Vec::new();
    let mut sent = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if !sent && event["event"] == "agent_started" {
            kill(pid, Signal::SIGINT).expect("SIGINT bmad-host");
            sent = true;
        }
        events.push(event);
    }
    let status = child.wait().expect("wait bmad-host");
    assert!(sent, "the agent never started: {events:?}");
    assert_eq!(
        live_processes_with_marker(&tag),
        Vec::<u32>::new(),
        "processes survive Ctrl-C"
    );
    (status.code().unwrap_or(-1), events)
}

#[test]
fn ctrl_c_tears_down_and_exits_130() {
    let (code, events) = interrupted_run(json!({"do": "hang"}));
    assert_eq!(code, 130, "{events:?}");
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "agent_finished")
        .collect();
    assert_eq!(finished.len(), 1, "{events:?}");
    assert_eq!(finished[0]["outcome"], "cancelled");
}

#[test]
fn ctrl_c_on_a_stubborn_tree_still_leaves_nothing() {
    let (code, events) =
        interrupted_run(json!({"do": "hang", "ignore_signals": true, "grandchild": true}));
    assert_eq!(code, 130, "{events:?}");
}
