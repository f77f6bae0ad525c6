//! Unproven ends: nothing starts after a call or gate whose end the host could not prove (a
//! process alive after SIGKILL, its output held open). The run stops (exit 1) naming the
//! processes, and records them in the journal (a `teardown` record); the next run, resumed or
//! `--fresh`, first stops what a dead host left running and checks those processes again, and
//! stops again while any of them lives.

use std::time::Duration;

use super::driver::{Driver, StepCtx};
use super::halt::{Halt, Unproven};
use crate::journal::{
    Journal, JournalError, RunId, StepKey, StepKind, SurvivorRecord, TeardownIntent, TeardownResult,
};
use crate::process::{Survivor, SurvivorKind};

/// How long the processes a dead host left behind get to die after SIGKILL.
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

impl Driver<'_> {
    /// The end of `what` (in `ctx`'s step) could not be proven: records its survivors in the
    /// journal, so the next run checks them first, and returns the halt that stops this run.
    pub(super) fn unproven(
        &mut self,
        ctx: &StepCtx<'_>,
        what: String,
        survivors: Vec<Survivor>,
    ) -> Halt {
        let unproven = Unproven { what, survivors };
        if let Err(e) = record(
            &mut self.journal.borrow_mut(),
            &self.run,
            ctx.story,
            ctx.cycle,
            ctx.role_name(),
            &unproven,
        ) {
            return Halt::Fatal(e.into());
        }
        Halt::Unproven(unproven)
    }
}

/// Journals `unproven` as a `teardown` record of `run` (a new one each time: its sequence
/// number counts the run's records).
fn record(
    journal: &mut Journal,
    run: &RunId,
    story: &str,
    cycle: u32,
    role: &str,
    unproven: &Unproven,
) -> Result<(), JournalError> {
    let seq = teardowns(journal, run)?.len();
    let key = StepKey {
        run: run.clone(),
        story: story.to_string(),
        cycle,
        role: role.to_string(),
        kind: StepKind::Teardown,
        seq: u32::try_from(seq).unwrap_or(u32::MAX),
    };
    let intent = TeardownIntent {
        what: unproven.what.clone(),
    };
    let result = TeardownResult {
        survivors: unproven.survivors.iter().map(to_record).collect(),
    };
    journal.record_step(
        &key,
        &serde_json::to_value(intent).unwrap_or_default(),
        &serde_json::to_value(result).unwrap_or_default(),
    )
}

/// The survivors recorded in `run`'s `teardown` records (a record that does not decode counts
/// as an error: an unproven end must not be forgotten).
fn teardowns(journal: &Journal, run: &RunId) -> Result<Vec<SurvivorRecord>, JournalError> {
    let mut out = Vec::new();
    for step in journal.steps(Some(run), None)? {
        if step.key.kind != StepKind::Teardown {
            continue;
        }
        let result: TeardownResult = step
            .result
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| JournalError::Data {
                path: journal.path().to_path_buf(),
                what: "teardown record",
                detail: e.to_string(),
            })?
            .unwrap_or(TeardownResult {
                survivors: Vec::new(),
            });
        out.extend(result.survivors);
    }
    Ok(out)
}

fn to_record(s: &Survivor) -> SurvivorRecord {
    SurvivorRecord {
        command: s.command.clone(),
        holds_output: s.kind == SurvivorKind::HoldsOutput,
        pid: s.pid,
        start: s.start,
    }
}

/// The recorded process, if that very process (same pid and start time) is still alive.
fn still_alive(r: &SurvivorRecord) -> Option<Survivor> {
    let kind = if r.holds_output {
        SurvivorKind::HoldsOutput
    } else {
        SurvivorKind::Alive
    };
    let now = Survivor::find(r.pid, kind)?;
    (now.start == r.start).then_some(now)
}

/// Before `run` starts anything: stops every process the unfinished runs `earlier` (the run
/// being resumed among them) left behind (they carry their run's `BMAD_HOST_RUN_ID`), and
/// checks the survivors their unproven ends recorded. Returns what still lives, after recording
/// it in `run` (so the next run checks it again), or None when the way is clear.
pub(super) async fn check_at_start(
    journal: &mut Journal,
    run: &RunId,
    earlier: &[RunId],
) -> Result<Option<Unproven>, JournalError> {
    let mut alive: Vec<Survivor> = Vec::new();
    for id in earlier {
        // A host that died (kill -9, a reboot) may have left its agent or gate running: stop
        // them before anything starts, so two agents never edit the same files.
        let marker = format!("BMAD_HOST_RUN_ID={id}");
        let survivors = crate::process::stop_leftovers(&marker, LEFTOVER_GRACE).await;
        if !survivors.is_empty() {
            tracing::warn!(run = %id, ?survivors, "processes of an earlier run survived SIGKILL");
        }
        add(&mut alive, survivors);
    }
    let mut recorded_here = Vec::new();
    for id in earlier {
        let records = teardowns(journal, id)?;
        let found: Vec<Survivor> = records.iter().filter_map(still_alive).collect();
        if id == run {
            recorded_here.extend(found.iter().map(|s| (s.pid, s.start)));
        }
        add(&mut alive, found);
    }
    if alive.is_empty() {
        return Ok(None);
    }
    let unproven = Unproven {
        what: "an earlier call or gate".to_string(),
        survivors: alive,
    };
    let new = Unproven {
        survivors: unproven
            .survivors
            .iter()
            .filter(|s| !recorded_here.contains(&(s.pid, s.start)))
            .cloned()
            .collect(),
        ..unproven.clone()
    };
    if !new.survivors.is_empty() {
        record(journal, run, "", 0, "host", &new)?;
    }
    Ok(Some(unproven))
}

/// Adds `found` to `alive`, each process once.
fn add(alive: &mut Vec<Survivor>, found: Vec<Survivor>) {
    for s in found {
        if !alive.iter().any(|a| a.pid == s.pid && a.start == s.start) {
            alive.push(s);
        }
    }
}
