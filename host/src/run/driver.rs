//! What drives the stories: the run's shared state ([`Driver`], whose methods the other rooms
//! of the run loop define), and the context and state of one role's step.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use tokio::sync::watch;

use super::summary::Tally;
use crate::config::Config;
use crate::journal::{Journal, RunId, StepStore};
use crate::plugins::{PluginSet, PolicySession};
use crate::policy::{Role, Story};
use crate::process::Interrupt;
use crate::project::{Project, StoryEntry};
use crate::ui::Ui;
use crate::workflow;

/// Drives the run's stories, one at a time, with everything a step needs. A parallel run
/// (`--jobs N`) has one per lane, each over its story's worktree; the journal and the Ui are
/// shared, each borrowed (the Ui locked) only between two awaits (the lanes are futures on one thread).
pub(super) struct Driver<'a> {
    /// Where the stories are worked on: the project root, or a lane's worktree.
    pub root: &'a Path,
    /// The project's own root, where `.bmad-host/` (journal, transcripts) is.
    pub state: &'a Path,
    /// The project as found at `root`.
    pub project: &'a Project,
    pub config: &'a Config,
    pub plugins: &'a PluginSet,
    pub journal: &'a RefCell<Journal>,
    /// Where the steps are journaled: `journal` itself, or a durable-execution engine's.
    pub steps: &'a RefCell<dyn StepStore + 'a>,
    pub run: RunId,
    pub ui: &'a std::sync::Mutex<Ui>,
    pub interrupts: watch::Receiver<Interrupt>,
    /// Set when a run spend cap stopped a story: why. The run stops after that story.
    pub capped: Option<String>,
    /// The lane (1-based) in a parallel run, carried by its events; `None` with one job.
    pub lane: Option<u32>,
    /// Where the CLI's temp files go (`CLAUDE_CODE_TMPDIR`), emptied after each call: one
    /// folder per lane.
    pub tmp: PathBuf,
}

impl Driver<'_> {
    /// Publishes `event` (with the lane, in a parallel run).
    pub fn emit(&self, event: crate::ui::Event) {
        self.ui().emit_in(self.lane, event);
    }

    /// A line for people.
    pub fn say(&self, line: &str) {
        self.ui().say(line);
    }

    /// The Ui, for one call (never held across an await). A Mutex rather than a `RefCell`:
    /// the supervisor's callbacks, which use it, must be `Send`.
    pub fn ui(&self) -> std::sync::MutexGuard<'_, Ui> {
        self.ui
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One role's step in progress: whose it is, its policy instance, and the story as the policy
/// sees it.
pub(super) struct RoleStep<'s> {
    pub ctx: StepCtx<'s>,
    pub story: Story,
    pub session: PolicySession,
    /// The story's totals, which agent calls add to.
    pub tally: &'s mut Tally,
}

/// Whose step it is: the story, its cycle and the role running it. Every journaled step of one
/// role step has the key this context gives with the decision's sequence number.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepCtx<'a> {
    pub entry: &'a StoryEntry,
    /// The story's id as text (`1.2`).
    pub story: &'a str,
    pub cycle: u32,
    pub role: Role,
}

impl StepCtx<'_> {
    /// The role's name, as in the journal, the events and `BMAD_HOST_ROLE`.
    pub fn role_name(&self) -> &'static str {
        workflow::role_name(self.role)
    }
}
