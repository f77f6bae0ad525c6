//! The story workflow a worker serves: the handler, and the run loop it starts on a thread of
//! its own for the story.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use restate_sdk::prelude::*;

use super::events;
use super::lane::{IntegrationLaneClient, Landing, Outcome};
use super::lease::Leases;
use super::pause::{self, Pause};
use super::steps;
use super::tree::Checkout;
use super::{StoryInput, StoryOutput, WorkerSpec};
use crate::context::Plan;
use crate::error::Report;
use crate::process::Interrupt;
use crate::run::Hosted;
use crate::ui::{Event, Ui};

/// The story workflow a worker serves.
#[derive(Debug)]
pub(crate) struct StoryWorkflow {
    spec: Arc<WorkerSpec>,
    /// The worker's clone, where each story's files are.
    checkout: Arc<Checkout>,
    /// The stories it drives at once (`--jobs`; one in a lone clone, whose one work tree the
    /// run loop owns while it drives a story).
    slots: tokio::sync::Semaphore,
    /// The stories' leases, as this worker takes them.
    leases: Leases,
    /// Until when this worker takes no story (its account's usage limit).
    pause: Arc<Pause>,
}

#[restate_sdk::workflow]
impl StoryWorkflow {
    /// Drives the story to its end (done, failed, escalated, or halted).
    #[handler]
    async fn run(
        &self,
        ctx: WorkflowContext<'_>,
        input: Json<StoryInput>,
    ) -> Result<Json<StoryOutput>, HandlerError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| TerminalError::new("the worker is stopping"))?;
        let StoryInput { story, project } = input.into_inner();
        // Paused while it waited for the story before: not this one either.
        if let Some((until, _)) = self.pause.left(jiff::Timestamp::now()) {
            return Err(paused(&story, until));
        }
        // The work tree as the workflow found it, or (replaying) as it found it the first time.
        let tree = steps::Tree::open(&self.checkout, &story, ctx.key());
        let ran = tree_step(&ctx, &tree, "base", || tree.start()).await?;
        // Replaying, the loop's events are another worker's until a step runs here.
        let live = Arc::new(AtomicBool::new(ran));
        let workflow = ctx.key().to_string();
        let (lines, feed_lines) = tokio::sync::mpsc::unbounded_channel();
        let feed = tokio::spawn(events::feed(
            self.spec.ingress.clone(),
            workflow.clone(),
            feed_lines,
        ));
        // The loop, and again after the lane refused the story: back to Dev once (then the
        // loop escalates it), as the local lane does.
        let mut reopen: Option<Reopen> = None;
        let mut reopened = 0_u32;
        let mut landed = None;
        let mut output = loop {
            let round = Round {
                ctx: &ctx,
                tree: &tree,
                story: &story,
                lines: &lines,
                live: &live,
            };
            let output = self.round(round, reopen.take()).await?;
            let done = output
                .events
                .iter()
                .rev()
                .find(|e| e["event"] == "story_finished")
                .is_some_and(|e| e["result"] == "done");
            if !(tree.shared() && output.exit_code == crate::exit::OK && done) {
                break output;
            }
            let outcome = land(&ctx, &tree, &story, &project, &output).await?;
            match outcome {
                Outcome::Landed(at) => {
                    landed = Some(at);
                    break output;
                }
                Outcome::Refused(refusal) => {
                    // As the story's workflow state rules: back to Dev once, then escalated.
                    let back = reopened == 0;
                    reopened += 1;
                    let mut ui = Ui::lines_for_engine(lines.clone(), Arc::clone(&live));
                    ui.emit(Event::IntegrationFailed {
                        story: story.clone(),
                        reason: refusal.why.clone(),
                        files: refusal.files.clone(),
                        back_to_dev: back,
                    });
                    if back {
                        // The shared branch's head merged into the story's files, conflicts
                        // and all, for Dev.
                        tree_step(&ctx, &tree, "reopen", || tree.reopen()).await?;
                    }
                    reopen = Some(Reopen {
                        why: refusal.why,
                        findings: refusal.findings,
                    });
                }
            }
        };
        drop(lines);
        // The loops' threads are gone, and their lines with them: the feed has them all.
        output.events = feed.await.unwrap_or_default();
        output.landed = landed;
        if let Some(reset) = pause::limited(&output.events) {
            let until = self.pause.until_reset(reset, jiff::Timestamp::now());
            tracing::warn!(%story, %until, "usage limit: this worker takes no story until the reset; the story goes back to Restate");
            // Wherever it goes on, its steps' files are on its branch.
            tree.remove().await;
            return Err(paused(&story, until));
        }
        tree.remove().await;
        Ok(Json(output))
    }
}

/// Lands the story, done by `output`'s loop: its last step's commit, on its branch, through
/// the project's lane (a journaled call).
async fn land(
    ctx: &WorkflowContext<'_>,
    tree: &steps::Tree,
    story: &str,
    project: &str,
    output: &StoryOutput,
) -> Result<Outcome, HandlerError> {
    let end = ctx
        .run(|| async { tree.snapshot("end").await })
        .name("end")
        .await?;
    let title = output
        .events
        .iter()
        .find(|e| e["event"] == "story_started")
        .and_then(|e| e["title"].as_str())
        .unwrap_or_default()
        .to_string();
    let landing = Landing {
        key: ctx.key().to_string(),
        story: story.to_string(),
        title,
        sha: end,
    };
    Ok(ctx
        .object_client::<IntegrationLaneClient<'_>>(project)
        .land(Json(landing))
        .call()
        .await?
        .into_inner())
}

/// A journaled step that changes the story's files, its result the commit it leaves them at:
/// run here, or (replaying) the work tree put back at the journaled commit. Whether it ran here.
async fn tree_step<Fut>(
    ctx: &WorkflowContext<'_>,
    tree: &steps::Tree,
    name: &str,
    step: impl FnOnce() -> Fut + Send,
) -> Result<bool, HandlerError>
where
    Fut: std::future::Future<Output = Result<String, HandlerError>> + Send,
{
    let ran = AtomicBool::new(false);
    let flag = &ran;
    let at = ctx
        .run(move || async move {
            flag.store(true, Ordering::Relaxed);
            step().await
        })
        .name(name)
        .await?;
    let ran = ran.load(Ordering::Relaxed);
    if !ran {
        tree.restore(&at).await?;
    }
    Ok(ran)
}

/// What a round of the story's loop works with.
struct Round<'a, 'c> {
    ctx: &'a WorkflowContext<'c>,
    tree: &'a steps::Tree,
    story: &'a str,
    /// Where the loop's lines go (the feed).
    lines: &'a tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
    /// Whether a step ran here (see [`steps::serve`]).
    live: &'a Arc<AtomicBool>,
}

impl StoryWorkflow {
    /// Runs the story's loop once on a thread of its own, its steps journaled by Restate: its
    /// output, with this round's lines.
    async fn round(
        &self,
        round: Round<'_, '_>,
        reopen: Option<Reopen>,
    ) -> Result<StoryOutput, HandlerError> {
        let Round {
            ctx,
            tree,
            story,
            lines,
            live,
        } = round;
        let (interrupt, interrupts) = tokio::sync::watch::channel(Interrupt::None);
        let (requests, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let (done, output) = tokio::sync::oneshot::channel();
        // The round's lines go on to the feed as they come; the round keeps them too.
        let (round_lines, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let onward = lines.clone();
        let kept = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(line) = seen.recv().await {
                kept.push(serde_json::Value::clone(&line));
                let _ = onward.send(line);
            }
            kept
        });
        let spec = Arc::clone(&self.spec);
        let name = story.to_string();
        let marks = Arc::clone(live);
        let work = tree.work().to_path_buf();
        let workflow = ctx.key().to_string();
        std::thread::Builder::new()
            .name(format!("story {story}"))
            .spawn(move || {
                let steps = steps::EngineSteps::new(requests, &workflow);
                let ui = Ui::lines_for_engine(round_lines, marks);
                let _ = done.send(drive(&spec, &work, &name, steps, interrupts, ui, reopen));
            })
            .map_err(|e| TerminalError::new(format!("cannot start the story's thread: {e}")))?;
        let key = ctx.key().to_string();
        let lease = steps::Lease {
            leases: &self.leases,
            key: &key,
            interrupt: &interrupt,
        };
        let served = steps::serve(ctx, tree, &lease, live, &mut incoming).await;
        // The loop's next request fails now (it stops), and this worker takes no other story
        // until it has.
        drop(incoming);
        let output = output.await;
        served?;
        let mut output = output
            .map_err(|_| TerminalError::new("the story's run loop ended without a result"))?;
        // The loop's thread is gone, and its lines with it.
        output.events = kept.await.unwrap_or_default();
        Ok(output)
    }
}

/// What the loop is told when the lane refused the story: why, and Dev's findings.
#[derive(Debug)]
struct Reopen {
    why: String,
    findings: Vec<String>,
}

/// The retryable error of a story this worker will not drive before `until`: Restate retries
/// it, on another worker when there is one.
fn paused(story: &str, until: jiff::Timestamp) -> HandlerError {
    HandlerError::from(std::io::Error::other(format!(
        "story {story}: this worker's Claude account is at its usage limit until {until}; the story goes on on another worker, or here after the reset"
    )))
}

/// Runs the loop for `story` in `work` on this thread, its steps in `steps`, its events sent by
/// `ui`.
fn drive(
    spec: &WorkerSpec,
    work: &std::path::Path,
    story: &str,
    steps: steps::EngineSteps,
    interrupts: tokio::sync::watch::Receiver<Interrupt>,
    ui: Ui,
    reopen: Option<Reopen>,
) -> StoryOutput {
    let result = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::error::Error::Runtime)?;
        // The configuration is the worker's clone's (as its operator trusted it); the files
        // are the story's.
        let mut context = spec.context()?;
        context.root = work.to_path_buf();
        // One story: the worker runs it beside its others, not the loop.
        context.config.workflow.jobs.value = 1;
        let plan = Plan::resolve(context, None, Some(story))?;
        let steps = RefCell::new(steps);
        // Each story is a fresh run of the project's journal: what must survive the worker is
        // in Restate's.
        let hosted = Hosted {
            steps: &steps,
            interrupts,
            reopen: reopen.map(|r| (r.why, r.findings)),
        };
        runtime.block_on(crate::run::run_with(plan, ui, true, Some(hosted)))
    })();
    let (exit_code, error) = match result {
        Ok(code) => (code, None),
        Err(e) => (e.exit_code(), Some(Report(&e).to_string())),
    };
    StoryOutput {
        story: story.to_string(),
        exit_code,
        error,
        events: Vec::new(),
        landed: None,
    }
}

impl StoryWorkflow {
    pub(crate) fn new(
        spec: WorkerSpec,
        checkout: Arc<Checkout>,
        slots: usize,
        leases: Leases,
        pause: Arc<Pause>,
    ) -> Self {
        Self {
            spec: Arc::new(spec),
            checkout,
            slots: tokio::sync::Semaphore::new(slots),
            leases,
            pause,
        }
    }
}
