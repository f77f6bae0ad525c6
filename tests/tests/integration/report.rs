//! `bmad-host report` through the real binary: the page of a finished run holds every story,
//! every journaled call and gate (with the journal's times), every finding and a working link to
//! every transcript; an interrupted run (Ctrl-C), a live one (the report takes no lock) and a
//! resumed one show their unfinished and redone steps; a usage-limit wait is drawn; text from the
//! project and the agents cannot inject markup; a 100-story run's page stays under 2 MB; a bad
//! `--run` or a project with no journal is a clear error.
//!
//! The page is well-formed XML as well as HTML: it is parsed with `roxmltree` and its elements
//! found by their stable `id` and `data-*` attributes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use bmad_host::journal::{
    AgentCallIntent, AgentCallResult, GatesIntent, GatesResult, Journal, RunFingerprint, RunId,
    StepKey, StepKind, StoryRecord, StoryResult, Usage,
};
use bmad_host::policy::{CallOutcome, Decision, GateReport, OutcomeKind, StoryState};
use bmad_host_tests::fake::unique_tag;
use bmad_host_tests::harness::{Project, Run, read_events_until, run_command};
use bmad_host_tests::procs::processes_with_env;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// `bmad-host report --project P ARGS`.
fn report(project: &Path, args: &[&str]) -> Run {
    let mut all = vec!["report", "--project", project.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    Run::bmad_host(&all, &[])
}

/// Runs `report` and returns the page's path (what it printed) and its text.
fn page_of(project: &Path, args: &[&str]) -> (PathBuf, String) {
    let run = report(project, args);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let printed = String::from_utf8_lossy(&run.output.stdout)
        .trim()
        .to_owned();
    let path = PathBuf::from(&printed);
    let html = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {printed}: {e}"));
    (path, html)
}

fn parse(html: &str) -> roxmltree::Document<'_> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(html, options)
        .unwrap_or_else(|e| panic!("the page is not well-formed: {e}"))
}

/// Every element with an `id`, by id (ids are unique).
fn by_id<'a, 'i>(doc: &'a roxmltree::Document<'i>) -> BTreeMap<String, roxmltree::Node<'a, 'i>> {
    let mut ids = BTreeMap::new();
    for node in doc.descendants().filter(|n| n.is_element()) {
        if let Some(id) = node.attribute("id") {
            assert!(
                ids.insert(id.to_owned(), node).is_none(),
                "the id {id} is used twice"
            );
        }
    }
    ids
}

/// The text of `node` and its descendants.
fn text(node: roxmltree::Node<'_, '_>) -> String {
    node.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect()
}

/// `bmad-host log --json` of the project: every step of the latest run.
fn log(project: &Path) -> Vec<Value> {
    let run = Run::bmad_host(
        &[
            "log",
            "--json",
            "--project",
            project.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    run.events
}

/// Nothing on the page loads from elsewhere or runs but the page's own inline line.
fn assert_self_contained(doc: &roxmltree::Document<'_>) {
    for node in doc.descendants().filter(|n| n.is_element()) {
        let name = node.tag_name().name();
        assert!(
            !matches!(
                name,
                "img" | "iframe" | "object" | "embed" | "link" | "image"
            ),
            "<{name}> on the page"
        );
        for attr in node.attributes() {
            assert!(
                !attr.name().starts_with("on"),
                "event handler {}={:?}",
                attr.name(),
                attr.value()
            );
            assert_ne!(attr.name(), "src", "a src attribute");
            if attr.name() == "href" {
                let v = attr.value();
                assert!(
                    !v.contains(':') || v.starts_with("file://"),
                    "a link with a scheme: {v}"
                );
            }
        }
    }
    let scripts: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("script"))
        .collect();
    assert_eq!(scripts.len(), 1, "one inline script, the page's own");
}

#[test]
fn a_finished_run_shows_every_story_call_gate_and_finding_at_the_journals_times() {
    let project = Project::fixture("v4-sample");
    project.write(
        "bmad-host.toml",
        "[[gates]]\nname = \"unit\"\ncommand = \"true\"\n",
    );
    let script = project.script(&json!({
        "calls": [{ "role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"] }]
    }));
    let run = Run::project(
        &project,
        &["--trust"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let run_id = run.events_named("run_started")[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_owned();

    let (path, html) = page_of(project.path(), &[]);
    let root = std::fs::canonicalize(project.path()).expect("canonical");
    assert_eq!(
        path,
        root.join(format!(".bmad-host/reports/{run_id}.html")),
        "the default page is in the project"
    );
    let doc = parse(&html);
    assert_self_contained(&doc);
    let ids = by_id(&doc);
    assert_eq!(ids["run"].attribute("data-run"), Some(run_id.as_str()));
    assert_eq!(ids["run"].attribute("data-status"), Some("done"));

    // Every story, with its result.
    let stories: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("section") && n.attribute("data-story").is_some())
        .collect();
    let story_ids: Vec<_> = stories
        .iter()
        .filter_map(|n| n.attribute("data-story"))
        .collect();
    assert_eq!(story_ids, ["1.1", "1.2", "1.3"]);
    for s in &stories {
        assert_eq!(s.attribute("data-result"), Some("done"));
    }
    let s12 = stories[1];
    assert_eq!(s12.attribute("data-cycles"), Some("2"));

    // Every agent call and gate run, in the table and on the timeline, at the journal's times.
    let steps = log(project.path());
    let mut calls = 0;
    let mut findings = Vec::new();
    for step in &steps {
        let n = step["step"].as_u64().expect("step id");
        let kind = step["kind"].as_str().expect("kind");
        match kind {
            "agent-call" | "gates" => {
                let row = ids
                    .get(&format!("step-{n}"))
                    .unwrap_or_else(|| panic!("no row for step {n} ({kind})"));
                assert!(
                    ids.contains_key(&format!("tl-{n}")),
                    "step {n} on the timeline"
                );
                assert_eq!(row.attribute("data-kind"), Some(kind));
                assert_eq!(row.attribute("data-start"), step["intent_at"].as_str());
                assert_eq!(row.attribute("data-end"), step["result_at"].as_str());
                assert_eq!(
                    row.attribute("data-cycle").map(str::to_owned),
                    Some(step["cycle"].to_string())
                );
                // The row is in its story's section.
                let section = row
                    .ancestors()
                    .find(|a| a.has_tag_name("section") && a.attribute("data-story").is_some())
                    .expect("in a story");
                assert_eq!(section.attribute("data-story"), step["story"].as_str());
                if kind == "agent-call" {
                    calls += 1;
                    assert_eq!(row.attribute("data-state"), Some("ok"));
                    // Its transcript link resolves, from the page's folder, to the journaled file.
                    let link = row
                        .descendants()
                        .find(|d| d.attribute("class") == Some("transcript"))
                        .expect("a transcript link");
                    let href = link.attribute("href").expect("href");
                    let target = std::fs::canonicalize(path.parent().expect("folder").join(href))
                        .unwrap_or_else(|e| panic!("{href}: {e}"));
                    assert_eq!(
                        target,
                        PathBuf::from(step["result"]["transcript"].as_str().expect("transcript"))
                    );
                }
            }
            "decision" => {
                if let Some(sent) = step["result"]["SendBack"].as_array() {
                    let round = ids
                        .get(&format!("round-{n}"))
                        .unwrap_or_else(|| panic!("no round for the send-back {n}"));
                    assert_eq!(round.attribute("data-cycle"), Some("1"));
                    let shown: Vec<String> = round
                        .descendants()
                        .filter(|d| d.attribute("class") == Some("finding"))
                        .map(text)
                        .collect();
                    let journaled: Vec<String> = sent
                        .iter()
                        .map(|f| f.as_str().expect("finding").to_owned())
                        .collect();
                    assert_eq!(shown, journaled);
                    findings.extend(journaled);
                }
            }
            _ => {}
        }
    }
    assert_eq!(calls, 9, "sm 1.3, then dev and qa of each story, 1.2 twice");
    assert!(
        !findings.is_empty(),
        "the FAIL verdict sent 1.2 back with findings"
    );
    let totals = ids["totals"];
    assert_eq!(totals.attribute("data-calls"), Some("9"));
    assert_eq!(totals.attribute("data-done"), Some("3"));
    assert_eq!(totals.attribute("data-stories"), Some("3"));

    // Written elsewhere with -o, the links are relative to that place and still resolve.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = elsewhere.path().join("night.html");
    let (path, html) = page_of(project.path(), &["-o", out.to_str().expect("utf-8")]);
    assert_eq!(path, out);
    let doc = parse(&html);
    let links: Vec<&str> = doc
        .descendants()
        .filter(|d| d.attribute("class") == Some("transcript"))
        .filter_map(|d| d.attribute("href"))
        .collect();
    assert_eq!(links.len(), 9);
    for href in links {
        assert!(href.starts_with("../"), "{href}");
        assert!(elsewhere.path().join(href).is_file(), "{href}");
    }
}

/// Starts `bmad-host run --json` on `project` with the fake's script `script`; every process
/// it starts inherits `REPORT_TAG=tag`.
fn spawn_run(project: &Project, script: &Value, tag: &str) -> Child {
    let script = project.script(script);
    let mut cmd = run_command(project);
    cmd.arg("--json")
        .env("FAKE_CLAUDE_SCRIPT", script)
        .env("REPORT_TAG", tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("spawn bmad-host")
}

/// The `tr` of the only agent call without a result in `steps`, and its step id.
fn open_call(steps: &[Value]) -> u64 {
    let open: Vec<u64> = steps
        .iter()
        .filter(|s| s["kind"] == "agent-call" && s["result"].is_null())
        .filter_map(|s| s["step"].as_u64())
        .collect();
    assert_eq!(open.len(), 1, "one call without a result: {open:?}");
    open[0]
}

/// Runs the v4 sample until Dev's first call on 1.1 hangs, reports the live run, then presses
/// Ctrl-C. Returns the project and the hanging call's step id.
fn interrupted_run() -> (Project, u64) {
    let project = Project::fixture("v4-sample");
    let mut child = spawn_run(
        &project,
        &json!({ "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "hang" }] }),
        &unique_tag("report-ctrl-c"),
    );
    read_events_until(&mut child, |e| e["event"] == "agent_started");

    // Live: the run holds the lock; the report reads anyway and shows the call in progress.
    let step = open_call(&log(project.path()));
    let (_, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    let ids = by_id(&doc);
    assert_eq!(ids["run"].attribute("data-status"), Some("running"));
    assert_eq!(ids["run"].attribute("data-host"), Some("running"));
    let row = ids[&format!("step-{step}")];
    assert_eq!(row.attribute("data-state"), Some("open"));
    assert_eq!(row.attribute("data-end"), None);
    assert!(text(row).contains("in progress"), "{}", text(row));

    let pid = i32::try_from(child.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGINT).expect("signal bmad-host");
    read_events_until(&mut child, |_| false);
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    (project, step)
}

#[test]
fn an_interrupted_run_shows_the_call_ctrl_c_stopped() {
    let (project, step) = interrupted_run();
    let (_, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    let ids = by_id(&doc);
    assert_eq!(ids["run"].attribute("data-status"), Some("interrupted"));
    let row = ids[&format!("step-{step}")];
    assert_eq!(row.attribute("data-state"), Some("interrupted"));
    assert_eq!(row.attribute("data-end"), None);
    assert!(text(row).contains("interrupted (Ctrl-C)"), "{}", text(row));
    assert_eq!(
        ids[&format!("tl-{step}")].attribute("data-state"),
        Some("interrupted")
    );
    assert_eq!(ids["totals"].attribute("data-open-calls"), Some("1"));
    // Its transcript (what the agent did before Ctrl-C) is linked.
    assert!(
        row.descendants()
            .any(|d| d.attribute("class") == Some("transcript")),
        "the interrupted call's transcript is linked"
    );
}

#[test]
fn a_run_whose_host_was_killed_shows_the_call_cut_off_and_the_host_gone() {
    let project = Project::fixture("v4-sample");
    let tag = unique_tag("report-kill-9");
    let mut child = spawn_run(
        &project,
        &json!({ "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "hang" }] }),
        &tag,
    );
    read_events_until(&mut child, |e| e["event"] == "agent_started");
    let pid = i32::try_from(child.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill bmad-host");
    assert_eq!(child.wait().expect("wait").code(), None);

    let step = open_call(&log(project.path()));
    let (_, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    let ids = by_id(&doc);
    // The journal still says running; no host holds the lock: the host is gone.
    assert_eq!(ids["run"].attribute("data-status"), Some("running"));
    assert_eq!(ids["run"].attribute("data-host"), Some("gone"));
    let row = ids[&format!("step-{step}")];
    assert_eq!(row.attribute("data-state"), Some("interrupted"));
    assert!(text(row).contains("cut off"), "{}", text(row));

    // The next run stops the agent the dead host left hanging, and resumes to the end.
    let run = Run::project(&project, &[], &[("REPORT_TAG", &tag)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(processes_with_env("REPORT_TAG", &tag), Vec::<u32>::new());
}

#[test]
fn a_resumed_run_shows_both_attempts_of_the_redone_call() {
    let (project, step) = interrupted_run();
    let run = Run::project(&project, &[], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("run_started")[0]["resumed"], true);

    let (path, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    let ids = by_id(&doc);
    assert_eq!(ids["run"].attribute("data-status"), Some("done"));
    let row = ids[&format!("step-{step}")];
    assert_eq!(row.attribute("data-state"), Some("ok"));
    assert_eq!(row.attribute("data-attempt"), Some("2"));
    let first = ids[&format!("step-{step}-a1")];
    assert_eq!(first.attribute("data-outcome"), Some("cancelled"));
    assert!(
        ids.contains_key(&format!("tl-{step}-a1")),
        "attempt 1 drawn"
    );
    // Both attempts' transcripts are linked and exist.
    let links: Vec<&str> = row
        .descendants()
        .filter(|d| d.attribute("class") == Some("transcript"))
        .filter_map(|d| d.attribute("href"))
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    for href in links {
        assert!(
            path.parent().expect("folder").join(href).is_file(),
            "{href}"
        );
    }
    assert_eq!(ids["totals"].attribute("data-retried"), Some("1"));
    assert_eq!(ids["totals"].attribute("data-open-calls"), Some("0"));
}

#[test]
fn a_usage_limit_wait_is_drawn_between_the_two_attempts() {
    let project = Project::fixture("v4-sample");
    let reset = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(1),
    );
    let script = project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit", "reset": reset.to_string() }]
    }));
    let run = Run::project(
        &project,
        &["--story", "1.1", "--wait-on-limit"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let steps = log(project.path());
    let dev = steps
        .iter()
        .find(|s| s["kind"] == "agent-call" && s["role"] == "dev")
        .expect("dev call");
    assert_eq!(dev["attempt"], 2);
    let step = dev["step"].as_u64().expect("id");
    let (_, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    let ids = by_id(&doc);
    assert_eq!(
        ids[&format!("step-{step}-a1")].attribute("data-outcome"),
        Some("usage-limit")
    );
    assert!(
        ids.contains_key(&format!("wait-{step}-a1")),
        "the wait is drawn"
    );
}

/// A journal filled through the journal's API: `stories` stories, each drafted, developed,
/// reviewed (sent back with `findings`), developed and reviewed again, with gates each time.
fn fill_journal(
    root: &Path,
    stories: usize,
    title: &dyn Fn(usize) -> String,
    findings: &[String],
) -> RunId {
    let mut journal = Journal::open(root).expect("open journal");
    let fingerprint = RunFingerprint {
        config: "c".into(),
        args: vec!["bmad-host".into(), "run".into(), "<b>--epic</b>".into()],
        plugins: Vec::new(),
    };
    let run = journal.start_run(false, &fingerprint).expect("start").id;
    let message = "x".repeat(4000);
    for n in 0..stories {
        let story = format!("{}.{}", n / 10 + 1, n % 10 + 1);
        let key = |cycle: u32, role: &str, kind: StepKind, seq: u32| StepKey {
            run: run.clone(),
            story: story.clone(),
            cycle,
            role: role.into(),
            kind,
            seq,
        };
        let call = |journal: &mut Journal, cycle: u32, role: &str| {
            let intent = AgentCallIntent {
                allowed_tools: Vec::new(),
                max_turns: None,
                model: None,
                prompt: "p".repeat(3000),
            };
            let start = journal
                .begin_step(
                    &key(cycle, role, StepKind::AgentCall, 0),
                    &serde_json::to_value(&intent).expect("json"),
                )
                .expect("begin");
            let result = AgentCallResult {
                attempts: 1,
                clean: true,
                outcome: CallOutcome {
                    kind: OutcomeKind::Success,
                    message: message.clone(),
                    num_turns: 12,
                    cost_usd: 0.42,
                    duration_ms: 60_000,
                },
                pid: Some(1),
                transcript: String::new(),
            };
            journal
                .finish_step(
                    start.id().expect("fresh"),
                    &serde_json::to_value(&result).expect("json"),
                )
                .expect("finish");
        };
        let gates = |journal: &mut Journal, cycle: u32, passed: bool| {
            let start = journal
                .begin_step(
                    &key(cycle, "dev", StepKind::Gates, 1),
                    &serde_json::to_value(GatesIntent {
                        gates: vec!["unit".into()],
                    })
                    .expect("json"),
                )
                .expect("begin");
            let result = GatesResult {
                reports: vec![GateReport {
                    name: "unit".into(),
                    passed,
                    exit_code: Some(i32::from(!passed)),
                    timed_out: false,
                    output_tail: "<test output>\n".repeat(100),
                }],
            };
            journal
                .finish_step(
                    start.id().expect("fresh"),
                    &serde_json::to_value(&result).expect("json"),
                )
                .expect("finish");
        };
        call(&mut journal, 0, "sm");
        for cycle in 1..=2 {
            call(&mut journal, cycle, "dev");
            gates(&mut journal, cycle, true);
            call(&mut journal, cycle, "qa");
            if cycle == 1 {
                journal
                    .record_step(
                        &key(cycle, "qa", StepKind::Decision, 1),
                        &json!({"call": "end", "status": {"Missing": "EmptyFile"}}),
                        &serde_json::to_value(Decision::SendBack(findings.to_vec())).expect("json"),
                    )
                    .expect("record");
            }
        }
        if n == 0 {
            // The first story's QA escalates in the end, with the title as its reason.
            journal
                .record_step(
                    &key(2, "qa", StepKind::Decision, 2),
                    &json!({"call": "end", "status": {"Missing": "EmptyFile"}}),
                    &serde_json::to_value(Decision::Escalate(title(n))).expect("json"),
                )
                .expect("record");
        }
        let mut record = StoryRecord::new(story.clone(), title(n), StoryState::Done);
        record.cycle = 2;
        record.result = Some(StoryResult::Done);
        record.usage = Usage {
            cost_usd: 2.1,
            input_tokens: 1_200_000,
            output_tokens: 40_000,
            turns: 60,
            duration: std::time::Duration::from_secs(300),
        };
        record.last_outcome = Some("done".into());
        journal.save_story(&run, &record).expect("save");
    }
    run
}

#[test]
fn text_from_the_project_and_the_agents_cannot_inject_markup() {
    let project = tempfile::tempdir().expect("tempdir");
    let hostile = [
        "<script>alert('title')</script>".to_owned(),
        "<img src=x onerror=\"alert(1)\"/> & ]]> <!-- -->".to_owned(),
        "\"' onmouseover='alert(2)' <a href=\"javascript:alert(3)\">x</a>\u{1}".to_owned(),
    ];
    let title = |_| hostile[0].clone();
    fill_journal(project.path(), 2, &title, &hostile);
    let (_, html) = page_of(project.path(), &[]);
    let doc = parse(&html);
    assert_self_contained(&doc);
    let titles: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("title"))
        .map(text)
        .collect();
    assert_eq!(titles, [hostile[0].clone(), hostile[0].clone()]);
    let findings: Vec<String> = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("finding"))
        .map(text)
        .collect();
    let mut expected: Vec<String> = hostile.to_vec();
    // A control character, which XML forbids, is shown as U+FFFD.
    expected[2] = expected[2].replace('\u{1}', "\u{FFFD}");
    assert_eq!(findings, [expected.clone(), expected].concat());
    assert!(
        text(doc.root_element()).contains("<b>--epic</b>"),
        "the command line, as text"
    );
    let escalation = doc
        .descendants()
        .find(|n| n.has_tag_name("tr") && n.attribute("data-kind") == Some("escalate"))
        .expect("the escalation's row");
    assert!(
        text(escalation).contains(&hostile[0]),
        "{}",
        text(escalation)
    );
}

#[test]
fn a_100_story_run_reports_in_under_2_mb() {
    let project = tempfile::tempdir().expect("tempdir");
    let findings: Vec<String> = (1..=3)
        .map(|k| {
            format!(
                "[High] finding {k}: {}",
                "the handler does not validate its input; ".repeat(8)
            )
        })
        .collect();
    let title = |n| format!("Story number {n} with a realistic title of some length");
    fill_journal(project.path(), 100, &title, &findings);
    let (_, html) = page_of(project.path(), &[]);
    eprintln!("the 100-story page: {} bytes", html.len());
    assert!(html.len() < 2 * 1024 * 1024, "{} bytes", html.len());
    let doc = parse(&html);
    let stories = doc
        .descendants()
        .filter(|n| n.has_tag_name("section") && n.attribute("data-story").is_some())
        .count();
    assert_eq!(stories, 100);
    let shown = doc
        .descendants()
        .filter(|n| n.attribute("class") == Some("finding"))
        .count();
    assert_eq!(shown, 300, "every finding");
    let ids = by_id(&doc);
    assert_eq!(ids["totals"].attribute("data-calls"), Some("500"));
    assert_eq!(
        ids["totals"].attribute("data-input-tokens"),
        Some("120000000")
    );
}

#[test]
fn an_unknown_run_is_refused_naming_the_runs_there_are() {
    let project = tempfile::tempdir().expect("tempdir");
    let run = fill_journal(project.path(), 1, &|_| "t".into(), &[]);
    let out = report(project.path(), &["--run", "20260101T000000Z-0000"]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.contains("no run 20260101T000000Z-0000"), "{err}");
    assert!(
        err.contains(run.as_str()),
        "names the runs there are: {err}"
    );
    assert!(err.contains("--run"), "{err}");
    let bad = report(project.path(), &["--run", "../../etc"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("is not a run id"), "{}", bad.stderr());
    assert!(
        !project
            .path()
            .join(".bmad-host/reports")
            .join("20260101T000000Z-0000.html")
            .exists()
    );
}

#[test]
fn a_project_with_no_journal_is_a_clear_error() {
    let project = Project::fixture("v4-sample");
    let out = report(project.path(), &[]);
    assert_eq!(out.code(), 2, "{}", out.stderr());
    let err = out.stderr();
    assert!(err.contains("no journal at"), "{err}");
    assert!(err.contains("bmad-host run"), "names the fix: {err}");
    assert!(
        !project.path().join(".bmad-host").exists(),
        "nothing is created"
    );
}
