//! Spend caps: `[workflow] max_story_usd`, `max_run_usd`, `max_story_tokens`,
//! `max_run_tokens`. The spend is what the journal keeps per story (every call's cost and
//! tokens, over attempts, retries and roles, across resumes of the run); before each agent call
//! the host checks it against the caps, and a cap already reached stops the story as
//! `escalated` with the figures (a run cap stops the run too). A call in flight is never cut by
//! a cap (its cost is known only at its end) unless `hard_cap` (`--hard-cap`) passes what is left
//! of the dollar caps to the CLI as `--max-budget-usd`.

use super::driver::Driver;
use super::halt::Halt;
use super::summary::Tally;
use crate::config::WorkflowConfig;

/// Dollars and tokens spent.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Spend {
    /// API-equivalent dollars, as the CLI reported them.
    pub usd: f64,
    /// Input (with cache reads and writes) and output tokens.
    pub tokens: u64,
}

impl Spend {
    fn of(tally: &Tally) -> Self {
        Spend {
            usd: tally.cost_usd,
            tokens: tally.tokens(),
        }
    }
}

/// The caps in force (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Caps {
    pub story_usd: Option<f64>,
    pub run_usd: Option<f64>,
    pub story_tokens: Option<u64>,
    pub run_tokens: Option<u64>,
    /// `--hard-cap`: the dollars left go to the CLI as `--max-budget-usd`.
    pub hard: bool,
}

/// A cap found reached before a call.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Reached {
    /// True for a run cap (the run stops), false for a story cap.
    pub run: bool,
    /// Which cap, with the figures.
    pub reason: String,
}

impl From<&WorkflowConfig> for Caps {
    fn from(w: &WorkflowConfig) -> Self {
        Caps {
            story_usd: w.max_story_usd.value,
            run_usd: w.max_run_usd.value,
            story_tokens: w.max_story_tokens.value,
            run_tokens: w.max_run_tokens.value,
            hard: w.hard_cap.value,
        }
    }
}

impl Caps {
    fn any(&self) -> bool {
        self.story_usd.is_some()
            || self.run_usd.is_some()
            || self.story_tokens.is_some()
            || self.run_tokens.is_some()
    }

    /// The first cap `story` (the story `id`'s spend) or `run` (the run's, the story's
    /// included) has reached, the story's before the run's; `None` while all have room.
    pub fn reached(&self, id: &str, story: Spend, run: Spend) -> Option<Reached> {
        let figures = format!(
            "story {id}: ${:.4}, {} tokens; run: ${:.4}, {} tokens",
            story.usd, story.tokens, run.usd, run.tokens
        );
        let usd = |cap: Option<f64>, spent: f64| cap.filter(|c| spent >= *c);
        let tokens = |cap: Option<u64>, spent: u64| cap.filter(|c| spent >= *c);
        let (run_cap, what) = if let Some(c) = usd(self.story_usd, story.usd) {
            (false, format!("max_story_usd ${c}"))
        } else if let Some(c) = tokens(self.story_tokens, story.tokens) {
            (false, format!("max_story_tokens {c}"))
        } else if let Some(c) = usd(self.run_usd, run.usd) {
            (true, format!("max_run_usd ${c}"))
        } else if let Some(c) = tokens(self.run_tokens, run.tokens) {
            (true, format!("max_run_tokens {c}"))
        } else {
            return None;
        };
        Some(Reached {
            run: run_cap,
            reason: format!(
                "spend cap reached: {what} ({figures}); the next agent call was not started"
            ),
        })
    }

    /// With `hard`, the dollars left under the story's and the run's caps (the smaller), for
    /// the call's `--max-budget-usd`; `None` without `hard` or without a dollar cap.
    pub fn budget_left(&self, story: Spend, run: Spend) -> Option<f64> {
        if !self.hard {
            return None;
        }
        let left = [
            self.story_usd.map(|c| c - story.usd),
            self.run_usd.map(|c| c - run.usd),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::min)?;
        // Whole micro-dollars, never below one: the caller checked the caps have room.
        Some(((left * 1e6).round() / 1e6).max(1e-6))
    }
}

impl Driver<'_> {
    /// What story `id` (whose totals are `tally`) and the run have spent: the run's is every
    /// other story's journaled spend in this run, plus the story's.
    pub(super) fn spend(&self, id: &str, tally: &Tally) -> Result<(Spend, Spend), Halt> {
        let caps = Caps::from(&self.config.workflow);
        let story = Spend::of(tally);
        let mut run = story;
        if caps.run_usd.is_some() || caps.run_tokens.is_some() {
            let summaries = self.journal.borrow().story_summaries(Some(&self.run))?;
            for s in summaries {
                if s.record.story_id != id {
                    run.usd += s.record.usage.cost_usd;
                    run.tokens = run.tokens.saturating_add(
                        s.record
                            .usage
                            .input_tokens
                            .saturating_add(s.record.usage.output_tokens),
                    );
                }
            }
        }
        Ok((story, run))
    }

    /// Before an agent call of story `id`: the cap it has reached, if any (a run cap is
    /// remembered: the run stops after this story), else the `--max-budget-usd` a hard cap
    /// gives the call.
    pub(super) fn check_caps(
        &mut self,
        id: &str,
        tally: &Tally,
    ) -> Result<Result<Option<f64>, String>, Halt> {
        let caps = Caps::from(&self.config.workflow);
        if !caps.any() {
            return Ok(Ok(None));
        }
        let (story, run) = self.spend(id, tally)?;
        if let Some(reached) = caps.reached(id, story, run) {
            tracing::info!(story = id, reason = %reached.reason, "spend cap reached");
            if reached.run {
                self.capped = Some(reached.reason.clone());
            }
            return Ok(Err(reached.reason));
        }
        Ok(Ok(caps.budget_left(story, run)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(usd: f64, tokens: u64) -> Spend {
        Spend { usd, tokens }
    }

    #[test]
    fn the_story_cap_is_named_before_the_run_cap() {
        let caps = Caps {
            story_usd: Some(0.5),
            run_usd: Some(1.0),
            story_tokens: Some(1000),
            run_tokens: Some(5000),
            hard: false,
        };
        assert_eq!(caps.reached("1.1", spend(0.4, 999), spend(0.9, 4999)), None);
        let r = caps
            .reached("1.1", spend(0.5, 10), spend(1.2, 10))
            .expect("reached");
        assert!(!r.run);
        assert!(r.reason.contains("max_story_usd $0.5"), "{}", r.reason);
        assert!(
            r.reason.contains("story 1.1: $0.5000, 10 tokens"),
            "{}",
            r.reason
        );
        let r = caps
            .reached("1.1", spend(0.1, 1000), spend(0.1, 1000))
            .expect("reached");
        assert!(r.reason.contains("max_story_tokens 1000"), "{}", r.reason);
        let r = caps
            .reached("1.1", spend(0.1, 10), spend(1.0, 10))
            .expect("reached");
        assert!(r.run && r.reason.contains("max_run_usd $1"), "{}", r.reason);
        let r = caps
            .reached("1.1", spend(0.1, 10), spend(0.1, 5000))
            .expect("reached");
        assert!(
            r.run && r.reason.contains("max_run_tokens 5000"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn a_hard_cap_gives_the_smaller_budget_left() {
        let mut caps = Caps {
            story_usd: Some(0.5),
            run_usd: Some(1.0),
            ..Caps::default()
        };
        assert_eq!(caps.budget_left(spend(0.1, 0), spend(0.8, 0)), None);
        caps.hard = true;
        let left = caps
            .budget_left(spend(0.1, 0), spend(0.8, 0))
            .expect("left");
        assert!((left - 0.2).abs() < 1e-9, "{left}");
        let left = caps
            .budget_left(spend(0.3, 0), spend(0.3, 0))
            .expect("left");
        assert!((left - 0.2).abs() < 1e-9, "{left}");
        caps.story_usd = None;
        caps.run_usd = None;
        caps.story_tokens = Some(10);
        assert_eq!(caps.budget_left(spend(0.1, 0), spend(0.1, 0)), None);
    }
}
