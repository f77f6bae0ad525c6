//! Convergence through the real binary (issue #16): a review that sends back the same findings
//! twice stops at the second round naming them (in `story_finished`, in the end-of-run summary
//! and in `status`), a review whose findings change goes on to done, and a quality gate that
//! fails the same way twice stops the story naming the gate and its failure. The rule lives in
//! the default policies (`bmad_policy::converge`), built into `plugins/`.

use bmad_host_tests::harness::{Project, Run};
use serde_json::json;

/// `bmad-host status` of the project: the text lines (stdout) and the `--json` lines.
fn status(project: &Project) -> (String, Run) {
    let dir = project.path().to_str().expect("utf-8");
    let text = Run::bmad_host(&["status", "--project", dir], &[]);
    assert_eq!(text.code(), 0, "{}", text.stderr());
    let json = Run::bmad_host(&["status", "--json", "--project", dir], &[]);
    assert_eq!(json.code(), 0, "{}", json.stderr());
    (
        String::from_utf8_lossy(&text.output.stdout).into_owned(),
        json,
    )
}

fn reason(run: &Run, story: &str) -> String {
    run.story_result(story)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn qa_script(project: &Project, verdicts: &[&str], findings: &[&[&str]]) -> String {
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": verdicts, "findings": findings }]
    }));
    script.to_str().expect("utf-8").to_owned()
}

#[test]
fn the_same_review_findings_twice_stop_at_the_second_round_naming_them() {
    let project = Project::fixture("v4-sample");
    let script = qa_script(
        &project,
        &["FAIL"],
        &[&[
            "Email duplicates are case-sensitive",
            "No test for mixed case",
        ]],
    );
    let run = Run::project(
        &project,
        &["--story", "1.1", "--max-cycles", "4"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "escalated");
    assert_eq!(result["cycles"], 2, "stopped at the second round");
    let why = reason(&run, "1.1");
    let expected = "review is not converging: the same 2 findings as the previous round: \
                    \"high: Email duplicates are case-sensitive\"; \"high: No test for mixed case\"";
    assert_eq!(why, expected);
    // The end-of-run summary names them too.
    assert!(run.stderr().contains(expected), "{}", run.stderr());
    // And `status`, text and JSON.
    let (text, json) = status(&project);
    let line = text
        .lines()
        .find(|l| l.starts_with("1.1 "))
        .unwrap_or_else(|| panic!("no 1.1 in status:\n{text}"));
    assert!(
        line.contains(&format!("last escalated: {expected}")),
        "{line}"
    );
    let s11 = json
        .events
        .iter()
        .find(|e| e["id"] == "1.1")
        .expect("1.1 in status --json");
    assert_eq!(
        s11["journal"]["last_outcome"],
        format!("escalated: {expected}")
    );
}

#[test]
fn a_superset_of_the_previous_findings_stops_naming_the_ones_that_came_back() {
    let project = Project::fixture("v4-sample");
    let script = qa_script(
        &project,
        &["FAIL"],
        &[
            &["Password is logged"],
            &["Password is logged", "Session never expires"],
        ],
    );
    let run = Run::project(
        &project,
        &["--story", "1.1", "--max-cycles", "4"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "escalated");
    assert_eq!(run.story_result("1.1")["cycles"], 2);
    assert_eq!(
        reason(&run, "1.1"),
        "review is not converging: the previous round's finding is back, with 1 new: \
         \"high: Password is logged\""
    );
}

#[test]
fn changing_review_findings_go_on_to_done() {
    let project = Project::fixture("v4-sample");
    // As many findings each round, but different ones: progress.
    let script = qa_script(
        &project,
        &["FAIL", "FAIL", "PASS"],
        &[&["Password is logged"], &["Session never expires"]],
    );
    let run = Run::project(
        &project,
        &["--story", "1.1", "--max-cycles", "3"],
        &[("FAKE_CLAUDE_SCRIPT", &script)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "done");
    assert_eq!(result["cycles"], 3);
}

#[test]
fn a_gate_that_fails_the_same_way_twice_stops_naming_the_gate_and_the_failure() {
    let project = Project::fixture("v4-sample");
    // cargo test's lines, with a timing that differs between runs.
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"unit\"\ncommand = \"echo 'test users::dup ... FAILED'; echo \\\"finished in $$ms\\\"; exit 101\"\n",
    );
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1", "--max-cycles", "4"],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "escalated");
    assert_eq!(result["cycles"], 2, "stopped at the second failure");
    assert_eq!(run.events_named("gate_finished").len(), 2);
    let expected = "quality gates are not converging: the same failure as the previous round: \
                    \"gate `unit` failed (exit 101): failing users::dup\"";
    assert_eq!(reason(&run, "1.1"), expected);
    assert!(run.stderr().contains(expected), "{}", run.stderr());
    let (text, _) = status(&project);
    assert!(text.contains(expected), "{text}");
}

#[test]
fn a_gate_whose_failure_changes_goes_on() {
    let project = Project::fixture("v4-sample");
    // Another failing test each run, then a pass.
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"unit\"\ncommand = \"n=$(cat .n 2>/dev/null || echo 0); n=$((n+1)); echo $n > .n; [ $n -ge 3 ] && exit 0; echo \\\"test t$n ... FAILED\\\"; exit 101\"\n",
    );
    let run = Run::project(
        &project,
        &["--trust", "--story", "1.1", "--max-cycles", "4"],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "done");
    assert_eq!(result["cycles"], 3);
}
