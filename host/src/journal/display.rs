//! Lines for people: a `bmad-host log` line per [`StepRow`], a `bmad-host status` line per
//! [`StorySummary`].

use std::fmt;
use std::time::Duration;

use serde_json::Value;

use super::{StepRow, StorySummary};
use crate::policy::state_name;

/// Longest JSON summary shown on a log line, in characters.
const SUMMARY_CHARS: usize = 100;

/// `2026-11-23T15:47:00Z  1.2  c1  dev  agent-call#0  a2  12s  {"outcome":"success",…}`
/// (the attempt only when above 1; `no result (running or interrupted)` while there is none).
impl fmt::Display for StepRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        write!(
            f,
            "{}  {}  c{}  {}  {}#{}",
            humantime::format_rfc3339_seconds(self.intent_at),
            key.story,
            key.cycle,
            key.role,
            key.kind.as_str(),
            key.seq
        )?;
        if self.attempt > 1 {
            write!(f, "  a{}", self.attempt)?;
        }
        match (&self.result, self.result_at) {
            (Some(result), Some(at)) => write!(
                f,
                "  {}  {}",
                short_duration(at.duration_since(self.intent_at).unwrap_or_default()),
                summary(result)
            ),
            _ => write!(
                f,
                "  no result (running or interrupted)  intent {}",
                summary(&self.intent)
            ),
        }
    }
}

/// `1.2  in-progress  cycle 2  4m 3s  31 turns  $0.84 API-equivalent  QA asked for changes`
/// (the result instead of the state once finished).
impl fmt::Display for StorySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rec = &self.record;
        let standing = match rec.result {
            Some(result) => result.as_str(),
            None => state_name(rec.state),
        };
        write!(
            f,
            "{}  {}  cycle {}  {}  {} turns  ${:.2} API-equivalent",
            rec.story_id,
            standing,
            rec.cycle,
            short_duration(rec.usage.duration),
            rec.usage.turns,
            rec.usage.cost_usd
        )?;
        if let Some(outcome) = &rec.last_outcome {
            write!(f, "  {outcome}")?;
        }
        Ok(())
    }
}

/// Whole seconds (`4m 3s`), or milliseconds under a second.
fn short_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// Compact JSON, cut at [`SUMMARY_CHARS`] characters.
fn summary(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
