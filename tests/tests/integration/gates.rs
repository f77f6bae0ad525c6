//! Quality gates through the real binary: a passing gate, a gate that fails once and is fixed
//! in the next cycle (its output reaching the Dev prompt), a gate that never passes (escalation),
//! a gate that times out with a `setsid` grandchild (the whole tree torn down), `--skip-gates`.
//! The project files set gates, so every run passes `--trust`.

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};
use bmad_host_tests::procs::processes_with_env;

fn gates_config(project: &Project, gates: &str) {
    project.write("bmad-host.toml", gates);
}

fn gate_results(run: &Run) -> Vec<(String, bool)> {
    run.events_named("gate_finished")
        .iter()
        .map(|e| {
            (
                e["gate"].as_str().unwrap_or_default().to_string(),
                e["passed"].as_bool().unwrap_or_default(),
            )
        })
        .collect()
}

fn dev_prompts(project: &Project) -> Vec<String> {
    fake_log::calls(project)
        .iter()
        .filter(|c| c["role"] == "dev")
        .map(fake_log::prompt)
        .collect()
}

#[test]
fn passing_gates_let_the_story_through() {
    let project = Project::fixture("v4-sample");
    gates_config(
        &project,
        "[[gates]]\nname = \"unit\"\ncommand = \"echo all good\"\n\n[[gates]]\nname = \"lint\"\ncommand = \"true\"\n",
    );
    let run = Run::project(&project, &["--trust", "--story", "1.1"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        gate_results(&run),
        [("unit".to_string(), true), ("lint".to_string(), true)]
    );
    assert_eq!(run.story_result("1.1")["result"], "done");
}

#[test]
fn a_failing_gate_sends_the_story_back_with_its_output_and_is_fixed_next_cycle() {
    let project = Project::fixture("v4-sample");
    gates_config(
        &project,
        "[[gates]]\nname = \"unit\"\ncommand = \"test -f .gate-ok || { touch .gate-ok; echo 'FAILED: 2 tests (test_greet, test_name)'; exit 1; }\"\n",
    );
    let log = fake_log::env_value(&project);
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1"],
        &[("FAKE_CLAUDE_LOG", &log)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        gate_results(&run),
        [("unit".to_string(), false), ("unit".to_string(), true)]
    );
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "done");
    assert_eq!(result["cycles"], 2);
    let prompts = dev_prompts(&project);
    assert_eq!(prompts.len(), 2);
    assert!(!prompts[0].contains("test_greet"));
    assert!(
        prompts[1].contains("FAILED: 2 tests (test_greet, test_name)"),
        "the second Dev prompt must carry the gate's output:\n{}",
        prompts[1]
    );
    let failed = &run.events_named("gate_finished")[0];
    assert_eq!(failed["exit_code"], 1);
}

#[test]
fn a_gate_that_never_passes_escalates_at_the_cycle_limit() {
    let project = Project::fixture("v4-sample");
    gates_config(
        &project,
        "[[gates]]\nname = \"unit\"\ncommand = \"echo broken; exit 3\"\n",
    );
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1", "--max-cycles", "2"],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "escalated");
    assert_eq!(
        gate_results(&run),
        [("unit".to_string(), false), ("unit".to_string(), false)]
    );
    // QA never reviewed a story whose gates failed.
    assert!(
        run.events_named("agent_started")
            .iter()
            .all(|e| e["role"] == "dev")
    );
}

#[test]
fn a_gate_that_times_out_is_torn_down_with_its_escaped_grandchild() {
    let project = Project::fixture("v4-sample");
    gates_config(
        &project,
        "[[gates]]\nname = \"slow\"\ncommand = \"setsid sleep 3600 & sleep 3600\"\ntimeout = \"1s\"\n",
    );
    let tag = format!("gate-timeout-{}", std::process::id());
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1", "--max-cycles", "1"],
        &[("GATE_TEST_TAG", &tag)],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let finished = run.events_named("gate_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["timed_out"], true);
    assert_eq!(finished[0]["passed"], false);
    assert_eq!(run.story_result("1.1")["result"], "escalated");
    assert_eq!(
        processes_with_env("GATE_TEST_TAG", &tag),
        Vec::<u32>::new(),
        "every process of the gate must be gone"
    );
}

#[test]
fn skip_gates_runs_none() {
    let project = Project::fixture("v4-sample");
    gates_config(
        &project,
        "[[gates]]\nname = \"unit\"\ncommand = \"exit 1\"\n",
    );
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1", "--skip-gates"],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(gate_results(&run).is_empty());
    assert_eq!(run.story_result("1.1")["result"], "done");
}
