//! `bmad-host status --json` on temp copies of the shared corpus (`v4/`, `v6/`, `v6.12-build/`)
//! and the repo's sample projects: every story's id, title, file, existence, parsed state, raw
//! status and gate; and the exit code and message for a folder that is not a BMAD project or has
//! a broken config.

use std::fs;
use std::path::Path;
use std::process::Output;

use bmad_host_tests::harness::{self, copy_of, corpus, fixtures};
use serde_json::Value;

/// Runs `bmad-host status --project DIR --json` in the tests' hermetic environment.
fn status(project: &Path) -> Output {
    harness::command()
        .args(["status", "--json", "--project"])
        .arg(project)
        .output()
        .expect("run bmad-host")
}

/// The stories of a successful `status --json` run as
/// `id | title | file | exists | state | raw_status | gate` lines.
fn stories(project: &Path) -> Vec<String> {
    let out = status(project);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 stdout");
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let s = |k: &str| match &v[k] {
                Value::Null => "-".to_owned(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!(
                "{} | {} | {} | {} | {} | {} | {}",
                s("id"),
                s("title"),
                s("file"),
                s("exists"),
                s("state"),
                s("raw_status"),
                s("gate")
            )
        })
        .collect()
}

#[test]
fn v4_corpus() {
    let tmp = copy_of(&corpus().join("v4"));
    assert_eq!(
        stories(tmp.path()),
        [
            "1.1 | Project Setup and Health Check | docs/stories/1.1.story.md | true | done | Done | PASS",
            "1.2 | User Registration | docs/stories/1.2.story.md | true | review | Review | CONCERNS",
            "1.3 | Sign In and Session | docs/stories/1.3.story.md | true | ready-for-dev | Approved | -",
            "1.4 | Add a Plant | docs/stories/1.4.story.md | false | - | - | -",
            "2.1 | Watering Schedule | docs/stories/2.1.story.md | false | - | - | -",
        ]
    );
}

#[test]
fn v6_corpus() {
    let tmp = copy_of(&corpus().join("v6"));
    let ia = "_bmad-output/implementation-artifacts";
    assert_eq!(
        stories(tmp.path()),
        [
            format!(
                "1.1 | Project Setup and Health Check | {ia}/1-1-project-setup-and-health-check.md | true | done | done | -"
            ),
            format!(
                "1.2 | User Registration | {ia}/1-2-user-registration.md | true | review | review | -"
            ),
            format!(
                "1.3 | Sign In and Session | {ia}/1-3-sign-in-and-session.md | true | ready-for-dev | ready-for-dev | -"
            ),
            format!("1.4 | Add a Plant | {ia}/1-4-add-a-plant.md | false | - | - | -"),
            format!("2.1 | Watering Schedule | {ia}/2-1-watering-schedule.md | false | - | - | -"),
        ]
    );
}

#[test]
fn v612_build_corpus() {
    let tmp = copy_of(&corpus().join("v6.12-build"));
    let ia = "_bmad-output/implementation-artifacts";
    assert_eq!(
        stories(tmp.path()),
        [
            format!(
                "1.1 | Project Setup and Health Check | {ia}/spec-1-1-project-setup-and-health-check.md | true | done | done | -"
            ),
            format!(
                "1.2 | User Registration | {ia}/spec-1-2-user-registration.md | true | review | in-review | -"
            ),
            // The build flow (#14): a story not built yet gets the spec `bmad-build` writes.
            format!(
                "1.3 | Sign In and Session | {ia}/spec-1-3-sign-in-and-session.md | false | - | - | -"
            ),
            format!("1.4 | Add a Plant | {ia}/spec-1-4-add-a-plant.md | false | - | - | -"),
            format!(
                "2.1 | Watering Schedule | {ia}/spec-2-1-watering-schedule.md | false | - | - | -"
            ),
        ]
    );
}

#[test]
fn sample_projects() {
    let tmp = copy_of(&fixtures().join("v4-sample"));
    assert_eq!(
        stories(tmp.path()),
        [
            "1.1 | Hello Command | docs/stories/1.1.story.md | true | ready-for-dev | Approved | -",
            "1.2 | Greet By Name | docs/stories/1.2.story.md | true | drafted | Draft | -",
            "1.3 | Shout Option | docs/stories/1.3.story.md | false | - | - | -",
        ]
    );
    let tmp = copy_of(&fixtures().join("v6-sample"));
    let ia = "_bmad-output/implementation-artifacts";
    assert_eq!(
        stories(tmp.path()),
        [
            format!(
                "1.1 | Count Lines | {ia}/1-1-count-lines.md | true | ready-for-dev | ready-for-dev | -"
            ),
            format!("1.2 | Count Words | {ia}/1-2-count-words.md | false | - | - | -"),
            format!("1.3 | Count Characters | {ia}/1-3-count-characters.md | false | - | - | -"),
        ]
    );
}

#[test]
fn not_a_project_and_broken_config_exit_2_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = status(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "looked for .bmad-core/core-config.yaml (BMAD v4) and _bmad/bmm/config.yaml (BMAD v6)"
        ),
        "{stderr}"
    );

    let tmp = copy_of(&fixtures().join("v4-sample"));
    let config = tmp.path().join(".bmad-core/core-config.yaml");
    fs::copy(corpus().join("malformed/core-config-broken.yaml"), &config).expect("copy");
    let out = status(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".bmad-core/core-config.yaml:4: invalid YAML"),
        "{stderr}"
    );

    let tmp = copy_of(&fixtures().join("v6-sample"));
    let sprint = tmp
        .path()
        .join("_bmad-output/implementation-artifacts/sprint-status.yaml");
    fs::copy(
        corpus().join("malformed/sprint-status-not-a-mapping.yaml"),
        &sprint,
    )
    .expect("copy");
    let out = status(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sprint-status.yaml:1: development_status is a list, not a mapping"),
        "{stderr}"
    );
}
