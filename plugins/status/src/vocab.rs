//! The status vocabulary: maps a written value onto a canonical [`StoryState`].
//!
//! A value is reduced to its head (the text before a trailing note: ` - `, `(`, `[`, `:`, `;`,
//! `,`, `. `, an en or em dash), then to a key of its lowercased letters and digits only, so
//! `In Progress`, `InProgress`, `in-progress`, `` `in-progress` `` and `✅ in_progress` share
//! the key `inprogress`. The key is looked up exactly: there is no prefix or fuzzy matching, so
//! a truncated `Rev` is unknown.

use crate::StoryState;

/// How a written value maps onto a canonical state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// A BMAD v4 or v6 value (or a wording BMAD's own tasks write, like `Ready for Review`).
    Known(StoryState),
    /// Legacy or synonym wording: the likely state, to be reported rather than acted upon.
    Guess(StoryState),
    /// Not a status this parser knows.
    Unknown,
}

impl Mapping {
    /// The state, known or guessed.
    pub fn state(self) -> Option<StoryState> {
        match self {
            Mapping::Known(s) | Mapping::Guess(s) => Some(s),
            Mapping::Unknown => None,
        }
    }
}

/// Longest head considered; no status wording is longer.
const MAX_HEAD_CHARS: usize = 64;

/// Maps a raw status value (as in [`crate::StatusValue::raw`]) onto a canonical state.
pub fn map_value(raw: &str) -> Mapping {
    let head = head(raw);
    let mut key = String::new();
    for c in head.chars().take(MAX_HEAD_CHARS + 1) {
        if c.is_alphanumeric() {
            key.extend(c.to_lowercase());
        }
    }
    if head.chars().nth(MAX_HEAD_CHARS).is_some() {
        return Mapping::Unknown;
    }
    lookup(&key)
}

/// The value before its trailing note.
fn head(raw: &str) -> &str {
    const CUTS: [&str; 11] = [
        " - ", " -- ", "(", "[", ":", ";", ",", ". ", "|", "\u{2013}", "\u{2014}",
    ];
    let end = CUTS
        .iter()
        .filter_map(|cut| raw.find(cut))
        .min()
        .unwrap_or(raw.len());
    &raw[..end]
}

fn lookup(key: &str) -> Mapping {
    use Mapping::{Guess, Known, Unknown};
    use StoryState::*;
    match key {
        "backlog" => Known(Backlog),
        // v4 template choice; v6.12 bmad-build spec vocabulary.
        "draft" => Known(Drafted),
        // v6 alpha create-story wrote `drafted`; sprint_plan.py's LEGACY_STATUS maps it to
        // ready-for-dev (v6 has no unapproved-draft state).
        "drafted" => Known(ReadyForDev),
        "approved" | "readyfordev" | "readyfordevelopment" => Known(ReadyForDev),
        "inprogress" => Known(InProgress),
        // `Ready for Review` is what v4 dev.md writes; `Ready for Done` what apply-qa-fixes
        // writes after a PASS; `in-review` the v6.12 bmad-build spelling.
        "review" | "readyforreview" | "inreview" | "readyfordone" => Known(Review),
        "changesrequested" => Known(ChangesRequested),
        "done" => Known(Done),
        "blocked" => Known(Blocked),
        "completed" | "complete" => Guess(Done),
        // review-story.md's recommended wording before the owner moves the status.
        "changesrequired" => Guess(InProgress),
        // A legacy v6 epic status; sprint_plan.py normalises it to in-progress.
        "contexted" => Guess(InProgress),
        "wip" | "started" => Guess(InProgress),
        "readyforqa" => Guess(Review),
        _ => Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StoryState::*;

    #[test]
    fn spellings_and_notes_map_exactly() {
        let cases = [
            ("In Progress", Mapping::Known(InProgress)),
            ("in_progress", Mapping::Known(InProgress)),
            ("`done`", Mapping::Known(Done)),
            ("\"review\"", Mapping::Known(Review)),
            ("✅ Done", Mapping::Known(Done)),
            ("done ✅", Mapping::Known(Done)),
            ("Done - QA gate PASS (2025-09-20)", Mapping::Known(Done)),
            (
                "Review (awaiting QA re-run after fixes)",
                Mapping::Known(Review),
            ),
            ("Done — shipped", Mapping::Known(Done)),
            ("Ready for Done", Mapping::Known(Review)),
            ("Completed", Mapping::Guess(Done)),
            ("Changes Required", Mapping::Guess(InProgress)),
            ("Rev", Mapping::Unknown),
            ("Don", Mapping::Unknown),
            ("Not done", Mapping::Unknown),
            ("1-2-user-registration", Mapping::Unknown),
            ("awaiting-operator", Mapping::Unknown),
            ("", Mapping::Unknown),
        ];
        for (raw, want) in cases {
            assert_eq!(map_value(raw), want, "{raw:?}");
        }
    }

    #[test]
    fn long_heads_are_unknown() {
        let long = format!("done{}", "e".repeat(200));
        assert_eq!(map_value(&long), Mapping::Unknown);
    }
}
