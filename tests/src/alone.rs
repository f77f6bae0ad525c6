//! Running one test alone in a fresh process of the test binary.
//!
//! The integration tests are one binary whose tests share a process, which is what most tests
//! want. A few measure the whole process, and another test running beside them would change
//! what they measure: the peak memory (`VmHWM`) of the process, or its unreaped children (once a
//! test has run the supervisor in the process, the process is a child subreaper, and the orphans
//! of any other test's killed `bmad-host` are re-parented to it). Such a test starts with
//! [`alone!`](crate::alone!): run by the test harness, it re-runs itself as the only test of a
//! new process of the same binary and reports that process's result; in that process it runs
//! its body.

use std::process::{Command, Stdio};

/// The variable that tells the process started by [`in_own_process`] which test it runs.
const ENV: &str = "BMAD_TESTS_ALONE";

/// True when the calling test should run its body here: this process was started to run it
/// alone. Otherwise runs the test `name` (its path without the crate name, as the test harness
/// names it: `module::test`) as the only test of a new process of this test binary, panics with
/// that process's output if it failed or did not run exactly that test, and returns false.
///
/// Use it through [`alone!`](crate::alone!), which builds the name.
pub fn in_own_process(name: &str) -> bool {
    if std::env::var_os(ENV).is_some_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(&exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(ENV, name)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name}, run alone in its own process, failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The harness shows this with the test's output (`--nocapture`, or on a failure).
    print!("{stdout}{stderr}");
    false
}

/// The name the test harness gives the test `test` of the module at `module_path` (from
/// `module_path!()`): the path without its first segment, the test binary's crate.
pub fn test_name(module_path: &str, test: &str) -> String {
    match module_path.split_once("::") {
        Some((_, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

/// Runs the enclosing test alone in a process of its own: `if !alone!(this_test) { return; }`
/// as the test's first line, with the test function's own name. True in that process (run the
/// body); false in the harness's process, after the test passed there (it panics if not).
#[macro_export]
macro_rules! alone {
    ($test:ident) => {
        $crate::alone::in_own_process(&$crate::alone::test_name(module_path!(), stringify!($test)))
    };
}
