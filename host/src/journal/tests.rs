//! Unit tests of the journal: round trips, resume semantics across reopen, the run lock across
//! processes (and after SIGKILL), `--fresh`, refusal of corrupt and newer journals with their bytes
//! unchanged, SQLite settings, and interruption at random points.
//!
//! Tests that need a second process re-run this test binary on [`child_helper`] (ignored unless
//! selected, inert without its environment variable).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

use super::*;
use crate::policy::StoryState;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Selects what [`child_helper`] does: `lock <project>` or `steps <project> <n>`.
const CHILD_ENV: &str = "BMAD_HOST_JOURNAL_TEST_CHILD";

fn project() -> Result<TempDir, std::io::Error> {
    tempfile::Builder::new().prefix("bmad-journal-").tempdir()
}

fn key(run: &RunId, story: &str, cycle: u32, kind: StepKind, seq: u32) -> StepKey {
    StepKey {
        run: run.clone(),
        story: story.to_owned(),
        cycle,
        role: "dev".to_owned(),
        kind,
        seq,
    }
}

fn fingerprint(config: &str) -> RunFingerprint {
    RunFingerprint {
        config: config.to_owned(),
        args: vec![
            "bmad-host".into(),
            "run".into(),
            "--epic".into(),
            "1".into(),
        ],
        plugins: vec![PluginFingerprint {
            name: "qa".into(),
            version: "0.1.0".into(),
            role: "qa".into(),
            wasm_hash: "ab12".into(),
        }],
    }
}

fn expected_result(i: u32) -> Value {
    json!({ "step": i, "outcome": "success", "padding": "x".repeat(64) })
}

fn pragma_text(journal: &Journal, name: &str) -> Result<String, rusqlite::Error> {
    journal
        .conn
        .pragma_query_value(None, name, |r| r.get::<_, rusqlite::types::Value>(0))
        .map(|v| match v {
            rusqlite::types::Value::Integer(i) => i.to_string(),
            rusqlite::types::Value::Text(t) => t,
            other => format!("{other:?}"),
        })
}

fn list_dir(dir: &Path) -> Result<Vec<String>, std::io::Error> {
    let mut names = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}

// ----- creation and settings -----

#[test]
fn open_creates_a_wal_journal_with_full_sync_and_the_current_schema() -> TestResult {
    let dir = project()?;
    let journal = Journal::open(dir.path())?;
    assert_eq!(journal.path(), journal_path(dir.path()));
    assert_eq!(pragma_text(&journal, "journal_mode")?, "wal");
    assert_eq!(pragma_text(&journal, "synchronous")?, "2", "2 is FULL");
    assert_eq!(pragma_text(&journal, "foreign_keys")?, "1");
    assert_eq!(
        pragma_text(&journal, "user_version")?,
        SCHEMA_VERSION.to_string()
    );
    drop(journal);
    // WAL is recorded in the file itself (header bytes 18 and 19 are 2 in WAL mode).
    let bytes = std::fs::read(journal_path(dir.path()))?;
    assert_eq!(&bytes[..16], b"SQLite format 3\0");
    assert_eq!((bytes[18], bytes[19]), (2, 2));
    // The temporary file used to create the journal atomically is gone.
    let names = list_dir(&state_dir(dir.path()))?;
    assert!(
        names.iter().all(|n| !n.contains(".new")),
        "leftovers: {names:?}"
    );
    Ok(())
}

#[test]
fn reopening_keeps_everything() -> TestResult {
    let dir = project()?;
    let run = {
        let mut journal = Journal::open(dir.path())?;
        journal.start_run(false, &fingerprint("c1"))?.id
    };
    let journal = Journal::open(dir.path())?;
    let runs = journal.runs()?;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, run);
    assert_eq!(runs[0].status, RunStatus::Running);
    assert_eq!(runs[0].config, "c1");
    assert_eq!(runs[0].args, fingerprint("c1").args);
    assert_eq!(runs[0].plugins, fingerprint("c1").plugins);
    Ok(())
}

// ----- steps -----

#[test]
fn intents_and_results_round_trip() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let k = key(&run, "1.1", 1, StepKind::AgentCall, 0);
    let intent = json!({ "prompt": "implement 1.1", "max_turns": 30 });
    let StepStart::Fresh(id) = journal.begin_step(&k, &intent)? else {
        panic!("a new key must be fresh");
    };

    let rows = journal.steps(None, None)?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].key, k);
    assert_eq!(rows[0].attempt, 1);
    assert_eq!(rows[0].intent, intent);
    assert_eq!(rows[0].result, None);
    assert_eq!(rows[0].result_at, None);

    let result = json!({ "outcome": "success", "turns": 12, "cost_usd": 0.25 });
    journal.finish_step(id, &result)?;
    let rows = journal.steps(Some(&run), Some("1.1"))?;
    assert_eq!(rows[0].result.as_ref(), Some(&result));
    assert!(rows[0].result_at.is_some());
    assert!(journal.steps(Some(&run), Some("9.9"))?.is_empty());

    assert_eq!(
        journal.begin_step(&k, &intent)?,
        StepStart::Done(result.clone())
    );
    assert!(matches!(
        journal.finish_step(id, &json!("again")),
        Err(JournalError::StepAlreadyFinished(s)) if s == id
    ));
    assert!(matches!(
        journal.finish_step(StepId(id.get() + 100), &json!(null)),
        Err(JournalError::UnknownStep(_))
    ));
    // The refused finish did not overwrite the result.
    assert_eq!(journal.steps(None, None)?[0].result.as_ref(), Some(&result));
    Ok(())
}

#[test]
fn recorded_steps_commit_intent_and_result_together_and_replays_keep_them() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let k = key(&run, "1.1", 1, StepKind::Decision, 0);
    journal.record_step(&k, &json!({"call": "begin"}), &json!({"invoke-agent": "x"}))?;
    let rows = journal.steps(None, None)?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].result, Some(json!({"invoke-agent": "x"})));
    assert!(rows[0].result_at.is_some());
    // A replay after a crash does not overwrite what was recorded.
    journal.record_step(&k, &json!({"call": "begin"}), &json!("other"))?;
    assert_eq!(
        journal.steps(None, None)?[0].result,
        Some(json!({"invoke-agent": "x"}))
    );
    assert_eq!(
        journal.begin_step(&k, &json!(null))?,
        StepStart::Done(json!({"invoke-agent": "x"}))
    );
    // An interrupted step of the same key gets its result.
    let k2 = key(&run, "1.1", 1, StepKind::Decision, 1);
    let StepStart::Fresh(_) = journal.begin_step(&k2, &json!(null))? else {
        panic!("a new key must be fresh");
    };
    journal.record_step(&k2, &json!(null), &json!("done"))?;
    assert_eq!(journal.steps(None, None)?[1].result, Some(json!("done")));
    // Relaxed records leave the connection durable for the steps that need it.
    journal.save_story(&run, &StoryRecord::new("1.1", "t", StoryState::Review))?;
    assert_eq!(pragma_text(&journal, "synchronous")?, "2");
    Ok(())
}

#[test]
fn every_part_of_the_key_distinguishes_steps() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let base = key(&run, "1.1", 1, StepKind::AgentCall, 0);
    let variants = [
        StepKey {
            story: "1.2".into(),
            ..base.clone()
        },
        StepKey {
            cycle: 2,
            ..base.clone()
        },
        StepKey {
            role: "qa".into(),
            ..base.clone()
        },
        StepKey {
            kind: StepKind::Gates,
            ..base.clone()
        },
        StepKey {
            seq: 1,
            ..base.clone()
        },
    ];
    let id = journal
        .begin_step(&base, &json!(0))?
        .id()
        .ok_or("fresh has an id")?;
    journal.finish_step(id, &json!("base"))?;
    for v in &variants {
        assert!(
            matches!(journal.begin_step(v, &json!(1))?, StepStart::Fresh(_)),
            "{v:?} must be a different step"
        );
    }
    Ok(())
}

#[test]
fn resume_after_reopen_reports_done_retry_and_fresh() -> TestResult {
    let dir = project()?;
    let (run, done_id) = {
        let mut journal = Journal::open(dir.path())?;
        let info = journal.start_run(false, &fingerprint("c"))?;
        assert!(!info.resumed);
        let a = journal.begin_step(
            &key(&info.id, "1.1", 1, StepKind::AgentCall, 0),
            &json!("a"),
        )?;
        let a = a.id().ok_or("fresh")?;
        journal.finish_step(a, &json!({ "a": "result" }))?;
        let b = journal.begin_step(&key(&info.id, "1.1", 1, StepKind::Gates, 0), &json!("b"))?;
        assert!(matches!(b, StepStart::Fresh(_)));
        (info.id, a)
        // Dropped here with step b begun and never finished: a crash during b.
    };

    let mut journal = Journal::open(dir.path())?;
    let info = journal.start_run(false, &fingerprint("c"))?;
    assert!(info.resumed);
    assert!(!info.fingerprint_changed);
    assert_eq!(info.id, run);

    assert_eq!(
        journal.begin_step(&key(&run, "1.1", 1, StepKind::AgentCall, 0), &json!("a"))?,
        StepStart::Done(json!({ "a": "result" }))
    );
    let b = journal.begin_step(&key(&run, "1.1", 1, StepKind::Gates, 0), &json!("b2"))?;
    let StepStart::Retry { id: b_id, attempt } = b else {
        panic!("an intent without a result must be a retry, got {b:?}");
    };
    assert_ne!(b_id, done_id);
    assert_eq!(attempt, 2);
    assert_eq!(b.attempt(), Some(2));
    let row = journal
        .steps(None, None)?
        .into_iter()
        .find(|r| r.id == b_id)
        .ok_or("row b")?;
    assert_eq!(row.attempt, 2);
    assert_eq!(
        row.intent,
        json!("b2"),
        "the retry's intent replaces the old one"
    );
    let c = journal.begin_step(&key(&run, "1.1", 1, StepKind::StatusWrite, 0), &json!("c"))?;
    assert_eq!(c.attempt(), Some(1));
    assert!(matches!(c, StepStart::Fresh(_)));
    drop(journal);

    // Interrupted again: the third attempt is counted.
    let mut journal = Journal::open(dir.path())?;
    assert!(journal.start_run(false, &fingerprint("c"))?.resumed);
    let b = journal.begin_step(&key(&run, "1.1", 1, StepKind::Gates, 0), &json!("b3"))?;
    assert_eq!(
        b,
        StepStart::Retry {
            id: b_id,
            attempt: 3
        }
    );
    journal.finish_step(b_id, &json!("b done"))?;
    drop(journal);

    let mut journal = Journal::open(dir.path())?;
    journal.start_run(false, &fingerprint("c"))?;
    assert_eq!(
        journal.begin_step(&key(&run, "1.1", 1, StepKind::Gates, 0), &json!("b4"))?,
        StepStart::Done(json!("b done"))
    );
    Ok(())
}

// ----- runs -----

#[test]
fn finished_runs_start_anew_and_interrupted_runs_resume() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let first = journal.start_run(false, &fingerprint("c"))?.id;
    journal.finish_run(&first, RunStatus::Interrupted)?;
    let again = journal.start_run(false, &fingerprint("c"))?;
    assert!(again.resumed, "an interrupted run resumes");
    assert_eq!(again.id, first);
    assert_eq!(journal.runs()?[0].status, RunStatus::Running);
    assert_eq!(journal.runs()?[0].finished_at, None);

    journal.finish_run(&first, RunStatus::Done)?;
    let second = journal.start_run(false, &fingerprint("c"))?;
    assert!(!second.resumed, "a done run is not resumed");
    assert_ne!(second.id, first);
    journal.finish_run(&second.id, RunStatus::Failed)?;
    let third = journal.start_run(false, &fingerprint("c"))?;
    assert!(!third.resumed, "a failed run is not resumed");

    let runs = journal.runs()?;
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0].status, RunStatus::Done);
    assert!(runs[0].finished_at.is_some());
    assert_eq!(runs[1].status, RunStatus::Failed);
    assert_eq!(journal.latest_run()?, Some(third.id));

    let unknown: RunId = "20000101T000000Z-0000".parse()?;
    assert!(matches!(
        journal.finish_run(&unknown, RunStatus::Done),
        Err(JournalError::UnknownRun(r)) if r == unknown
    ));
    Ok(())
}

#[test]
fn fresh_starts_a_new_run_and_keeps_the_old_ones() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let old = journal.start_run(false, &fingerprint("c"))?.id;
    let k_old = key(&old, "1.1", 1, StepKind::AgentCall, 0);
    let id = journal
        .begin_step(&k_old, &json!("i"))?
        .id()
        .ok_or("fresh")?;
    journal.finish_step(id, &json!("r"))?;
    journal.save_story(
        &old,
        &StoryRecord::new("1.1", "First", StoryState::InProgress),
    )?;
    drop(journal);

    let mut journal = Journal::open(dir.path())?;
    let new = journal.start_run(true, &fingerprint("c"))?;
    assert!(!new.resumed);
    assert_ne!(new.id, old);
    // The same step in the new run is new work.
    assert!(matches!(
        journal.begin_step(&key(&new.id, "1.1", 1, StepKind::AgentCall, 0), &json!("i"))?,
        StepStart::Fresh(_)
    ));
    // The old run, its steps and its stories are all still there, and it will not be resumed.
    let runs = journal.runs()?;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].id, old);
    assert_eq!(runs[0].status, RunStatus::Abandoned);
    let old_steps = journal.steps(Some(&old), None)?;
    assert_eq!(old_steps.len(), 1);
    assert_eq!(old_steps[0].result, Some(json!("r")));
    assert!(journal.story(&old, "1.1")?.is_some());
    assert!(
        journal.story_summaries(None)?.is_empty(),
        "latest run has no stories yet"
    );
    drop(journal);

    let mut journal = Journal::open(dir.path())?;
    let resumed = journal.start_run(false, &fingerprint("c"))?;
    assert!(resumed.resumed);
    assert_eq!(resumed.id, new.id, "the latest run is the one resumed");
    Ok(())
}

#[test]
fn a_changed_fingerprint_on_resume_is_reported_and_both_plugin_sets_recorded() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let mut changed = fingerprint("c");
    changed.plugins[0].wasm_hash = "cd34".into();
    let info = journal.start_run(false, &changed)?;
    assert!(info.resumed && info.fingerprint_changed);
    let info = journal.start_run(false, &fingerprint("other config"))?;
    assert!(info.fingerprint_changed);
    let info = journal.start_run(false, &fingerprint("c"))?;
    assert!(!info.fingerprint_changed, "same as the run started with");
    let hashes: Vec<String> = journal.runs()?[0]
        .plugins
        .iter()
        .map(|p| p.wasm_hash.clone())
        .collect();
    assert_eq!(hashes, ["ab12", "cd34"]);
    assert_eq!(journal.runs()?[0].id, run);
    Ok(())
}

// ----- stories -----

#[test]
fn story_records_round_trip_and_summaries_sort_numerically() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    assert_eq!(journal.story(&run, "1.2")?, None);
    let mut rec = StoryRecord::new("1.2", "Login form", StoryState::Review);
    rec.cycle = 2;
    rec.usage = Usage {
        cost_usd: 1.25,
        input_tokens: 120_000,
        output_tokens: 8_000,
        turns: 41,
        duration: Duration::from_millis(245_500),
    };
    rec.findings = json!([{ "cycle": 1, "findings": ["missing test"] }]);
    rec.last_outcome = Some("QA asked for changes".into());
    for id in ["1.10", "2.1", "1.2", "1.9"] {
        let mut r = rec.clone();
        r.story_id = id.into();
        journal.save_story(&run, &r)?;
    }
    assert_eq!(journal.story(&run, "1.2")?, Some(rec.clone()));

    rec.result = Some(StoryResult::Escalated);
    rec.state = StoryState::Blocked;
    rec.usage += Usage {
        turns: 1,
        ..Usage::default()
    };
    journal.save_story(&run, &rec)?;
    assert_eq!(journal.story(&run, "1.2")?, Some(rec.clone()));

    let order: Vec<String> = journal
        .story_summaries(None)?
        .into_iter()
        .map(|s| s.record.story_id)
        .collect();
    assert_eq!(order, ["1.2", "1.9", "1.10", "2.1"]);
    let summaries = journal.story_summaries(Some(&run))?;
    assert_eq!(summaries[0].record, rec);
    assert_eq!(summaries[0].run, run);
    Ok(())
}

#[test]
fn story_ids_order_numerically() {
    use super::model::story_order;
    use std::cmp::Ordering::*;
    assert_eq!(story_order("1.2", "1.10"), Less);
    assert_eq!(story_order("1.10", "2.1"), Less);
    assert_eq!(story_order("10.1", "9.1"), Greater);
    assert_eq!(
        story_order("1.02", "1.2"),
        Less,
        "ties broken by text, deterministically"
    );
    assert_eq!(story_order("1.2", "1.2"), Equal);
    assert_eq!(story_order("1.2", "1.2a"), Less);
}

// ----- lines for people -----

#[test]
fn log_and_status_lines_show_what_people_need() -> TestResult {
    let dir = project()?;
    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let mut k = key(&run, "1.2", 3, StepKind::AgentCall, 1);
    k.role = "qa".into();
    let id = journal
        .begin_step(&k, &json!({ "prompt": "review" }))?
        .id()
        .ok_or("fresh")?;
    let line = journal.steps(None, None)?[0].to_string();
    assert!(line.contains("1.2  c3  qa  agent-call#1"), "{line}");
    assert!(line.contains("no result"), "{line}");
    assert!(line.contains("\"review\""), "{line}");
    assert!(!line.contains("  a1"), "{line}");
    drop(journal);

    let mut journal = Journal::open(dir.path())?;
    journal.start_run(false, &fingerprint("c"))?;
    assert!(matches!(
        journal.begin_step(&k, &json!({ "prompt": "review" }))?,
        StepStart::Retry { .. }
    ));
    journal.finish_step(id, &json!({ "outcome": "changes", "z": "y".repeat(500) }))?;
    let line = journal.steps(None, Some("1.2"))?[0].to_string();
    assert!(line.contains("  a2  "), "{line}");
    assert!(line.contains("\"outcome\":\"changes\""), "{line}");
    assert!(line.ends_with('…'), "long results are cut: {line}");
    assert!(line.chars().count() < 200, "{line}");

    let mut rec = StoryRecord::new("1.2", "Login", StoryState::InProgress);
    rec.cycle = 2;
    rec.usage.turns = 31;
    rec.usage.cost_usd = 0.8412;
    rec.usage.duration = Duration::from_millis(243_700);
    rec.last_outcome = Some("QA asked for changes".into());
    journal.save_story(&run, &rec)?;
    let line = journal.story_summaries(None)?[0].to_string();
    assert_eq!(
        line,
        "1.2  in-progress  cycle 2  4m 3s  31 turns  $0.84 API-equivalent  QA asked for changes"
    );
    rec.result = Some(StoryResult::Done);
    journal.save_story(&run, &rec)?;
    assert!(
        journal.story_summaries(None)?[0]
            .to_string()
            .starts_with("1.2  done  ")
    );
    Ok(())
}

// ----- paths and ids -----

#[test]
fn transcript_paths_name_story_cycle_role_and_retries() -> TestResult {
    let root = Path::new("/p");
    let run: RunId = "20261123T154700Z-1a2b".parse()?;
    assert_eq!(
        transcript_path(root, &run, "1.2", 3, "qa", 1),
        PathBuf::from("/p/.bmad-host/runs/20261123T154700Z-1a2b/1.2-c3-qa.jsonl")
    );
    assert_eq!(
        transcript_path(root, &run, "1.2", 3, "qa", 2),
        PathBuf::from("/p/.bmad-host/runs/20261123T154700Z-1a2b/1.2-c3-qa-a2.jsonl")
    );
    let odd = transcript_path(root, &run, "../x y", 1, "dev", 1);
    assert_eq!(odd.parent(), Some(run_dir(root, &run).as_path()));
    assert_eq!(
        odd.file_name().and_then(|n| n.to_str()),
        Some(".._x_y-c1-dev.jsonl")
    );
    Ok(())
}

#[test]
fn run_ids_are_timestamps_that_sort_and_parse() -> TestResult {
    let at = humantime::parse_rfc3339("2026-11-23T15:47:00Z")?;
    let early = RunId::generate(at);
    let late = RunId::generate(at + Duration::from_secs(1));
    let s = early.as_str();
    assert_eq!(&s[..17], "20261123T154700Z-", "{s}");
    assert_eq!(s.len(), 21);
    assert!(s[17..].chars().all(|c| c.is_ascii_hexdigit()), "{s}");
    assert!(early < late);
    assert_eq!(s.parse::<RunId>()?, early);
    for bad in ["", "../etc", "a/b", "-x", "a b"] {
        assert!(bad.parse::<RunId>().is_err(), "{bad:?}");
    }
    Ok(())
}

// ----- refusing bad journals -----

/// Opens the journal both ways and checks that it is refused with `check`, and that neither the
/// journal's bytes nor any other file of `.bmad-host/` except the lock file changed.
fn assert_refused_untouched(root: &Path, check: impl Fn(&JournalError) -> bool) -> TestResult {
    let path = journal_path(root);
    let before = std::fs::read(&path)?;
    let names_before = list_dir(&state_dir(root))?;

    let err = Journal::open(root).err().ok_or("open must refuse")?;
    assert!(check(&err), "unexpected error: {err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move"), "says what to do: {message}");

    let err = Journal::open_read_only(root)
        .err()
        .ok_or("read-only open must refuse")?;
    assert!(check(&err), "unexpected error: {err:?}");

    assert_eq!(std::fs::read(&path)?, before, "journal bytes changed");
    let mut names_after = list_dir(&state_dir(root))?;
    names_after.retain(|n| n != LOCK_FILE);
    let mut names_before = names_before;
    names_before.retain(|n| n != LOCK_FILE);
    assert_eq!(names_after, names_before);
    Ok(())
}

fn place_journal(root: &Path, bytes: &[u8]) -> TestResult {
    std::fs::create_dir_all(state_dir(root))?;
    std::fs::write(journal_path(root), bytes)?;
    Ok(())
}

fn is_corrupt(e: &JournalError) -> bool {
    matches!(e, JournalError::Corrupt { .. })
}

#[test]
fn garbage_empty_and_short_files_are_refused_untouched() -> TestResult {
    let mut garbage = Vec::with_capacity(8192);
    let mut x: u32 = 0x9E37_79B9;
    for _ in 0..8192 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        garbage.push(x as u8);
    }
    let cases: [(&str, &[u8]); 4] = [
        ("garbage", &garbage),
        ("text", b"this is not a database\n"),
        ("empty", b""),
        ("header only", b"SQLite format 3\0"),
    ];
    for (name, bytes) in cases {
        let dir = project()?;
        place_journal(dir.path(), bytes)?;
        assert_refused_untouched(dir.path(), is_corrupt).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

#[test]
fn a_truncated_journal_is_refused_untouched() -> TestResult {
    let full = project()?;
    {
        let mut journal = Journal::open(full.path())?;
        let run = journal.start_run(false, &fingerprint("c"))?.id;
        for i in 0..400 {
            let k = key(&run, "1.1", 1, StepKind::AgentCall, i);
            let id = journal
                .begin_step(&k, &json!("x".repeat(300)))?
                .id()
                .ok_or("fresh")?;
            journal.finish_step(id, &expected_result(i))?;
        }
    }
    let bytes = std::fs::read(journal_path(full.path()))?;
    assert!(
        bytes.len() > 64 * 1024,
        "big enough to truncate: {}",
        bytes.len()
    );
    for cut in [bytes.len() / 2, 4096, 100] {
        let dir = project()?;
        place_journal(dir.path(), &bytes[..cut])?;
        assert_refused_untouched(dir.path(), is_corrupt).map_err(|e| format!("cut {cut}: {e}"))?;
    }
    // Same size, one page in the middle overwritten: only SQLite's integrity check sees it.
    let mut damaged = bytes.clone();
    // A leaf page of the steps table (past the schema pages at the start).
    let page = damaged.len() / 2 / 4096 * 4096 + 4096;
    damaged[page..page + 4096].fill(0xA5);
    let dir = project()?;
    place_journal(dir.path(), &damaged)?;
    assert_refused_untouched(dir.path(), |e| {
        is_corrupt(e) && e.to_string().contains("integrity")
    })?;
    Ok(())
}

#[test]
fn another_programs_sqlite_database_is_refused_untouched() -> TestResult {
    let dir = project()?;
    std::fs::create_dir_all(state_dir(dir.path()))?;
    {
        let conn = rusqlite::Connection::open(journal_path(dir.path()))?;
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine');")?;
    }
    assert_refused_untouched(dir.path(), |e| {
        is_corrupt(e) && e.to_string().contains("not a bmad-host journal")
    })
}

#[test]
fn a_newer_schema_is_refused_untouched() -> TestResult {
    let dir = project()?;
    drop(Journal::open(dir.path())?);
    {
        let conn = rusqlite::Connection::open(journal_path(dir.path()))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
    }
    assert_refused_untouched(dir.path(), |e| {
        matches!(e, JournalError::NewerSchema { found, supported, .. }
            if *found == SCHEMA_VERSION + 1 && *supported == SCHEMA_VERSION)
    })
}

#[test]
fn an_older_schema_is_migrated_by_a_run_and_refused_read_only() -> TestResult {
    let dir = project()?;
    std::fs::create_dir_all(state_dir(dir.path()))?;
    {
        // What version 0 looks like: ours (application id), no tables yet.
        let conn = rusqlite::Connection::open(journal_path(dir.path()))?;
        conn.pragma_update(None, "application_id", 0x424D_4148)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
    }
    let before = std::fs::read(journal_path(dir.path()))?;
    assert!(matches!(
        Journal::open_read_only(dir.path()),
        Err(JournalError::OlderSchema { found: 0, .. })
    ));
    assert_eq!(std::fs::read(journal_path(dir.path()))?, before);

    let mut journal = Journal::open(dir.path())?;
    assert_eq!(
        pragma_text(&journal, "user_version")?,
        SCHEMA_VERSION.to_string()
    );
    journal.start_run(false, &fingerprint("c"))?;
    Ok(())
}

// ----- read-only access -----

#[test]
fn read_only_open_creates_nothing_and_reads_alongside_a_run() -> TestResult {
    let dir = project()?;
    assert!(Journal::open_read_only(dir.path())?.is_none());
    assert!(
        !state_dir(dir.path()).exists(),
        "read-only open created files"
    );

    let mut journal = Journal::open(dir.path())?;
    let run = journal.start_run(false, &fingerprint("c"))?.id;
    let id = journal
        .begin_step(&key(&run, "1.1", 1, StepKind::AgentCall, 0), &json!("i"))?
        .id()
        .ok_or("fresh")?;
    // The run holds the lock; a reader does not need it.
    let reader = Journal::open_read_only(dir.path())?.ok_or("journal exists")?;
    assert_eq!(reader.steps(None, None)?[0].result, None);
    journal.finish_step(id, &json!("r"))?;
    assert_eq!(reader.steps(None, None)?[0].result, Some(json!("r")));
    assert!(
        reader.conn.execute("DELETE FROM steps", []).is_err(),
        "the reader cannot write"
    );
    drop(reader);
    drop(journal);

    let before = std::fs::read(journal_path(dir.path()))?;
    let reader = Journal::open_read_only(dir.path())?.ok_or("journal exists")?;
    assert_eq!(reader.runs()?.len(), 1);
    drop(reader);
    assert_eq!(std::fs::read(journal_path(dir.path()))?, before);
    Ok(())
}

// ----- the run lock -----

#[test]
fn a_second_open_is_refused_while_the_first_is_held() -> TestResult {
    let dir = project()?;
    let first = Journal::open(dir.path())?;
    let err = Journal::open(dir.path())
        .err()
        .ok_or("second open must be refused")?;
    let JournalError::Locked { pid, lock } = &err else {
        panic!("expected Locked, got {err:?}");
    };
    assert_eq!(*pid, Some(std::process::id()));
    assert_eq!(*lock, state_dir(dir.path()).join(LOCK_FILE));
    let message = err.to_string();
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(message.contains("run.lock"), "{message}");
    drop(first);
    drop(Journal::open(dir.path())?);
    Ok(())
}

/// Re-runs this test binary on [`child_helper`] with `job` in [`CHILD_ENV`].
fn spawn_child(job: &str) -> Result<Child, std::io::Error> {
    Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "journal::tests::child_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, job)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
}

/// Lines the child wrote that start with `@` (libtest's own lines are skipped), until EOF or until
/// `stop` says so.
fn read_child_lines(
    out: &mut impl BufRead,
    mut stop: impl FnMut(&str) -> bool,
) -> Result<Vec<String>, std::io::Error> {
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            return Ok(lines);
        }
        if let Some(msg) = line.trim_end().strip_prefix('@') {
            lines.push(msg.to_owned());
            if stop(msg) {
                return Ok(lines);
            }
        }
    }
}

#[test]
fn the_lock_is_refused_across_processes_and_freed_by_sigkill() -> TestResult {
    let dir = project()?;
    let mut child = spawn_child(&format!("lock {}", dir.path().display()))?;
    let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
    let lines = read_child_lines(&mut out, |l| l == "locked")?;
    assert_eq!(
        lines.last().map(String::as_str),
        Some("locked"),
        "child: {lines:?}"
    );

    let err = Journal::open(dir.path())
        .err()
        .ok_or("must be refused while the child holds it")?;
    assert!(
        matches!(&err, JournalError::Locked { pid: Some(p), .. } if *p == child.id()),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("pid {}", child.id())),
        "{err}"
    );

    child.kill()?; // SIGKILL
    let status = child.wait()?;
    assert!(!status.success());
    // No stale lock: the kernel released it with the dead process's files.
    let journal = Journal::open(dir.path())?;
    drop(journal);
    Ok(())
}

/// Not a test by itself: the other process of the tests above, selected by [`CHILD_ENV`].
/// - `lock <project>`: opens the journal, prints `@locked`, and holds it until stdin closes.
/// - `steps <project> <n>`: resumes the run and walks steps `0..n` like a replaying run loop,
///   printing `@fresh i` / `@retry i` / `@done i` from `begin_step` and `@finished i` after
///   `finish_step`, then `@complete`; exits with a failure if a done step's result is not the one
///   written. Before each step it reads one byte of stdin (and stops at EOF), so the parent
///   bounds how far it gets.
#[test]
#[ignore = "helper process for other tests"]
fn child_helper() -> TestResult {
    let Ok(job) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let mut words = job.split(' ');
    let (what, root) = (words.next(), words.next().map(PathBuf::from));
    let root = root.ok_or("no project")?;
    let mut out = std::io::stdout();
    match what {
        Some("lock") => {
            let _journal = Journal::open(&root)?;
            writeln!(out, "\n@locked")?;
            out.flush()?;
            // Hold the lock until the parent kills us or closes our stdin.
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
        }
        Some("steps") => {
            let n: u32 = words.next().ok_or("no n")?.parse()?;
            let mut journal = Journal::open(&root)?;
            let run = journal.start_run(false, &fingerprint("c"))?.id;
            let mut stdin = std::io::stdin().lock();
            for i in 0..n {
                // One byte from the parent per step: it decides how far this process may go.
                if std::io::Read::read(&mut stdin, &mut [0u8])? == 0 {
                    return Ok(());
                }
                let k = key(&run, "1.1", 1, StepKind::AgentCall, i);
                match journal.begin_step(&k, &json!({ "step": i }))? {
                    StepStart::Done(result) => {
                        if result != expected_result(i) {
                            return Err(format!("step {i}: journaled {result}").into());
                        }
                        writeln!(out, "\n@done {i}")?;
                    }
                    start => {
                        let word = if start.attempt() == Some(1) {
                            "fresh"
                        } else {
                            "retry"
                        };
                        writeln!(out, "\n@{word} {i}")?;
                        out.flush()?;
                        let id = start.id().ok_or("not done")?;
                        journal.finish_step(id, &expected_result(i))?;
                        writeln!(out, "\n@finished {i}")?;
                    }
                }
                out.flush()?;
            }
            journal.finish_run(&run, RunStatus::Done)?;
            writeln!(out, "\n@complete")?;
            out.flush()?;
        }
        _ => return Err(format!("unknown job {job:?}").into()),
    }
    Ok(())
}

// ----- interruptions -----

/// A small xorshift generator: the tests print the seed so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn from_time() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Kills a process walking through journaled steps with SIGKILL at random moments and checks,
/// across restarts, that a step reported finished is never run again and keeps its result, and
/// that an interrupted step comes back as a retry. Each round the parent allows the child a few
/// steps of new work (one stdin byte per step, fewer than the run needs, so no round but the last
/// can finish the run however fast the disk) and kills it after reading a random number of its
/// new-work lines: the child is then anywhere in or between `begin_step` and `finish_step`, or
/// waiting for its next byte.
#[test]
fn sigkill_at_random_moments_never_loses_or_repeats_a_finished_step() -> TestResult {
    const STEPS: u32 = 60;
    const ROUNDS: u32 = 12;
    let mut rng = Rng::from_time();
    let seed = rng.0;
    let dir = project()?;
    let job = format!("steps {} {STEPS}", dir.path().display());
    let mut finished = vec![false; STEPS as usize];
    let mut begun = vec![false; STEPS as usize];
    let mut complete = false;
    let mut retries = 0;
    for round in 0..ROUNDS {
        let last = round == ROUNDS - 1;
        let known = finished.iter().filter(|f| **f).count() as u64;
        // At most one step per round can have finished without being reported (killed between
        // its commit and its line), so `known + 1` bytes cover the replay of every done step.
        let new_work = rng.below(6) + 1;
        let tokens = if last {
            u64::from(STEPS)
        } else {
            (known + 1 + new_work).min(u64::from(STEPS) - 1)
        };
        let kill_after = rng.below(new_work) + 1;
        let mut child = spawn_child(&job)?;
        let mut stdin = child.stdin.take().ok_or("stdin")?;
        stdin.write_all(&vec![b'.'; tokens as usize])?;
        stdin.flush()?;
        let mut out = BufReader::new(child.stdout.take().ok_or("stdout")?);
        let mut lines = if last {
            drop(stdin);
            read_child_lines(&mut out, |_| false)?
        } else {
            let mut seen = 0;
            let lines = read_child_lines(&mut out, |line| {
                if !line.starts_with("done") {
                    seen += 1;
                }
                seen >= kill_after
            })?;
            child.kill()?; // SIGKILL
            drop(stdin);
            lines
        };
        let status = child.wait()?;
        if !last {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "seed {seed}: the child failed: {status}"
            );
        }
        // Whatever it wrote before dying is a fact too.
        lines.extend(read_child_lines(&mut out, |_| false)?);
        for line in &lines {
            let ctx = || format!("seed {seed}, round {round}: {line} in {lines:?}");
            let (word, i) = line.split_once(' ').unwrap_or((line, ""));
            if word == "complete" {
                assert!(last, "{}", ctx());
                complete = true;
                continue;
            }
            let i: usize = i.parse().map_err(|_| ctx())?;
            match word {
                // A step killed after its intent was committed but before the child said so
                // comes back as a retry never announced as fresh; one killed after its result
                // was committed but before `finished` was printed comes back as done.
                "fresh" => {
                    assert!(!begun[i] && !finished[i], "{}", ctx());
                    begun[i] = true;
                }
                "retry" => {
                    assert!(!finished[i], "a finished step ran again: {}", ctx());
                    begun[i] = true;
                    retries += 1;
                }
                "done" => finished[i] = true,
                "finished" => {
                    assert!(!finished[i], "finished twice: {}", ctx());
                    finished[i] = true;
                }
                _ => return Err(ctx().into()),
            }
        }
        if last {
            assert!(
                status.success(),
                "seed {seed}: the last round must complete: {status}"
            );
        }
    }
    assert!(complete, "seed {seed}");
    assert!(finished.iter().all(|f| *f), "seed {seed}");
    let reader = Journal::open_read_only(dir.path())?.ok_or("journal")?;
    let rows = reader.steps(None, None)?;
    assert_eq!(rows.len(), STEPS as usize);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.key.seq as usize, i);
        assert_eq!(row.result, Some(expected_result(i as u32)), "seed {seed}");
    }
    eprintln!("seed {seed}: {retries} retries in {ROUNDS} rounds");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A run loop replaying `steps` steps, "crashing" (dropping the journal, as a killed process
    /// would leave it) at the chosen points: just after a `begin_step` or just after a
    /// `finish_step`. Finished results are never lost or run again, an interrupted step is
    /// always a retry with the right attempt number, and the run ends with every step done.
    #[test]
    fn interruptions_never_lose_a_finished_result(
        steps in 1u32..25,
        crashes in proptest::collection::vec((0u32..25, any::<bool>()), 0..8),
    ) {
        let dir = project().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut crashes: Vec<(u32, bool)> =
            crashes.into_iter().filter(|(at, _)| *at < steps).collect();
        crashes.sort();
        crashes.dedup();
        let mut crashes = crashes.into_iter().peekable();
        let mut runs = vec![0u32; steps as usize];
        let mut finished = vec![false; steps as usize];
        let fail = |e: JournalError| TestCaseError::fail(e.to_string());
        'process: loop {
            let mut journal = Journal::open(dir.path()).map_err(fail)?;
            let run = journal.start_run(false, &fingerprint("c")).map_err(fail)?.id;
            for i in 0..steps {
                let k = key(&run, "1.1", 1, StepKind::AgentCall, i);
                let start = journal.begin_step(&k, &json!(i)).map_err(fail)?;
                let id = match start {
                    StepStart::Done(result) => {
                        prop_assert!(finished[i as usize]);
                        prop_assert_eq!(result, expected_result(i));
                        continue;
                    }
                    StepStart::Fresh(id) => {
                        prop_assert_eq!(runs[i as usize], 0);
                        id
                    }
                    StepStart::Retry { id, attempt } => {
                        prop_assert!(!finished[i as usize]);
                        prop_assert_eq!(attempt, runs[i as usize] + 1);
                        id
                    }
                };
                runs[i as usize] += 1;
                if crashes.next_if(|c| *c == (i, false)).is_some() {
                    continue 'process; // killed during the step
                }
                journal.finish_step(id, &expected_result(i)).map_err(fail)?;
                finished[i as usize] = true;
                if crashes.next_if(|c| *c == (i, true)).is_some() {
                    continue 'process; // killed right after the result was committed
                }
            }
            break;
        }
        prop_assert!(finished.iter().all(|f| *f));
        let reader = Journal::open_read_only(dir.path()).map_err(fail)?
            .ok_or_else(|| TestCaseError::fail("journal"))?;
        for row in reader.steps(None, None).map_err(fail)? {
            prop_assert_eq!(row.attempt, runs[row.key.seq as usize]);
            prop_assert_eq!(row.result, Some(expected_result(row.key.seq)));
        }
    }
}

// ----- benchmark -----

#[test]
fn bench_step_cost_measures_journaled_steps() -> TestResult {
    let dir = project()?;
    let cost = bench_step_cost(dir.path(), 20)?;
    assert!(cost > Duration::ZERO);
    let reader = Journal::open_read_only(dir.path())?.ok_or("journal")?;
    let rows = reader.steps(None, None)?;
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|r| r.result.is_some()));
    Ok(())
}
