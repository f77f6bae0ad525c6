//! Why the run stops before every selected story is driven to its end.

use std::fmt;

use super::limit::Reset;
use crate::error::Error;
use crate::journal::JournalError;
use crate::process::Survivor;

/// Why a story stopped being driven before it finished.
#[derive(Debug)]
pub(super) enum Halt {
    /// The operator pressed Ctrl-C; the call was torn down.
    Interrupted,
    /// The account's usage limit was hit; the run stops without charging the cycle (or waits
    /// for the reset, then redoes the step).
    UsageLimit {
        /// The story and role whose step was limited.
        story: String,
        role: &'static str,
        /// The CLI's message.
        message: String,
        /// When the limit resets, when known.
        reset: Option<Reset>,
    },
    /// The end of a call or gate (this run's, or an earlier run's) could not be proven: nothing
    /// more starts while its survivors live.
    Unproven(Unproven),
    /// The journal failed: without it nothing is durable, so the run stops.
    Fatal(Error),
}

impl From<JournalError> for Halt {
    fn from(e: JournalError) -> Self {
        Halt::Fatal(Error::Journal(e))
    }
}

/// An end that could not be proven: what ended, and the processes that keep it from being
/// proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Unproven {
    /// What ended, in words.
    pub what: String,
    /// Who survived (empty when the output is held by a process the host may not inspect).
    pub survivors: Vec<Survivor>,
}

/// `the end of the dev call of story 1.1 (cycle 1) cannot be proven: pid 7 (`sleep 3600`) holds
/// the output open; stop ... then run `bmad-host run` again`
impl fmt::Display for Unproven {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the end of {} cannot be proven: ", self.what)?;
        if self.survivors.is_empty() {
            f.write_str(
                "no process could be named (its output is held open by a process the host may \
                 not inspect, or one ended just as the host gave up)",
            )?;
        } else {
            let list: Vec<String> = self.survivors.iter().map(ToString::to_string).collect();
            f.write_str(&list.join("; "))?;
        }
        f.write_str(
            ". Nothing more runs while they live: stop them (as their owner, or as root), then \
             run `bmad-host run` again, which checks them first",
        )
    }
}
