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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(crate::run::run(plan, ui, fresh))
}
