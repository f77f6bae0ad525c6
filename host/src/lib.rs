//! bmad-host: drives a BMAD project's stories to Done with the Claude Code CLI as the SM, Dev
//! and QA agents, every decision taken by a WASM policy component.
//!
//! Data flows one way: project files → status parser → workflow → policy decision →
//! supervisor → journal → workflow. `ARCHITECTURE.md` at the repository root maps the modules,
//! follows one story through them and states who may write what.
//!
//! The modules are layered: each uses only modules of the layers below it (a unit test,
//! `tidy`, keeps it so; `ARCHITECTURE.md` draws the layers):
//!
//! - the entry: [`main`] → [`commands`] (dispatch, one file per subcommand), which resolves
//!   [`cli`] (the raw arguments) into a [`context`] once;
//! - the run loop: [`run`], and beside it the notifiers, [`notify`];
//! - the engines: [`gates`], [`git`] (worktrees and integration for parallel runs), [`claude`] (the supervisor), [`plugins`], [`project`],
//!   [`workflow`], [`ui`], [`builtin`], [`report`], then [`journal`] and [`process`];
//! - the vocabulary and the leaves: [`policy`] over [`bindings`], [`config`], [`exit`],
//!   [`trust`] (the user's directory and the project files they trust), and [`error`], which
//!   gathers the engines' errors for the entry.

// `missing_docs` is set here, not in `[workspace.lints]`: Cargo cannot add a lint to one crate
// that takes the workspace's, and the plugins' and tests' crates are not documented libraries.
#![warn(missing_docs)]

pub mod bindings;
pub mod builtin;
pub mod claude;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod engine;
pub mod error;
pub mod exit;
pub mod gates;
pub mod git;
mod http;
pub mod journal;
pub mod notify;
pub mod plugins;
pub mod policy;
pub mod process;
pub mod project;
pub mod report;
pub mod run;
pub mod trust;
pub mod ui;
pub mod workflow;

#[cfg(test)]
mod tidy;

/// The `bmad-host` program: parses the command line, runs the command and returns the exit code
/// (see [`exit`]). The binary's `main` is this, so the test crate can build the same binary.
pub fn main() -> std::process::ExitCode {
    commands::main()
}
