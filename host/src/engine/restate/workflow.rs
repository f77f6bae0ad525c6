//! The story workflow a worker serves: the handler, and the run loop it starts on a thread of
//! its own for the story.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use restate_sdk::prelude::*;

use super::steps;
use super::{StoryInput, StoryOutput, WorkerSpec};
use crate::context::Plan;
use crate::error::Report;
use crate::ui::{Ui, Verbosity};

/// The story workflow a worker serves.
#[derive(Debug)]
pub(crate) struct StoryWorkflow {
    spec: Arc<WorkerSpec>,
    /// One story at a time: the run loop owns the project's files while it drives one.
    one: tokio::sync::Mutex<()>,
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
        let _one = self.one.lock().await;
        let story = input.into_inner().story;
        // The work tree as the workflow found it, or (replaying) as it found it the first time.
        let tree = steps::Tree::new(self.spec.root.clone());
        let ran = AtomicBool::new(false);
        let flag = &ran;
        let tree_ref = &tree;
        let base = ctx
            .run(move || async move {
                flag.store(true, Ordering::Relaxed);
                tree_ref.snapshot("base").await
            })
            .name("base")
            .await?;
        if !ran.load(Ordering::Relaxed) {
            tree.restore(&base).await?;
        }
        let workflow = ctx.key().to_string();
        let (requests, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let (done, output) = tokio::sync::oneshot::channel();
        let spec = Arc::clone(&self.spec);
        let name = story.clone();
        std::thread::Builder::new()
            .name(format!("story {story}"))
            .spawn(move || {
                let steps = steps::EngineSteps::new(requests, &workflow);
                let _ = done.send(drive(&spec, &name, steps));
            })
            .map_err(|e| TerminalError::new(format!("cannot start the story's thread: {e}")))?;
        steps::serve(&ctx, &tree, &mut incoming).await?;
        let output = output
            .await
            .map_err(|_| TerminalError::new("the story's run loop ended without a result"))?;
        Ok(Json(output))
    }
}

/// Runs the loop for `story` on this thread, its steps in `steps`; its events are collected.
fn drive(spec: &WorkerSpec, story: &str, steps: steps::EngineSteps) -> StoryOutput {
    let (lines, mut events) = tokio::sync::mpsc::unbounded_channel();
    let result = (|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::error::Error::Runtime)?;
        let plan = Plan::resolve(spec.context()?, None, Some(story))?;
        let mut ui = Ui::new(true, Verbosity::Quiet);
        ui.send_lines_to(lines);
        let steps = RefCell::new(steps);
        // Each story is a fresh run of the project's journal: what must survive the worker is
        // in Restate's.
        runtime.block_on(crate::run::run_with(plan, ui, true, Some(&steps)))
    })();
    let mut collected = Vec::new();
    while let Ok(line) = events.try_recv() {
        collected.push(line);
    }
    let (exit_code, error) = match result {
        Ok(code) => (code, None),
        Err(e) => (e.exit_code(), Some(Report(&e).to_string())),
    };
    StoryOutput {
        story: story.to_string(),
        exit_code,
        error,
        events: collected,
    }
}

impl StoryWorkflow {
    pub(crate) fn new(spec: WorkerSpec) -> Self {
        Self {
            spec: Arc::new(spec),
            one: tokio::sync::Mutex::new(()),
        }
    }
}
