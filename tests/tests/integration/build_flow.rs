//! The BMAD 6.11+ build flow through the binary (#14): which flow a project's installation gets
//! (`status`, `run --dry-run`, exit 2 with neither), each state and transition of the build flow
//! with the fake Claude playing `bmad-build` / `bmad-code-review` on `spec-*.md` files (no spec →
//! build → gates → review → done; review sends back → build again; max cycles; a spec already
//! done or in review; drift between the spec and sprint-status at the start), and, for every
//! corpus project, that each path a default policy's prompt names exists in it.

use std::collections::BTreeSet;
use std::path::Path;

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};
use serde_json::{Value, json};

const IA: &str = "_bmad-output/implementation-artifacts";
const SPRINT: &str = "_bmad-output/implementation-artifacts/sprint-status.yaml";
const SPEC_13: &str = "_bmad-output/implementation-artifacts/spec-1-3-sign-in-and-session.md";

fn status_json(project: &Project) -> Run {
    Run::bmad_host(
        &[
            "status",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    )
}

/// The `flow` and `flow_why` of `status --json` (the same on every line).
fn flow_of(project: &Project) -> (String, String) {
    let run = status_json(project);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let first = run.events.first().expect("a story line");
    for line in &run.events {
        assert_eq!(line["flow"], first["flow"], "{line}");
    }
    (
        first["flow"].as_str().expect("flow").to_owned(),
        first["flow_why"].as_str().expect("flow_why").to_owned(),
    )
}

/// The sprint-status value of `key`.
fn sprint_value(project: &Project, key: &str) -> String {
    let text = project.read(SPRINT);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in sprint-status:\n{text}"))
        .trim()
        .to_owned()
}

/// The frontmatter `status:` of a spec.
fn spec_status(project: &Project, rel: &str) -> String {
    let text = project.read(rel);
    text.lines()
        .find_map(|l| l.strip_prefix("status:"))
        .unwrap_or_else(|| panic!("no status: in {rel}:\n{text}"))
        .trim()
        .trim_matches('\'')
        .to_owned()
}

fn run_story(project: &Project, story: &str, extra: &[&str], script: &Value) -> Run {
    let script = project.script(script);
    let log = fake_log::env_value(project);
    let mut args = vec!["--story", story];
    args.extend_from_slice(extra);
    Run::project(
        project,
        &args,
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("FAKE_CLAUDE_LOG", &log),
        ],
    )
}

fn roles(project: &Project) -> Vec<String> {
    fake_log::calls(project)
        .iter()
        .map(|c| c["role"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn the_flow_follows_what_is_installed() {
    // v4 is v4; the 6.0.4 corpus has the story workflows; 6.12 has bmad-build and no shims.
    let (flow, why) = flow_of(&Project::corpus("v4"));
    assert_eq!(flow, "v4", "{why}");
    let (flow, why) = flow_of(&Project::corpus("v6"));
    assert_eq!(flow, "stories");
    assert!(why.contains("create-story/workflow.yaml"), "{why}");
    let build = Project::corpus("v6.12-build");
    let (flow, why) = flow_of(&build);
    assert_eq!(flow, "build");
    assert!(
        why.contains(".claude/skills/bmad-build-auto/SKILL.md"),
        "{why}"
    );
    // The tests' own v6 sample has the workflow folders.
    assert_eq!(flow_of(&Project::fixture("v6-sample")).0, "stories");

    // A 6.12 installation that kept the shims keeps the story flow.
    let shims = Project::corpus("v6.12-build");
    shims.write(
        ".claude/skills/bmad-dev-story/SKILL.md",
        "---\nname: bmad-dev-story\n---\n",
    );
    let (flow, why) = flow_of(&shims);
    assert_eq!(flow, "stories");
    assert!(why.contains("bmad-dev-story"), "{why}");
    // The story flow's files are stories: 1.3 would be drafted at `1-3-...md`.
    let run = status_json(&shims);
    let s13 = run.events.iter().find(|e| e["id"] == "1.3").expect("1.3");
    assert_eq!(s13["file"], format!("{IA}/1-3-sign-in-and-session.md"));
    // The build flow's are specs.
    let run = status_json(&build);
    let s13 = run.events.iter().find(|e| e["id"] == "1.3").expect("1.3");
    assert_eq!(s13["file"], SPEC_13);

    // The text output says it too.
    let run = Run::bmad_host(
        &["status", "--project", build.path().to_str().expect("utf-8")],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("flow: build flow (bmad-build → gates → bmad-code-review)"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_v6_installation_with_neither_flow_is_exit_2_naming_what_is_missing() {
    let none = Project::corpus("v6.12-build");
    std::fs::remove_dir_all(none.path().join(".claude")).expect("rm .claude");
    std::fs::remove_file(none.path().join("_bmad/_config/skill-manifest.csv")).expect("rm csv");
    let dir = none.path().to_str().expect("utf-8");
    for args in [
        vec!["status", "--project", dir],
        vec!["run", "--dry-run", "--project", dir],
        vec!["run", "--project", dir, "--claude-bin", "/bin/false"],
    ] {
        let run = Run::bmad_host(&args, &[]);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        let err = run.stderr();
        for needle in [
            "BMAD 6.12.0",
            "no implementation flow",
            "bmad-build",
            "create-story / dev-story",
            "npx bmad-method install",
            "--shims",
        ] {
            assert!(
                err.contains(needle),
                "{args:?}: {needle:?} missing in {err}"
            );
        }
    }
    // A skill list with neither, at any version, is the same error.
    let listed = Project::corpus("v6");
    std::fs::remove_dir_all(listed.path().join("_bmad/bmm/workflows")).expect("rm workflows");
    listed.write(
        ".claude/skills/bmad-help/SKILL.md",
        "---\nname: bmad-help\n---\n",
    );
    assert_eq!(status_json(&listed).code(), 2);
}

#[test]
fn dry_run_names_the_flow_and_the_build_steps() {
    let project = Project::corpus("v6.12-build");
    let run = Run::project(&project, &["--dry-run"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains(
            "flow: build flow (bmad-build → gates → bmad-code-review): bmad-build is installed"
        ),
        "{}",
        run.stderr()
    );
    let plan = run.events_named("plan");
    let next = |id: &str| {
        let p = plan.iter().find(|p| p["story"] == id).expect("story");
        assert_eq!(p["flow"], "build", "{p}");
        p["next"].as_str().expect("next").to_owned()
    };
    assert_eq!(next("1.1"), "nothing: done");
    assert_eq!(next("1.2"), "qa: code-review (cycle 1)");
    assert_eq!(next("1.3"), "dev: build (cycle 1)");
    // Nothing changed.
    assert!(!project.path().join(SPEC_13).exists());
}

#[test]
fn no_spec_build_gates_review_done() {
    let project = Project::corpus("v6.12-build");
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"check\"\ncommand = \"true\"\n",
    );
    let run = run_story(&project, "1.3", &["--trust"], &json!({}));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let result = run.story_result("1.3");
    assert_eq!(result["result"], "done", "{result}");
    assert_eq!(result["cycles"], 1);
    // bmad-build then bmad-code-review: no SM step in the build flow.
    assert_eq!(roles(&project), ["dev", "qa"]);
    let calls = fake_log::calls(&project);
    let build = fake_log::prompt(&calls[0]);
    assert!(
        build.contains(".claude/skills/bmad-build-auto/SKILL.md") && build.contains(SPEC_13),
        "{build}"
    );
    assert!(build.contains("does not exist yet"), "{build}");
    let review = fake_log::prompt(&calls[1]);
    assert!(
        review.contains(".claude/skills/bmad-code-review/SKILL.md"),
        "{review}"
    );
    // The gate ran between the build and the review.
    assert_eq!(run.events_named("gate_finished").len(), 1);
    // bmad-build left its spec `done` and sprint-status `review`: the host made the spec
    // `in-review` (nobody had reviewed it), then the review made all `done`.
    let after_build = run
        .events_named("ledgers_reconciled")
        .into_iter()
        .find(|e| e["when"] == "step" && e["state"] == "review")
        .unwrap_or_else(|| panic!("no reconciliation after the build:\n{:?}", run.events));
    assert!(
        after_build["changes"][0]
            .as_str()
            .is_some_and(|c| c.contains("spec-1-3-sign-in-and-session.md: done → in-review")),
        "{after_build}"
    );
    assert_eq!(spec_status(&project, SPEC_13), "done");
    assert_eq!(sprint_value(&project, "1-3-sign-in-and-session"), "done");
}

#[test]
fn build_auto_writes_no_sprint_status_and_the_host_does() {
    let project = Project::corpus("v6.12-build");
    let run = run_story(
        &project,
        "1.3",
        &[],
        &json!({ "calls": [ { "role": "dev", "no_sprint": true } ] }),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let after_build = run
        .events_named("ledgers_reconciled")
        .into_iter()
        .find(|e| e["when"] == "step" && e["state"] == "review")
        .unwrap_or_else(|| panic!("no reconciliation after the build:\n{:?}", run.events));
    let changes = after_build["changes"].to_string();
    assert!(
        changes.contains("1-3-sign-in-and-session: backlog → review"),
        "{changes}"
    );
    assert_eq!(sprint_value(&project, "1-3-sign-in-and-session"), "done");
}

#[test]
fn a_review_sends_the_story_back_to_build_then_done() {
    let project = Project::corpus("v6.12-build");
    let run = run_story(
        &project,
        "1.3",
        &[],
        &json!({ "calls": [ { "role": "qa", "verdicts": ["FAIL", "PASS"] } ] }),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let result = run.story_result("1.3");
    assert_eq!(result["result"], "done", "{result}");
    assert_eq!(result["cycles"], 2);
    assert_eq!(roles(&project), ["dev", "qa", "dev", "qa"]);
    let calls = fake_log::calls(&project);
    let second_build = fake_log::prompt(&calls[2]);
    assert!(
        second_build.contains("[Review][High] Add the missing tests")
            && second_build.contains("sent this story back")
            && second_build.contains("resume it"),
        "{second_build}"
    );
    assert!(fake_log::prompt(&calls[3]).contains("re-review"));
    assert_eq!(spec_status(&project, SPEC_13), "done");
    assert_eq!(sprint_value(&project, "1-3-sign-in-and-session"), "done");
}

#[test]
fn max_cycles_escalates_the_build_flow() {
    let project = Project::corpus("v6.12-build");
    let run = run_story(
        &project,
        "1.3",
        &["--max-cycles", "1"],
        &json!({ "calls": [ { "role": "qa", "verdicts": ["FAIL"] } ] }),
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.3");
    assert_eq!(result["result"], "escalated", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max cycles reached (1")),
        "{result}"
    );
    assert_eq!(roles(&project), ["dev", "qa"]);
    // The send-back is in all three ledgers.
    assert_eq!(spec_status(&project, SPEC_13), "in-progress");
    assert_eq!(
        sprint_value(&project, "1-3-sign-in-and-session"),
        "in-progress"
    );
}

#[test]
fn a_spec_done_or_in_review_at_start_and_drift_repaired_with_a_journal_entry() {
    let project = Project::corpus("v6.12-build");
    let spec_12 = format!("{IA}/spec-1-2-user-registration.md");
    // 1.1's spec is done, as sprint-status says: finished without a step. 1.2's spec is
    // in-review while sprint-status says in-progress: drift, repaired before its review.
    let run = run_story(&project, "1.1", &[], &json!({}));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    assert!(roles(&project).is_empty());
    assert!(run.events_named("ledgers_reconciled").is_empty());

    let run = run_story(&project, "1.2", &[], &json!({}));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.2")["result"], "done");
    // In review: code-review only, no build.
    assert_eq!(roles(&project), ["qa"]);
    let start = run
        .events_named("ledgers_reconciled")
        .into_iter()
        .find(|e| e["when"] == "start")
        .unwrap_or_else(|| panic!("no drift repair at the start:\n{:?}", run.events));
    assert_eq!(start["story"], "1.2");
    assert_eq!(start["state"], "review");
    assert!(
        start["changes"]
            .to_string()
            .contains("1-2-user-registration: in-progress → review"),
        "{start}"
    );
    assert!(run.stderr().contains("drift repaired"), "{}", run.stderr());
    // The repair is in the journal: a status write of the host before the story's first step.
    let log = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(log.code(), 0, "{}", log.stderr());
    let repair = log
        .events
        .iter()
        .find(|s| s["story"] == "1.2" && s["kind"] == "status-write" && s["seq"] == 1000)
        .unwrap_or_else(|| panic!("no journaled repair:\n{:?}", log.events));
    assert_eq!(repair["intent"]["from"], "in-review", "{repair}");
    assert_eq!(repair["result"]["written"], "review", "{repair}");
    assert_eq!(spec_status(&project, &spec_12), "done");
    assert_eq!(sprint_value(&project, "1-2-user-registration"), "done");
}

/// The backticked paths a prompt names (`a/b.md`), without the story's own file, which the
/// prompt may ask the agent to create.
fn cited_paths(prompt: &str, story_file: &str) -> BTreeSet<String> {
    prompt
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| t.contains('/') && !t.contains(' ') && !t.contains('{'))
        .filter(|t| Path::new(t).extension().is_some())
        .filter(|t| *t != story_file)
        .map(str::to_owned)
        .collect()
}

/// Runs `story` of a corpus copy to its end and checks every path each prompt names exists.
fn prompts_cite_only_existing_files(corpus: &str, story: &str, roles_expected: &[&str]) {
    let project = Project::corpus(corpus);
    let run = run_story(&project, story, &[], &json!({}));
    assert_eq!(run.code(), 0, "{corpus}: {}", run.stderr());
    assert_eq!(roles(&project), roles_expected, "{corpus}");
    let mut checked = 0;
    for call in fake_log::calls(&project) {
        let prompt = fake_log::prompt(&call);
        let story_path = call["env"]["BMAD_HOST_STORY_PATH"].as_str().expect("path");
        let story_file = Path::new(story_path)
            .strip_prefix(project.path().canonicalize().expect("canonical"))
            .or_else(|_| Path::new(story_path).strip_prefix(project.path()))
            .expect("story path inside the project")
            .display()
            .to_string();
        for path in cited_paths(&prompt, &story_file) {
            // The QA gate a v4 review writes is an output, not an installed file.
            if path.contains("/qa/gates/") {
                continue;
            }
            assert!(
                project.path().join(&path).exists(),
                "{corpus}: the {} prompt names `{path}`, which the corpus does not have:\n{prompt}",
                call["role"]
            );
            checked += 1;
        }
    }
    assert!(checked >= roles_expected.len(), "{corpus}: {checked} paths");
}

#[test]
fn v4_prompts_cite_only_files_the_corpus_has() {
    prompts_cite_only_existing_files("v4", "1.4", &["sm", "dev", "qa"]);
}

#[test]
fn v6_prompts_cite_only_files_the_corpus_has() {
    prompts_cite_only_existing_files("v6", "1.4", &["sm", "dev", "qa"]);
}

#[test]
fn v612_build_prompts_cite_only_files_the_corpus_has() {
    prompts_cite_only_existing_files("v6.12-build", "1.3", &["dev", "qa"]);
}

#[test]
fn a_story_file_beside_the_spec_is_kept_in_step_too() {
    let project = Project::corpus("v6.12-build");
    // 1.2 was drafted by create-story before the project moved to the build flow.
    let story = format!("{IA}/1-2-user-registration.md");
    project.write(
        &story,
        "# Story 1.2: User Registration\n\nStatus: in-progress\n\n## Story\n\nAs a visitor...\n",
    );
    let run = run_story(&project, "1.2", &[], &json!({}));
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // The spec is the story's file in the build flow: code-review ran on it.
    let calls = fake_log::calls(&project);
    assert_eq!(roles(&project), ["qa"]);
    assert!(fake_log::prompt(&calls[0]).contains("spec-1-2-user-registration.md"));
    let start = run
        .events_named("ledgers_reconciled")
        .into_iter()
        .find(|e| e["when"] == "start")
        .unwrap_or_else(|| panic!("no drift repair at the start:\n{:?}", run.events));
    assert!(
        start["changes"]
            .to_string()
            .contains("1-2-user-registration.md: in-progress → review"),
        "{start}"
    );
    // All three agree at the end, every other byte of the story file kept.
    assert_eq!(
        project.read(&story),
        "# Story 1.2: User Registration\n\nStatus: done\n\n## Story\n\nAs a visitor...\n"
    );
    assert_eq!(
        spec_status(&project, &format!("{IA}/spec-1-2-user-registration.md")),
        "done"
    );
    assert_eq!(sprint_value(&project, "1-2-user-registration"), "done");
}
