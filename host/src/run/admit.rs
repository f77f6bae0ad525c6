//! Admission of parallel stories (`run --jobs N`): which of the stories waiting to start may
//! start now, beside the ones running. A decision, so a policy's: the `scheduler` role's
//! component (the `scheduler` world of `bmad:policy@0.2.0`; the embedded `plugins/scheduler`
//! unless `[roles] scheduler` names another) is asked each time a lane is free. The host gives
//! it the facts and checks its answer (at most the free slots, each a waiting story, none twice;
//! a trap or another answer stops the run):
//!
//! - each waiting story's id, epic, state, declared footprint (`footprint_known` false when it
//!   declares none), and the stories it depends on with whether each is done: the ones it names
//!   (`depends_on`, [`crate::project::declared`]), else, with `[workflow] same_epic = "serial"`
//!   (the default), every earlier story of its epic. A dependency outside the run counts as
//!   done (the run cannot finish it); one that failed or was escalated in this run is not.
//! - the stories in flight (driven, or waiting for the integration lane), with their footprints.
//!
//! When nothing runs and the scheduler starts none of the waiting stories, none ever will: the
//! run ends them as escalated, each with the reason ([`why_not_started`]): a dependency that did
//! not get done, a dependency cycle, or the scheduler's refusal.

use std::collections::BTreeSet;

use crate::plugins::{PluginError, PluginSet, Scheduler};
use crate::policy::{self, StoryState};
use crate::project::{Project, StoryEntry, StoryId};

/// A story waiting to start, as the host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    /// Its id.
    pub id: StoryId,
    /// Its state as its file says (`None`: not drafted, or unreadable).
    pub state: Option<StoryState>,
    /// The paths and globs it declares (empty: unknown).
    pub footprint: Vec<String>,
    /// The stories it names as dependencies, when it names any.
    pub depends_on: Option<Vec<StoryId>>,
}

impl Candidate {
    /// A story as the scheduler sees it: its state and what its file (in `project`'s checkout)
    /// declares.
    pub(crate) fn of(project: &Project, plugins: &PluginSet, entry: &StoryEntry) -> Self {
        let text = project.read_story(entry).ok();
        let declared = text
            .as_ref()
            .map(|t| crate::project::declared(&t.text))
            .unwrap_or_default();
        let state = text.and_then(|t| {
            let parse = plugins.parse_status(&t.text).ok()?;
            match super::observe::observed(&entry.path, &parse) {
                crate::workflow::Observed::State(state) => Some(state),
                _ => None,
            }
        });
        Candidate {
            id: entry.id,
            state,
            footprint: declared.footprint,
            depends_on: declared.depends_on,
        }
    }
}

/// A story in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Running {
    /// Its id.
    pub id: StoryId,
    /// Its declared footprint (empty: unknown).
    pub footprint: Vec<String>,
}

/// What a scheduler decides from.
#[derive(Debug)]
pub(crate) struct Board<'a> {
    /// The stories waiting to start, in story order.
    pub waiting: &'a [Candidate],
    /// The stories in flight (driven, or waiting for the integration lane).
    pub running: &'a [Running],
    /// Every story of the run that has not finished (waiting or running).
    pub unfinished: &'a BTreeSet<StoryId>,
    /// The stories of the run that ended without being done (failed, escalated).
    pub failed: &'a BTreeSet<StoryId>,
    /// How many more stories may start.
    pub slots: usize,
}

impl Board<'_> {
    /// Whether `id` counts as done for a story that depends on it.
    fn done(&self, id: StoryId) -> bool {
        !self.unfinished.contains(&id) && !self.failed.contains(&id)
    }
}

/// What a story's epic siblings mean when it names no dependency (`[workflow] same_epic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SameEpic {
    /// A story waits for the earlier stories of its epic.
    Serial,
    /// Stories of one epic run side by side.
    Parallel,
}

/// The scheduler role's component, asked with the run's dependency rule applied.
#[derive(Debug)]
pub(crate) struct Admission {
    /// The component.
    pub scheduler: Scheduler,
    /// `[workflow] same_epic`.
    pub same_epic: SameEpic,
}

impl Admission {
    /// The stories to start now, in the order to start them: the component's answer (which
    /// [`Scheduler::admit`] has checked).
    pub fn admit(&self, board: &Board<'_>) -> Result<Vec<StoryId>, PluginError> {
        if board.slots == 0 || board.waiting.is_empty() {
            return Ok(Vec::new());
        }
        let candidates: Vec<policy::Candidate> = board
            .waiting
            .iter()
            .map(|c| policy::Candidate {
                id: c.id.to_string(),
                epic: c.id.epic,
                state: c.state,
                footprint: c.footprint.clone(),
                footprint_known: !c.footprint.is_empty(),
                depends_on: dependencies(c, board, self.same_epic)
                    .into_iter()
                    .map(|id| policy::Dependency {
                        id: id.to_string(),
                        done: board.done(id),
                    })
                    .collect(),
            })
            .collect();
        let running: Vec<policy::Running> = board
            .running
            .iter()
            .map(|r| policy::Running {
                id: r.id.to_string(),
                epic: r.id.epic,
                footprint: r.footprint.clone(),
                footprint_known: !r.footprint.is_empty(),
            })
            .collect();
        let slots = u32::try_from(board.slots).unwrap_or(u32::MAX);
        let admitted = self.scheduler.admit(&candidates, &running, slots)?;
        Ok(admitted
            .iter()
            .filter_map(|id| board.waiting.iter().find(|c| c.id.to_string() == *id))
            .map(|c| c.id)
            .collect())
    }

    /// Why `story` never started, when nothing ran and the scheduler started none of the
    /// waiting stories.
    pub fn why_not_started(&self, story: &Candidate, board: &Board<'_>) -> String {
        let deps = dependencies(story, board, self.same_epic);
        if let Some(bad) = deps.iter().find(|d| board.failed.contains(d)) {
            return format!("not started: it depends on {bad}, which did not get done");
        }
        if let Some(path) = cycle(story.id, board, self.same_epic) {
            let path: Vec<String> = path.iter().map(ToString::to_string).collect();
            return format!("not started: dependency cycle {}", path.join(" -> "));
        }
        if let Some(waits) = deps.iter().find(|d| !board.done(**d)) {
            return format!(
                "not started: it depends on {waits}, which never started (see its own reason)"
            );
        }
        format!(
            "not started: the scheduler `{}` started none of the waiting stories while none ran",
            self.scheduler.plugin()
        )
    }
}

/// The stories of the run `story` depends on: the ones it names, else (serial epics) the
/// earlier stories of its epic. Itself excluded; stories outside the run are kept (they count
/// as done).
fn dependencies(story: &Candidate, board: &Board<'_>, same_epic: SameEpic) -> Vec<StoryId> {
    match &story.depends_on {
        Some(named) => named.iter().copied().filter(|d| *d != story.id).collect(),
        None if same_epic == SameEpic::Serial => board
            .unfinished
            .iter()
            .chain(board.failed.iter())
            .copied()
            .filter(|u| u.epic == story.id.epic && *u < story.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        None => Vec::new(),
    }
}

/// A dependency cycle through `start` among the waiting stories, as the path back to it.
fn cycle(start: StoryId, board: &Board<'_>, same_epic: SameEpic) -> Option<Vec<StoryId>> {
    fn walk(
        at: StoryId,
        start: StoryId,
        board: &Board<'_>,
        same_epic: SameEpic,
        path: &mut Vec<StoryId>,
    ) -> bool {
        let Some(story) = board.waiting.iter().find(|c| c.id == at) else {
            return false;
        };
        for dep in dependencies(story, board, same_epic) {
            if dep == start {
                path.push(dep);
                return true;
            }
            if path.contains(&dep) {
                continue;
            }
            path.push(dep);
            if walk(dep, start, board, same_epic, path) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start];
    walk(start, start, board, same_epic, &mut path).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(e: u32, s: u32) -> StoryId {
        StoryId::new(e, s)
    }

    fn cand(e: u32, s: u32, deps: Option<&[StoryId]>) -> Candidate {
        Candidate {
            id: id(e, s),
            state: Some(StoryState::ReadyForDev),
            footprint: Vec::new(),
            depends_on: deps.map(<[StoryId]>::to_vec),
        }
    }

    fn board<'a>(
        waiting: &'a [Candidate],
        unfinished: &'a BTreeSet<StoryId>,
        failed: &'a BTreeSet<StoryId>,
    ) -> Board<'a> {
        Board {
            waiting,
            running: &[],
            unfinished,
            failed,
            slots: 4,
        }
    }

    #[test]
    fn serial_epics_depend_on_the_earlier_unfinished_stories_of_their_epic() {
        let waiting = [cand(1, 2, None), cand(1, 3, None), cand(2, 1, None)];
        let unfinished: BTreeSet<StoryId> = [id(1, 1), id(1, 2), id(1, 3), id(2, 1)].into();
        let failed = BTreeSet::new();
        let b = board(&waiting, &unfinished, &failed);
        assert_eq!(
            dependencies(&waiting[1], &b, SameEpic::Serial),
            [id(1, 1), id(1, 2)]
        );
        assert!(dependencies(&waiting[2], &b, SameEpic::Serial).is_empty());
        assert!(dependencies(&waiting[1], &b, SameEpic::Parallel).is_empty());
    }

    #[test]
    fn named_dependencies_win_over_the_epic_rule_and_outside_ones_count_as_done() {
        let none: &[StoryId] = &[];
        let waiting = [
            cand(1, 2, Some(none)),
            cand(1, 3, Some(&[id(1, 1), id(1, 3)])),
            cand(1, 4, Some(&[id(9, 9)])),
        ];
        let unfinished: BTreeSet<StoryId> = [id(1, 1), id(1, 2), id(1, 3), id(1, 4)].into();
        let failed = BTreeSet::new();
        let b = board(&waiting, &unfinished, &failed);
        assert!(dependencies(&waiting[0], &b, SameEpic::Serial).is_empty());
        assert_eq!(dependencies(&waiting[1], &b, SameEpic::Serial), [id(1, 1)]);
        assert_eq!(dependencies(&waiting[2], &b, SameEpic::Serial), [id(9, 9)]);
        assert!(!b.done(id(1, 1)));
        assert!(b.done(id(9, 9)));
    }

    #[test]
    fn a_failed_dependency_is_not_done() {
        let waiting = [cand(1, 2, None)];
        let unfinished: BTreeSet<StoryId> = [id(1, 2)].into();
        let failed: BTreeSet<StoryId> = [id(1, 1)].into();
        let b = board(&waiting, &unfinished, &failed);
        assert_eq!(dependencies(&waiting[0], &b, SameEpic::Serial), [id(1, 1)]);
        assert!(!b.done(id(1, 1)));
    }

    #[test]
    fn a_cycle_is_found_as_its_path() {
        let waiting = [
            cand(1, 1, Some(&[id(1, 3)])),
            cand(1, 2, Some(&[id(1, 1)])),
            cand(1, 3, Some(&[id(1, 2)])),
            cand(1, 4, Some(&[id(1, 1)])),
        ];
        let unfinished: BTreeSet<StoryId> = waiting.iter().map(|c| c.id).collect();
        let failed = BTreeSet::new();
        let b = board(&waiting, &unfinished, &failed);
        assert_eq!(
            cycle(id(1, 1), &b, SameEpic::Serial),
            Some(vec![id(1, 1), id(1, 3), id(1, 2), id(1, 1)])
        );
        // 1.4 waits on the cycle but is not in it.
        assert_eq!(cycle(id(1, 4), &b, SameEpic::Serial), None);
    }
}
