//! The integration lane: one Restate virtual object per project (`IntegrationLane`), so that
//! finished stories land on the shared branch one at a time, whichever machines their workers
//! are on. Landing a story squashes its branch (`bmad/<story>`, as its last step left it) onto
//! the shared branch's head as one commit, `<id>: <title>` with a `Bmad-Story: <workflow>`
//! trailer, and pushes it. It is one journaled step; if it is run again (its worker died before
//! Restate kept its result), it finds its trailer on the branch and lands nothing twice. Stories
//! run side by side conflict in a v6 sprint-status (their keys are next to each other): that
//! file is merged key by key; any other conflict fails the story's workflow. The project's
//! gates run on the merged result before it is pushed, as in the local lane; one that fails
//! fails the story's workflow too.

use std::path::PathBuf;
use std::sync::Arc;

use restate_sdk::prelude::*;

use super::tree::Checkout;
use serde::{Deserialize, Serialize};

/// A story to land.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Landing {
    /// The story's workflow key (the trailer).
    pub key: String,
    /// The story id.
    pub story: String,
    /// Its title.
    pub title: String,
    /// The commit its last step left.
    pub sha: String,
}

/// Where it landed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Landed {
    /// The commit on the shared branch.
    pub commit: String,
    /// The shared branch.
    pub branch: String,
}

/// The lane object: lands in a worktree of this worker's clone of its own
/// (`.bmad-host/lane`), beside the stories it may be driving.
#[derive(Debug)]
pub(crate) struct IntegrationLane {
    pub checkout: Arc<Checkout>,
    /// The project's gates (`[[gates]]`, enabled), run on the merged result before it is pushed.
    pub gates: Vec<crate::config::GateConfig>,
}

#[restate_sdk::object]
impl IntegrationLane {
    /// Lands one finished story on the shared branch.
    #[handler]
    async fn land(
        &self,
        ctx: ObjectContext<'_>,
        landing: Json<Landing>,
    ) -> Result<Json<Landed>, HandlerError> {
        let landing = landing.into_inner();
        let (checkout, gates) = (&self.checkout, &self.gates);
        let landed = ctx
            .run(|| async move { land(checkout, gates, &landing).await.map(Json) })
            .name("land")
            .await?;
        Ok(landed)
    }
}

async fn land(
    checkout: &Checkout,
    gates: &[crate::config::GateConfig],
    l: &Landing,
) -> Result<Landed, HandlerError> {
    let root = checkout.root();
    let git = super::tree::quiet_git();
    let err = |e: crate::git::GitError| {
        HandlerError::from(std::io::Error::other(crate::error::Report(&e).to_string()))
    };
    let lane = crate::journal::state_dir(root).join("lane");
    let lane_dir = lane.to_string_lossy().into_owned();
    // The clone's stories fetch and push beside the lane.
    let refs = checkout.refs().await;
    if !lane.join(".git").exists() {
        let _ = git.output(root, &["worktree", "prune"]).await;
        git.run(
            root,
            &[
                "worktree", "add", "--quiet", "--force", "--detach", &lane_dir,
            ],
        )
        .await
        .map_err(err)?;
    }
    git.run(&lane, &["fetch", "--quiet", "origin"])
        .await
        .map_err(err)?;
    let head = git
        .run(
            &lane,
            &["symbolic-ref", "--short", "refs/remotes/origin/HEAD"],
        )
        .await
        .map_err(err)?;
    let shared = head.stdout.trim().to_string();
    let branch = shared.trim_start_matches("origin/").to_string();
    git.run(
        &lane,
        &["checkout", "--quiet", "--force", "--detach", &shared],
    )
    .await
    .map_err(err)?;
    let trailer = format!("Bmad-Story: {}", l.key);
    let grep = format!("--grep=^{}$", regex_escape(&trailer));
    let found = git
        .run(&lane, &["log", "--format=%H", &grep, &shared])
        .await
        .map_err(err)?;
    if let Some(commit) = found.stdout.lines().next() {
        // Landed before (its result was not journaled): not twice.
        return Ok(Landed {
            commit: commit.to_string(),
            branch,
        });
    }
    let story_ref = format!("+refs/heads/bmad/{0}:refs/remotes/origin/bmad/{0}", l.story);
    git.run(&lane, &["fetch", "--quiet", "origin", &story_ref])
        .await
        .map_err(err)?;
    drop(refs);
    let merged = git
        .output(&lane, &["merge", "--squash", "--quiet", &l.sha])
        .await
        .map_err(err)?;
    if !merged.success() {
        // Stories run side by side each change their own sprint-status keys, next to each
        // other's: that file merges key by key; any other conflict stops the story.
        let sprint = sprint_path(root, &git).await;
        if let Err(why) = merge_sprint(&git, &lane, sprint.as_deref(), &shared, &l.sha).await {
            let _ = git
                .output(&lane, &["reset", "--quiet", "--hard", &shared])
                .await;
            return Err(TerminalError::new(format!(
                "story {} does not land on {branch}: {why}\n{}",
                l.story,
                merged.text()
            ))
            .into());
        }
    }
    // The gates again, on the merged result, as the local lane runs them.
    if let Err(why) = run_gates(root, &lane, gates, l).await {
        let _ = git
            .output(&lane, &["reset", "--quiet", "--hard", &shared])
            .await;
        return Err(TerminalError::new(format!(
            "story {} does not land on {branch}: {why}",
            l.story
        ))
        .into());
    }
    let subject = format!("{}: {}", l.story, l.title);
    let commit = git
        .commit_all(&lane, &subject, &trailer)
        .await
        .map_err(err)?
        .unwrap_or_default();
    let target = format!("HEAD:refs/heads/{branch}");
    let _refs = checkout.refs().await;
    git.run(&lane, &["push", "--quiet", "origin", &target])
        .await
        .map_err(err)?;
    Ok(Landed { commit, branch })
}

/// Runs `gates` at the project's root in the lane's worktree `lane`; `Err` names the ones that
/// failed with their output's tail, or a gate whose end could not be proven.
async fn run_gates(
    root: &std::path::Path,
    lane: &std::path::Path,
    gates: &[crate::config::GateConfig],
    l: &Landing,
) -> Result<(), String> {
    if gates.is_empty() {
        return Ok(());
    }
    let (_, interrupts) = tokio::sync::watch::channel(crate::process::Interrupt::None);
    let git = super::tree::quiet_git();
    let work = match project_in_repo(root, &git).await {
        Some(rel) => lane.join(rel),
        None => lane.to_path_buf(),
    };
    let env = [
        ("BMAD_HOST_STORY_ID".to_string(), l.story.clone()),
        ("BMAD_HOST_INTEGRATION".to_string(), "1".to_string()),
    ];
    let mut failed = Vec::new();
    for gate in gates {
        let run = crate::gates::run_gate(gate, &work, &env, interrupts.clone()).await;
        if !run.clean {
            let who: Vec<String> = run.survivors.iter().map(|s| s.pid.to_string()).collect();
            return Err(format!(
                "the end of gate `{}` on the merged result cannot be proven (still alive: {})",
                gate.name,
                who.join(", ")
            ));
        }
        if !run.report.passed {
            failed.push(format!(
                "gate `{}` failed after integration: {}",
                gate.name,
                run.report.output_tail.trim()
            ));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// The project's root relative to its repository's top.
async fn project_in_repo(root: &std::path::Path, git: &crate::git::Git) -> Option<PathBuf> {
    let top = git.toplevel(root).await.ok()?.canonicalize().ok()?;
    Some(
        root.canonicalize()
            .ok()?
            .strip_prefix(&top)
            .ok()?
            .to_path_buf(),
    )
}

/// The project's sprint-status (v6), relative to its repository's top, when it has one.
async fn sprint_path(root: &std::path::Path, git: &crate::git::Git) -> Option<String> {
    let project = crate::project::Project::discover(root).ok()?;
    let sprint = project.sprint_status_path()?.to_path_buf();
    let rel = project_in_repo(root, git).await?;
    Some(rel.join(sprint).display().to_string())
}

/// Resolves a squash merge whose only conflict is the sprint-status at `sprint`: the shared
/// branch's file with the values the story changed set on it
/// ([`crate::project::merge_story_keys`]), staged. `Err` says why not.
async fn merge_sprint(
    git: &crate::git::Git,
    lane: &std::path::Path,
    sprint: Option<&str>,
    shared: &str,
    sha: &str,
) -> Result<(), String> {
    let text = |e: crate::git::GitError| crate::error::Report(&e).to_string();
    let conflicted = git
        .run(lane, &["diff", "--name-only", "--diff-filter=U"])
        .await
        .map_err(text)?;
    let conflicted: Vec<&str> = conflicted.stdout.lines().collect();
    let Some(sprint) = sprint.filter(|s| conflicted == [*s]) else {
        return Err(format!("conflicts in {}", conflicted.join(", ")));
    };
    let base = git
        .run(lane, &["merge-base", shared, sha])
        .await
        .map_err(text)?;
    let base = base.stdout.trim();
    let show = |rev: &str| format!("{rev}:{sprint}");
    let (at_base, in_story, on_shared) = (
        git.run(lane, &["show", &show(base)]).await.map_err(text)?,
        git.run(lane, &["show", &show(sha)]).await.map_err(text)?,
        git.run(lane, &["show", &show(shared)])
            .await
            .map_err(text)?,
    );
    let merged = crate::project::merge_story_keys(
        std::path::Path::new(sprint),
        at_base.stdout.as_bytes(),
        in_story.stdout.as_bytes(),
        on_shared.stdout.as_bytes(),
    )
    .map_err(|e| format!("{sprint}: {e}"))?;
    std::fs::write(lane.join(sprint), merged).map_err(|e| format!("{sprint}: {e}"))?;
    git.run(lane, &["add", "--", sprint]).await.map_err(text)?;
    tracing::info!(%sprint, "merged the sprint-status key by key");
    Ok(())
}

/// `text` with the characters a basic regular expression reads specially escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = matches!(c, '.' | '[' | ']' | '*' | '^' | '$' | '\\');
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
