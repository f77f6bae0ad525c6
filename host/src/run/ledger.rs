//! The host's sprint-status ledger during a run (BMAD v6 with `sprint-status.yaml`).
//!
//! The host is the only writer of the sprint-status values it owns (see
//! [`Project::plan_sprint_ledger`](crate::project::Project::plan_sprint_ledger) for which): it
//! reconciles the file with the story files when the run starts (drift repaired), when it starts
//! driving a story (the story's epic moves to `in-progress`), after every agent call (an agent
//! that edited, reordered or rewrote sprint-status is reconciled, not trusted and not failed)
//! and when a story ends (its epic moves to `done` with its last story). Each reconciliation
//! that changes something, or cannot, is a `warn` log, a `sprint_reconciled` event and a
//! journaled `sprint-sync` step; none fails a story. With `[workflow] retrospective = "run"`, an
//! epic finished in this run gets its `bmad-retrospective` workflow run as an SM agent call
//! (journaled like every agent call, so a resumed run never runs it twice), then its
//! `epic-N-retrospective` key set to `done`.

use std::collections::{BTreeMap, BTreeSet};

use super::driver::{Driver, RoleStep, StepCtx};
use super::halt::Halt;
use super::journaled::to_json;
use super::observe::StatusProblem;
use super::summary::Tally;
use crate::config::Retrospective;
use crate::journal::{
    SprintChange, SprintSyncIntent, SprintSyncResult, StepKey, StepKind, StepStart,
};
use crate::policy::{AgentRequest, OutcomeKind, Role, Story, StoryState};
use crate::project::{Known, LedgerPlan, StoryEntry, StoryId, epic_keys};
use crate::ui::{Event, SprintChangeInfo};
use crate::workflow::StoryFlow;

/// The journal's story key of the reconciliations made when a run starts (before any story).
const RUN_START_KEY: &str = "sprint-status";

/// When the host reconciles sprint-status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// The run began: drift found since the last run is repaired.
    Start,
    /// The host began driving a story: its epic is in progress.
    StoryStart,
    /// An agent call ended: what it changed of the host's values is put back.
    AfterAgent,
    /// A story ended: its epic may be done.
    StoryEnd,
    /// The host ran an epic's retrospective.
    Retrospective,
}

impl When {
    fn as_str(self) -> &'static str {
        match self {
            When::Start => "start",
            When::StoryStart => "story-start",
            When::AfterAgent => "after-agent",
            When::StoryEnd => "story-end",
            When::Retrospective => "retrospective",
        }
    }
}

/// The story the host is driving, as the ledger needs it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Driving {
    /// Its id.
    pub id: StoryId,
    /// Whether the host is working on it (not already done): its epic is in progress.
    pub started: bool,
    /// Whether a `done` in its file counts: the workflow accepted it, or the review step that
    /// just ran wrote it.
    pub done_accepted: bool,
}

impl Driver<'_> {
    /// Puts the host-owned values of sprint-status back to what the story files say (v6 with a
    /// sprint-status file; nothing otherwise). `driving`: the story the host is driving, if
    /// any. Only a journal that fails is an error.
    pub(super) fn reconcile_sprint(
        &self,
        when: When,
        story: Option<&str>,
        driving: Option<Driving>,
    ) -> Result<(), Halt> {
        if self.project.sprint_status_path().is_none() {
            return Ok(());
        }
        if when == When::Start {
            self.settle_interrupted_syncs()?;
        }
        let known = self.known_stories(driving)?;
        let started: BTreeSet<u32> = driving
            .filter(|d| d.started)
            .map(|d| d.id.epic)
            .into_iter()
            .collect();
        // The build flow keeps the story in hand's key with its spec (`run/build.rs`), and
        // repairs each story's drift when it starts it: this ledger leaves the story keys to it,
        // except those of other stories an agent changed.
        let skip: BTreeSet<StoryId> = if super::flow_of(self.project) == StoryFlow::Build {
            match (when, driving) {
                (When::AfterAgent, Some(d)) => BTreeSet::from([d.id]),
                (When::AfterAgent, None) => BTreeSet::new(),
                _ => known.keys().copied().collect(),
            }
        } else {
            BTreeSet::new()
        };
        let Some(mut plan) = self.project.plan_sprint_ledger(&known, &started, &skip) else {
            return Ok(());
        };
        // A missing key is reported once per run, when it starts; a file the host cannot
        // edit when the run starts and after an agent call (which may have broken it), not at
        // every story's start and end again.
        match when {
            When::Start => plan.problems.append(&mut plan.missing),
            When::AfterAgent => {}
            When::StoryStart | When::StoryEnd | When::Retrospective => {
                if plan.changes.is_empty() {
                    plan.problems.clear();
                }
            }
        }
        self.apply_ledger(when, story, &plan)
    }

    /// What each story's file says, as the status parser reads it; a `done` no review accepted
    /// yet is [`Known::Unreviewed`] (the same rule as the workflow's: accepted when the journal
    /// first saw the story done or a review completed it, or `require_review` is off).
    fn known_stories(&self, driving: Option<Driving>) -> Result<BTreeMap<StoryId, Known>, Halt> {
        let require_review = self.config.workflow.require_review.value;
        let mut known = BTreeMap::new();
        for entry in self.project.stories() {
            let mut k = match self.project.locate_story_file(entry) {
                None => Known::NoFile,
                Some(rel) => match self.project.read_story(entry) {
                    Err(_) => Known::Unknown,
                    Ok(text) => match self.plugins.parse_status(&text.text) {
                        Err(_) => Known::Unknown,
                        Ok(parse) => {
                            StatusProblem::judge(&rel, &parse).map_or(Known::Unknown, Known::State)
                        }
                    },
                },
            };
            if k == Known::State(StoryState::Done) && require_review {
                let accepted = match driving {
                    Some(d) if d.id == entry.id => d.done_accepted,
                    // Not seen yet: a story done when first seen is accepted as done.
                    _ => self
                        .journal
                        .borrow()
                        .sighting(&entry.id.to_string())?
                        .is_none_or(|s| s.done_run.is_some()),
                };
                if !accepted {
                    k = Known::Unreviewed;
                }
            }
            known.insert(entry.id, k);
        }
        Ok(known)
    }

    /// Writes `plan` (when it changes something) as a journaled `sprint-sync` step, and reports
    /// it: a `warn` log per value, a `sprint_reconciled` event. A refused write (someone
    /// changed the file meanwhile) is reported, never a failure.
    fn apply_ledger(&self, when: When, story: Option<&str>, plan: &LedgerPlan) -> Result<(), Halt> {
        if plan.is_empty() {
            return Ok(());
        }
        let file = plan.path.display().to_string();
        let intent = SprintSyncIntent {
            changes: plan
                .changes
                .iter()
                .map(|c| SprintChange {
                    from: c.from.clone(),
                    key: c.key.clone(),
                    line: c.line,
                    reason: c.reason.clone(),
                    to: c.to.clone(),
                })
                .collect(),
            file: file.clone(),
            problems: plan.problems.clone(),
            when: when.as_str().to_owned(),
        };
        let key_story = story.unwrap_or(RUN_START_KEY);
        let key = StepKey {
            run: self.run.clone(),
            story: key_story.to_owned(),
            cycle: 0,
            role: "host".to_owned(),
            kind: StepKind::SprintSync,
            seq: self.next_sync_seq(key_story)?,
        };
        let start = self
            .journal
            .borrow_mut()
            .begin_step(&key, &to_json(&intent))?;
        let id = match start {
            StepStart::Fresh(id) | StepStart::Retry { id, .. } => Some(id),
            StepStart::Done(_) => None,
        };
        let error = self
            .project
            .apply_sprint_ledger(plan)
            .err()
            .map(|e| crate::error::Report(&e).to_string());
        if let Some(id) = id {
            let result = SprintSyncResult {
                applied: error.is_none(),
                error: error.clone(),
            };
            self.journal
                .borrow_mut()
                .finish_step(id, &to_json(&result))?;
        }
        for c in &plan.changes {
            tracing::warn!(
                file = %file,
                key = %c.key,
                from = %c.from,
                to = %c.to,
                when = when.as_str(),
                "sprint-status reconciled: {}",
                c.reason
            );
        }
        let mut problems = plan.problems.clone();
        for p in &problems {
            tracing::warn!(file = %file, when = when.as_str(), "sprint-status not reconciled: {p}");
        }
        if let Some(e) = error {
            tracing::warn!(file = %file, "sprint-status not written: {e}");
            problems.push(format!("not written: {e}"));
        }
        self.emit(Event::SprintReconciled {
            when: when.as_str().to_owned(),
            story: story.map(str::to_owned),
            file,
            changes: plan
                .changes
                .iter()
                .map(|c| SprintChangeInfo {
                    key: c.key.clone(),
                    from: c.from.clone(),
                    to: c.to.clone(),
                    reason: c.reason.clone(),
                })
                .collect(),
            problems,
        });
        Ok(())
    }

    /// A host killed during a `sprint-sync` step (after its intent, before its result) left it
    /// open; the reconciliation that runs next puts back whatever it had not written. Each one
    /// is closed here, when the resumed run starts, with whether its values are in the file now.
    fn settle_interrupted_syncs(&self) -> Result<(), Halt> {
        let steps = self.journal.borrow().steps(Some(&self.run), None)?;
        let open: Vec<_> = steps
            .into_iter()
            .filter(|s| s.key.kind == StepKind::SprintSync && s.result.is_none())
            .collect();
        for step in open {
            let intent: SprintSyncIntent = match serde_json::from_value(step.intent.clone()) {
                Ok(i) => i,
                Err(_) => continue,
            };
            let applied = intent
                .changes
                .iter()
                .all(|c| self.project.sprint_value(&c.key).as_deref() == Some(c.to.as_str()));
            let result = SprintSyncResult {
                applied,
                error: (!applied).then(|| {
                    "the host stopped during this step; the next reconciliation put back what it had not written".to_owned()
                }),
            };
            self.journal
                .borrow_mut()
                .finish_step(step.id, &to_json(&result))?;
        }
        Ok(())
    }

    /// The next `sprint-sync` sequence number of `story` in this run: the one left without a
    /// result by a host that died during it, else one past the last.
    fn next_sync_seq(&self, story: &str) -> Result<u32, Halt> {
        let steps = self.journal.borrow().steps(Some(&self.run), Some(story))?;
        let mut next = 0;
        for s in steps.iter().filter(|s| s.key.kind == StepKind::SprintSync) {
            if s.result.is_none() {
                return Ok(s.key.seq);
            }
            next = next.max(s.key.seq.saturating_add(1));
        }
        Ok(next)
    }

    /// With `[workflow] retrospective = "run"`, after `entry` finished done in this run: when
    /// its epic is done in sprint-status and its `epic-N-retrospective` key is not, runs the
    /// installed `bmad-retrospective` workflow as an SM agent call (journaled under the story
    /// `epic-N`, so a resumed run finds it done and never runs it again), then sets the key to
    /// `done`. A retrospective that cannot run (not installed, no key, a grant refused, the
    /// call failed) is a warning: the story stays done. `story` is what the SM policy is told
    /// (its id is `epic-N`).
    pub(super) async fn retrospective(
        &mut self,
        entry: &StoryEntry,
        story: Story,
        tally: &mut Tally,
    ) -> Result<(), Halt> {
        if self.config.workflow.retrospective.value != Retrospective::Run
            || self.project.sprint_status_path().is_none()
        {
            return Ok(());
        }
        let epic = entry.id.epic;
        let (epic_key, retro_key) = epic_keys(epic);
        if self.project.sprint_value(&epic_key).as_deref() != Some("done") {
            return Ok(());
        }
        match self.project.sprint_value(&retro_key).as_deref() {
            Some("done") => return Ok(()),
            None => {
                self.skip_retrospective(format!(
                    "sprint-status has no `{retro_key}` key: the retrospective of epic {epic} is not run"
                ));
                return Ok(());
            }
            Some(_) => {}
        }
        let files = self.project.retrospective_files();
        if files.is_empty() {
            self.skip_retrospective(format!(
                "retrospective = \"run\", but no bmad-retrospective workflow is installed (looked under _bmad/ and .claude/skills/): the retrospective of epic {epic} is not run"
            ));
            return Ok(());
        }
        let request = AgentRequest {
            prompt: retrospective_prompt(epic, &files, self.project.sprint_status_path()),
            max_turns: None,
            allowed_tools: Vec::new(),
            model: None,
            append_system_prompt: None,
        };
        let session = match self.plugins.begin_step(Role::Sm) {
            Ok(s) => s,
            Err(e) => {
                self.skip_retrospective(format!("the retrospective of epic {epic}: {e}"));
                return Ok(());
            }
        };
        if let Err(refused) = super::grant::check(self.config, session.plugin(), "sm", &request) {
            self.skip_retrospective(format!("the retrospective of epic {epic}: {refused}"));
            return Ok(());
        }
        let label = format!("epic-{epic}");
        let ctx = StepCtx {
            entry,
            story: &label,
            cycle: 0,
            role: Role::Sm,
        };
        let mut step = RoleStep {
            ctx,
            story,
            session,
            tally,
        };
        let outcome = self.agent_call(&mut step, 0, request).await?;
        // Like after any agent call: what it changed of the host's values goes back (the story
        // that closed the epic is done, reviewed).
        let closed = Driving {
            id: entry.id,
            started: false,
            done_accepted: true,
        };
        self.reconcile_sprint(When::AfterAgent, Some(&label), Some(closed))?;
        let outcome = match outcome {
            super::agent::Call::Ended(outcome) => outcome,
            super::agent::Call::Capped(reason) => {
                self.skip_retrospective(format!(
                    "the retrospective of epic {epic} did not run ({reason}): `{retro_key}` is left as it is"
                ));
                return Ok(());
            }
        };
        if outcome.kind != OutcomeKind::Success {
            self.skip_retrospective(format!(
                "the retrospective of epic {epic} did not succeed ({}): `{retro_key}` is left as it is",
                outcome.message
            ));
            return Ok(());
        }
        let reason = format!("the host ran the bmad-retrospective workflow of epic {epic}");
        if let Some(plan) = self.project.plan_sprint_value(&retro_key, "done", &reason) {
            self.apply_ledger(When::Retrospective, Some(&label), &plan)?;
        }
        Ok(())
    }

    fn skip_retrospective(&self, why: String) {
        tracing::warn!("{why}");
        self.say(&format!("  {why}"));
    }
}

/// The SM prompt of an epic's retrospective: the installed workflow files it runs, the epic,
/// and that it runs without a person to answer.
fn retrospective_prompt(
    epic: u32,
    files: &[std::path::PathBuf],
    sprint: Option<&std::path::Path>,
) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("- {}", f.display())).collect();
    let sprint = sprint.map_or_else(String::new, |s| {
        format!(
            " When the retrospective is complete, set `epic-{epic}-retrospective: done` in {} and change no other status in it.",
            s.display()
        )
    });
    format!(
        "Run the BMAD retrospective workflow (bmad-retrospective) for epic {epic}, whose stories are all done. \
Load and follow the installed workflow files:\n{}\n\
There is no person to answer questions in this session: take the defaults, record the \
retrospective document and its action items where the workflow says.{sprint}",
        list.join("\n")
    )
}
