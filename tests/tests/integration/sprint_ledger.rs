//! The sprint-status ledger (issue #14), through the real binary on the v6 sample: the host owns
//! the story and epic values of `sprint-status.yaml` during a run. An agent that reorders it
//! keeps its order and comments; one that sets values the host owns (its own story done before
//! review, another story's key, the epic) has them put back, with a warning and a
//! `sprint_reconciled` event, and the run goes on. Drift found at the start is repaired and
//! journaled (`bmad-host log`). The epic key follows its stories; with `[workflow]
//! retrospective = "run"` the epic's retrospective runs once, journaled, and sets its key.

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};
use serde_json::{Value, json};

const SPRINT: &str = "_bmad-output/implementation-artifacts/sprint-status.yaml";
const EPICS: &str = "_bmad-output/planning-artifacts/epics.md";
const RETRO_WORKFLOW: &str = "_bmad/bmm/workflows/4-implementation/retrospective/workflow.yaml";

/// Runs the project with a fake-Claude script and its call log.
fn drive(project: &Project, script: &Value, args: &[&str], env: &[(&str, &str)]) -> Run {
    let script = project.script(script);
    let script = script.to_str().expect("utf-8").to_string();
    let log = fake_log::env_value(project);
    let mut all_env = vec![
        ("FAKE_CLAUDE_SCRIPT", script.as_str()),
        ("FAKE_CLAUDE_LOG", log.as_str()),
    ];
    all_env.extend_from_slice(env);
    Run::project(project, args, &all_env)
}

/// The value of `key` in the project's sprint-status (the last line that has it).
fn value(project: &Project, key: &str) -> Option<String> {
    project.read(SPRINT).lines().rev().find_map(|l| {
        let (k, v) = l.trim().split_once(':')?;
        (k == key).then(|| v.split('#').next().unwrap_or("").trim().to_string())
    })
}

/// The `sprint_reconciled` events of `when`, and their changes as `key: from -> to`.
fn reconciled(run: &Run, when: &str) -> Vec<String> {
    run.events_named("sprint_reconciled")
        .into_iter()
        .filter(|e| e["when"] == when)
        .flat_map(|e| e["changes"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c["key"].as_str().unwrap_or(""),
                c["from"].as_str().unwrap_or(""),
                c["to"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn an_agent_that_reorders_sprint_status_keeps_its_order_and_comments() {
    let project = Project::fixture("v6-sample");
    let original = project.read(SPRINT);
    // Dev reorders the file, adds a comment, drops another's, closes the epic and moves 1.3.
    let script = json!({"calls": [{"role": "dev", "story": "1.1", "sprint_reorder": true,
        "sprint_set": {"epic-1": "done", "1.3": "review"}}]});
    let run = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    let mut changes = reconciled(&run, "after-agent");
    changes.sort();
    assert_eq!(
        changes,
        [
            "1-3-count-characters: review -> backlog",
            "epic-1: done -> in-progress",
        ]
    );
    // The agent's order, its comment and the comment it dropped stay as it left them; the
    // host's values are back (and QA's review took 1.1 to done); every other byte as it was.
    let head = &original[..original.find("development_status:\n").expect("block")];
    assert_eq!(
        project.read(SPRINT),
        format!(
            "{head}development_status:\n  # reordered by the agent\n  epic-1-retrospective: optional\n  1-3-count-characters: backlog\n  1-2-count-words: backlog\n  1-1-count-lines: done\n  epic-1: in-progress\n"
        )
    );
}

#[test]
fn values_an_agent_sets_that_the_host_owns_are_put_back_with_a_warning() {
    let project = Project::fixture("v6-sample");
    // Dev marks its own story done before review, starts the next story and closes the epic.
    let script = json!({"calls": [{"role": "dev", "story": "1.1",
        "sprint_set": {"1.1": "done", "1.2": "in-progress", "epic-1": "done"}}]});
    let run = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    let mut changes = reconciled(&run, "after-agent");
    changes.sort();
    assert_eq!(
        changes,
        [
            "1-1-count-lines: done -> review",
            "1-2-count-words: in-progress -> backlog",
            "epic-1: done -> in-progress",
        ],
        "{}",
        run.stderr()
    );
    let event = run
        .events_named("sprint_reconciled")
        .into_iter()
        .find(|e| e["when"] == "after-agent")
        .cloned()
        .expect("event");
    assert_eq!(event["story"], "1.1");
    assert_eq!(event["file"], SPRINT);
    assert!(
        event["changes"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{event}"
    );
    // People see it, as a warning in the log and a line of progress.
    let stderr = run.stderr();
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("sprint-status reconciled"), "{stderr}");
    assert!(
        stderr.contains("`1-1-count-lines` done → review (story 1.1's file says review)"),
        "{stderr}"
    );
    // QA still reviewed it; the end state is the host's.
    assert_eq!(value(&project, "1-1-count-lines").as_deref(), Some("done"));
    assert_eq!(
        value(&project, "1-2-count-words").as_deref(),
        Some("backlog")
    );
    assert_eq!(value(&project, "epic-1").as_deref(), Some("in-progress"));
    // Journaled as the host's own step.
    let log = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    let syncs: Vec<&Value> = log
        .events
        .iter()
        .filter(|s| s["kind"] == "sprint-sync" && s["intent"]["when"] == "after-agent")
        .collect();
    assert_eq!(syncs.len(), 1, "{:?}", log.events);
    assert_eq!(syncs[0]["story"], "1.1");
    assert_eq!(syncs[0]["role"], "host");
    assert_eq!(syncs[0]["result"]["applied"], true);
}

#[test]
fn drift_found_at_the_start_is_repaired_and_journaled_and_legacy_values_are_read() {
    let project = Project::fixture("v6-sample");
    let original = project.read(SPRINT);
    let drifted = original
        .replace("  epic-1: in-progress", "  epic-1: backlog")
        .replace(
            "  1-1-count-lines: ready-for-dev",
            "  1-1-count-lines: drafted",
        )
        .replace(
            "  1-3-count-characters: backlog",
            "  1-2a-split-words: contexted\n  1-3-count-characters: review",
        );
    assert_ne!(drifted, original);
    project.write(SPRINT, &drifted);
    // The legacy values and the letter key parse: `status` reads them.
    let status = Run::bmad_host(
        &[
            "status",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(status.code(), 0, "{}", status.stderr());
    let ids: Vec<&str> = status
        .events
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert_eq!(ids, ["1.1", "1.2", "1.2a", "1.3"], "{:?}", status.events);
    // A dry run writes nothing.
    let plan = drive(&project, &json!({}), &["--story", "1.1", "--dry-run"], &[]);
    assert_eq!(plan.code(), 0, "{}", plan.stderr());
    assert_eq!(project.read(SPRINT), drifted);

    let run = drive(&project, &json!({}), &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let mut changes = reconciled(&run, "start");
    changes.sort();
    assert_eq!(
        changes,
        [
            "1-1-count-lines: drafted -> ready-for-dev",
            "1-2a-split-words: contexted -> backlog",
            "1-3-count-characters: review -> backlog",
            "epic-1: backlog -> in-progress",
        ],
        "{}",
        run.stderr()
    );
    let start = run
        .events_named("sprint_reconciled")
        .into_iter()
        .find(|e| e["when"] == "start")
        .cloned()
        .expect("event");
    assert_eq!(start["story"], Value::Null);
    // The repair is in the journal, as the host's step before any story.
    let log = Run::bmad_host(
        &["log", "--project", project.path().to_str().expect("utf-8")],
        &[],
    );
    let text = String::from_utf8_lossy(&log.output.stdout).into_owned();
    assert!(text.contains("sprint-sync"), "{text}");
    assert!(text.contains("sprint-status"), "{text}");
    let json_log = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    let first = json_log
        .events
        .iter()
        .find(|s| s["kind"] == "sprint-sync")
        .expect("a sprint-sync step");
    assert_eq!(first["story"], "sprint-status");
    assert_eq!(first["intent"]["when"], "start");
    assert_eq!(first["intent"]["changes"].as_array().map(Vec::len), Some(4));
    // Every other byte of the file is as it was, the story went on to done.
    let now = project.read(SPRINT);
    assert_eq!(
        now,
        drifted
            .replace("  epic-1: backlog", "  epic-1: in-progress")
            .replace("  1-1-count-lines: drafted", "  1-1-count-lines: done")
            .replace(
                "  1-2a-split-words: contexted",
                "  1-2a-split-words: backlog"
            )
            .replace(
                "  1-3-count-characters: review",
                "  1-3-count-characters: backlog"
            )
    );
}

#[test]
fn the_epic_key_follows_its_stories_and_the_retrospective_is_off_by_default() {
    let project = Project::fixture("v6-sample");
    // No story has started: the epic is in the backlog until the host starts its first.
    std::fs::remove_file(
        project
            .path()
            .join("_bmad-output/implementation-artifacts/1-1-count-lines.md"),
    )
    .expect("remove");
    project.write(
        SPRINT,
        &project
            .read(SPRINT)
            .replace("  epic-1: in-progress", "  epic-1: backlog")
            .replace(
                "  1-1-count-lines: ready-for-dev",
                "  1-1-count-lines: backlog",
            ),
    );
    project.write(RETRO_WORKFLOW, "name: retrospective\n");
    let run = drive(&project, &json!({}), &["--epic", "1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(reconciled(&run, "start"), Vec::<String>::new());
    assert_eq!(
        reconciled(&run, "story-start"),
        ["epic-1: backlog -> in-progress"]
    );
    // The epic is done with its last story: as soon as the review's agent call set 1.3 done
    // (BMAD v6's code-review writes it), else when the story ends.
    let closing: Vec<String> = ["after-agent", "story-end"]
        .iter()
        .flat_map(|w| reconciled(&run, w))
        .filter(|c| c.starts_with("epic-1:"))
        .collect();
    assert_eq!(closing, ["epic-1: in-progress -> done"], "{}", run.stderr());
    let done_at = run
        .events
        .iter()
        .position(|e| {
            e["event"] == "sprint_reconciled"
                && e["changes"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().any(|c| c["key"] == "epic-1" && c["to"] == "done"))
        })
        .expect("closeout");
    let last_story = run
        .events
        .iter()
        .position(|e| e["event"] == "story_finished" && e["story"] == "1.3")
        .expect("1.3 finished");
    assert!(done_at < last_story, "the epic closes with its last story");
    assert_eq!(value(&project, "epic-1").as_deref(), Some("done"));
    for key in ["1-1-count-lines", "1-2-count-words", "1-3-count-characters"] {
        assert_eq!(value(&project, key).as_deref(), Some("done"), "{key}");
    }
    // retrospective = "off" (the default): never called, the key stays.
    assert_eq!(
        value(&project, "epic-1-retrospective").as_deref(),
        Some("optional")
    );
    let calls = fake_log::calls(&project);
    assert!(calls.iter().all(|c| c["story"] != "epic-1"), "{calls:?}");
}

/// The v6 sample with a second epic of one story, and the retrospective workflow installed.
fn two_epics() -> Project {
    let project = Project::fixture("v6-sample");
    project.write(
        EPICS,
        &format!(
            "{}\n## Epic 2: Totals\n\nSum the counts.\n\n### Story 2.1: Grand Total\n\nAs a user,\nI want a total,\nSo that I see everything.\n",
            project.read(EPICS)
        ),
    );
    project.write(
        SPRINT,
        &project.read(SPRINT).replace(
            "  epic-1-retrospective: optional",
            "  epic-1-retrospective: optional\n\n  epic-2: backlog\n  2-1-grand-total: backlog\n  epic-2-retrospective: optional",
        ),
    );
    project.write(RETRO_WORKFLOW, "name: retrospective\n");
    project.write(
        "_bmad/bmm/workflows/4-implementation/retrospective/instructions.md",
        "# Retrospective\n",
    );
    project
}

/// The fake's calls for an epic's retrospective.
fn retrospectives(project: &Project, epic: &str) -> Vec<Value> {
    fake_log::calls(project)
        .into_iter()
        .filter(|c| c["story"] == epic)
        .collect()
}

#[test]
fn retrospective_run_is_called_once_per_epic_sets_its_key_and_is_not_rerun_on_resume() {
    let project = two_epics();
    let env = [("BMAD_HOST_WORKFLOW_RETROSPECTIVE", "run")];
    // Story 2.1's SM call hits a usage limit: the run stops after epic 1's retrospective.
    let script = json!({"calls": [
        {"role": "sm", "story": "2.1", "occurrence": 1, "do": "usage_limit"}
    ]});
    let first = drive(&project, &script, &[], &env);
    assert_eq!(first.code(), 1, "{}", first.stderr());
    let calls = retrospectives(&project, "epic-1");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["role"], "sm");
    let prompt = fake_log::prompt(&calls[0]);
    assert!(prompt.contains(RETRO_WORKFLOW), "{prompt}");
    assert!(prompt.contains("epic 1"), "{prompt}");
    assert_eq!(
        value(&project, "epic-1-retrospective").as_deref(),
        Some("done")
    );
    assert_eq!(
        reconciled(&first, "retrospective"),
        ["epic-1-retrospective: optional -> done"]
    );
    let agent = first
        .events_named("agent_finished")
        .into_iter()
        .find(|e| e["story"] == "epic-1")
        .cloned()
        .expect("the retrospective's agent_finished");
    assert_eq!(agent["role"], "sm");
    assert_eq!(agent["outcome"], "success");

    // A dry run says the retrospective would run, and runs nothing.
    let plan = drive(&project, &script, &["--dry-run"], &env);
    assert_eq!(plan.code(), 0, "{}", plan.stderr());
    assert!(
        plan.stderr().contains(&format!(
            "retrospective = \"run\": an epic whose last story the run takes to done gets its retrospective ({}, {RETRO_WORKFLOW})",
            RETRO_WORKFLOW.replace("workflow.yaml", "instructions.md")
        )),
        "{}",
        plan.stderr()
    );
    assert_eq!(retrospectives(&project, "epic-1").len(), 1);

    // The resumed run drives epic 1's stories to their end again: no second retrospective.
    let second = drive(&project, &script, &[], &env);
    assert_eq!(second.code(), 0, "{}", second.stderr());
    assert_eq!(second.events_named("run_started")[0]["resumed"], true);
    assert_eq!(retrospectives(&project, "epic-1").len(), 1);
    assert_eq!(retrospectives(&project, "epic-2").len(), 1);
    assert_eq!(value(&project, "epic-2").as_deref(), Some("done"));
    assert_eq!(
        value(&project, "epic-2-retrospective").as_deref(),
        Some("done")
    );
}

#[test]
fn a_retrospective_cut_by_a_usage_limit_is_redone_once_on_resume() {
    let project = two_epics();
    let env = [("BMAD_HOST_WORKFLOW_RETROSPECTIVE", "run")];
    let script = json!({"calls": [
        {"role": "sm", "story": "epic-1", "occurrence": 1, "do": "usage_limit"}
    ]});
    let first = drive(&project, &script, &["--epic", "1"], &env);
    assert_eq!(first.code(), 1, "{}", first.stderr());
    assert_eq!(
        value(&project, "epic-1-retrospective").as_deref(),
        Some("optional")
    );
    let second = drive(&project, &script, &["--epic", "1"], &env);
    assert_eq!(second.code(), 0, "{}", second.stderr());
    assert_eq!(retrospectives(&project, "epic-1").len(), 2);
    assert_eq!(
        value(&project, "epic-1-retrospective").as_deref(),
        Some("done")
    );
    // A new run over a finished epic: nothing more.
    let third = drive(&project, &script, &["--epic", "1", "--fresh"], &env);
    assert_eq!(third.code(), 0, "{}", third.stderr());
    assert_eq!(retrospectives(&project, "epic-1").len(), 2);
}

#[test]
fn a_done_no_review_accepted_yet_is_review_in_sprint_status() {
    // A Dev that writes `done` into its story and sprint-status: sprint-status says `review`
    // until QA's review completes the story.
    let project = Project::fixture("v6-sample");
    let script = json!({"calls": [{"role": "dev", "story": "1.1",
        "set_status": "done", "sprint_status": "done"}]});
    let run = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        reconciled(&run, "after-agent"),
        ["1-1-count-lines: done -> review"],
        "{}",
        run.stderr()
    );
    assert!(
        run.stderr()
            .contains("story 1.1's file says done, but no review has accepted it yet"),
        "{}",
        run.stderr()
    );
    assert_eq!(value(&project, "1-1-count-lines").as_deref(), Some("done"));

    // BMAD 6.12's bmad-build: the spec says done, sprint-status review: nothing to put back,
    // and the review's done is the review's.
    let project = Project::fixture("v6-sample");
    let script = json!({"calls": [{"role": "dev", "story": "1.1",
        "set_status": "done", "sprint_status": "review"}]});
    let run = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("sprint_reconciled"), Vec::<&Value>::new());
    assert_eq!(value(&project, "1-1-count-lines").as_deref(), Some("done"));
}

#[test]
fn a_story_file_without_a_key_is_reported_once_when_the_run_starts() {
    let project = Project::fixture("v6-sample");
    // Story 1.2 has a file but sprint-status lost its key: reported, never added, no failure.
    project.write(
        "_bmad-output/implementation-artifacts/1-2-count-words.md",
        &project
            .read("_bmad-output/implementation-artifacts/1-1-count-lines.md")
            .replace("1.1: Count Lines", "1.2: Count Words"),
    );
    let without = project
        .read(SPRINT)
        .replace("  1-2-count-words: backlog\n", "");
    project.write(SPRINT, &without);
    let run = drive(&project, &json!({}), &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let problems: Vec<String> = run
        .events_named("sprint_reconciled")
        .iter()
        .flat_map(|e| e["problems"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("no key for story 1.2 (it should say `ready-for-dev`)"),
        "{problems:?}"
    );
    assert!(!project.read(SPRINT).contains("1-2-count-words"));
}

#[test]
fn a_sprint_sync_a_killed_host_left_open_is_closed_when_the_run_resumes() {
    use bmad_host::journal::{Journal, StepKey, StepKind, StepStart};
    let project = Project::fixture("v6-sample");
    // The first run stops (a usage limit) with the run unfinished.
    let script =
        json!({"calls": [{"role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit"}]});
    let first = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(first.code(), 1, "{}", first.stderr());
    // As a host killed with `kill -9` between a sprint-sync's intent and its result leaves it:
    // the values (here already in the file) written, the result missing.
    {
        let mut journal = Journal::open(project.path()).expect("journal");
        let run = journal.latest_run().expect("runs").expect("a run");
        let key = StepKey {
            run,
            story: "1.1".into(),
            cycle: 0,
            role: "host".into(),
            kind: StepKind::SprintSync,
            seq: 7,
        };
        let intent = json!({"changes": [{"from": "backlog", "key": "epic-1", "line": 32,
            "reason": "story 1.1 has started", "to": "in-progress"}],
            "file": SPRINT, "problems": [], "when": "after-agent"});
        assert!(matches!(
            journal.begin_step(&key, &intent).expect("begin"),
            StepStart::Fresh(_)
        ));
    }
    let second = drive(&project, &script, &["--story", "1.1"], &[]);
    assert_eq!(second.code(), 0, "{}", second.stderr());
    assert_eq!(second.events_named("run_started")[0]["resumed"], true);
    let log = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    let settled = log
        .events
        .iter()
        .find(|s| s["kind"] == "sprint-sync" && s["seq"] == 7)
        .expect("the open step");
    assert_eq!(settled["result"]["applied"], true, "{settled}");
}

#[test]
fn the_ledger_plan_owns_story_and_epic_values_and_leaves_the_rest() {
    use std::collections::{BTreeMap, BTreeSet};

    use bmad_host::policy::StoryState;
    use bmad_host::project::{Known, Project as BmadProject, StoryId};

    let project = Project::fixture("v6-sample");
    let base = project.read(SPRINT);
    let plan_for = |sprint: &str, known: &[(u32, Known)], started: &[u32]| {
        project.write(SPRINT, sprint);
        let p = BmadProject::discover(project.path()).expect("discover");
        let known: BTreeMap<StoryId, Known> = known
            .iter()
            .map(|(n, k)| (StoryId::new(1, *n), *k))
            .collect();
        let started: BTreeSet<u32> = started.iter().copied().collect();
        let plan = p
            .plan_sprint_ledger(&known, &started, &BTreeSet::new())
            .expect("v6");
        let changes: Vec<String> = plan
            .changes
            .iter()
            .map(|c| format!("{}: {} -> {}", c.key, c.from, c.to))
            .collect();
        (changes, plan.problems.clone(), plan.missing.clone())
    };
    let state = Known::State;
    // Everything agrees: nothing to do.
    let all = [
        (1, state(StoryState::ReadyForDev)),
        (2, Known::NoFile),
        (3, Known::NoFile),
    ];
    assert_eq!(plan_for(&base, &all, &[]).0, Vec::<String>::new());
    // Unknown and blocked stories are not asserted; the retrospective key is never touched.
    let odd = base
        .replace("1-1-count-lines: ready-for-dev", "1-1-count-lines: review")
        .replace("1-2-count-words: backlog", "1-2-count-words: done")
        .replace(
            "epic-1-retrospective: optional",
            "epic-1-retrospective: done",
        );
    let known = [
        (1, Known::Unknown),
        (2, state(StoryState::Blocked)),
        (3, Known::NoFile),
    ];
    assert_eq!(plan_for(&odd, &known, &[]).0, Vec::<String>::new());
    // All done: the epic is done; an unreviewed done is review.
    let done = [
        (1, state(StoryState::Done)),
        (2, state(StoryState::Done)),
        (3, Known::Unreviewed),
    ];
    assert_eq!(
        plan_for(&base, &done, &[]).0,
        [
            "1-1-count-lines: ready-for-dev -> done",
            "1-2-count-words: backlog -> done",
            "1-3-count-characters: backlog -> review",
        ]
    );
    let done = [
        (1, state(StoryState::Done)),
        (2, state(StoryState::Done)),
        (3, state(StoryState::Done)),
    ];
    assert!(
        plan_for(&base, &done, &[])
            .0
            .contains(&"epic-1: in-progress -> done".to_string())
    );
    // Nothing started: a `done` epic goes back to backlog, any other value stays; an epic the
    // host started is in progress; the legacy `contexted` is read as in progress.
    let none = [(1, Known::NoFile), (2, Known::NoFile), (3, Known::NoFile)];
    let sprint = base.replace("1-1-count-lines: ready-for-dev", "1-1-count-lines: backlog");
    assert_eq!(
        plan_for(
            &sprint.replace("epic-1: in-progress", "epic-1: done"),
            &none,
            &[]
        )
        .0,
        ["epic-1: done -> backlog"]
    );
    assert_eq!(plan_for(&sprint, &none, &[]).0, Vec::<String>::new());
    assert_eq!(
        plan_for(
            &sprint.replace("epic-1: in-progress", "epic-1: backlog"),
            &none,
            &[1]
        )
        .0,
        ["epic-1: backlog -> in-progress"]
    );
    assert_eq!(
        plan_for(
            &sprint.replace("epic-1: in-progress", "epic-1: contexted"),
            &none,
            &[]
        )
        .0,
        Vec::<String>::new()
    );
    // A file the host may not edit is a problem, not an error.
    let (changes, problems, _) = plan_for(
        "development_status: {epic-1: done, 1-1-count-lines: review}\n",
        &all,
        &[],
    );
    assert!(changes.is_empty());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("will not edit it"), "{problems:?}");
}
