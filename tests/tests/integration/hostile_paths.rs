//! Trust boundaries (issue #13), through the real binary: nothing is read or written outside
//! the project. Configured locations that lead out of the project root are configuration
//! errors; a story, QA gate or sprint-status file that is a symlink out of the project is never
//! written through; sprint-status keys that could be paths are refused.

use std::path::Path;

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};

/// `bmad-host status` and `run --dry-run` on the project: both must refuse it the same way.
fn refused(project: &Project, needles: &[&str]) {
    let dir = project.path().to_str().expect("utf-8").to_string();
    for args in [
        vec!["status", "--project", &dir],
        vec!["run", "--dry-run", "--project", &dir],
    ] {
        let run = Run::bmad_host(&args, &[]);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr());
        let message = run.stderr();
        for needle in needles {
            assert!(
                message.contains(needle),
                "{args:?} names {needle:?}: {message}"
            );
        }
        assert!(!message.contains("panicked"), "{message}");
    }
}

fn edit(project: &Project, rel: &str, from: &str, to: &str) {
    let text = project.read(rel);
    assert!(text.contains(from), "{rel} has {from:?}");
    project.write(rel, &text.replacen(from, to, 1));
}

#[test]
fn v4_locations_outside_the_project_are_config_errors() {
    for (from, to, key) in [
        (
            "devStoryLocation: docs/stories",
            "devStoryLocation: ../elsewhere/stories",
            "`devStoryLocation` leads outside the project root",
        ),
        (
            "qaLocation: docs/qa",
            "qaLocation: /tmp/bmad-host-qa",
            "`qa.qaLocation` leads outside the project root",
        ),
        (
            "prdFile: docs/prd.md",
            "prdFile: docs/../../prd.md",
            "`prd.prdFile` leads outside the project root",
        ),
    ] {
        let project = Project::fixture("v4-sample");
        edit(&project, ".bmad-core/core-config.yaml", from, to);
        refused(&project, &[".bmad-core/core-config.yaml", key]);
    }
}

#[test]
fn a_story_folder_that_is_a_symlink_out_of_the_project_is_a_config_error() {
    let project = Project::fixture("v4-sample");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let stories = project.path().join("docs/stories");
    std::fs::rename(&stories, elsewhere.path().join("stories")).expect("move the stories");
    std::os::unix::fs::symlink(elsewhere.path().join("stories"), &stories).expect("symlink");
    refused(
        &project,
        &[
            ".bmad-core/core-config.yaml",
            "`devStoryLocation` leads outside the project root",
        ],
    );
}

#[test]
fn v6_locations_outside_the_project_are_config_errors() {
    for (from, to, key) in [
        (
            "implementation_artifacts: \"{project-root}/_bmad-output/implementation-artifacts\"",
            "implementation_artifacts: \"{project-root}/../implementation-artifacts\"",
            "`implementation_artifacts` leads outside the project root",
        ),
        (
            "planning_artifacts: \"{project-root}/_bmad-output/planning-artifacts\"",
            "planning_artifacts: \"/tmp/planning-artifacts\"",
            "`planning_artifacts` leads outside the project root",
        ),
    ] {
        let project = Project::fixture("v6-sample");
        edit(&project, "_bmad/bmm/config.yaml", from, to);
        refused(&project, &["_bmad/bmm/config.yaml", key]);
    }
}

#[test]
fn sprint_status_keys_that_could_be_paths_are_refused_at_parse() {
    for key in ["1-4-../../../outside", "1-4-sub/dir", "1-4-back\\slash"] {
        let project = Project::fixture("v6-sample");
        let rel = "_bmad-output/implementation-artifacts/sprint-status.yaml";
        edit(
            &project,
            rel,
            "  epic-1-retrospective: optional",
            &format!("  {key}: backlog\n  epic-1-retrospective: optional"),
        );
        refused(
            &project,
            &[
                "sprint-status.yaml:",
                &format!("key `{key}` contains a path separator or `..`"),
            ],
        );
    }
}

#[test]
fn a_sprint_status_that_is_a_symlink_out_of_the_project_is_refused() {
    let project = Project::fixture("v6-sample");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let rel = "_bmad-output/implementation-artifacts/sprint-status.yaml";
    let outside = elsewhere.path().join("sprint-status.yaml");
    std::fs::rename(project.path().join(rel), &outside).expect("move");
    std::os::unix::fs::symlink(&outside, project.path().join(rel)).expect("symlink");
    let before = std::fs::read(&outside).expect("read");
    refused(
        &project,
        &["sprint-status.yaml", "leads outside the project root"],
    );
    let run = Run::project(&project, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert_eq!(std::fs::read(&outside).expect("read"), before);
}

/// Runs story 1.1 of `project` (its `bmad-host.toml` trusted) and returns the run and its
/// escalation reason.
fn escalated(project: &Project, env: &[(&str, &str)]) -> (Run, String) {
    let run = Run::project(project, &["--trust", "--story", "1.1"], env);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1").clone();
    assert_eq!(result["result"], "escalated", "{result}");
    let reason = result["reason"].as_str().unwrap_or_default().to_string();
    (run, reason)
}

#[test]
fn a_story_file_that_links_out_of_the_project_is_escalated_and_never_written() {
    let project = Project::fixture("v4-sample");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let outside = elsewhere.path().join("1.1.story.md");
    std::fs::rename(project.path().join("docs/stories/1.1.story.md"), &outside).expect("move");
    std::os::unix::fs::symlink(&outside, project.path().join("docs/stories/1.1.story.md"))
        .expect("symlink");
    let before = std::fs::read(&outside).expect("read");
    let log = fake_log::env_value(&project);
    let (_, reason) = escalated(&project, &[("FAKE_CLAUDE_LOG", &log)]);
    assert!(
        reason.contains("docs/stories/1.1.story.md")
            && reason.contains("leads outside the project root"),
        "{reason}"
    );
    assert!(fake_log::calls(&project).is_empty(), "no agent ran");
    assert_eq!(std::fs::read(&outside).expect("read"), before);
}

#[test]
fn a_story_file_swapped_for_a_link_out_of_the_project_mid_run_is_never_written_through() {
    // A gate (it could be the agent) replaces the story with a link to a file outside the
    // project after Dev: QA's PASS must not make the host write `Done` out there.
    let project = Project::fixture("v4-sample");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let outside = elsewhere.path().join("victim.md");
    project.write(
        "bmad-host.toml",
        &format!(
            "[[gates]]\nname = \"swap\"\ncommand = \"cp docs/stories/1.1.story.md {0} && ln -sf {0} docs/stories/1.1.story.md\"\n",
            outside.display()
        ),
    );
    let (_, reason) = escalated(&project, &[]);
    assert!(
        reason.contains("leads outside the project root"),
        "{reason}"
    );
    let text = std::fs::read_to_string(&outside).expect("read");
    assert!(
        text.contains("\nReady for Review\n") && !text.contains("\nDone\n"),
        "the file outside was written:\n{text}"
    );
}

#[test]
fn a_gate_file_that_links_out_of_the_project_is_escalated_before_qa() {
    let project = Project::fixture("v4-sample");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let outside = elsewhere.path().join("gate.yml");
    std::fs::write(&outside, "gate: PASS\n").expect("write");
    let gate = project.path().join("docs/qa/gates/1.1-hello-command.yml");
    std::os::unix::fs::symlink(&outside, &gate).expect("symlink");
    let log = fake_log::env_value(&project);
    let (_, reason) = escalated(&project, &[("FAKE_CLAUDE_LOG", &log)]);
    assert!(
        reason.contains("docs/qa/gates/1.1-") && reason.contains("leads outside the project root"),
        "{reason}"
    );
    assert!(fake_log::calls(&project).is_empty(), "no agent ran");
    assert_eq!(
        std::fs::read_to_string(&outside).expect("read"),
        "gate: PASS\n"
    );
    assert!(Path::new(&gate).is_symlink());
}
