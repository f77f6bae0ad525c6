//! Swapping the QA policy for a team's own: the same story and the same review (a CONCERNS
//! gate) pass with the default `qa` plugin and go back to Dev with `qa-strict`, chosen through
//! `[roles]` in bmad-host.toml or through `--policy qa=qa-strict`.

use bmad_host_tests::harness::{Project, Run};
use serde_json::json;

fn concerns(project: &Project) -> String {
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": ["CONCERNS", "PASS"] }]
    }));
    script.to_str().expect("utf-8").to_string()
}

fn dev_cycles(run: &Run) -> Vec<u64> {
    run.events_named("agent_started")
        .iter()
        .filter(|e| e["role"] == "dev")
        .filter_map(|e| e["cycle"].as_u64())
        .collect()
}

#[test]
fn the_default_qa_passes_a_concerns_gate() {
    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["cycles"], 1);
    assert_eq!(dev_cycles(&run), [1]);
    assert_eq!(
        run.events_named("run_started")[0]["stories"],
        json!(["1.1"])
    );
}

#[test]
fn qa_strict_from_the_config_sends_the_same_story_back() {
    let project = Project::fixture("v4-sample");
    project.write("bmad-host.toml", "[roles]\nqa = \"qa-strict\"\n");
    let script = concerns(&project);
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(dev_cycles(&run), [1, 2], "CONCERNS must go back to Dev");
    assert_eq!(run.story_result("1.1")["cycles"], 2);
}

#[test]
fn qa_strict_from_the_flag_sends_the_same_story_back() {
    let project = Project::fixture("v4-sample");
    let script = concerns(&project);
    let run = Run::project(
        &project,
        &["--story", "1.1", "--policy", "qa=qa-strict"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(dev_cycles(&run), [1, 2], "CONCERNS must go back to Dev");
}

#[test]
fn an_unknown_policy_name_is_a_usage_error() {
    let project = Project::fixture("v4-sample");
    let run = Run::project(&project, &["--policy", "qa=qa-lenient"], &[]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("qa-lenient"), "{}", run.stderr());
}

#[test]
fn plugins_list_and_check_show_roles_and_problems() {
    let project = Project::fixture("v4-sample");
    let plugins = bmad_host_tests::harness::plugins();
    let p = plugins.to_str().expect("utf-8");
    let dir = project.path().to_str().expect("utf-8");
    let run = Run::bmad_host(
        &[
            "plugins",
            "list",
            "--json",
            "--plugins",
            p,
            "--project",
            dir,
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let names: Vec<&str> = run
        .events
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["dev", "qa", "qa-strict", "scheduler", "sm", "status"]
    );
    for plugin in run.events.iter().filter(|e| e.get("name").is_some()) {
        assert_eq!(plugin["wit"], "0.2.0");
        assert!(plugin["problem"].is_null(), "{plugin}");
        assert!(plugin["load"]["micros"].as_u64().is_some(), "{plugin}");
    }
    let roles: Vec<(&str, &str)> = run
        .events
        .iter()
        .filter_map(|e| Some((e["role"].as_str()?, e["plugin"].as_str()?)))
        .collect();
    assert_eq!(
        roles,
        [
            ("status", "status"),
            ("sm", "sm"),
            ("dev", "dev"),
            ("qa", "qa"),
            ("scheduler", "scheduler")
        ]
    );

    project.write("bmad-host.toml", "[roles]\nqa = \"qa-nope\"\n");
    let run = Run::bmad_host(&["plugins", "check", "--plugins", p, "--project", dir], &[]);
    assert_eq!(run.code(), 2);
    let out = String::from_utf8_lossy(&run.output.stdout);
    assert!(out.contains("qa-nope"), "{out}");
}
