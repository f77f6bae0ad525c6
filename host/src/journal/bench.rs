//! The journal's cost per step, for `cargo xtask bench` and the criterion bench.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Journal, JournalError, RunFingerprint, StepKey, StepKind};

/// Opens (creating) the journal of a project at `dir`, starts a fresh run, and returns the mean
/// wall-clock time of one journaled agent-call step (`begin_step`, a durable commit, +
/// `finish_step`, a relaxed one) over `n` steps with intents and results of a realistic size (a
/// few hundred bytes).
pub fn bench_step_cost(dir: &Path, n: usize) -> Result<Duration, JournalError> {
    let mut journal = Journal::open(dir)?;
    let run = journal.start_run(true, &RunFingerprint::default())?.id;
    let intent = json!({
        "decision": "invoke-agent",
        "prompt": "Implement story 1.2 following the acceptance criteria; run the tests; \
                   update the Dev Agent Record and the File List.",
        "max_turns": 40,
        "allowed_tools": ["Read", "Edit", "Write", "Bash"],
        "model": null,
    });
    let result = json!({
        "outcome": "success",
        "turns": 23,
        "duration_ms": 184_211,
        "cost_usd": 0.8412,
        "usage": {"input_tokens": 48_211, "output_tokens": 9_120},
        "transcript": ".bmad-host/runs/20261123T154700Z-1a2b/1.2-c1-dev.jsonl",
    });
    let start = Instant::now();
    for seq in 0..n {
        let key = StepKey {
            run: run.clone(),
            story: "1.2".to_owned(),
            cycle: 1,
            role: "dev".to_owned(),
            kind: StepKind::AgentCall,
            seq: u32::try_from(seq).unwrap_or(u32::MAX),
        };
        if let Some(id) = journal.begin_step(&key, &intent)?.id() {
            journal.finish_step(id, &result)?;
        }
    }
    Ok(start.elapsed() / u32::try_from(n.max(1)).unwrap_or(u32::MAX))
}
