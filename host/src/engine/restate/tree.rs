//! The files a story's steps work on, as the steps leave them: a commit per step that changed
//! them, pushed as the story's branch when the worker's clone shares a remote, and put back at a
//! journaled commit when Restate replays a step (see [`super::steps`]).
//!
//! A worker whose clone has an `origin` (the shared remote of several workers) drives each story
//! in a git worktree of its own (`.bmad-host/workflows/<workflow>`, detached, made from the
//! shared branch's head), so it can drive several at once; its clone's own checkout is left as
//! the operator made it (the configuration is read from there). A lone clone has one work tree:
//! the worker drives its stories there, one at a time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use restate_sdk::prelude::*;

use crate::git::{Git, GitError};

/// The folder of the clone's state folder where each story's worktree is made (a local parallel
/// run's are in `worktrees/`).
const WORKTREES: &str = "workflows";

/// The worker's clone: where its stories' files are, and the lock held while git changes what
/// the worktrees share (the remote-tracking refs a fetch or push writes, the worktree list).
#[derive(Debug)]
pub(crate) struct Checkout {
    /// The project's root in the clone.
    root: PathBuf,
    /// The project's root relative to the clone's top level.
    rel: PathBuf,
    /// Whether the clone has an `origin`: the stories then get worktrees of their own.
    shared: bool,
    git: Git,
    refs: tokio::sync::Mutex<()>,
    /// A shared clone is this worker's alone while it serves (a lone one is locked by the run
    /// loop of each story, which works in it).
    _lock: Option<crate::journal::ProjectLock>,
}

impl Checkout {
    /// The clone whose project is at `root`. A shared one is locked for this worker (no local
    /// run and no other worker may use it meanwhile), and the story worktrees a stopped worker
    /// left there are removed: no story is in flight here yet, and Restate puts back any that
    /// comes again.
    pub(crate) async fn open(root: PathBuf) -> Result<Self, crate::error::Error> {
        let git = quiet_git();
        let top = git.toplevel(&root).await?;
        let rel = match (top.canonicalize(), root.canonicalize()) {
            (Ok(top), Ok(at)) => at.strip_prefix(&top).map(Path::to_path_buf).ok(),
            _ => None,
        }
        .unwrap_or_default();
        let shared = git
            .output(&root, &["remote", "get-url", "origin"])
            .await?
            .success();
        if shared
            && !git
                .output(
                    &root,
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        "refs/remotes/origin/HEAD",
                    ],
                )
                .await?
                .success()
        {
            // Each story would fail at its start, and be retried, forever.
            return Err(super::EngineError::NoOriginHead { clone: root }.into());
        }
        let lock = if shared {
            Some(crate::journal::lock_project(&root)?)
        } else {
            None
        };
        // The worktrees (and the lane's) live in the project's state folder, which git ignores.
        crate::journal::ignore_state_dir(&root);
        let left = crate::journal::state_dir(&root).join(WORKTREES);
        if let Ok(entries) = std::fs::read_dir(&left) {
            for entry in entries.flatten() {
                let path = entry.path();
                if let Err(e) = git.remove_worktree(&root, &path).await {
                    tracing::warn!(
                        "cannot remove the worktree {} a stopped worker left: {}",
                        path.display(),
                        crate::error::Report(&e)
                    );
                }
            }
            git.output(&root, &["worktree", "prune"]).await?;
        }
        Ok(Self {
            root,
            rel,
            shared,
            git,
            refs: tokio::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    /// Whether stories get worktrees of their own (and so may run side by side).
    pub(crate) fn shared(&self) -> bool {
        self.shared
    }

    /// The project's root in the clone.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Held while a git command changes what the clone's worktrees share.
    pub(crate) async fn refs(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refs.lock().await
    }
}

/// A git without Ctrl-C: a worker ends by being stopped.
pub(crate) fn quiet_git() -> Git {
    let (_, interrupts) = tokio::sync::watch::channel(crate::process::Interrupt::None);
    Git::new(crate::git::DEFAULT_TIMEOUT, interrupts)
}

/// A story's files, as the steps leave them.
#[derive(Debug)]
pub(super) struct Tree {
    checkout: Arc<Checkout>,
    /// The top of the work tree the story is driven in: its worktree, or the lone clone's.
    dir: PathBuf,
    /// The project's root in it.
    work: PathBuf,
    /// The story's branch on the shared remote, when there is one.
    branch: Option<String>,
    /// The commit the work tree was last known to be at, clean.
    head: Mutex<Option<String>>,
}

impl Tree {
    /// The files of workflow `key` (story `story`) in `checkout`.
    pub(super) fn open(checkout: &Arc<Checkout>, story: &str, key: &str) -> Self {
        let (dir, branch) = if checkout.shared {
            let name: String = key
                .chars()
                .map(|c| if c == '/' || c == '\\' { '_' } else { c })
                .collect();
            let dir = crate::journal::state_dir(&checkout.root)
                .join(WORKTREES)
                .join(name);
            (dir, Some(format!("bmad/{story}")))
        } else {
            // The clone's top, as `root` spells it (so that the work is `root` itself).
            let top = checkout
                .root
                .ancestors()
                .nth(checkout.rel.components().count())
                .unwrap_or(&checkout.root);
            (top.to_path_buf(), None)
        };
        let work = dir.join(&checkout.rel);
        Self {
            checkout: Arc::clone(checkout),
            dir,
            work,
            branch,
            head: Mutex::new(None),
        }
    }

    /// Whether the steps' commits go to a shared remote.
    pub(super) fn shared(&self) -> bool {
        self.branch.is_some()
    }

    /// The project's root, where the story's run loop works.
    pub(super) fn work(&self) -> &Path {
        &self.work
    }

    fn git(&self) -> &Git {
        &self.checkout.git
    }

    fn known_head(&self) -> Option<String> {
        self.head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_head(&self, sha: &str) {
        *self
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sha.to_string());
    }

    /// The commit the story starts from: the shared branch's head (fetched, and the story's
    /// worktree made there) when there is a shared remote, else whatever the work tree holds
    /// (committed).
    pub(super) async fn start(&self) -> Result<String, HandlerError> {
        if self.shared() {
            let _refs = self.checkout.refs().await;
            let root = &self.checkout.root;
            self.git()
                .run(root, &["fetch", "--quiet", "origin"])
                .await
                .map_err(|e| handler_error(&e))?;
            let base = self
                .git()
                .rev(root, "refs/remotes/origin/HEAD")
                .await
                .map_err(|e| handler_error(&e))?;
            self.put(&base).await.map_err(|e| handler_error(&e))?;
        }
        self.snapshot("base").await
    }

    /// Puts the story's worktree at `sha`, made there when it is not yet (the caller holds
    /// the clone's lock).
    async fn put(&self, sha: &str) -> Result<(), GitError> {
        let git = self.git();
        if self.dir.join(".git").exists() {
            git.run(
                &self.dir,
                &["checkout", "--quiet", "--force", "--detach", sha],
            )
            .await?;
            git.run(&self.dir, &["clean", "--quiet", "-d", "--force"])
                .await?;
            return Ok(());
        }
        let root = &self.checkout.root;
        // A worktree whose folder was removed by hand is still listed: forget it first.
        let _ = git.output(root, &["worktree", "prune"]).await;
        let dir = self.dir.to_string_lossy();
        git.run(
            root,
            &[
                "worktree", "add", "--quiet", "--force", "--detach", &dir, sha,
            ],
        )
        .await?;
        Ok(())
    }

    /// Commits whatever changed (nothing ignored) and names the commit: the work tree as a
    /// step left it. A new commit is pushed as the story's branch when there is a shared remote.
    pub(super) async fn snapshot(&self, step: &str) -> Result<String, HandlerError> {
        // Most steps (the policies' decisions) change nothing: one `git status` then.
        if let Some(head) = self.known_head() {
            let changes = self
                .git()
                .changes(&self.dir)
                .await
                .map_err(|e| handler_error(&e))?;
            if changes.is_empty() {
                return Ok(head);
            }
        }
        let committed = self
            .git()
            .commit_all(&self.dir, &format!("bmad-host: {step}"), "")
            .await
            .map_err(|e| handler_error(&e))?;
        let sha = match committed {
            Some(sha) => sha,
            None => self
                .git()
                .rev(&self.dir, "HEAD")
                .await
                .map_err(|e| handler_error(&e))?,
        };
        if let Some(branch) = &self.branch {
            let refspec = format!("+{sha}:refs/heads/{branch}");
            let _refs = self.checkout.refs().await;
            self.git()
                .run(&self.dir, &["push", "--quiet", "origin", &refspec])
                .await
                .map_err(|e| handler_error(&e))?;
        }
        self.set_head(&sha);
        Ok(sha)
    }

    /// Puts the work tree back at `sha` (ignored files, `.bmad-host/` among them, stay),
    /// fetching the story's branch first when another worker made the commit.
    pub(super) async fn restore(&self, sha: &str) -> Result<(), TerminalError> {
        let fail = |e: GitError| {
            TerminalError::new(format!(
                "cannot put the work tree back at {sha}: {}",
                crate::error::Report(&e)
            ))
        };
        let git = self.git();
        let Some(branch) = &self.branch else {
            // A lone work tree keeps its branch.
            git.run(&self.dir, &["reset", "--quiet", "--hard", sha])
                .await
                .map_err(fail)?;
            git.run(&self.dir, &["clean", "--quiet", "-d", "--force"])
                .await
                .map_err(fail)?;
            self.set_head(sha);
            return Ok(());
        };
        let root = &self.checkout.root;
        let _refs = self.checkout.refs().await;
        let spec = format!("{sha}^{{commit}}");
        let here = git
            .output(root, &["cat-file", "-e", &spec])
            .await
            .map_err(fail)?
            .success();
        if !here {
            let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
            git.run(root, &["fetch", "--quiet", "origin", &refspec])
                .await
                .map_err(fail)?;
        }
        self.put(sha).await.map_err(fail)?;
        self.set_head(sha);
        Ok(())
    }

    /// Back to Dev after the lane refused the story: merges the shared branch's head (fetched)
    /// into the story's files. The conflicts stay, with git's markers, for Dev to resolve, but
    /// a v6 sprint-status's, merged key by key as the lane does; the merge is committed as it
    /// is (markers and all) and pushed as the story's branch. Returns the commit.
    pub(super) async fn reopen(&self) -> Result<String, HandlerError> {
        let fail = |e: &GitError| handler_error(e);
        let git = self.git();
        let root = &self.checkout.root;
        let shared = {
            let _refs = self.checkout.refs().await;
            git.run(root, &["fetch", "--quiet", "origin"])
                .await
                .map_err(|e| fail(&e))?;
            git.rev(root, "refs/remotes/origin/HEAD")
                .await
                .map_err(|e| fail(&e))?
        };
        let story = git.rev(&self.dir, "HEAD").await.map_err(|e| fail(&e))?;
        let files = git
            .open_conflict(&self.dir, &shared)
            .await
            .map_err(|e| fail(&e))?;
        if let Some(sprint) = super::lane::sprint_path(root, git).await
            && files.contains(&sprint)
        {
            super::lane::merge_sprint(git, &self.dir, &sprint, &shared, &story)
                .await
                .map_err(|why| HandlerError::from(std::io::Error::other(why)))?;
        }
        // Whatever it holds now is new: commit it even when `git status` would show nothing
        // (a clean merge with no change still concludes the merge).
        *self
            .head
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.snapshot("reopen").await
    }

    /// Removes the story's worktree (its branch stays on the shared remote): the story has
    /// ended. A lone clone's work tree stays as the story left it.
    pub(super) async fn remove(&self) {
        if !self.shared() || !self.dir.exists() {
            return;
        }
        let _refs = self.checkout.refs().await;
        if let Err(e) = self
            .git()
            .remove_worktree(&self.checkout.root, &self.dir)
            .await
        {
            tracing::warn!(
                "cannot remove the story's worktree {}: {}",
                self.dir.display(),
                crate::error::Report(&e)
            );
        }
    }
}

fn handler_error(e: &GitError) -> HandlerError {
    HandlerError::from(std::io::Error::other(crate::error::Report(e).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    /// A repository with one commit, as `remote`, and a clone of it, `clone`.
    fn remote_and_clone() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let remote = dir.path().join("remote");
        std::fs::create_dir_all(&remote).expect("dir");
        git(&remote, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(remote.join("a.txt"), "a\n").expect("write");
        git(&remote, &["add", "--all"]);
        git(
            &remote,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "--quiet",
                "-m",
                "a",
            ],
        );
        git(dir.path(), &["clone", "--quiet", "remote", "clone"]);
        dir
    }

    #[tokio::test]
    async fn a_clone_is_locked_for_its_worker_and_its_stale_worktrees_go() {
        let dir = remote_and_clone();
        let root = dir.path().join("clone");
        let stale = root.join(".bmad-host").join(WORKTREES).join("stale");
        std::fs::create_dir_all(stale.parent().expect("parent")).expect("dir");
        git(
            &root,
            &[
                "worktree",
                "add",
                "--quiet",
                "--detach",
                "-f",
                &stale.to_string_lossy(),
            ],
        );
        let checkout = Checkout::open(root.clone()).await.expect("opens");
        assert!(checkout.shared());
        assert!(!stale.exists(), "the stale worktree is removed");
        let second = Checkout::open(root.clone()).await.expect_err("locked");
        assert!(
            matches!(
                second,
                crate::error::Error::Journal(crate::journal::JournalError::Locked { .. })
            ),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn an_origin_without_a_known_default_branch_is_named_with_the_fix() {
        let dir = remote_and_clone();
        let root = dir.path().join("clone");
        git(&root, &["remote", "set-head", "origin", "--delete"]);
        let e = Checkout::open(root.clone()).await.expect_err("refused");
        let text = e.to_string();
        assert!(text.contains("remote set-head origin --auto"), "{text}");
        assert!(text.contains(&root.display().to_string()), "{text}");
    }
}
