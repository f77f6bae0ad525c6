//! Check 1: a worker killed with SIGKILL in the middle of an agent call (8 stories).

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use serde_json::Value;

use super::Checks;
use super::harness::*;

/// Stories in the epic.
pub(super) const STORIES: usize = 8;

/// The story whose Dev call is killed with its worker.
pub(super) const KILLED: &str = "1.4";

/// The main check: 8 stories, two jobs, a worker killed in the middle of a call.
pub(super) fn killed_worker(root: &Path, setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(STORIES)?;
    let clone = |name: &str| setup.clone_of(&remote, name);
    let (clone_a, clone_b, project) = (clone("worker-a")?, clone("worker-b")?, clone("client")?);
    let go = work.join("go");
    let status = Command::new("mkfifo").arg(&go).status()?;
    ensure!(status.success(), "mkfifo {}", go.display());
    // The Dev calls of 1.1 and 1.2 (admitted together: two jobs) each wait on a FIFO of its own
    // and run as long as the check holds it open.
    let hold = holds(&work)?;
    let fake = Fake::new(
        &work,
        "run",
        &[
            vec![held_dev_call(KILLED, &go)],
            held_dev_calls(&hold).to_vec(),
        ]
        .concat(),
    )?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin, [pid_a, pid_b]) =
        setup.start_all(&mut procs, [&clone_a, &clone_b], &env)?;

    let client = setup
        .bmad_host(
            &project,
            &["run", "--engine", "restate", "--json", "--jobs", "2"],
        )
        .arg("--restate")
        .arg(format!("http://127.0.0.1:{ingress}"))
        .env("BMAD_HOST_WORKFLOW_SAME_EPIC", "parallel")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start bmad-host run --engine restate")?;

    // Both held calls alive at once, each on a worker of its own: the balancer spread them.
    // The client's lines, as it prints them.
    let mut client = client;
    let (printed, lines) = std::sync::mpsc::channel::<String>();
    let stdout = client.stdout.take().context("client stdout")?;
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = printed.send(line);
        }
        all
    });
    // Events arrive while their story runs: the held calls' `agent_started` are printed while
    // the calls cannot end.
    let live = || -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut started = std::collections::BTreeSet::new();
        while started.len() < 2 {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).context(
                "the held Dev calls' agent_started lines were not printed while they ran",
            )?;
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            if event["event"] == "agent_started" && event["role"] == "dev" {
                started.insert(event["story"].as_str().unwrap_or_default().to_string());
            }
        }
        Ok(())
    };
    let spread = both_held(&hold, log, Hosts::Apart(&[pid_a, pid_b]), live);
    // The Dev call of KILLED runs once its fake opens the FIFO (it has logged itself before),
    // and stays alive while the FIFO is held open: until its worker is killed.
    let go_writer = fs::OpenOptions::new().write(true).open(&go)?;
    // The client shows the call's start while it runs, before its worker is killed.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .context("the client did not print the Dev call of the story to kill while it ran")?;
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        if event["event"] == "agent_started" && event["role"] == "dev" && event["story"] == KILLED {
            break;
        }
    }
    let calls = read_calls(log)?;
    let killed_call = calls
        .iter()
        .rev()
        .find(|c| c["role"] == "dev" && c["story"] == KILLED)
        .context("the Dev call of the story to kill is not in the fake's log")?
        .clone();
    let keeper = u32::try_from(killed_call["ppid"].as_u64().unwrap_or(0))?;
    let host = parent_of(keeper).context("the killed call's keeper has no parent")?;
    ensure!(
        host == pid_a || host == pid_b,
        "the call's keeper {keeper} runs under {host}, not a worker ({pid_a}, {pid_b})"
    );
    let victim = if host == pid_a {
        "worker-a"
    } else {
        "worker-b"
    };
    eprintln!("e2e-restate: story {KILLED}'s Dev call runs on {victim} (pid {host}): SIGKILL");
    let killed_at = Instant::now();
    procs.kill(victim);
    let call_pid = u32::try_from(killed_call["pid"].as_u64().unwrap_or(0))?;
    let gone = wait_gone(&[keeper, call_pid], Duration::from_secs(30));
    let teardown = killed_at.elapsed();
    drop(go_writer);

    let finished = client.wait_with_output()?;
    let (out, err) = (
        reader.join().unwrap_or_default(),
        String::from_utf8_lossy(&finished.stderr).into_owned(),
    );
    let code = finished.status.code();
    fs::write(work.join("client.ndjson"), &out)?;
    let events: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    // `status` and `log` read the engine's state of the run.
    let admin_url = format!("http://127.0.0.1:{admin}");
    let inspect = |command: &str| -> Result<Vec<Value>> {
        let out = Command::new(setup.bin.join("bmad-host"))
            .args([
                command,
                "--json",
                "--restate-admin",
                &admin_url,
                "--project",
            ])
            .arg(&project)
            .output()?;
        ensure!(
            out.status.success(),
            "bmad-host {command} --restate-admin: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    };
    let engine_status = inspect("status")?;
    let engine_log = inspect("log")?;
    let journal = run_entries(admin)?;
    procs.stop_all();

    let mut checks = Checks::default();
    checks.check(code == Some(0), format!("run exit code {code:?}: {err}"));
    if let Err(e) = &spread {
        checks.check(
            false,
            format!("stories 1.1 and 1.2 side by side, their events live: {e:#}"),
        );
    }
    let finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        finished.is_some_and(|f| f["done"] == STORIES && f["engine"] == "restate"),
        format!("run_finished: {finished:?}"),
    );
    checks.check(
        gone.is_empty(),
        format!("the killed worker's call outlived it: {gone:?}"),
    );
    let calls = read_calls(log)?;
    let overlaps: Vec<&Value> = calls.iter().filter(|c| c["overlap"] == true).collect();
    checks.check(
        overlaps.is_empty(),
        format!("two copies of one story's call alive at once: {overlaps:?}"),
    );
    // Each finished agent-call step is one journal entry (its name without ` intent`).
    let mut finished_steps: BTreeMap<String, usize> = BTreeMap::new();
    for name in &journal {
        if name.contains(" agent-call #") && !name.ends_with(" intent") {
            let story = name.split(' ').next().unwrap_or_default().to_string();
            let role = name.split(' ').nth(2).unwrap_or_default().to_string();
            *finished_steps.entry(format!("{story} {role}")).or_default() += 1;
        }
    }
    let mut made: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        let key = format!(
            "{} {}",
            call["story"].as_str().unwrap_or_default(),
            call["role"].as_str().unwrap_or_default()
        );
        *made.entry(key).or_default() += 1;
    }
    let mut expected = finished_steps.clone();
    *expected.entry(format!("{KILLED} dev")).or_default() += 1;
    checks.check(
        made == expected,
        format!(
            "agent calls made {made:?}, but the journal's finished calls plus the killed one are {expected:?}"
        ),
    );
    // Each story's start and end shown once, the taken-over one's too (its survivor's replayed
    // events are not shown again).
    for name in ["story_started", "story_finished"] {
        let mut per_story: BTreeMap<String, usize> = BTreeMap::new();
        for e in events.iter().filter(|e| e["event"] == name) {
            *per_story
                .entry(e["story"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
        checks.check(
            per_story.len() == STORIES && per_story.values().all(|&n| n == 1),
            format!("{name} lines per story: {per_story:?}"),
        );
    }
    // Every story landed on the shared branch exactly once, done.
    let landed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "story_landed")
        .collect();
    checks.check(
        landed.len() == STORIES,
        format!("{} story_landed events, not {STORIES}", landed.len()),
    );
    let log = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args(["log", "--format=%B", "HEAD"])
        .output()?;
    let mut trailers: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&log.stdout).lines() {
        if let Some(key) = line.strip_prefix("Bmad-Story: ") {
            *trailers.entry(key.to_string()).or_default() += 1;
        }
    }
    checks.check(
        trailers.len() == STORIES && trailers.values().all(|&n| n == 1),
        format!("the shared branch's story commits: {trailers:?}"),
    );
    let check_clone = clone("check")?;
    let status = Command::new(setup.bin.join("bmad-host"))
        .args(["status", "--json", "--project"])
        .arg(&check_clone)
        .arg("--plugins")
        .arg(root.join("plugins"))
        .env("BMAD_HOST_CACHE_DIR", &setup.cache)
        .output()?;
    let states: Vec<String> = String::from_utf8_lossy(&status.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|s| s["state"].as_str().unwrap_or("?").to_string())
        .collect();
    checks.check(
        states.len() == STORIES && states.iter().all(|s| s == "done"),
        format!("the stories on the shared branch: {states:?}"),
    );
    checks.check(
        engine_status.len() == STORIES && engine_status.iter().all(|s| s["status"] == "completed"),
        format!("status --restate-admin: {engine_status:?}"),
    );
    let killed_step = format!("{KILLED} c1 dev agent-call #0");
    let logged = engine_log
        .iter()
        .filter(|e| e["step"] == killed_step.as_str())
        .count();
    let stories_logged: std::collections::BTreeSet<&str> = engine_log
        .iter()
        .filter_map(|e| e["story"].as_str())
        .collect();
    checks.check(
        logged == 1 && stories_logged.len() == STORIES,
        format!("log --restate-admin: `{killed_step}` {logged} times, stories {stories_logged:?}"),
    );
    // The survivor took the story over only once the dead worker's lease had expired.
    let survivor = if victim == "worker-a" {
        "worker-b"
    } else {
        "worker-a"
    };
    let survivor_log = fs::read_to_string(work.join(format!("{survivor}.err"))).unwrap_or_default();
    checks.check(
        survivor_log.contains("the story's lease is held: waiting for it to expire"),
        format!("{survivor} did not wait for the dead worker's lease (see {survivor}.err)"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    // The server (npm's wrapper and the server it started) is gone too, once killed.
    let server = processes_with(&format!("E2E_RESTATE_SERVER={}", work.display()));
    let server_left = wait_gone(&server, Duration::from_secs(10));
    checks.check(
        server_left.is_empty(),
        format!("the Restate server outlived the check: {server_left:?}"),
    );

    let total_calls = calls.len();
    let steps: usize = finished_steps.values().sum();
    checks.report(&work, || {
        format!(
            "{STORIES} stories done through 2 workers; {victim} killed during {KILLED}'s Dev call, its tree gone {} ms after; \
             {total_calls} agent calls for {steps} journaled finished calls + 1 killed; the survivor waited for the lease ({LEASE_TTL}); each story landed once on the shared branch, done; status and log read the engine; no overlap, nothing left; {:.1}s (killed at {:.1}s)",
            teardown.as_millis(),
            started.elapsed().as_secs_f64(),
            killed_at.duration_since(started).as_secs_f64()
        )
    })
}
