//! v6 `sprint-status.yaml`: a tolerant reader of `development_status` and a one-line editor that
//! keeps every other byte (comments, order, quoting, line endings).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{FileLoc, ProjectError, Warning};
use super::fs::read_capped;
use super::id::StoryId;
use super::text::line_spans;
use crate::policy::StoryState;

/// `sprint-status.yaml` larger than this is refused (a big one is a few KiB).
pub(crate) const MAX_SPRINT_BYTES: u64 = 1024 * 1024;

const FIX_YAML: &str = "fix the YAML (spaces not tabs, closed quotes) or regenerate the file with the sprint-planning workflow";
const FIX_REGENERATE: &str =
    "run the sprint-planning workflow (bmad-sprint-planning) to generate it";

/// The story values sprint-status allows, in workflow order.
pub const STORY_VALUES: [&str; 5] = ["backlog", "ready-for-dev", "in-progress", "review", "done"];

/// What a `development_status` key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SprintKey {
    /// `epic-N`.
    Epic(u32),
    /// `N-M-slug` (or `N-M` without a slug, tolerated).
    Story {
        /// The story id.
        id: StoryId,
        /// The slug after the id, if any.
        slug: Option<String>,
    },
    /// `epic-N-retrospective`.
    Retrospective(u32),
    /// Anything else (ignored).
    Other,
}

impl SprintKey {
    /// Classifies a key. `1-10-x` is story 1.10, never 1.1.
    pub fn classify(key: &str) -> SprintKey {
        if let Some(rest) = key.strip_prefix("epic-") {
            if let Some(n) = rest.strip_suffix("-retrospective").and_then(parse_num) {
                return SprintKey::Retrospective(n);
            }
            if let Some(n) = parse_num(rest) {
                return SprintKey::Epic(n);
            }
            return SprintKey::Other;
        }
        match StoryId::parse_prefix(key) {
            // Sprint keys always use the dash form.
            Some((id, used)) if key.bytes().find(|b| matches!(b, b'.' | b'-')) == Some(b'-') => {
                let rest = &key[used..];
                if rest.is_empty() {
                    SprintKey::Story { id, slug: None }
                } else if let Some(slug) = rest.strip_prefix('-').filter(|s| !s.is_empty()) {
                    SprintKey::Story {
                        id,
                        slug: Some(slug.to_owned()),
                    }
                } else {
                    SprintKey::Other
                }
            }
            _ => SprintKey::Other,
        }
    }
}

fn parse_num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The canonical state of a sprint-status story value. Exact values map directly; a different
/// case (`Done`) and the legacy `drafted` / `contexted` map with a warning; anything else is
/// `None` (unknown).
pub fn sprint_value_state(value: &str) -> (Option<StoryState>, bool) {
    if let Some(state) = sprint_value_state_exact(value) {
        return (Some(state), true);
    }
    let lower = value.trim().to_ascii_lowercase();
    let loose = match lower.as_str() {
        "drafted" => Some(StoryState::ReadyForDev),
        "contexted" => Some(StoryState::InProgress),
        other => sprint_value_state_exact(other),
    };
    (loose, false)
}

fn sprint_value_state_exact(v: &str) -> Option<StoryState> {
    match v {
        "backlog" => Some(StoryState::Backlog),
        "ready-for-dev" => Some(StoryState::ReadyForDev),
        "in-progress" => Some(StoryState::InProgress),
        "review" => Some(StoryState::Review),
        "done" => Some(StoryState::Done),
        _ => None,
    }
}

/// How sprint-status spells a canonical state; `None` for `blocked`, which sprint-status has no
/// value for (the key is left as it is).
pub fn sprint_spelling(state: StoryState) -> Option<&'static str> {
    match state {
        StoryState::Backlog => Some("backlog"),
        StoryState::Drafted | StoryState::ReadyForDev => Some("ready-for-dev"),
        StoryState::InProgress | StoryState::ChangesRequested => Some("in-progress"),
        StoryState::Review => Some("review"),
        StoryState::Done => Some("done"),
        StoryState::Blocked => None,
    }
}

/// One `development_status` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SprintEntry {
    /// The key as written.
    pub key: String,
    /// What the key names.
    pub kind: SprintKey,
    /// The value, unquoted (empty for a null value).
    pub value: String,
    /// For story keys: the canonical state of the value (`None` if unknown).
    pub state: Option<StoryState>,
    /// The 1-based line (of the last occurrence), when the file is in line form.
    pub line: Option<u32>,
}

/// A parsed `sprint-status.yaml`.
#[derive(Debug, Clone)]
pub struct SprintStatus {
    path: PathBuf,
    entries: Vec<SprintEntry>,
    warnings: Vec<Warning>,
    /// `Err(reason)` when the file is readable but not in the one-`key: value`-per-line form.
    editable: Result<(), String>,
}

impl SprintStatus {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<SprintStatus, ProjectError> {
        let bytes = read_capped(path, MAX_SPRINT_BYTES, "sprint-status.yaml")?;
        Self::parse(path, &String::from_utf8_lossy(&bytes))
    }

    /// Parses `text` as the sprint-status file at `path` (the path is for messages).
    pub fn parse(path: &Path, text: &str) -> Result<SprintStatus, ProjectError> {
        let meaningful = text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---"
        });
        if !meaningful {
            return Err(ProjectError::SprintStatus {
                at: FileLoc::new(path, None),
                problem: "the file is empty: no development_status".to_owned(),
                fix: FIX_REGENERATE.to_owned(),
            });
        }
        let doc: SprintDoc =
            serde_yaml_ng::from_str(text).map_err(|e| ProjectError::yaml(path, &e, FIX_YAML))?;
        let scan = scan_block(text.as_bytes());
        let key_line = scan.header_line;
        let pairs = match doc.development_status {
            None => {
                // `development_status:` with nothing under it reads as null.
                let problem = if key_line.is_some() {
                    "development_status is empty, not a mapping of story keys to statuses"
                } else {
                    "no development_status mapping"
                };
                return Err(ProjectError::SprintStatus {
                    at: FileLoc::new(path, key_line),
                    problem: problem.to_owned(),
                    fix: FIX_REGENERATE.to_owned(),
                });
            }
            Some(DevStatus::Map(pairs)) => pairs,
            Some(DevStatus::NotMap(what)) => {
                return Err(ProjectError::SprintStatus {
                    at: FileLoc::new(path, key_line),
                    problem: format!("development_status is {what}, not a mapping of story keys to statuses"),
                    fix: "write one `key: status` per line under it, for example `  1-1-project-setup: done`".to_owned(),
                });
            }
        };

        let mut warnings = Vec::new();
        let in_line_form = scan.entries.len() == pairs.len()
            && scan
                .entries
                .iter()
                .zip(&pairs)
                .all(|(s, (k, v))| s.key == *k && v.as_deref() == Some(s.value.as_str()));
        let editable = if in_line_form {
            Ok(())
        } else {
            let reason = "development_status is not written one `key: value` per line, so bmad-host can read it but will not edit it".to_owned();
            warnings.push(Warning::new(path, key_line, reason.clone()));
            Err(reason)
        };

        let mut entries: Vec<SprintEntry> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, (key, value)) in pairs.into_iter().enumerate() {
            let line = if in_line_form {
                scan.entries.get(i).map(|s| s.line)
            } else {
                None
            };
            // A story's key names its file (`{implementation_artifacts}/{key}.md`): a key that
            // could name a path elsewhere is refused outright.
            if key.contains(['/', '\\']) || key.contains("..") {
                return Err(ProjectError::SprintStatus {
                    at: FileLoc::new(path, line),
                    problem: format!(
                        "key `{key}` contains a path separator or `..`, which could make bmad-host read or write a file outside the story folder"
                    ),
                    fix: "name the story `{epic}-{story}-{slug}` with letters, digits and dashes only".to_owned(),
                });
            }
            let kind = SprintKey::classify(&key);
            let value = match value {
                Some(v) => v,
                None => {
                    warnings.push(Warning::new(
                        path,
                        line,
                        format!("`{key}` has a list or mapping as its value: read as unknown"),
                    ));
                    String::new()
                }
            };
            let state = check_value(path, line, &key, &kind, &value, &mut warnings);
            let entry = SprintEntry {
                key: key.clone(),
                kind,
                value,
                state,
                line,
            };
            if let Some(&at) = index.get(&key) {
                let first = entries[at]
                    .line
                    .map_or_else(String::new, |l| format!(" (line {l})"));
                warnings.push(Warning::new(
                    path,
                    line,
                    format!(
                        "duplicate key `{key}`{first}: the last one (`{}`) counts, as lenient YAML readers do; delete the other line",
                        entry.value
                    ),
                ));
                entries[at] = entry;
            } else {
                index.insert(key, entries.len());
                entries.push(entry);
            }
        }

        // Two keys for one story (`1-1-project-setup` and `1-1`): the first with a slug counts.
        let mut seen: HashMap<StoryId, &SprintEntry> = HashMap::new();
        let mut extra = Vec::new();
        for e in &entries {
            if let SprintKey::Story { id, .. } = e.kind {
                if let Some(first) = seen.get(&id) {
                    extra.push(Warning::new(
                        path,
                        e.line,
                        format!(
                            "`{}` is a second key for story {id} (after `{}`): ignored",
                            e.key, first.key
                        ),
                    ));
                } else {
                    seen.insert(id, e);
                }
            }
        }
        warnings.extend(extra);
        Ok(SprintStatus {
            path: path.to_owned(),
            entries,
            warnings,
            editable,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry of `development_status`, in file order (a duplicated key once, last value).
    pub fn entries(&self) -> &[SprintEntry] {
        &self.entries
    }

    /// What was tolerated while reading.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Whether bmad-host can edit values in place (`Err` says why not).
    pub fn editable(&self) -> Result<(), &str> {
        self.editable.as_ref().map(|_| ()).map_err(String::as_str)
    }

    /// The entry for a story: the first key naming that id with a slug, else a bare `N-M` key.
    pub fn story(&self, id: StoryId) -> Option<&SprintEntry> {
        let mut bare = None;
        for e in &self.entries {
            if let SprintKey::Story { id: eid, slug } = &e.kind
                && *eid == id
            {
                if slug.is_some() {
                    return Some(e);
                }
                bare.get_or_insert(e);
            }
        }
        bare
    }

    /// Every story entry, in file order.
    pub fn stories(&self) -> impl Iterator<Item = (StoryId, &SprintEntry)> {
        self.entries.iter().filter_map(|e| match e.kind {
            SprintKey::Story { id, .. } => Some((id, e)),
            _ => None,
        })
    }
}

fn check_value(
    path: &Path,
    line: Option<u32>,
    key: &str,
    kind: &SprintKey,
    value: &str,
    warnings: &mut Vec<Warning>,
) -> Option<StoryState> {
    let allowed: &[&str] = match kind {
        SprintKey::Story { id, slug } => {
            if slug.is_none() {
                warnings.push(Warning::new(
                    path,
                    line,
                    format!("story key `{key}` has no slug: read as story {id}"),
                ));
            }
            let (state, exact) = sprint_value_state(value);
            match (state, exact) {
                (Some(_), true) => {}
                (Some(s), false) => warnings.push(Warning::new(
                    path,
                    line,
                    format!(
                        "`{key}: {value}` is not an exact sprint-status value: read as `{}`",
                        sprint_spelling(s).unwrap_or("?")
                    ),
                )),
                (None, _) => warnings.push(Warning::new(
                    path,
                    line,
                    format!(
                        "illegal status `{value}` for `{key}` (expected {}): read as unknown",
                        STORY_VALUES.join("|")
                    ),
                )),
            }
            return state;
        }
        SprintKey::Epic(_) => &["backlog", "in-progress", "done", "contexted"],
        SprintKey::Retrospective(_) => &["optional", "done"],
        SprintKey::Other => {
            warnings.push(Warning::new(
                path,
                line,
                format!("unrecognised key `{key}`: ignored"),
            ));
            return None;
        }
    };
    if !allowed.contains(&value) {
        warnings.push(Warning::new(
            path,
            line,
            format!(
                "illegal status `{value}` for `{key}` (expected {}): ignored",
                allowed.join("|")
            ),
        ));
    }
    None
}

/// The result of planning a one-line edit of sprint-status.
#[derive(Debug)]
pub(crate) enum SprintEdit {
    /// The key already has this value.
    Same { line: u32, value: String },
    /// The new file bytes.
    Change {
        line: u32,
        from: String,
        bytes: Vec<u8>,
    },
}

/// Plans setting `key` to `new_value` in the file `bytes`, editing only that value's token and
/// keeping its quoting. `Err` says why it cannot be done.
pub(crate) fn plan_edit(
    path: &Path,
    bytes: &[u8],
    id: StoryId,
    new_value: &str,
) -> Result<(String, SprintEdit), String> {
    let status = parse_editable(path, bytes)?;
    let entry = status.story(id).ok_or_else(|| {
        format!("no key for story {id} in development_status; run the sprint-planning workflow to add it")
    })?;
    let line = entry
        .line
        .ok_or_else(|| "the story's line was not found".to_owned())?;
    let wanted = [(entry.key.clone(), new_value.to_owned())];
    let planned = plan_key_edits(bytes, &wanted);
    if let Some(problem) = planned.problems.into_iter().next() {
        return Err(problem);
    }
    match planned.edits.into_iter().next() {
        None => Ok((
            entry.key.clone(),
            SprintEdit::Same {
                line,
                value: entry.value.clone(),
            },
        )),
        Some(edit) => Ok((
            entry.key.clone(),
            SprintEdit::Change {
                line: edit.line,
                from: edit.from,
                bytes: planned.bytes,
            },
        )),
    }
}

/// The file `bytes` parsed, when bmad-host may edit its values (`Err` says why not).
pub(crate) fn parse_editable(path: &Path, bytes: &[u8]) -> Result<SprintStatus, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not valid UTF-8".to_owned())?;
    let status = SprintStatus::parse(path, text).map_err(|e| e.to_string())?;
    status.editable().map_err(str::to_owned)?;
    Ok(status)
}

/// One value the host sets in sprint-status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyEdit {
    /// The key.
    pub key: String,
    /// Its 1-based line.
    pub line: u32,
    /// The value it had (unquoted).
    pub from: String,
    /// The value written.
    pub to: String,
}

/// What [`plan_key_edits`] planned: the new bytes, the values changed, and the keys it could
/// not set (each with why).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PlannedEdits {
    /// The whole file with the edits made (equal to the input when nothing changes).
    pub bytes: Vec<u8>,
    /// The values changed, in file order.
    pub edits: Vec<KeyEdit>,
    /// Why a wanted key was not set.
    pub problems: Vec<String>,
}

/// Sets each wanted `(key, value)` in the `development_status` block of `bytes` (a file in the
/// one-`key: value`-per-line form), replacing only each value's token and keeping its quoting;
/// every other byte (comments, order, blank lines, line ends, other keys) stays. A key given
/// twice in the file has its last line edited (the one YAML readers use). A key already at its
/// value is left alone; a key the file does not have, or with no value token, is a problem.
pub(crate) fn plan_key_edits(bytes: &[u8], wanted: &[(String, String)]) -> PlannedEdits {
    let scan = scan_block(bytes);
    let mut found: Vec<(&ScannedEntry, &str)> = Vec::new();
    let mut problems = Vec::new();
    for (key, value) in wanted {
        let Some(scanned) = scan.entries.iter().rev().find(|s| s.key == *key) else {
            problems.push(format!("no key `{key}` in development_status"));
            continue;
        };
        if scanned.quote.is_none() && scanned.value.is_empty() {
            problems.push(format!("`{key}` has no value to replace"));
            continue;
        }
        if scanned.value != *value && !found.iter().any(|(s, _)| s.key == *key) {
            found.push((scanned, value));
        }
    }
    found.sort_by_key(|(s, _)| s.token.0);
    let mut out = Vec::with_capacity(bytes.len() + 16 * found.len());
    let mut at = 0;
    let mut edits = Vec::new();
    for (scanned, value) in found {
        let token = match scanned.quote {
            Some(q) => format!("{q}{value}{q}"),
            None => value.to_owned(),
        };
        out.extend_from_slice(&bytes[at..scanned.token.0]);
        out.extend_from_slice(token.as_bytes());
        at = scanned.token.1;
        edits.push(KeyEdit {
            key: scanned.key.clone(),
            line: scanned.line,
            from: scanned.value.clone(),
            to: value.to_owned(),
        });
    }
    out.extend_from_slice(&bytes[at..]);
    PlannedEdits {
        bytes: out,
        edits,
        problems,
    }
}

/// sprint-status of two stories that ran side by side, merged key by key: `shared` (the shared
/// branch's, with the other story landed) with each `development_status` value that `story` (the
/// landing story's last commit) changed from `base` (where it started) set on it. The rest of
/// `shared` stays as it is. `Err` says why it cannot be done (a file not in the one-`key: value`
/// per-line form, a key `shared` does not have).
pub fn merge_story_keys(
    path: &Path,
    base: &[u8],
    story: &[u8],
    shared: &[u8],
) -> Result<Vec<u8>, String> {
    let before = parse_editable(path, base)?;
    let after = parse_editable(path, story)?;
    parse_editable(path, shared)?;
    let value_before = |key: &str| {
        before
            .entries()
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    };
    let wanted: Vec<(String, String)> = after
        .entries()
        .iter()
        .filter(|e| value_before(&e.key) != Some(e.value.as_str()))
        .map(|e| (e.key.clone(), e.value.clone()))
        .collect();
    let planned = plan_key_edits(shared, &wanted);
    match planned.problems.into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(planned.bytes),
    }
}

/// Where a story value stands in the workflow (`backlog` 0 to `done` 4), legacy and other-case
/// spellings read as their current value; `None` when it is not a story value. Statuses move
/// up this order, and back down only through review (a send-back to `in-progress`).
pub fn story_rank(value: &str) -> Option<u8> {
    let state = sprint_value_state(value).0?;
    let spelled = sprint_spelling(state)?;
    STORY_VALUES
        .iter()
        .position(|v| *v == spelled)
        .and_then(|i| u8::try_from(i).ok())
}

/// The epic values sprint-status allows, in order.
pub const EPIC_VALUES: [&str; 3] = ["backlog", "in-progress", "done"];

/// The retrospective values sprint-status allows.
pub const RETROSPECTIVE_VALUES: [&str; 2] = ["optional", "done"];

/// An epic value as its current spelling: exact values as they are, the legacy `contexted`
/// (BMAD 6.0's epic tech context) as `in-progress`, another case (`Done`) lowered; `None` when
/// it is not an epic value.
pub fn epic_value(value: &str) -> Option<&'static str> {
    let lower = value.trim().to_ascii_lowercase();
    match lower.as_str() {
        "contexted" => Some("in-progress"),
        other => EPIC_VALUES.iter().copied().find(|v| *v == other),
    }
}

/// One `key: value` line of the `development_status` block.
#[derive(Debug)]
struct ScannedEntry {
    key: String,
    value: String,
    line: u32,
    /// Byte range of the value token (with its quotes) in the whole file.
    token: (usize, usize),
    quote: Option<char>,
}

#[derive(Debug, Default)]
struct Scan {
    header_line: Option<u32>,
    entries: Vec<ScannedEntry>,
}

/// Finds `development_status:` at column 0 and reads the indented `key: value` lines under it.
fn scan_block(bytes: &[u8]) -> Scan {
    let mut scan = Scan::default();
    let mut inside = false;
    for (i, (start, end)) in line_spans(bytes, false).into_iter().enumerate() {
        let no = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let Ok(line) = std::str::from_utf8(&bytes[start..end]) else {
            if inside {
                break;
            }
            continue;
        };
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if !inside {
            if let Some(rest) = line.strip_prefix("development_status:")
                && (rest.trim().is_empty() || rest.trim_start().starts_with('#'))
            {
                inside = true;
                scan.header_line = Some(no);
            } else if line.starts_with("development_status:") {
                scan.header_line = Some(no);
            }
            continue;
        }
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if indent == 0 {
            break;
        }
        match scan_entry(trimmed) {
            Some((key, value, (ts, te), quote)) => {
                let base = start + indent;
                scan.entries.push(ScannedEntry {
                    key,
                    value,
                    line: no,
                    token: (base + ts, base + te),
                    quote,
                });
            }
            None => break,
        }
    }
    scan
}

/// A scanned `key: value` line: key, unquoted value, value token range, quote char.
type EntryParts = (String, String, (usize, usize), Option<char>);

/// Splits `key: value  # comment` into its parts (`None`: not such a line).
fn scan_entry(s: &str) -> Option<EntryParts> {
    if s.starts_with("- ") || s == "-" {
        return None;
    }
    let (key, after_key) = match s.chars().next()? {
        q @ ('"' | '\'') => {
            let close = s[1..].find(q)? + 1;
            (s[1..close].to_owned(), close + 1)
        }
        _ => {
            let colon = s
                .match_indices(':')
                .find(|(i, _)| matches!(s.as_bytes().get(i + 1), None | Some(b' ' | b'\t')))?
                .0;
            (s[..colon].trim_end().to_owned(), colon)
        }
    };
    let rest = s.get(after_key..)?;
    let rest_trim = rest.trim_start();
    let colon_rel = rest.len() - rest_trim.len();
    let after_colon = rest_trim.strip_prefix(':')?;
    let value_part = after_colon.trim_start();
    let vstart = after_key + colon_rel + 1 + (after_colon.len() - value_part.len());
    match value_part.chars().next() {
        None | Some('#') => Some((key, String::new(), (vstart, vstart), None)),
        Some(q @ ('"' | '\'')) => {
            let inner = &value_part[1..];
            let mut value = String::new();
            let mut chars = inner.char_indices();
            let mut close = None;
            while let Some((i, c)) = chars.next() {
                if c == q {
                    if q == '\'' && inner[i + 1..].starts_with('\'') {
                        value.push('\'');
                        chars.next();
                        continue;
                    }
                    close = Some(i);
                    break;
                }
                if c == '\\' && q == '"' {
                    // Escapes are rare in status values: keep the escaped char as written.
                    if let Some((_, n)) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
            }
            let close = close?;
            let tail = inner[close + 1..].trim_start();
            if !(tail.is_empty() || tail.starts_with('#')) {
                return None;
            }
            Some((key, value, (vstart, vstart + close + 2), Some(q)))
        }
        Some(_) => {
            let end = value_part
                .find(" #")
                .or_else(|| value_part.find("\t#"))
                .unwrap_or(value_part.len());
            let value = value_part[..end].trim_end();
            Some((key, value.to_owned(), (vstart, vstart + value.len()), None))
        }
    }
}

/// The part of the document the reader needs.
#[derive(Debug, serde::Deserialize)]
struct SprintDoc {
    #[serde(default)]
    development_status: Option<DevStatus>,
}

/// `development_status` as written: an ordered list of pairs (duplicates kept) or something else.
#[derive(Debug)]
enum DevStatus {
    /// Key and scalar value (`None` when the value is a list or mapping).
    Map(Vec<(String, Option<String>)>),
    NotMap(&'static str),
}

impl<'de> serde::Deserialize<'de> for DevStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DevStatusVisitor)
    }
}

struct DevStatusVisitor;

impl<'de> Visitor<'de> for DevStatusVisitor {
    type Value = DevStatus;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of story keys to statuses")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DevStatus, A::Error> {
        let mut pairs = Vec::new();
        while let Some(key) = map.next_key::<Scalar>()? {
            let value = map.next_value::<Scalar>()?;
            pairs.push((key.0.unwrap_or_default(), value.0));
        }
        Ok(DevStatus::Map(pairs))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DevStatus, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(DevStatus::NotMap("a list"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("empty"))
    }

    fn visit_none<E: de::Error>(self) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("empty"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("a single value"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("a single value"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("a single value"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("a single value"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<DevStatus, E> {
        Ok(DevStatus::NotMap("a single value"))
    }
}

/// A scalar as text (`None` for a list or mapping, `""` for null).
struct Scalar(Option<String>);

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a scalar")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar(Some(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(Some(String::new())))
    }

    fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
        Ok(Scalar(Some(String::new())))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map
            .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
            .is_some()
        {}
        Ok(Scalar(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        while seq.next_element::<de::IgnoredAny>()?.is_some() {}
        Ok(Scalar(None))
    }
}

impl fmt::Display for SprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SprintKey::Epic(n) => write!(f, "epic {n}"),
            SprintKey::Story { id, .. } => write!(f, "story {id}"),
            SprintKey::Retrospective(n) => write!(f, "epic {n} retrospective"),
            SprintKey::Other => f.write_str("unrecognised key"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_stories_sprint_statuses_merge_key_by_key() {
        let path = Path::new("sprint-status.yaml");
        let file = |one: &str, two: &str, epic: &str| {
            format!(
                "# comment\nlast_updated: x\n\ndevelopment_status:\n  epic-1: {epic}\n  1-1-a: {one}\n  1-2-b: \"{two}\"  # note\n"
            )
        };
        let base = file("ready-for-dev", "backlog", "backlog");
        // 1.1 landed first: the shared branch has its values.
        let shared = file("done", "backlog", "in-progress");
        // 1.2, from the same base, changed its own key and the epic's.
        let story = file("ready-for-dev", "done", "in-progress");
        let merged = merge_story_keys(path, base.as_bytes(), story.as_bytes(), shared.as_bytes())
            .expect("merged");
        assert_eq!(
            String::from_utf8(merged).expect("utf-8"),
            file("done", "done", "in-progress"),
            "1.1's value kept, 1.2's set with its quoting and comment"
        );
        // A key the shared branch lost cannot be set.
        let gone = "development_status:\n  epic-1: in-progress\n  1-1-a: done\n";
        let e = merge_story_keys(path, base.as_bytes(), story.as_bytes(), gone.as_bytes())
            .expect_err("no key");
        assert!(e.contains("1-2-b"), "{e}");
    }

    const SAMPLE: &str = "# generated: today\n# STATUS DEFINITIONS: backlog, done\n\ngenerated: 03-07-2026 09:00\nproject: p\n\ndevelopment_status:\n  # Epic 1\n  epic-1: in-progress   # started\n  1-1-setup: done\n  1-2-sign-up: \"review\"\n  1-10-late: 'backlog' # the tenth\n  epic-1-retrospective: optional\n\n  epic-2: backlog\n  2-1-water: backlog\naction_items: []\n";

    fn parse(text: &str) -> Result<SprintStatus, ProjectError> {
        SprintStatus::parse(Path::new("sprint-status.yaml"), text)
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn warnings(s: &SprintStatus) -> Vec<String> {
        s.warnings().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keys_that_could_be_paths_are_refused() {
        for key in ["1-1-../../x", "1-1-a/b", "1-1-a\\b", "../1-1", "epic-1/.."] {
            let e = err(&format!("development_status:\n  {key}: done\n"));
            assert!(
                e.contains(&format!("key `{key}` contains a path separator or `..`"))
                    && e.starts_with("sprint-status.yaml:2:"),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn reads_entries_with_lines_and_comments() {
        let s = parse(SAMPLE).expect("parses");
        assert!(s.editable().is_ok());
        let shown: Vec<(String, String, Option<u32>)> = s
            .entries()
            .iter()
            .map(|e| (e.key.clone(), e.value.clone(), e.line))
            .collect();
        assert_eq!(shown[0], ("epic-1".into(), "in-progress".into(), Some(9)));
        assert_eq!(shown[2], ("1-2-sign-up".into(), "review".into(), Some(11)));
        assert_eq!(shown[3], ("1-10-late".into(), "backlog".into(), Some(12)));
        assert_eq!(shown.len(), 7);
        assert!(warnings(&s).is_empty(), "{:?}", warnings(&s));
        assert_eq!(
            s.story(StoryId::new(1, 1)).map(|e| e.key.as_str()),
            Some("1-1-setup")
        );
        assert_eq!(
            s.story(StoryId::new(1, 10)).map(|e| e.key.as_str()),
            Some("1-10-late")
        );
        assert_eq!(
            s.story(StoryId::new(1, 10)).and_then(|e| e.state),
            Some(StoryState::Backlog)
        );
        assert_eq!(s.story(StoryId::new(3, 1)), None);
    }

    #[test]
    fn classifies_keys() {
        assert_eq!(SprintKey::classify("epic-2"), SprintKey::Epic(2));
        assert_eq!(
            SprintKey::classify("epic-2-retrospective"),
            SprintKey::Retrospective(2)
        );
        assert_eq!(
            SprintKey::classify("1-10-late-story"),
            SprintKey::Story {
                id: StoryId::new(1, 10),
                slug: Some("late-story".into())
            }
        );
        assert_eq!(
            SprintKey::classify("1-1"),
            SprintKey::Story {
                id: StoryId::new(1, 1),
                slug: None
            }
        );
        assert_eq!(
            SprintKey::classify("4-4a-split"),
            SprintKey::Story {
                id: StoryId {
                    epic: 4,
                    story: 4,
                    suffix: Some('a')
                },
                slug: Some("split".into())
            }
        );
        for other in ["not-a-key", "1.1-x", "epic-x", "1-1-", "epic-", "1"] {
            assert_eq!(SprintKey::classify(other), SprintKey::Other, "{other}");
        }
    }

    #[test]
    fn malformed_files_are_errors_naming_the_file() {
        let e = err("development_status:\n\tepic-1: in-progress\n  1-1-a: \"done\n");
        assert!(e.starts_with("sprint-status.yaml:2: invalid YAML"), "{e}");
        assert!(e.contains("spaces not tabs"), "{e}");
        for empty in ["", "  \n", "# only a comment\n"] {
            let e = err(empty);
            assert_eq!(
                e,
                "sprint-status.yaml: the file is empty: no development_status; run the sprint-planning workflow (bmad-sprint-planning) to generate it"
            );
        }
        let e = err("project: p\n");
        assert!(e.contains("no development_status mapping"), "{e}");
        let e = err("development_status:\n  - epic-1\n  - 1-1-project-setup: done\n");
        assert!(
            e.starts_with("sprint-status.yaml:1: development_status is a list, not a mapping"),
            "{e}"
        );
        let e = err("development_status: done\n");
        assert!(e.contains("development_status is a single value"), "{e}");
        let e = err("development_status:\n");
        assert!(e.contains("development_status is empty"), "{e}");
    }

    #[test]
    fn duplicate_keys_keep_the_last() {
        let s = parse("development_status:\n  epic-1: in-progress\n  1-1-project-setup: review\n  1-1-project-setup: done\n")
            .expect("lenient");
        let e = s.story(StoryId::new(1, 1)).expect("story");
        assert_eq!((e.value.as_str(), e.line), ("done", Some(4)));
        assert_eq!(s.entries().len(), 2);
        let w = warnings(&s);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("sprint-status.yaml:4: duplicate key `1-1-project-setup` (line 3): the last one (`done`) counts"), "{w:?}");
    }

    #[test]
    fn unknown_values_are_read_as_unknown() {
        let text = "generated: 2025-13-45 99:99\nproject: plant-pal\ndevelopment_status:\n  epic-1: started\n  1-1-project-setup: Done\n  1-2-user-registration: wip\n  1-3-sign-in: ready-for-review\n  1-10-late-story: backlog\n  1-1: done\n  not-a-key: done\n  epic-1-retrospective: completed\n  epic-2-retrospective: optional\n";
        let s = parse(text).expect("lenient");
        let state = |e, n| s.story(StoryId::new(e, n)).and_then(|x| x.state);
        assert_eq!(state(1, 1), Some(StoryState::Done));
        assert_eq!(
            s.story(StoryId::new(1, 1)).map(|e| e.key.as_str()),
            Some("1-1-project-setup")
        );
        assert_eq!(state(1, 2), None);
        assert_eq!(state(1, 3), None);
        assert_eq!(state(1, 10), Some(StoryState::Backlog));
        let w = warnings(&s);
        let expect = [
            "sprint-status.yaml:4: illegal status `started` for `epic-1` (expected backlog|in-progress|done|contexted): ignored",
            "sprint-status.yaml:5: `1-1-project-setup: Done` is not an exact sprint-status value: read as `done`",
            "sprint-status.yaml:6: illegal status `wip` for `1-2-user-registration` (expected backlog|ready-for-dev|in-progress|review|done): read as unknown",
            "sprint-status.yaml:7: illegal status `ready-for-review` for `1-3-sign-in` (expected backlog|ready-for-dev|in-progress|review|done): read as unknown",
            "sprint-status.yaml:9: story key `1-1` has no slug: read as story 1.1",
            "sprint-status.yaml:10: unrecognised key `not-a-key`: ignored",
            "sprint-status.yaml:11: illegal status `completed` for `epic-1-retrospective` (expected optional|done): ignored",
            "sprint-status.yaml:9: `1-1` is a second key for story 1.1 (after `1-1-project-setup`): ignored",
        ];
        assert_eq!(w, expect);
    }

    #[test]
    fn flow_style_is_read_but_not_editable() {
        let s = parse("development_status: {epic-1: done, 1-1-a: review}\n").expect("flow");
        assert_eq!(
            s.story(StoryId::new(1, 1)).map(|e| e.value.as_str()),
            Some("review")
        );
        assert!(s.editable().is_err());
        let err = plan_edit(
            Path::new("s.yaml"),
            b"development_status: {1-1-a: review}\n",
            StoryId::new(1, 1),
            "done",
        )
        .expect_err("not editable");
        assert!(err.contains("will not edit"), "{err}");
    }

    #[test]
    fn edits_one_value_keeping_every_other_byte() {
        let crlf = SAMPLE.replace('\n', "\r\n");
        for text in [SAMPLE.to_owned(), crlf] {
            let (key, edit) = plan_edit(
                Path::new("s.yaml"),
                text.as_bytes(),
                StoryId::new(1, 10),
                "in-progress",
            )
            .expect("plan");
            assert_eq!(key, "1-10-late");
            let SprintEdit::Change { line, from, bytes } = edit else {
                panic!("expected a change")
            };
            assert_eq!((line, from.as_str()), (12, "backlog"));
            let expected = text.replace(
                "1-10-late: 'backlog' # the tenth",
                "1-10-late: 'in-progress' # the tenth",
            );
            assert_eq!(String::from_utf8(bytes).expect("utf8"), expected);

            let (_, edit) = plan_edit(
                Path::new("s.yaml"),
                text.as_bytes(),
                StoryId::new(1, 2),
                "done",
            )
            .expect("plan");
            let SprintEdit::Change { bytes, .. } = edit else {
                panic!("expected a change")
            };
            assert_eq!(
                String::from_utf8(bytes).expect("utf8"),
                text.replace("1-2-sign-up: \"review\"", "1-2-sign-up: \"done\"")
            );

            let (_, edit) = plan_edit(
                Path::new("s.yaml"),
                text.as_bytes(),
                StoryId::new(1, 1),
                "done",
            )
            .expect("plan");
            assert!(
                matches!(edit, SprintEdit::Same { line: 10, .. }),
                "{edit:?}"
            );
        }
        let err = plan_edit(
            Path::new("s.yaml"),
            SAMPLE.as_bytes(),
            StoryId::new(3, 1),
            "done",
        )
        .expect_err("no key");
        assert!(err.contains("no key for story 3.1"), "{err}");
    }

    #[test]
    fn legacy_values_and_letter_keys_parse() {
        let text = "development_status:\n  epic-2: contexted\n  2-5-a: drafted\n  2-6a-split-story: contexted\n  2-6b-other-half: Review\n  epic-2-retrospective: optional\n";
        let s = parse(text).expect("parses");
        let id = |n, c| StoryId {
            epic: 2,
            story: n,
            suffix: c,
        };
        let state = |i| s.story(i).and_then(|e| e.state);
        assert_eq!(state(id(5, None)), Some(StoryState::ReadyForDev));
        assert_eq!(state(id(6, Some('a'))), Some(StoryState::InProgress));
        assert_eq!(state(id(6, Some('b'))), Some(StoryState::Review));
        assert_eq!(
            s.story(id(6, Some('a'))).map(|e| e.key.as_str()),
            Some("2-6a-split-story")
        );
        assert_eq!(s.story(id(6, None)), None);
        // Legacy story values are read with a warning; `contexted` is a (legacy) epic value.
        let w = warnings(&s);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].contains(
                "`2-5-a: drafted` is not an exact sprint-status value: read as `ready-for-dev`"
            ),
            "{w:?}"
        );
        assert_eq!(epic_value("contexted"), Some("in-progress"));
        assert_eq!(epic_value("Done"), Some("done"));
        assert_eq!(epic_value("started"), None);
    }

    #[test]
    fn story_ranks_follow_the_workflow() {
        let ranks: Vec<Option<u8>> = [
            "backlog",
            "drafted",
            "ready-for-dev",
            "contexted",
            "in-progress",
            "review",
            "Done",
            "wip",
        ]
        .into_iter()
        .map(story_rank)
        .collect();
        assert_eq!(
            ranks,
            [
                Some(0),
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                Some(3),
                Some(4),
                None
            ]
        );
    }

    #[test]
    fn key_edits_change_only_their_values_in_any_order() {
        let crlf = SAMPLE.replace('\n', "\r\n");
        for text in [SAMPLE.to_owned(), crlf] {
            let wanted = [
                ("epic-2".to_owned(), "in-progress".to_owned()),
                ("1-10-late".to_owned(), "done".to_owned()),
                ("epic-1".to_owned(), "done".to_owned()),
                ("1-1-setup".to_owned(), "done".to_owned()),
                ("1-2-sign-up".to_owned(), "in-progress".to_owned()),
                ("epic-9".to_owned(), "done".to_owned()),
            ];
            let planned = plan_key_edits(text.as_bytes(), &wanted);
            let expected = text
                .replace(
                    "epic-1: in-progress   # started",
                    "epic-1: done   # started",
                )
                .replace("1-2-sign-up: \"review\"", "1-2-sign-up: \"in-progress\"")
                .replace(
                    "1-10-late: 'backlog' # the tenth",
                    "1-10-late: 'done' # the tenth",
                )
                .replace("epic-2: backlog", "epic-2: in-progress");
            assert_eq!(String::from_utf8(planned.bytes).expect("utf8"), expected);
            // In file order; a key already at its value is no edit.
            let edited: Vec<(&str, u32, &str, &str)> = planned
                .edits
                .iter()
                .map(|e| (e.key.as_str(), e.line, e.from.as_str(), e.to.as_str()))
                .collect();
            assert_eq!(
                edited,
                [
                    ("epic-1", 9, "in-progress", "done"),
                    ("1-2-sign-up", 11, "review", "in-progress"),
                    ("1-10-late", 12, "backlog", "done"),
                    ("epic-2", 15, "backlog", "in-progress"),
                ]
            );
            assert_eq!(planned.problems, ["no key `epic-9` in development_status"]);
        }
        // Nothing wanted: the same bytes.
        let same = plan_key_edits(SAMPLE.as_bytes(), &[]);
        assert_eq!(same.bytes, SAMPLE.as_bytes());
        assert!(same.edits.is_empty());
        // A duplicated key: the last line (the one readers use) is edited.
        let dup = "development_status:\n  1-1-a: review\n  1-1-a: done\n";
        let planned = plan_key_edits(dup.as_bytes(), &[("1-1-a".into(), "review".into())]);
        assert_eq!(
            String::from_utf8(planned.bytes).expect("utf8"),
            "development_status:\n  1-1-a: review\n  1-1-a: review\n"
        );
        // A key with no value token is not edited.
        let planned = plan_key_edits(
            b"development_status:\n  epic-1:\n  1-1-a: done\n",
            &[("epic-1".into(), "done".into())],
        );
        assert_eq!(planned.problems, ["`epic-1` has no value to replace"]);
        assert!(planned.edits.is_empty());
    }

    #[test]
    fn scans_entry_forms() {
        assert_eq!(
            scan_entry("a: b"),
            Some(("a".into(), "b".into(), (3, 4), None))
        );
        assert_eq!(
            scan_entry("a:   b   # c"),
            Some(("a".into(), "b".into(), (5, 6), None))
        );
        assert_eq!(
            scan_entry("'a': 'it''s' # c"),
            Some(("a".into(), "it's".into(), (5, 12), Some('\'')))
        );
        assert_eq!(
            scan_entry("\"a\": \"x\""),
            Some(("a".into(), "x".into(), (5, 8), Some('"')))
        );
        assert_eq!(
            scan_entry("a:"),
            Some(("a".into(), String::new(), (2, 2), None))
        );
        assert_eq!(scan_entry("a: 'open"), None);
        assert_eq!(scan_entry("a: 'x' y"), None);
        assert_eq!(scan_entry("- a"), None);
        assert_eq!(scan_entry("no colon"), None);
    }
}
