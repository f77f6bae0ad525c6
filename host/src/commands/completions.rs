//! `bmad-host completions SHELL`: the shell completion script, from the clap definition.

use clap::CommandFactory as _;

use crate::cli::Cli;
use crate::error::Error;
use crate::exit;

/// Prints the completion script for `shell` on stdout.
pub(super) fn print(shell: clap_complete::Shell) -> Result<u8, Error> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "bmad-host",
        &mut std::io::stdout(),
    );
    Ok(exit::OK)
}
