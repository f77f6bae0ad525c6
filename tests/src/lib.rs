//! Helpers shared by the integration tests: temp projects, running the binary, process scans.
pub mod alone;
pub mod components;
pub mod fake;
pub mod fake_log;
pub mod harness;
pub mod procs;

pub use procs::live_processes_with_marker;
