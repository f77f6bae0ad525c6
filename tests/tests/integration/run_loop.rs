//! The whole loop through the real binary: sample projects driven to Done by the fake Claude,
//! with every decision made by the repository's WASM plugins; multi-cycle stories, the cycle
//! limit, the NDJSON contract, exit codes, dry runs and what the host passes to Claude.

use std::collections::BTreeSet;

use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, fake_claude, plugins};
use serde_json::{Value, json};

fn status_line(text: &str) -> String {
    // The value under `## Status` (v4).
    let mut lines = text
        .lines()
        .skip_while(|l| !l.starts_with("## Status"))
        .skip(1);
    lines
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn a_v4_epic_goes_from_waiting_to_every_story_done() {
    let project = Project::fixture("v4-sample");
    let before_11 = project.read("docs/stories/1.1.story.md");
    assert!(!project.path().join("docs/stories/1.3.story.md").exists());
    let log = fake_log::env_value(&project);
    let run = Run::project(&project, &[], &[("FAKE_CLAUDE_LOG", &log)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());

    for id in ["1.1", "1.2", "1.3"] {
        let text = project.read(&format!("docs/stories/{id}.story.md"));
        assert_eq!(status_line(&text), "Done", "story {id}:\n{text}");
        assert_eq!(run.story_result(id)["result"], "done");
        assert_eq!(run.story_result(id)["cycles"], 1);
    }
    // 1.3 did not exist: SM drafted it first. 1.1 and 1.2 existed: SM never ran for them,
    // and 1.1's text before its Status is untouched.
    let calls = fake_log::calls(&project);
    let roles: Vec<(String, String)> = calls
        .iter()
        .map(|c| {
            (
                c["story"].as_str().unwrap_or_default().to_string(),
                c["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("1.1", "dev"),
        ("1.1", "qa"),
        ("1.2", "dev"),
        ("1.2", "qa"),
        ("1.3", "sm"),
        ("1.3", "dev"),
        ("1.3", "qa"),
    ]
    .iter()
    .map(|(s, r)| (s.to_string(), r.to_string()))
    .collect();
    assert_eq!(roles, expected);
    let after_11 = project.read("docs/stories/1.1.story.md");
    assert_eq!(
        after_11.lines().next(),
        before_11.lines().next(),
        "the story title line must not change"
    );
    // The journal and transcripts exist; the run is finished.
    assert!(project.path().join(".bmad-host/journal.sqlite").is_file());
    let finished = run.events_named("run_finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["done"], 3);
    assert_eq!(finished[0]["exit_code"], 0);
}

#[test]
fn claude_gets_the_bmad_host_environment_and_a_closed_stdin() {
    let project = Project::fixture("v4-sample");
    let log = fake_log::env_value(&project);
    let run = Run::project(&project, &["--story", "1.3"], &[("FAKE_CLAUDE_LOG", &log)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let calls = fake_log::calls(&project);
    assert_eq!(calls.len(), 3, "{calls:#?}");
    let run_id = run.events_named("run_started")[0]["run_id"].clone();
    let story_path = std::fs::canonicalize(project.path())
        .expect("canonical")
        .join("docs/stories/1.3.story.md");
    for (call, (role, cycle)) in calls.iter().zip([("sm", "0"), ("dev", "1"), ("qa", "1")]) {
        let env = &call["env"];
        assert_eq!(env["BMAD_HOST_ROLE"], role);
        assert_eq!(env["BMAD_HOST_STORY_ID"], "1.3");
        assert_eq!(
            env["BMAD_HOST_STORY_PATH"],
            story_path.to_str().expect("utf-8")
        );
        assert_eq!(env["BMAD_HOST_CYCLE"], cycle, "{call:#?}");
        assert_eq!(env["BMAD_HOST_RUN_ID"], run_id);
        assert_eq!(env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"], "1");
        assert!(
            call["stdin"]
                .as_str()
                .unwrap_or_default()
                .contains("/dev/null"),
            "stdin must be /dev/null: {call:#?}"
        );
        let argv = fake_log::argv(call);
        for flag in [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
        ] {
            assert!(argv.contains(&flag), "missing {flag} in {argv:?}");
        }
        // Its own process group.
        assert_eq!(call["pid"], call["pgid"], "{call:#?}");
    }
}

#[test]
fn a_story_that_needs_two_dev_qa_cycles() {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": ["FAIL", "PASS"] }]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "done");
    assert_eq!(result["cycles"], 2);
    let agents: Vec<(String, u64)> = run
        .events_named("agent_started")
        .iter()
        .map(|e| {
            (
                e["role"].as_str().unwrap_or_default().to_string(),
                e["cycle"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        [
            ("dev".to_string(), 1),
            ("qa".to_string(), 1),
            ("dev".to_string(), 2),
            ("qa".to_string(), 2)
        ]
    );
    // QA's FAIL sent the story back to Dev: the host wrote InProgress, then Dev set review.
    let states: Vec<String> = run
        .events_named("state_changed")
        .iter()
        .map(|e| e["to"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        states.windows(2).any(|w| w == ["in-progress", "review"]),
        "{states:?}"
    );
    assert_eq!(
        status_line(&project.read("docs/stories/1.1.story.md")),
        "Done"
    );
}

#[test]
fn a_story_that_hits_max_cycles_is_escalated_and_the_run_exits_1() {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.1", "verdicts": ["FAIL"] }]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1", "--max-cycles", "2"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "escalated");
    let reason = result["reason"].as_str().unwrap_or_default();
    // Either the cycle limit or the convergence rule stops it, never a third cycle.
    assert!(
        reason.contains("max cycles") || reason.contains("converging"),
        "{reason}"
    );
    let dev_calls = run
        .events_named("agent_started")
        .iter()
        .filter(|e| e["role"] == "dev")
        .count();
    assert!(dev_calls <= 2, "at most 2 dev cycles, got {dev_calls}");
    assert_ne!(
        status_line(&project.read("docs/stories/1.1.story.md")),
        "Done"
    );
}

#[test]
fn every_ndjson_line_of_a_full_run_follows_the_schema() {
    let project = Project::fixture("v4-sample");
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"] }]
    }));
    let run = Run::project(
        &project,
        &[],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    let mut names = BTreeSet::new();
    for line in stdout.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let event = v["event"]
            .as_str()
            .unwrap_or_else(|| panic!("no event: {line}"));
        let ts = v["ts"].as_str().unwrap_or_else(|| panic!("no ts: {line}"));
        assert!(
            humantime::parse_rfc3339(ts).is_ok(),
            "ts is not RFC 3339: {line}"
        );
        let required: &[&str] = match event {
            "run_started" => &[
                "run_id", "project", "layout", "version", "stories", "resumed",
            ],
            "story_started" => &["story", "title", "epic", "state"],
            "agent_started" => &["role", "story", "cycle", "pid"],
            "agent_finished" => &[
                "role",
                "story",
                "outcome",
                "duration_ms",
                "turns",
                "cost_usd",
                "clean",
            ],
            "gate_finished" => &[
                "story",
                "gate",
                "passed",
                "exit_code",
                "duration_ms",
                "clean",
            ],
            "state_changed" => &["story", "from", "to"],
            "story_finished" => &[
                "story",
                "result",
                "cycles",
                "cost_usd",
                "input_tokens",
                "output_tokens",
                "tokens",
            ],
            "run_finished" => &[
                "total",
                "done",
                "failed",
                "escalated",
                "exit_code",
                "cost_usd",
                "input_tokens",
                "output_tokens",
                "tokens",
            ],
            // Notifiers (not in this run; `notify` checks them).
            "notify_failed" => &["on", "notifier", "error"],
            // Usage limits (not in this run; `usage_limit_captures` checks them).
            "rate_limit" => &[
                "story",
                "role",
                "status",
                "type",
                "utilization",
                "resets_at",
            ],
            "usage_limit" => &["story", "role", "message", "resets_at", "wait"],
            "waiting_for_reset" => &["story", "resets_at", "remaining_ms"],
            other => panic!("unknown event {other}: {line}"),
        };
        for key in required {
            assert!(v.get(key).is_some(), "{event} lacks {key}: {line}");
        }
        names.insert(event.to_string());
    }
    for needed in [
        "run_started",
        "story_started",
        "agent_started",
        "agent_finished",
        "state_changed",
        "story_finished",
        "run_finished",
    ] {
        assert!(names.contains(needed), "no {needed} event in:\n{stdout}");
    }
    let first = run.events.first().expect("events");
    let last = run.events.last().expect("events");
    assert_eq!(first["event"], "run_started");
    assert_eq!(last["event"], "run_finished");
    for started in run.events_named("agent_started") {
        assert!(started["pid"].as_u64().is_some(), "{started}");
    }
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let project = Project::fixture("v4-sample");
    let before = snapshot(project.path());
    let run = Run::project(&project, &["--dry-run"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let plan = run.events_named("plan");
    let next: Vec<(&str, &str)> = plan
        .iter()
        .map(|p| {
            (
                p["story"].as_str().unwrap_or(""),
                p["next"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        next,
        [
            ("1.1", "dev (cycle 1)"),
            ("1.2", "dev (cycle 1)"),
            ("1.3", "sm (draft the story)")
        ]
    );
    assert_eq!(
        before,
        snapshot(project.path()),
        "a dry run must not change the project"
    );
}

#[test]
fn usage_errors_exit_2_with_a_message_naming_the_problem() {
    let project = Project::fixture("v4-sample");
    let empty = tempfile::tempdir().expect("tempdir");
    let plugins = plugins();
    let p = plugins.to_str().expect("utf-8");
    let fake = fake_claude();
    let f = fake.to_str().expect("utf-8");

    // Not a BMAD project.
    let run = Run::bmad_host(
        &[
            "run",
            "--plugins",
            p,
            "--claude-bin",
            f,
            "--project",
            empty.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains(".bmad-core"), "{}", run.stderr());

    // A story that does not exist.
    let run = Run::project(&project, &["--story", "9.9"], &[]);
    assert_eq!(run.code(), 2);
    assert!(run.stderr().contains("9.9"), "{}", run.stderr());

    // An unknown config key.
    project.write("bmad-host.toml", "[claude]\ntimout = \"1m\"\n");
    let run = Run::project(&project, &[], &[]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("did you mean `claude.timeout`"),
        "{}",
        run.stderr()
    );
    std::fs::remove_file(project.path().join("bmad-host.toml")).expect("rm");

    // A plugins folder without plugins.
    let run = Run::bmad_host(
        &[
            "run",
            "--plugins",
            empty.path().to_str().expect("utf-8"),
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(run.code(), 2, "{}", run.stderr());

    // Bad flags.
    let run = Run::bmad_host(&["run", "--timeout", "soon"], &[]);
    assert_eq!(run.code(), 2);
    let run = Run::bmad_host(&["run", "--policy", "boss=x"], &[]);
    assert_eq!(run.code(), 2);
}

#[test]
fn a_v6_project_reaches_done_with_sprint_status_in_step() {
    let project = Project::fixture("v6-sample");
    let sprint = "_bmad-output/implementation-artifacts/sprint-status.yaml";
    let before = project.read(sprint);
    let run = Run::project(&project, &[], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let after = project.read(sprint);
    for key in ["1-1-count-lines", "1-2-count-words", "1-3-count-characters"] {
        let line = after
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("{key} missing from sprint-status:\n{after}"));
        assert!(line.contains(": done"), "{line}");
    }
    // Comment lines and the order of keys are kept.
    let comments = |t: &str| {
        t.lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(comments(&before), comments(&after));
    let keys = |t: &str| {
        t.lines()
            .filter_map(|l| l.split(':').next())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&before), keys(&after));
    for story in std::fs::read_dir(project.path().join("_bmad-output/implementation-artifacts"))
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("1-"))
    {
        let text = std::fs::read_to_string(story.path()).expect("read");
        assert!(
            text.lines().any(|l| l.trim() == "Status: done"),
            "{}:\n{text}",
            story.path().display()
        );
    }
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("list").filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push((
                    p.strip_prefix(dir).expect("prefix").display().to_string(),
                    std::fs::read(&p).expect("read"),
                ));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn an_old_gate_file_is_not_taken_for_this_reviews_decision() {
    let project = Project::fixture("v4-sample");
    // Cycle 1: QA writes a FAIL gate. Cycle 2: QA answers but writes no gate file.
    let script = project.script(&json!({
        "calls": [
            { "role": "qa", "story": "1.1", "occurrence": 1, "verdicts": ["FAIL"] },
            { "role": "qa", "story": "1.1", "occurrence": 2, "do": "slow", "lines": 1, "delay_ms": 1 }
        ]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["cycles"], 2);
    assert_eq!(result["result"], "failed", "{result}");
    assert!(
        result["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("without a gate decision"),
        "{result}"
    );
    assert!(
        run.stderr().contains("did not write a new gate file"),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_story_with_an_unreadable_status_is_escalated_untouched_and_the_others_go_on() {
    let project = Project::fixture("v4-sample");
    let broken =
        "# Story 1.1: Hello Command\r\n\r\n## Status\r\n\r\nDraft\r\n\r\n## Status\r\n\r\nDone\r\n";
    project.write("docs/stories/1.1.story.md", broken);
    let run = Run::project(&project, &["--story", "1.1"], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let result = run.story_result("1.1");
    assert_eq!(result["result"], "escalated");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("docs/stories/1.1.story.md"), "{reason}");
    assert!(
        reason.contains("line 5") && reason.contains("line 9"),
        "{reason}"
    );
    assert!(run.events_named("agent_started").is_empty());
    assert_eq!(
        project.read("docs/stories/1.1.story.md"),
        broken,
        "never written"
    );

    let run = Run::project(&project, &["--story", "1.2"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
}

#[test]
fn what_the_cli_leaves_in_its_temp_folder_is_removed_after_the_call() {
    let project = Project::fixture("v4-sample");
    // The CLI's temp folder (`CLAUDE_CODE_TMPDIR`) is `.bmad-host/tmp`; a Dev call leaves a
    // socket-like file and a folder there, as a killed CLI does.
    let script = project.script(&serde_json::json!({"calls": [{
        "role": "dev", "story": "1.1",
        "write_files": {".bmad-host/tmp/cli.sock": "x", ".bmad-host/tmp/cwd/state": "y"}
    }]}));
    let run = Run::project(
        &project,
        &["--story", "1.1"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let tmp = project.path().join(".bmad-host/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
}
