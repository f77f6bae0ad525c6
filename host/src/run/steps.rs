//! The host's own journaled actions in a role step: writing a state into the story file (and
//! v6 sprint-status), and running the quality gates.

use super::driver::{Driver, StepCtx};
use super::halt::Halt;
use super::journaled::Begun;
use super::summary::millis;
use crate::error::Report;
use crate::journal::{GatesIntent, GatesResult, StatusWriteIntent, StatusWriteResult};
use crate::policy::{GateReport, StoryState};
use crate::project::{ProjectError, SprintSync};
use crate::ui::{Event, SurvivorInfo};
use crate::workflow::{self, StepEnd};

impl Driver<'_> {
    /// Writes `state` into the story file (and v6 sprint-status), journaled. `Ok(None)` when
    /// it is written; otherwise how the step ends: failed with the reason, or escalated when
    /// the file leads outside the project (a person must look at it). A journal that fails is
    /// a halt.
    pub(super) fn write_state(
        &mut self,
        ctx: &StepCtx<'_>,
        seq: u32,
        state: StoryState,
    ) -> Result<Option<StepEnd>, Halt> {
        let entry = ctx.entry;
        let seen = self.observe(entry);
        let intent = StatusWriteIntent {
            from: seen.raw.clone(),
            to: state,
        };
        let step = match self.begin(ctx, seq, &intent)? {
            Begun::Done(_) => return Ok(None),
            Begun::Run(step) => step,
        };
        if seen.state == Some(state) {
            // Already written (e.g. the host died between the rename and the journal commit).
        } else {
            let Some(value) = &seen.value else {
                return Ok(Some(StepEnd::Failed(format!(
                    "cannot set {} to {}: its status cannot be read safely ({})",
                    entry.path.display(),
                    workflow::state_name(state),
                    seen.why_unusable()
                ))));
            };
            let written = match self.project.write_status(entry, value, state) {
                Ok(w) => w,
                Err(e @ ProjectError::OutsideProject { .. }) => {
                    return Ok(Some(StepEnd::Escalated(Report(&e).to_string())));
                }
                Err(e) => return Ok(Some(StepEnd::Failed(e.to_string()))),
            };
            if let Some(drift) = &written.drift {
                self.say(&format!("  drift: {drift}"));
            }
            if let SprintSync::NotUpdated { reason } = &written.sprint {
                self.say(&format!("  sprint-status not updated: {reason}"));
            }
        }
        self.finish(step, &StatusWriteResult { written: state })?;
        Ok(None)
    }

    /// Runs the configured quality gates, journaled; reports go to the policy.
    pub(super) async fn gates(
        &mut self,
        ctx: &StepCtx<'_>,
        seq: u32,
    ) -> Result<Vec<GateReport>, Halt> {
        let intent = GatesIntent {
            gates: self.config.active_gates().map(|g| g.name.clone()).collect(),
        };
        let step = match self.begin(ctx, seq, &intent)? {
            Begun::Done(result) => return Ok(result.reports),
            Begun::Run(step) => step,
        };
        let mut reports = Vec::new();
        for gate in self.config.active_gates() {
            let env = [
                ("BMAD_HOST_RUN_ID".to_string(), self.run.to_string()),
                ("BMAD_HOST_STORY_ID".to_string(), ctx.story.to_string()),
            ];
            let run = crate::gates::run_gate(gate, self.root, &env, self.interrupts.clone()).await;
            if run.cancelled && run.clean {
                return Err(Halt::Interrupted);
            }
            self.emit(Event::GateFinished {
                story: ctx.story.to_string(),
                gate: gate.name.clone(),
                passed: run.report.passed,
                exit_code: run.report.exit_code,
                timed_out: run.report.timed_out,
                duration_ms: millis(run.duration),
                clean: run.clean,
                survivors: run.survivors.iter().map(SurvivorInfo::from).collect(),
            });
            if !run.clean {
                // The gates step keeps no result: a resumed run runs the gates again, once the
                // survivors are gone.
                let what = format!("gate `{}` of story {}", gate.name, ctx.story);
                return Err(self.unproven(ctx, what, run.survivors));
            }
            reports.push(run.report);
        }
        let result = GatesResult { reports };
        self.finish(step, &result)?;
        Ok(result.reports)
    }
}
