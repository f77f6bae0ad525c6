//! The `bmad-host` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    bmad_host::main()
}
