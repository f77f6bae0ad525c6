//! Nothing starts after an unproven end, through the real binary: an agent call or a gate whose
//! output another process holds open stops the run (exit 1, the holder named, `"clean": false`)
//! and a resume checks the holder again first (stops while it lives, goes on once it is gone); a
//! grandchild that drops the call's marker (`env -i setsid`) and is re-parented to the host is
//! killed with its call; a gate is torn down SIGINT first; `--fresh` stops the agent a killed
//! host left running before it starts anything.
//!
//! Every wait is on an event: a line on a pipe, a FIFO opened by the other side, a process's
//! exit.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use bmad_host_tests::fake::unique_tag as unique;
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, read_events_until as read_until, run_command};
use bmad_host_tests::procs::{process_state, processes_with_env};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// `bmad-host run --json` on `project`, every process it starts carrying `ENDS_TAG=tag`, the
/// fake's call log on; `BMAD_HOST_TRUST=1` so that a project file with gates runs as is.
fn spawn_run(project: &Project, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut cmd = run_command(project);
    cmd.arg("--json")
        .args(args)
        .env("ENDS_TAG", tag)
        .env("BMAD_HOST_TRUST", "1")
        .env("FAKE_CLAUDE_LOG", fake_log::path(project))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn bmad-host")
}

/// Reads the rest of the child's events, waits for it, and returns them with its exit code and
/// stderr.
fn finish(mut child: Child) -> (Vec<Value>, Option<i32>, String) {
    let events = read_until(&mut child, |_| false);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    let status = child.wait().expect("wait bmad-host");
    (events, status.code(), stderr)
}

fn named<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == name).collect()
}

/// `Run::project` with the environment of [`spawn_run`].
fn run_to_end(project: &Project, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let log = fake_log::env_value(project);
    let mut all = vec![
        ("ENDS_TAG", tag),
        ("BMAD_HOST_TRUST", "1"),
        ("FAKE_CLAUDE_LOG", log.as_str()),
    ];
    all.extend_from_slice(env);
    Run::project(project, args, &all)
}

/// A FIFO in the project, for a go signal or a pid.
fn fifo(project: &Project, name: &str) -> PathBuf {
    let path = project.path().join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    path
}

/// Whether `pid` is gone (or a zombie: dead, not yet reaped by whoever adopted it).
fn dead(pid: u32) -> bool {
    process_state(pid).is_none_or(|s| matches!(s, 'Z' | 'X' | 'x'))
}

/// SIGKILLs `pid` when dropped, if it still runs `command` (so a failing test leaves nothing
/// behind, and a recycled pid is left alone).
struct KillOnDrop {
    pid: u32,
    command: String,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        let runs = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if runs.trim() == self.command
            && let Ok(pid) = i32::try_from(self.pid)
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A process outside bmad-host's tree that opens `/proc/<pid>/fd/1` (the stdout pipe of the
/// call or gate `pid`) for writing and then runs `sleep 3600`, holding it, after opening `go` (a
/// FIFO, which unblocks whoever waits to open it for reading) if given. Returns once it holds
/// the pipe.
struct Holder {
    child: Child,
    /// The pipe it holds (`pipe:[123]`).
    pipe: String,
}

impl Holder {
    fn start(pid: u32, go: Option<&Path>) -> Holder {
        let signal = match go {
            // Only opened, never written: whoever waits on it opens it and closes it at once, so
            // a write could meet no reader (and SIGPIPE the holder).
            Some(fifo) => format!("exec 4>'{}' && ", fifo.display()),
            None => String::new(),
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec 3>/proc/{pid}/fd/1 && echo holding $(readlink /proc/$$/fd/3) && {signal}exec sleep 3600"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the holder");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("holder stdout"))
            .read_line(&mut line)
            .expect("read the holder");
        assert!(
            line.starts_with("holding pipe:["),
            "the holder could not open the stdout pipe of {pid}: {line:?}"
        );
        Holder {
            child,
            pipe: line["holding ".len()..].trim().to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs and holds its pipe.
    fn holds(&self) -> bool {
        std::fs::read_link(format!("/proc/{}/fd/3", self.pid()))
            .is_ok_and(|target| target.as_os_str() == self.pipe.as_str())
    }

    /// Ends the holder (and with it its hold on the pipe), waiting for its exit.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The survivors listed on an event, as (pid, command, holds_output).
fn survivors(event: &Value) -> Vec<(u64, String, bool)> {
    event["survivors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["pid"].as_u64().unwrap_or_default(),
                        s["command"].as_str().unwrap_or_default().to_string(),
                        s["holds_output"].as_bool().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_agent_whose_output_is_held_open_stops_the_run_until_the_holder_is_gone() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ends-agent-held");
    let go = fifo(&project, ".ends-go");
    // Dev on 1.1 waits for the holder's go, then plays its part and exits: its end is proven
    // only once its stdout reaches EOF, which the holder prevents.
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "play",
                    "wait_for": go.display().to_string() }]
    }));
    let script = script.to_str().expect("utf-8");
    let mut child = spawn_run(&project, &tag, &[], &[("FAKE_CLAUDE_SCRIPT", script)]);
    let started = read_until(&mut child, |e| e["event"] == "agent_started");
    let agent = started.last().expect("agent_started");
    assert_eq!(
        (&agent["role"], &agent["story"]),
        (&json!("dev"), &json!("1.1"))
    );
    let fake = u32::try_from(agent["pid"].as_u64().expect("pid")).expect("pid");
    let holder = Holder::start(fake, Some(&go));
    let (events, code, stderr) = finish(child);

    assert!(
        holder.holds(),
        "the holder {} let go of {} (state {:?})",
        holder.pid(),
        holder.pipe,
        process_state(holder.pid())
    );
    assert_eq!(
        code,
        Some(1),
        "{stderr}\nholder {} on {}\nevents: {events:?}\ncalls: {:?}",
        holder.pid(),
        holder.pipe,
        fake_log::calls(&project)
    );
    let finished = named(&events, "agent_finished");
    assert_eq!(
        finished.len(),
        1,
        "no call after the unproven end: {events:?}"
    );
    assert_eq!(finished[0]["clean"], false, "{}", finished[0]);
    assert_eq!(finished[0]["outcome"], "success", "{}", finished[0]);
    let held = survivors(finished[0]);
    assert!(
        held.iter()
            .any(|(pid, cmd, holds)| *pid == u64::from(holder.pid())
                && cmd == "sleep 3600"
                && *holds),
        "the holder is named on agent_finished: {held:?}"
    );
    assert_eq!(
        named(&events, "agent_started").len(),
        0,
        "nothing started after the unproven end: {events:?}"
    );
    let run_finished = named(&events, "run_finished");
    assert_eq!(run_finished[0]["exit_code"], 1);
    assert!(
        stderr.contains(&format!("pid {}", holder.pid())) && stderr.contains("sleep 3600"),
        "the message names the holder and its command line:\n{stderr}"
    );

    // While the holder lives, a resumed run checks it first and stops again, starting nothing.
    let again = run_to_end(&project, &tag, &[], &[("FAKE_CLAUDE_SCRIPT", script)]);
    assert_eq!(again.code(), 1, "{}", again.stderr());
    assert!(
        again.events_named("agent_started").is_empty(),
        "{:?}",
        again.events
    );
    assert!(
        again.stderr().contains(&format!("pid {}", holder.pid())),
        "{}",
        again.stderr()
    );
    assert_eq!(
        survivors(again.events_named("run_finished")[0])
            .iter()
            .map(|s| s.0)
            .collect::<Vec<_>>(),
        [u64::from(holder.pid())]
    );

    // Once it is gone, the run goes on from the journaled call (Dev is not run again).
    holder.stop();
    let resumed = run_to_end(&project, &tag, &[], &[("FAKE_CLAUDE_SCRIPT", script)]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    assert_eq!(resumed.events_named("run_started")[0]["resumed"], true);
    assert_eq!(resumed.events_named("run_finished")[0]["done"], 3);
    let dev_1_1 = fake_log::calls(&project)
        .iter()
        .filter(|c| c["role"] == "dev" && c["story"] == "1.1")
        .count();
    assert_eq!(dev_1_1, 1, "the journaled dev call did not run again");
    for e in resumed.events_named("agent_finished") {
        assert_eq!(e["clean"], true, "{e}");
    }
    assert_eq!(processes_with_env("ENDS_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn a_gate_whose_output_is_held_open_stops_the_run_and_runs_again_once_it_is_gone() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ends-gate-held");
    let pid_fifo = fifo(&project, ".gate-pid");
    let go = fifo(&project, ".gate-go");
    // The first time, the gate hands its pid over, waits for the go (the holder opening the
    // FIFO), and passes; its stdout is held open by then. The second time it just passes.
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"held\"\ncommand = \"if [ -e .gate-seen ]; then exit 0; fi; touch .gate-seen; echo $$ > .gate-pid; : < .gate-go; echo passed\"\n",
    );
    let child = spawn_run(&project, &tag, &["--story", "1.1"], &[]);
    let mut gate_pid = String::new();
    std::fs::File::open(&pid_fifo)
        .expect("open the pid FIFO")
        .read_to_string(&mut gate_pid)
        .expect("read the gate's pid");
    let gate: u32 = gate_pid.trim().parse().expect("the gate's pid");
    let holder = Holder::start(gate, Some(&go));
    let (events, code, stderr) = finish(child);

    assert!(
        holder.holds(),
        "the holder {} let go of {}",
        holder.pid(),
        holder.pipe
    );
    assert_eq!(code, Some(1), "{stderr}\nevents: {events:?}");
    let gates = named(&events, "gate_finished");
    assert_eq!(gates.len(), 1, "{events:?}");
    assert_eq!(gates[0]["clean"], false, "{}", gates[0]);
    assert!(
        survivors(gates[0])
            .iter()
            .any(|(pid, cmd, holds)| *pid == u64::from(holder.pid())
                && cmd == "sleep 3600"
                && *holds),
        "{}",
        gates[0]
    );
    // QA never started: the run stopped at the gate.
    assert!(
        named(&events, "agent_started")
            .iter()
            .all(|e| e["role"] == "dev"),
        "{events:?}"
    );
    assert!(
        stderr.contains(&format!("pid {}", holder.pid())) && stderr.contains("gate `held`"),
        "{stderr}"
    );

    holder.stop();
    let resumed = run_to_end(&project, &tag, &["--story", "1.1"], &[]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    let again = resumed.events_named("gate_finished");
    assert_eq!(again.len(), 1, "the gates run again: {:?}", resumed.events);
    assert_eq!(again[0]["clean"], true);
    assert_eq!(again[0]["passed"], true);
    assert_eq!(resumed.story_result("1.1")["result"], "done");
    assert_eq!(processes_with_env("ENDS_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn a_grandchild_that_drops_the_marker_and_is_adopted_by_the_host_is_killed_with_its_call() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ends-orphan");
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "do": "play", "orphan": true }]
    }));
    let run = run_to_end(
        &project,
        &tag,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    let calls = fake_log::calls(&project);
    let call = calls
        .iter()
        .find(|c| c["role"] == "dev")
        .expect("the dev call is logged");
    let orphan = &call["orphan"];
    let pid = u32::try_from(orphan["pid"].as_u64().expect("the orphan's pid")).expect("pid");
    let _cleanup = KillOnDrop {
        pid,
        command: "sleep 3600".into(),
    };
    // It really escaped: no marker, and its parent is no longer the agent (it was adopted).
    assert_eq!(orphan["marked"], false, "{orphan}");
    assert_ne!(orphan["ppid"], call["pid"], "{orphan}");

    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        dead(pid),
        "the env -i setsid grandchild {pid} outlived its call (state {:?})",
        process_state(pid)
    );
    for e in run.events_named("agent_finished") {
        assert_eq!(e["clean"], true, "{e}");
    }
    assert_eq!(processes_with_env("ENDS_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn a_gate_that_times_out_gets_sigint_first() {
    let project = Project::fixture("v4-sample");
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"slow\"\ncommand = \"trap 'echo INT >> .gate-signals; exit 3' INT; trap 'echo TERM >> .gate-signals; exit 3' TERM; sleep 3600\"\ntimeout = \"1s\"\n",
    );
    let tag = unique("ends-gate-sigint");
    let run = run_to_end(
        &project,
        &tag,
        &["--story", "1.1", "--max-cycles", "1"],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let gates = run.events_named("gate_finished");
    assert_eq!(gates.len(), 1);
    assert_eq!(gates[0]["timed_out"], true);
    let signals = project.read(".gate-signals");
    assert_eq!(
        signals.lines().next(),
        Some("INT"),
        "the gate's first signal: {signals:?}"
    );
    assert_eq!(gates[0]["clean"], true, "{}", gates[0]);
    assert_eq!(processes_with_env("ENDS_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn fresh_stops_the_agent_a_killed_host_left_running_before_it_starts_anything() {
    let project = Project::fixture("v4-sample");
    let tag = unique("ends-fresh");
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "hang" }]
    }));
    let script = script.to_str().expect("utf-8");
    let mut child = spawn_run(&project, &tag, &[], &[("FAKE_CLAUDE_SCRIPT", script)]);
    let started = read_until(&mut child, |e| e["event"] == "agent_started");
    let pid = u32::try_from(
        started.last().expect("agent_started")["pid"]
            .as_u64()
            .expect("pid"),
    )
    .expect("pid");
    let cmdline = String::from_utf8_lossy(
        &std::fs::read(format!("/proc/{pid}/cmdline")).expect("the agent's command line"),
    )
    .replace('\0', " ");
    let _cleanup = KillOnDrop {
        pid,
        command: cmdline.trim().to_string(),
    };
    let host = i32::try_from(child.id()).expect("pid");
    kill(Pid::from_raw(host), Signal::SIGKILL).expect("kill -9 bmad-host");
    child.wait().expect("wait bmad-host");
    assert!(!dead(pid), "the hanging agent outlives its killed host");

    let mut fresh = spawn_run(
        &project,
        &tag,
        &["--fresh"],
        &[("FAKE_CLAUDE_SCRIPT", script)],
    );
    let first = read_until(&mut fresh, |e| e["event"] == "run_started");
    assert_eq!(first.last().expect("run_started")["resumed"], false);
    assert!(
        dead(pid),
        "the leftover agent {pid} still runs when the fresh run starts (state {:?})",
        process_state(pid)
    );
    let (events, code, stderr) = finish(fresh);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(named(&events, "run_finished")[0]["done"], 3);
    assert_eq!(processes_with_env("ENDS_TAG", &tag), Vec::<u32>::new());
}
