//! The library's top-level error: every module's error, and the exit code each one means.
//!
//! Each error's message says what failed, in the words of the module that failed; what caused it
//! (an OS error, a parser's report) is its [`source`](std::error::Error::source), never repeated
//! in the message. [`Report`] renders the whole chain, as `main` prints it.

use std::fmt;

use crate::exit;

/// An error that stops a command. Story failures are not errors: they are results.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `bmad-host.toml`, a `BMAD_HOST_*` variable or a flag is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The BMAD project cannot be found, read or written.
    #[error(transparent)]
    Project(#[from] crate::project::ProjectError),
    /// A plugin cannot be loaded or failed.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::PluginError),
    /// The journal cannot be opened or written.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
    /// git failed, or the project is not fit for a parallel run (no repository, a detached
    /// HEAD, uncommitted changes).
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// A report cannot be made (`bmad-host report`). Boxed: it can hold a journal error, and
    /// every `Result` of the run loop carries this type.
    #[error(transparent)]
    Report(Box<crate::report::ReportError>),
    /// A file cannot be written (a report's page).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The user's trust store cannot be written (`bmad-host trust`).
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    /// A durable-execution engine (`worker`, `run --engine restate`).
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Bad usage the command line parser could not catch (a story that does not exist, ...).
    #[error("{0}")]
    Usage(String),
    /// The project directory given with `--project` cannot be opened.
    #[error("project directory {} cannot be opened (pass --project DIR)", dir.display())]
    ProjectDir {
        /// The directory as given.
        dir: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime `run` needs cannot start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    /// Standard output cannot be written (a closed pipe is not reported: see `main`).
    #[error("cannot write output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// The process exit code for this error (see [`crate::exit`]). Every variant is listed, so a
    /// new one does not compile until someone chooses its code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::Project(_)
            | Error::Plugin(_)
            | Error::Journal(_)
            | Error::Git(_)
            | Error::Trust(_)
            | Error::Engine(_)
            | Error::Report(_)
            | Error::Write { .. }
            | Error::Usage(_)
            | Error::ProjectDir { .. }
            | Error::Runtime(_)
            | Error::Output(_) => exit::USAGE,
        }
    }

    /// Whether this is a write to a reader that went away (`bmad-host status | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl From<crate::report::ReportError> for Error {
    fn from(e: crate::report::ReportError) -> Self {
        Error::Report(Box::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Output(e.into())
    }
}

/// An error and its causes on one line, each after a colon: `cannot read x: Permission denied`.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_follows_the_sources() {
        let e = Error::Runtime(std::io::Error::other("no threads"));
        assert_eq!(e.to_string(), "cannot start the async runtime");
        assert_eq!(
            Report(&e).to_string(),
            "cannot start the async runtime: no threads"
        );
        let transparent = Error::Config(crate::config::ConfigError::Read {
            path: "bmad-host.toml".into(),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        });
        assert_eq!(
            Report(&transparent).to_string(),
            "cannot read bmad-host.toml: permission denied"
        );
        assert_eq!(transparent.exit_code(), exit::USAGE);
    }
}

/// What goes wrong between bmad-host and an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The binary was built without the engine.
    #[error(
        "this bmad-host was built without the `restate` feature: install one with it (`cargo install --path host --features restate`)"
    )]
    NotBuilt,
    /// `worker --engine local`.
    #[error(
        "a worker serves an engine's workflows: use `--engine restate` (a local run needs no worker)"
    )]
    LocalWorker,
    /// The worker's address is taken or not ours.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `bmad-host balance` was given bad workers.
    #[error("balance: {0}")]
    Balance(String),
    /// The worker's clone has an `origin` whose default branch it does not know.
    #[error(
        "the worker's clone {clone} does not know the default branch of its `origin` (no refs/remotes/origin/HEAD), where stories start and land: run `git -C {clone} remote set-head origin --auto`"
    )]
    NoOriginHead {
        /// The clone (the project's root).
        clone: std::path::PathBuf,
    },
    /// The engine refused a request or could not be reached.
    #[error("Restate at {url}: {detail}")]
    Ingress {
        /// The request's URL.
        url: String,
        /// What happened.
        detail: String,
    },
}
