//! `bmad-host run`: resolves the [`Plan`], then either shows it (`--dry-run`, see
//! [`super::plan`]) or hands it to [`crate::run`] on a Tokio runtime.

use crate::context::{Context, Plan};
use crate::error::Error;
use crate::ui::Ui;

/// Runs (or, with `dry_run`, shows) the selected stories.
pub(super) fn run(
    context: Context,
    epic: Option<u32>,
    story: Option<&str>,
    dry_run: bool,
    fresh: bool,
) -> Result<u8, Error> {
    let plan = Plan::resolve(context, epic, story)?;
    let mut ui = Ui::new(plan.context.json, plan.context.verbosity);
    if dry_run {
        return super::plan::print(&plan, &mut ui);
    }
    // One thread: the run loop is sequential, and on this thread it polls the I/O and timers it
    // waits for itself. A multi-threaded runtime woke a worker for each of the agent's lines and
    // its exit, which then woke this thread (two context switches per event, and more threads
    // whose children files every process-tree scan reads). Blocking work (pidfd waits) still
    // goes to Tokio's blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(crate::run::run(plan, ui, fresh))
}
