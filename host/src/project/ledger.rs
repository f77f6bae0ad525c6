//! The host's ledger in v6 `sprint-status.yaml`: which values the host owns, what each should
//! say, and the plan that puts them back when an agent (or a person) changed them.
//!
//! # Who owns what
//!
//! The story files are the truth (the status parser reads them). From them the host derives:
//! - **story keys**: the story file's state, spelled for sprint-status ([`sprint_spelling`]); a
//!   story with no file is `backlog`; a file that says `done` before a review accepted it (the
//!   host's journal of sightings, or the review step itself) is `review`. A story whose status
//!   cannot be read, or is `blocked` (sprint-status has no such value), is not asserted: its
//!   key stays as it is.
//! - **epic keys** (`epic-N`): `done` when every story of the epic is done; `in-progress` when
//!   one has started (its file says more than `backlog`, or the host is driving it); otherwise
//!   the value stays, except `done`, which an epic with no started story cannot be (`backlog`).
//!
//! Everything else is the agents' and people's and is kept: the order of the keys, comments,
//! blank lines, quoting, the other top-level keys (`generated`, `last_updated`, `project`,
//! `action_items`, ...), keys the host does not know, and the `epic-N-retrospective` keys (the
//! host sets one to `done` only after it ran that retrospective itself). Legacy values of an
//! owned key (`drafted`, `contexted`, `Done`) are rewritten to their current spelling when the
//! key is re-asserted. A key missing from the file is not added (run the sprint-planning
//! workflow: [`LedgerPlan::missing`]), and a file not written one `key: value` per line is not
//! edited: both are reported, never failures.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::discover::Project;
use super::error::ProjectError;
use super::fs::{read_inside, write_atomic};
use super::id::StoryId;
use super::sprint::{
    MAX_SPRINT_BYTES, PlannedEdits, SprintKey, epic_value, parse_editable, plan_key_edits,
    sprint_spelling,
};
use crate::policy::{StoryState, state_name};

/// What the host knows of a story from its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The story has no file yet: it is in the backlog.
    NoFile,
    /// The state its file says.
    State(StoryState),
    /// Its file says `done`, but no review accepted it yet (a Dev agent, or BMAD 6.12's
    /// `bmad-build`, wrote it): `review` in sprint-status until QA's review completes it.
    Unreviewed,
    /// It has a file whose status cannot be read with confidence: not asserted.
    Unknown,
}

/// One value the host sets in sprint-status, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LedgerChange {
    /// The key.
    pub key: String,
    /// Its 1-based line.
    pub line: u32,
    /// The value it had.
    pub from: String,
    /// The value the host writes.
    pub to: String,
    /// What the host knows that makes it so (`story 1.2's file says review`).
    pub reason: String,
}

/// The reconciliation of sprint-status with the host's ledger: the values to put back, and what
/// could not be (each problem in words). Empty when sprint-status already agrees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerPlan {
    /// `sprint-status.yaml`, relative to the project root.
    pub path: PathBuf,
    /// The values to set, in file order.
    pub changes: Vec<LedgerChange>,
    /// What could not be reconciled, and why.
    pub problems: Vec<String>,
    /// Stories with a file whose key is missing from sprint-status (the host does not add
    /// keys): for the caller to report (once per run is enough).
    pub missing: Vec<String>,
    before: Vec<u8>,
    after: Vec<u8>,
}

impl LedgerPlan {
    /// Whether there is nothing to set and nothing to report.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.problems.is_empty()
    }

    fn problem(path: PathBuf, problem: String) -> LedgerPlan {
        LedgerPlan {
            path,
            problems: vec![problem],
            ..LedgerPlan::default()
        }
    }
}

/// The value an owned key should have, and why.
struct Wanted {
    key: String,
    value: &'static str,
    reason: String,
}

impl Project {
    /// Plans putting the host-owned values of sprint-status back to what the host knows:
    /// `known` says what each story's file says (a story missing from it is not asserted), and
    /// `started` lists the epics one of whose stories the host is driving now; the keys of the
    /// stories in `skip` are left to another reconciliation (the build flow's, which keeps a
    /// story's spec, story file and key together), their `known` state still counting for
    /// their epic. `None` when the project has no sprint-status (v4, or v6 without the file).
    pub fn plan_sprint_ledger(
        &self,
        known: &BTreeMap<StoryId, Known>,
        started: &BTreeSet<u32>,
        skip: &BTreeSet<StoryId>,
    ) -> Option<LedgerPlan> {
        let (rel, bytes) = match self.sprint_bytes()? {
            Ok(found) => found,
            Err((rel, problem)) => return Some(LedgerPlan::problem(rel, problem)),
        };
        let abs = self.abs(&rel);
        let status = match parse_editable(&abs, &bytes) {
            Ok(s) => s,
            Err(why) => {
                return Some(LedgerPlan::problem(
                    rel.clone(),
                    format!(
                        "{}: cannot re-assert the host's values: {why}",
                        rel.display()
                    ),
                ));
            }
        };
        let mut wanted: Vec<Wanted> = Vec::new();
        let mut missing = Vec::new();
        let mut epics: BTreeMap<u32, Vec<(StoryId, Option<Known>)>> = BTreeMap::new();
        for story in self.stories() {
            let k = known.get(&story.id).copied();
            epics.entry(story.id.epic).or_default().push((story.id, k));
            let expected = match k {
                _ if skip.contains(&story.id) => None,
                Some(Known::NoFile) => Some((
                    "backlog",
                    format!("story {} has no story file yet", story.id),
                )),
                Some(Known::State(s)) => sprint_spelling(s).map(|v| {
                    (
                        v,
                        format!("story {}'s file says {}", story.id, state_name(s)),
                    )
                }),
                Some(Known::Unreviewed) => Some((
                    "review",
                    format!(
                        "story {}'s file says done, but no review has accepted it yet",
                        story.id
                    ),
                )),
                Some(Known::Unknown) | None => None,
            };
            match (expected, status.story(story.id)) {
                (Some((value, reason)), Some(entry)) if entry.value != value => {
                    wanted.push(Wanted {
                        key: entry.key.clone(),
                        value,
                        reason,
                    });
                }
                (Some((value, _)), None) if value != "backlog" => {
                    missing.push(format!(
                        "{}: no key for story {} (it should say `{value}`); the host does not add keys: run the sprint-planning workflow (bmad-sprint-planning) to add it",
                        rel.display(),
                        story.id
                    ));
                }
                _ => {}
            }
        }
        for (n, stories) in &epics {
            let Some(entry) = status
                .entries()
                .iter()
                .rev()
                .find(|e| e.kind == SprintKey::Epic(*n))
            else {
                continue;
            };
            let total = stories.len();
            let done = stories
                .iter()
                .filter(|(_, k)| *k == Some(Known::State(StoryState::Done)))
                .count();
            let first_started = stories.iter().find_map(|(id, k)| match k {
                Some(Known::State(s)) if *s != StoryState::Backlog => Some(*id),
                Some(Known::Unreviewed) => Some(*id),
                _ => None,
            });
            let expected = if total > 0 && done == total {
                Some(("done", format!("all {total} stories of epic {n} are done")))
            } else if let Some(id) = first_started {
                Some((
                    "in-progress",
                    format!(
                        "{done} of {total} stories of epic {n} are done; story {id} has started"
                    ),
                ))
            } else if started.contains(n) {
                Some((
                    "in-progress",
                    format!("the host started a story of epic {n}"),
                ))
            } else if epic_value(&entry.value) == Some("done") {
                Some((
                    "backlog",
                    format!("no story of epic {n} has started ({done} of {total} done)"),
                ))
            } else {
                None
            };
            if let Some((value, reason)) = expected
                && entry.value != value
            {
                wanted.push(Wanted {
                    key: entry.key.clone(),
                    value,
                    reason,
                });
            }
        }
        let pairs: Vec<(String, String)> = wanted
            .iter()
            .map(|w| (w.key.clone(), w.value.to_owned()))
            .collect();
        let PlannedEdits {
            bytes: after,
            edits,
            problems,
        } = plan_key_edits(&bytes, &pairs);
        let changes = edits
            .into_iter()
            .map(|e| {
                let reason = wanted
                    .iter()
                    .find(|w| w.key == e.key)
                    .map(|w| w.reason.clone())
                    .unwrap_or_default();
                LedgerChange {
                    key: e.key,
                    line: e.line,
                    from: e.from,
                    to: e.to,
                    reason,
                }
            })
            .collect();
        Some(LedgerPlan {
            problems: problems
                .into_iter()
                .map(|p| format!("{}: {p}", rel.display()))
                .collect(),
            path: rel,
            changes,
            missing,
            before: bytes,
            after,
        })
    }

    /// Plans setting one key of sprint-status (`epic-1-retrospective` to `done`), for `reason`.
    /// `None` when the project has no sprint-status.
    pub fn plan_sprint_value(&self, key: &str, value: &str, reason: &str) -> Option<LedgerPlan> {
        let (rel, bytes) = match self.sprint_bytes()? {
            Ok(found) => found,
            Err((rel, problem)) => return Some(LedgerPlan::problem(rel, problem)),
        };
        if let Err(why) = parse_editable(&self.abs(&rel), &bytes) {
            return Some(LedgerPlan::problem(
                rel.clone(),
                format!("{}: cannot set `{key}`: {why}", rel.display()),
            ));
        }
        let planned = plan_key_edits(&bytes, &[(key.to_owned(), value.to_owned())]);
        Some(LedgerPlan {
            changes: planned
                .edits
                .into_iter()
                .map(|e| LedgerChange {
                    key: e.key,
                    line: e.line,
                    from: e.from,
                    to: e.to,
                    reason: reason.to_owned(),
                })
                .collect(),
            missing: Vec::new(),
            problems: planned
                .problems
                .into_iter()
                .map(|p| format!("{}: {p}", rel.display()))
                .collect(),
            path: rel,
            before: bytes,
            after: planned.bytes,
        })
    }

    /// The value of `key` in sprint-status as it is now (`None`: no file, no such key, or a
    /// file that does not parse).
    pub fn sprint_value(&self, key: &str) -> Option<String> {
        let (rel, bytes) = self.sprint_bytes()?.ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let status = super::sprint::SprintStatus::parse(&self.abs(&rel), text).ok()?;
        status
            .entries()
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.clone())
    }

    /// Writes the plan's changes, atomically, refusing when the file changed since the plan
    /// read it (nothing is written then).
    pub fn apply_sprint_ledger(&self, plan: &LedgerPlan) -> Result<(), ProjectError> {
        if plan.changes.is_empty() {
            return Ok(());
        }
        write_atomic(
            self.root(),
            &self.abs(&plan.path),
            &plan.after,
            &plan.before,
        )
    }

    /// The sprint-status file's path and bytes; `None` when the project has none; `Err` with
    /// the path and the problem when it cannot be read.
    #[expect(
        clippy::type_complexity,
        reason = "a private helper's three outcomes, named at its two callers"
    )]
    fn sprint_bytes(&self) -> Option<Result<(PathBuf, Vec<u8>), (PathBuf, String)>> {
        let rel = self.sprint_status_path()?.to_owned();
        let abs = self.abs(&rel);
        if !abs.is_file() {
            return None;
        }
        Some(
            read_inside(self.root(), &abs, MAX_SPRINT_BYTES, "sprint-status.yaml")
                .map(|b| (rel.clone(), b))
                .map_err(|e| (rel, e.to_string())),
        )
    }
}

/// The folders an installed `bmad-retrospective` workflow lives in, by name: `retrospective`
/// (BMAD 6.0 `_bmad/bmm/workflows/4-implementation/retrospective/`) and `bmad-retrospective`
/// (6.x skills, under `_bmad/` or `.claude/skills/`).
const RETROSPECTIVE_DIRS: [&str; 2] = ["retrospective", "bmad-retrospective"];

/// The files of such a folder an agent is pointed at.
const WORKFLOW_FILES: [&str; 5] = [
    "SKILL.md",
    "workflow.md",
    "workflow.yaml",
    "instructions.md",
    "checklist.md",
];

impl Project {
    /// The installed `bmad-retrospective` workflow's entry files, relative to the root, sorted:
    /// found in a folder named `retrospective` or `bmad-retrospective` under `_bmad/` or
    /// `.claude/skills/` (at most six levels down, symlinks not followed). Empty when it is
    /// not installed.
    pub fn retrospective_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for base in ["_bmad", ".claude/skills"] {
            walk(
                self.root(),
                &self.abs(std::path::Path::new(base)),
                6,
                &mut found,
            );
        }
        found.sort();
        found
    }
}

fn walk(root: &std::path::Path, dir: &std::path::Path, depth: u32, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        if !kind.is_dir() {
            continue;
        }
        let path = e.path();
        if e.file_name()
            .to_str()
            .is_some_and(|n| RETROSPECTIVE_DIRS.contains(&n))
        {
            for name in WORKFLOW_FILES {
                let file = path.join(name);
                if file.is_file()
                    && let Ok(rel) = file.strip_prefix(root)
                {
                    found.push(rel.to_owned());
                }
            }
        } else if depth > 0 {
            walk(root, &path, depth - 1, found);
        }
    }
}

/// The `epic-N` and `epic-N-retrospective` keys of an epic.
pub fn epic_keys(epic: u32) -> (String, String) {
    (format!("epic-{epic}"), format!("epic-{epic}-retrospective"))
}
