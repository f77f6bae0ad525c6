//! The library's top-level error: every module's error, and the exit code each one means.

use crate::cli::exit;

/// An error that stops a command. Story failures are not errors: they are results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// Bad usage the command line parser could not catch (a story that does not exist, ...).
    #[error("{0}")]
    Usage(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// The process exit code for this error (see [`crate::cli::exit`]).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Project(_)
            | Error::Plugin(_)
            | Error::Journal(_)
            | Error::Usage(_)
            | Error::Runtime(_)
            | Error::Output(_) => exit::USAGE,
        }
    }
}
