//! Interrupts and crashes through the real binary: Ctrl-C once (clean teardown, journal, exit
//! 130, the next run resumes and redoes the interrupted step as a retry), Ctrl-C twice with an
//! agent that ignores signals, and `kill -9` of the host at many points of a multi-story epic
//! (every story still ends Done, no journaled agent step runs twice, no story file is
//! half-written).

use std::collections::BTreeMap;
use std::process::{Child, Stdio};

use bmad_host_tests::fake::unique_tag as unique;
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, read_events_until as read_until, run_command};
use bmad_host_tests::procs::processes_with_env;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Starts `bmad-host run --json` on `project`; every process it starts inherits `RESUME_TAG=tag`.
fn spawn_run(project: &Project, tag: &str, env: &[(&str, &str)]) -> Child {
    let mut cmd = run_command(project);
    cmd.arg("--json")
        .env("RESUME_TAG", tag)
        .env("FAKE_CLAUDE_LOG", fake_log::path(project))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn bmad-host")
}

fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pid");
    kill(Pid::from_raw(pid), sig).expect("signal bmad-host");
}

#[test]
fn ctrl_c_tears_the_call_down_exits_130_and_the_next_run_retries_the_step() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ctrl-c");
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "hang" }]
    }));
    let mut child = spawn_run(
        &project,
        &tag,
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    read_until(&mut child, |e| e["event"] == "agent_started");
    signal(&child, Signal::SIGINT);
    let rest = read_until(&mut child, |_| false);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let finished = rest
        .iter()
        .find(|e| e["event"] == "run_finished")
        .expect("run_finished after Ctrl-C");
    assert_eq!(finished["interrupted"], true);
    let agent = rest
        .iter()
        .find(|e| e["event"] == "agent_finished")
        .expect("agent_finished");
    assert_eq!(agent["outcome"], "cancelled");
    assert_eq!(processes_with_env("RESUME_TAG", &tag), Vec::<u32>::new());

    // The next run (an agent that behaves) resumes the same run and redoes the interrupted
    // Dev step as a retry.
    let run = Run::project(&project, &["--idle-timeout", "60s"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let started = &run.events_named("run_started")[0];
    assert_eq!(started["resumed"], true);
    let first_agent = &run.events_named("agent_started")[0];
    assert_eq!(first_agent["story"], "1.1");
    assert_eq!(first_agent["role"], "dev");
    assert_eq!(first_agent["retry"], true);
    assert_eq!(run.events_named("run_finished")[0]["done"], 3);
}

#[test]
fn ctrl_c_twice_kills_an_agent_that_ignores_signals() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ctrl-c-twice");
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "do": "hang", "ignore_signals": true, "grandchild": true }]
    }));
    let mut child = spawn_run(
        &project,
        &tag,
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    read_until(&mut child, |e| e["event"] == "agent_started");
    signal(&child, Signal::SIGINT);
    signal(&child, Signal::SIGINT);
    let rest = read_until(&mut child, |_| false);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(rest.iter().any(|e| e["event"] == "run_finished"));
    assert_eq!(processes_with_env("RESUME_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn kill_9_at_many_points_loses_nothing_and_redoes_no_finished_agent_step() {
    let project = Project::fixture("v4-sample");
    let tag = unique("kill-9");
    // A two-cycle story makes the epic long enough to be killed in many places.
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"] }]
    }));
    let env = [("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))];
    // Kill after the k-th event of each run: right after a spawn, between steps, after a
    // state write, at the start.
    let mut finished = false;
    for (round, k) in [3usize, 1, 4, 2, 5, 3, 6, 2, 4, 7].into_iter().enumerate() {
        let mut child = spawn_run(&project, &tag, &env);
        let mut seen = 0;
        let events = read_until(&mut child, |_| {
            seen += 1;
            seen >= k
        });
        if events.last().is_some_and(|e| e["event"] == "run_finished") {
            let _ = child.wait();
            finished = true;
            break;
        }
        signal(&child, Signal::SIGKILL);
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), None, "round {round}: killed by a signal");
        assert_story_files_whole(&project, round);
    }
    if !finished {
        let log = fake_log::env_value(&project);
        let run = Run::project(&project, &[], &[env[0], ("FAKE_CLAUDE_LOG", &log)]);
        assert_eq!(run.code(), 0, "{}", run.stderr());
    }
    let status = Run::bmad_host(
        &[
            "status",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    for story in &status.events {
        assert_eq!(story["state"], "done", "{story}");
    }
    assert_eq!(status.events.len(), 3);

    // Every agent call the fake saw is accounted for by the journal: an agent step is run
    // again only when its earlier attempt has no result (attempt > 1), never once it finished.
    let log = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    let mut journaled: BTreeMap<(String, String, u64), u64> = BTreeMap::new();
    for step in log.events.iter().filter(|s| s["kind"] == "agent-call") {
        let key = (
            step["story"].as_str().unwrap_or_default().to_string(),
            step["role"].as_str().unwrap_or_default().to_string(),
            step["cycle"].as_u64().unwrap_or_default(),
        );
        *journaled.entry(key).or_default() += step["attempt"].as_u64().unwrap_or(1);
    }
    let mut called: BTreeMap<(String, String, u64), u64> = BTreeMap::new();
    for call in fake_log::calls(&project) {
        let key = (
            call["story"].as_str().unwrap_or_default().to_string(),
            call["role"].as_str().unwrap_or_default().to_string(),
            call["env"]["BMAD_HOST_CYCLE"]
                .as_str()
                .and_then(|c| c.parse().ok())
                .unwrap_or_default(),
        );
        *called.entry(key).or_default() += 1;
    }
    // An attempt is journaled (its intent, durable) before its agent is spawned, so a kill
    // between the two, or one that lands before a just-spawned agent has logged its call (the
    // next host stops that leftover first), leaves an attempt with no call: attempts >= calls.
    // A finished step run again would be a call with no attempt of its own: calls > attempts.
    assert_eq!(
        called.keys().collect::<Vec<_>>(),
        journaled.keys().collect::<Vec<_>>(),
        "every agent step was called and journaled"
    );
    for (key, calls) in &called {
        assert!(
            *calls <= journaled[key],
            "{key:?}: {calls} agent calls made, {} attempts journaled (a finished step must never run again)\ncalls: {called:?}\nattempts: {journaled:?}",
            journaled[key]
        );
    }
    assert_eq!(processes_with_env("RESUME_TAG", &tag), Vec::<u32>::new());
}

/// `kill -9` of the host right after a story's state changed, that is, after an agent call's
/// result and the decisions that followed it were written but before the next agent call's
/// intent (the journal's one fsynced commit of that gap; the records before it are written
/// without an fsync of their own). However often that happens, no call whose result was written
/// runs again: a killed process loses nothing it wrote.
#[test]
fn kill_9_after_a_result_and_before_the_next_intent_redoes_no_finished_call() {
    let project = Project::fixture("v4-sample");
    let tag = unique("kill-9-gap");
    let mut finished_before_kill: Vec<((String, String, u64), usize)> = Vec::new();
    let key = |e: &Value| {
        (
            e["story"].as_str().unwrap_or_default().to_string(),
            e["role"].as_str().unwrap_or_default().to_string(),
            e["cycle"].as_u64().unwrap_or_default(),
        )
    };
    let mut done = false;
    for round in 0..20 {
        let mut child = spawn_run(&project, &tag, &[]);
        let events = read_until(&mut child, |e| {
            e["event"] == "state_changed" || e["event"] == "run_finished"
        });
        if events.last().is_some_and(|e| e["event"] == "run_finished") {
            let _ = child.wait();
            done = true;
            break;
        }
        signal(&child, Signal::SIGKILL);
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), None, "round {round}: killed by a signal");
        // The calls that finished in this run, with how many calls the fake had seen by the kill.
        let calls_so_far = fake_log::calls(&project).len();
        finished_before_kill.extend(
            events
                .iter()
                .filter(|e| e["event"] == "agent_finished")
                .map(|e| (key(e), calls_so_far)),
        );
    }
    assert!(done, "the epic finished within 20 runs");
    assert!(
        !finished_before_kill.is_empty(),
        "some runs were killed after a call finished"
    );
    let calls = fake_log::calls(&project);
    for (finished, seen) in &finished_before_kill {
        let again: Vec<&Value> = calls[*seen..]
            .iter()
            .filter(|c| {
                let cycle = c["env"]["BMAD_HOST_CYCLE"]
                    .as_str()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or_default();
                (
                    c["story"].as_str().unwrap_or_default().to_string(),
                    c["role"].as_str().unwrap_or_default().to_string(),
                    cycle,
                ) == *finished
            })
            .collect();
        assert!(
            again.is_empty(),
            "{finished:?} finished before a kill -9 and ran again: {again:?}"
        );
    }
    let status = Run::bmad_host(
        &[
            "status",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    for story in &status.events {
        assert_eq!(story["state"], "done", "{story}");
    }
    assert_eq!(processes_with_env("RESUME_TAG", &tag), Vec::<u32>::new());
}

/// No story file is half-written: each one that exists parses to a status.
fn assert_story_files_whole(project: &Project, round: usize) {
    let status = Run::bmad_host(
        &[
            "status",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(status.code(), 0, "round {round}: {}", status.stderr());
    for story in status.events.iter().filter(|s| s["exists"] == true) {
        assert!(
            story["problem"].is_null() && story["state"].is_string(),
            "round {round}: a story file is not whole: {story}"
        );
    }
}
