//! The real bmad-host binary, built inside the test crate so that tests can find it.

fn main() -> std::process::ExitCode {
    bmad_host::main()
}
