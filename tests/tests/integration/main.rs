//! The integration tests of bmad-host, in one test binary (as nextest and ripgrep do): one link
//! of wasmtime instead of one per file, and every module's tests run side by side.
//!
//! Each module is one area, driving the real `bmad-host` binary (a `[[bin]]` of this crate, found
//! next to the test binary) or the library against the fake Claude CLI, sample projects and
//! test components. The helpers they share live in the crate's library (`tests/src`).
//!
//! Run one area with `cargo test -p bmad-host-tests --test integration -- MODULE::`, e.g.
//! `-- gates::` or `-- supervisor_stress::`. Snapshot tests (`cli_snapshots`) are updated with
//! `INSTA_UPDATE=always cargo test -p bmad-host-tests --test integration -- cli_snapshots::`.

mod build_flow;
mod cli_snapshots;
mod converge;
mod embedded;
mod engine;
mod gates;
mod hostile_ends;
mod hostile_grants;
mod hostile_paths;
mod hostile_review;
mod hostile_trust;
mod journal;
mod keeper;
mod mock_anthropic;
mod notify;
mod parallel;
mod plugins;
mod project;
mod project_status_cli;
mod qa_gate_slug;
mod report;
mod resume;
mod run_loop;
mod spend_caps;
mod sprint_ledger;
mod supervisor;
mod supervisor_cli;
mod supervisor_stress;
mod team_policy;
mod terminal;
mod tidy;
mod usage_limit;
mod usage_limit_captures;
mod wit_versions;
