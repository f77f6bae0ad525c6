//! `bmad-host report`'s engine: one self-contained HTML page of a run, read from the journal
//! through its public queries (never its SQL), for people to take in a run at a glance.
//!
//! [`model`] turns the journal's rows into a typed view of the run (stories, their agent calls,
//! gates, rounds of findings, spend per role, totals); [`swimlane`] draws a story's steps as an
//! SVG timeline, one row per role; [`page`] writes the page, with [`figures`] for how times and numbers read; [`escape`] is the one way any text
//! from the project or the agents reaches the page; [`links`] makes the transcript links
//! relative to the page. Reading takes no lock and writes nothing: a report of a live run is a
//! consistent snapshot of what the journal holds when it is read.

mod escape;
mod figures;
mod links;
mod model;
mod page;
mod swimlane;

use std::path::{Path, PathBuf};

pub use model::{
    Attempt, HostState, Item, ItemKind, ItemState, Lane, RoleSpend, Round, RunView, StoryView,
    Totals,
};

use crate::journal::{JournalError, JournalReader, RunId};

/// What can stop a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The journal cannot be read.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The project has no journal: nothing ran there.
    #[error(
        "no journal at {}: nothing has run in this project yet; run `bmad-host run` first (or \
         pass --project DIR)",
        path.display()
    )]
    NoJournal {
        /// Where the journal would be.
        path: PathBuf,
    },
    /// The journal has no run.
    #[error("the journal {} has no run yet; run `bmad-host run` first", path.display())]
    NoRun {
        /// The journal file.
        path: PathBuf,
    },
    /// `--run ID` names no run of the journal.
    #[error(
        "no run {run} in the journal {}: the runs are {known}; pass one of them to --run, or \
         leave --run out for the latest",
        path.display()
    )]
    UnknownRun {
        /// The id asked for.
        run: RunId,
        /// The journal file.
        path: PathBuf,
        /// The runs it has, newest first (at most a few).
        known: String,
    },
}

/// The HTML page of `run` (default: the latest run) of the journal `reader` of the project at
/// `root`, for a page written at `page_path` (transcript links are made relative to its folder).
pub fn render(
    reader: &JournalReader,
    root: &Path,
    run: Option<&RunId>,
    page_path: &Path,
) -> Result<(RunId, String), ReportError> {
    let view = model::read(reader, root, run)?;
    let base = page_path.parent().unwrap_or(Path::new("."));
    let html = page::write(&view, &|path: &Path| links::href(base, path));
    Ok((view.id.clone(), html))
}
