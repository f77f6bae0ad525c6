//! A stand-in for the Claude Code CLI (see the module docs in the test crate).

fn main() {}
