//! A test scheduler (the `scheduler` world of `bmad:policy@0.2.0`), written with the SDK as a
//! team's own would be: it admits the candidates whose dependencies are done in reverse story
//! order, ignoring footprints, up to the free slots. A candidate whose id is `TRAP` makes it
//! panic (a trap), and one whose id is `LIAR` makes it answer an id that is no candidate's, so
//! the host's tests can see both refused with a clear error.

use bmad_policy::Scheduler;
use bmad_policy::types::{Candidate, Running};

struct Reverse;

impl Scheduler for Reverse {
    fn admit(candidates: &[Candidate], _running: &[Running], slots: u32) -> Vec<String> {
        if candidates.iter().any(|c| c.id == "TRAP") {
            panic!("the reverse scheduler was asked to trap");
        }
        if candidates.iter().any(|c| c.id == "LIAR") {
            return vec!["9.9".to_string()];
        }
        candidates
            .iter()
            .rev()
            .filter(|c| c.depends_on.iter().all(|d| d.done))
            .take(slots as usize)
            .map(|c| c.id.clone())
            .collect()
    }
}

bmad_policy::export_scheduler!(Reverse);
