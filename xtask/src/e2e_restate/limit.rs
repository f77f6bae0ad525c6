//! Check 2: one worker's Claude account at its usage limit (4 stories).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};

use super::Checks;
use super::harness::*;

/// Stories of the usage-limit check.
pub(super) const LIMIT_STORIES: usize = 4;

/// The second check: worker-b's account hits its usage limit (resetting in 10 minutes) on its
/// first Dev call. Asserts: the run still ends with every story done, well before the reset
/// (the limited story went on on worker-a); worker-b made no call after the limited one, and
/// said it paused; the balancer skipped it (and heard both workers' slots); the limited call
/// was redone (once) and no other call twice; no overlap, nothing left.
pub(super) fn limited_worker(setup: &Setup) -> Result<()> {
    let started = Instant::now();
    let work = setup.work.clone();
    let remote = setup.shared_remote(LIMIT_STORIES)?;
    let (clone_a, clone_b, project) = setup.three_clones(&remote)?;
    let reset = Command::new("date")
        .args(["-u", "-d", "+10 min", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()?;
    let reset = String::from_utf8_lossy(&reset.stdout).trim().to_string();
    let limited = work.join("limited");
    let fake = Fake::new(
        &work,
        "limit",
        &[
            json!({ "role": "dev", "only_env": "E2E_WORKER=worker-b", "once": limited,
                  "do": "usage_limit", "reset": reset }),
        ],
    )?;
    let (log, tag) = (&fake.log, &fake.tag);
    let mut procs = Procs::default();
    let (ingress, admin) = setup.start_server(&mut procs)?;
    let env = |worker: &'static str| {
        let mut env = fake.env();
        env.push(("E2E_WORKER", std::ffi::OsStr::new(worker)));
        env
    };
    setup.start_pair(
        &mut procs,
        [&clone_a, &clone_b],
        [ingress, ingress],
        admin,
        [&env("worker-a"), &env("worker-b")],
    )?;
    let (finished, events) = setup.run_two_jobs(&project, ingress, tag, false)?;
    let journal = run_entries(admin)?;
    procs.stop_all();

    let mut checks = Checks::default();
    checks.exit_code(&finished, 0);
    let run_finished = events.iter().find(|e| e["event"] == "run_finished");
    checks.check(
        run_finished.is_some_and(|f| f["done"] == LIMIT_STORIES),
        format!("run_finished: {run_finished:?}"),
    );
    let calls = read_calls(log)?;
    let on = |call: &Value, worker: &str| {
        call["cwd"]
            .as_str()
            .is_some_and(|cwd| Path::new(cwd).starts_with(work.join(worker)))
    };
    let at = calls.iter().position(|c| c["do"] == "usage_limit");
    checks.check(
        at.is_some_and(|i| on(&calls[i], "worker-b")),
        format!(
            "no usage-limited call on worker-b in the fake's log ({} calls)",
            calls.len()
        ),
    );
    let at = at.unwrap_or(calls.len());
    let limited_story = calls
        .get(at)
        .and_then(|c| c["story"].as_str())
        .unwrap_or("?")
        .to_string();
    let after_on_b: Vec<String> = calls[at.saturating_add(1).min(calls.len())..]
        .iter()
        .filter(|c| on(c, "worker-b"))
        .map(|c| format!("{} {}", c["story"], c["role"]))
        .collect();
    checks.check(
        after_on_b.is_empty(),
        format!("worker-b made calls after its usage limit: {after_on_b:?}"),
    );
    let redone = calls[at.saturating_add(1).min(calls.len())..]
        .iter()
        .any(|c| c["story"] == limited_story && c["role"] == "dev" && on(c, "worker-a"));
    checks.check(
        redone,
        format!("the limited Dev call of {limited_story} was not redone on worker-a"),
    );
    let overlaps = calls.iter().filter(|c| c["overlap"] == true).count();
    checks.check(
        overlaps == 0,
        format!("{overlaps} calls overlapped a copy of themselves"),
    );
    // Each agent-call step of the engine's journal made once, the limited one twice (its entry
    // says it was left, and the redone call's is `<step> again`).
    let steps: std::collections::BTreeSet<&str> = journal
        .iter()
        .map(String::as_str)
        .filter(|n| n.contains(" agent-call #"))
        .map(|n| n.trim_end_matches(" intent").trim_end_matches(" again"))
        .collect();
    let finished_calls = steps.len();
    checks.check(
        calls.len() == finished_calls + 1,
        format!(
            "{} agent calls made for {finished_calls} agent-call steps in the journal (plus the limited one): {steps:?}",
            calls.len()
        ),
    );
    let b_log = fs::read_to_string(work.join("worker-b.err")).unwrap_or_default();
    checks.check(
        b_log.contains("usage limit: this worker takes no story until the reset"),
        "worker-b did not say it paused (see worker-b.err)".into(),
    );
    let balance_log = fs::read_to_string(work.join("balance.err")).unwrap_or_default();
    checks.check(
        balance_log.contains("the worker takes nothing for now: skipped"),
        "the balancer did not skip the paused worker (see balance.err)".into(),
    );
    // Each worker's answers said its slots (one story at once).
    let heard: std::collections::BTreeSet<&str> = balance_log
        .lines()
        .filter(|l| l.contains("the worker's slots") && l.contains("slots=1"))
        .filter_map(|l| l.split("worker=").nth(1)?.split_whitespace().next())
        .collect();
    checks.check(
        heard.len() == 2,
        format!("the balancer heard the slots of {heard:?}, not of both workers"),
    );
    let left = processes_with(&format!("E2E_RESTATE_TAG={tag}"));
    checks.check(left.is_empty(), format!("processes left: {left:?}"));
    checks.report(&work, || {
        format!(
            "usage limit on worker-b (reset {reset}) at its Dev call of {limited_story}: worker-b took no story after it, \
             the balancer skipped it, {limited_story} went on on worker-a; {LIMIT_STORIES} stories done in {:.1}s, not waiting for the reset; \
             {} agent calls for {finished_calls} journaled agent-call steps + the limited one redone; no overlap, nothing left",
            started.elapsed().as_secs_f64(),
            calls.len()
        )
    })
}
