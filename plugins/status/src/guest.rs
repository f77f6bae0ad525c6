//! The `status-parser` component: the WIT `parse` export over the native parser, through the
//! policy SDK. The native library keeps its own richer types (a value's byte span, for the host's
//! writer); this module is the one translation from them to the WIT's.

use bmad_policy::StatusParser;
use bmad_policy::types::{
    MissingReason as WitMissing, ParseOutcome, StatusSource, StatusValue as WitValue,
    StoryState as WitState,
};

/// The `status` plugin.
struct Component;

impl StatusParser for Component {
    fn parse(document: &str) -> ParseOutcome {
        match crate::parse(document) {
            crate::Parse::Found(v) => ParseOutcome::Found(value(v)),
            crate::Parse::Doubtful(v) => ParseOutcome::Doubtful(value(v)),
            crate::Parse::Conflict(vs) => {
                ParseOutcome::Conflict(vs.into_iter().map(value).collect())
            }
            crate::Parse::Missing(reason) => ParseOutcome::Missing(match reason {
                crate::MissingReason::EmptyFile => WitMissing::EmptyFile,
                crate::MissingReason::NotText => WitMissing::NotText,
                crate::MissingReason::NoStatus => WitMissing::NoStatus,
                crate::MissingReason::EmptyValue(line) => WitMissing::EmptyValue(line),
            }),
        }
    }
}

fn value(v: crate::StatusValue) -> WitValue {
    WitValue {
        raw: v.raw,
        line: v.line,
        source: match v.source {
            crate::Source::Section => StatusSource::Section,
            crate::Source::Line => StatusSource::Line,
            crate::Source::Frontmatter => StatusSource::Frontmatter,
        },
        state: v.state.map(state),
    }
}

fn state(s: crate::StoryState) -> WitState {
    match s {
        crate::StoryState::Backlog => WitState::Backlog,
        crate::StoryState::Drafted => WitState::Drafted,
        crate::StoryState::ReadyForDev => WitState::ReadyForDev,
        crate::StoryState::InProgress => WitState::InProgress,
        crate::StoryState::Review => WitState::Review,
        crate::StoryState::ChangesRequested => WitState::ChangesRequested,
        crate::StoryState::Done => WitState::Done,
        crate::StoryState::Blocked => WitState::Blocked,
    }
}

bmad_policy::export_status_parser!(Component);
