//! Why the run stops before every selected story is driven to its end.

use super::ends::Unproven;
use crate::error::Error;
use crate::journal::JournalError;

/// Why a story stopped being driven before it finished.
#[derive(Debug)]
pub(super) enum Halt {
    /// The operator pressed Ctrl-C; the call was torn down.
    Interrupted,
    /// The account's usage limit was hit; the run stops without charging the cycle.
    UsageLimit {
        message: String,
        resets: Option<String>,
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
