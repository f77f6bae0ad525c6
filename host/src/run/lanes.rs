//! Parallel runs (`run --jobs N`, N > 1): up to N stories in flight, each driven by a
//! [`Driver`] of its own over its git worktree (`.bmad-host/worktrees/<story>`, branch
//! `bmad/<story>`, made from the integration branch's head when the story is admitted), and one
//! integration lane that takes the finished stories one at a time, in story order among those
//! ready.
//!
//! All of it runs as futures on the run's one thread, polled together: the lanes share the
//! journal and the Ui, each borrowed only between two awaits. Admission is the
//! [`Scheduler`]'s (`admit.rs`). Ctrl-C reaches every lane's call through the lanes' own
//! interrupt channel (forwarded from the run's), so all N calls are torn down and the run exits
//! 130 with the worktrees left as they are; a usage limit in one lane interrupts the others, and
//! `--wait-on-limit` restarts them all after the reset. Each lane's steps are journaled under
//! its story, so a resumed run (after `kill -9`) finds each story's worktree again and redoes
//! only what had no result.
//!
//! Integration: every change in the worktree is committed, the files the host owns (the v6
//! sprint-status, other stories' files) are put back as they were at the story's base, the
//! story's commits are squashed into one (`<id>: <title>`, the review in its body) and rebased
//! onto (or merged with) the integration branch; the gates run on the result in the worktree;
//! then the integration branch is fast-forwarded and the worktree removed. A conflict (left in
//! the worktree with its markers) or a gate failing there sends the story back to Dev with the
//! conflict or the gate output as its findings, in a new cycle; a second failure escalates it.
//! The main checkout's sprint-status is the host's alone, reconciled after each integration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use jiff::Timestamp;
use tokio::sync::watch;

use super::admit::{Admission, Board, Candidate, Running, SameEpic};
use super::driver::Driver;
use super::halt::Halt;
use super::ledger::When;
use super::summary::{Results, Tally};
use crate::config::{GitIntegrate, SameEpic as SameEpicSetting};
use crate::error::Error;
use crate::git::{Git, GitError, Integrate, Integration};
use crate::journal::{
    LaneIntent, LaneResult, LaneWork, StepId, StepKey, StepKind, StepRow, StepStart, StoryRecord,
};
use crate::policy::StoryState;
use crate::process::Interrupt;
use crate::project::{Project, StoryEntry, StoryId};
use crate::ui::{Event, SurvivorInfo};
use crate::workflow::{Flow, Settings, StoryResult};

/// What one future of the loop ended with.
enum Task {
    /// A lane drove its story to an end (or a halt).
    Driven {
        id: StoryId,
        lane: u32,
        result: Result<(StoryResult, Tally), Halt>,
        capped: Option<String>,
    },
    /// The integration lane is done with a story.
    Integrated {
        id: StoryId,
        lane: u32,
        tally: Tally,
        outcome: Result<Landed, Halt>,
    },
}

/// How an integration ended.
enum Landed {
    /// On the integration branch (`None`: the story changed nothing).
    Yes(Option<String>),
    /// Not integrated: why, and the findings for Dev.
    No {
        why: String,
        files: Vec<String>,
        findings: Vec<String>,
    },
}

type LocalFuture<'f> = Pin<Box<dyn std::future::Future<Output = Task> + 'f>>;

/// What every lane shares: the repository and the integration branch.
pub(super) struct Repo {
    pub git: Git,
    /// The repository's top level (the main checkout).
    pub top: PathBuf,
    /// The project root relative to `top` (empty when the project is the repository).
    pub rel: PathBuf,
    /// The integration branch (checked out in the main checkout).
    pub branch: String,
    integrate: Integrate,
    /// Held while git changes what the worktrees share (`git worktree add`, `remove`, `prune`,
    /// the integration branch): git does not take such changes from two processes at once.
    shared_refs: tokio::sync::Mutex<()>,
}

impl Repo {
    fn worktree(&self, state: &Path, id: StoryId) -> PathBuf {
        crate::journal::state_dir(state)
            .join("worktrees")
            .join(id.to_string())
    }

    fn story_branch(id: StoryId) -> String {
        format!("bmad/{id}")
    }
}

impl Driver<'_> {
    /// Drives `stories` with up to `jobs` of them in flight (see the module's documentation).
    pub(super) async fn drive_lanes(&mut self, stories: &[StoryEntry], jobs: u32) -> Results {
        let mut results = Results::default();
        let repo = match self.prepare(true).await {
            Ok(repo) => repo,
            Err(e) => {
                results.halt = Some(Halt::Fatal(e));
                return results;
            }
        };
        if let Err(halt) = self.reconcile_sprint(When::Start, None, None) {
            results.halt = Some(halt);
            return results;
        }
        let same_epic = match self.config.workflow.same_epic.value {
            SameEpicSetting::Serial => SameEpic::Serial,
            SameEpicSetting::Parallel => SameEpic::Parallel,
        };
        let scheduler = match self.plugins.scheduler() {
            Ok(scheduler) => Admission {
                scheduler,
                same_epic,
            },
            Err(e) => {
                results.halt = Some(Halt::Fatal(e.into()));
                return results;
            }
        };
        let wait_on_limit = self.config.claude.wait_on_limit.value;
        let mut waited: Option<Timestamp> = None;
        let mut done: BTreeMap<StoryId, (StoryResult, Tally)> = BTreeMap::new();
        loop {
            let pause = self
                .lanes_once(stories, jobs, &repo, &scheduler, &mut done)
                .await;
            if let Some(capped) = self.capped.take() {
                // A run cap: no further story starts.
                results.capped = Some(capped);
            }
            match pause {
                Ok(()) => break,
                Err(limit @ Halt::UsageLimit { .. }) => {
                    // Every lane stopped; after the reset they all start again.
                    if let Err(halt) = self.on_usage_limit(limit, wait_on_limit, &mut waited).await
                    {
                        results.halt = Some(halt);
                        break;
                    }
                }
                Err(halt) => {
                    results.halt = Some(halt);
                    break;
                }
            }
            if results.capped.is_some() {
                break;
            }
        }
        // In story order, as one job would list them.
        results.stories = done
            .into_iter()
            .map(|(id, (result, tally))| (id.to_string(), result, tally))
            .collect();
        results
    }

    /// Checks that the project can run in parallel (or commit its stories): a git work tree on
    /// a branch, with nothing uncommitted but the files the host owns when `require_clean`.
    pub(super) async fn prepare(&self, require_clean: bool) -> Result<Repo, Error> {
        let git = Git::new(crate::git::DEFAULT_TIMEOUT, self.interrupts.clone());
        let top = git.toplevel(self.root).await?;
        let rel = self
            .root
            .canonicalize()
            .ok()
            .and_then(|r| {
                let top = top.canonicalize().ok()?;
                r.strip_prefix(&top).ok().map(Path::to_path_buf)
            })
            .unwrap_or_default();
        let branch = git.branch(&top).await?;
        // The host keeps the main checkout's sprint-status itself (uncommitted): only that
        // file may differ from the branch's head.
        let sprint = self
            .project
            .sprint_status_path()
            .map(|p| rel.join(p).display().to_string());
        let dirty: Vec<String> = git
            .changes(&top)
            .await?
            .into_iter()
            .filter(|line| {
                let path = line.get(3..).unwrap_or_default();
                !(line.starts_with(" M") && sprint.as_deref() == Some(path))
            })
            .collect();
        if require_clean && !dirty.is_empty() {
            return Err(GitError::Dirty {
                dir: top,
                files: dirty,
            }
            .into());
        }
        Ok(Repo {
            git,
            top,
            rel,
            branch,
            integrate: match self.config.git.integrate.value {
                GitIntegrate::Rebase => Integrate::Rebase,
                GitIntegrate::Merge => Integrate::Merge,
            },
            shared_refs: tokio::sync::Mutex::new(()),
        })
    }

    /// The files the host owns, relative to the repository: sprint-status, and every story
    /// file of the run but `except`'s.
    fn host_owned(
        &self,
        rel: &Path,
        stories: &[StoryEntry],
        except: Option<StoryId>,
    ) -> Vec<String> {
        let mut owned: Vec<String> = stories
            .iter()
            .filter(|s| Some(s.id) != except)
            .map(|s| rel.join(&s.path).display().to_string())
            .collect();
        if let Some(sprint) = self.project.sprint_status_path() {
            owned.push(rel.join(sprint).display().to_string());
        }
        owned
    }

    /// Runs the lanes until every story has ended or something stops them (a halt; a usage
    /// limit, which the caller waits out or not).
    async fn lanes_once(
        &mut self,
        stories: &[StoryEntry],
        jobs: u32,
        repo: &Repo,
        scheduler: &Admission,
        done: &mut BTreeMap<StoryId, (StoryResult, Tally)>,
    ) -> Result<(), Halt> {
        self.settle_integrated(stories, done)?;
        let (lane_tx, lane_rx) = watch::channel(Interrupt::None);
        let mut interrupts = self.interrupts.clone();
        let mut interrupts_open = true;
        let by_id: BTreeMap<StoryId, &StoryEntry> = stories.iter().map(|s| (s.id, s)).collect();
        let mut waiting: Vec<Candidate> = stories
            .iter()
            .filter(|s| !done.contains_key(&s.id))
            .map(|s| self.candidate(s))
            .collect();
        let mut unfinished: BTreeSet<StoryId> = waiting.iter().map(|c| c.id).collect();
        let mut running: Vec<Running> = Vec::new();
        let mut free: Vec<u32> = (1..=jobs).rev().collect();
        let mut ready: BTreeMap<StoryId, (u32, Tally)> = BTreeMap::new();
        let mut integrating = false;
        let mut stop: Option<Halt> = None;
        // A run spend cap stopped a story: nothing more starts.
        let mut capped: Option<String> = None;
        let mut tasks: FuturesUnordered<LocalFuture<'_>> = FuturesUnordered::new();
        let shared = Shared {
            driver: &*self,
            repo,
            stories,
            rx: lane_rx,
        };
        loop {
            if stop.is_none() && capped.is_none() {
                let failed = not_done(done);
                let admitted = match scheduler.admit(&Board {
                    waiting: &waiting,
                    running: &running,
                    unfinished: &unfinished,
                    failed: &failed,
                    slots: free.len(),
                }) {
                    Ok(admitted) => admitted,
                    Err(e) => {
                        stop_with(&mut stop, Halt::Fatal(e.into()), &lane_tx);
                        Vec::new()
                    }
                };
                for id in admitted {
                    let Some(pos) = waiting.iter().position(|c| c.id == id) else {
                        continue;
                    };
                    let candidate = waiting.remove(pos);
                    let Some(lane) = free.pop() else { break };
                    running.push(Running {
                        id,
                        footprint: candidate.footprint,
                    });
                    tasks.push(Box::pin(shared.drive(by_id[&id], lane, None)));
                }
                if !integrating && let Some(id) = ready.keys().next().copied() {
                    let (lane, tally) = ready.remove(&id).unwrap_or_default();
                    integrating = true;
                    tasks.push(Box::pin(shared.integrate(by_id[&id], lane, tally)));
                }
            }
            if tasks.is_empty() {
                break;
            }
            let task = tokio::select! {
                task = tasks.next() => task,
                changed = interrupts.changed(), if interrupts_open => {
                    match changed {
                        Ok(()) => {
                            let level = *interrupts.borrow();
                            let _ = lane_tx.send(level);
                        }
                        Err(_) => interrupts_open = false,
                    }
                    continue;
                }
            };
            let Some(task) = task else { break };
            match task {
                Task::Driven {
                    id,
                    lane,
                    result,
                    capped: lane_capped,
                } => {
                    if let Some(why) = lane_capped {
                        capped.get_or_insert(why);
                    }
                    match result {
                        Ok((StoryResult::Done, tally)) if stop.is_none() => {
                            // Its lane stays taken until the story is integrated.
                            ready.insert(id, (lane, tally));
                        }
                        Ok((result, tally)) => {
                            let integrated_before = result == StoryResult::Done;
                            // Done, but the run stops: integrated when the run resumes.
                            if !integrated_before {
                                done.insert(id, (result, tally));
                                unfinished.remove(&id);
                            }
                            running.retain(|r| r.id != id);
                            free.push(lane);
                            shared.driver.ui().lane_free(lane);
                        }
                        Err(halt) => {
                            running.retain(|r| r.id != id);
                            free.push(lane);
                            shared.driver.ui().lane_free(lane);
                            stop_with(&mut stop, halt, &lane_tx);
                        }
                    }
                }
                Task::Integrated {
                    id,
                    lane,
                    tally,
                    outcome,
                } => {
                    integrating = false;
                    match outcome {
                        Ok(Landed::Yes(commit)) => {
                            shared.driver.emit(Event::StoryIntegrated {
                                story: id.to_string(),
                                branch: repo.branch.clone(),
                                commit,
                            });
                            // The main checkout's sprint-status follows the story that landed.
                            if let Err(halt) =
                                shared.driver.reconcile_sprint(When::StoryEnd, None, None)
                            {
                                stop_with(&mut stop, halt, &lane_tx);
                            }
                            done.insert(id, (StoryResult::Done, tally));
                            unfinished.remove(&id);
                            running.retain(|r| r.id != id);
                            free.push(lane);
                            shared.driver.ui().lane_free(lane);
                        }
                        Ok(Landed::No {
                            why,
                            files,
                            findings,
                        }) => {
                            let back = shared.reopens(id);
                            shared.driver.emit(Event::IntegrationFailed {
                                story: id.to_string(),
                                reason: why.clone(),
                                files,
                                back_to_dev: back,
                            });
                            tasks.push(Box::pin(shared.drive(
                                by_id[&id],
                                lane,
                                Some((why, findings)),
                            )));
                        }
                        Err(halt) => {
                            running.retain(|r| r.id != id);
                            free.push(lane);
                            shared.driver.ui().lane_free(lane);
                            stop_with(&mut stop, halt, &lane_tx);
                        }
                    }
                }
            }
        }
        drop(tasks);
        drop(shared);
        if stop.is_none() && capped.is_none() && !waiting.is_empty() {
            // Nothing runs and the scheduler starts none of them: none ever will. Each ends
            // escalated with the reason (a person must change a dependency or the scheduler);
            // the journal keeps no end for them, so a later run asks again.
            let failed = not_done(done);
            let board = Board {
                waiting: &waiting,
                running: &[],
                unfinished: &unfinished,
                failed: &failed,
                slots: 0,
            };
            let ended: Vec<(StoryId, String)> = waiting
                .iter()
                .map(|c| (c.id, scheduler.why_not_started(c, &board)))
                .collect();
            for (id, why) in ended {
                self.emit(Event::ended_unrun(id.to_string(), "escalated", why.clone()));
                done.insert(id, (StoryResult::Escalated(why), Tally::default()));
            }
        }
        if let Some(why) = capped {
            self.capped = Some(why);
        }
        // The main checkout's sprint-status follows the integrated story files.
        if !done.is_empty() {
            self.reconcile_sprint(When::StoryEnd, None, None)?;
        }
        match stop {
            Some(halt) => Err(halt),
            None => Ok(()),
        }
    }

    /// A story as the scheduler sees it (in the main checkout).
    fn candidate(&self, entry: &StoryEntry) -> Candidate {
        Candidate::of(self.project, self.plugins, entry)
    }
}

/// The stories of the run that ended without being done.
fn not_done(done: &BTreeMap<StoryId, (StoryResult, Tally)>) -> BTreeSet<StoryId> {
    done.iter()
        .filter(|(_, (result, _))| *result != StoryResult::Done)
        .map(|(id, _)| *id)
        .collect()
}

/// Records the first halt; a halt stops every other lane (their calls are torn down, and
/// their steps redone when the run resumes).
fn stop_with(stop: &mut Option<Halt>, halt: Halt, lanes: &watch::Sender<Interrupt>) {
    if stop.is_none() {
        *stop = Some(halt);
    }
    if *lanes.borrow() == Interrupt::None {
        let _ = lanes.send(Interrupt::Graceful);
    }
}

/// What the lanes' futures borrow.
struct Shared<'s, 'd> {
    driver: &'s Driver<'d>,
    repo: &'s Repo,
    stories: &'s [StoryEntry],
    rx: watch::Receiver<Interrupt>,
}

impl<'s, 'd> Shared<'s, 'd> {
    /// Whether a story whose integration failed goes back to Dev (its first failure), from
    /// its journaled workflow state.
    fn reopens(&self, id: StoryId) -> bool {
        let record = self
            .driver
            .journal
            .borrow()
            .story(&self.driver.run, &id.to_string())
            .ok()
            .flatten();
        let flow = record.and_then(|r| serde_json::from_value::<Flow>(r.findings).ok());
        flow.is_none_or(|f| f.integration_failures() == 0)
    }

    /// A lane: the story's worktree (made, or found again), a driver over it, the story driven
    /// to its end. `reopen`: its integration failed (why, and the findings for Dev).
    fn drive(
        &self,
        entry: &'s StoryEntry,
        lane: u32,
        reopen: Option<(String, Vec<String>)>,
    ) -> impl std::future::Future<Output = Task> + 's {
        let (driver, repo, rx) = (self.driver, self.repo, self.rx.clone());
        async move {
            let id = entry.id;
            let run = async {
                let path = repo.worktree(driver.state, id);
                {
                    let _shared = repo.shared_refs.lock().await;
                    repo.git
                        .worktree(&repo.top, &path, &Repo::story_branch(id), &repo.branch)
                        .await
                        .map_err(|e| match e {
                            GitError::Interrupted { .. } => Halt::Interrupted,
                            e => Halt::Fatal(e.into()),
                        })?;
                }
                let work = path.join(&repo.rel);
                let project =
                    Project::discover(&work).map_err(|e| Halt::Fatal(Error::Project(e)))?;
                let tmp = crate::journal::state_dir(driver.state).join(format!("tmp-{lane}"));
                let mut lane_driver = Driver {
                    root: &work,
                    state: driver.state,
                    project: &project,
                    config: driver.config,
                    plugins: driver.plugins,
                    journal: driver.journal,
                    steps: driver.steps,
                    run: driver.run.clone(),
                    ui: driver.ui,
                    interrupts: rx,
                    capped: None,
                    lane: Some(lane),
                    tmp,
                };
                if let Some((why, findings)) = reopen {
                    lane_driver.reopen(entry, &why, findings)?;
                }
                let record = driver.open_lane(id, lane, LaneWork::Drive)?;
                let result = lane_driver.drive(entry).await;
                if let Ok((ended, _)) = &result {
                    let reason = match ended {
                        StoryResult::Done => None,
                        StoryResult::Failed(why) | StoryResult::Escalated(why) => Some(why.clone()),
                    };
                    driver.finish_lane(record, ended.word(), None, reason)?;
                }
                Ok::<_, Halt>((result, lane_driver.capped.take()))
            };
            match run.await {
                Ok((result, capped)) => Task::Driven {
                    id,
                    lane,
                    result,
                    capped,
                },
                Err(halt) => Task::Driven {
                    id,
                    lane,
                    result: Err(halt),
                    capped: None,
                },
            }
        }
    }

    /// The integration lane's work on one finished story (see the module's documentation).
    fn integrate(
        &self,
        entry: &'s StoryEntry,
        lane: u32,
        tally: Tally,
    ) -> impl std::future::Future<Output = Task> + 's {
        let (driver, repo, stories, rx) = (self.driver, self.repo, self.stories, self.rx.clone());
        async move {
            let id = entry.id;
            let outcome = async {
                // An integration the host was stopped in: it may have landed already.
                let resumed = driver.integrating(id)?;
                let record = driver.open_lane(id, lane, LaneWork::Integrate)?;
                let landed =
                    integrate_story(driver, repo, stories, entry, lane, rx, resumed).await?;
                match &landed {
                    Landed::Yes(commit) => {
                        driver.finish_lane(record, "integrated", commit.clone(), None)?;
                        driver
                            .after_story(
                                entry,
                                driver.root,
                                &Repo::story_branch(id),
                                commit.as_deref(),
                            )
                            .await?;
                    }
                    Landed::No { why, .. } => {
                        driver.finish_lane(record, "not-integrated", None, Some(why.clone()))?;
                    }
                }
                Ok(landed)
            }
            .await;
            Task::Integrated {
                id,
                lane,
                tally,
                outcome,
            }
        }
    }
}

async fn integrate_story(
    driver: &Driver<'_>,
    repo: &Repo,
    stories: &[StoryEntry],
    entry: &StoryEntry,
    lane: u32,
    interrupts: watch::Receiver<Interrupt>,
    resumed: bool,
) -> Result<Landed, Halt> {
    let id = entry.id;
    let git = &repo.git;
    let fatal = |e: GitError| match e {
        GitError::Interrupted { .. } => Halt::Interrupted,
        e => Halt::Fatal(e.into()),
    };
    let path = repo.worktree(driver.state, id);
    if !path.exists() {
        // Integrated before the host stopped (its worktree is removed last).
        return Ok(Landed::Yes(None));
    }
    let work = path.join(&repo.rel);
    let subject = format!("{id}: {}", entry.title);
    if resumed && let Some(commit) = landed_before(repo, &path, &subject).await.map_err(fatal)? {
        // The integration branch was fast-forwarded to the story before the host stopped:
        // only the worktree is left to remove (its gates passed then).
        let _shared = repo.shared_refs.lock().await;
        git.remove_worktree(&repo.top, &path).await.map_err(fatal)?;
        return Ok(Landed::Yes(Some(commit)));
    }
    let body = review_body(driver, &work, entry);
    let shared = repo.shared_refs.lock().await;
    git.commit_all(&path, &subject, &body)
        .await
        .map_err(fatal)?;
    let base = git
        .run(&path, &["merge-base", "HEAD", &repo.branch])
        .await
        .map_err(fatal)?
        .stdout
        .trim()
        .to_string();
    let changed = git
        .run(&path, &["diff", "--name-only", &base, "HEAD"])
        .await
        .map_err(fatal)?
        .stdout;
    let owned = driver.host_owned(&repo.rel, stories, Some(id));
    let put_back: Vec<&str> = changed
        .lines()
        .filter(|c| owned.iter().any(|o| o == c))
        .collect();
    if !put_back.is_empty() {
        git.restore(&path, &base, &put_back).await.map_err(fatal)?;
    }
    let integration = git
        .integrate(&path, &repo.branch, repo.integrate, &subject, &body)
        .await
        .map_err(fatal)?;
    let commit = match integration {
        Integration::Conflict { files, output } => {
            // Left in the worktree with its markers, for Dev to resolve.
            git.open_conflict(&path, &repo.branch)
                .await
                .map_err(fatal)?;
            return Ok(Landed::No {
                why: format!("conflict with `{}` in {}", repo.branch, files.join(", ")),
                findings: vec![conflict_finding(&repo.branch, &files, &output)],
                files,
            });
        }
        Integration::Nothing => None,
        Integration::Ready { commit } => Some(commit),
    };
    drop(shared);
    // The gates again, on the integrated result.
    let mut failed = Vec::new();
    for gate in driver.config.active_gates() {
        let env = [
            ("BMAD_HOST_RUN_ID".to_string(), driver.run.to_string()),
            ("BMAD_HOST_STORY_ID".to_string(), id.to_string()),
            ("BMAD_HOST_INTEGRATION".to_string(), "1".to_string()),
        ];
        let run = crate::gates::run_gate(gate, &work, &env, interrupts.clone()).await;
        if run.cancelled && run.clean {
            return Err(Halt::Interrupted);
        }
        driver.ui().emit_in(
            Some(lane),
            Event::GateFinished {
                story: id.to_string(),
                gate: gate.name.clone(),
                passed: run.report.passed,
                exit_code: run.report.exit_code,
                timed_out: run.report.timed_out,
                duration_ms: super::summary::millis(run.duration),
                clean: run.clean,
                survivors: run.survivors.iter().map(SurvivorInfo::from).collect(),
            },
        );
        if !run.clean {
            return Err(Halt::Unproven(super::halt::Unproven {
                what: format!("gate `{}` of story {id} (integration)", gate.name),
                survivors: run.survivors,
            }));
        }
        if !run.report.passed {
            failed.push(run.report);
        }
    }
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|r| format!("`{}`", r.name)).collect();
        return Ok(Landed::No {
            why: format!(
                "gate {} failed after integration onto `{}`",
                names.join(", "),
                repo.branch
            ),
            files: Vec::new(),
            findings: failed
                .iter()
                .map(|r| gate_finding(r, &repo.branch))
                .collect(),
        });
    }
    let branch = Repo::story_branch(id);
    let _shared = repo.shared_refs.lock().await;
    git.fast_forward(&repo.top, &branch).await.map_err(fatal)?;
    git.remove_worktree(&repo.top, &path).await.map_err(fatal)?;
    Ok(Landed::Yes(commit))
}

/// The story's commit, when an interrupted integration had already landed it: the worktree
/// is clean, its head is on the integration branch and is the story's own commit (its subject).
async fn landed_before(
    repo: &Repo,
    worktree: &Path,
    subject: &str,
) -> Result<Option<String>, GitError> {
    if !repo.git.changes(worktree).await?.is_empty() {
        return Ok(None);
    }
    let head = repo.git.rev(worktree, "HEAD").await?;
    let on_branch = repo
        .git
        .output(
            &repo.top,
            &["merge-base", "--is-ancestor", &head, &repo.branch],
        )
        .await?
        .success();
    if !on_branch {
        return Ok(None);
    }
    let said = repo
        .git
        .run(worktree, &["log", "-1", "--format=%s", &head])
        .await?
        .stdout;
    Ok((said.trim_end() == subject).then_some(head))
}

/// The body of a story's commit: how its review ended.
pub(super) fn review_body(driver: &Driver<'_>, work: &Path, entry: &StoryEntry) -> String {
    let mut body = format!("Reviewed by QA in bmad-host run {}.", driver.run);
    if let Ok(project) = Project::discover(work)
        && let Ok(Some(gate)) = project.read_qa_gate(entry)
    {
        body.push_str(&format!(
            "\nQA gate: {} ({})",
            gate.gate,
            gate.path.display()
        ));
    }
    body
}

/// Dev's finding for a story whose changes conflict with `branch` in `files` (git said
/// `output`).
pub(crate) fn conflict_finding(branch: &str, files: &[String], output: &str) -> String {
    format!(
        "integration conflict: the story's changes conflict with what `{branch}` gained since the story started, in {}. \
         The files hold git's conflict markers (<<<<<<< ======= >>>>>>>): resolve each keeping both sides' intent, \
         remove the markers, and make the story's tests pass again. git said: {}",
        files.join(", "),
        clip(output, 1500)
    )
}

/// Dev's finding for a gate that failed on the story integrated onto `branch`.
pub(crate) fn gate_finding(report: &crate::policy::GateReport, branch: &str) -> String {
    format!(
        "quality gate `{}` failed on the story integrated onto `{branch}` (exit {}): {}",
        report.name,
        report
            .exit_code
            .map_or_else(|| "none".into(), |c| c.to_string()),
        clip(report.output_tail.trim(), 1500)
    )
}

fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = text.len() - max;
    while !text.is_char_boundary(end) {
        end += 1;
    }
    format!("…{}", &text[end..])
}

impl Driver<'_> {
    /// A story whose integration failed: its workflow state learns it (back to Dev in a new
    /// cycle, or escalated the second time), and its file in the worktree says
    /// changes-requested so that Dev picks it up.
    fn reopen(&mut self, entry: &StoryEntry, why: &str, findings: Vec<String>) -> Result<(), Halt> {
        let run = self.run.clone();
        self.reopen_from(&run, entry, why, findings)
    }

    /// [`Driver::reopen`], the story's state taken from run `from` (an earlier run of the
    /// journal: an engine's worker runs its loop again as a new run).
    pub(super) fn reopen_from(
        &mut self,
        from: &crate::journal::RunId,
        entry: &StoryEntry,
        why: &str,
        findings: Vec<String>,
    ) -> Result<(), Halt> {
        let story = entry.id.to_string();
        let Some(mut record) = self.journal.borrow().story(from, &story)? else {
            return Ok(());
        };
        let mut settings = Settings::from(&self.config.workflow);
        settings.flow = super::flow_of(self.project);
        let mut flow: Flow = match serde_json::from_value(record.findings.clone()) {
            Ok(flow) => flow,
            Err(_) => Flow::new(settings),
        };
        if flow.integration_failed(why, findings) {
            let seen = self.observe(entry);
            if let Some(value) = &seen.value
                && seen.state != Some(StoryState::ChangesRequested)
                && let Err(e) =
                    self.project
                        .write_status(entry, value, StoryState::ChangesRequested)
            {
                tracing::warn!("{e}");
            }
            record.result = None;
            record.last_outcome = None;
        }
        record.findings = serde_json::to_value(&flow).unwrap_or_default();
        self.journal.borrow_mut().save_story(&self.run, &record)?;
        Ok(())
    }

    /// The stories a resumed run finds ended and integrated (or ended without success) before:
    /// an end in the journal and no worktree left (a done story's is removed once it is on the
    /// integration branch; a failed one's is kept, and its end is taken as it is).
    fn settle_integrated(
        &self,
        stories: &[StoryEntry],
        done: &mut BTreeMap<StoryId, (StoryResult, Tally)>,
    ) -> Result<(), Halt> {
        for entry in stories {
            if done.contains_key(&entry.id) {
                continue;
            }
            let record = self
                .journal
                .borrow()
                .story(&self.run, &entry.id.to_string())?;
            let Some(record) = record else { continue };
            let Some(result) = ended(&record) else {
                continue;
            };
            let worktree = crate::journal::state_dir(self.state)
                .join("worktrees")
                .join(entry.id.to_string());
            if result == StoryResult::Done && worktree.exists() {
                // Done, not integrated yet: its lane takes it to the integration lane.
                continue;
            }
            let tally = Tally {
                cycles: record.cycle,
                turns: record.usage.turns,
                cost_usd: record.usage.cost_usd,
                input_tokens: record.usage.input_tokens,
                output_tokens: record.usage.output_tokens,
                duration: record.usage.duration,
            };
            done.insert(entry.id, (result, tally));
        }
        Ok(())
    }
}

impl Driver<'_> {
    /// The story's `lane` records in this run, in order.
    fn lane_records(&self, id: StoryId) -> Result<Vec<StepRow>, Halt> {
        let steps = self
            .journal
            .borrow()
            .steps(Some(&self.run), Some(&id.to_string()))?;
        Ok(steps
            .into_iter()
            .filter(|s| s.key.kind == StepKind::Lane)
            .collect())
    }

    /// Whether the story's last lane record is an integration with no result: the host was
    /// stopped while integrating it.
    fn integrating(&self, id: StoryId) -> Result<bool, Halt> {
        Ok(self.lane_records(id)?.last().is_some_and(|step| {
            step.result.is_none()
                && serde_json::from_value::<LaneIntent>(step.intent.clone())
                    .is_ok_and(|i| i.work == LaneWork::Integrate)
        }))
    }

    /// Journals that `lane` takes story `id` for `work` (a new `lane` record; see
    /// [`LaneIntent`]).
    fn open_lane(&self, id: StoryId, lane: u32, work: LaneWork) -> Result<Option<StepId>, Halt> {
        let story = id.to_string();
        let seq = self.lane_records(id)?.len();
        let cycle = self
            .journal
            .borrow()
            .story(&self.run, &story)?
            .map_or(0, |r| r.cycle);
        let key = StepKey {
            run: self.run.clone(),
            story,
            cycle,
            role: "host".to_string(),
            kind: StepKind::Lane,
            seq: u32::try_from(seq).unwrap_or(u32::MAX),
        };
        let intent = super::journaled::to_json(&LaneIntent { lane, work });
        Ok(match self.journal.borrow_mut().begin_step(&key, &intent)? {
            StepStart::Fresh(step) | StepStart::Retry { id: step, .. } => Some(step),
            // A new key each time: never found done.
            StepStart::Done(_) => None,
        })
    }

    /// Journals how the lane let the story go.
    fn finish_lane(
        &self,
        record: Option<StepId>,
        outcome: &str,
        commit: Option<String>,
        reason: Option<String>,
    ) -> Result<(), Halt> {
        let Some(step) = record else { return Ok(()) };
        let result = LaneResult {
            commit,
            outcome: outcome.to_string(),
            reason,
        };
        self.journal
            .borrow_mut()
            .finish_step(step, &super::journaled::to_json(&result))?;
        Ok(())
    }
}

/// How a story's journaled record says it ended, when it did.
fn ended(record: &StoryRecord) -> Option<StoryResult> {
    let flow: Flow = serde_json::from_value(record.findings.clone()).ok()?;
    flow.result().cloned()
}
