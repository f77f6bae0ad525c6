//! The journal through the real binary: a second `run` refused while the run lock is held (naming
//! the holder's pid) while `status` and `log` still read; a corrupt journal refused by `run`,
//! `status` and `log` with its bytes unchanged; a plain `run` resuming the latest unfinished run
//! and `--fresh` starting a new one while keeping the old runs and their steps.

use std::path::Path;

use bmad_host::journal::{
    Journal, RunFingerprint, RunStatus, StepKey, StepKind, journal_path, state_dir,
};
use bmad_host_tests::harness::{Project, Run};
use serde_json::json;

/// `bmad-host <command> --project P` with no `BMAD_HOST_*` variables.
fn command(project: &Project, command: &str) -> Run {
    let path = project.path().to_str().expect("utf-8 path");
    Run::bmad_host(&[command, "--project", path], &[])
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n != "run.lock")
        .collect();
    names.sort();
    names
}

/// What a host killed in the middle of a run leaves: an unfinished run with a finished step and
/// an interrupted one. Returns the run's id.
fn crashed_run(project: &Project, fresh: bool) -> String {
    let mut journal = Journal::open(project.path()).expect("open the journal");
    let run = journal
        .start_run(fresh, &RunFingerprint::default())
        .expect("start a run")
        .id;
    let key = |seq| StepKey {
        run: run.clone(),
        story: "0.0".into(),
        cycle: 1,
        role: "host".into(),
        kind: StepKind::Decision,
        seq,
    };
    let done = journal
        .begin_step(&key(0), &json!("earlier work"))
        .expect("begin");
    journal
        .finish_step(done.id().expect("fresh"), &json!("its result"))
        .expect("finish");
    journal
        .begin_step(&key(1), &json!("interrupted work"))
        .expect("begin");
    run.to_string()
}

#[test]
fn a_second_run_is_refused_naming_the_holder_while_status_and_log_still_read() {
    let project = Project::fixture("v4-sample");
    let holder = Journal::open(project.path()).expect("take the run lock");

    let refused = Run::project(&project, &[], &[]);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    let message = refused.stderr();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "names the holder: {message}"
    );
    assert!(message.contains("run.lock"), "{message}");
    assert!(refused.events_named("agent_started").is_empty());

    for cmd in ["status", "log"] {
        let read = command(&project, cmd);
        assert_eq!(
            read.code(),
            0,
            "{cmd} while a run holds the lock: {}",
            read.stderr()
        );
    }

    drop(holder);
    let run = Run::project(&project, &[], &[]);
    assert_eq!(run.code(), 0, "the lock is free again: {}", run.stderr());
}

#[test]
fn a_corrupt_journal_is_refused_by_run_status_and_log_and_left_untouched() {
    let project = Project::fixture("v4-sample");
    std::fs::create_dir_all(state_dir(project.path())).expect("create .bmad-host");
    let path = journal_path(project.path());
    let garbage: Vec<u8> = (0..20_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let before = listing(&state_dir(project.path()));

    for cmd in ["run", "status", "log"] {
        let out = if cmd == "run" {
            Run::project(&project, &[], &[])
        } else {
            command(&project, cmd)
        };
        assert_eq!(out.code(), 2, "{cmd}: {}", out.stderr());
        let message = out.stderr();
        assert!(
            message.contains(&path.display().to_string()),
            "{cmd} names the file: {message}"
        );
        assert!(
            message.contains("move it aside"),
            "{cmd} says what to do: {message}"
        );
        assert!(!message.contains("panicked"), "{message}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            garbage,
            "{cmd} changed the journal"
        );
        assert_eq!(listing(&state_dir(project.path())), before, "{cmd}");
    }
    assert!(
        !project.path().join(".bmad-host/runs").exists(),
        "no run started"
    );
}

#[test]
fn run_resumes_the_latest_unfinished_run_and_fresh_starts_anew_keeping_old_runs() {
    let project = Project::fixture("v4-sample");

    // A crashed run is resumed by a plain `run`, which keeps its finished step.
    let first = crashed_run(&project, false);
    let resumed = Run::project(&project, &[], &[]);
    assert_eq!(resumed.code(), 0, "{}", resumed.stderr());
    let started = resumed.events_named("run_started");
    assert_eq!(started.len(), 1);
    assert_eq!(started[0]["run_id"], first.as_str());
    assert_eq!(started[0]["resumed"], true);

    // Another crashed run, then `--fresh`: a new run; the crashed one is kept, not resumed.
    let second = crashed_run(&project, true);
    assert_ne!(second, first);
    let fresh = Run::project(&project, &["--fresh"], &[]);
    assert_eq!(fresh.code(), 0, "{}", fresh.stderr());
    let started = fresh.events_named("run_started");
    assert_eq!(started[0]["resumed"], false);
    let third = started[0]["run_id"].as_str().expect("run id").to_string();
    assert!(third != first && third != second);

    let journal = Journal::open_read_only(project.path())
        .expect("open the journal")
        .expect("a journal exists");
    let runs = journal.runs().expect("runs");
    let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
    assert_eq!(ids, [first.clone(), second.clone(), third.clone()]);
    let statuses: Vec<RunStatus> = runs.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [RunStatus::Done, RunStatus::Abandoned, RunStatus::Done]
    );
    for old in [&first, &second] {
        let old = old.parse().expect("run id");
        let steps = journal.steps(Some(&old), Some("0.0")).expect("steps");
        assert_eq!(steps.len(), 2, "the old run's steps are kept");
        assert_eq!(steps[0].result, Some(json!("its result")));
    }
}
