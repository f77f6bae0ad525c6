//! The keeper (`claude.keeper`, `bmad-host __keep`), through the real binary: `kill -9` of the
//! host in the middle of an agent call takes the call's whole tree down at once (the agent, a
//! `setsid` grandchild in its own session, an `env -i setsid` orphan without the call's marker),
//! before any other run starts, and the next run redoes the call; the keeper exits as its
//! program did.
//!
//! Every wait is on an event: a FIFO opened by the other side, a pidfd becoming readable when
//! its process ends (bounded by a deadline that fails the test, not a sleep).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bmad_host_tests::fake::unique_tag as unique;
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{
    Project, Run, bmad_host, read_events_until as read_until, run_command,
};
use bmad_host_tests::procs::processes_with_env;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// `bmad-host run --json` on `project` with every call under a keeper, every process it starts
/// carrying `KEEPER_TAG=tag`, the fake's call log on.
fn spawn_run(project: &Project, tag: &str, script: &str) -> Child {
    run_command(project)
        .arg("--json")
        .env("BMAD_HOST_CLAUDE_KEEPER", "true")
        .env("KEEPER_TAG", tag)
        .env("FAKE_CLAUDE_LOG", fake_log::path(project))
        .env("FAKE_CLAUDE_SCRIPT", script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bmad-host")
}

fn pid_of(value: &Value) -> u32 {
    u32::try_from(value.as_u64().unwrap_or_else(|| panic!("a pid: {value}"))).expect("pid")
}

/// A pidfd of `pid` (which must still run).
fn pidfd(pid: u32) -> OwnedFd {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid > 0");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .unwrap_or_else(|e| panic!("pidfd_open({pid:?}): {e}"))
}

/// Waits until every process of `fds` has ended (its pidfd is readable), or fails at `deadline`.
fn wait_all_gone(fds: &[(&str, OwnedFd)], deadline: Instant) {
    for (name, fd) in fds {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = rustix::time::Timespec::try_from(left).expect("timespec");
            let mut poll = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            match rustix::event::poll(&mut poll, Some(&timeout)) {
                Ok(1) => break,
                Ok(_) => panic!("{name} still runs after its host was killed"),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => panic!("poll: {e}"),
            }
        }
    }
}

#[test]
fn kill_9_of_the_host_takes_the_calls_whole_tree_down_at_once_and_the_next_run_redoes_it() {
    let project = Project::fixture("v4-sample");
    let tag = unique("keeper-kill-9");
    let go = project.path().join("go");
    nix::unistd::mkfifo(&go, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let script = project.script(&json!({
        "calls": [{
            "role": "dev", "story": "1.1", "occurrence": 1, "do": "hang",
            "grandchild": true, "orphan": true, "wait_for": go,
        }]
    }));
    let script = script.to_str().expect("utf-8");
    let mut host = spawn_run(&project, &tag, script);
    let started = read_until(&mut host, |e| {
        e["event"] == "agent_started" && e["role"] == "dev"
    });
    let keeper = pid_of(&started.last().expect("agent_started")["pid"]);
    // The fake has logged its leftovers once it opens the FIFO.
    drop(
        File::options()
            .write(true)
            .open(&go)
            .expect("open the go FIFO"),
    );
    let calls = fake_log::calls(&project);
    let call = calls
        .iter()
        .find(|c| c["role"] == "dev")
        .expect("the dev call is logged");
    assert_eq!(
        call["ppid"], keeper,
        "the agent runs under its keeper: {call}"
    );
    assert_eq!(call["orphan"]["marked"], false, "{call}");
    let tree = [
        ("the keeper", pidfd(keeper)),
        ("the agent", pidfd(pid_of(&call["pid"]))),
        ("its setsid grandchild", pidfd(pid_of(&call["grandchild"]))),
        (
            "its env -i setsid orphan",
            pidfd(pid_of(&call["orphan"]["pid"])),
        ),
    ];

    kill(
        Pid::from_raw(i32::try_from(host.id()).expect("pid")),
        Signal::SIGKILL,
    )
    .expect("kill -9 bmad-host");
    host.wait().expect("wait bmad-host");
    // Nothing else runs: only the keeper can end them.
    wait_all_gone(&tree, Instant::now() + Duration::from_secs(60));
    assert_eq!(processes_with_env("KEEPER_TAG", &tag), Vec::<u32>::new());

    // The next run finds nothing left and redoes the call.
    let run = Run::project(
        &project,
        &[],
        &[
            ("BMAD_HOST_CLAUDE_KEEPER", "true"),
            ("KEEPER_TAG", &tag),
            ("FAKE_CLAUDE_LOG", &fake_log::env_value(&project)),
            ("FAKE_CLAUDE_SCRIPT", script),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("run_started")[0]["resumed"], true);
    assert_eq!(run.events_named("run_finished")[0]["done"], 3);
    let dev_1_1 = fake_log::calls(&project)
        .into_iter()
        .filter(|c| c["role"] == "dev" && c["story"] == "1.1")
        .count();
    assert_eq!(dev_1_1, 2, "the killed call, then its redo");
    for e in run.events_named("agent_finished") {
        assert_eq!(e["clean"], true, "{e}");
    }
    assert_eq!(processes_with_env("KEEPER_TAG", &tag), Vec::<u32>::new());
}

/// `bmad-host __keep GRACE_MS PROGRAM ARGS…` with a lifeline held by the test.
fn keep(args: &[&str]) -> std::process::ExitStatus {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    let mut child = Command::new(bmad_host())
        .arg("__keep")
        .arg("5000")
        .args(args)
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the keeper");
    let status = child.wait().expect("wait the keeper");
    drop(write);
    status
}

#[test]
fn the_keeper_exits_as_its_program_did() {
    assert_eq!(keep(&["sh", "-c", "exit 7"]).code(), Some(7));
    assert_eq!(keep(&["sh", "-c", "kill -TERM $$"]).signal(), Some(15));
    assert_eq!(keep(&["/nonexistent/claude"]).code(), Some(127));
    let usage = Command::new(bmad_host())
        .arg("__keep")
        .output()
        .expect("run the keeper");
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn under_a_keeper_a_missing_cli_fails_to_start_as_without_one() {
    let project = Project::fixture("v4-sample");
    let plugins = bmad_host_tests::harness::plugins();
    let run = Run::bmad_host(
        &[
            "run",
            "--json",
            "--plugins",
            plugins.to_str().expect("utf-8"),
            "--project",
            project.path().to_str().expect("utf-8"),
            "--claude-bin",
            "/nonexistent/claude",
            "--story",
            "1.1",
        ],
        &[("BMAD_HOST_CLAUDE_KEEPER", "true")],
    );
    assert_ne!(run.code(), 0);
    let finished = run.events_named("agent_finished");
    assert_eq!(finished.len(), 1, "{}", run.stderr());
    let message = finished[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("/nonexistent/claude: no such executable"),
        "{message}"
    );
    assert_eq!(finished[0]["outcome"], "spawn_failed", "{}", finished[0]);
}
