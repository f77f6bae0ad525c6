//! The project's git repository, as parallel runs (`run --jobs N`) use it: a worktree per story
//! on its own branch, one commit per story, integration of a story branch onto the integration
//! branch (rebase or merge) with conflicts detected and named file by file, and the fast-forward
//! of the integration branch.
//!
//! Every operation is the `git` command line, run under the host's process supervision like a
//! gate (`command.rs`: own process group, a marker, beside the calls, a timeout, teardown on
//! Ctrl-C), never a library: the operator's own git (its configuration, hooks for `worktree`,
//! credential helpers, `safe.directory`, sparse checkouts and file systems) is what they already
//! trust, and a git command is a process the host can prove ended like any other. A failing
//! git is a [`GitError`] naming the command, the folder and git's own words; a conflict is not
//! an error but an [`Integration::Conflict`] naming the files.

mod command;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

pub use command::{MAX_OUTPUT_BYTES, Output};

use crate::process::{Interrupt, Survivor};

/// Why a git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git could not be started.
    #[error("cannot run git in {}: is git installed and on PATH?", dir.display())]
    Spawn {
        /// Where it was to run.
        dir: PathBuf,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// git ran longer than its timeout and was torn down.
    #[error("`{command}` did not finish within {}; it was stopped", humantime::format_duration(*timeout))]
    TimedOut {
        /// The command.
        command: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// The operator pressed Ctrl-C while git ran (it was torn down).
    #[error("`{command}` was interrupted")]
    Interrupted {
        /// The command.
        command: String,
    },
    /// git's end could not be proven: a process of it survived SIGKILL or held its output open.
    #[error("the end of `{command}` cannot be proven ({} process(es) left)", survivors.len())]
    Unproven {
        /// The command.
        command: String,
        /// Who survived.
        survivors: Vec<Survivor>,
    },
    /// git exited with an error.
    #[error("`{command}` failed in {} ({}): {output}", dir.display(), exit_text(*code))]
    Failed {
        /// The command.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// Its exit code.
        code: Option<i32>,
        /// What it said.
        output: String,
    },
    /// The folder is not in a git work tree.
    #[error(
        "{} is not in a git work tree: parallel runs (--jobs > 1) need the project in a git repository (`git init`, then commit the project)",
        dir.display()
    )]
    NotARepository {
        /// The folder.
        dir: PathBuf,
    },
    /// HEAD is detached: there is no integration branch to integrate onto.
    #[error(
        "{} is not on a branch (detached HEAD): check out the branch the stories are to be integrated onto",
        dir.display()
    )]
    Detached {
        /// The folder.
        dir: PathBuf,
    },
    /// The work tree has uncommitted changes.
    #[error(
        "the work tree {} has uncommitted changes ({}): commit or stash them before a parallel run",
        dir.display(),
        files.join(", ")
    )]
    Dirty {
        /// The folder.
        dir: PathBuf,
        /// The changed paths, as `git status --porcelain` lists them.
        files: Vec<String>,
    },
    /// A folder where a story's worktree should be holds something else.
    #[error(
        "{} exists but is not a worktree of branch `{branch}` (it is {found}): move it away, or remove it with `git worktree remove`",
        path.display()
    )]
    NotTheWorktree {
        /// The folder.
        path: PathBuf,
        /// The story's branch.
        branch: String,
        /// What it is instead.
        found: String,
    },
}

fn exit_text(code: Option<i32>) -> String {
    code.map_or_else(|| "killed by a signal".to_string(), |c| format!("exit {c}"))
}

/// How a story branch is brought onto the integration branch (`[git] integrate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Integrate {
    /// Replay the story's commit on the integration branch's head.
    #[default]
    Rebase,
    /// Merge the integration branch into the story branch, then squash.
    Merge,
}

/// How an integration went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integration {
    /// The story branch is now one commit on top of the integration branch's head, ready to be
    /// fast-forwarded to (after the gates pass on it).
    Ready {
        /// The story's commit.
        commit: String,
    },
    /// The story changed nothing: its branch is the integration branch's head.
    Nothing,
    /// The story's changes conflict with the integration branch; the worktree is as it was
    /// before the attempt (the rebase or merge was aborted).
    Conflict {
        /// The conflicting paths, relative to the worktree.
        files: Vec<String>,
        /// What git said.
        output: String,
    },
}

/// A story's worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    /// Its folder.
    pub path: PathBuf,
    /// Its branch.
    pub branch: String,
    /// True when it existed already (a resumed run), false when it was created now.
    pub reused: bool,
}

/// Runs git commands under supervision.
#[derive(Debug, Clone)]
pub struct Git {
    /// How long one git command may run.
    pub timeout: Duration,
    interrupts: watch::Receiver<Interrupt>,
}

/// How long one git command may run by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

impl Git {
    /// git commands that Ctrl-C (`interrupts`) tears down.
    pub fn new(timeout: Duration, interrupts: watch::Receiver<Interrupt>) -> Self {
        Self {
            timeout,
            interrupts,
        }
    }

    /// Runs `git args` in `dir`; any exit code.
    pub async fn output(&self, dir: &Path, args: &[&str]) -> Result<Output, GitError> {
        command::run(dir, args, self.timeout, self.interrupts.clone()).await
    }

    /// Runs `git args` in `dir`; an exit code other than 0 is [`GitError::Failed`].
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<Output, GitError> {
        let out = self.output(dir, args).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(failed(dir, args, &out))
        }
    }

    /// The root of the work tree `dir` is in.
    pub async fn toplevel(&self, dir: &Path) -> Result<PathBuf, GitError> {
        let out = self.output(dir, &["rev-parse", "--show-toplevel"]).await?;
        if !out.success() {
            return Err(GitError::NotARepository {
                dir: dir.to_path_buf(),
            });
        }
        Ok(PathBuf::from(out.stdout.trim_end_matches('\n')))
    }

    /// The branch checked out in `dir`.
    pub async fn branch(&self, dir: &Path) -> Result<String, GitError> {
        let out = self
            .output(dir, &["symbolic-ref", "--quiet", "--short", "HEAD"])
            .await?;
        if !out.success() {
            return Err(GitError::Detached {
                dir: dir.to_path_buf(),
            });
        }
        Ok(out.stdout.trim().to_string())
    }

    /// The commit `rev` names, in full.
    pub async fn rev(&self, dir: &Path, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .run(dir, &["rev-parse", "--verify", "--quiet", &spec])
            .await?;
        Ok(out.stdout.trim().to_string())
    }

    /// The paths with uncommitted changes in `dir` (untracked ones included, ignored ones not),
    /// as `git status --porcelain` shows them (`?? new.txt`, ` M src/lib.rs`).
    pub async fn changes(&self, dir: &Path) -> Result<Vec<String>, GitError> {
        let out = self
            .run(dir, &["status", "--porcelain", "--untracked-files=all"])
            .await?;
        Ok(out.stdout.lines().map(str::to_string).collect())
    }

    /// Fails with [`GitError::Dirty`] when `dir` has uncommitted changes.
    pub async fn require_clean(&self, dir: &Path) -> Result<(), GitError> {
        let files = self.changes(dir).await?;
        if files.is_empty() {
            Ok(())
        } else {
            Err(GitError::Dirty {
                dir: dir.to_path_buf(),
                files,
            })
        }
    }

    /// The worktree of `branch` at `path`: reused when it is there already (a resumed run),
    /// else created, on `branch` if that exists, else on a new `branch` from `from`.
    pub async fn worktree(
        &self,
        repo: &Path,
        path: &Path,
        branch: &str,
        from: &str,
    ) -> Result<Worktree, GitError> {
        if path.exists() {
            let found = match self.branch(path).await {
                Ok(found) => found,
                Err(GitError::Detached { .. }) => "a detached HEAD".to_string(),
                Err(e) => return Err(e),
            };
            // `git -C path` finds the enclosing repository when `path` is a plain folder:
            // only a worktree of its own has its top level at `path`.
            let top = self.toplevel(path).await?;
            if found == branch && same_file(&top, path) {
                return Ok(Worktree {
                    path: path.to_path_buf(),
                    branch: branch.to_string(),
                    reused: true,
                });
            }
            let found = if same_file(&top, path) {
                format!("on `{found}`")
            } else {
                "not a worktree".to_string()
            };
            return Err(GitError::NotTheWorktree {
                path: path.to_path_buf(),
                branch: branch.to_string(),
                found,
            });
        }
        // A worktree whose folder was deleted by hand still holds its branch: forget it.
        self.run(repo, &["worktree", "prune"]).await?;
        let text = path.to_string_lossy();
        let local = format!("refs/heads/{branch}");
        let exists = self
            .output(repo, &["rev-parse", "--verify", "--quiet", &local])
            .await?
            .success();
        if exists {
            self.run(repo, &["worktree", "add", "--quiet", &text, branch])
                .await?;
        } else {
            self.run(
                repo,
                &["worktree", "add", "--quiet", "-b", branch, &text, from],
            )
            .await?;
        }
        Ok(Worktree {
            path: path.to_path_buf(),
            branch: branch.to_string(),
            reused: false,
        })
    }

    /// Removes the worktree at `path` (its untracked files with it); its branch stays.
    pub async fn remove_worktree(&self, repo: &Path, path: &Path) -> Result<(), GitError> {
        let text = path.to_string_lossy();
        self.run(repo, &["worktree", "remove", "--force", &text])
            .await?;
        Ok(())
    }

    /// Commits every change in `dir` (new files included) with `subject` and `body`; `None`
    /// when there was nothing to commit. A merge in progress is concluded by this commit.
    /// Hooks do not run (`--no-verify`): the quality gates are the checks. Without a configured
    /// identity, the commit is bmad-host's.
    pub async fn commit_all(
        &self,
        dir: &Path,
        subject: &str,
        body: &str,
    ) -> Result<Option<String>, GitError> {
        self.commit_all_but(dir, subject, body, &[]).await
    }

    /// [`Git::commit_all`], with `keep_out` (paths relative to `dir`) left out of the commit
    /// (their changes stay in the work tree, uncommitted): the files the host owns.
    pub async fn commit_all_but(
        &self,
        dir: &Path,
        subject: &str,
        body: &str,
        keep_out: &[String],
    ) -> Result<Option<String>, GitError> {
        self.run(dir, &["add", "--all"]).await?;
        for path in keep_out {
            // Unstaged; a path git does not know is no error.
            self.output(dir, &["reset", "--quiet", "--", path]).await?;
        }
        let staged = !self
            .output(dir, &["diff", "--cached", "--quiet"])
            .await?
            .success();
        let merging = self
            .output(dir, &["rev-parse", "--verify", "--quiet", "MERGE_HEAD"])
            .await?
            .success();
        if !staged && !merging {
            return Ok(None);
        }
        let identity = self
            .output(dir, &["config", "--get", "user.email"])
            .await?
            .success();
        let mut args = Vec::new();
        if !identity {
            args.extend([
                "-c",
                "user.name=bmad-host",
                "-c",
                "user.email=bmad-host@localhost",
            ]);
        }
        args.extend(["commit", "--quiet", "--no-verify", "-m", subject]);
        if !body.is_empty() {
            args.extend(["-m", body]);
        }
        self.run(dir, &args).await?;
        Ok(Some(self.rev(dir, "HEAD").await?))
    }

    /// Puts `paths` in `dir` back as they are at `rev` (deleted when `rev` has no such path):
    /// the files the host owns, whose edits in a story's worktree are never merged.
    pub async fn restore(&self, dir: &Path, rev: &str, paths: &[&str]) -> Result<(), GitError> {
        for path in paths {
            let spec = format!("{rev}:{path}");
            let known = self
                .output(dir, &["cat-file", "-e", &spec])
                .await?
                .success();
            if known {
                self.run(dir, &["checkout", rev, "--", path]).await?;
            } else {
                self.run(
                    dir,
                    &["rm", "--quiet", "--force", "--ignore-unmatch", "--", path],
                )
                .await?;
                // Untracked, git leaves it: it goes all the same.
                let _ = std::fs::remove_file(dir.join(path));
            }
        }
        Ok(())
    }

    /// Brings the story branch checked out in `worktree` onto `onto` as one commit with
    /// `subject` and `body`: every change is committed, the story's commits are squashed into
    /// one on their base, and that one is rebased onto `onto` (or `onto` is merged in and the
    /// result squashed on it). A conflict aborts the attempt and names the files; the worktree
    /// then holds the story's one commit on its old base.
    pub async fn integrate(
        &self,
        worktree: &Path,
        onto: &str,
        mode: Integrate,
        subject: &str,
        body: &str,
    ) -> Result<Integration, GitError> {
        self.commit_all(worktree, subject, body).await?;
        let base = self
            .run(worktree, &["merge-base", "HEAD", onto])
            .await?
            .stdout
            .trim()
            .to_string();
        self.run(worktree, &["reset", "--quiet", "--soft", &base])
            .await?;
        if self.commit_all(worktree, subject, body).await?.is_none() {
            // Nothing of its own: the branch goes to `onto` as it is.
            self.run(worktree, &["reset", "--quiet", "--hard", onto])
                .await?;
            return Ok(Integration::Nothing);
        }
        let attempt = match mode {
            Integrate::Rebase => self.output(worktree, &["rebase", "--quiet", onto]).await?,
            Integrate::Merge => {
                let mut args = vec!["merge", "--quiet", "--no-ff", "--no-edit"];
                let identity = self
                    .output(worktree, &["config", "--get", "user.email"])
                    .await?
                    .success();
                if !identity {
                    args.splice(
                        0..0,
                        [
                            "-c",
                            "user.name=bmad-host",
                            "-c",
                            "user.email=bmad-host@localhost",
                        ],
                    );
                }
                args.push(onto);
                self.output(worktree, &args).await?
            }
        };
        if !attempt.success() {
            let files = self.unmerged(worktree).await?;
            let abort = match mode {
                Integrate::Rebase => ["rebase", "--abort"],
                Integrate::Merge => ["merge", "--abort"],
            };
            self.run(worktree, &abort).await?;
            if files.is_empty() {
                return Err(failed(worktree, &[abort[0], onto], &attempt));
            }
            return Ok(Integration::Conflict {
                files,
                output: attempt.text(),
            });
        }
        if mode == Integrate::Merge {
            self.run(worktree, &["reset", "--quiet", "--soft", onto])
                .await?;
            self.commit_all(worktree, subject, body).await?;
        }
        if self.rev(worktree, "HEAD").await? == self.rev(worktree, onto).await? {
            return Ok(Integration::Nothing);
        }
        Ok(Integration::Ready {
            commit: self.rev(worktree, "HEAD").await?,
        })
    }

    /// Starts merging `onto` into the story branch of `worktree` and leaves it unfinished: the
    /// conflicting files hold git's conflict markers for Dev to resolve (the next
    /// [`Git::integrate`] concludes the merge). Returns the conflicting files.
    pub async fn open_conflict(
        &self,
        worktree: &Path,
        onto: &str,
    ) -> Result<Vec<String>, GitError> {
        let out = self
            .output(worktree, &["merge", "--no-commit", "--no-ff", onto])
            .await?;
        if out.success() {
            // It merges cleanly now (the integration branch moved on): nothing to resolve.
            return Ok(Vec::new());
        }
        let files = self.unmerged(worktree).await?;
        if files.is_empty() {
            return Err(failed(worktree, &["merge", "--no-commit", onto], &out));
        }
        Ok(files)
    }

    /// Fast-forwards the branch checked out in `repo` to `to`; refuses anything else.
    pub async fn fast_forward(&self, repo: &Path, to: &str) -> Result<(), GitError> {
        self.run(repo, &["merge", "--quiet", "--ff-only", to])
            .await?;
        Ok(())
    }

    /// The staged files of `dir` that hold git's conflict markers (`git diff --cached
    /// --check`; its whitespace complaints are left out).
    pub async fn staged_conflict_markers(&self, dir: &Path) -> Result<Vec<String>, GitError> {
        let out = self.output(dir, &["diff", "--cached", "--check"]).await?;
        let mut files: Vec<String> = out
            .stdout
            .lines()
            .filter(|l| l.ends_with("leftover conflict marker"))
            .filter_map(|l| l.split(':').next())
            .map(str::to_string)
            .collect();
        files.dedup();
        Ok(files)
    }

    /// The paths with unresolved conflicts in `dir`.
    pub async fn unmerged(&self, dir: &Path) -> Result<Vec<String>, GitError> {
        let out = self
            .run(dir, &["diff", "--name-only", "--diff-filter=U"])
            .await?;
        Ok(out.stdout.lines().map(str::to_string).collect())
    }
}

fn failed(dir: &Path, args: &[&str], out: &Output) -> GitError {
    GitError::Failed {
        command: format!("git {}", args.join(" ")),
        dir: dir.to_path_buf(),
        code: out.code,
        output: out.text(),
    }
}

/// Whether `a` and `b` are the same folder (by identity, so that symbolic links agree).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
