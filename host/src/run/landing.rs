//! A story that is done lands as a commit (`[git] commit = "story"` with one job; a parallel
//! run's integration lane does it for its stories), and then `[git] after_story`, the
//! operator's command, runs once for it: under the gates' supervision, with the story's id,
//! title, branch and commit in its environment, journaled as an `after-story` step so a
//! resumed run does not run it twice. Its failure is reported and stops nothing.

use std::path::Path;

use super::driver::Driver;
use super::halt::Halt;
use super::lanes::{Repo, review_body};
use crate::config::GateConfig;
use crate::git::GitError;
use crate::journal::{AfterStoryIntent, AfterStoryResult, StepKey, StepKind, StepStart};
use crate::project::StoryEntry;
use crate::ui::Event;

impl Driver<'_> {
    /// Commits what story `entry` changed in the main checkout (one job): `<id>: <title>`, the
    /// review in the body, sprint-status left out (the host's, uncommitted). Returns the commit;
    /// on a resumed run whose commit was made before the host stopped, that commit (the head's,
    /// when it is the story's own); `None` when the story changed nothing.
    pub(super) async fn land(
        &self,
        repo: &Repo,
        entry: &StoryEntry,
    ) -> Result<Option<String>, Halt> {
        let fatal = |e: GitError| match e {
            GitError::Interrupted { .. } => Halt::Interrupted,
            e => Halt::Fatal(e.into()),
        };
        let subject = format!("{}: {}", entry.id, entry.title);
        let body = review_body(self, self.root, entry);
        let keep_out: Vec<String> = self
            .project
            .sprint_status_path()
            .map(|p| repo.rel.join(p).display().to_string())
            .into_iter()
            .collect();
        let commit = repo
            .git
            .commit_all_but(&repo.top, &subject, &body, &keep_out)
            .await
            .map_err(fatal)?;
        let commit = match commit {
            Some(commit) => Some(commit),
            None => {
                let head = repo
                    .git
                    .output(&repo.top, &["log", "-1", "--format=%H%n%s"])
                    .await
                    .map_err(fatal)?;
                let mut lines = head.stdout.lines();
                match (lines.next(), lines.next()) {
                    (Some(hash), Some(said)) if said == subject => Some(hash.to_owned()),
                    _ => None,
                }
            }
        };
        self.emit(Event::StoryIntegrated {
            story: entry.id.to_string(),
            branch: repo.branch.clone(),
            commit: commit.clone(),
        });
        Ok(commit)
    }

    /// Runs `[git] after_story` for a story that landed (once: an `after-story` step with a
    /// result is not run again). `dir`: where it runs (the project root in the main checkout);
    /// `branch`: the story's branch (the checked-out branch with one job).
    pub(super) async fn after_story(
        &self,
        entry: &StoryEntry,
        dir: &Path,
        branch: &str,
        commit: Option<&str>,
    ) -> Result<(), Halt> {
        let Some(command) = self.config.git.after_story.value.clone() else {
            return Ok(());
        };
        let story = entry.id.to_string();
        let key = StepKey {
            run: self.run.clone(),
            story: story.clone(),
            cycle: 0,
            role: "host".to_string(),
            kind: StepKind::AfterStory,
            seq: 0,
        };
        let intent = AfterStoryIntent {
            command: command.clone(),
            commit: commit.map(str::to_owned),
        };
        let step = match self
            .journal
            .borrow_mut()
            .begin_step(&key, &super::journaled::to_json(&intent))?
        {
            StepStart::Done(_) => return Ok(()),
            StepStart::Fresh(id) | StepStart::Retry { id, .. } => id,
        };
        let gate = GateConfig {
            name: "after_story".to_string(),
            command,
            timeout: self.config.git.after_story_timeout.value,
            enabled: true,
        };
        let env = [
            ("BMAD_HOST_RUN_ID".to_string(), self.run.to_string()),
            ("BMAD_HOST_STORY_ID".to_string(), story.clone()),
            ("BMAD_HOST_STORY_TITLE".to_string(), entry.title.clone()),
            ("BMAD_HOST_STORY_BRANCH".to_string(), branch.to_string()),
            (
                "BMAD_HOST_COMMIT".to_string(),
                commit.unwrap_or_default().to_string(),
            ),
        ];
        let run = crate::gates::run_gate(&gate, dir, &env, self.interrupts.clone()).await;
        if run.cancelled && run.clean {
            return Err(Halt::Interrupted);
        }
        if !run.clean {
            return Err(Halt::Unproven(super::halt::Unproven {
                what: format!("`after_story` of story {story}"),
                survivors: run.survivors,
            }));
        }
        let result = AfterStoryResult {
            exit_code: run.report.exit_code,
            passed: run.report.passed,
            timed_out: run.report.timed_out,
        };
        self.journal
            .borrow_mut()
            .finish_step(step, &super::journaled::to_json(&result))?;
        self.emit(Event::AfterStory {
            story,
            commit: commit.map(str::to_owned),
            passed: run.report.passed,
            exit_code: run.report.exit_code,
            timed_out: run.report.timed_out,
            duration_ms: super::summary::millis(run.duration),
            output: run.report.output_tail,
        });
        Ok(())
    }
}
