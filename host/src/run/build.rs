//! The build flow of BMAD 6.11+ in the run: which [`StoryFlow`] a project's stories go through.

use crate::project::Project;
use crate::workflow::StoryFlow;

/// The workflow's flow for the project's detected one: the build flow for a `bmad-build`
/// installation, the story flow otherwise (v4, v6 story workflows).
pub fn flow_of(project: &Project) -> StoryFlow {
    if project.is_build_flow() {
        StoryFlow::Build
    } else {
        StoryFlow::Stories
    }
}

use super::driver::{Driver, StepCtx};
use super::halt::Halt;
use crate::journal::{StatusWriteIntent, StatusWriteResult};
use crate::policy::{Role, StoryState};
use crate::project::{SprintSync, StoryEntry};
use crate::ui::Event;
use crate::workflow::{self, Flow};

/// The journal sequence of the host's ledger reconciliation in a story's step key (`status-write`
/// steps of a role step use the decision numbers below it).
const RECONCILE_SEQ: u32 = 1000;

/// When a reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum When {
    /// Before the story's first step: drift found is repaired and reported.
    Start,
    /// After a step: whatever the agent wrote is brought into line.
    Step,
}

impl Driver<'_> {
    /// Build flow: makes the story's ledgers agree, the host being their only writer. The spec's
    /// frontmatter `status:` is the truth, except a `done` no review accepted (`bmad-build`
    /// marks its own spec `done` and sprint-status `review`), which the host turns into
    /// `in-review`; sprint-status follows the spec (`bmad-build-auto` writes none). Journaled as a
    /// `status-write` step (sequence [`RECONCILE_SEQ`]) and reported (`ledgers_reconciled`) when
    /// anything changed. A spec that cannot be read or written is left to the workflow, which
    /// escalates an unreadable status.
    pub(super) fn reconcile_build(
        &mut self,
        entry: &StoryEntry,
        flow: &Flow,
        cycle: u32,
        role: Role,
        when: When,
    ) -> Result<(), Halt> {
        if flow.settings().flow != workflow::StoryFlow::Build {
            return Ok(());
        }
        let seen = self.observe(entry);
        let (Some(state), Some(value)) = (seen.state, seen.value.clone()) else {
            return Ok(());
        };
        let truth = if state == StoryState::Done && !flow.done_accepted() {
            StoryState::Review
        } else {
            state
        };
        let mut changes = Vec::new();
        let sprint = if truth == state {
            self.project.sync_sprint_status(entry, &value)
        } else {
            match self.project.write_status(entry, &value, truth) {
                Ok(w) => {
                    changes.push(format!("{}: {} → {}", w.path.display(), w.old, w.new));
                    w.sprint
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    self.say(&format!(
                        "  {}: cannot bring the spec into line: {e}",
                        entry.id
                    ));
                    return Ok(());
                }
            }
        };
        if let Some(change) = self.story_file_in_line(entry, truth) {
            changes.push(change);
        }
        match sprint {
            SprintSync::Updated { key, from, to, .. } => {
                let path = self
                    .project
                    .sprint_status_path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                changes.push(format!("{path} {key}: {from} → {to}"));
            }
            SprintSync::NotUpdated { reason } => {
                self.say(&format!(
                    "  {}: sprint-status not updated: {reason}",
                    entry.id
                ));
            }
            SprintSync::NotApplicable | SprintSync::InStep { .. } => {}
        }
        if changes.is_empty() {
            return Ok(());
        }
        let story = entry.id.to_string();
        let ctx = StepCtx {
            entry,
            story: &story,
            cycle,
            role,
        };
        let intent = StatusWriteIntent {
            from: Some(value.raw.clone()),
            to: truth,
        };
        let seq = RECONCILE_SEQ + u32::from(when == When::Step);
        self.record(&ctx, seq, &intent, &StatusWriteResult { written: truth })?;
        self.emit(Event::LedgersReconciled {
            story,
            when: match when {
                When::Start => "start",
                When::Step => "step",
            }
            .to_owned(),
            state: workflow::state_name(truth).to_owned(),
            changes,
        });
        Ok(())
    }

    /// The story file beside the spec (`{key}.md`, with a `Status:` line, e.g. from an earlier
    /// `create-story`), set to `truth` when it says otherwise: `path: old → new`. A story file
    /// whose status cannot be read or written is reported and left alone.
    fn story_file_in_line(&mut self, spec: &StoryEntry, truth: StoryState) -> Option<String> {
        let name = spec.path.file_name()?.to_str()?;
        let key = name.strip_prefix("spec-")?.strip_suffix(".md")?;
        let path = spec.path.with_file_name(format!("{key}.md"));
        if !self.root.join(&path).is_file() {
            return None;
        }
        let story = StoryEntry {
            path,
            ..spec.clone()
        };
        let text = self.project.read_story(&story).ok()?.text;
        let parse = self.plugins.parse_status(&text).ok()?;
        let value = match parse {
            crate::policy::ParseOutcome::Found(v) if v.state.is_some() => v,
            _ => {
                self.say(&format!(
                    "  {}: the story file {} has no status to keep in step with the spec",
                    spec.id,
                    story.path.display()
                ));
                return None;
            }
        };
        if value.state == Some(truth) {
            return None;
        }
        match self.project.write_status(&story, &value, truth) {
            Ok(w) if w.changed => Some(format!("{}: {} → {}", w.path.display(), w.old, w.new)),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!("{e}");
                self.say(&format!(
                    "  {}: cannot bring the story file into line: {e}",
                    spec.id
                ));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::builtin::parse_status;
    use crate::policy::{Layout, ParseOutcome, StatusSource, StoryState};
    use crate::project::status_spelling;

    /// A `bmad-build` spec (6.11+) with its frontmatter `status:`.
    fn spec(status: &str) -> String {
        format!(
            "---\ntitle: 'User Registration'\ntype: 'feature'\nstatus: {status}\nroute: ''\n---\n\n# User Registration\n\n## Intent\n"
        )
    }

    #[test]
    fn every_build_spec_status_parses_from_the_frontmatter() {
        let cases = [
            ("'draft'", StoryState::Drafted),
            ("'ready-for-dev'", StoryState::ReadyForDev),
            ("'in-progress'", StoryState::InProgress),
            ("'in-review'", StoryState::Review),
            ("in-review", StoryState::Review),
            ("\"done\"", StoryState::Done),
            ("'blocked'", StoryState::Blocked),
        ];
        for (written, state) in cases {
            match parse_status(&spec(written)) {
                ParseOutcome::Found(v) => {
                    assert_eq!(v.state, Some(state), "{written}");
                    assert_eq!(v.source, StatusSource::Frontmatter, "{written}");
                    assert_eq!(v.line, 4, "{written}");
                }
                other => panic!("{written}: {other:?}"),
            }
        }
    }

    #[test]
    fn what_the_host_writes_into_a_spec_reads_back_as_the_same_state() {
        for state in crate::policy::ALL_STATES {
            let word = status_spelling(Layout::V6, StatusSource::Frontmatter, state);
            let ParseOutcome::Found(v) = parse_status(&spec(&format!("'{word}'"))) else {
                panic!("{word} does not parse");
            };
            // The spec vocabulary has no drafted or changes-requested: they are written as
            // what they mean for a spec (`ready-for-dev`, `in-progress`).
            let expected = match state {
                StoryState::Backlog => StoryState::Drafted,
                StoryState::Drafted => StoryState::ReadyForDev,
                StoryState::ChangesRequested => StoryState::InProgress,
                s => s,
            };
            assert_eq!(v.state, Some(expected), "{word}");
        }
    }
}
