//! The journal's cost per agent-call step: `begin_step` (a durable, fsynced SQLite commit) +
//! `finish_step` (a relaxed commit, fsynced by the next durable one), with intents and results of
//! a realistic size. The journal lives in the system temporary
//! directory (`TMPDIR`), so the figure includes that file system's fsync.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use bmad_host::journal::{Journal, RunFingerprint, StepKey, StepKind};

fn journal_step(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut journal = Journal::open(dir.path()).expect("open the journal");
    let run = journal
        .start_run(true, &RunFingerprint::default())
        .expect("start a run")
        .id;
    let intent = json!({
        "decision": "invoke-agent",
        "prompt": "Implement story 1.2 following the acceptance criteria; run the tests.",
        "max_turns": 40,
        "allowed_tools": ["Read", "Edit", "Write", "Bash"],
    });
    let result = json!({
        "outcome": "success",
        "turns": 23,
        "duration_ms": 184_211,
        "cost_usd": 0.8412,
        "usage": {"input_tokens": 48_211, "output_tokens": 9_120},
    });
    let mut seq = 0u32;
    c.bench_function(
        "journal step (agent call: begin_step fsynced, finish_step relaxed)",
        |b| {
            b.iter(|| {
                seq += 1;
                let key = StepKey {
                    run: run.clone(),
                    story: "1.2".to_owned(),
                    cycle: 1,
                    role: "dev".to_owned(),
                    kind: StepKind::AgentCall,
                    seq,
                };
                let start = journal.begin_step(&key, &intent).expect("begin_step");
                let id = start.id().expect("a new step");
                journal.finish_step(id, &result).expect("finish_step");
            })
        },
    );
}

criterion_group!(benches, journal_step);
criterion_main!(benches);
