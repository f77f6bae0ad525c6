//! `cargo xtask e2e-restate --bench`: the engine's cost against the SQLite journal, written
//! into BENCHMARKS.md.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::Value;

use super::harness::*;

/// Where the `--bench` section of BENCHMARKS.md starts (`cargo xtask bench` keeps it).
pub const BENCH_MARKER: &str = "<!-- written by cargo xtask e2e-restate --bench -->";

/// Now, UTC, to the minute, from `date` (xtask has no time crate).
pub(super) fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// This machine's CPU and cores, from `/proc/cpuinfo`.
pub(super) fn machine() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim())
        })
        .unwrap_or("an unknown CPU")
        .to_string();
    let cores = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cores} cores")
}

/// Stories in the benchmark's epic.
pub(super) const BENCH_STORIES: usize = 20;

/// `--bench`: the same generated epic driven by a local run (the SQLite journal) and by one
/// worker through the Restate server; wall time per story, and the engine's cost per journaled
/// step (the difference over the local run's steps).
pub(super) fn bench(root: &Path) -> Result<()> {
    let setup = Setup::new(root, "bench")?;
    let local = setup.project("local", BENCH_STORIES)?;
    // The components compiled before anything is timed.
    let warm = setup.bmad_host(&local, &["run", "--dry-run"]).output()?;
    ensure!(warm.status.success(), "bmad-host run --dry-run failed");
    let timed = |cmd: &mut Command| -> Result<(Duration, Vec<Value>)> {
        let t = Instant::now();
        let out = cmd.output()?;
        let took = t.elapsed();
        ensure!(
            out.status.success(),
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr)
        );
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok((took, events))
    };
    let (local_time, local_events) = timed(&mut setup.bmad_host(&local, &["run", "--json"]))?;
    let log = Command::new(setup.bin.join("bmad-host"))
        .args(["log", "--json", "--project"])
        .arg(&local)
        .output()?;
    let steps = String::from_utf8_lossy(&log.stdout).lines().count();

    let remote = setup.project("restate", BENCH_STORIES)?;
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let port = free_port()?;
    setup.start_worker(&mut procs, "worker", port, ingress, &remote, &[], &[])?;
    register(admin, &format!("http://127.0.0.1:{port}"))?;
    let url = format!("http://127.0.0.1:{ingress}");
    let (restate_time, restate_events) = timed(&mut setup.bmad_host(
        &remote,
        &["run", "--engine", "restate", "--json", "--restate", &url],
    ))?;
    let lines: Vec<String> = restate_events.iter().map(Value::to_string).collect();
    fs::write(setup.work.join("restate.ndjson"), lines.join("\n"))?;
    let entries = run_entries(admin)?.len();
    procs.stop_all();

    let done = |events: &[Value]| {
        events
            .iter()
            .find(|e| e["event"] == "run_finished")
            .and_then(|e| e["done"].as_u64())
            .unwrap_or(0)
    };
    let calls = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "agent_started")
            .count()
    };
    ensure!(
        done(&local_events) == BENCH_STORIES as u64
            && done(&restate_events) == BENCH_STORIES as u64,
        "not every story was done"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let per_story = |d: Duration| ms(d) / BENCH_STORIES as f64;
    let extra = ms(restate_time) - ms(local_time);
    // What the worker's git work costs here: a clean check (one per decision) and a commit of a
    // changed file (as `Git::commit_all` makes it: add, diff, the merge and identity checks,
    // commit, rev-parse), each the mean of 20 in the Restate run's project.
    let git = |args: &[&str]| Command::new("git").current_dir(&remote).args(args).output();
    let t = Instant::now();
    for _ in 0..20 {
        git(&["status", "--porcelain", "--untracked-files=all"])?;
    }
    let status_ms = ms(t.elapsed()) / 20.0;
    let t = Instant::now();
    for i in 0..20 {
        fs::write(remote.join("bench-git.txt"), format!("{i}\n"))?;
        git(&["add", "--all"])?;
        git(&["diff", "--cached", "--quiet"])?;
        git(&["rev-parse", "--verify", "--quiet", "MERGE_HEAD"])?;
        git(&["config", "--get", "user.email"])?;
        git(&[
            "-c",
            "user.name=b",
            "-c",
            "user.email=b@localhost",
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "bench",
        ])?;
        git(&["rev-parse", "HEAD"])?;
    }
    let commit_ms = ms(t.elapsed()) / 20.0;
    let commits = String::from_utf8_lossy(
        &git(&["rev-list", "--count", "--grep=^bmad-host: ", "HEAD"])?.stdout,
    )
    .trim()
    .parse::<f64>()
    .unwrap_or(0.0);
    let commit = String::from_utf8_lossy(
        &Command::new("git")
            .current_dir(root)
            .args(["rev-parse", "--short", "HEAD"])
            .output()?
            .stdout,
    )
    .trim()
    .to_string();
    let section = format!(
        "{BENCH_MARKER}\n## Durable engine: Restate\n\n\
         Written by `cargo xtask e2e-restate --bench` on {} at commit {commit}, on {} (debug \
         build, the fake Claude, the server {SERVER_VERSION} and one worker on loopback; not \
         necessarily the machine of the sections above); `cargo xtask bench` keeps this section \
         as it is. \
         The same generated {BENCH_STORIES}-story v4 epic is driven once by a local run (the SQLite \
         journal) and once through the server (see README, \"Beyond one machine\").\n\n\
         | | SQLite journal (local run) | Restate (one worker) |\n\
         | --- | --- | --- |\n\
         | wall time | {:.0} ms | {:.0} ms |\n\
         | per story | {:.1} ms | {:.1} ms |\n\
         | agent calls | {} | {} |\n\
         | journaled | {steps} steps | {entries} `ctx.run` entries |\n\
         | engine's cost per journaled step | | {:.1} ms |\n\
         | engine's cost per story | | {:.1} ms |\n\n\
         Where the engine's time goes, measured in the same run: the worker commits the work tree \
         after each step that changed it ({commits:.0} commits, {:.1} ms each here: seven git \
         processes), checks it after each other step ({:.1} ms per `git status`), and journals \
         two entries per step (intent, result) and one per decision, each a round trip to the \
         server; each story is also one submission, one attach, the worker resolving the \
         project and loading the plugins again, and its events sent to the server in batches \
         (one per 250 ms of the story at most, each an invocation of the server) that the \
         client reads every 0.5 s. The git work is about {:.0} ms per story of the {:.0} (an \
         estimate from the two figures above); this check does not separate the rest (the \
         server's round trips, the events and the per-story setup). Against an agent call of \
         minutes this is noise; against the fake's 15 ms calls it is most of the time.\n",
        utc_now(),
        machine(),
        ms(local_time),
        ms(restate_time),
        per_story(local_time),
        per_story(restate_time),
        calls(&local_events),
        calls(&restate_events),
        extra / steps.max(1) as f64,
        extra / BENCH_STORIES as f64,
        commit_ms,
        status_ms,
        (commits * commit_ms + (entries as f64 / 2.0) * status_ms) / BENCH_STORIES as f64,
        extra / BENCH_STORIES as f64,
    );
    println!("{section}");
    let path = root.join("BENCHMARKS.md");
    let old = fs::read_to_string(&path).unwrap_or_default();
    let kept = old.find(BENCH_MARKER).map_or(old.as_str(), |at| &old[..at]);
    fs::write(&path, format!("{}\n{section}", kept.trim_end()))?;
    eprintln!("wrote the Restate section of {}", path.display());
    Ok(())
}
