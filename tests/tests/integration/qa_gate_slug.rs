//! A QA agent that writes its gate file under another name than the one the host expects (a
//! slug of its own, or a new file next to the old one) is normal LLM behaviour: the gate written
//! during the review is its decision, with a warning naming both files. (A review that writes
//! no gate at all does not inherit the old one: `run_loop`.)

use bmad_host_tests::harness::{Project, Run};
use serde_json::json;

const EXPECTED: &str = "docs/qa/gates/1.1-hello-command.yml";
const OWN_SLUG: &str = "docs/qa/gates/1.1-hello-command-api.yml";

#[test]
fn a_second_review_under_another_slug_is_this_reviews_decision() {
    let project = Project::fixture("v4-sample");
    // Review 1 fails under the expected name; review 2 passes under a name of QA's own, next to
    // the old FAIL.
    let script = project.script(&json!({
        "calls": [
            { "role": "qa", "story": "1.1", "occurrence": 1, "verdicts": ["FAIL"] },
            { "role": "qa", "story": "1.1", "occurrence": 2, "verdicts": ["FAIL", "PASS"], "gate_slug": "hello-command-api" }
        ]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let story = run.story_result("1.1");
    assert_eq!(story["result"], "done", "{}", run.stderr());
    assert_eq!(story["cycles"], 2);
    assert!(project.read(EXPECTED).contains("gate: FAIL"));
    assert!(project.read(OWN_SLUG).contains("gate: PASS"));
    let warning = run
        .stderr()
        .lines()
        .find(|l| l.contains("QA wrote its gate to"))
        .unwrap_or_else(|| panic!("no warning:\n{}", run.stderr()))
        .to_owned();
    assert!(
        warning.contains(OWN_SLUG) && warning.contains(EXPECTED),
        "{warning}"
    );
    assert!(
        !run.stderr().contains("QA did not write a new gate file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_first_review_under_another_slug_is_read_without_fuss() {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": ["PASS"], "gate_slug": "hello-cmd" }]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "done");
    assert!(
        project
            .read("docs/qa/gates/1.1-hello-cmd.yml")
            .contains("gate: PASS")
    );
}
