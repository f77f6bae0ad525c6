//! Usage limits through the real binary: the run stops with the reset time instead of burning
//! cycles, the limited step is not charged (the next run redoes it), and `--wait-on-limit`
//! waits for a stated reset, then carries on.

use std::time::{Duration, SystemTime};

use bmad_host_tests::harness::{Project, Run};
use serde_json::json;

#[test]
fn a_usage_limit_stops_the_run_with_the_reset_time_and_charges_nothing() {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit", "reset": "3pm (Europe/Paris)" }]
    }));
    let run = Run::project(
        &project,
        &[],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("resets 3pm (Europe/Paris)"),
        "{}",
        run.stderr()
    );
    let finished = &run.events_named("agent_finished")[0];
    assert_eq!(finished["outcome"], "usage_limit");
    // Only one call was made: no cycle was burnt on a limited account.
    assert_eq!(run.events_named("agent_started").len(), 1);
    assert!(run.events_named("story_finished").is_empty());

    // The next run redoes the limited step (a retry), and the story gets its full cycles.
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let first = &run.events_named("agent_started")[0];
    assert_eq!(first["role"], "dev");
    assert_eq!(first["retry"], true);
    assert_eq!(run.story_result("1.1")["cycles"], 1);
}

#[test]
fn wait_on_limit_waits_for_a_stated_reset_then_goes_on() {
    let project = Project::fixture("v4-sample");
    let reset = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(1));
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit", "reset": reset.to_string() }]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1", "--wait-on-limit"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("waiting"), "{}", run.stderr());
    let outcomes: Vec<&str> = run
        .events_named("agent_finished")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["usage_limit", "success", "success"]);
    assert_eq!(run.story_result("1.1")["result"], "done");
    assert_eq!(run.story_result("1.1")["cycles"], 1);
}
