//! Reading story files and rewriting their status value: only the value's bytes change, the file
//! is replaced atomically, and v6 `sprint-status.yaml` is kept in step.

use std::fmt;
use std::path::{Path, PathBuf};

use super::discover::{Project, StoryEntry};
use super::error::{FileLoc, ProjectError};
use super::fs::{inside, read_inside, write_atomic};
use super::id::StoryId;
use super::sprint::{
    MAX_SPRINT_BYTES, SprintEdit, SprintEntry, SprintStatus, plan_edit, sprint_spelling,
};
use super::text::{clip, line_spans};
use crate::policy::{Layout, StatusSource, StatusValue, StoryState};

/// Story files larger than this are not read (the corpus' 5 MB story is accepted; a story is
/// normally a few KiB).
pub const MAX_STORY_BYTES: u64 = 8 * 1024 * 1024;

/// A story file's content: the exact bytes (for writing) and a lossy UTF-8 text (for the parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoryText {
    /// The file, relative to the project root.
    pub path: PathBuf,
    /// The bytes as on disk.
    pub bytes: Vec<u8>,
    /// The bytes decoded as UTF-8, invalid sequences replaced by U+FFFD (line numbers unchanged).
    pub text: String,
    /// Whether any replacement happened.
    pub lossy: bool,
}

/// How sprint-status fared when a status was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "sprint", rename_all = "kebab-case")]
pub enum SprintSync {
    /// Not a v6 project, or it has no `sprint-status.yaml`.
    NotApplicable,
    /// The key already had the right value.
    InStep {
        /// The key.
        key: String,
        /// Its line.
        line: u32,
        /// Its value.
        value: String,
    },
    /// The key's value was rewritten.
    Updated {
        /// The key.
        key: String,
        /// Its line.
        line: u32,
        /// The old value.
        from: String,
        /// The new value.
        to: String,
    },
    /// Sprint-status was left as it was (the story file was still written).
    NotUpdated {
        /// Why, for the log.
        reason: String,
    },
}

/// What a status write did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Written {
    /// The story file, relative to the project root.
    pub path: PathBuf,
    /// The status line.
    pub line: u32,
    /// The text replaced (the caller's `raw`).
    pub old: String,
    /// The text written in its place.
    pub new: String,
    /// False when the file already said exactly this (nothing written).
    pub changed: bool,
    /// What happened to sprint-status (v6).
    pub sprint: SprintSync,
    /// The drift between the story file and sprint-status found before the write, if any.
    pub drift: Option<Drift>,
}

/// The story file and `sprint-status.yaml` disagree. The story file is the truth: sprint-status
/// is brought into line on the next status write (or by [`Project::sync_sprint_status`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Drift {
    /// The story.
    pub story: StoryId,
    /// The sprint-status key (derived when the file has none).
    pub key: String,
    /// `sprint-status.yaml`, relative to the project root.
    pub sprint_path: PathBuf,
    /// The key's line, when it has one.
    pub line: Option<u32>,
    /// What sprint-status says (`None`: no key for the story).
    pub sprint_value: Option<String>,
    /// What the story file says (its raw status; `None`: no story file).
    pub story_value: Option<String>,
    /// What sprint-status should say according to the story file.
    pub expected: String,
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = FileLoc::new(&self.sprint_path, self.line);
        match &self.sprint_value {
            Some(v) => write!(f, "{at}: story {} is `{v}` in sprint-status", self.story)?,
            None => write!(f, "{at}: story {} has no key in sprint-status", self.story)?,
        }
        match &self.story_value {
            Some(s) => write!(f, " but its story file says `{s}`")?,
            None => write!(f, " but it has no story file yet")?,
        }
        write!(
            f,
            "; the story file wins: sprint-status should say `{}`",
            self.expected
        )
    }
}

/// How a layout spells a canonical state in a story file.
///
/// v4: `Draft|Approved|InProgress|Review|Done|Blocked` (backlog and drafted → `Draft`,
/// changes-requested → `InProgress`). v6 body line: `backlog|ready-for-dev|in-progress|review|
/// done|blocked` (drafted → `ready-for-dev`, changes-requested → `in-progress`). v6 YAML
/// frontmatter (6.12 `bmad-build` specs): the spec vocabulary, the same except backlog → `draft`
/// and review → `in-review`.
pub fn status_spelling(layout: Layout, source: StatusSource, state: StoryState) -> &'static str {
    match layout {
        Layout::V4 => match state {
            StoryState::Backlog | StoryState::Drafted => "Draft",
            StoryState::ReadyForDev => "Approved",
            StoryState::InProgress | StoryState::ChangesRequested => "InProgress",
            StoryState::Review => "Review",
            StoryState::Done => "Done",
            StoryState::Blocked => "Blocked",
        },
        Layout::V6 => match (state, source) {
            (StoryState::Backlog, StatusSource::Frontmatter) => "draft",
            (StoryState::Review, StatusSource::Frontmatter) => "in-review",
            (StoryState::Backlog, _) => "backlog",
            (StoryState::Drafted | StoryState::ReadyForDev, _) => "ready-for-dev",
            (StoryState::InProgress | StoryState::ChangesRequested, _) => "in-progress",
            (StoryState::Review, _) => "review",
            (StoryState::Done, _) => "done",
            (StoryState::Blocked, _) => "blocked",
        },
    }
}

/// Wrappers kept around a new value when the old raw value had them (`"review"` → `"done"`).
const WRAPPERS: [&str; 5] = ["**", "__", "\"", "'", "`"];

fn wrap_like(raw: &str, value: &str) -> String {
    for w in WRAPPERS {
        if raw.len() > 2 * w.len() && raw.starts_with(w) && raw.ends_with(w) {
            return format!("{w}{value}{w}");
        }
    }
    value.to_owned()
}

/// Where `raw` sits in `bytes` on the 1-based `line`: its byte range in the whole file.
fn locate(path: &Path, bytes: &[u8], line: u32, raw: &str) -> Result<(usize, usize), ProjectError> {
    let at = || FileLoc::new(path, Some(line));
    if raw.is_empty() {
        return Err(ProjectError::StatusNotWritable {
            at: at(),
            problem: "there is no status value to replace".to_owned(),
        });
    }
    // Lines end at `\n`, `\r\n` or a lone `\r`, as the status parser counts them.
    let idx = usize::try_from(line).ok().and_then(|l| l.checked_sub(1));
    let spans = line_spans(bytes, true);
    let mut found_text = String::new();
    if let Some(&(start, end)) = idx.and_then(|i| spans.get(i)) {
        let Ok(text) = std::str::from_utf8(&bytes[start..end]) else {
            return Err(ProjectError::StatusNotWritable {
                at: at(),
                problem: "the status line is not valid UTF-8".to_owned(),
            });
        };
        // The value follows its label (`Status:`, `**Status:**`, `status:`): search after the
        // first `status` on the line, then anywhere.
        let label_end = text
            .to_ascii_lowercase()
            .find("status")
            .map(|i| i + "status".len());
        let pos = label_end
            .and_then(|e| text[e..].find(raw).map(|p| p + e))
            .or_else(|| text.find(raw));
        if let Some(p) = pos {
            return Ok((start + p, start + p + raw.len()));
        }
        if raw.ends_with('…') && text.contains(raw.trim_end_matches('…')) {
            return Err(ProjectError::StatusNotWritable {
                at: at(),
                problem: "the status value is too long (the parser shortened it): shorten the status line by hand".to_owned(),
            });
        }
        found_text = clip(text, 120);
    }
    Err(ProjectError::StatusChanged {
        at: at(),
        expected: raw.to_owned(),
        found: found_text,
    })
}

/// What the drift check knows about the story file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileSide<'a> {
    /// No story file: the story is in the backlog.
    NoFile,
    /// The status parsed from the story file.
    Status(&'a StatusValue),
}

pub(crate) fn drift_between(
    id: StoryId,
    key: &str,
    sprint_path: &Path,
    entry: Option<&SprintEntry>,
    file: FileSide<'_>,
) -> Option<Drift> {
    let (expected, story_value) = match file {
        FileSide::NoFile => ("backlog", None),
        FileSide::Status(s) => (sprint_spelling(s.state?)?, Some(s.raw.clone())),
    };
    if entry.is_some_and(|e| e.value == expected) {
        return None;
    }
    // A backlog story that sprint-status does not list yet is not drift.
    if entry.is_none() && matches!(file, FileSide::NoFile) {
        return None;
    }
    Some(Drift {
        story: id,
        key: entry.map_or_else(|| key.to_owned(), |e| e.key.clone()),
        sprint_path: sprint_path.to_owned(),
        line: entry.and_then(|e| e.line),
        sprint_value: entry.map(|e| e.value.clone()),
        story_value,
        expected: expected.to_owned(),
    })
}

impl Project {
    /// The story file's bytes and text. The file is looked for again (SM may have created it since
    /// discovery); missing → [`ProjectError::StoryMissing`]; over [`MAX_STORY_BYTES`] →
    /// [`ProjectError::TooLarge`].
    pub fn read_story(&self, story: &StoryEntry) -> Result<StoryText, ProjectError> {
        self.read_story_with_limit(story, MAX_STORY_BYTES)
    }

    /// [`Project::read_story`] with another size limit.
    pub fn read_story_with_limit(
        &self,
        story: &StoryEntry,
        limit: u64,
    ) -> Result<StoryText, ProjectError> {
        let rel = self
            .locate_story_file(story)
            .ok_or_else(|| ProjectError::StoryMissing {
                id: story.id,
                path: self.abs(&story.path),
            })?;
        let bytes = read_inside(self.root(), &self.abs(&rel), limit, "a story")?;
        let (text, lossy) = match String::from_utf8_lossy(&bytes) {
            std::borrow::Cow::Borrowed(s) => (s.to_owned(), false),
            std::borrow::Cow::Owned(s) => (s, true),
        };
        Ok(StoryText {
            path: rel,
            bytes,
            text,
            lossy,
        })
    }

    /// Rewrites the story's status value: the `raw` text of `current` on `current.line` is
    /// replaced by `new` spelled for the layout (see [`status_spelling`]), keeping quotes, bold
    /// or backticks that wrapped the old value; every other byte stays (BOM, CRLF, no final
    /// newline, the label, text around the value). Trailing notes that were part of `raw`
    /// (`Done - QA gate PASS`) are replaced with it: they described the old state.
    ///
    /// Refuses, writing nothing, when `raw` is no longer on that line (the file changed since it
    /// was read) or the file changes during the write. The story file is written first; for v6,
    /// the story's `sprint-status.yaml` key is then set to the same state (see [`SprintSync`]).
    pub fn write_status(
        &self,
        story: &StoryEntry,
        current: &StatusValue,
        new: StoryState,
    ) -> Result<Written, ProjectError> {
        let rel = self
            .locate_story_file(story)
            .ok_or_else(|| ProjectError::StoryMissing {
                id: story.id,
                path: self.abs(&story.path),
            })?;
        let abs = self.abs(&rel);
        // Nothing is written unless every file the write touches stays inside the project: a
        // sprint-status that leads outside refuses the story's write too.
        self.check_inside(&abs)?;
        if let Some(sprint) = self.sprint_status_path() {
            self.check_inside(&self.abs(sprint))?;
        }
        let bytes = read_inside(self.root(), &abs, MAX_STORY_BYTES, "a story")?;
        let (start, end) = locate(&abs, &bytes, current.line, &current.raw)?;
        let token = wrap_like(
            &current.raw,
            status_spelling(self.layout(), current.source, new),
        );
        let drift = self.fresh_drift(story, FileSide::Status(current));
        let changed = token != current.raw;
        if changed {
            let mut out = Vec::with_capacity(bytes.len() + token.len());
            out.extend_from_slice(&bytes[..start]);
            out.extend_from_slice(token.as_bytes());
            out.extend_from_slice(&bytes[end..]);
            write_atomic(self.root(), &abs, &out, &bytes)?;
            tracing::debug!(story = %story.id, path = %rel.display(), from = %current.raw, to = %token, "status written");
        }
        let sprint = self.sync_sprint_state(story, new);
        Ok(Written {
            path: rel,
            line: current.line,
            old: current.raw.clone(),
            new: token,
            changed,
            sprint,
            drift,
        })
    }

    /// Brings the story's sprint-status key into line with the story file's status (v6; the
    /// story file is the truth). `NotApplicable` for v4; `NotUpdated` when the state is unknown.
    pub fn sync_sprint_status(&self, story: &StoryEntry, file_status: &StatusValue) -> SprintSync {
        match file_status.state {
            Some(state) => self.sync_sprint_state(story, state),
            None => SprintSync::NotUpdated {
                reason: format!(
                    "the story file's status `{}` has no canonical state",
                    file_status.raw
                ),
            },
        }
    }

    /// The drift between the story file and sprint-status as discovered (v6 only). `file_status`
    /// is the parsed status of the story file (`None` when the story has no file or its status
    /// could not be read; an unreadable status is not drift, it is reported on its own).
    pub fn drift(&self, story: &StoryEntry, file_status: Option<&StatusValue>) -> Option<Drift> {
        let sprint = self.sprint_status()?;
        let side = match (self.locate_story_file(story).is_some(), file_status) {
            (false, _) => FileSide::NoFile,
            (true, Some(s)) => FileSide::Status(s),
            (true, None) => return None,
        };
        let key = story
            .sprint_key
            .clone()
            .unwrap_or_else(|| format!("{}-{}", story.id.key_prefix(), story.slug));
        drift_between(
            story.id,
            &key,
            &self.relative(sprint.path()),
            sprint.story(story.id),
            side,
        )
    }

    /// Refuses a project file (absolute) that leads outside the project root.
    fn check_inside(&self, abs: &Path) -> Result<(), ProjectError> {
        inside(self.root(), abs)
    }

    /// Checks that the files the host reads and writes for `story` (its story file, its QA gate
    /// file, the v6 sprint-status) lead nowhere outside the project: an agent or a gate may have
    /// replaced one with a symlink. The first that does is the error.
    pub fn check_story_files(&self, story: &StoryEntry) -> Result<(), ProjectError> {
        if let Some(rel) = self.locate_story_file(story) {
            self.check_inside(&self.abs(&rel))?;
        }
        if let Some(gate) = &story.gate_path {
            self.check_inside(&self.abs(gate))?;
        }
        // The gate file QA actually wrote (any `{epic}.{story}-*.yml`): where it leads, not what
        // it says (reading it could only fail otherwise for reasons this check leaves alone).
        if let Ok(Some(gate)) = self.find_qa_gate(story) {
            self.check_inside(&self.abs(&gate))?;
        }
        if let Some(sprint) = self.sprint_status_path() {
            self.check_inside(&self.abs(sprint))?;
        }
        Ok(())
    }

    /// Drift computed against the sprint-status file as it is now.
    fn fresh_drift(&self, story: &StoryEntry, side: FileSide<'_>) -> Option<Drift> {
        let rel = self.sprint_status_path()?;
        let abs = self.abs(rel);
        let sprint = SprintStatus::load(&abs).ok()?;
        let key = story
            .sprint_key
            .clone()
            .unwrap_or_else(|| format!("{}-{}", story.id.key_prefix(), story.slug));
        drift_between(story.id, &key, rel, sprint.story(story.id), side)
    }

    fn sync_sprint_state(&self, story: &StoryEntry, state: StoryState) -> SprintSync {
        let Some(rel) = self.sprint_status_path() else {
            return SprintSync::NotApplicable;
        };
        let abs = self.abs(rel);
        if !abs.is_file() {
            return SprintSync::NotApplicable;
        }
        let Some(value) = sprint_spelling(state) else {
            return SprintSync::NotUpdated {
                reason: "sprint-status has no `blocked` value (backlog|ready-for-dev|in-progress|review|done): the key is left as it is".to_owned(),
            };
        };
        let result = (|| -> Result<SprintSync, String> {
            let bytes = read_inside(self.root(), &abs, MAX_SPRINT_BYTES, "sprint-status.yaml")
                .map_err(|e| e.to_string())?;
            let (key, edit) = plan_edit(&abs, &bytes, story.id, value)?;
            match edit {
                SprintEdit::Same { line, value } => Ok(SprintSync::InStep { key, line, value }),
                SprintEdit::Change {
                    line,
                    from,
                    bytes: out,
                } => {
                    write_atomic(self.root(), &abs, &out, &bytes).map_err(|e| e.to_string())?;
                    tracing::debug!(story = %story.id, key = %key, from = %from, to = %value, "sprint-status updated");
                    Ok(SprintSync::Updated {
                        key,
                        line,
                        from,
                        to: value.to_owned(),
                    })
                }
            }
        })();
        result.unwrap_or_else(|reason| SprintSync::NotUpdated {
            reason: format!("{}: {reason}", rel.display()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_per_layout() {
        use StatusSource::*;
        use StoryState::*;
        let v4: Vec<&str> = [
            Backlog,
            Drafted,
            ReadyForDev,
            InProgress,
            Review,
            ChangesRequested,
            Done,
            Blocked,
        ]
        .into_iter()
        .map(|s| status_spelling(Layout::V4, Section, s))
        .collect();
        assert_eq!(
            v4,
            [
                "Draft",
                "Draft",
                "Approved",
                "InProgress",
                "Review",
                "InProgress",
                "Done",
                "Blocked"
            ]
        );
        let v6: Vec<&str> = [
            Backlog,
            Drafted,
            ReadyForDev,
            InProgress,
            Review,
            ChangesRequested,
            Done,
            Blocked,
        ]
        .into_iter()
        .map(|s| status_spelling(Layout::V6, Line, s))
        .collect();
        assert_eq!(
            v6,
            [
                "backlog",
                "ready-for-dev",
                "ready-for-dev",
                "in-progress",
                "review",
                "in-progress",
                "done",
                "blocked"
            ]
        );
        assert_eq!(
            status_spelling(Layout::V6, Frontmatter, Review),
            "in-review"
        );
        assert_eq!(status_spelling(Layout::V6, Frontmatter, Backlog), "draft");
        assert_eq!(status_spelling(Layout::V6, Frontmatter, Done), "done");
    }

    #[test]
    fn wrappers_are_kept() {
        assert_eq!(wrap_like("\"review\"", "done"), "\"done\"");
        assert_eq!(wrap_like("'in-review'", "done"), "'done'");
        assert_eq!(wrap_like("`done`", "review"), "`review`");
        assert_eq!(wrap_like("**Done**", "Review"), "**Review**");
        assert_eq!(wrap_like("Done - QA gate PASS", "Review"), "Review");
        assert_eq!(wrap_like("\"", "done"), "done");
    }

    #[test]
    fn locate_finds_the_value_after_the_label() {
        let p = Path::new("s.md");
        let text = b"# Story 1.1: Status page\n\nStatus: Status page done\n";
        let (s, e) = locate(p, text, 3, "Status page done").expect("found");
        assert_eq!(&text[s..e], b"Status page done");
        assert!(s > 30, "the value after the label, not the title: {s}");
        let text = b"\xEF\xBB\xBF# T\r\n## Status\r\n\r\nReview\r\n";
        let (s, e) = locate(p, text, 4, "Review").expect("found");
        assert_eq!(&text[s..e], b"Review");
        let text = b"## Status\rApproved\r";
        let (s, e) = locate(p, text, 2, "Approved").expect("cr-only");
        assert_eq!(&text[s..e], b"Approved");
        let err = locate(p, b"Status: done\n", 1, "review").expect_err("changed");
        assert!(err.to_string().contains("s.md:1: the story changed since it was read: `review` is no longer on this line (it reads `Status: done`)"), "{err}");
        let err = locate(p, b"Status: done\n", 9, "done").expect_err("past the end");
        assert!(matches!(err, ProjectError::StatusChanged { .. }));
    }
}
