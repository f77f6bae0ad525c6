//! The default scheduler (the `scheduler` world of `bmad:policy@0.2.0`): which stories of a
//! parallel run (`--jobs N`) start now.
//!
//! - `admit` ([`bmad_policy::schedule::admit`]): the candidates in story order, until the free
//!   slots are filled; a candidate starts when every story it depends on is done and its
//!   declared footprint (file globs) overlaps neither a running story's nor one admitted before
//!   it in the same call (a conservative glob-overlap test: two globs overlap when some path
//!   could match both). A story with no declared footprint starts optimistically: the
//!   integration lane catches real conflicts.
//!
//! A team's own scheduler is a plugin with `role = "scheduler"` and `wit = "0.2.0"`, chosen with
//! `[roles] scheduler = "NAME"`.

use bmad_policy::Scheduler;
use bmad_policy::schedule;
use bmad_policy::types::{Candidate, Running};

/// The default scheduler.
#[derive(Debug)]
pub struct DefaultScheduler;

impl Scheduler for DefaultScheduler {
    fn admit(candidates: &[Candidate], running: &[Running], slots: u32) -> Vec<String> {
        schedule::admit(candidates, running, slots)
    }
}

bmad_policy::export_scheduler!(DefaultScheduler);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::{Dependency, StoryState};

    fn story(id: &str, epic: u32, footprint: &[&str], deps: &[(&str, bool)]) -> Candidate {
        Candidate {
            id: id.into(),
            epic,
            state: Some(StoryState::ReadyForDev),
            footprint: footprint.iter().map(|g| (*g).to_owned()).collect(),
            footprint_known: !footprint.is_empty(),
            depends_on: deps
                .iter()
                .map(|(id, done)| Dependency {
                    id: (*id).into(),
                    done: *done,
                })
                .collect(),
        }
    }

    #[test]
    fn independent_stories_fill_the_slots_in_story_order() {
        let candidates: Vec<Candidate> = (1..=6)
            .map(|i| story(&format!("1.{i}"), 1, &[], &[]))
            .collect();
        assert_eq!(
            DefaultScheduler::admit(&candidates, &[], 4),
            ["1.1", "1.2", "1.3", "1.4"]
        );
    }

    #[test]
    fn overlapping_footprints_never_run_together() {
        let candidates = [
            story("2.1", 2, &["src/billing/**"], &[]),
            story(
                "2.2",
                2,
                &["src/billing/invoice.rs", "docs/billing.md"],
                &[],
            ),
            story("2.3", 2, &["src/users/*.rs"], &[]),
        ];
        let running = [Running {
            id: "1.4".into(),
            epic: 1,
            footprint: vec!["src/users/**".into()],
            footprint_known: true,
        }];
        assert_eq!(DefaultScheduler::admit(&candidates, &running, 3), ["2.1"]);
    }

    #[test]
    fn a_story_waits_for_its_dependencies() {
        let candidates = [
            story("3.2", 3, &[], &[("3.1", false)]),
            story("3.3", 3, &[], &[("3.1", true), ("2.9", true)]),
        ];
        assert_eq!(DefaultScheduler::admit(&candidates, &[], 2), ["3.3"]);
    }
}
