//! The agent step: one Claude CLI call a policy asked for, journaled, supervised (its events go
//! to the policy, which may stop it), and reported to the UI and back to the policy.

use std::path::{Path, PathBuf};

use super::driver::{Driver, RoleStep, StepCtx};
use super::halt::Halt;
use super::journaled::Begun;
use crate::claude::{self, CallReport, CallSpec, Limits, Outcome};
use crate::journal::{AgentCallIntent, AgentCallResult};
use crate::policy::{self, AgentRequest, CallOutcome};
use crate::ui::{Event, SurvivorInfo};

/// How an agent step went.
pub(super) enum Call {
    /// The call ran (now or before a crash): what the policy is told.
    Ended(CallOutcome),
    /// A spend cap stopped the story: before the call, or (`--hard-cap`) the call ended on the
    /// budget the cap left it. Why, with the figures.
    Capped(String),
}

/// How a supervised call went, besides its report.
struct Supervised {
    report: CallReport,
    /// The policy's `on-event` failed (and the call was stopped): why.
    policy_error: Option<String>,
}

impl Driver<'_> {
    /// One agent call: journaled, supervised, reported to the UI; returns its outcome for the
    /// policy. An interrupted or usage-limited call leaves its intent without a result, so a
    /// resumed run redoes it (and the cycle is not charged).
    pub(super) async fn agent_call(
        &mut self,
        step: &mut RoleStep<'_>,
        seq: u32,
        request: AgentRequest,
    ) -> Result<Call, Halt> {
        let ctx = step.ctx;
        let open = match self.begin(&ctx, seq, &AgentCallIntent::from(&request))? {
            // Finished before a crash: never run an agent twice.
            Begun::Done(done) => return self.after_call(ctx.story, step, done.outcome),
            Begun::Run(open) => open,
        };
        // Only a call that runs now is checked: a replayed one already ran.
        let budget = match self.check_caps(ctx.story, step.tally)? {
            Ok(budget) => budget,
            Err(reason) => return Ok(Call::Capped(reason)),
        };
        let transcript = crate::journal::transcript_path(
            self.state,
            &self.run,
            ctx.story,
            ctx.cycle,
            ctx.role_name(),
            open.attempt,
        );
        let spec = self.call_spec(&ctx, &request, transcript);
        let Supervised {
            report,
            policy_error,
        } = self
            .supervise(step, &spec, &request, open.attempt, budget)
            .await;
        let outcome = match &policy_error {
            None => CallOutcome::from(&report),
            Some(e) => CallOutcome {
                message: policy::outcome_message(&format!("policy on-event failed: {e}")),
                ..CallOutcome::from(&report)
            },
        };
        step.tally.add_call(&report);
        self.emit(Event::AgentFinished {
            role: ctx.role_name().into(),
            story: ctx.story.to_string(),
            cycle: ctx.cycle,
            outcome: report.outcome.kind().replace('-', "_"),
            message: outcome.message.clone(),
            duration_ms: outcome.duration_ms,
            turns: report.num_turns,
            cost_usd: report.cost_usd,
            transcript: spec.transcript.display().to_string(),
            clean: report.clean,
            survivors: report.survivors.iter().map(SurvivorInfo::from).collect(),
        });
        let unproven = (!report.clean).then(|| {
            format!(
                "the {} call of story {} (cycle {})",
                ctx.role_name(),
                ctx.story,
                ctx.cycle
            )
        });
        if matches!(
            report.outcome,
            Outcome::Cancelled | Outcome::UsageLimit { .. }
        ) && let Some(what) = &unproven
        {
            // Interrupted or limited: no result is journaled (the step is redone), but an
            // unproven end stops the run first.
            return Err(self.unproven(&ctx, what.clone(), report.survivors));
        }
        match &report.outcome {
            Outcome::Cancelled => return Err(Halt::Interrupted),
            Outcome::UsageLimit { resets, message } => {
                let reset = super::limit::Reset::find(
                    report.rejected_by.as_ref().and_then(|r| r.resets_at),
                    resets.as_deref(),
                    jiff::Timestamp::now(),
                );
                return Err(Halt::UsageLimit {
                    story: ctx.story.to_string(),
                    role: ctx.role_name(),
                    message: message.clone(),
                    reset,
                });
            }
            _ => {}
        }
        let result = AgentCallResult {
            attempts: report.attempts,
            clean: report.clean,
            outcome,
            pid: report.pid,
            transcript: spec.transcript.display().to_string(),
        };
        self.finish(open, &result)?;
        // The call's result is journaled (a resume does not run it again); nothing more starts
        // while its end is unproven.
        if let Some(what) = unproven {
            return Err(self.unproven(&ctx, what, report.survivors));
        }
        self.after_call(ctx.story, step, result.outcome)
    }

    /// A call that ended on the budget a hard cap left it stops the story on that cap (the
    /// host set the budget, so the host says why), rather than going to the policy.
    fn after_call(
        &mut self,
        story: &str,
        step: &RoleStep<'_>,
        outcome: CallOutcome,
    ) -> Result<Call, Halt> {
        if self.config.workflow.hard_cap.value
            && outcome.kind == policy::OutcomeKind::ErrorMaxBudget
            && let Err(reason) = self.check_caps(story, step.tally)?
        {
            return Ok(Call::Capped(reason));
        }
        Ok(Call::Ended(outcome))
    }

    /// What to run for `request`: the configured CLI with the policy's prompt and options, in
    /// the project, with the `BMAD_HOST_*` environment of `ctx`.
    fn call_spec(
        &self,
        ctx: &StepCtx<'_>,
        request: &AgentRequest,
        transcript: PathBuf,
    ) -> CallSpec {
        let c = &self.config.claude;
        let tmp = &self.tmp;
        CallSpec {
            bin: c.bin.value.clone(),
            prompt: request.prompt.clone(),
            cwd: self.root.to_path_buf(),
            env: vec![
                ("BMAD_HOST_ROLE".into(), ctx.role_name().into()),
                ("BMAD_HOST_STORY_ID".into(), ctx.story.to_string()),
                (
                    "BMAD_HOST_STORY_PATH".into(),
                    self.root.join(&ctx.entry.path).display().to_string(),
                ),
                ("BMAD_HOST_CYCLE".into(), ctx.cycle.to_string()),
                ("BMAD_HOST_RUN_ID".into(), self.run.to_string()),
                // The CLI's sockets and cwd files, which a killed CLI leaves behind, go here and
                // are removed after the call.
                ("CLAUDE_CODE_TMPDIR".into(), tmp.display().to_string()),
            ],
            model: request.model.clone().or_else(|| c.model.value.clone()),
            permission_mode: c.permission_mode.value.clone(),
            allowed_tools: request.allowed_tools.clone(),
            append_system_prompt: request.append_system_prompt.clone(),
            extra_args: c.extra_args.value.clone(),
            transcript,
            // The running binary itself, even if its file was replaced since it started.
            keeper: c.keeper.value.then(|| PathBuf::from("/proc/self/exe")),
        }
    }

    /// The configured limits, with the policy's `max_turns` when it is lower, and the budget a
    /// hard cap leaves when it is lower than `claude.max_budget_usd`.
    fn limits(&self, request: &AgentRequest, budget: Option<f64>) -> Limits {
        let c = &self.config.claude;
        Limits {
            max_turns: request
                .max_turns
                .map_or(c.max_turns.value, |t| t.min(c.max_turns.value)),
            max_budget_usd: match (c.max_budget_usd.value, budget) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            ..Limits::from(c)
        }
    }

    /// Runs the call under the supervisor: its events go to the policy's `on-event` (which may
    /// stop it) and the progress display; its start is an `agent_started` event (also when it
    /// never started).
    async fn supervise(
        &mut self,
        step: &mut RoleStep<'_>,
        spec: &CallSpec,
        request: &AgentRequest,
        attempt: u32,
        budget: Option<f64>,
    ) -> Supervised {
        let ctx = step.ctx;
        let tmp = self.tmp.clone();
        if let Err(e) = std::fs::create_dir_all(&tmp) {
            tracing::warn!("cannot create {}: {e}", tmp.display());
        }
        let limits = self.limits(request, budget);
        let started_event = |pid| Event::AgentStarted {
            role: ctx.role_name().into(),
            story: ctx.story.to_string(),
            cycle: ctx.cycle,
            pid,
            attempt,
            retry: step.story.retry,
        };
        // Borrowed only inside each callback: the lanes of a parallel run share the Ui.
        let (ui, lane) = (self.ui, self.lane);
        let mut policy_error = None;
        let mut started = false;
        let report = {
            let (story, session) = (&step.story, &mut step.session);
            let mut on_event = |event: &claude::Event| {
                {
                    let mut ui = ui.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    ui.agent_progress_in(
                        lane,
                        matches!(
                            event,
                            claude::Event::Text(_) | claude::Event::ToolUse { .. }
                        ),
                    );
                    if let claude::Event::RateLimit(info) = event
                        && info.status != "allowed"
                    {
                        ui.emit_in(lane, rate_limit_event(&ctx, info));
                    }
                }
                let Some(event) = event.for_policy() else {
                    return claude::Directive::Continue;
                };
                match session.on_event(story, &event) {
                    Ok(directive) => claude::Directive::from(directive),
                    Err(e) => {
                        policy_error = Some(e.to_string());
                        claude::Directive::Stop
                    }
                }
            };
            let mut on_spawn = |pid: u32| {
                started = true;
                ui.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .emit_in(lane, started_event(Some(pid)));
            };
            claude::run(
                spec,
                &limits,
                &mut on_event,
                &mut on_spawn,
                self.interrupts.clone(),
            )
            .await
        };
        // The call has ended (its whole tree is gone): its temp files are garbage now.
        clear_dir(&tmp);
        if !started {
            self.emit(started_event(None));
        }
        Supervised {
            report,
            policy_error,
        }
    }
}

/// The `rate_limit` event of a rate-limit report during `ctx`'s call.
fn rate_limit_event(ctx: &StepCtx<'_>, info: &claude::RateLimit) -> Event {
    Event::RateLimit {
        story: ctx.story.to_string(),
        role: ctx.role_name().into(),
        status: info.status.clone(),
        kind: info.kind.clone(),
        utilization: info.utilization,
        resets_at: info.resets_at.map(|t| t.to_string()),
    }
}

/// Where the CLI's temp files go (`CLAUDE_CODE_TMPDIR`) with one job, emptied after each call.
/// Empties `dir`, keeping the folder itself: the folder is made once and reused by every call
/// (making and removing a folder per call cost the file system an inode allocation each time:
/// measured on ext4, a large share of the host's own CPU time per call).
fn clear_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

pub(super) fn claude_tmp(root: &Path) -> PathBuf {
    crate::journal::state_dir(root).join("tmp")
}
