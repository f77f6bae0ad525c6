//! `bmad:policy@0.2.0` beside 0.1.0: a component built against the frozen 0.1.0 WIT
//! (`bmad-test-old01`, a QA policy) still loads and drives stories through the real binary; one
//! built for 9.0.0 is still refused naming the versions this host supports; and the `scheduler`
//! world (new in 0.2.0): the embedded default scheduler and a team's own (`bmad-test-reverse`)
//! chosen through `[roles] scheduler`, with a trap or a bad answer refused with a clear error.

use std::path::Path;

use bmad_host::plugins::{PluginConfig, PluginError, PluginRole, PluginSet, PluginSources};
use bmad_host::policy::{
    Candidate, Decision, Dependency, Finding, Layout, OutcomeKind, ParseOutcome, QaGate, Role,
    Round, RoundKind, Running, StepReport, Story, StoryState,
};
use bmad_host_tests::components::{Folder, plugin_folder, wasm};
use bmad_host_tests::harness::{Project, Run, fake_claude, warm_cache_dir};
use tempfile::TempDir;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A plugins folder with one plugin `name` playing `role`, built from `krate` for `wit`.
fn folder_with(name: &str, role: &str, krate: &str, wit: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    plugin_folder(
        dir.path(),
        name,
        role,
        &wasm(krate),
        &Folder {
            wit,
            ..Folder::default()
        },
    );
    dir
}

/// The embedded plugins with `folder`'s over them, as `bmad-host` loads them.
/// The components come from the tests' warm cache: compiling them is not what these tests test.
fn load(folder: Option<&Path>, roles: &[(&str, &str)]) -> Result<PluginSet, PluginError> {
    let project = tempfile::tempdir().expect("tempdir");
    let cfg = PluginConfig {
        roles: roles
            .iter()
            .map(|(r, p)| ((*r).to_string(), (*p).to_string()))
            .collect(),
        project_root: project.path().to_path_buf(),
        cache_dir: Some(warm_cache_dir()),
        ..PluginConfig::default()
    };
    PluginSet::load_from(&PluginSources::embedded_and(folder), &cfg)
}

fn candidate(id: &str, footprint: Option<&[&str]>, deps: &[(&str, bool)]) -> Candidate {
    Candidate {
        id: id.to_string(),
        epic: 1,
        state: Some(StoryState::ReadyForDev),
        footprint: footprint
            .unwrap_or_default()
            .iter()
            .map(|g| (*g).to_string())
            .collect(),
        footprint_known: footprint.is_some(),
        depends_on: deps
            .iter()
            .map(|(id, done)| Dependency {
                id: (*id).to_string(),
                done: *done,
            })
            .collect(),
    }
}

fn running(id: &str, footprint: &[&str]) -> Running {
    Running {
        id: id.to_string(),
        epic: 1,
        footprint: footprint.iter().map(|g| (*g).to_string()).collect(),
        footprint_known: true,
    }
}

#[test]
fn the_embedded_scheduler_applies_the_default_rule() {
    let set = load(None, &[]).expect("the embedded plugins load");
    assert_eq!(set.plugin_for(PluginRole::Scheduler), "scheduler");
    let scheduler = set.scheduler().expect("a scheduler");
    assert_eq!(scheduler.plugin(), "scheduler");
    let candidates = [
        candidate("1.1", Some(&["src/auth/**"]), &[]),
        candidate("1.2", Some(&["src/auth/login.rs"]), &[]),
        candidate("1.3", None, &[("1.1", false)]),
        candidate("1.4", None, &[]),
        candidate("1.5", Some(&["src/users/*.rs"]), &[("0.1", true)]),
        candidate("1.6", Some(&["docs/**"]), &[]),
    ];
    let run = [running("2.1", &["src/users/**"])];
    assert_eq!(
        scheduler.admit(&candidates, &run, 4).expect("admit"),
        ["1.1", "1.4", "1.6"]
    );
    assert_eq!(
        scheduler.admit(&candidates, &[], 2).expect("admit"),
        ["1.1", "1.4"]
    );
    assert!(
        scheduler
            .admit(&candidates, &[], 0)
            .expect("admit")
            .is_empty()
    );
    // The plugin set records the scheduler it was given, for the journal.
    assert!(
        set.fingerprints()
            .iter()
            .any(|p| p.role == PluginRole::Scheduler && p.wit == "0.2.0")
    );
}

#[test]
fn a_team_scheduler_is_chosen_through_roles() {
    let folder = folder_with("reverse", "scheduler", "bmad-test-reverse", "");
    let set = load(Some(folder.path()), &[("scheduler", "reverse")]).expect("load");
    let scheduler = set.scheduler().expect("a scheduler");
    assert_eq!(scheduler.plugin(), "reverse");
    let candidates = [
        candidate("1.1", Some(&["src/**"]), &[]),
        candidate("1.2", Some(&["src/**"]), &[]),
        candidate("1.3", None, &[("1.1", false)]),
        candidate("1.4", None, &[]),
    ];
    assert_eq!(
        scheduler.admit(&candidates, &[], 2).expect("admit"),
        ["1.4", "1.2"]
    );

    // A trap fails the call with the plugin, the call and the panic named.
    let trap = scheduler
        .admit(&[candidate("TRAP", None, &[])], &[], 1)
        .expect_err("a trap");
    assert!(
        matches!(&trap, PluginError::Trap { plugin, call, .. } if plugin == "reverse" && *call == "admit"),
        "{trap:?}"
    );
    assert!(trap.to_string().contains("asked to trap"), "{trap}");
    // An id that is no candidate's is refused, not acted on.
    let liar = scheduler
        .admit(&[candidate("LIAR", None, &[])], &[], 1)
        .expect_err("a bad answer");
    assert!(matches!(&liar, PluginError::BadAnswer { .. }), "{liar:?}");
    assert!(
        liar.to_string().contains("reverse") && liar.to_string().contains("`9.9`"),
        "{liar}"
    );
    // The scheduler instance is fresh for each call: a failed one changes nothing.
    assert_eq!(
        scheduler.admit(&candidates, &[], 1).expect("admit"),
        ["1.4"]
    );
}

#[test]
fn the_scheduler_role_needs_a_scheduler() {
    // A plugin of another role cannot be the scheduler.
    let e = load(None, &[("scheduler", "qa")]).expect_err("refused");
    assert!(
        e.to_string().contains("plays role `qa`") && e.to_string().contains("scheduler"),
        "{e}"
    );
    // A 0.1.0 manifest cannot declare the scheduler role: the world is new in 0.2.0.
    let folder = folder_with("reverse", "scheduler", "bmad-test-reverse", "0.1.0");
    let e = load(Some(folder.path()), &[]).expect_err("refused");
    assert!(e.to_string().contains("new in bmad:policy@0.2.0"), "{e}");
    // Without the embedded plugins and with no scheduler in the folder, the set loads (the
    // role is optional) and says so when asked.
    let project = tempfile::tempdir().expect("tempdir");
    let only = tempfile::tempdir().expect("tempdir");
    bmad_host_tests::components::plugin_dir(only.path(), "bmad-test-good");
    let cfg = PluginConfig {
        project_root: project.path().to_path_buf(),
        cache_dir: Some(warm_cache_dir()),
        ..PluginConfig::default()
    };
    let set = PluginSet::load(only.path(), &cfg).expect("load");
    assert_eq!(set.plugin_for(PluginRole::Scheduler), "");
    let e = set.scheduler().expect_err("no scheduler");
    assert!(e.to_string().contains("[roles] scheduler"), "{e}");
}

fn story() -> Story {
    Story {
        id: "1.1".to_string(),
        epic: 1,
        title: "Registration".to_string(),
        path: "docs/stories/1.1.story.md".to_string(),
        exists: true,
        state: Some(StoryState::Review),
        raw_status: Some("Review".to_string()),
        cycle: 2,
        max_cycles: 3,
        retry: false,
        layout: Layout::V4,
        bmad_version: "4.44.3".to_string(),
        epic_path: String::new(),
        gate_path: "docs/qa/gates/1.1-x.yml".to_string(),
        sprint_status_path: String::new(),
        previous_findings: vec!["high: A is broken".to_string()],
        findings_history: vec![1],
        rounds: vec![Round {
            cycle: 1,
            kind: RoundKind::Review,
            findings: vec![Finding {
                fingerprint: "a is broken".to_string(),
                text: "high: A is broken".to_string(),
            }],
        }],
    }
}

#[test]
fn a_0_1_0_policy_runs_through_the_adapter() {
    let folder = folder_with("qa-old", "qa", "bmad-test-old01", "0.1.0");
    let set = load(Some(folder.path()), &[("qa", "qa-old")]).expect("a 0.1.0 component loads");
    assert!(
        set.fingerprints()
            .iter()
            .any(|p| p.name == "qa-old" && p.wit == "0.1.0")
    );
    let mut session = set.begin_step(Role::Qa).expect("instance");
    let Decision::InvokeAgent(request) = session.begin(&story(), "doc").expect("begin") else {
        panic!("expected invoke-agent");
    };
    assert!(
        request.prompt.contains("docs/qa/gates/1.1-x.yml"),
        "{}",
        request.prompt
    );
    let mut report = StepReport {
        outcome: Some(bmad_host::policy::CallOutcome {
            kind: OutcomeKind::Success,
            message: "reviewed".to_string(),
            num_turns: 1,
            cost_usd: 0.0,
            duration_ms: 1,
        }),
        document: String::new(),
        status: ParseOutcome::Missing(bmad_host::policy::MissingReason::NoStatus),
        gates: Vec::new(),
        qa_gate: Some(QaGate {
            path: "docs/qa/gates/1.1-x.yml".to_string(),
            gate: "FAIL".to_string(),
            text: String::new(),
        }),
    };
    // What a 0.1.0 guest learns of the history is the 0.1.0 fields.
    match session.end(&story(), &report).expect("end") {
        Decision::SendBack(f) => assert_eq!(f, ["old QA: gate FAIL after 1 earlier rounds"]),
        other => panic!("expected send-back, got {other:?}"),
    }
    report.qa_gate = Some(QaGate {
        gate: "PASS".to_string(),
        ..report.qa_gate.take().expect("gate")
    });
    assert!(matches!(
        session.end(&story(), &report).expect("end"),
        Decision::SetState(StoryState::Done)
    ));
}

#[test]
fn a_0_1_0_qa_policy_drives_the_sample_through_the_binary() {
    let folder = folder_with("qa-old", "qa", "bmad-test-old01", "0.1.0");
    let project = Project::fixture("v4-sample");
    let fake = fake_claude();
    let run = Run::bmad_host(
        &[
            "run",
            "--json",
            "--project",
            path_str(project.path()),
            "--claude-bin",
            path_str(&fake),
            "--plugins",
            path_str(folder.path()),
            "--policy",
            "qa=qa-old",
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    for story in ["1.1", "1.2", "1.3"] {
        assert_eq!(run.story_result(story)["result"], "done", "{story}");
    }
    let qa_calls = run
        .events_named("agent_started")
        .iter()
        .filter(|e| e["role"] == "qa")
        .count();
    assert_eq!(qa_calls, 3);

    // A 9.0.0 component is still refused, naming what this host supports.
    let dir = tempfile::tempdir().expect("tempdir");
    plugin_folder(
        dir.path(),
        "qa-nine",
        "qa",
        &wasm("bmad-test-wit9"),
        &Folder {
            wit: "0.1.0",
            ..Folder::default()
        },
    );
    let run = Run::bmad_host(
        &[
            "plugins",
            "check",
            "--plugins",
            path_str(dir.path()),
            "--project",
            path_str(project.path()),
        ],
        &[],
    );
    assert_eq!(run.code(), 2);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&run.output.stdout),
        run.stderr()
    );
    assert!(
        out.contains("bmad:policy@9.0.0") && out.contains("bmad:policy@0.1.0, bmad:policy@0.2.0"),
        "{out}"
    );
}

#[test]
fn plugins_list_shows_the_scheduler_role_from_the_config() {
    let folder = folder_with("reverse", "scheduler", "bmad-test-reverse", "");
    let project = Project::fixture("v4-sample");
    project.write("bmad-host.toml", "[roles]\nscheduler = \"reverse\"\n");
    let run = Run::bmad_host(
        &[
            "plugins",
            "list",
            "--json",
            "--plugins",
            path_str(folder.path()),
            "--project",
            path_str(project.path()),
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let roles: Vec<(&str, &str)> = run
        .events
        .iter()
        .filter_map(|e| Some((e["role"].as_str()?, e["plugin"].as_str()?)))
        .collect();
    assert!(roles.contains(&("scheduler", "reverse")), "{roles:?}");
    assert!(roles.contains(&("qa", "qa")), "{roles:?}");
}
