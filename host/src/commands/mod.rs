//! The subcommands, one file each, and the dispatch that resolves the command line into a
//! [`Context`](crate::context::Context) before any of them runs.
//!
//! This is the top of the library: it may use every module below it, and nothing uses it but
//! `main`. `run`'s file is a thin call into [`crate::run`]; the others are whole here. None of
//! them writes to the project except `run`, and `report` (its page, under `.bmad-host/`); `trust` writes to the user's configuration directory.

mod completions;
mod config;
mod dispatch;
mod log;
mod plan;
mod plugins;
mod report;
mod run;
mod status;
mod trust;

pub use dispatch::main;
