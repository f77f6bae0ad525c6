//! Plugin host benchmarks: loading a component cold (compile) and cached (deserialize), and the
//! cost of each call into a policy and the status parser.
//!
//! Uses the workspace's own plugins in `plugins/` (run `cargo xtask build-plugins` first;
//! `cargo xtask bench` does). Targets: a cached load under 2 ms per component, a policy call
//! under 20 µs.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use bmad_host::plugins::{PluginConfig, PluginSet, inspect};
use bmad_host::policy::{
    AgentEvent, CallOutcome, Layout, OutcomeKind, ParseOutcome, Role, StatusSource, StatusValue,
    StepReport, Story, StoryState,
};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const STORY_DOC: &str = "# Story 1.2: Login form

## Status

Approved

## Story

**As a** registered user,
**I want** to log in with my email and password,
**so that** I can reach my dashboard.

## Acceptance Criteria

1. The form has email and password fields and a submit button.
2. Wrong credentials show an error without revealing which field was wrong.
3. A successful login redirects to the dashboard.

## Tasks / Subtasks

- [ ] Build the form component (AC: 1)
  - [ ] Email and password inputs with labels
- [ ] Wire the submit handler to the auth API (AC: 2, 3)
- [ ] Tests for each acceptance criterion

## Dev Notes

The auth API lives in `src/api/auth.ts`. Use the existing `Button` component.

## Change Log

| Date | Version | Description | Author |
| --- | --- | --- | --- |
| 2026-01-02 | 0.1 | Draft | SM |

## Dev Agent Record

## QA Results
";

fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("plugins")
}

fn config(cache: &Path) -> PluginConfig {
    PluginConfig {
        project_root: std::env::temp_dir(),
        cache_dir: Some(cache.to_path_buf()),
        ..PluginConfig::default()
    }
}

fn story() -> Story {
    Story {
        id: "1.2".to_string(),
        epic: 1,
        title: "Login form".to_string(),
        path: "docs/stories/1.2.login-form.md".to_string(),
        exists: true,
        state: Some(StoryState::Review),
        raw_status: Some("Review".to_string()),
        cycle: 1,
        max_cycles: 3,
        retry: false,
        layout: Layout::V4,
        bmad_version: "4.44.3".to_string(),
        epic_path: "docs/prd/epic-1.md".to_string(),
        gate_path: "docs/qa/gates/1.2-login-form.yml".to_string(),
        sprint_status_path: String::new(),
        previous_findings: Vec::new(),
        findings_history: Vec::new(),
        rounds: Vec::new(),
    }
}

fn report() -> StepReport {
    StepReport {
        outcome: Some(CallOutcome {
            kind: OutcomeKind::Success,
            message: "done".to_string(),
            num_turns: 12,
            cost_usd: 0.4,
            duration_ms: 90_000,
        }),
        document: STORY_DOC.replace("Approved", "Review"),
        status: ParseOutcome::Found(StatusValue {
            raw: "Review".to_string(),
            line: 5,
            source: StatusSource::Section,
            state: Some(StoryState::Review),
        }),
        gates: Vec::new(),
        qa_gate: None,
    }
}

/// A plugin directory holding only the `status` folder of the workspace's plugins.
fn single_plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = plugins_dir().join("status");
    let to = dir.path().join("status");
    std::fs::create_dir_all(&to).expect("mkdir");
    for file in ["plugin.toml", "status.wasm"] {
        std::fs::copy(from.join(file), to.join(file)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run `cargo xtask build-plugins` first)",
                from.join(file).display()
            )
        });
    }
    dir
}

fn load(c: &mut Criterion) {
    let dir = single_plugin_dir();
    let mut group = c.benchmark_group("plugins/load");
    group.sample_size(20);
    group.bench_function("cold (compile one component)", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("cache dir"),
            |cache| {
                let infos = inspect(dir.path(), &config(cache.path()));
                assert!(infos[0].problem.is_none(), "{:?}", infos[0].problem);
                cache
            },
            BatchSize::PerIteration,
        )
    });
    let cache = tempfile::tempdir().expect("cache dir");
    let cfg = config(cache.path());
    inspect(dir.path(), &cfg);
    group.sample_size(100);
    group.bench_function("cached (one component)", |b| {
        b.iter(|| {
            let infos = inspect(dir.path(), &cfg);
            assert!(infos[0].problem.is_none());
        })
    });
    let all = config(cache.path());
    PluginSet::load(&plugins_dir(), &all).expect("load plugins/ (run `cargo xtask build-plugins`)");
    group.bench_function("cached PluginSet::load (every plugin in plugins/)", |b| {
        b.iter(|| black_box(PluginSet::load(&plugins_dir(), &all).expect("load")))
    });
    group.finish();
}

fn calls(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("cache dir");
    let set = PluginSet::load(&plugins_dir(), &config(cache.path()))
        .expect("load plugins/ (run `cargo xtask build-plugins`)");
    let story = story();
    let report = report();
    let event = AgentEvent::ToolUse("Bash".to_string());
    let mut group = c.benchmark_group("plugins/call");
    group.bench_function("parse (status, 1.2 KB story)", |b| {
        b.iter(|| black_box(set.parse_status(black_box(STORY_DOC)).expect("parse")))
    });
    group.bench_function("begin_step (fresh qa instance)", |b| {
        b.iter(|| black_box(set.begin_step(Role::Qa).expect("step")))
    });
    let mut session = set.begin_step(Role::Qa).expect("step");
    group.bench_function("begin (qa)", |b| {
        b.iter(|| black_box(session.begin(&story, black_box(STORY_DOC)).expect("begin")))
    });
    group.bench_function("on-event (qa)", |b| {
        b.iter(|| black_box(session.on_event(&story, black_box(&event)).expect("event")))
    });
    group.bench_function("end (qa)", |b| {
        b.iter(|| black_box(session.end(&story, black_box(&report)).expect("end")))
    });
    group.finish();
}

criterion_group!(benches, load, calls);
criterion_main!(benches);
