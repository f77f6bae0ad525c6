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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Layout;
    use crate::project::status_spelling;

    /// A `bmad-build` spec (6.11+) with its frontmatter `status:`.
    fn spec(status: &str) -> String {
        format!(
            "---\ntitle: 'User Registration'\ntype: 'feature'\nstatus: {status}\nroute: ''\n---\n\n# User Registration\n\n## Intent\n"
        )
    }

    #[test]
    fn every_build_spec_status_parses_from_the_frontmatter() {
        let cases = [
            ("'draft'", StoryState::Drafted),
            ("'ready-for-dev'", StoryState::ReadyForDev),
            ("'in-progress'", StoryState::InProgress),
            ("'in-review'", StoryState::Review),
            ("in-review", StoryState::Review),
            ("\"done\"", StoryState::Done),
            ("'blocked'", StoryState::Blocked),
        ];
        for (written, state) in cases {
            match parse_status(&spec(written)) {
                ParseOutcome::Found(v) => {
                    assert_eq!(v.state, Some(state), "{written}");
                    assert_eq!(v.source, StatusSource::Frontmatter, "{written}");
                    assert_eq!(v.line, 4, "{written}");
                }
                other => panic!("{written}: {other:?}"),
            }
        }
    }

    #[test]
    fn what_the_host_writes_into_a_spec_reads_back_as_the_same_state() {
        for state in crate::policy::ALL_STATES {
            let word = status_spelling(Layout::V6, StatusSource::Frontmatter, state);
            let ParseOutcome::Found(v) = parse_status(&spec(&format!("'{word}'"))) else {
                panic!("{word} does not parse");
            };
            // The spec vocabulary has no drafted or changes-requested: they are written as
            // what they mean for a spec (`ready-for-dev`, `in-progress`).
            let expected = match state {
                StoryState::Backlog => StoryState::Drafted,
                StoryState::Drafted => StoryState::ReadyForDev,
                StoryState::ChangesRequested => StoryState::InProgress,
                s => s,
            };
            assert_eq!(v.state, Some(expected), "{word}");
        }
    }
}
