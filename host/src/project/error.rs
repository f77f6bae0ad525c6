//! The errors of the project module: each names the file (and line where it applies) and says
//! what to do about it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::id::{ParseStoryIdError, StoryId};

/// A file, optionally with a 1-based line, displayed as `path` or `path:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLoc {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line, when one applies.
    pub line: Option<u32>,
}

impl FileLoc {
    pub(crate) fn new(path: impl Into<PathBuf>, line: Option<u32>) -> Self {
        Self {
            path: path.into(),
            line,
        }
    }
}

impl fmt::Display for FileLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Everything that can go wrong finding, reading or writing a BMAD project's files.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The project root is missing or not a directory.
    #[error("project root {} is not a directory: pass --project DIR with the BMAD project's root", .root.display())]
    NotADirectory {
        /// The root that was given.
        root: PathBuf,
    },

    /// Neither BMAD layout was found.
    #[error(
        "no BMAD project at {}: looked for {looked_for}; run bmad-host in the project root or pass --project DIR",
        .root.display()
    )]
    NoLayout {
        /// The root that was searched.
        root: PathBuf,
        /// What was looked for, for the message.
        looked_for: String,
    },

    /// A BMAD v6 installation with neither the story workflows nor the build skills.
    #[error(
        "BMAD {version} at {} has no implementation flow bmad-host can run: neither the build skills (bmad-build / bmad-build-auto, BMAD 6.11+) nor the story workflows (create-story / dev-story, or their 6.11+ shims) are installed (looked for {looked_for}); install BMAD for Claude Code (`npx bmad-method install`, which installs bmad-build), or add the shims (`npx bmad-method install --shims`) to keep the create-story / dev-story flow",
        .root.display()
    )]
    NoFlow {
        /// The project root.
        root: PathBuf,
        /// The installed version, as found.
        version: String,
        /// What was looked for.
        looked_for: String,
    },

    /// A file could not be read, listed or written.
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// What was being done (`read`, `list`, `write`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// A YAML file did not parse.
    #[error("{at}: invalid YAML: {detail}; {fix}")]
    Yaml {
        /// The file and line of the error.
        at: FileLoc,
        /// The parser's message.
        detail: String,
        /// What to do.
        fix: String,
    },

    /// A configuration key is missing, empty or of the wrong type.
    #[error("{at}: `{key}` {problem}; {fix}")]
    ConfigKey {
        /// The config file and the key's line (when found).
        at: FileLoc,
        /// The key, dotted for nested keys (`qa.qaLocation`).
        key: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// `sprint-status.yaml` is unusable.
    #[error("{at}: {problem}; {fix}")]
    SprintStatus {
        /// The file and line.
        at: FileLoc,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },

    /// A file the host reads or writes for the project leads outside the project root (a
    /// symlink, or `..`): bmad-host never reads or writes through it.
    #[error(
        "{} leads outside the project root {} (to {}): bmad-host does not read or write files outside the project; replace the link with a file inside the project",
        .path.display(), .root.display(), .target.display()
    )]
    OutsideProject {
        /// The file, as the project names it.
        path: PathBuf,
        /// Where it really is.
        target: PathBuf,
        /// The project root.
        root: PathBuf,
    },

    /// A file is larger than the host reads.
    #[error("{} is {size} bytes, over the {limit}-byte limit for {what}: shorten the file", .path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// What kind of file (`a story`, `a QA gate`).
        what: &'static str,
    },

    /// The story has no file yet.
    #[error("story {id} has no file at {} yet: the SM agent must create it first", .path.display())]
    StoryMissing {
        /// The story.
        id: StoryId,
        /// Where its file is expected.
        path: PathBuf,
    },

    /// The status value is not where the caller read it: the file changed in between.
    #[error(
        "{at}: the story changed since it was read: `{expected}` is no longer on this line (it reads `{found}`); re-read the story and decide again"
    )]
    StatusChanged {
        /// The story file and the status line.
        at: FileLoc,
        /// The raw status text the caller read.
        expected: String,
        /// What the line holds now (clipped).
        found: String,
    },

    /// The status value cannot be rewritten in place.
    #[error("{at}: cannot rewrite the status: {problem}")]
    StatusNotWritable {
        /// The story file and the status line.
        at: FileLoc,
        /// Why.
        problem: String,
    },

    /// No story with this id.
    #[error("story {id} not found in this project; known stories: {known}")]
    UnknownStory {
        /// The id asked for.
        id: StoryId,
        /// The known ids, for the message.
        known: String,
    },

    /// No epic with this number.
    #[error("epic {epic} not found in this project; known epics: {known}")]
    UnknownEpic {
        /// The epic asked for.
        epic: u32,
        /// The known epic numbers, for the message.
        known: String,
    },

    /// A story was selected together with an epic it is not part of.
    #[error("story {id} is not in epic {epic}: drop --epic or pick a story of epic {epic}")]
    StoryNotInEpic {
        /// The story.
        id: StoryId,
        /// The epic.
        epic: u32,
    },

    /// A story id did not parse.
    #[error(transparent)]
    InvalidStoryId(#[from] ParseStoryIdError),
}

impl ProjectError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        ProjectError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn key(
        path: &Path,
        line: Option<u32>,
        key: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        ProjectError::ConfigKey {
            at: FileLoc::new(path, line),
            key: key.to_owned(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub(crate) fn yaml(path: &Path, err: &serde_yaml_ng::Error, fix: impl Into<String>) -> Self {
        let line = err.location().and_then(|l| u32::try_from(l.line()).ok());
        ProjectError::Yaml {
            at: FileLoc::new(path, line),
            detail: err.to_string(),
            fix: fix.into(),
        }
    }
}

/// A problem the host tolerated (a documented lenient reading); shown to the user, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The file and line it is about.
    #[serde(serialize_with = "ser_loc")]
    pub at: FileLoc,
    /// What was tolerated and how it was read.
    pub message: String,
}

fn ser_loc<S: serde::Serializer>(loc: &FileLoc, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(loc)
}

impl Warning {
    pub(crate) fn new(path: &Path, line: Option<u32>, message: impl Into<String>) -> Self {
        Self {
            at: FileLoc::new(path, line),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}
