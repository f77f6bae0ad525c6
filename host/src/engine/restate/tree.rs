//! The project's git work tree as a story's steps leave it: a commit per step that changed it,
//! pushed as the story's branch when the worker's clone shares a remote, and put back at a
//! journaled commit when Restate replays a step (see [`super::steps`]).

use std::path::PathBuf;
use std::sync::Mutex;

use restate_sdk::prelude::*;

/// The project's git work tree, as the steps leave it. When the worker's clone has an `origin`
/// (the shared remote of several workers), each commit is pushed there as the story's branch
/// (`bmad/<story>`), and a commit another worker made is fetched from it before the work tree is
/// put back at it.
#[derive(Debug)]
pub(super) struct Tree {
    root: PathBuf,
    git: crate::git::Git,
    /// The story's branch on the shared remote, when there is one.
    branch: Option<String>,
    /// The commit the work tree was last known to be at, clean.
    head: Mutex<Option<String>>,
}

impl Tree {
    /// Whether the steps' commits go to a shared remote.
    pub(super) fn shared(&self) -> bool {
        self.branch.is_some()
    }

    /// The work tree at `root`, for `story`'s steps.
    pub(super) async fn open(root: PathBuf, story: &str) -> Self {
        // No Ctrl-C reaches a worker's git commands: the worker ends by being stopped.
        let (_, interrupts) = tokio::sync::watch::channel(crate::process::Interrupt::None);
        let git = crate::git::Git::new(crate::git::DEFAULT_TIMEOUT, interrupts);
        let shared = git
            .output(&root, &["remote", "get-url", "origin"])
            .await
            .is_ok_and(|o| o.success());
        Self {
            root,
            git,
            branch: shared.then(|| format!("bmad/{story}")),
            head: Mutex::new(None),
        }
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

    /// The commit the story starts from: the shared branch's head (fetched) when there is a
    /// shared remote, else whatever the work tree holds (committed).
    pub(super) async fn start(&self) -> Result<String, HandlerError> {
        if self.branch.is_some() {
            self.git
                .run(&self.root, &["fetch", "--quiet", "origin"])
                .await
                .map_err(|e| handler_error(&e))?;
            self.git
                .run(
                    &self.root,
                    &[
                        "checkout",
                        "--quiet",
                        "--force",
                        "--detach",
                        "refs/remotes/origin/HEAD",
                    ],
                )
                .await
                .map_err(|e| handler_error(&e))?;
        }
        self.snapshot("base").await
    }

    /// Commits whatever changed (nothing ignored) and names the commit: the work tree as a
    /// step left it. A new commit is pushed as the story's branch when there is a shared remote.
    pub(super) async fn snapshot(&self, step: &str) -> Result<String, HandlerError> {
        // Most steps (the policies' decisions) change nothing: one `git status` then.
        if let Some(head) = self.known_head() {
            let changes = self
                .git
                .changes(&self.root)
                .await
                .map_err(|e| handler_error(&e))?;
            if changes.is_empty() {
                return Ok(head);
            }
        }
        let committed = self
            .git
            .commit_all(&self.root, &format!("bmad-host: {step}"), "")
            .await
            .map_err(|e| handler_error(&e))?;
        let sha = match committed {
            Some(sha) => sha,
            None => self
                .git
                .rev(&self.root, "HEAD")
                .await
                .map_err(|e| handler_error(&e))?,
        };
        if let Some(branch) = &self.branch {
            let refspec = format!("+{sha}:refs/heads/{branch}");
            self.git
                .run(&self.root, &["push", "--quiet", "origin", &refspec])
                .await
                .map_err(|e| handler_error(&e))?;
        }
        self.set_head(&sha);
        Ok(sha)
    }

    /// Puts the work tree back at `sha` (ignored files, `.bmad-host/` among them, stay),
    /// fetching the story's branch first when another worker made the commit.
    pub(super) async fn restore(&self, sha: &str) -> Result<(), TerminalError> {
        let fail = |e: crate::git::GitError| {
            TerminalError::new(format!(
                "cannot put the work tree back at {sha}: {}",
                crate::error::Report(&e)
            ))
        };
        let spec = format!("{sha}^{{commit}}");
        let here = self
            .git
            .output(&self.root, &["cat-file", "-e", &spec])
            .await
            .map_err(fail)?
            .success();
        if !here && let Some(branch) = &self.branch {
            let refspec = format!("+refs/heads/{branch}:refs/remotes/origin/{branch}");
            self.git
                .run(&self.root, &["fetch", "--quiet", "origin", &refspec])
                .await
                .map_err(fail)?;
        }
        // A worker's own clone works detached; a lone work tree keeps its branch.
        let put: &[&str] = if self.branch.is_some() {
            &["checkout", "--quiet", "--force", "--detach", sha]
        } else {
            &["reset", "--quiet", "--hard", sha]
        };
        self.git.run(&self.root, put).await.map_err(fail)?;
        self.git
            .run(&self.root, &["clean", "--quiet", "-d", "--force"])
            .await
            .map_err(fail)?;
        self.set_head(sha);
        Ok(())
    }
}

fn handler_error(e: &crate::git::GitError) -> HandlerError {
    HandlerError::from(std::io::Error::other(crate::error::Report(e).to_string()))
}
