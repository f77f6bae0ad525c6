//! The git operations on temporary repositories, with the real `git`.

use std::path::Path;
use std::process::Command;

use tokio::sync::watch;

use super::*;

/// A repository with one commit on `main` (`a.txt`, `b.txt`), an identity, and `.bmad-host/`
/// ignored as the run loop does it.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    sh(root, &["init", "--quiet", "--initial-branch=main"]);
    sh(root, &["config", "user.name", "Tester"]);
    sh(root, &["config", "user.email", "tester@example.com"]);
    std::fs::write(root.join("a.txt"), "one\ntwo\nthree\n").expect("write");
    std::fs::write(root.join("b.txt"), "b\n").expect("write");
    std::fs::create_dir_all(root.join(".bmad-host")).expect("dir");
    std::fs::write(root.join(".bmad-host/.gitignore"), "*\n").expect("write");
    sh(root, &["add", "--all"]);
    sh(root, &["commit", "--quiet", "-m", "initial"]);
    dir
}

/// Runs git synchronously for the test's own setup and checks; returns stdout.
fn sh(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("LC_ALL", "C")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn git() -> (Git, watch::Sender<Interrupt>) {
    let (tx, rx) = watch::channel(Interrupt::None);
    (Git::new(DEFAULT_TIMEOUT, rx), tx)
}

fn log(dir: &Path) -> Vec<String> {
    sh(dir, &["log", "--format=%s", "main"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn a_story_worktree_is_created_reused_and_removed() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    assert_eq!(git.branch(root).await.expect("branch"), "main");
    git.require_clean(root).await.expect("clean");
    let path = root.join(".bmad-host/worktrees/1.1");
    let wt = git
        .worktree(root, &path, "bmad/1.1", "main")
        .await
        .expect("worktree");
    assert!(!wt.reused);
    assert_eq!(git.branch(&path).await.expect("branch"), "bmad/1.1");
    // The main checkout stays clean: the worktree is under the ignored `.bmad-host/`.
    git.require_clean(root).await.expect("still clean");
    let again = git
        .worktree(root, &path, "bmad/1.1", "main")
        .await
        .expect("again");
    assert!(again.reused);
    git.remove_worktree(root, &path).await.expect("removed");
    assert!(!path.exists());
    // The branch stays, and a new worktree of it is made from it.
    let back = git
        .worktree(root, &path, "bmad/1.1", "main")
        .await
        .expect("back");
    assert!(!back.reused);
}

#[tokio::test]
async fn a_folder_that_is_not_the_worktree_is_refused_by_name() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    let path = root.join(".bmad-host/worktrees/1.2");
    std::fs::create_dir_all(&path).expect("dir");
    let err = git
        .worktree(root, &path, "bmad/1.2", "main")
        .await
        .expect_err("refused");
    assert!(matches!(err, GitError::NotTheWorktree { .. }), "{err}");
    assert!(err.to_string().contains("not a worktree"), "{err}");
}

#[tokio::test]
async fn a_dirty_tree_and_a_detached_head_and_no_repository_are_named() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    std::fs::write(root.join("a.txt"), "changed\n").expect("write");
    std::fs::write(root.join("new.txt"), "new\n").expect("write");
    let err = git.require_clean(root).await.expect_err("dirty");
    let text = err.to_string();
    assert!(text.contains("a.txt") && text.contains("new.txt"), "{text}");
    sh(root, &["checkout", "--quiet", "--", "a.txt"]);
    std::fs::remove_file(root.join("new.txt")).expect("rm");
    sh(root, &["checkout", "--quiet", "--detach"]);
    assert!(matches!(
        git.branch(root).await,
        Err(GitError::Detached { .. })
    ));
    let plain = tempfile::tempdir().expect("dir");
    assert!(matches!(
        git.toplevel(plain.path()).await,
        Err(GitError::NotARepository { .. })
    ));
}

#[tokio::test]
async fn two_stories_integrate_in_order_as_one_commit_each() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    let one = root.join(".bmad-host/worktrees/1.1");
    let two = root.join(".bmad-host/worktrees/1.2");
    git.worktree(root, &one, "bmad/1.1", "main")
        .await
        .expect("1.1");
    git.worktree(root, &two, "bmad/1.2", "main")
        .await
        .expect("1.2");
    // 1.1 works in two commits (a checkpoint, then uncommitted work); 1.2 in one file.
    std::fs::write(one.join("one.txt"), "1\n").expect("write");
    git.commit_all(&one, "checkpoint", "")
        .await
        .expect("commit");
    std::fs::write(one.join("one-more.txt"), "1\n").expect("write");
    std::fs::write(two.join("two.txt"), "2\n").expect("write");

    let first = git
        .integrate(
            &one,
            "main",
            Integrate::Rebase,
            "1.1: First",
            "review: PASS",
        )
        .await
        .expect("integrate 1.1");
    let Integration::Ready { commit } = first else {
        panic!("{first:?}")
    };
    git.fast_forward(root, "bmad/1.1").await.expect("ff");
    assert_eq!(git.rev(root, "main").await.expect("rev"), commit);
    let second = git
        .integrate(
            &two,
            "main",
            Integrate::Merge,
            "1.2: Second",
            "review: PASS",
        )
        .await
        .expect("integrate 1.2");
    assert!(matches!(second, Integration::Ready { .. }), "{second:?}");
    git.fast_forward(root, "bmad/1.2").await.expect("ff");
    assert_eq!(log(root), ["1.2: Second", "1.1: First", "initial"]);
    let body = sh(root, &["log", "-1", "--format=%b", "main"]);
    assert_eq!(body.trim(), "review: PASS");
    for file in ["one.txt", "one-more.txt", "two.txt"] {
        assert!(root.join(file).exists(), "{file} reached the main checkout");
    }
    git.require_clean(root)
        .await
        .expect("clean after the fast-forwards");
}

#[tokio::test]
async fn a_textual_conflict_is_named_then_resolved_in_the_worktree() {
    for mode in [Integrate::Rebase, Integrate::Merge] {
        let dir = repo();
        let root = dir.path();
        let (git, _tx) = git();
        let one = root.join(".bmad-host/worktrees/1.1");
        let two = root.join(".bmad-host/worktrees/1.2");
        git.worktree(root, &one, "bmad/1.1", "main")
            .await
            .expect("1.1");
        git.worktree(root, &two, "bmad/1.2", "main")
            .await
            .expect("1.2");
        std::fs::write(one.join("a.txt"), "one\nTWO by 1.1\nthree\n").expect("write");
        std::fs::write(two.join("a.txt"), "one\nTWO by 1.2\nthree\n").expect("write");
        std::fs::write(two.join("c.txt"), "c\n").expect("write");
        let first = git
            .integrate(&one, "main", mode, "1.1: First", "")
            .await
            .expect("1.1");
        assert!(matches!(first, Integration::Ready { .. }));
        git.fast_forward(root, "bmad/1.1").await.expect("ff");

        let second = git
            .integrate(&two, "main", mode, "1.2: Second", "")
            .await
            .expect("1.2");
        let Integration::Conflict { files, output } = second else {
            panic!("{mode:?}: {second:?}")
        };
        assert_eq!(files, ["a.txt"], "{mode:?}");
        assert!(output.contains("CONFLICT"), "{mode:?}: {output}");
        // Aborted: the worktree holds the story's own work, nothing half-merged.
        let text = std::fs::read_to_string(two.join("a.txt")).expect("read");
        assert_eq!(text, "one\nTWO by 1.2\nthree\n");
        assert!(git.changes(&two).await.expect("status").is_empty());

        // Back to Dev: the conflict is opened in the worktree, Dev resolves it.
        let open = git.open_conflict(&two, "main").await.expect("open");
        assert_eq!(open, ["a.txt"]);
        let marked = std::fs::read_to_string(two.join("a.txt")).expect("read");
        assert!(marked.contains("<<<<<<<"), "{marked}");
        std::fs::write(two.join("a.txt"), "one\nTWO by 1.1 and 1.2\nthree\n").expect("write");
        let again = git
            .integrate(&two, "main", mode, "1.2: Second", "")
            .await
            .expect("1.2 again");
        assert!(matches!(again, Integration::Ready { .. }), "{again:?}");
        git.fast_forward(root, "bmad/1.2").await.expect("ff");
        assert_eq!(
            log(root),
            ["1.2: Second", "1.1: First", "initial"],
            "{mode:?}"
        );
        let merged = std::fs::read_to_string(root.join("a.txt")).expect("read");
        assert_eq!(merged, "one\nTWO by 1.1 and 1.2\nthree\n");
        assert!(root.join("c.txt").exists());
    }
}

#[tokio::test]
async fn host_owned_files_are_put_back_before_the_commit() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    let one = root.join(".bmad-host/worktrees/1.1");
    git.worktree(root, &one, "bmad/1.1", "main")
        .await
        .expect("1.1");
    std::fs::write(one.join("b.txt"), "edited by the agent\n").expect("write");
    std::fs::write(one.join("made.txt"), "new\n").expect("write");
    std::fs::write(one.join("mine.txt"), "kept\n").expect("write");
    git.restore(&one, "main", &["b.txt", "made.txt"])
        .await
        .expect("restore");
    assert_eq!(
        std::fs::read_to_string(one.join("b.txt")).expect("read"),
        "b\n"
    );
    let result = git
        .integrate(&one, "main", Integrate::Rebase, "1.1: First", "")
        .await
        .expect("1.1");
    assert!(matches!(result, Integration::Ready { .. }));
    let files = sh(root, &["show", "--name-only", "--format=", "bmad/1.1"]);
    assert_eq!(files.trim(), "mine.txt");
}

#[tokio::test]
async fn a_story_that_changed_nothing_integrates_as_nothing() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    let one = root.join(".bmad-host/worktrees/1.1");
    git.worktree(root, &one, "bmad/1.1", "main")
        .await
        .expect("1.1");
    let result = git
        .integrate(&one, "main", Integrate::Rebase, "1.1: First", "")
        .await
        .expect("1.1");
    assert_eq!(result, Integration::Nothing);
    assert_eq!(log(root), ["initial"]);
}

#[tokio::test]
async fn a_commit_without_an_identity_is_bmad_hosts() {
    let dir = repo();
    let root = dir.path();
    sh(root, &["config", "--unset", "user.email"]);
    sh(root, &["config", "--unset", "user.name"]);
    let (git, _tx) = git();
    std::fs::write(root.join("x.txt"), "x\n").expect("write");
    // Only where the machine's own git configuration has no identity either.
    let configured = Command::new("git")
        .args(["config", "--get", "user.email"])
        .current_dir(root)
        .status()
        .expect("git runs")
        .success();
    if !configured {
        let commit = git.commit_all(root, "subject", "").await.expect("commit");
        assert!(commit.is_some());
        let author = sh(root, &["log", "-1", "--format=%ae"]);
        assert_eq!(author.trim(), "bmad-host@localhost");
    }
}

#[tokio::test]
async fn a_failing_git_names_the_command_and_what_git_said() {
    let dir = repo();
    let (git, _tx) = git();
    let err = git
        .fast_forward(dir.path(), "no-such-branch")
        .await
        .expect_err("fails");
    let text = err.to_string();
    assert!(
        text.contains("git merge --quiet --ff-only no-such-branch"),
        "{text}"
    );
    assert!(text.contains("no-such-branch"), "{text}");
}

#[tokio::test]
async fn an_interrupt_before_the_command_runs_nothing() {
    let dir = repo();
    let (git, tx) = git();
    tx.send(Interrupt::Graceful).expect("send");
    let err = git.changes(dir.path()).await.expect_err("interrupted");
    assert!(matches!(err, GitError::Interrupted { .. }), "{err}");
}

#[tokio::test]
async fn staged_conflict_markers_are_named_and_whitespace_is_not() {
    let dir = repo();
    let root = dir.path();
    let (git, _tx) = git();
    std::fs::write(
        root.join("a.txt"),
        "one\n<<<<<<< HEAD\ntwo\n=======\nTWO\n>>>>>>> story\nthree\n",
    )
    .expect("write");
    std::fs::write(root.join("b.txt"), "b   \n").expect("write");
    sh(root, &["add", "--all"]);
    assert_eq!(
        git.staged_conflict_markers(root).await.expect("checked"),
        ["a.txt"]
    );
    sh(root, &["checkout", "HEAD", "--", "a.txt"]);
    assert!(
        git.staged_conflict_markers(root)
            .await
            .expect("checked")
            .is_empty()
    );
}
