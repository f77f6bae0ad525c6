//! The end of a run: each story's totals, the exit code and journal status the results mean,
//! the `run_finished` event and the table for people.

use std::path::Path;
use std::time::Duration;

use super::halt::Halt;
use crate::claude::CallReport;
use crate::error::{Error, Report};
use crate::exit;
use crate::journal::{RunStatus, StoryRecord, Usage};
use crate::ui::{Event, SurvivorInfo, Ui};
use crate::workflow::{Flow, StoryResult};

/// A story's totals, for its `story_finished` event, the journal and the summary.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub cycles: u32,
    pub turns: u32,
    pub cost_usd: f64,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub duration: Duration,
}

impl Tally {
    /// The totals of a story as the journal left them (zero for a story not started yet).
    pub fn resumed(flow: &Flow, record: &StoryRecord) -> Self {
        Tally {
            cycles: flow.cycle(),
            turns: record.usage.turns,
            cost_usd: record.usage.cost_usd,
            input_tokens: record.usage.input_tokens,
            output_tokens: record.usage.output_tokens,
            duration: record.usage.duration,
        }
    }

    /// Every token the CLI reported: input, cache reads and writes, output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Adds one agent call's use.
    pub fn add_call(&mut self, report: &CallReport) {
        self.turns += report.num_turns;
        self.cost_usd += report.cost_usd;
        self.input_tokens = self.input_tokens.saturating_add(report.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(report.output_tokens);
        self.duration += report.duration;
    }

    /// Writes the totals into the story's journal record.
    pub fn record_into(&self, usage: &mut Usage) {
        usage.turns = self.turns;
        usage.cost_usd = self.cost_usd;
        usage.input_tokens = self.input_tokens;
        usage.output_tokens = self.output_tokens;
        usage.duration = self.duration;
    }
}

/// What a run came to: the stories driven to an end, in order, and why it stopped early if it
/// did.
#[derive(Debug, Default)]
pub(super) struct Results {
    pub stories: Vec<(String, StoryResult, Tally)>,
    pub halt: Option<Halt>,
    /// The run's spend cap that stopped it (the stories after it were not run), when one did.
    pub capped: Option<String>,
}

impl Results {
    fn count(&self, word: &str) -> usize {
        self.stories
            .iter()
            .filter(|(_, r, _)| r.word() == word)
            .count()
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match &self.halt {
            Some(Halt::Interrupted) => exit::INTERRUPTED,
            Some(Halt::UsageLimit { .. } | Halt::Unproven(_)) => exit::STORY_FAILED,
            Some(Halt::Fatal(_)) => exit::USAGE,
            None if self.count("failed") + self.count("escalated") > 0 => exit::STORY_FAILED,
            None => exit::OK,
        }
    }

    /// How the journal records the run.
    pub fn run_status(&self) -> RunStatus {
        match &self.halt {
            Some(_) => RunStatus::Interrupted,
            None if self.exit_code() == exit::OK => RunStatus::Done,
            None => RunStatus::Failed,
        }
    }

    /// The error that stopped the run, when the journal failed (taken out: the run returns it).
    pub fn take_fatal(&mut self) -> Option<Error> {
        match self.halt.take() {
            Some(Halt::Fatal(e)) => Some(e),
            other => {
                self.halt = other;
                None
            }
        }
    }

    /// The `run_finished` event of a run of `total` stories that took `duration`.
    pub fn event(&self, run_id: String, total: usize, duration: Duration) -> Event {
        Event::RunFinished {
            run_id,
            total,
            done: self.count("done"),
            failed: self.count("failed"),
            escalated: self.count("escalated"),
            not_run: total - self.stories.len(),
            interrupted: matches!(self.halt, Some(Halt::Interrupted)),
            duration_ms: millis(duration),
            cost_usd: self.stories.iter().map(|(_, _, t)| t.cost_usd).sum(),
            input_tokens: self.stories.iter().map(|(_, _, t)| t.input_tokens).sum(),
            output_tokens: self.stories.iter().map(|(_, _, t)| t.output_tokens).sum(),
            tokens: self.stories.iter().map(|(_, _, t)| t.tokens()).sum(),
            capped: self.capped.clone(),
            exit_code: i32::from(self.exit_code()),
            survivors: match &self.halt {
                Some(Halt::Unproven(u)) => u.survivors.iter().map(SurvivorInfo::from).collect(),
                _ => Vec::new(),
            },
        }
    }

    /// The end-of-run table for people (stderr).
    pub fn print(&self, ui: &Ui, root: &Path, run_id: &str) {
        ui.say("");
        ui.say(&format!(
            "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
            "story", "result", "cycles", "time", "turns", "cost*"
        ));
        for (id, result, t) in &self.stories {
            ui.say(&format!(
                "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
                id,
                result.word(),
                t.cycles,
                crate::ui::clock(t.duration),
                t.turns,
                format!("${:.2}", t.cost_usd)
            ));
            if let Some(reason) = result.reason() {
                ui.say(&format!("       {reason}"));
            }
        }
        ui.say("* API-equivalent cost reported by the CLI");
        if let Some(capped) = &self.capped {
            ui.say(&format!(
                "stopped: {capped}; the stories after it were not run"
            ));
        }
        match &self.halt {
            Some(Halt::Interrupted) => ui.say("interrupted: run `bmad-host run` again to resume"),
            Some(Halt::UsageLimit { message, reset, .. }) => {
                let when = match reset {
                    Some(r) => format!("the limit resets {}", crate::ui::local_and_utc(r.at)),
                    None => "the CLI did not say when the limit resets".to_owned(),
                };
                ui.say(&format!(
                    "stopped: usage limit reached: {message}\n{when}: run again after that (the run resumes; the cycle was not charged), or use --wait-on-limit"
                ));
            }
            Some(Halt::Unproven(unproven)) => ui.say(&format!("stopped: {unproven}")),
            Some(Halt::Fatal(e)) => ui.say(&format!("stopped: {}", Report(e))),
            None => {}
        }
        ui.say(&format!(
            "transcripts: {}",
            crate::journal::state_dir(root)
                .join("runs")
                .join(run_id)
                .display()
        ));
    }
}

/// Whole milliseconds, as the events give durations.
pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
