//! Admission of parallel stories (`run --jobs N`): which of the stories waiting to start may
//! start now, beside the ones running. A decision, so behind a trait ([`Scheduler`]) that a
//! policy component can serve (the `scheduler` world of `bmad:policy@0.2.0`, once it lands);
//! until then the host's built-in [`DefaultScheduler`] applies the default rule:
//!
//! - a story waits for the stories it depends on to finish: the ones it names
//!   (`depends_on`, [`crate::project::declared`]), else, with `[workflow] same_epic = "serial"`
//!   (the default), every earlier story of its epic; a dependency outside the run counts as
//!   finished (the run cannot finish it);
//! - its footprint must not overlap the footprint of a running story (nor of one admitted in the
//!   same decision); an unknown footprint (the story declares none) overlaps nothing and is
//!   admitted optimistically: the integration lane catches real conflicts;
//! - stories are considered in story order, and at most the free slots are admitted.

use std::collections::BTreeSet;

use crate::project::{StoryId, overlap};

/// A story waiting to start, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    /// Its id.
    pub id: StoryId,
    /// The paths and globs it declares (empty: unknown).
    pub footprint: Vec<String>,
    /// The stories it names as dependencies, when it names any.
    pub depends_on: Option<Vec<StoryId>>,
}

/// A story in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Running {
    /// Its id.
    pub id: StoryId,
    /// Its declared footprint (empty: unknown).
    pub footprint: Vec<String>,
}

/// What a scheduler decides from.
#[derive(Debug)]
pub(super) struct Board<'a> {
    /// The stories waiting to start, in story order.
    pub waiting: &'a [Candidate],
    /// The stories in flight (driven, or waiting for the integration lane).
    pub running: &'a [Running],
    /// Every story of the run that has not finished (waiting or running).
    pub unfinished: &'a BTreeSet<StoryId>,
    /// How many more stories may start.
    pub slots: usize,
}

/// Decides which waiting stories start.
pub(super) trait Scheduler {
    /// The stories to start now, from `board.waiting`, at most `board.slots`.
    fn admit(&self, board: &Board<'_>) -> Vec<StoryId>;
}

/// What a story's epic siblings mean when it names no dependency (`[workflow] same_epic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SameEpic {
    /// A story waits for the earlier stories of its epic.
    Serial,
    /// Stories of one epic run side by side.
    Parallel,
}

/// The built-in default rule (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub(super) struct DefaultScheduler {
    pub same_epic: SameEpic,
}

impl Scheduler for DefaultScheduler {
    fn admit(&self, board: &Board<'_>) -> Vec<StoryId> {
        let mut admitted: Vec<&Candidate> = Vec::new();
        for story in board.waiting {
            if admitted.len() >= board.slots {
                break;
            }
            let waits = match &story.depends_on {
                Some(deps) => deps
                    .iter()
                    .any(|d| *d != story.id && board.unfinished.contains(d)),
                None => {
                    self.same_epic == SameEpic::Serial
                        && board
                            .unfinished
                            .iter()
                            .any(|u| u.epic == story.id.epic && *u < story.id)
                }
            };
            if waits {
                continue;
            }
            let clash = board
                .running
                .iter()
                .map(|r| &r.footprint)
                .chain(admitted.iter().map(|a| &a.footprint))
                .any(|f| overlap(f, &story.footprint).is_some());
            if !clash {
                admitted.push(story);
            }
        }
        admitted.into_iter().map(|c| c.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(e: u32, s: u32) -> StoryId {
        StoryId::new(e, s)
    }

    fn cand(e: u32, s: u32, footprint: &[&str], deps: Option<&[StoryId]>) -> Candidate {
        Candidate {
            id: id(e, s),
            footprint: footprint.iter().map(|f| (*f).to_string()).collect(),
            depends_on: deps.map(<[StoryId]>::to_vec),
        }
    }

    fn admit(
        same_epic: SameEpic,
        waiting: &[Candidate],
        running: &[Running],
        slots: usize,
    ) -> Vec<StoryId> {
        let unfinished: BTreeSet<StoryId> = waiting
            .iter()
            .map(|c| c.id)
            .chain(running.iter().map(|r| r.id))
            .collect();
        DefaultScheduler { same_epic }.admit(&Board {
            waiting,
            running,
            unfinished: &unfinished,
            slots,
        })
    }

    #[test]
    fn serial_epics_admit_one_story_per_epic_in_order() {
        let waiting = [
            cand(1, 1, &[], None),
            cand(1, 2, &[], None),
            cand(2, 1, &[], None),
            cand(2, 2, &[], None),
        ];
        assert_eq!(
            admit(SameEpic::Serial, &waiting, &[], 4),
            [id(1, 1), id(2, 1)]
        );
    }

    #[test]
    fn parallel_epics_admit_up_to_the_free_slots() {
        let waiting: Vec<Candidate> = (1..=8).map(|s| cand(1, s, &[], None)).collect();
        assert_eq!(
            admit(SameEpic::Parallel, &waiting, &[], 4),
            [id(1, 1), id(1, 2), id(1, 3), id(1, 4)]
        );
        assert!(admit(SameEpic::Parallel, &waiting, &[], 0).is_empty());
    }

    #[test]
    fn named_dependencies_win_over_the_epic_rule() {
        let none: &[StoryId] = &[];
        let waiting = [
            cand(1, 2, &[], Some(none)),
            cand(1, 3, &[], Some(&[id(1, 1)])),
            cand(1, 4, &[], Some(&[id(9, 9)])),
        ];
        let running = [Running {
            id: id(1, 1),
            footprint: Vec::new(),
        }];
        // 1.2 names none, 1.3 waits for the running 1.1, 1.4's dependency is outside the run.
        assert_eq!(
            admit(SameEpic::Serial, &waiting, &running, 4),
            [id(1, 2), id(1, 4)]
        );
    }

    #[test]
    fn overlapping_footprints_are_never_in_flight_together() {
        let waiting = [
            cand(1, 2, &["src/api/users.rs"], None),
            cand(1, 3, &["src/api/**"], None),
            cand(1, 4, &["src/web/a.rs"], None),
            cand(1, 5, &[], None),
        ];
        let running = [Running {
            id: id(1, 1),
            footprint: vec!["src/web/a.rs".into()],
        }];
        // 1.3 overlaps 1.2 (admitted in the same decision), 1.4 overlaps the running 1.1; the
        // unknown 1.5 is admitted optimistically.
        assert_eq!(
            admit(SameEpic::Parallel, &waiting, &running, 4),
            [id(1, 2), id(1, 5)]
        );
    }
}
