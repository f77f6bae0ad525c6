//! Checks 4 to 8: stories side by side and how they land: a v6 sprint-status merged key by
//! key, a story the lane refuses going back to Dev (a conflict, a gate, markers left), and one
//! worker driving two stories at once.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};

use super::Checks;
use super::harness::*;

/// How the second of two stories side by side does not land at first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotLanded {
    /// Both create `src/same.txt`, each with its own text; the refused one's second Dev call
    /// is killed with its worker, and the other worker's redoes it and resolves the conflict.
    Conflict,
    /// Each adds a file of its own to `feat/`; the project's gate fails with both unless
    /// `feat/fixed.txt` is there, which the refused one's second Dev call adds.
    Gate,
    /// As `Conflict`, but the second Dev call leaves the markers: the story escalates.
    Unresolved,
}

/// The fourth check: the BMAD v6 sample (3 stories, a sprint-status with their keys on
/// neighbouring lines), two jobs side by side. Asserts: every story done and landed, the
/// sprint-status of stories that ran side by side merged key by key (a worker says so), and the
/// shared branch's sprint-status has every story `done`; nothing left.
pub(super) fn v6_side_by_side(root: &Path, setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote_of(&root.join("tests/fixtures/v6-sample"))?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let hold = holds(&work)?;
    let fake = Fake::new(&work, "v6", &held_dev_calls(&hold))?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, _, pids) = setup.start_all(&mut procs, [&clone_a, &clone_b], &env)?;
    let together = side_by_side(hold, log.clone(), pids);
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));

    let mut checks = Checks::default();
    checks.exit_code(&finished, 0);
    checks.done_and_landed(&events, 3);
    if let Err(e) = &together {
        checks.check(
            false,
            format!("1.1's and 1.2's Dev calls side by side: {e:#}"),
        );
    }
    let merged_by_key = ["worker-a", "worker-b"].iter().any(|w| {
        fs::read_to_string(work.join(format!("{w}.err")))
            .is_ok_and(|l| l.contains("merged the sprint-status key by key"))
    });
    checks.check(
        merged_by_key,
        "no worker merged a sprint-status key by key: the stories did not land side by side".into(),
    );
    let sprint = Command::new("git")
        .arg("--git-dir")
        .arg(&remote)
        .args([
            "show",
            "HEAD:_bmad-output/implementation-artifacts/sprint-status.yaml",
        ])
        .output()?;
    let sprint = String::from_utf8_lossy(&sprint.stdout).into_owned();
    let values: Vec<String> = sprint
        .lines()
        .filter(|l| l.trim_start().starts_with("1-"))
        .map(|l| l.trim().to_string())
        .collect();
    checks.check(
        values.len() == 3 && values.iter().all(|v| v.contains(": done")),
        format!("the shared branch's sprint-status stories: {values:?}"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "BMAD v6, 2 jobs: 3 stories done and landed in {:.1}s, the sprint-status of stories run side by side merged key by key; all three done on the shared branch; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}

/// Checks 5, 6 and 7: two stories side by side, the second of which does not
/// land as it is (`how`). Asserts: one `integration_failed` (back to Dev), naming the file or
/// the gate; the refused story's Dev call made again, in cycle 2, with the conflict markers in
/// its file (a conflict); then both stories done and landed, the shared branch holding the
/// resolution (exit 0), or, the markers left, the lane refusing the story again and the story
/// escalated (exit 1); nothing left.
pub(super) fn not_landed(setup: &Setup, how: NotLanded) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let seed = setup.project("seed", 2)?;
    if how == NotLanded::Gate {
        // Passes on each story's own work tree, fails once both have landed without the fix.
        fs::write(
            seed.join("bmad-host.toml"),
            "[[gates]]\nname = \"one-feature\"\ncommand = \"test ! -f feat/a.txt || test ! -f feat/b.txt || test -f feat/fixed.txt\"\n",
        )?;
        commit(&seed, "a gate")?;
    }
    let remote = setup.bare(&seed)?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let hold = holds(&work)?;
    // The refused story's second Dev call waits on it (a conflict), and its worker is killed.
    let go = work.join("go");
    let status = Command::new("mkfifo").arg(&go).status()?;
    ensure!(status.success(), "mkfifo {}", go.display());
    let (one, two, fix) = match how {
        NotLanded::Conflict => (
            ("src/same.txt", "one\n"),
            ("src/same.txt", "two\n"),
            json!({ "src/same.txt": "one and two\n" }),
        ),
        NotLanded::Gate => (
            ("feat/a.txt", "a\n"),
            ("feat/b.txt", "b\n"),
            json!({ "feat/fixed.txt": "fixed\n" }),
        ),
        NotLanded::Unresolved => (
            ("src/same.txt", "one\n"),
            ("src/same.txt", "two\n"),
            json!({ "src/other.txt": "not the conflict\n" }),
        ),
    };
    let mut calls = vec![
        json!({ "role": "dev", "story": "1.1", "occurrence": 1, "held_by": hold[0], "write_files": { one.0: one.1 } }),
        json!({ "role": "dev", "story": "1.2", "occurrence": 1, "held_by": hold[1], "write_files": { two.0: two.1 } }),
    ];
    if how == NotLanded::Conflict {
        calls.push(json!({ "role": "dev", "occurrence": 2, "held_by": go, "write_files": fix }));
    }
    calls.push(json!({ "role": "dev", "write_files": fix }));
    let fake = Fake::new(&work, "landing", &calls)?;
    let (log, tag) = (&fake.log, &fake.tag);
    let mut env = fake.env();
    // The seed's bmad-host.toml (its gate) is the check's own.
    env.push(("BMAD_HOST_TRUST", std::ffi::OsStr::new("1")));
    let mut procs = Procs::default();
    let (ingress, _, pids) = setup.start_all(&mut procs, [&clone_a, &clone_b], &env)?;
    let together = side_by_side(hold, log.clone(), pids);
    let killer = (how == NotLanded::Conflict).then(|| {
        let (go, log) = (go.clone(), log.clone());
        std::thread::spawn(move || kill_second_dev_call(&go, &log, pids))
    });
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, true)?;
    // A second Dev call that never came: the killer's FIFO has a reader now (which does not
    // wait for a writer), and it goes on.
    let _ = fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(&go);
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));
    let killed = killer.map(|k| {
        k.join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")))
    });

    let mut checks = Checks::default();
    if let Some(Err(e)) = &killed {
        checks.check(
            false,
            format!("killing the second Dev call's worker: {e:#}"),
        );
    }
    let escalates = how == NotLanded::Unresolved;
    checks.exit_code(&finished, if escalates { 1 } else { 0 });
    if let Err(e) = &together {
        checks.check(
            false,
            format!("1.1's and 1.2's Dev calls side by side: {e:#}"),
        );
    }
    let named =
        |name: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == name).collect() };
    let failed = named("integration_failed");
    let landed = named("story_landed").len();
    let first = failed.first().copied().cloned().unwrap_or_default();
    let refused = first["story"].as_str().unwrap_or_default().to_string();
    let reason = first["reason"].as_str().unwrap_or_default().to_string();
    let why = match how {
        NotLanded::Conflict | NotLanded::Unresolved => "src/same.txt",
        NotLanded::Gate => "gate `one-feature` failed after integration",
    };
    checks.check(
        first["back_to_dev"] == true && reason.contains("does not land") && reason.contains(why),
        format!("the first integration_failed: {first}"),
    );
    if how == NotLanded::Conflict {
        checks.check(
            first["files"] == json!(["src/same.txt"]),
            format!("the conflict's files: {}", first["files"]),
        );
    }
    // The refused story's Dev call again, in cycle 2, on the merged files (twice when the first
    // copy was killed with its worker).
    let calls = read_calls(log)?;
    let again: Vec<&Value> = calls
        .iter()
        .filter(|c| {
            c["role"] == "dev"
                && c["story"] == refused.as_str()
                && c["occurrence"].as_u64() >= Some(2)
        })
        .collect();
    let copies = if killed.is_some() { 2 } else { 1 };
    // Nothing else made twice: the worker that took the story over replayed the first round,
    // the lane's refusal and the merge.
    let made = |role: &str| {
        calls
            .iter()
            .filter(|c| c["role"] == role && c["story"] == refused.as_str())
            .count()
    };
    checks.check(
        made("sm") == 1 && made("dev") == 1 + copies && made("qa") == 2,
        format!(
            "{refused}'s calls: sm {}, dev {}, qa {} (want 1, {}, 2)",
            made("sm"),
            made("dev"),
            made("qa"),
            1 + copies
        ),
    );
    // Dev is told what the lane found.
    let told = match how {
        NotLanded::Gate => "quality gate `one-feature` failed on the story integrated",
        _ => "integration conflict",
    };
    checks.check(
        again.len() == copies
            && again.iter().all(|c| {
                c["env"]["BMAD_HOST_CYCLE"] == "2"
                    && c["prompt"].as_str().is_some_and(|p| p.contains(told))
            }),
        format!("{refused}'s Dev calls after the refusal (told `{told}`): {again:?}"),
    );
    let last_end = named("story_finished")
        .into_iter()
        .rev()
        .find(|e| e["story"] == refused.as_str())
        .cloned()
        .unwrap_or_default();
    let shared_file = |path: &str| {
        Command::new("git")
            .arg("--git-dir")
            .arg(&remote)
            .args(["show", &format!("HEAD:{path}")])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    let run_finished = named("run_finished")
        .first()
        .copied()
        .cloned()
        .unwrap_or_default();
    if escalates {
        checks.check(
            failed.len() == 2
                && failed[1]["back_to_dev"] == false
                && failed[1]["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("conflict markers left in src/same.txt")),
            format!("the second integration_failed: {:?}", failed.get(1)),
        );
        checks.check(
            landed == 1 && last_end["result"] == "escalated",
            format!("{landed} landed; {refused}'s last end: {last_end}"),
        );
        checks.check(
            run_finished["done"] == 1 && run_finished["escalated"] == 1,
            format!("run_finished: {run_finished}"),
        );
        checks.check(
            !shared_file("src/same.txt").contains("<<<<<<<"),
            "conflict markers landed on the shared branch".into(),
        );
    } else {
        checks.check(
            failed.len() == 1 && landed == 2,
            format!("{landed} landed, integration_failed {failed:?}"),
        );
        checks.check(
            last_end["result"] == "done" && last_end["cycles"] == 2,
            format!("{refused}'s last end: {last_end}"),
        );
        checks.check(
            run_finished["done"] == 2 && run_finished["exit_code"] == 0,
            format!("run_finished: {run_finished}"),
        );
        let on_shared = match how {
            NotLanded::Conflict => shared_file("src/same.txt") == "one and two\n",
            _ => ["feat/a.txt", "feat/b.txt", "feat/fixed.txt"]
                .iter()
                .all(|f| !shared_file(f).is_empty()),
        };
        checks.check(on_shared, "the shared branch lacks the resolution".into());
    }
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        let end = match (escalates, &killed) {
            (true, _) => "refused again with the markers left: escalated, exit 1".to_string(),
            (false, Some(Ok(victim))) => format!(
                "{victim} killed during that Dev call; the other worker replayed the first round, the refusal and the merge, and its Dev call fixed it; both landed, exit 0"
            ),
            _ => "Dev's second call fixed it; both landed, exit 0".to_string(),
        };
        format!(
            "two stories side by side ({how:?}): {refused} refused by the lane (`{reason}`), back to Dev in cycle 2; {end}; {:.1}s; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}

/// Holds the FIFO `go` open for writing until a second Dev call opens it, then kills (SIGKILL)
/// the worker of `workers` it runs under, and waits for the call's tree to go; the victim's
/// name.
pub(super) fn kill_second_dev_call(go: &Path, log: &Path, workers: [u32; 2]) -> Result<String> {
    let writer = fs::OpenOptions::new().write(true).open(go)?;
    let calls = read_calls(log)?;
    let call = calls
        .iter()
        .rev()
        .find(|c| c["role"] == "dev" && c["occurrence"] == 2)
        .context("no second Dev call in the fake's log")?;
    let keeper = u32::try_from(call["ppid"].as_u64().unwrap_or(0))?;
    let host = parent_of(keeper).context("the second Dev call's keeper has no parent")?;
    let victim = match workers.iter().position(|&w| w == host) {
        Some(0) => "worker-a",
        Some(_) => "worker-b",
        None => bail!("the second Dev call's keeper {keeper} runs under {host}, not a worker"),
    };
    eprintln!("e2e-restate: the second Dev call runs on {victim} (pid {host}): SIGKILL");
    let pid = i32::try_from(host)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .context("the worker's pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    let call_pid = u32::try_from(call["pid"].as_u64().unwrap_or(0))?;
    let left = wait_gone(&[keeper, call_pid], Duration::from_secs(30));
    drop(writer);
    ensure!(
        left.is_empty(),
        "the killed call's tree is still alive: {left:?}"
    );
    Ok(victim.to_string())
}

/// Check 8: one worker with `--jobs 2`, registered with the server by itself, and
/// two stories. Their Dev calls are held until both are alive: both under that worker, each in
/// a worktree of its own. Asserts: both stories done and landed; the worktrees gone at the end
/// and the worker's own checkout as it was; no overlap, nothing left.
pub(super) fn one_worker_two_stories(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(2)?;
    let worker = setup.clone_of(&remote, "worker")?;
    let project = setup.clone_of(&remote, "client")?;
    let head_before = git_out(&worker, &["rev-parse", "HEAD"])?;
    let hold = holds(&work)?;
    let fake = Fake::new(&work, "jobs", &held_dev_calls(&hold))?;
    let (log, tag, env) = (&fake.log, &fake.tag, fake.env());
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    // A story worktree a stopped worker left behind.
    let stale = worker.join(".bmad-host").join("workflows").join("stale");
    fs::create_dir_all(stale.parent().context("a parent")?)?;
    git_out(
        &worker,
        &[
            "worktree",
            "add",
            "--quiet",
            "--detach",
            &stale.to_string_lossy(),
        ],
    )?;
    let port = free_port()?;
    let pid = setup.start_worker(
        &mut procs,
        "worker",
        port,
        ingress,
        &worker,
        &env,
        &["--jobs", "2"],
    )?;
    register(admin, &format!("http://127.0.0.1:{port}"))?;
    let mut checks = Checks::default();
    checks.check(
        !stale.exists(),
        format!("the stale worktree {} is still there", stale.display()),
    );
    // A second worker in the same clone is refused.
    let mut second = setup
        .bmad_host(&worker, &["worker", "--engine", "restate"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()?))
        .arg("--restate")
        .arg(format!("http://127.0.0.1:{ingress}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let alive = wait_gone(&[second.id()], Duration::from_secs(60));
    if !alive.is_empty() {
        let _ = second.kill();
    }
    let refused = second.wait_with_output()?;
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    checks.check(
        alive.is_empty()
            && refused.status.code() != Some(0)
            && said.contains("another bmad-host run is in progress"),
        format!(
            "a second worker in the clone: {:?}, {said}",
            refused.status.code()
        ),
    );
    let held_log = log.clone();
    let together =
        std::thread::spawn(move || both_held(&hold, &held_log, Hosts::Together(pid), || Ok(())));
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    procs.stop_all();
    let together = together
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("panicked")));

    checks.exit_code(&finished, 0);
    if let Err(e) = &together {
        checks.check(false, format!("1.1's and 1.2's Dev calls at once: {e:#}"));
    }
    checks.done_and_landed(&events, 2);
    let calls = read_calls(log)?;
    let dirs: std::collections::BTreeSet<String> = calls
        .iter()
        .filter(|c| c["role"] == "dev")
        .filter_map(|c| c["cwd"].as_str().map(str::to_string))
        .collect();
    let worktrees = worker.join(".bmad-host").join("workflows");
    checks.check(
        dirs.len() == 2 && dirs.iter().all(|d| Path::new(d).starts_with(&worktrees)),
        format!(
            "the Dev calls' folders {dirs:?}: not two worktrees in {}",
            worktrees.display()
        ),
    );
    let overlaps = calls.iter().filter(|c| c["overlap"] == true).count();
    checks.check(overlaps == 0, format!("{overlaps} calls overlapped"));
    let listed = git_out(&worker, &["worktree", "list", "--porcelain"])?;
    let left_trees: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .filter(|t| t.contains("/.bmad-host/workflows/"))
        .collect();
    checks.check(
        left_trees.is_empty(),
        format!("worktrees left: {left_trees:?}"),
    );
    let status = git_out(&worker, &["status", "--porcelain"])?;
    let head_after = git_out(&worker, &["rev-parse", "HEAD"])?;
    checks.check(
        status.is_empty() && head_after == head_before,
        format!(
            "the worker's checkout changed: HEAD {head_before} -> {head_after}, status {status:?}"
        ),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "one worker, --jobs 2: a stale worktree removed at its start, a second worker in its clone refused; both Dev calls alive at once under it, each in its own worktree; 2 stories done and landed in {:.1}s; worktrees removed, its checkout untouched; nothing left",
            started.elapsed().as_secs_f64()
        )
    })
}
