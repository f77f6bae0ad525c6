//! The integration lane: one Restate virtual object per project (`IntegrationLane`), so that
//! finished stories land on the shared branch one at a time, whichever machines their workers
//! are on. Landing a story squashes its branch (`bmad/<story>`, as its last step left it) onto
//! the shared branch's head as one commit, `<id>: <title>` with a `Bmad-Story: <workflow>`
//! trailer, and pushes it. It is one journaled step; if it is run again (its worker died before
//! Restate kept its result), it finds its trailer on the branch and lands nothing twice. Stories
//! run side by side conflict in a v6 sprint-status (their keys are next to each other): that
//! file is merged key by key. The project's gates run on the merged result before it is pushed,
//! as in the local lane. Any other conflict, a file still holding git's conflict markers, or a
//! gate that fails there refuses the story ([`Outcome::Refused`], with Dev's findings): its
//! workflow sends it back to Dev once, as the local lane does, and escalates it the second time.

use std::path::PathBuf;
use std::sync::Arc;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

use super::tree::Checkout;

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

/// What the lane did with a story.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It is on the shared branch.
    Landed(Landed),
    /// It does not land as it is.
    Refused(Refusal),
}

/// Why a story does not land, and what Dev is told.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// The conflict or the gates that failed.
    pub why: String,
    /// The conflicting files (none for a gate).
    pub files: Vec<String>,
    /// Dev's findings.
    pub findings: Vec<String>,
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
    /// Lands one finished story on the shared branch, or says why it does not land.
    #[handler]
    async fn land(
        &self,
        ctx: ObjectContext<'_>,
        landing: Json<Landing>,
    ) -> Result<Json<Outcome>, HandlerError> {
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
) -> Result<Outcome, HandlerError> {
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
        return Ok(Outcome::Landed(Landed {
            commit: commit.to_string(),
            branch,
        }));
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
    let refused = |refusal: Refusal| async {
        let _ = git
            .output(&lane, &["reset", "--quiet", "--hard", &shared])
            .await;
        Ok(Outcome::Refused(refusal))
    };
    if !merged.success() {
        // Stories run side by side each change their own sprint-status keys, next to each
        // other's: that file merges key by key; any other conflict refuses the story.
        let conflicted = git.unmerged(&lane).await.map_err(err)?;
        let sprint = sprint_path(root, &git).await;
        let only_sprint = sprint.as_deref().filter(|s| conflicted == [*s]);
        let resolved = match only_sprint {
            Some(sprint) => merge_sprint(&git, &lane, sprint, &shared, &l.sha).await,
            None => Err(format!("conflicts in {}", conflicted.join(", "))),
        };
        if let Err(why) = resolved {
            let files: Vec<String> = conflicted.iter().map(|f| (*f).to_string()).collect();
            return refused(Refusal {
                why: format!("story {} does not land on {branch}: {why}", l.story),
                findings: vec![crate::run::lanes::conflict_finding(
                    &branch,
                    &files,
                    &merged.text(),
                )],
                files,
            })
            .await;
        }
    }
    // A conflict sent back to Dev and not resolved: its markers do not land.
    let marked = git.staged_conflict_markers(&lane).await.map_err(err)?;
    if !marked.is_empty() {
        let list = marked.join(", ");
        return refused(Refusal {
            why: format!(
                "story {} does not land on {branch}: conflict markers left in {list}",
                l.story
            ),
            findings: vec![format!(
                "the story's files still hold git's conflict markers (<<<<<<< ======= >>>>>>>) in {list}: \
                 resolve each keeping both sides' intent and remove the markers"
            )],
            files: marked,
        })
        .await;
    }
    // The gates again, on the merged result, as the local lane runs them.
    let failed = run_gates(root, &lane, gates, l)
        .await
        .map_err(TerminalError::new)?;
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|r| format!("`{}`", r.name)).collect();
        let tails: Vec<&str> = failed
            .iter()
            .map(|r| r.output_tail.trim())
            .filter(|t| !t.is_empty())
            .collect();
        let said = if tails.is_empty() {
            String::new()
        } else {
            format!(": {}", tails.join("; "))
        };
        return refused(Refusal {
            why: format!(
                "story {} does not land on {branch}: gate {} failed after integration{said}",
                l.story,
                names.join(", "),
            ),
            files: Vec::new(),
            findings: failed
                .iter()
                .map(|r| crate::run::lanes::gate_finding(r, &branch))
                .collect(),
        })
        .await;
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
    Ok(Outcome::Landed(Landed { commit, branch }))
}

/// Runs `gates` at the project's root in the lane's worktree `lane`: the reports of those that
/// failed; `Err` names a gate whose end could not be proven.
async fn run_gates(
    root: &std::path::Path,
    lane: &std::path::Path,
    gates: &[crate::config::GateConfig],
    l: &Landing,
) -> Result<Vec<crate::policy::GateReport>, String> {
    if gates.is_empty() {
        return Ok(Vec::new());
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
            failed.push(run.report);
        }
    }
    Ok(failed)
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
pub(super) async fn sprint_path(root: &std::path::Path, git: &crate::git::Git) -> Option<String> {
    let project = crate::project::Project::discover(root).ok()?;
    let sprint = project.sprint_status_path()?.to_path_buf();
    let rel = project_in_repo(root, git).await?;
    Some(rel.join(sprint).display().to_string())
}

/// Resolves the conflict in the sprint-status at `sprint` of a merge in `lane` of the story's
/// commit `sha` and the shared branch's head `shared`: the shared branch's file with the values
/// the story changed set on it ([`crate::project::merge_story_keys`]), staged. `Err` says why
/// not.
pub(super) async fn merge_sprint(
    git: &crate::git::Git,
    lane: &std::path::Path,
    sprint: &str,
    shared: &str,
    sha: &str,
) -> Result<(), String> {
    let text = |e: crate::git::GitError| crate::error::Report(&e).to_string();
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
