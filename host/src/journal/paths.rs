//! Where the journal keeps its files under the project root.

use std::path::{Path, PathBuf};

use super::RunId;

/// The host's directory under the project root.
pub const STATE_DIR: &str = ".bmad-host";
/// The journal database, in [`STATE_DIR`].
pub const JOURNAL_FILE: &str = "journal.sqlite";
/// The run lock, in [`STATE_DIR`]: holds the pid of the running host.
pub const LOCK_FILE: &str = "run.lock";

/// `<project>/.bmad-host`.
pub fn state_dir(project_root: &Path) -> PathBuf {
    project_root.join(STATE_DIR)
}

/// Makes `<project>/.bmad-host` with a `.gitignore` that keeps it (the journal, transcripts,
/// temp files, worktrees) out of the project's git status; a failure is only logged.
pub fn ignore_state_dir(project_root: &Path) {
    let dir = state_dir(project_root);
    let ignore = dir.join(".gitignore");
    if ignore.exists() {
        return;
    }
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&ignore, "# bmad-host's journal and transcripts\n*\n"));
    if let Err(e) = made {
        tracing::warn!("cannot write {}: {e}", ignore.display());
    }
}

/// `<project>/.bmad-host/journal.sqlite`.
pub fn journal_path(project_root: &Path) -> PathBuf {
    state_dir(project_root).join(JOURNAL_FILE)
}

/// `<project>/.bmad-host/runs/<run-id>`: the run's transcripts. Not created here.
pub fn run_dir(project_root: &Path, run: &RunId) -> PathBuf {
    state_dir(project_root).join("runs").join(run.as_str())
}

/// The transcript of one agent call:
/// `<project>/.bmad-host/runs/<run-id>/<story>-c<cycle>-<role>[-a<attempt>].jsonl`, the attempt
/// suffix only from the second attempt on (a step redone after a crash, see
/// [`super::StepStart::Retry`]), so an interrupted attempt's transcript is kept. Characters of
/// `story` and `role` outside `[A-Za-z0-9._-]` become `_`. The directory is not created here.
pub fn transcript_path(
    project_root: &Path,
    run: &RunId,
    story: &str,
    cycle: u32,
    role: &str,
    attempt: u32,
) -> PathBuf {
    let mut name = format!(
        "{}-c{cycle}-{}",
        file_component(story),
        file_component(role)
    );
    if attempt > 1 {
        name.push_str(&format!("-a{attempt}"));
    }
    name.push_str(".jsonl");
    run_dir(project_root, run).join(name)
}

fn file_component(s: &str) -> String {
    if s.is_empty() {
        return "_".to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
