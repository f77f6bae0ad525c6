//! What drives the stories: the run's shared state ([`Driver`], whose methods the other rooms
//! of the run loop define), and the context and state of one role's step.

use std::path::Path;

use tokio::sync::watch;

use super::summary::Tally;
use crate::config::Config;
use crate::journal::{Journal, RunId};
use crate::plugins::{PluginSet, PolicySession};
use crate::policy::{Role, Story};
use crate::process::Interrupt;
use crate::project::{Project, StoryEntry};
use crate::ui::Ui;
use crate::workflow;

/// Drives the run's stories, one at a time, with everything a step needs.
pub(super) struct Driver<'a> {
    pub root: &'a Path,
    pub project: &'a Project,
    pub config: &'a Config,
    pub plugins: &'a PluginSet,
    pub journal: &'a mut Journal,
    pub run: RunId,
    pub ui: &'a mut Ui,
    pub interrupts: watch::Receiver<Interrupt>,
    /// Set when a run spend cap stopped a story: why. The run stops after that story.
    pub capped: Option<String>,
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
