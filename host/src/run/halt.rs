//! Why the run stops before every selected story is driven to its end.

use super::limit::Reset;
use crate::error::Error;
use crate::journal::JournalError;

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
    /// The journal failed: without it nothing is durable, so the run stops.
    Fatal(Error),
}

impl From<JournalError> for Halt {
    fn from(e: JournalError) -> Self {
        Halt::Fatal(Error::Journal(e))
    }
}
