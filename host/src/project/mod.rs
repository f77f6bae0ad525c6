//! BMAD projects: finding the layout (v4 `.bmad-core`, v6 `_bmad`), epics, stories, sprint-status and QA gates; safe status writes.
//!
//! [`Project::discover`] reads the project's own configuration and follows it; the host then asks
//! it for stories ([`Project::stories`], [`Project::select`]), their text
//! ([`Project::read_story`], handed to the status-parser plugin), their QA gate
//! ([`Project::read_qa_gate`]) and, when a policy decides a transition, writes the new status
//! ([`Project::write_status`]). This module never interprets a story's status: the status parser
//! does, and passes its [`StatusValue`](crate::policy::StatusValue) back for writing.
//!
//! # Layouts
//!
//! - **v4**: `.bmad-core/core-config.yaml` (`devStoryLocation` required; `prd.prdFile`,
//!   `prd.prdSharded`, `prd.prdShardedLocation`, `prd.epicFilePattern`, `qa.qaLocation` with the
//!   BMAD defaults; pre-`prd:` configs with those keys at the top level work too), version from
//!   `.bmad-core/install-manifest.yaml`. Story files `{devStoryLocation}/{epic}.{story}.story.md`
//!   (any `{epic}.{story}.*.md` is found), QA gates
//!   `{qaLocation}/gates/{epic}.{story}-{slug}.yml` (found by `{epic}.{story}-*.yml`).
//! - **v6**: `_bmad/bmm/config.yaml` (`implementation_artifacts`, `planning_artifacts`, with
//!   `{project-root}` and `{output_folder}` resolved; the 6.0-alpha `sprint_artifacts` is
//!   accepted), version from `_bmad/_config/manifest.yaml`, else the config's `# Version:`
//!   comment (6.12 builds), else `_bmad/core/config.yaml`'s. Epics from
//!   `{planning_artifacts}/epics.md` or a sharded `epics/` folder; story files
//!   `{implementation_artifacts}/{epic}-{story}-{slug}.md` (6.12's `spec-` prefix accepted);
//!   `{implementation_artifacts}/sprint-status.yaml`. v6 has no gate files. The `bmad-spec`
//!   folders of 6.12 (`specs/*/stories.yaml`) are not stories of the epic plan and are ignored.
//! - The flow ([`Project::flow`], `flow.rs`): v4; the v6 story flow when the `create-story` /
//!   `dev-story` workflows or shims are installed; the 6.11+ build flow when `bmad-build` is
//!   and they are not (stories without a file then get the spec path `spec-{key}.md`, and an
//!   existing spec is preferred to a story file); [`ProjectError::NoFlow`] for neither.
//! - Both present: v6 is used, with a warning. Neither: [`ProjectError::NoLayout`] says what was
//!   looked for (and what was half there).
//!
//! Broken configuration is an error naming the file, the line and the key, and saying what to
//! write (`core-config.yaml:2: `devStoryLocation` is empty; set it to a path...`). Missing
//! planning documents (no PRD, no epics.md, no sprint-status yet) are [`Warning`]s: the stories
//! that exist as files are still found.
//!
//! # Stories
//!
//! Every story the plan names, every story file, and (v6) every story key of sprint-status is
//! one [`StoryEntry`], sorted numerically ([`StoryId`]: `1.2 < 1.10`, `4.4 < 4.4a`). A story
//! without a file gets the path where the SM agent must create it: v4
//! `{devStoryLocation}/{epic}.{story}.story.md`; v6 `{implementation_artifacts}/{key}.md`, where
//! the key is the story's sprint-status key, else `{epic}-{story}-{slug}` with the slug derived
//! from the title as `sprint_plan.py` does (lowercase, runs of non-`[a-z0-9]` → `-`).
//!
//! # Epic and story headings
//!
//! Headings of level 1 to 6, in both styles (`## Epic 1: Title` / `# Epic 1 Title`,
//! `### Story 1.1: Title` / `## Story 1.1 Title`), case-insensitive keywords. Tolerated on
//! purpose (as `malformed/epic-duplicate-and-odd-headings.md` shows them in the wild): ids with a
//! dash (`4-5`), a letter suffix (`4.4a`), no title (`4.6`: empty title, slug `untitled`, a
//! warning), bold around the heading text (`## **Story 4.7: X**`), no space after the hashes
//! (`##Story 4.8`), a closing `##` sequence. Ignored: headings inside fenced code blocks (``` and
//! `~~~`, an unclosed fence hides the rest of the document, with a warning), inside HTML comments,
//! in YAML frontmatter, indented four spaces or more, and list items such as `- **Epic 1: X**`.
//! A duplicated story heading (`4.2` twice) keeps the first, with a warning naming both lines;
//! a duplicated epic heading (v6 lists epics before their sections) keeps the first non-empty
//! title and points at the last heading. A heading that starts like a story or epic but does not
//! parse (`Story 1.2.3`, a number too large) is a warning, never a panic. An epic with no stories
//! (`malformed/epic-no-stories.md`) is an epic with zero stories.
//!
//! # sprint-status.yaml (v6)
//!
//! Errors (naming the file and line): invalid YAML, an empty file, no `development_status`, or a
//! `development_status` that is not a mapping. Lenient, with warnings: duplicate keys (the last
//! one counts, as lenient YAML readers do), values that are not exact (`Done` → done; legacy
//! `drafted` → ready-for-dev, `contexted` → in-progress) or not legal (`wip`, `started`,
//! `ready-for-review`, `completed`: read as unknown), story keys without a slug (`1-1`), keys it
//! does not know (ignored). `1-10-x` is story 1.10, never 1.1. Timestamps are not checked.
//!
//! # Status writes
//!
//! [`Project::write_status`] replaces the caller's `raw` value on its line and nothing else:
//! every other byte (BOM, CRLF or CR line ends, no final newline, the label, bold/quotes/backticks
//! around the value) stays. The whole `raw` is replaced, trailing notes included (`Done - QA gate
//! PASS` → `InProgress`): the note described the old state. Spelling per layout: see
//! [`status_spelling`]. The write is atomic (temp file in the same folder, fsync, rename, fsync of
//! the folder) and refused, writing nothing, when `raw` is no longer on that line or the file
//! changes during the write: the host never writes a file it did not just read and locate.
//!
//! # Drift rule
//!
//! The story file is the truth; `sprint-status.yaml` follows it. When they disagree,
//! [`Project::drift`] returns a [`Drift`] for the caller to log and show, and the next
//! [`Project::write_status`] of that story (or [`Project::sync_sprint_status`]) sets the story's
//! key to the story file's state, editing that one value in place (comments, order, quoting and
//! every other byte kept). The story file is written first; a sprint-status that cannot be
//! edited (no key for the story, a layout other than one `key: value` per line, a broken file) is
//! left alone and reported as [`SprintSync::NotUpdated`], never undoing the story write.
//! `blocked` has no sprint-status value, so a blocked story's key is left as it is and is not
//! drift. A story without a file whose key is not `backlog` is drift. A status write touches only
//! the story's key.
//!
//! # The host's ledger (reconciliation)
//!
//! During a run the host is the only writer of the sprint-status values it owns: the story keys
//! (from the story files), the epic keys (from their stories) and, after it ran one, an epic's
//! retrospective key. [`Project::plan_sprint_ledger`] compares the file with what the host knows
//! and plans putting those values back, editing only their tokens; everything else an agent or a
//! person wrote (order, comments, other keys) is kept. The ownership rules are in the `ledger`
//! module's documentation (and the README's "sprint-status" section).
//!
//! # What a story declares (parallel runs)
//!
//! [`declared`] reads a story's footprint (the paths and globs its tasks, code map, file list or
//! frontmatter name) and its `depends_on`; [`overlap`] says whether two footprints may touch a
//! common file. The rules are in `footprint.rs`.
//!
//! # Limits
//!
//! Story files over [`MAX_STORY_BYTES`] (8 MiB) and epic documents over 8 MiB are refused with
//! [`ProjectError::TooLarge`]; config, sprint-status and gate files over 1 MiB too. Parsing is
//! linear in the input.

mod config;
mod discover;
mod error;
mod flow;
mod folder_index;
mod footprint;
mod fs;
mod gate;
mod headings;
mod id;
mod ledger;
mod sprint;
mod text;
mod write;

pub use config::PrdSource;
pub use discover::{Epic, Project, StoryEntry};
pub use error::{FileLoc, ProjectError, Warning};
pub use flow::{BmadFlow, CLAUDE_SKILLS, FlowChoice, SKILL_MANIFEST};
pub use footprint::{Declared, declared, overlap};
pub use gate::{GateVerdict, QaGate};
pub use headings::{EpicDoc, EpicHeading, StoryHeading, parse_epic_doc};
pub use id::{ParseStoryIdError, StoryId};
pub use ledger::{Known, LedgerChange, LedgerPlan, epic_keys};
pub use sprint::{
    EPIC_VALUES, RETROSPECTIVE_VALUES, STORY_VALUES, SprintEntry, SprintKey, SprintStatus,
    epic_value, merge_story_keys, sprint_spelling, sprint_value_state, story_rank,
};
pub use text::slug;
pub use write::{Drift, MAX_STORY_BYTES, SprintSync, StoryText, Written, status_spelling};
