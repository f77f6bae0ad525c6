//! The per-story driver: asks the workflow which role runs next, runs that role's step (a fresh
//! policy instance, then each of its decisions until it completes, sends the story back, fails
//! or escalates), re-reads the story, and keeps the story's progress in the journal after each
//! step.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::driver::{Driver, RoleStep, StepCtx};
use super::halt::Halt;
use super::ledger::{Driving, When};
use super::observe::Seen;
use super::summary::{Tally, millis};
use crate::journal::{DecisionIntent, PolicyCall, StoryRecord};
use crate::policy::{CallOutcome, Decision, GateReport, Role, StepReport, Story, StoryState};
use crate::project::StoryEntry;
use crate::ui::Event;
use crate::workflow::{self, Flow, Next, Settings, StepEnd, StoryResult};

/// A gate file's modification time, length and inode.
type GateStamp = (SystemTime, u64, u64);

/// Decisions one role step may take before the host calls it a loop.
const MAX_DECISIONS_PER_STEP: u32 = 16;

impl Driver<'_> {
    /// Drives one story until it finishes, or the run halts.
    pub(super) async fn drive(&mut self, entry: &StoryEntry) -> Result<(StoryResult, Tally), Halt> {
        let story_id = entry.id.to_string();
        let mut settings = Settings::from(&self.config.workflow);
        settings.flow = super::flow_of(self.project);
        let mut seen = self.observe(entry);
        let record = self.journal.borrow().story(&self.run, &story_id)?;
        let mut record = record.unwrap_or_else(|| {
            StoryRecord::new(
                &story_id,
                &entry.title,
                seen.state.unwrap_or(StoryState::Backlog),
            )
        });
        // The journal keeps the workflow's whole state (cycle, findings, the step in flight). One
        // that does not decode stops the run: starting the story over would reset its cycles.
        let mut flow = self.journaled_flow(&story_id, &record, settings)?;
        flow.set_settings(settings);
        // The project's ledger: the story's first sighting, and whether its `done` was accepted
        // (done at that first sighting, or completed by QA in an earlier run).
        let sighting = self
            .journal
            .borrow_mut()
            .sight_story(&self.run, &story_id, seen.state)?;
        if sighting.done_run.is_some() {
            if seen.state == Some(StoryState::Done) {
                flow.accept_done();
            } else if seen.state.is_some() {
                // Moved on since: its next `done` needs a review again.
                self.journal.borrow_mut().set_done_run(&story_id, None)?;
            }
        }
        // Build flow: drift between the spec, the story and sprint-status is repaired now.
        self.reconcile_build(
            entry,
            &flow,
            flow.cycle(),
            Role::Dev,
            super::build::When::Start,
        )?;
        seen = self.observe(entry);
        let mut tally = Tally::resumed(&flow, &record);
        self.emit(Event::StoryStarted {
            story: story_id.clone(),
            title: entry.title.clone(),
            epic: entry.id.epic,
            state: seen.state.map(|s| workflow::state_name(s).to_string()),
        });
        // The story's epic is in progress while the host drives one of its stories.
        let driving = |flow: &Flow, started: bool, review: bool| Driving {
            id: entry.id,
            started,
            done_accepted: flow.done_accepted() || review,
        };
        let started = seen.state != Some(StoryState::Done);
        self.reconcile_sprint(
            When::StoryStart,
            Some(&story_id),
            Some(driving(&flow, started, false)),
        )?;
        loop {
            let next = flow.next(&seen.observed);
            if let Some(state) = seen.state {
                record.state = state;
            }
            self.save(&mut record, &flow, &tally)?;
            let (role, cycle, resumed) = match next {
                Next::Finish(result) => {
                    // Epic closeout: its key follows its stories; a retrospective once the
                    // last one is done in this run.
                    self.reconcile_sprint(
                        When::StoryEnd,
                        Some(&story_id),
                        Some(driving(&flow, false, false)),
                    )?;
                    if result == StoryResult::Done && flow.cycle() > 0 {
                        let label = format!("epic-{}", entry.id.epic);
                        let ctx = StepCtx {
                            entry,
                            story: &label,
                            cycle: 0,
                            role: Role::Sm,
                        };
                        let story = self.story_record(&ctx, &seen, &flow, false);
                        self.retrospective(entry, story, &mut tally).await?;
                    }
                    self.finish_story(&mut record, &flow, &mut tally, &result)?;
                    return Ok((result, tally));
                }
                Next::Run {
                    role,
                    cycle,
                    resumed,
                } => (role, cycle, resumed),
            };
            let ctx = StepCtx {
                entry,
                story: &story_id,
                cycle,
                role,
            };
            let end = match self.role_step(ctx, &seen, &flow, resumed, &mut tally).await {
                Ok(end) => end,
                Err(halt) => {
                    // What an interrupted or limited call spent counts after a resume too.
                    if !matches!(halt, Halt::Fatal(_)) {
                        self.save(&mut record, &flow, &tally)?;
                    }
                    return Err(halt);
                }
            };
            flow.step_ended(end);
            tally.cycles = flow.cycle();
            self.reconcile_build(entry, &flow, cycle, role, super::build::When::Step)?;
            let before = seen.state;
            seen = self.observe(entry);
            if seen.state != before
                && let Some(to) = seen.state
            {
                self.emit(Event::StateChanged {
                    story: story_id.clone(),
                    from: before.map(|s| workflow::state_name(s).to_string()),
                    to: workflow::state_name(to).to_string(),
                });
            }
        }
    }

    /// Records how the story ended, in the journal and as an event.
    fn finish_story(
        &mut self,
        record: &mut StoryRecord,
        flow: &Flow,
        tally: &mut Tally,
        result: &StoryResult,
    ) -> Result<(), Halt> {
        tally.cycles = flow.cycle();
        if *result == StoryResult::Done && flow.reviewed() {
            self.journal
                .borrow_mut()
                .set_done_run(&record.story_id, Some(&self.run))?;
        }
        record.result = Some(result.into());
        record.last_outcome = Some(match result.reason() {
            Some(r) => format!("{}: {r}", result.word()),
            None => result.word().to_string(),
        });
        self.save(record, flow, tally)?;
        self.emit(Event::StoryFinished {
            story: record.story_id.clone(),
            result: result.word().into(),
            reason: result.reason().map(str::to_string),
            cycles: flow.cycle(),
            duration_ms: millis(tally.duration),
            cost_usd: tally.cost_usd,
            turns: tally.turns,
            input_tokens: tally.input_tokens,
            output_tokens: tally.output_tokens,
            tokens: tally.tokens(),
        });
        Ok(())
    }

    /// The story's workflow state as the journal kept it: a new one for a story the run has not
    /// driven yet (its record's findings are still the empty list it starts with); one that
    /// does not decode is [`crate::journal::JournalError::Undecodable`].
    fn journaled_flow(
        &self,
        story: &str,
        record: &StoryRecord,
        settings: Settings,
    ) -> Result<Flow, Halt> {
        if record.findings == serde_json::Value::Array(Vec::new()) {
            return Ok(Flow::new(settings));
        }
        serde_json::from_value(record.findings.clone()).map_err(|e| {
            Halt::from(crate::journal::JournalError::Undecodable {
                path: self.journal.borrow().path().to_owned(),
                run: self.run.clone(),
                story: story.to_owned(),
                step: "workflow state".to_owned(),
                detail: e.to_string(),
            })
        })
    }

    fn save(&mut self, record: &mut StoryRecord, flow: &Flow, tally: &Tally) -> Result<(), Halt> {
        record.findings = serde_json::to_value(flow).unwrap_or_default();
        record.cycle = flow.cycle();
        tally.record_into(&mut record.usage);
        self.journal.borrow_mut().save_story(&self.run, record)?;
        Ok(())
    }

    /// Runs one role's step: begin, then each decision, until the policy is done with it.
    async fn role_step(
        &mut self,
        ctx: StepCtx<'_>,
        seen: &Seen,
        flow: &Flow,
        resumed: bool,
        tally: &mut Tally,
    ) -> Result<StepEnd, Halt> {
        if let Some(end) = self.outside_project(ctx.entry) {
            return Ok(end);
        }
        let story = self.story_record(&ctx, seen, flow, resumed);
        let session = match self.plugins.begin_step(ctx.role) {
            Ok(s) => s,
            Err(e) => return Ok(StepEnd::Failed(e.to_string())),
        };
        let mut step = RoleStep {
            ctx,
            story,
            session,
            tally,
        };
        let mut decision = match step.session.begin(&step.story, &seen.text) {
            Ok(d) => d,
            Err(e) => return Ok(StepEnd::Failed(e.to_string())),
        };
        self.record_decision(&ctx, 0, PolicyCall::Begin, &seen.parse, &decision)?;
        for seq in 0..MAX_DECISIONS_PER_STEP {
            let report = match decision {
                Decision::Complete => return Ok(StepEnd::Completed),
                Decision::Fail(reason) => return Ok(StepEnd::Failed(reason)),
                Decision::Escalate(reason) => return Ok(StepEnd::Escalated(reason)),
                Decision::SetState(state) => {
                    let refused = self.write_state(&ctx, seq, state)?;
                    return Ok(refused.unwrap_or(StepEnd::Completed));
                }
                Decision::SendBack(findings) => {
                    let state = StoryState::ChangesRequested;
                    let refused = self.write_state(&ctx, seq, state)?;
                    return Ok(refused.unwrap_or(StepEnd::SentBack(findings)));
                }
                Decision::InvokeAgent(request) => {
                    // Only what the operator granted reaches the agent's command line.
                    let plugin = step.session.plugin();
                    if let Err(refused) =
                        super::grant::check(self.config, plugin, ctx.role_name(), &request)
                    {
                        return Ok(StepEnd::Failed(refused));
                    }
                    let gates_before = self.gate_stamps(ctx.entry);
                    let called = self.agent_call(&mut step, seq, request).await?;
                    // What the agent changed of the host's sprint-status values goes back. A
                    // `done` the review step wrote is the review's; any other waits for one.
                    let driving = Driving {
                        id: ctx.entry.id,
                        started: false,
                        done_accepted: flow.done_accepted() || ctx.role == Role::Qa,
                    };
                    self.reconcile_sprint(When::AfterAgent, Some(ctx.story), Some(driving))?;
                    let outcome = match called {
                        super::agent::Call::Ended(outcome) => outcome,
                        super::agent::Call::Capped(reason) => {
                            return Ok(StepEnd::Escalated(reason));
                        }
                    };
                    let mut report = self.report(ctx.entry, Some(outcome), Vec::new());
                    if ctx.role == Role::Qa {
                        report.qa_gate =
                            self.this_reviews_gate(&ctx, &gates_before, report.qa_gate.take());
                    }
                    report
                }
                Decision::RunGates => {
                    let gates = self.gates(&ctx, seq).await?;
                    self.report(ctx.entry, None, gates)
                }
            };
            // The agent or a gate may have replaced a file of the story with a link out of the
            // project: nothing more is read or written for it.
            if let Some(end) = self.outside_project(ctx.entry) {
                return Ok(end);
            }
            step.story.retry = false;
            decision = match step.session.end(&step.story, &report) {
                Ok(d) => d,
                Err(e) => return Ok(StepEnd::Failed(e.to_string())),
            };
            self.record_decision(&ctx, seq + 1, PolicyCall::End, &report.status, &decision)?;
        }
        Ok(StepEnd::Failed(format!(
            "the {} policy took {MAX_DECISIONS_PER_STEP} decisions in one step without finishing it",
            ctx.role_name()
        )))
    }

    /// The story escalated, when one of its files (story, QA gate, sprint-status) leads outside
    /// the project.
    fn outside_project(&self, entry: &StoryEntry) -> Option<StepEnd> {
        self.project
            .check_story_files(entry)
            .err()
            .map(|e| StepEnd::Escalated(e.to_string()))
    }

    /// Journals a policy decision with the status it was taken on (one commit).
    fn record_decision(
        &mut self,
        ctx: &StepCtx<'_>,
        seq: u32,
        call: PolicyCall,
        status: &crate::policy::ParseOutcome,
        decision: &Decision,
    ) -> Result<(), Halt> {
        let intent = DecisionIntent {
            call,
            status: status.clone(),
        };
        self.record(ctx, seq, &intent, decision)?;
        Ok(())
    }

    /// Every QA gate file of the story as it is now (modification time, length, inode), to
    /// tell the gate a review writes from the old ones.
    fn gate_stamps(&self, entry: &StoryEntry) -> BTreeMap<PathBuf, GateStamp> {
        let files = match self.project.qa_gate_files(entry) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("{e}");
                Vec::new()
            }
        };
        files
            .into_iter()
            .filter_map(|rel| {
                let meta = std::fs::metadata(self.root.join(&rel)).ok()?;
                Some((rel, (meta.modified().ok()?, meta.len(), meta.ino())))
            })
            .collect()
    }

    /// The gate file of the review that just ran: the one QA wrote during the step (the newest
    /// when it wrote several), even under another name than the host's choice `found` (a slug
    /// of its own, a new file next to the old one), with a warning naming both; `None` when QA
    /// wrote none, as an older file is an earlier review's decision.
    fn this_reviews_gate(
        &self,
        ctx: &StepCtx<'_>,
        before: &BTreeMap<PathBuf, GateStamp>,
        found: Option<crate::policy::QaGate>,
    ) -> Option<crate::policy::QaGate> {
        let after = self.gate_stamps(ctx.entry);
        let written = after
            .iter()
            .filter(|(rel, stamp)| before.get(*rel) != Some(stamp))
            .max_by(|(a_rel, a), (b_rel, b)| a.0.cmp(&b.0).then_with(|| a_rel.cmp(b_rel)))
            .map(|(rel, _)| rel.clone());
        let Some(written) = written else {
            if found.is_some() {
                self.say(&format!(
                    "  {}: QA did not write a new gate file; the old one is not this review's decision",
                    ctx.story
                ));
            }
            return None;
        };
        if found
            .as_ref()
            .is_some_and(|g| Path::new(&g.path) == written.as_path())
        {
            return found;
        }
        let gate = match self.project.read_qa_gate_file(&written) {
            Ok(gate) => gate,
            Err(e) => {
                tracing::warn!("{e}");
                return None;
            }
        };
        let expected = found.as_ref().map_or_else(
            || {
                ctx.entry
                    .gate_path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            },
            |g| g.path.clone(),
        );
        let warning = format!(
            "  {}: QA wrote its gate to {}, not {expected}: the gate written during this review is its decision",
            ctx.story,
            written.display()
        );
        tracing::warn!("{}", warning.trim());
        self.say(&warning);
        Some(gate.to_policy())
    }

    /// The story as the policy sees it.
    fn story_record(&self, ctx: &StepCtx<'_>, seen: &Seen, flow: &Flow, retry: bool) -> Story {
        let entry = ctx.entry;
        let text = |p: Option<&Path>| p.map(|p| p.display().to_string()).unwrap_or_default();
        Story {
            id: ctx.story.to_string(),
            epic: entry.id.epic,
            title: entry.title.clone(),
            path: entry.path.display().to_string(),
            exists: seen.exists,
            state: seen.state,
            raw_status: seen.raw.clone(),
            cycle: ctx.cycle.max(1),
            max_cycles: flow.settings().max_cycles,
            retry,
            layout: self.project.layout(),
            bmad_version: self.project.version().unwrap_or_default().to_string(),
            epic_path: text(entry.epic_path.as_deref()),
            gate_path: text(entry.gate_path.as_deref()),
            sprint_status_path: text(self.project.sprint_status_path()),
            previous_findings: flow.findings().to_vec(),
            findings_history: flow.findings_history().to_vec(),
            rounds: flow.rounds(),
        }
    }

    /// What the policy learns after an agent call or a gate run.
    fn report(
        &mut self,
        entry: &StoryEntry,
        outcome: Option<CallOutcome>,
        gates: Vec<GateReport>,
    ) -> StepReport {
        let seen = self.observe(entry);
        let qa_gate = match self.project.read_qa_gate(entry) {
            Ok(g) => g.map(|g| g.to_policy()),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        StepReport {
            outcome,
            document: seen.text,
            status: seen.parse,
            gates,
            qa_gate,
        }
    }
}
