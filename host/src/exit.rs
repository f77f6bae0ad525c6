//! The process exit codes: a scripting contract, so they live apart from everything that
//! produces them. This module imports nothing of the crate; [`crate::error::Error::exit_code`]
//! maps every error to one of them and the `run` command picks one from its stories' results.

/// Every selected story is done (or, for the other commands, success).
pub const OK: u8 = 0;

/// A story failed or was escalated, or the run stopped at a usage limit, or on an unproven end
/// (a call or gate whose end the host could not prove, this run's or an earlier one's).
pub const STORY_FAILED: u8 = 1;

/// Bad usage, configuration, project, plugin or journal. Also what clap uses for a command line
/// it cannot parse.
pub const USAGE: u8 = 2;

/// Interrupted by the operator (Ctrl-C), after a clean teardown of the agent in flight.
pub const INTERRUPTED: u8 = 130;
