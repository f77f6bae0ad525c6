//! Parallel runs (`run --jobs N`) through the real binary, on generated BMAD v4 projects in git
//! repositories: stories in worktrees, admission by footprint, one integration lane, one commit
//! per story, real textual conflicts and gates failing only after integration going back to
//! Dev.

use std::path::Path;
use std::process::Command;

use bmad_host_tests::harness::{Project, Run};
use serde_json::{Value, json};

/// A v4 project (the sample's configuration) whose epic 1 has `stories` stories, each a file
/// in `Approved` whose tasks name `tasks[i]` (nothing when empty), in a git repository with
/// everything committed on `main`. `toml`: the project's `bmad-host.toml`.
fn project(tasks: &[&str], toml: &str) -> Project {
    let project = Project::fixture("v4-sample");
    for entry in std::fs::read_dir(project.path().join("docs/stories")).expect("stories") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove");
    }
    let mut prd = String::from(
        "# Parallel PRD\n\n## Epic List\n\n- **Epic 1: Parallel**\n\n## Epic 1: Parallel\n\n",
    );
    for (i, task) in tasks.iter().enumerate() {
        let n = i + 1;
        prd.push_str(&format!(
            "### Story 1.{n}: Part {n}\n\nAs a user, I want part {n}.\n\n"
        ));
        let task_line = if task.is_empty() {
            "- [ ] Task 1: Do the work (AC: 1)".to_string()
        } else {
            format!("- [ ] Task 1: Create `{task}` (AC: 1)")
        };
        project.write(
            &format!("docs/stories/1.{n}.story.md"),
            &format!(
                "# Story 1.{n}: Part {n}\n\n## Status\n\nApproved\n\n## Story\n\nAs a user, I want part {n}.\n\n\
                 ## Acceptance Criteria\n\n1. It works.\n\n## Tasks / Subtasks\n\n{task_line}\n\n## Dev Notes\n\n\
                 ## Dev Agent Record\n\n### File List\n\n## QA Results\n"
            ),
        );
    }
    project.write("docs/prd.md", &prd);
    project.write("bmad-host.toml", toml);
    project.write("shared.txt", "one\ntwo\nthree\n");
    project.write(".gitignore", ".fake-claude*\n");
    git(
        project.path(),
        &["init", "--quiet", "--initial-branch=main"],
    );
    git(project.path(), &["config", "user.name", "Tester"]);
    git(
        project.path(),
        &["config", "user.email", "tester@example.com"],
    );
    git(project.path(), &["add", "--all"]);
    git(project.path(), &["commit", "--quiet", "-m", "initial"]);
    project
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn subjects(project: &Project) -> Vec<String> {
    git(project.path(), &["log", "--format=%s", "main"])
        .lines()
        .map(str::to_string)
        .collect()
}

fn status_of(project: &Project, id: &str) -> String {
    let text = project.read(&format!("docs/stories/{id}.story.md"));
    text.lines()
        .skip_while(|l| !l.starts_with("## Status"))
        .skip(1)
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Where in the event stream each story was in flight: from its `story_started` to its
/// `story_integrated` (or `story_finished` when it was not integrated).
fn spans(run: &Run) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, e) in run.events.iter().enumerate() {
        if e["event"] == "story_started" {
            let story = e["story"].as_str().unwrap_or_default().to_string();
            if out
                .iter()
                .any(|(s, _, _): &(String, usize, usize)| *s == story)
            {
                continue;
            }
            let end = run
                .events
                .iter()
                .enumerate()
                .rev()
                .find(|(_, f)| {
                    (f["event"] == "story_integrated" || f["event"] == "story_finished")
                        && f["story"] == story.as_str()
                })
                .map_or(usize::MAX, |(j, _)| j);
            out.push((story, i, end));
        }
    }
    out
}

fn overlaps(a: &(String, usize, usize), b: &(String, usize, usize)) -> bool {
    a.1 < b.2 && b.1 < a.2
}

fn dev_writes(stories: usize, file: impl Fn(usize) -> (String, String)) -> Value {
    let calls: Vec<Value> = (1..=stories)
        .map(|n| {
            let (path, text) = file(n);
            json!({"role": "dev", "story": format!("1.{n}"), "write_files": {path: text}})
        })
        .collect();
    json!({"calls": calls})
}

#[test]
fn eight_independent_stories_with_four_jobs_land_as_one_commit_each() {
    let tasks: Vec<String> = (1..=8).map(|n| format!("src/s{n}.txt")).collect();
    let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let project = project(&tasks, "[workflow]\nsame_epic = \"parallel\"\n");
    let script = project.script(&dev_writes(8, |n| {
        (format!("src/s{n}.txt"), format!("{n}\n"))
    }));
    let run = Run::project(
        &project,
        &["--jobs", "4"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for n in 1..=8 {
        let id = format!("1.{n}");
        assert_eq!(run.story_result(&id)["result"], "done");
        assert_eq!(status_of(&project, &id), "Done", "{id}");
        assert_eq!(project.read(&format!("src/s{n}.txt")), format!("{n}\n"));
    }
    // One commit per story on main, its id and title in the subject.
    let log = subjects(&project);
    assert_eq!(log.len(), 9, "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("initial"));
    for n in 1..=8 {
        assert!(log.contains(&format!("1.{n}: Part {n}")), "{log:?}");
    }
    let body = git(project.path(), &["log", "-1", "--format=%b", "main"]);
    assert!(body.contains("Reviewed by QA"), "{body}");
    assert!(body.contains("QA gate: PASS"), "{body}");
    // Integrated one at a time; no worktree left; the main checkout is clean.
    assert_eq!(run.events_named("story_integrated").len(), 8);
    assert!(!project.path().join(".bmad-host/worktrees/1.1").exists());
    assert_eq!(git(project.path(), &["status", "--porcelain"]), "");
    // Up to four in flight at once, and more than one.
    let spans = spans(&run);
    let most = (0..run.events.len())
        .map(|i| spans.iter().filter(|s| s.1 <= i && i < s.2).count())
        .max()
        .unwrap_or(0);
    assert!((2..=4).contains(&most), "{most} in flight: {spans:?}");
    // Every event of a story carries its lane, 1 to 4.
    for e in run.events_named("agent_started") {
        let lane = e["lane"].as_u64().unwrap_or(0);
        assert!((1..=4).contains(&lane), "{e}");
    }
    assert!(run.events_named("run_started")[0].get("lane").is_none());
}

#[test]
fn with_one_job_no_event_carries_a_lane() {
    let project = project(&["src/a.txt"], "");
    let run = Run::project(&project, &[], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(run.events.iter().all(|e| e.get("lane").is_none()));
    assert!(!project.path().join(".bmad-host/worktrees").exists());
}

#[test]
fn stories_with_overlapping_footprints_are_never_in_flight_together() {
    let project = project(
        &["src/shared.txt", "src/shared.txt", "src/other.txt"],
        "[workflow]\nsame_epic = \"parallel\"\n",
    );
    let script = project.script(&json!({"calls": [
        {"role": "dev", "story": "1.1", "write_files": {"src/shared.txt": "1\n"}, "append": true},
        {"role": "dev", "story": "1.2", "write_files": {"src/shared.txt": "2\n"}, "append": true},
        {"role": "dev", "story": "1.3", "write_files": {"src/other.txt": "3\n"}},
    ]}));
    let run = Run::project(
        &project,
        &["--jobs", "3"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let spans = spans(&run);
    let find = |id: &str| spans.iter().find(|s| s.0 == id).expect(id).clone();
    let (one, two, three) = (find("1.1"), find("1.2"), find("1.3"));
    assert!(!overlaps(&one, &two), "{spans:?}");
    assert!(overlaps(&one, &three), "{spans:?}");
    // 1.2 started from 1.1's integrated work: no conflict, both lines kept.
    assert_eq!(project.read("src/shared.txt"), "1\n2\n");
    assert!(run.events_named("integration_failed").is_empty());
}

#[test]
fn a_real_conflict_goes_back_to_dev_with_the_files_then_integrates() {
    let project = project(&["", ""], "[workflow]\nsame_epic = \"parallel\"\n");
    let script = project.script(&json!({"calls": [
        {"role": "dev", "story": "1.1", "occurrence": 1,
         "write_files": {"shared.txt": "one\nTWO (1.1)\nthree\n"}},
        {"role": "dev", "story": "1.2", "occurrence": 1,
         "write_files": {"shared.txt": "one\nTWO (1.2)\nthree\n"}},
        {"role": "dev", "occurrence": 2,
         "write_files": {"shared.txt": "one\nTWO (1.1 and 1.2)\nthree\n"}},
    ]}));
    let run = Run::project(
        &project,
        &["--jobs", "2"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let failed = run.events_named("integration_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["files"], json!(["shared.txt"]));
    assert_eq!(failed[0]["back_to_dev"], true);
    let story = failed[0]["story"].as_str().expect("story").to_string();
    // Back to Dev in a new cycle: its last end is in cycle 2.
    let last = run
        .events_named("story_finished")
        .into_iter()
        .rev()
        .find(|e| e["story"] == story.as_str())
        .expect("story_finished");
    assert_eq!(last["cycles"], 2, "{last}");
    assert_eq!(last["result"], "done");
    for id in ["1.1", "1.2"] {
        assert_eq!(status_of(&project, id), "Done", "{id}");
    }
    assert_eq!(
        project.read("shared.txt"),
        "one\nTWO (1.1 and 1.2)\nthree\n"
    );
    let log = subjects(&project);
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(git(project.path(), &["status", "--porcelain"]), "");
}

#[test]
fn a_gate_failing_only_after_integration_goes_back_to_dev() {
    let toml = "[workflow]\nsame_epic = \"parallel\"\n\n[[gates]]\nname = \"pair\"\n\
                command = \"test ! -f a.txt || test ! -f b.txt || test -f fixed.txt\"\n";
    let project = project(&["a.txt", "b.txt"], toml);
    let script = project.script(&json!({"calls": [
        {"role": "dev", "story": "1.1", "occurrence": 1, "write_files": {"a.txt": "a\n"}},
        {"role": "dev", "story": "1.2", "occurrence": 1, "write_files": {"b.txt": "b\n"}},
        {"role": "dev", "occurrence": 2, "write_files": {"fixed.txt": "fixed\n"}},
    ]}));
    let run = Run::project(
        &project,
        &["--jobs", "2", "--trust"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let failed = run.events_named("integration_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let reason = failed[0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("gate `pair` failed after integration"),
        "{reason}"
    );
    for id in ["1.1", "1.2"] {
        assert_eq!(run.story_result(id)["result"], "done", "{id}");
    }
    for file in ["a.txt", "b.txt", "fixed.txt"] {
        assert!(project.path().join(file).exists(), "{file}");
    }
}

#[test]
fn a_parallel_run_needs_a_clean_git_work_tree() {
    let project = project(&["a.txt"], "");
    project.write("stray.txt", "not committed\n");
    let run = Run::project(&project, &["--jobs", "2"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("uncommitted changes (?? stray.txt)"),
        "{}",
        run.stderr()
    );

    let plain = Project::fixture("v4-sample");
    let run = Run::project(&plain, &["--jobs", "2"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("not in a git work tree"),
        "{}",
        run.stderr()
    );
}

/// Starts `bmad-host run --json --jobs N` on `project`; every process it starts inherits
/// `PARALLEL_TAG=tag`.
fn spawn_run(project: &Project, jobs: &str, tag: &str, script: &Path) -> std::process::Child {
    let mut cmd = bmad_host_tests::harness::run_command(project);
    cmd.args(["--json", "--jobs", jobs])
        .env("PARALLEL_TAG", tag)
        .env("FAKE_CLAUDE_SCRIPT", script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn bmad-host")
}

fn signal(child: &std::process::Child, sig: nix::sys::signal::Signal) {
    let pid = i32::try_from(child.id()).expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("signal bmad-host");
}

/// Four stories whose first Dev calls hang: four lanes in flight at once.
fn four_hanging() -> (Project, std::path::PathBuf) {
    let tasks: Vec<String> = (1..=4).map(|n| format!("src/s{n}.txt")).collect();
    let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let project = project(&tasks, "[workflow]\nsame_epic = \"parallel\"\n");
    let script = project.script(&json!({ "calls": [{"role": "dev", "do": "hang"}] }));
    (project, script)
}

/// The script of the run after the interrupted one: each Dev writes its story's file. (Not
/// by occurrence: a hanging call interrupted before the fake counted it would shift them.)
fn four_working(project: &Project) -> std::path::PathBuf {
    project.script(&dev_writes(4, |n| {
        (format!("src/s{n}.txt"), format!("{n}\n"))
    }))
}

#[test]
fn ctrl_c_with_four_in_flight_tears_all_down_exits_130_and_keeps_the_worktrees() {
    let (project, script) = four_hanging();
    let tag = bmad_host_tests::fake::unique_tag("parallel-ctrl-c");
    let mut child = spawn_run(&project, "4", &tag, &script);
    let mut started = 0;
    bmad_host_tests::harness::read_events_until(&mut child, |e| {
        if e["event"] == "agent_started" && e["pid"].is_number() {
            started += 1;
        }
        started == 4
    });
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let rest = bmad_host_tests::harness::read_events_until(&mut child, |_| false);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let cancelled = rest
        .iter()
        .filter(|e| e["event"] == "agent_finished" && e["outcome"] == "cancelled")
        .count();
    assert_eq!(cancelled, 4, "{rest:?}");
    assert_eq!(
        bmad_host_tests::procs::processes_with_env("PARALLEL_TAG", &tag),
        Vec::<u32>::new()
    );
    for n in 1..=4 {
        assert!(
            project
                .path()
                .join(format!(".bmad-host/worktrees/1.{n}"))
                .is_dir(),
            "worktree of 1.{n}"
        );
    }
    // The next run resumes each story in its worktree and integrates them all.
    let script = four_working(&project);
    let run = Run::project(
        &project,
        &["--jobs", "4"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("run_started")[0]["resumed"], true);
    assert_eq!(subjects(&project).len(), 5);
    for n in 1..=4 {
        assert_eq!(project.read(&format!("src/s{n}.txt")), format!("{n}\n"));
    }
}

#[test]
fn kill_9_with_four_in_flight_then_each_resumes_in_its_worktree() {
    let (project, script) = four_hanging();
    let tag = bmad_host_tests::fake::unique_tag("parallel-kill-9");
    let mut child = spawn_run(&project, "4", &tag, &script);
    let mut started = 0;
    bmad_host_tests::harness::read_events_until(&mut child, |e| {
        if e["event"] == "agent_started" && e["pid"].is_number() {
            started += 1;
        }
        started == 4
    });
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    child.wait().expect("wait");
    let script = four_working(&project);
    let log = bmad_host_tests::fake_log::env_value(&project);
    let run = Run::project(
        &project,
        &["--jobs", "4"],
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("FAKE_CLAUDE_LOG", &log),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("run_started")[0]["resumed"], true);
    // Each story's Dev step was redone (a retry) in its own worktree; nothing else twice.
    for e in run.events_named("agent_started") {
        if e["role"] == "dev" {
            assert_eq!(e["retry"], true, "{e}");
        }
    }
    let calls = bmad_host_tests::fake_log::calls(&project);
    for n in 1..=4 {
        let story = format!("1.{n}");
        let cwds: Vec<&str> = calls
            .iter()
            .filter(|c| c["story"] == story.as_str())
            .filter_map(|c| c["cwd"].as_str())
            .collect();
        assert!(!cwds.is_empty(), "{story}");
        for cwd in cwds {
            assert!(
                cwd.ends_with(&format!(".bmad-host/worktrees/{story}")),
                "{cwd}"
            );
        }
        assert_eq!(project.read(&format!("src/s{n}.txt")), format!("{n}\n"));
    }
    assert_eq!(subjects(&project).len(), 5);
    assert_eq!(
        bmad_host_tests::procs::processes_with_env("PARALLEL_TAG", &tag),
        Vec::<u32>::new()
    );
}

#[test]
fn a_usage_limit_in_one_lane_stops_every_lane() {
    let tasks: Vec<String> = (1..=3).map(|n| format!("src/s{n}.txt")).collect();
    let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let project = project(&tasks, "[workflow]\nsame_epic = \"parallel\"\n");
    let script = project.script(&json!({"calls": [
        {"role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit", "reset": "3pm (UTC)"},
        {"role": "dev", "story": "1.2", "occurrence": 1, "do": "hang"},
        {"role": "dev", "story": "1.3", "occurrence": 1, "do": "hang"},
    ]}));
    let run = Run::project(
        &project,
        &["--jobs", "3"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let limit = run.events_named("usage_limit");
    assert_eq!(limit.len(), 1, "{limit:?}");
    assert_eq!(limit[0]["story"], "1.1");
    // The other lanes' calls were stopped, not left running.
    let cancelled: Vec<&Value> = run
        .events_named("agent_finished")
        .into_iter()
        .filter(|e| e["outcome"] == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 2, "{cancelled:?}");
    assert!(run.events_named("story_integrated").is_empty());
}

#[test]
fn a_v6_sprint_status_is_the_hosts_alone_and_never_merged() {
    let project = Project::fixture("v6-sample");
    project.write("bmad-host.toml", "[workflow]\nsame_epic = \"parallel\"\n");
    project.write(".gitignore", ".fake-claude*\n");
    git(
        project.path(),
        &["init", "--quiet", "--initial-branch=main"],
    );
    git(project.path(), &["config", "user.name", "Tester"]);
    git(
        project.path(),
        &["config", "user.email", "tester@example.com"],
    );
    git(project.path(), &["add", "--all"]);
    git(project.path(), &["commit", "--quiet", "-m", "initial"]);
    let run = Run::project(&project, &["--jobs", "3"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(run.events_named("story_integrated").len(), 3);
    let sprint = "_bmad-output/implementation-artifacts/sprint-status.yaml";
    let text = project.read(sprint);
    for key in [
        "epic-1: done",
        "1-1-count-lines: done",
        "1-2-count-words: done",
        "1-3-count-characters: done",
    ] {
        assert!(text.contains(key), "{key}:\n{text}");
    }
    // No story commit touches sprint-status: the host keeps it in the main checkout.
    let touched = git(
        project.path(),
        &["log", "--format=", "--name-only", "main", "-3"],
    );
    assert!(!touched.contains("sprint-status.yaml"), "{touched}");
    assert_eq!(
        git(project.path(), &["status", "--porcelain"]).trim(),
        format!("M {sprint}")
    );
    // That change does not stop the next parallel run.
    let again = Run::project(&project, &["--jobs", "3"], &[]);
    assert_eq!(again.code(), 0, "{}", again.stderr());
}

/// `bmad-host CMD --json --project P` of the project: its JSON lines.
fn json_of(project: &Project, cmd: &str) -> Vec<Value> {
    let run = Run::bmad_host(
        &[
            cmd,
            "--json",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    run.events
}

/// `bmad-host report` of the project, parsed: the page's `rect.lane-span` elements' attributes
/// and the lane rows' names.
fn report_lanes(
    project: &Project,
) -> (Vec<String>, Vec<std::collections::BTreeMap<String, String>>) {
    let run = Run::bmad_host(
        &[
            "report",
            "--project",
            project.path().to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let path = String::from_utf8_lossy(&run.output.stdout)
        .trim()
        .to_owned();
    let html = std::fs::read_to_string(&path).expect("the report");
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    let doc = roxmltree::Document::parse_with_options(&html, options).expect("well-formed");
    let rows = doc
        .descendants()
        .filter_map(|n| n.attribute("data-run-lane").map(str::to_owned))
        .collect();
    let spans = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name("rect")
                && n.attribute("class")
                    .is_some_and(|c| c.starts_with("lane-span"))
        })
        .map(|n| {
            n.attributes()
                .map(|a| (a.name().to_owned(), a.value().to_owned()))
                .collect()
        })
        .collect();
    (rows, spans)
}

#[test]
fn each_lane_is_journaled_and_shown_by_log_status_and_report() {
    let project = project(
        &["src/s1.txt", "src/s2.txt", "src/s3.txt", "src/s4.txt"],
        "[workflow]\nsame_epic = \"parallel\"\n",
    );
    let script = four_working(&project);
    let run = Run::project(
        &project,
        &["--jobs", "2"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let commits: Vec<(String, String)> = git(project.path(), &["log", "--format=%H %s", "main"])
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(h, s)| (h.to_owned(), s.to_owned()))
        .collect();
    let commit_of = |id: &str| {
        commits
            .iter()
            .find(|(_, s)| s.starts_with(&format!("{id}: ")))
            .map(|(h, _)| h.clone())
            .unwrap_or_else(|| panic!("no commit of {id}: {commits:?}"))
    };
    // The journal: per story one drive record (lane 1 or 2, done) and one integration record
    // (integrated, with the commit on main); each of its other steps carries its lane in `log`.
    let steps = json_of(&project, "log");
    for n in 1..=4 {
        let id = format!("1.{n}");
        let lanes: Vec<&Value> = steps
            .iter()
            .filter(|s| s["story"] == id.as_str() && s["kind"] == "lane")
            .collect();
        assert_eq!(lanes.len(), 2, "{id}: {lanes:?}");
        assert_eq!(lanes[0]["intent"]["work"], "drive");
        let lane = lanes[0]["intent"]["lane"].as_u64().unwrap_or(0);
        assert!((1..=2).contains(&lane), "{:?}", lanes[0]);
        assert_eq!(lanes[0]["result"]["outcome"], "done");
        assert_eq!(lanes[1]["intent"]["work"], "integrate");
        assert_eq!(lanes[1]["intent"]["lane"], lane);
        assert_eq!(lanes[1]["result"]["outcome"], "integrated");
        assert_eq!(lanes[1]["result"]["commit"], commit_of(&id).as_str());
        let after: Vec<&Value> = steps
            .iter()
            .filter(|s| s["story"] == id.as_str())
            .skip_while(|s| s["kind"] != "lane")
            .collect();
        assert!(after.len() > 2, "{id}: {after:?}");
        assert!(after.iter().all(|s| s["lane"] == lane), "{id}: {after:?}");
    }
    // `status`: the lane that last held each story, and how it let it go.
    let status = json_of(&project, "status");
    assert_eq!(status.len(), 4);
    for s in &status {
        assert_eq!(s["lane"]["work"], "integrate", "{s}");
        assert_eq!(s["lane"]["open"], false, "{s}");
        assert_eq!(s["lane"]["outcome"], "integrated", "{s}");
    }
    // The report: a row per lane and the integration lane, each story's drive and integration
    // drawn there, at the journal's times.
    let (rows, spans) = report_lanes(&project);
    assert_eq!(rows, ["1", "2", "integration"]);
    assert_eq!(spans.len(), 8, "{spans:?}");
    for step in steps.iter().filter(|s| s["kind"] == "lane") {
        let id = step["step"].to_string();
        let span = spans
            .iter()
            .find(|s| s["data-step"] == id)
            .unwrap_or_else(|| panic!("step {id} is not drawn: {spans:?}"));
        assert_eq!(
            span["data-story"],
            step["story"].as_str().unwrap_or_default()
        );
        assert_eq!(
            span["data-work"],
            step["intent"]["work"].as_str().unwrap_or_default()
        );
        assert_eq!(span["data-lane"], step["intent"]["lane"].to_string());
        assert_eq!(
            span["data-start"],
            step["intent_at"].as_str().unwrap_or_default()
        );
        assert_eq!(
            span["data-end"],
            step["result_at"].as_str().unwrap_or_default()
        );
        assert_eq!(span["data-state"], "ok");
    }
    // Integrations one at a time: no two integration spans overlap.
    let mut integrations: Vec<(&str, &str)> = spans
        .iter()
        .filter(|s| s["data-work"] == "integrate")
        .map(|s| (s["data-start"].as_str(), s["data-end"].as_str()))
        .collect();
    integrations.sort_unstable();
    for pair in integrations.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{integrations:?}");
    }
}

#[test]
fn an_interrupted_parallel_runs_lanes_show_what_each_held() {
    let (project, script) = four_hanging();
    let tag = bmad_host_tests::fake::unique_tag("parallel-lanes-ctrl-c");
    let mut child = spawn_run(&project, "4", &tag, &script);
    let mut started = 0;
    bmad_host_tests::harness::read_events_until(&mut child, |e| {
        if e["event"] == "agent_started" && e["pid"].is_number() {
            started += 1;
        }
        started == 4
    });
    signal(&child, nix::sys::signal::Signal::SIGINT);
    bmad_host_tests::harness::read_events_until(&mut child, |_| false);
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    // Every story is held by its lane still: in flight when the run stopped.
    let status = json_of(&project, "status");
    let mut lanes: Vec<u64> = status
        .iter()
        .map(|s| {
            assert_eq!(s["lane"]["work"], "drive", "{s}");
            assert_eq!(s["lane"]["open"], true, "{s}");
            s["lane"]["lane"].as_u64().unwrap_or(0)
        })
        .collect();
    lanes.sort_unstable();
    assert_eq!(lanes, [1, 2, 3, 4]);
    let (rows, spans) = report_lanes(&project);
    assert_eq!(rows, ["1", "2", "3", "4"]);
    assert_eq!(spans.len(), 4, "{spans:?}");
    assert!(
        spans
            .iter()
            .all(|s| s["data-state"] == "interrupted" && !s.contains_key("data-end")),
        "{spans:?}"
    );
}

/// The order in which the stories first started.
fn start_order(run: &Run) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    for e in run.events_named("story_started") {
        let id = e["story"].as_str().unwrap_or_default().to_string();
        if !order.contains(&id) {
            order.push(id);
        }
    }
    order
}

#[test]
fn admission_is_the_scheduler_roles_and_a_team_scheduler_swaps_in() {
    let tasks = ["src/s1.txt", "src/s2.txt", "src/s3.txt", "src/s4.txt"];
    let toml = "[workflow]\nsame_epic = \"parallel\"\n";
    // The embedded default: story order.
    let project_a = project(&tasks, toml);
    let script = four_working(&project_a);
    let run = Run::project(
        &project_a,
        &["--jobs", "2"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(start_order(&run)[..2], ["1.1", "1.2"]);
    // A team's scheduler (`bmad-test-reverse`: the candidates in reverse story order), chosen
    // like any policy.
    let folder = tempfile::tempdir().expect("tempdir");
    bmad_host_tests::components::plugin_folder(
        folder.path(),
        "reverse",
        "scheduler",
        &bmad_host_tests::components::wasm("bmad-test-reverse"),
        &bmad_host_tests::components::Folder::default(),
    );
    let project_b = project(
        &tasks,
        &format!("{toml}\n[roles]\nscheduler = \"reverse\"\n"),
    );
    let script = four_working(&project_b);
    // The embedded plugins, with the folder's over them.
    let fake = bmad_host_tests::harness::fake_claude();
    let run = Run::bmad_host(
        &[
            "run",
            "--json",
            "--jobs",
            "2",
            "--plugins",
            folder.path().to_str().expect("utf-8"),
            "--project",
            project_b.path().to_str().expect("utf-8"),
            "--claude-bin",
            fake.to_str().expect("utf-8"),
        ],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_eq!(
        start_order(&run)[..2],
        ["1.4", "1.3"],
        "{:?}",
        start_order(&run)
    );
    for n in 1..=4 {
        assert_eq!(run.story_result(&format!("1.{n}"))["result"], "done");
    }
    // Integration stays in story order among the ready, one commit each.
    assert_eq!(subjects(&project_b).len(), 5);
}

#[test]
fn stories_no_scheduler_can_start_end_escalated_with_the_reason() {
    let project = project(&["src/s1.txt", "src/s2.txt", "src/s3.txt"], "");
    // 1.1 and 1.2 wait for each other; 1.3 names no dependency but its epic is serial.
    for (n, dep) in [(1, "1.2"), (2, "1.1")] {
        let path = format!("docs/stories/1.{n}.story.md");
        let text = project.read(&path).replace(
            "## Dev Notes\n",
            &format!("## Dev Notes\n\nDepends on: {dep}\n"),
        );
        project.write(&path, &text);
    }
    git(
        project.path(),
        &["commit", "--quiet", "-am", "dependencies"],
    );
    let script = project.script(&dev_writes(3, |n| {
        (format!("src/s{n}.txt"), format!("{n}\n"))
    }));
    let run = Run::project(
        &project,
        &["--jobs", "2"],
        &[("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8"))],
    );
    // Nothing started: a story that needs a person, so the run's exit says so.
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(run.events_named("story_started").is_empty());
    for id in ["1.1", "1.2"] {
        let end = run.story_result(id);
        assert_eq!(end["result"], "escalated", "{end}");
        let why = end["reason"].as_str().unwrap_or_default();
        assert!(why.contains("dependency cycle"), "{why}");
        assert!(why.contains("1.1") && why.contains("1.2"), "{why}");
    }
    let end = run.story_result("1.3");
    assert_eq!(end["result"], "escalated", "{end}");
    let why = end["reason"].as_str().unwrap_or_default();
    assert!(why.contains("depends on 1."), "{why}");
    let finished = &run.events_named("run_finished")[0];
    assert_eq!(finished["escalated"], 3, "{finished}");
    assert_eq!(finished["not_run"], 0, "{finished}");
}

#[test]
fn wait_on_limit_pauses_every_lane_then_resumes_them_all() {
    let tasks: Vec<String> = (1..=3).map(|n| format!("src/s{n}.txt")).collect();
    let tasks: Vec<&str> = tasks.iter().map(String::as_str).collect();
    let project = project(&tasks, "[workflow]\nsame_epic = \"parallel\"\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = |n: u32| {
        let path = dir.path().join(format!("go-1.{n}"));
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        path
    };
    let (go1, go2, go3) = (fifo(1), fifo(2), fifo(3));
    let reset = humantime::format_rfc3339_seconds(
        std::time::SystemTime::now() + std::time::Duration::from_secs(2),
    );
    // 1.2's and 1.3's first Dev calls hang; 1.1's hits the limit once both are in flight (each
    // fake has counted its call when it opens its FIFO: the test's go signals).
    let script = project.script(&json!({"calls": [
        {"role": "dev", "story": "1.1", "occurrence": 1, "do": "usage_limit",
         "reset": reset.to_string(), "wait_for": go1},
        {"role": "dev", "story": "1.2", "occurrence": 1, "do": "hang", "wait_for": go2},
        {"role": "dev", "story": "1.3", "occurrence": 1, "do": "hang", "wait_for": go3},
        {"role": "dev", "story": "1.1", "write_files": {"src/s1.txt": "1\n"}},
        {"role": "dev", "story": "1.2", "write_files": {"src/s2.txt": "2\n"}},
        {"role": "dev", "story": "1.3", "write_files": {"src/s3.txt": "3\n"}},
    ]}));
    let mut cmd = bmad_host_tests::harness::run_command(&project);
    cmd.args(["--json", "--jobs", "3", "--wait-on-limit"])
        .env("FAKE_CLAUDE_SCRIPT", &script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn bmad-host");
    // Opening a FIFO to write returns once its reader has opened it.
    for go in [&go2, &go3, &go1] {
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(go)
                .expect("go"),
        );
    }
    let events = bmad_host_tests::harness::read_events_until(&mut child, |_| false);
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{events:?}");
    let limit_at = events
        .iter()
        .position(|e| e["event"] == "usage_limit")
        .expect("a usage_limit event");
    assert_eq!(events[limit_at]["story"], "1.1");
    assert_eq!(events[limit_at]["wait"], true, "{}", events[limit_at]);
    let wait_at = events
        .iter()
        .position(|e| e["event"] == "waiting_for_reset")
        .expect("a waiting_for_reset event");
    let (before, after) = events.split_at(wait_at);
    // The other lanes' calls were stopped before the wait, not left running through it...
    for story in ["1.2", "1.3"] {
        assert!(
            before.iter().any(|e| e["event"] == "agent_finished"
                && e["story"] == story
                && e["outcome"] == "cancelled"),
            "{story}: {before:?}"
        );
    }
    // ...and after the reset every lane started again and every story landed, one commit each.
    let restarted: std::collections::BTreeSet<&str> = after
        .iter()
        .filter(|e| e["event"] == "agent_started")
        .filter_map(|e| e["story"].as_str())
        .collect();
    assert_eq!(
        restarted.into_iter().collect::<Vec<_>>(),
        ["1.1", "1.2", "1.3"]
    );
    for n in 1..=3 {
        let end = events
            .iter()
            .find(|e| e["event"] == "story_finished" && e["story"] == format!("1.{n}").as_str())
            .expect("story_finished");
        assert_eq!(end["result"], "done", "{end}");
        assert_eq!(project.read(&format!("src/s{n}.txt")), format!("{n}\n"));
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "story_integrated")
            .count(),
        3
    );
    assert_eq!(subjects(&project).len(), 4);
}

/// `after_story` that appends its environment to `$AFTER_LOG`.
const LOG_AFTER_STORY: &str = r#"after_story = "echo \"$BMAD_HOST_STORY_ID|$BMAD_HOST_STORY_BRANCH|$BMAD_HOST_COMMIT|$BMAD_HOST_STORY_TITLE\" >> \"$AFTER_LOG\"""#;

fn after_log(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

#[test]
fn one_job_with_commit_story_lands_a_commit_per_story_then_runs_after_story_once() {
    let project = project(
        &["src/s1.txt", "src/s2.txt", "src/s3.txt"],
        &format!("[git]\ncommit = \"story\"\n{LOG_AFTER_STORY}\n"),
    );
    let script = project.script(&dev_writes(3, |n| {
        (format!("src/s{n}.txt"), format!("{n}\n"))
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("after.log");
    let env = [
        ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
        ("AFTER_LOG", log.to_str().expect("utf-8")),
    ];
    // `after_story` runs a command: a project's file needs the operator's trust for it.
    let refused = Run::project(&project, &[], &env);
    assert_eq!(refused.code(), 2, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("git.after_story"),
        "{}",
        refused.stderr()
    );

    let run = Run::project(&project, &["--trust"], &env);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // One commit per story on the checked-out branch, in story order, nothing left over but
    // the host's own state.
    let log_lines = git(project.path(), &["log", "--format=%H %s", "main"]);
    let commits: Vec<(&str, &str)> = log_lines
        .lines()
        .filter_map(|l| l.split_once(' '))
        .collect();
    let subjects: Vec<&str> = commits.iter().map(|(_, s)| *s).collect();
    assert_eq!(
        subjects,
        ["1.3: Part 3", "1.2: Part 2", "1.1: Part 1", "initial"]
    );
    assert_eq!(git(project.path(), &["status", "--porcelain"]), "");
    let shown = git(project.path(), &["show", "--stat", "--format=%b", "main~2"]);
    assert!(shown.contains("Reviewed by QA"), "{shown}");
    assert!(shown.contains("src/s1.txt"), "{shown}");
    assert!(shown.contains("docs/stories/1.1.story.md"), "{shown}");
    // `after_story` once per story, with its id, the branch, its commit and its title.
    let lines = after_log(&log);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (n, line) in lines.iter().enumerate() {
        let id = format!("1.{}", n + 1);
        let commit = commits
            .iter()
            .find(|(_, s)| s.starts_with(&format!("{id}:")))
            .map(|(h, _)| *h)
            .expect("its commit");
        assert_eq!(
            line,
            &[
                id.clone(),
                "main".into(),
                commit.into(),
                format!("Part {}", n + 1)
            ]
        );
    }
    let events = run.events_named("after_story");
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["passed"] == true), "{events:?}");
    assert_eq!(run.events_named("story_integrated").len(), 3);
    // `log` shows the after-story steps.
    assert_eq!(
        json_of(&project, "log")
            .iter()
            .filter(|s| s["kind"] == "after-story" && s["result"]["passed"] == true)
            .count(),
        3
    );
    // A second run finds the stories done: no commit, no second `after_story`.
    let again = Run::project(&project, &["--trust"], &env);
    assert_eq!(again.code(), 0, "{}", again.stderr());
    assert_eq!(
        subjects.len(),
        git(project.path(), &["log", "--format=%s", "main"])
            .lines()
            .count()
    );
    assert_eq!(after_log(&log).len(), 3);
}

#[test]
fn after_story_in_a_parallel_run_gets_the_story_branch_and_a_failure_stops_nothing() {
    let project = project(
        &["src/s1.txt", "src/s2.txt"],
        "[workflow]\nsame_epic = \"parallel\"\n[git]\nafter_story = \"echo \\\"$BMAD_HOST_STORY_ID|$BMAD_HOST_STORY_BRANCH|$BMAD_HOST_COMMIT\\\" >> \\\"$AFTER_LOG\\\"; exit 3\"\n",
    );
    let script = project.script(&dev_writes(2, |n| {
        (format!("src/s{n}.txt"), format!("{n}\n"))
    }));
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("after.log");
    let run = Run::project(
        &project,
        &["--jobs", "2", "--trust"],
        &[
            ("FAKE_CLAUDE_SCRIPT", script.to_str().expect("utf-8")),
            ("AFTER_LOG", log.to_str().expect("utf-8")),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let mut lines = after_log(&log);
    lines.sort();
    assert_eq!(lines.len(), 2, "{lines:?}");
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line[0], format!("1.{}", n + 1));
        assert_eq!(line[1], format!("bmad/1.{}", n + 1));
        let integrated = run
            .events_named("story_integrated")
            .into_iter()
            .find(|e| e["story"] == line[0].as_str())
            .expect("integrated");
        assert_eq!(integrated["commit"], line[2].as_str());
    }
    let events = run.events_named("after_story");
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e["passed"], false, "{e}");
        assert_eq!(e["exit_code"], 3, "{e}");
    }
    for n in 1..=2 {
        assert_eq!(run.story_result(&format!("1.{n}"))["result"], "done");
    }
}

#[test]
fn a_hanging_after_story_is_torn_down_at_its_timeout_and_the_run_goes_on() {
    let project = project(
        &["src/s1.txt", "src/s2.txt"],
        "[git]\ncommit = \"story\"\nafter_story = \"sleep 3600\"\nafter_story_timeout = \"1s\"\n",
    );
    let tag = bmad_host_tests::fake::unique_tag("after-story-hang");
    let run = Run::project(&project, &["--trust"], &[("AFTER_TAG", tag.as_str())]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let events = run.events_named("after_story");
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        assert_eq!(e["timed_out"], true, "{e}");
        assert_eq!(e["passed"], false, "{e}");
    }
    for n in 1..=2 {
        assert_eq!(run.story_result(&format!("1.{n}"))["result"], "done");
    }
    assert_eq!(subjects(&project).len(), 3);
    assert_eq!(
        bmad_host_tests::procs::processes_with_env("AFTER_TAG", &tag),
        Vec::<u32>::new()
    );
}

#[test]
fn no_commit_with_several_jobs_is_refused() {
    let project = project(&["src/s1.txt"], "[git]\ncommit = \"none\"\n");
    let run = Run::project(&project, &["--jobs", "2"], &[]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains("git.commit"), "{}", run.stderr());
    assert!(run.stderr().contains("--jobs 1"), "{}", run.stderr());
}

#[test]
fn a_v6_sprint_status_follows_each_integration_as_it_lands() {
    let project = Project::fixture("v6-sample");
    project.write("bmad-host.toml", "[workflow]\nsame_epic = \"parallel\"\n");
    project.write(".gitignore", ".fake-claude*\n");
    git(
        project.path(),
        &["init", "--quiet", "--initial-branch=main"],
    );
    git(project.path(), &["config", "user.name", "Tester"]);
    git(
        project.path(),
        &["config", "user.email", "tester@example.com"],
    );
    git(project.path(), &["add", "--all"]);
    git(project.path(), &["commit", "--quiet", "-m", "initial"]);
    let run = Run::project(&project, &["--jobs", "3"], &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    // Right after each integration (before the next one), the main checkout's sprint-status
    // is set to done for the story that landed: not once at the end of the batch.
    let keys = [
        ("1.1", "1-1-count-lines"),
        ("1.2", "1-2-count-words"),
        ("1.3", "1-3-count-characters"),
    ];
    let integrated: Vec<usize> = run
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "story_integrated")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(integrated.len(), 3);
    for (k, &at) in integrated.iter().enumerate() {
        let story = run.events[at]["story"].as_str().unwrap_or_default();
        let key = keys
            .iter()
            .find(|(s, _)| *s == story)
            .map(|(_, k)| *k)
            .expect("key");
        let until = integrated.get(k + 1).copied().unwrap_or(run.events.len());
        let set = run.events[at..until].iter().any(|e| {
            e["event"] == "sprint_reconciled"
                && e["changes"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["key"] == key && c["to"] == "done"))
        });
        assert!(set, "{story}: {:?}", &run.events[at..until]);
    }
}

#[test]
fn a_terminal_shows_one_progress_line_per_running_story() {
    use std::io::Read as _;
    let project = project(
        &["src/s1.txt", "src/s2.txt"],
        "[workflow]\nsame_epic = \"parallel\"\n",
    );
    // Both Dev calls talk for a while, side by side (they do not play the role: the stories
    // then fail, only the display matters here).
    let script = project.script(&json!({"calls": [
        {"role": "dev", "do": "slow", "lines": 8, "delay_ms": 150},
    ]}));
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = bmad_host_tests::harness::run_command(&project);
    cmd.args(["--jobs", "2"])
        .env("FAKE_CLAUDE_SCRIPT", &script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(pty.slave));
    let mut child = cmd.spawn().expect("spawn bmad-host");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => screen.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait");
    let screen = String::from_utf8_lossy(&screen);
    assert_eq!(status.code(), Some(1), "{screen}");
    for lane in [1, 2] {
        let line = format!("lane {lane} · story 1.");
        assert!(
            screen.contains(&line),
            "no `{line}` on the terminal:\n{screen}"
        );
    }
    assert!(screen.contains("· dev · cycle 1"), "{screen}");
}
