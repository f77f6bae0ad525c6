//! Trust boundaries (issue #13), through the real binary: review is never skipped, the journal
//! fails closed, and the smaller edges of the supervisor's limits (`tool_idle_timeout` against
//! `idle_timeout`, `max_budget_usd` across retries).

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};
use serde_json::{Value, json};

/// The roles the fake Claude played for `story`, in order.
fn roles_for(project: &Project, story: &str) -> Vec<String> {
    fake_log::calls(project)
        .iter()
        .filter(|c| c["story"] == story)
        .map(|c| c["role"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Runs `story` with a Dev that writes `dev` into the story itself (and `sprint` into v6
/// sprint-status, when given), the rest played as usual.
fn run_with_dev_writing(
    project: &Project,
    story: &str,
    dev: Value,
    args: &[&str],
) -> (Run, Vec<String>) {
    let script = project.script(&json!({
        "calls": [ { "role": "dev", "story": story, "do": "play" , "set_status": dev["status"], "sprint_status": dev["sprint"] } ],
    }));
    let script = script.to_str().expect("utf-8").to_string();
    let log = fake_log::env_value(project);
    let mut all = vec!["--story", story];
    all.extend_from_slice(args);
    let run = Run::project(
        project,
        &all,
        &[("FAKE_CLAUDE_SCRIPT", &script), ("FAKE_CLAUDE_LOG", &log)],
    );
    let roles = roles_for(project, story);
    (run, roles)
}

#[test]
fn a_v4_dev_that_writes_done_itself_still_gets_its_review() {
    let project = Project::fixture("v4-sample");
    let (run, roles) = run_with_dev_writing(&project, "1.1", json!({"status": "Done"}), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(roles, ["dev", "qa"], "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    // QA's gate decision is there: the review really happened.
    let gates = std::fs::read_dir(project.path().join("docs/qa/gates"))
        .expect("gates dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("1.1-"))
        .count();
    assert_eq!(gates, 1, "QA wrote the story's gate");
}

#[test]
fn a_v6_dev_that_writes_done_in_story_and_sprint_status_still_gets_its_review() {
    let project = Project::fixture("v6-sample");
    let (run, roles) = run_with_dev_writing(
        &project,
        "1.1",
        json!({"status": "done", "sprint": "done"}),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(roles, ["dev", "qa"], "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
}

#[test]
fn a_bmad_build_done_with_sprint_status_at_review_still_gets_its_review() {
    // BMAD 6.11+'s bmad-build sets the story to `done` and sprint-status to `review`.
    let project = Project::fixture("v6-sample");
    let (run, roles) = run_with_dev_writing(
        &project,
        "1.1",
        json!({"status": "done", "sprint": "review"}),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(roles, ["dev", "qa"], "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
}

#[test]
fn a_v6_12_spec_whose_frontmatter_dev_set_to_done_still_gets_its_review() {
    let project = Project::fixture("v6-sample");
    let rel = "_bmad-output/implementation-artifacts/1-1-count-lines.md";
    let body = project.read(rel).replace("Status: ready-for-dev\n\n", "");
    project.write(
        rel,
        &format!("---\ntitle: 'Count Lines'\nstatus: ready-for-dev\n---\n\n{body}"),
    );
    let (run, roles) = run_with_dev_writing(
        &project,
        "1.1",
        json!({"status": "done", "sprint": "review"}),
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(roles, ["dev", "qa"], "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    assert!(project.read(rel).contains("\nstatus: done\n"));
}

#[test]
fn a_done_that_appeared_between_runs_is_reviewed() {
    // The journal first saw 1.1 Approved; someone (an agent outside bmad-host, a hand edit)
    // set it to Done since. QA's review has not happened: it runs.
    let project = Project::fixture("v4-sample");
    let script =
        project.script(&json!({"calls": [{"role": "dev", "do": "api_error", "status": 400}]}));
    let script = script.to_str().expect("utf-8").to_string();
    let first = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(first.code(), 1, "{}", first.stderr());
    let rel = "docs/stories/1.1.story.md";
    project.write(rel, &project.read(rel).replace("\nApproved\n", "\nDone\n"));
    // The dry run says so too.
    let plan = Run::project(&project, &["--story", "1.1", "--dry-run"], &[]);
    assert_eq!(plan.code(), 0, "{}", plan.stderr());
    assert_eq!(plan.events_named("plan")[0]["next"], "qa (cycle 1)");
    let log = fake_log::env_value(&project);
    let second = Run::project(
        &project,
        &["--story", "1.1", "--fresh"],
        &[("FAKE_CLAUDE_LOG", &log)],
    );
    assert_eq!(second.code(), 0, "{}", second.stderr());
    assert_eq!(roles_for(&project, "1.1"), ["qa"], "{}", second.stderr());
}

#[test]
fn done_at_the_first_sighting_or_after_a_review_is_not_reviewed_again() {
    let project = Project::fixture("v4-sample");
    // 1.2 was Done before bmad-host ever saw it.
    let rel = "docs/stories/1.2.story.md";
    project.write(rel, &project.read(rel).replace("\nDraft\n", "\nDone\n"));
    let log = fake_log::env_value(&project);
    let run = Run::project(&project, &["--story", "1.2"], &[("FAKE_CLAUDE_LOG", &log)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.2")["result"], "done");
    assert!(roles_for(&project, "1.2").is_empty());
    // 1.1 reviewed by QA in one run is not reviewed again by the next.
    let run = Run::project(&project, &["--story", "1.1"], &[("FAKE_CLAUDE_LOG", &log)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let again = Run::project(&project, &["--story", "1.1"], &[("FAKE_CLAUDE_LOG", &log)]);
    assert_eq!(again.code(), 0, "{}", again.stderr());
    assert_eq!(roles_for(&project, "1.1"), ["dev", "qa"]);
}

#[test]
fn require_review_false_keeps_a_dev_done_and_config_shows_it() {
    let project = Project::fixture("v4-sample");
    let dir = project.path().to_str().expect("utf-8").to_string();
    let shown = |run: &Run| {
        run.events
            .iter()
            .find(|e| e["key"] == "workflow.require_review")
            .cloned()
            .unwrap_or_else(|| panic!("no workflow.require_review in {:?}", run.events))
    };
    let config = Run::bmad_host(&["config", "--json", "--project", &dir], &[]);
    assert_eq!(config.code(), 0, "{}", config.stderr());
    assert_eq!(shown(&config)["value"], "true");
    assert_eq!(shown(&config)["source"], "default");

    project.write("bmad-host.toml", "[workflow]\nrequire_review = false\n");
    let config = Run::bmad_host(&["config", "--json", "--project", &dir], &[]);
    assert_eq!(shown(&config)["value"], "false");
    assert!(
        shown(&config)["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("file ")),
        "{:?}",
        shown(&config)
    );
    let (run, roles) = run_with_dev_writing(&project, "1.1", json!({"status": "Done"}), &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(roles, ["dev"], "today's behaviour: no review");
}

// ----- the journal fails closed -----

fn journal_file(project: &Project) -> std::path::PathBuf {
    project.path().join(".bmad-host/journal.sqlite")
}

/// The journal's files (database, WAL, shared memory), with their bytes.
fn journal_bytes(project: &Project) -> Vec<(String, Vec<u8>)> {
    let dir = project.path().join(".bmad-host");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("state dir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("journal.sqlite")
        })
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    files.sort();
    files
}

/// A run of story 1.1 stopped by a usage limit in QA: an unfinished run whose Dev step, gates
/// and decisions are in the journal.
fn unfinished_run(project: &Project) {
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"check\"\ncommand = \"true\"\n",
    );
    let script = project.script(&json!({"calls": [{"role": "qa", "do": "usage_limit"}]}));
    let script = script.to_str().expect("utf-8").to_string();
    // The gate is a command in the project's file: trusted for this test.
    let run = Run::project(
        project,
        &["--trust", "--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        run.events_named("run_finished").len(),
        1,
        "{}",
        run.stderr()
    );
}

fn sql(project: &Project, statement: &str) {
    let conn = rusqlite::Connection::open(journal_file(project)).expect("open journal");
    let changed = conn.execute(statement, []).expect("update journal");
    assert!(changed > 0, "{statement} changed nothing");
}

fn assert_fails_closed(project: &Project, what: &str) {
    let before = journal_bytes(project);
    assert!(!before.is_empty());
    let log = fake_log::env_value(project);
    let run = Run::project(
        project,
        &["--trust", "--story", "1.1"],
        &[("FAKE_CLAUDE_LOG", &log)],
    );
    assert_eq!(run.code(), 2, "{what}: {}", run.stderr());
    let message = run.stderr();
    for needed in ["run ", "story 1.1", what, "--fresh"] {
        assert!(message.contains(needed), "names {needed:?}: {message}");
    }
    assert!(!message.contains("panicked"), "{message}");
    assert!(fake_log::calls(project).is_empty(), "no agent ran");
    assert!(
        journal_bytes(project) == before,
        "{what}: the journal changed"
    );
}

#[test]
fn an_undecodable_workflow_state_stops_the_run_and_leaves_the_journal_alone() {
    let project = Project::fixture("v4-sample");
    unfinished_run(&project);
    sql(
        &project,
        "UPDATE stories SET findings = '{\"cycle\": \"two\"}' WHERE story_id = '1.1'",
    );
    assert_fails_closed(&project, "workflow state");
}

#[test]
fn undecodable_gate_reports_stop_the_run_and_leave_the_journal_alone() {
    let project = Project::fixture("v4-sample");
    unfinished_run(&project);
    sql(
        &project,
        "UPDATE steps SET result = '{\"reports\": \"none\"}' WHERE kind = 'gates'",
    );
    assert_fails_closed(&project, "gates #");
}

#[test]
fn an_undecodable_decision_stops_the_run_and_leaves_the_journal_alone() {
    let project = Project::fixture("v4-sample");
    unfinished_run(&project);
    sql(
        &project,
        "UPDATE steps SET result = '\"maybe\"' WHERE kind = 'decision' AND story_id = '1.1'",
    );
    assert_fails_closed(&project, "decision #");
}

#[test]
fn an_undecodable_first_sighting_stops_even_a_new_run() {
    let project = Project::fixture("v4-sample");
    unfinished_run(&project);
    sql(
        &project,
        "UPDATE sightings SET first_state = 'finished-ish' WHERE story_id = '1.1'",
    );
    assert_fails_closed(&project, "first sighting");
    // `--fresh` does not read the old run, but the sighting is the project's: still refused.
    let before = journal_bytes(&project);
    let run = Run::project(&project, &["--trust", "--story", "1.1", "--fresh"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(journal_bytes(&project) == before, "the journal changed");
}

// ----- smaller edges -----

#[test]
fn a_tool_idle_timeout_shorter_than_the_idle_timeout_is_a_config_error() {
    let project = Project::fixture("v4-sample");
    let dir = project.path().to_str().expect("utf-8").to_string();
    project.write(
        "bmad-host.toml",
        "[claude]\nidle_timeout = \"20m\"\ntool_idle_timeout = \"5m\"\n",
    );
    for args in [
        vec!["config", "--project", &dir],
        vec!["run", "--project", &dir, "--dry-run"],
    ] {
        let run = Run::bmad_host(&args, &[]);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        let message = run.stderr();
        assert!(
            message.contains("claude.tool_idle_timeout") && message.contains("claude.idle_timeout"),
            "names both keys: {message}"
        );
    }
    // The flag raises it.
    let run = Run::bmad_host(
        &[
            "config",
            "--json",
            "--project",
            &dir,
            "--tool-idle-timeout",
            "1h",
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let shown = run
        .events
        .iter()
        .find(|e| e["key"] == "claude.tool_idle_timeout")
        .cloned()
        .expect("shown");
    assert_eq!(shown["value"], "1h");
    assert_eq!(shown["source"], "flag --tool-idle-timeout");
}

#[test]
fn max_budget_usd_holds_across_the_retries_of_one_call() {
    let project = Project::fixture("v4-sample");
    project.write(
        "bmad-host.toml",
        "[claude]\nmax_budget_usd = 0.5\nretries = 5\n",
    );
    // Every Dev attempt fails transiently after spending $0.40.
    let script = project.script(&json!({
        "calls": [{"role": "dev", "do": "api_error", "status": 529, "cost_usd": 0.4}],
    }));
    let script = script.to_str().expect("utf-8").to_string();
    let log = fake_log::env_value(&project);
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script), ("FAKE_CLAUDE_LOG", &log)],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let budgets: Vec<String> = fake_log::calls(&project)
        .iter()
        .map(|c| {
            let argv = fake_log::argv(c);
            let at = argv
                .iter()
                .position(|a| *a == "--max-budget-usd")
                .expect("a budget");
            argv[at + 1].to_string()
        })
        .collect();
    // $0.50 for the first attempt, what is left for the retry, none once it is spent (a fresh
    // budget per attempt would have retried five times).
    assert_eq!(budgets, ["0.5", "0.1"], "{}", run.stderr());
    let finished = run.events_named("agent_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(
        finished[0]["outcome"], "error_max_budget",
        "{:?}",
        finished[0]
    );
    assert!(
        finished[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("budget") && m.contains("max_budget_usd")),
        "{:?}",
        finished[0]
    );
}
