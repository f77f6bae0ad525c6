//! Helpers shared by the integration tests: temp projects, running the binary, process scans.
pub mod components;
