//! The built-in status parser: the same code as the `status` plugin (crate `bmad-status`),
//! linked natively. `status` uses it when no `--plugins` folder is given, so that listing
//! stories needs no WebAssembly engine; `run` (and `run --dry-run`) always use the component,
//! the embedded one or a folder's. Both give the same outcome for every document (the status
//! crate's corpus tests run the same code natively; the `embedded` integration tests compare
//! `status` with and without a plugins folder).

use bmad_status as native;

use crate::policy::{MissingReason, ParseOutcome, StatusSource, StatusValue, StoryState};

/// Parses a story document's status, with the same result the status component gives.
pub fn parse_status(document: &str) -> ParseOutcome {
    match native::parse(document) {
        native::Parse::Found(v) => ParseOutcome::Found(value(v)),
        native::Parse::Doubtful(v) => ParseOutcome::Doubtful(value(v)),
        native::Parse::Conflict(vs) => ParseOutcome::Conflict(vs.into_iter().map(value).collect()),
        native::Parse::Missing(reason) => ParseOutcome::Missing(match reason {
            native::MissingReason::EmptyFile => MissingReason::EmptyFile,
            native::MissingReason::NotText => MissingReason::NotText,
            native::MissingReason::NoStatus => MissingReason::NoStatus,
            native::MissingReason::EmptyValue(line) => MissingReason::EmptyValue(line),
        }),
    }
}

fn value(v: native::StatusValue) -> StatusValue {
    StatusValue {
        raw: v.raw,
        line: v.line,
        source: match v.source {
            native::Source::Section => StatusSource::Section,
            native::Source::Line => StatusSource::Line,
            native::Source::Frontmatter => StatusSource::Frontmatter,
        },
        state: v.state.map(state),
    }
}

/// The WIT state for a native one.
pub fn state(s: native::StoryState) -> StoryState {
    match s {
        native::StoryState::Backlog => StoryState::Backlog,
        native::StoryState::Drafted => StoryState::Drafted,
        native::StoryState::ReadyForDev => StoryState::ReadyForDev,
        native::StoryState::InProgress => StoryState::InProgress,
        native::StoryState::Review => StoryState::Review,
        native::StoryState::ChangesRequested => StoryState::ChangesRequested,
        native::StoryState::Done => StoryState::Done,
        native::StoryState::Blocked => StoryState::Blocked,
    }
}
