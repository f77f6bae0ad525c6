//! Spend caps through the real binary: `max_story_usd`, `max_run_usd`, `max_story_tokens` and
//! `max_run_tokens` stop the story (or the run) as `escalated` before the call that would go on
//! past them, with the figures; `--hard-cap` hands the CLI what is left of the dollar caps as
//! `--max-budget-usd` (the smaller of it and `claude.max_budget_usd`), so a call stops at the cap;
//! a resumed run keeps counting what the earlier part spent, the interrupted call's included.
//!
//! Every call of the fake costs $0.10 and 1000 tokens (a quarter of them cache reads, a quarter
//! cache writes). On the v4 sample, story 1.1 and 1.2 take a Dev and a QA call each, 1.3 an SM, a
//! Dev and a QA call.

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run};
use serde_json::{Value, json};

/// `run` of the v4 sample with `args` and `env`, each call of the fake costing $0.10 and 1000
/// tokens unless `calls` (script entries) say otherwise; the fake's log on.
fn run(project: &Project, calls: Value, args: &[&str], env: &[(&str, &str)]) -> Run {
    let script = project.script(&json!({
        "calls": calls,
        "default": { "do": "play", "cost_usd": 0.10, "tokens": 1000 }
    }));
    let log = fake_log::env_value(project);
    let script = script.to_str().expect("utf-8").to_owned();
    let mut all = vec![
        ("FAKE_CLAUDE_SCRIPT", script.as_str()),
        ("FAKE_CLAUDE_LOG", log.as_str()),
    ];
    all.extend_from_slice(env);
    Run::project(project, args, &all)
}

/// The stories' results, in order: `(story, result)`.
fn results(run: &Run) -> Vec<(String, String)> {
    run.events_named("story_finished")
        .iter()
        .map(|e| {
            (
                e["story"].as_str().unwrap_or_default().to_owned(),
                e["result"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The reason `story` was finished with.
fn reason<'a>(run: &'a Run, story: &str) -> &'a str {
    run.story_result(story)["reason"]
        .as_str()
        .unwrap_or_default()
}

/// Each call's `--max-budget-usd`, in order (`None` for a call without one).
fn budgets(project: &Project) -> Vec<Option<String>> {
    fake_log::calls(project)
        .iter()
        .map(|call| {
            let argv = fake_log::argv(call);
            argv.iter()
                .position(|a| *a == "--max-budget-usd")
                .map(|i| argv[i + 1].to_owned())
        })
        .collect()
}

fn approx(value: &Value, want: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - want).abs() < 1e-9)
}

#[test]
fn a_story_dollar_cap_escalates_each_story_at_its_next_call_and_the_run_goes_on() {
    let project = Project::fixture("v4-sample");
    let run = run(&project, json!([]), &["--max-story-usd", "0.05"], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    // Each story made one call ($0.10, past the cap of $0.05); its next one did not start.
    assert_eq!(
        results(&run),
        pairs(&[
            ("1.1", "escalated"),
            ("1.2", "escalated"),
            ("1.3", "escalated")
        ])
    );
    assert_eq!(run.events_named("agent_started").len(), 3);
    let why = reason(&run, "1.1");
    assert!(why.contains("max_story_usd $0.05"), "{why}");
    assert!(why.contains("story 1.1: $0.1000, 1000 tokens"), "{why}");
    let story = run.story_result("1.1");
    assert!(approx(&story["cost_usd"], 0.10), "{story}");
    assert_eq!(story["tokens"], 1000, "{story}");
    assert_eq!(
        story["input_tokens"], 750,
        "cache tokens count as input: {story}"
    );
    assert_eq!(story["output_tokens"], 250, "{story}");
    let finished = run.events_named("run_finished")[0];
    assert_eq!(finished["escalated"], 3);
    assert_eq!(finished["tokens"], 3000, "{finished}");
    assert!(approx(&finished["cost_usd"], 0.30), "{finished}");
    assert!(finished.get("capped").is_none(), "a story cap: {finished}");
    assert_eq!(budgets(&project), [None, None, None], "no --hard-cap");
}

#[test]
fn a_story_dollar_cap_with_hard_cap_stops_the_call_at_the_cap() {
    let project = Project::fixture("v4-sample");
    // Without --hard-cap: SM ($0.10) and Dev (to $0.20, past the cap) run; QA does not start.
    let soft = run(
        &project,
        json!([]),
        &["--story", "1.3", "--max-story-usd", "0.15"],
        &[],
    );
    assert_eq!(soft.code(), 1, "{}", soft.stderr());
    assert_eq!(soft.story_result("1.3")["result"], "escalated");
    assert!(approx(&soft.story_result("1.3")["cost_usd"], 0.20));
    assert_eq!(budgets(&project), [None, None]);

    let project = Project::fixture("v4-sample");
    let hard = run(
        &project,
        json!([]),
        &["--story", "1.3", "--max-story-usd", "0.15", "--hard-cap"],
        &[],
    );
    assert_eq!(hard.code(), 1, "{}", hard.stderr());
    // SM may spend the whole cap, Dev what is left; Dev's call stops on that budget, and the
    // story is escalated on the cap (not failed on the call's outcome).
    assert_eq!(
        budgets(&project),
        [Some("0.15".to_owned()), Some("0.05".to_owned())]
    );
    let outcomes: Vec<&str> = hard
        .events_named("agent_finished")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["success", "error_max_budget"]);
    let story = hard.story_result("1.3");
    assert_eq!(story["result"], "escalated", "{story}");
    assert!(approx(&story["cost_usd"], 0.15), "the cap held: {story}");
    assert!(
        reason(&hard, "1.3").contains("max_story_usd $0.15"),
        "{story}"
    );
}

#[test]
fn a_run_dollar_cap_escalates_the_story_at_the_cap_and_stops_the_run() {
    let project = Project::fixture("v4-sample");
    let run = run(&project, json!([]), &["--max-run-usd", "0.25"], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    // 1.1: Dev and QA ($0.20), done; 1.2: Dev (to $0.30), then its QA call does not start.
    assert_eq!(
        results(&run),
        pairs(&[("1.1", "done"), ("1.2", "escalated")])
    );
    assert_eq!(run.events_named("agent_started").len(), 3);
    let why = reason(&run, "1.2");
    assert!(why.contains("max_run_usd $0.25"), "{why}");
    assert!(why.contains("run: $0.3000, 3000 tokens"), "{why}");
    let finished = run.events_named("run_finished")[0];
    assert_eq!(finished["not_run"], 1, "1.3 was not started: {finished}");
    assert!(
        finished["capped"]
            .as_str()
            .is_some_and(|c| c.contains("max_run_usd")),
        "{finished}"
    );
    assert!(
        run.stderr().contains("stopped: spend cap reached"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_run_dollar_cap_with_hard_cap_gives_each_call_what_is_left() {
    let project = Project::fixture("v4-sample");
    // `claude.max_budget_usd` is lower than the run's cap at first: the smaller wins.
    project.write("bmad-host.toml", "[claude]\nmax_budget_usd = 0.2\n");
    let run = run(
        &project,
        json!([]),
        &["--max-run-usd", "0.25", "--hard-cap"],
        &[],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(
        budgets(&project),
        [
            Some("0.2".to_owned()),
            Some("0.15".to_owned()),
            Some("0.05".to_owned())
        ]
    );
    assert_eq!(
        results(&run),
        pairs(&[("1.1", "done"), ("1.2", "escalated")])
    );
    let finished = run.events_named("run_finished")[0];
    assert!(
        approx(&finished["cost_usd"], 0.25),
        "the cap held: {finished}"
    );
    assert_eq!(finished["not_run"], 1, "{finished}");
}

#[test]
fn a_story_token_cap_from_the_file_escalates_the_story_with_or_without_hard_cap() {
    for hard in [false, true] {
        let project = Project::fixture("v4-sample");
        project.write("bmad-host.toml", "[workflow]\nmax_story_tokens = 1500\n");
        let args: &[&str] = if hard { &["--hard-cap"] } else { &[] };
        let run = run(&project, json!([]), args, &[]);
        assert_eq!(run.code(), 1, "{}", run.stderr());
        // 1.1 and 1.2: two calls of 1000 tokens each (the second starts at 1000 < 1500); 1.3:
        // SM and Dev, then QA does not start.
        assert_eq!(
            results(&run),
            pairs(&[("1.1", "done"), ("1.2", "done"), ("1.3", "escalated")])
        );
        let why = reason(&run, "1.3");
        assert!(why.contains("max_story_tokens 1500"), "{why}");
        assert!(why.contains("story 1.3: $0.2000, 2000 tokens"), "{why}");
        assert_eq!(run.story_result("1.3")["tokens"], 2000);
        // The CLI has no token budget: a hard cap on tokens passes none.
        assert!(budgets(&project).iter().all(Option::is_none), "hard {hard}");
    }
}

#[test]
fn a_run_token_cap_from_the_environment_stops_the_run_with_or_without_hard_cap() {
    for hard in [false, true] {
        let project = Project::fixture("v4-sample");
        let args: &[&str] = if hard { &["--hard-cap"] } else { &[] };
        let run = run(
            &project,
            json!([]),
            args,
            &[("BMAD_HOST_WORKFLOW_MAX_RUN_TOKENS", "2500")],
        );
        assert_eq!(run.code(), 1, "{}", run.stderr());
        assert_eq!(
            results(&run),
            pairs(&[("1.1", "done"), ("1.2", "escalated")])
        );
        let why = reason(&run, "1.2");
        assert!(why.contains("max_run_tokens 2500"), "{why}");
        let finished = run.events_named("run_finished")[0];
        assert_eq!(finished["tokens"], 3000, "{finished}");
        assert_eq!(finished["not_run"], 1, "{finished}");
        assert!(budgets(&project).iter().all(Option::is_none), "hard {hard}");
    }
}

#[test]
fn a_resumed_run_keeps_counting_what_it_spent_before() {
    let project = Project::fixture("v4-sample");
    // SM and Dev of 1.3 spend $0.20; QA's first call hits a usage limit after spending $0.10:
    // the run stops there, with $0.30 spent on the story.
    let calls = json!([{
        "role": "qa", "story": "1.3", "occurrence": 1, "do": "usage_limit", "cost_usd": 0.10, "tokens": 1000
    }]);
    let first = run(
        &project,
        calls.clone(),
        &["--story", "1.3", "--max-story-usd", "0.25"],
        &[],
    );
    assert_eq!(first.code(), 1, "{}", first.stderr());
    assert_eq!(first.events_named("agent_started").len(), 3);
    assert!(first.events_named("story_finished").is_empty());

    // The resumed run redoes QA's step, but the story has spent its cap: no call starts.
    let resumed = run(
        &project,
        calls,
        &["--story", "1.3", "--max-story-usd", "0.25"],
        &[],
    );
    assert_eq!(resumed.code(), 1, "{}", resumed.stderr());
    assert_eq!(resumed.events_named("run_started")[0]["resumed"], true);
    assert!(resumed.events_named("agent_started").is_empty());
    let story = resumed.story_result("1.3");
    assert_eq!(story["result"], "escalated", "{story}");
    assert!(approx(&story["cost_usd"], 0.30), "{story}");
    assert!(
        reason(&resumed, "1.3").contains("story 1.3: $0.3000"),
        "{story}"
    );

    // `status` shows the spend against the cap.
    let status = Run::bmad_host(
        &[
            "status",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[
            ("BMAD_HOST_WORKFLOW_MAX_STORY_USD", "0.25"),
            ("BMAD_HOST_WORKFLOW_MAX_RUN_TOKENS", "9000"),
        ],
    );
    assert_eq!(status.code(), 0, "{}", status.stderr());
    let text = String::from_utf8_lossy(&status.output.stdout);
    assert!(text.contains("$0.30 of $0.25, 3000 tokens"), "{text}");
    assert!(text.contains("3000 of 9000 tokens"), "{text}");
}
