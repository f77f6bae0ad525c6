//! Deterministic BMAD story status parser.
//!
//! Reads the status of a BMAD v4 or v6 story document without guessing: a `## Status` section
//! (any heading level, value on the heading line or on the first non-empty line below it), a
//! `Status: value` line (plain or bold label), or a YAML frontmatter `status:` key. Code fences,
//! HTML comments and tables are never read. Every value is mapped onto the canonical
//! [`StoryState`]s by an exact vocabulary lookup (no prefix matching); legacy or unknown wording
//! comes out as [`Parse::Doubtful`], disagreeing values as [`Parse::Conflict`].
//!
//! The same code is the native library (the host's built-in fallback, benchmarks, fuzzing) and,
//! on `wasm32`, the `status-parser` component (`parse` export of `bmad:policy`). Scanning is a
//! single linear pass over the lines; there are no regular expressions.

mod decode;
#[cfg(target_arch = "wasm32")]
mod guest;
mod scan;
mod swar;
mod vocab;

use std::ops::Range;

pub use vocab::{Mapping, map_value};

/// The canonical story states (mirror of the WIT `story-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoryState {
    /// Not drafted yet (v6 `backlog`, or no story file at all).
    Backlog,
    /// Drafted but not approved (v4 `Draft`).
    Drafted,
    /// Approved, ready for development (v4 `Approved`, v6 `ready-for-dev`).
    ReadyForDev,
    /// Development under way (v4 `InProgress`, v6 `in-progress`).
    InProgress,
    /// Waiting for review (v4 `Review` / `Ready for Review`, v6 `review`).
    Review,
    /// Review sent the story back to development.
    ChangesRequested,
    /// Finished.
    Done,
    /// Blocked: needs a person.
    Blocked,
}

impl StoryState {
    /// Every state, in workflow order.
    pub const ALL: [StoryState; 8] = [
        StoryState::Backlog,
        StoryState::Drafted,
        StoryState::ReadyForDev,
        StoryState::InProgress,
        StoryState::Review,
        StoryState::ChangesRequested,
        StoryState::Done,
        StoryState::Blocked,
    ];

    /// The WIT (kebab-case) name: `ready-for-dev`, `changes-requested`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            StoryState::Backlog => "backlog",
            StoryState::Drafted => "drafted",
            StoryState::ReadyForDev => "ready-for-dev",
            StoryState::InProgress => "in-progress",
            StoryState::Review => "review",
            StoryState::ChangesRequested => "changes-requested",
            StoryState::Done => "done",
            StoryState::Blocked => "blocked",
        }
    }

    /// The state with this WIT (kebab-case) name, if any.
    pub fn from_name(name: &str) -> Option<StoryState> {
        StoryState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for StoryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a status value was read (mirror of the WIT `status-source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A `## Status` section (any heading level; the value may sit on the heading line).
    Section,
    /// A `Status: value` line in the body.
    Line,
    /// YAML frontmatter `status:`.
    Frontmatter,
}

/// One status value as written in the document (mirror of the WIT `status-value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusValue {
    /// The value as written: trimmed (Unicode and zero-width spaces too), without label, bold
    /// markers, HTML comments or YAML quotes. At most [`MAX_RAW_BYTES`] bytes (cut on a char
    /// boundary, then `…` appended).
    pub raw: String,
    /// 1-based line number of the value (`\n`, `\r\n` and a lone `\r` each end a line).
    pub line: u32,
    pub source: Source,
    /// The canonical state, if the value maps to one.
    pub state: Option<StoryState>,
    /// Byte range of the untruncated value in the text that was parsed (for [`parse_bytes`], the
    /// lossily decoded text; it equals the input when the input is valid UTF-8). Not part of the
    /// WIT record: it lets a writer replace exactly the value and leave every other byte alone.
    pub span: Range<usize>,
}

/// Why no status could be read (mirror of the WIT `missing-reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingReason {
    /// The document is empty or only whitespace.
    EmptyFile,
    /// The document is not text (NUL bytes, mostly invalid UTF-8 or control characters).
    NotText,
    /// No status section, line or frontmatter key anywhere.
    NoStatus,
    /// A status heading or label with no value (its 1-based line).
    EmptyValue(u32),
}

/// The result of parsing a story document's status (mirror of the WIT `parse-outcome`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// One value, mapped with confidence.
    Found(StatusValue),
    /// One value whose mapping is a guess (legacy or unknown wording; `state` may be `None`).
    Doubtful(StatusValue),
    /// Several status values disagree (in document order, at most [`MAX_CONFLICT_VALUES`]).
    Conflict(Vec<StatusValue>),
    /// No usable status.
    Missing(MissingReason),
}

impl Parse {
    /// The state to act on: only a [`Parse::Found`] value's state.
    pub fn state(&self) -> Option<StoryState> {
        match self {
            Parse::Found(v) => v.state,
            _ => None,
        }
    }

    /// The single value read, found or doubtful.
    pub fn value(&self) -> Option<&StatusValue> {
        match self {
            Parse::Found(v) | Parse::Doubtful(v) => Some(v),
            _ => None,
        }
    }
}

/// The BMAD project layout a status is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `.bmad-core/` (BMAD 4.x): `Draft`, `Approved`, `InProgress`, `Review`, `Done`.
    V4,
    /// `_bmad/` (BMAD 6.x): `backlog`, `ready-for-dev`, `in-progress`, `review`, `done`.
    V6,
}

/// Longest `raw` kept in a [`StatusValue`], in bytes (before the `…`).
pub const MAX_RAW_BYTES: usize = 512;

/// Most values listed in a [`Parse::Conflict`].
pub const MAX_CONFLICT_VALUES: usize = 16;

/// Parses the status of a story document. A document whose first 64 KiB hold a NUL or look
/// binary is [`MissingReason::NotText`]; an empty or whitespace-only one
/// [`MissingReason::EmptyFile`].
pub fn parse(doc: &str) -> Parse {
    if let Some(reason) = decode::check_text(doc) {
        return Parse::Missing(reason);
    }
    scan::parse_text(doc)
}

/// Parses the status of a story file's bytes: empty or whitespace-only input is
/// [`MissingReason::EmptyFile`], NUL bytes or mostly invalid UTF-8 are [`MissingReason::NotText`]
/// (judged on the first 64 KiB, like [`parse`]), a few invalid sequences are decoded lossily
/// (U+FFFD).
pub fn parse_bytes(bytes: &[u8]) -> Parse {
    if decode::has_nul(&bytes[..bytes.len().min(decode::BINARY_CHECK_BYTES)]) {
        return Parse::Missing(MissingReason::NotText);
    }
    parse(&String::from_utf8_lossy(bytes))
}

/// Every status value in the document, in document order, before any conflict resolution
/// (including a nested `### Status` that [`parse`] ignores when a top-level one exists). Empty
/// for a document that is not text. For writers that must update every place a status is written.
pub fn candidates(doc: &str) -> Vec<StatusValue> {
    if decode::check_text(doc).is_some() {
        return Vec::new();
    }
    scan::scan(doc).all_values()
}

/// The text to write for `state` in a story of the given layout.
///
/// v4: `Draft`, `Approved`, `InProgress`, `Review`, `Done`, `Blocked` (`changes-requested` is
/// written `InProgress`, `backlog` `Draft`). v6: `backlog`, `ready-for-dev`, `in-progress`,
/// `review`, `done`, `blocked` (`drafted` is written `ready-for-dev`, `changes-requested`
/// `in-progress`).
pub fn spelling(state: StoryState, layout: Layout) -> &'static str {
    match layout {
        Layout::V4 => match state {
            StoryState::Backlog | StoryState::Drafted => "Draft",
            StoryState::ReadyForDev => "Approved",
            StoryState::InProgress | StoryState::ChangesRequested => "InProgress",
            StoryState::Review => "Review",
            StoryState::Done => "Done",
            StoryState::Blocked => "Blocked",
        },
        Layout::V6 => match state {
            StoryState::Backlog => "backlog",
            StoryState::Drafted | StoryState::ReadyForDev => "ready-for-dev",
            StoryState::InProgress | StoryState::ChangesRequested => "in-progress",
            StoryState::Review => "review",
            StoryState::Done => "done",
            StoryState::Blocked => "blocked",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_round_trip_through_the_parser() {
        for layout in [Layout::V4, Layout::V6] {
            for state in StoryState::ALL {
                let written = spelling(state, layout);
                let expected = match (state, layout) {
                    (StoryState::ChangesRequested, _) => StoryState::InProgress,
                    (StoryState::Drafted, Layout::V6) => StoryState::ReadyForDev,
                    (StoryState::Backlog, Layout::V4) => StoryState::Drafted,
                    _ => state,
                };
                let doc = format!("# Story 1.1: T\n\n## Status\n\n{written}\n");
                assert_eq!(parse(&doc).state(), Some(expected), "{layout:?} {state}");
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for state in StoryState::ALL {
            assert_eq!(StoryState::from_name(state.as_str()), Some(state));
        }
        assert_eq!(StoryState::from_name("Done"), None);
    }

    #[test]
    fn value_span_points_into_the_document() {
        let doc = "# S\n\nStatus: **review**\n";
        let Parse::Found(v) = parse(doc) else {
            panic!("expected found");
        };
        assert_eq!(&doc[v.span.clone()], "review");
        assert_eq!(v.line, 3);
        assert_eq!(v.source, Source::Line);
    }

    #[test]
    fn bytes_with_nul_are_not_text() {
        assert_eq!(
            parse_bytes(b"## Status\n\nDone\n\0"),
            Parse::Missing(MissingReason::NotText)
        );
    }
}
