//! A bare test component: only the `agent-policy` world of `bmad:policy@0.1.0`, no
//! `status-parser`, so the plugin host's tests can prove a component missing its role's exports
//! is refused at load.

use bmad_policy::Policy;
use bmad_policy::types::{Decision, StepReport, Story};

struct Bare;

impl Policy for Bare {
    fn begin(_story: &Story, _document: &str) -> Decision {
        Decision::Complete
    }

    fn end(_story: &Story, _report: &StepReport) -> Decision {
        Decision::Complete
    }
}

bmad_policy::export_policy!(Bare);
