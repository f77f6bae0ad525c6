//! bmad-host: drives a BMAD project's stories to Done with the Claude Code CLI as the SM, Dev
//! and QA agents, every decision taken by a WASM policy component.
//!
//! Data flows one way: project files → status parser → workflow → policy decision →
//! supervisor → journal → workflow.

pub mod bindings;
pub mod builtin;
pub mod claude;
pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod gates;
pub mod journal;
pub mod plugins;
pub mod policy;
pub mod process;
pub mod project;
pub mod run;
pub mod ui;
pub mod workflow;
