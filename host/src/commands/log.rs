//! `bmad-host log`: the journaled steps of the latest run, as text or JSON lines (a parallel
//! run's steps carry the lane that held their story).

use std::io::Write;
use std::path::Path;

use crate::error::Error;
use crate::exit;
use crate::journal::{Journal, LaneIntent, StepKind};

/// Prints the steps of the latest run (only `story`'s, when given).
pub(super) fn print(root: &Path, json: bool, story: Option<&str>) -> Result<u8, Error> {
    let Some(journal) = Journal::open_read_only(root)? else {
        eprintln!(
            "no journal at {}: nothing has run here yet",
            root.join(".bmad-host").display()
        );
        return Ok(exit::OK);
    };
    let mut out = std::io::stdout().lock();
    // A parallel run's `lane` records: each step carries the lane that held its story then.
    let mut lanes: Vec<(String, u32)> = Vec::new();
    for step in journal.steps(None, story)? {
        if step.key.kind == StepKind::Lane
            && let Ok(intent) = serde_json::from_value::<LaneIntent>(step.intent.clone())
        {
            lanes.retain(|(s, _)| *s != step.key.story);
            lanes.push((step.key.story.clone(), intent.lane));
        }
        let lane = lanes
            .iter()
            .find(|(s, _)| *s == step.key.story)
            .map(|(_, lane)| *lane);
        if json {
            let mut line = serde_json::json!({
                "step": step.id.get(),
                "run": step.key.run.to_string(),
                "story": step.key.story,
                "cycle": step.key.cycle,
                "role": step.key.role,
                "kind": step.key.kind.as_str(),
                "seq": step.key.seq,
                "attempt": step.attempt,
                "intent_at": humantime::format_rfc3339_millis(step.intent_at).to_string(),
                "intent": step.intent,
                "result_at": step.result_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                "result": step.result,
            });
            if let Some(lane) = lane {
                line["lane"] = lane.into();
            }
            serde_json::to_writer(&mut out, &line)?;
            writeln!(out).map_err(Error::Output)?;
        } else if let Some(lane) = lane {
            writeln!(out, "{step}  [lane {lane}]").map_err(Error::Output)?;
        } else {
            writeln!(out, "{step}").map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}
