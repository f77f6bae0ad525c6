//! `bmad-host run`: from the resolved [`Plan`] (project, configuration, stories and plugins),
//! opens (or resumes) the run in the journal, drives each selected story in order, and ends with
//! the summary. Also the Ctrl-C watcher every supervised process listens to.

use std::cell::RefCell;
use std::path::Path;
use std::time::Instant;

use jiff::Timestamp;

use tokio::sync::watch;

use super::driver::Driver;
use super::ends::check_at_start;
use super::halt::{Halt, Unproven};
use super::journaled::{check_step, step_name};
use super::ledger::When;
use super::summary::Results;
use crate::config::Config;
use crate::context::Plan;
use crate::error::Error;
use crate::journal::{
    Journal, JournalError, PluginFingerprint, RunFingerprint, RunId, RunInfo, StepStore,
};
use crate::plugins::PluginSet;
use crate::policy::Layout;
use crate::process::Interrupt;
use crate::project::StoryEntry;
use crate::ui::{Event, Ui};
use crate::workflow::Flow;
use crate::workflow::StoryResult;

/// `bmad-host run`: drives the plan's stories in order, resuming an unfinished run unless
/// `fresh`. Returns the exit code (see [`crate::exit`]).
pub async fn run(plan: Plan, ui: Ui, fresh: bool) -> Result<u8, Error> {
    run_with(plan, ui, fresh, None).await
}

/// A run hosted by a durable-execution engine's worker: where its steps are journaled (the
/// engine's journal; the project's keeps the rest of the run), and what interrupts its calls
/// (the worker, which has lost the story's lease; not Ctrl-C).
pub(crate) struct Hosted<'a> {
    pub steps: &'a RefCell<dyn StepStore + 'a>,
    pub interrupts: watch::Receiver<Interrupt>,
    /// The story's integration failed after this journal's last run (why, and Dev's
    /// findings): the run takes its workflow state from there and sends it back to Dev.
    pub reopen: Option<(String, Vec<String>)>,
}

/// [`run`], hosted by an engine's worker when `hosted` is given.
pub(crate) async fn run_with(
    plan: Plan,
    mut ui: Ui,
    fresh: bool,
    hosted: Option<Hosted<'_>>,
) -> Result<u8, Error> {
    let Plan {
        context,
        project,
        stories,
        plugins,
    } = plan;
    let (root, config) = (context.root, context.config);

    let mut journal = Journal::open(&root)?;
    check_journal(&journal, &stories, fresh)?;
    // This process runs one call or gate at a time and starts nothing else but the notifiers,
    // which are registered as started beside them: every other orphan it adopts while one runs
    // is that one's, marker or not (`env -i`, a setuid helper).
    // With more than one job, several calls run at once: then only the marker and the parent
    // links tell whose an orphan is. So in an engine's worker, which drives several stories and
    // its lane's gates at once (each call under a keeper that claims its own orphans).
    let jobs = config.workflow.jobs.value;
    if jobs <= 1 && hosted.is_none() {
        crate::process::claim_adopted_orphans();
    }
    // The run a reopened story's state is taken from: this journal's last, before this one.
    let previous = match &hosted {
        Some(Hosted {
            reopen: Some(_), ..
        }) => journal.runs()?.pop().map(|r| r.id),
        _ => None,
    };
    let (run, unproven) = start(&mut journal, &root, &config, &plugins, fresh).await?;
    let (steps, interrupts, reopen) = match hosted {
        Some(Hosted {
            steps,
            interrupts,
            reopen,
        }) => (Some(steps), interrupts, reopen.zip(previous)),
        None => {
            let (interrupt_tx, interrupts) = watch::channel(Interrupt::None);
            // The handler is in place before anything starts (the task itself first runs when
            // the run loop first waits: the runtime has one thread).
            let sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
            tokio::spawn(watch_ctrl_c(sigint, interrupt_tx));
            (None, interrupts, None)
        }
    };

    let notifiers =
        crate::notify::Notifiers::start(&config.notify, root.clone(), run.id.to_string(), &mut ui);
    let started = Instant::now();
    ui.emit(Event::RunStarted {
        run_id: run.id.to_string(),
        project: root.display().to_string(),
        layout: layout_name(project.layout()).into(),
        version: project.version().unwrap_or("unknown").to_string(),
        stories: stories.iter().map(|s| s.id.to_string()).collect(),
        resumed: run.resumed,
        dry_run: false,
    });
    let (journal_cell, ui_cell) = (RefCell::new(journal), std::sync::Mutex::new(ui));
    let mut driver = Driver {
        root: &root,
        state: &root,
        project: &project,
        config: &config,
        plugins: &plugins,
        journal: &journal_cell,
        steps: steps.unwrap_or(&journal_cell),
        run: run.id.clone(),
        ui: &ui_cell,
        interrupts,
        capped: None,
        lane: None,
        tmp: super::agent::claude_tmp(&root),
    };
    // An engine's story whose integration failed: back to Dev from where its last run left it.
    let reopened = match reopen {
        Some(((why, findings), from)) => stories
            .iter()
            .try_for_each(|entry| driver.reopen_from(&from, entry, &why, findings.clone())),
        None => Ok(()),
    };
    let mut results = match unproven {
        // An earlier end is still unproven: nothing starts.
        Some(unproven) => Results {
            halt: Some(Halt::Unproven(unproven)),
            ..Results::default()
        },
        None if let Err(halt) = reopened => Results {
            halt: Some(halt),
            ..Results::default()
        },
        None if jobs > 1 => driver.drive_lanes(&stories, jobs).await,
        None => {
            driver
                .drive_all(&stories, config.claude.wait_on_limit.value, !run.resumed)
                .await
        }
    };
    drop(driver);
    let mut journal = journal_cell.into_inner();
    let mut ui = ui_cell
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);

    let finished = journal.finish_run(&run.id, results.run_status());
    if let Err(e) = finished {
        notifiers.finish(&mut ui).await;
        return Err(e.into());
    }
    if let Some(e) = results.take_fatal() {
        notifiers.finish(&mut ui).await;
        ui.finish();
        return Err(e);
    }
    ui.emit(results.event(run.id.to_string(), stories.len(), started.elapsed()));
    results.print(&ui, &root, run.id.as_str());
    // The notifications still running (`run_finished`'s among them) end, each within its
    // timeout, before the process does.
    notifiers.finish(&mut ui).await;
    Ok(results.exit_code())
}

/// The journal fails closed: before the run writes anything, every entry it will read (the
/// planned stories' sightings and, when it resumes a run, their workflow states and steps) must
/// decode. One that does not stops the run with [`JournalError::Undecodable`], the journal left
/// byte for byte as it was.
fn check_journal(
    journal: &Journal,
    stories: &[StoryEntry],
    fresh: bool,
) -> Result<(), JournalError> {
    let runs = journal.runs()?;
    let latest = runs.last().map(|r| r.id.clone());
    let undecodable =
        |run: &RunId, story: &str, step: String, detail: String| JournalError::Undecodable {
            path: journal.path().to_owned(),
            run: run.clone(),
            story: story.to_owned(),
            step,
            detail,
        };
    // Sightings are written by runs: a journal without runs has none.
    if let Some(latest) = &latest {
        for entry in stories {
            let story = entry.id.to_string();
            if let Err(e) = journal.sighting(&story) {
                let detail = crate::error::Report(&e).to_string();
                return Err(undecodable(latest, &story, "first sighting".into(), detail));
            }
        }
    }
    let resumed = match runs.last() {
        Some(run) if !fresh && run.status.is_unfinished() => run.id.clone(),
        _ => return Ok(()),
    };
    // Only the plan's stories are read by this run.
    let planned: std::collections::HashSet<String> =
        stories.iter().map(|s| s.id.to_string()).collect();
    for summary in journal.story_summaries(Some(&resumed))? {
        if !planned.contains(&summary.record.story_id) {
            continue;
        }
        let findings = &summary.record.findings;
        if *findings != serde_json::Value::Array(Vec::new())
            && let Err(e) = serde_json::from_value::<Flow>(findings.clone())
        {
            return Err(undecodable(
                &resumed,
                &summary.record.story_id,
                "workflow state".into(),
                e.to_string(),
            ));
        }
    }
    for step in journal.steps(Some(&resumed), None)? {
        if !planned.contains(&step.key.story) {
            continue;
        }
        if let Err((part, detail)) = check_step(step.key.kind, &step.intent, step.result.as_ref()) {
            return Err(undecodable(
                &resumed,
                &step.key.story,
                step_name(&step.key, part),
                detail,
            ));
        }
    }
    Ok(())
}

/// Starts the run in the journal, or resumes the unfinished one; either way first stops what a
/// dead host of an unfinished run left running, and checks the survivors of earlier unproven
/// ends (returned when some still live: then nothing may start).
async fn start(
    journal: &mut Journal,
    root: &Path,
    config: &Config,
    plugins: &PluginSet,
    fresh: bool,
) -> Result<(RunInfo, Option<Unproven>), Error> {
    let fingerprint = RunFingerprint {
        config: serde_json::to_string(config).unwrap_or_default(),
        plugins: plugins
            .fingerprints()
            .into_iter()
            .map(PluginFingerprint::from)
            .collect(),
        args: std::env::args().collect(),
    };
    // The unfinished runs (the one resumed, or those `--fresh` abandons): their host may have
    // died with an agent or gate running.
    let earlier: Vec<RunId> = journal
        .runs()?
        .into_iter()
        .filter(|r| r.status.is_unfinished())
        .map(|r| r.id)
        .collect();
    let run = journal.start_run(fresh, &fingerprint)?;
    // Keep the journal, transcripts and temp files out of the project's git status.
    crate::journal::ignore_state_dir(root);
    let unproven = check_at_start(journal, &run.id, &earlier).await?;
    Ok((run, unproven))
}

impl Driver<'_> {
    /// Drives each story in order until all have ended or the run halts. With `wait_on_limit`,
    /// a usage limit with a known reset time is waited out and the story driven again (once per
    /// reset: a limit that still refuses after its stated reset stops the run).
    async fn drive_all(
        &mut self,
        stories: &[StoryEntry],
        wait_on_limit: bool,
        fresh: bool,
    ) -> Results {
        let mut results = Results::default();
        // `[git] commit = "story"`: a git work tree on a branch, clean when the run starts
        // (a resumed run finds the stopped story's work uncommitted).
        let repo = if self.config.git.commit.value.commits(1) {
            match self.prepare(fresh).await {
                Ok(repo) => Some(repo),
                Err(e) => {
                    results.halt = Some(Halt::Fatal(e));
                    return results;
                }
            }
        } else {
            None
        };
        // Drift between sprint-status and the story files since the last run is repaired.
        if let Err(halt) = self.reconcile_sprint(When::Start, None, None) {
            results.halt = Some(halt);
            return results;
        }
        let mut waited: Option<Timestamp> = None;
        for entry in stories {
            loop {
                match self.drive(entry).await {
                    Ok((result, tally)) => {
                        // Done in this run (not found done): it lands as a commit.
                        if let Some(repo) = &repo
                            && result == StoryResult::Done
                            && tally.turns > 0
                        {
                            let landed = match self.land(repo, entry).await {
                                Ok(commit) => {
                                    self.after_story(
                                        entry,
                                        self.root,
                                        &repo.branch,
                                        commit.as_deref(),
                                    )
                                    .await
                                }
                                Err(halt) => Err(halt),
                            };
                            if let Err(halt) = landed {
                                results.stories.push((entry.id.to_string(), result, tally));
                                results.halt = Some(halt);
                                return results;
                            }
                        }
                        results.stories.push((entry.id.to_string(), result, tally));
                        if let Some(capped) = self.capped.take() {
                            // A run cap: no further story starts.
                            results.capped = Some(capped);
                            return results;
                        }
                        break;
                    }
                    Err(limit @ Halt::UsageLimit { .. }) => {
                        if let Err(halt) =
                            self.on_usage_limit(limit, wait_on_limit, &mut waited).await
                        {
                            results.halt = Some(halt);
                            return results;
                        }
                    }
                    Err(halt) => {
                        results.halt = Some(halt);
                        return results;
                    }
                }
            }
        }
        results
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::V4 => "v4",
        Layout::V6 => "v6",
    }
}

async fn watch_ctrl_c(
    sigint: std::io::Result<tokio::signal::unix::Signal>,
    tx: watch::Sender<Interrupt>,
) {
    // One signal stream for the whole run, so a second Ctrl-C is never lost between two waits.
    let Ok(mut sigint) = sigint else {
        tracing::warn!("cannot listen for Ctrl-C; interrupt with SIGTERM or SIGKILL");
        return;
    };
    let mut count = 0;
    while sigint.recv().await.is_some() {
        count += 1;
        let level = if count == 1 {
            eprintln!(
                "\ninterrupt: finishing teardown of the current call (Ctrl-C again to kill now)"
            );
            Interrupt::Graceful
        } else {
            Interrupt::Immediate
        };
        if tx.send(level).is_err() {
            return;
        }
    }
}
