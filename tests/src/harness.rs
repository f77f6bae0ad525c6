//! Running the real `bmad-host` binary on temp copies of sample projects with the fake Claude.
//!
//! [`plugins`] builds the repository's plugins once per test process (the same as
//! `cargo xtask build-plugins`, guarded by a file lock across test processes; not at all under
//! `BMAD_TESTS_PREBUILT=1`, see [`crate::components::prebuilt`]); [`Project`] is a temp copy of
//! a fixture; [`command`] is the binary in a hermetic environment; [`Run`] runs a command and
//! parses its NDJSON output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

use crate::components::{target_dir, workspace_root};

/// The repository's `plugins/` folder, with every component built into its plugin folder.
///
/// # Panics
/// When the plugins cannot be built: the tests that need them cannot run.
pub fn plugins() -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build_plugins) {
        panic!("{e}");
    }
    workspace_root().join("plugins")
}

fn build_plugins() -> Result<(), String> {
    if crate::components::prebuilt() {
        return Ok(());
    }
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
    let lock_path = target.join("bmad-plugins.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "run",
            "--quiet",
            "-p",
            "xtask",
            "--bin",
            "xtask",
            "--",
            "build-plugins",
        ])
        .output()
        .map_err(|e| format!("run cargo xtask build-plugins: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo xtask build-plugins failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A binary of this crate, next to the running test (`target/<profile>/deps/test-…` →
/// `target/<profile>/<name>`). Cargo builds a package's binaries before its integration tests.
fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is missing: build the test crate's binaries",
        bin.display()
    );
    bin
}

/// The fake Claude CLI.
pub fn fake_claude() -> PathBuf {
    sibling_bin("fake-claude")
}

/// The bmad-host binary under test.
pub fn bmad_host() -> PathBuf {
    sibling_bin("bmad-host")
}

/// A temp copy of a fixture project (`tests/fixtures/<name>`).
#[derive(Debug)]
pub struct Project {
    dir: TempDir,
}

impl Project {
    /// Copies `tests/fixtures/<name>`.
    pub fn fixture(name: &str) -> Project {
        Project {
            dir: copy_of(&fixtures().join(name)),
        }
    }

    /// Copies `tests/corpus/<name>` (`v4`, `v6`, `v6.12-build`).
    pub fn corpus(name: &str) -> Project {
        Project {
            dir: copy_of(&corpus().join(name)),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A file of the project, as text.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Writes a file of the project.
    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {rel}: {e}"));
    }

    /// Writes a fake-Claude script into the project's temp dir and returns its path.
    pub fn script(&self, script: &Value) -> PathBuf {
        let path = self.path().join(".fake-claude-script.json");
        std::fs::write(&path, script.to_string()).expect("write script");
        path
    }
}

/// The vendored BMAD test corpus (`tests/corpus`, a copy of the shared corpus).
pub fn corpus() -> PathBuf {
    let dir = workspace_root().join("tests/corpus");
    assert!(
        dir.join("README.md").is_file(),
        "the BMAD corpus is missing at {}",
        dir.display()
    );
    dir
}

/// The repository's sample projects (`tests/fixtures`).
pub fn fixtures() -> PathBuf {
    workspace_root().join("tests/fixtures")
}

/// A temp copy of a directory tree.
pub fn copy_of(src: &Path) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(src, dir.path());
    dir
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create dir");
    for entry in std::fs::read_dir(src).unwrap_or_else(|e| panic!("read {}: {e}", src.display())) {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// Where the tests' `bmad-host` keeps its compiled-component cache (`BMAD_HOST_CACHE_DIR`):
/// shared by every test, so each component is compiled once per target dir.
pub fn cache_dir() -> PathBuf {
    target_dir().join("bmad-host-test-cache")
}

/// The home (`HOME`, `XDG_CONFIG_HOME`) of the tests' `bmad-host`: an empty folder of the
/// target dir, so that neither the user's `config.toml` nor their trust store leaks into a
/// test. Tests that need a user configuration or a trust store of their own set
/// `XDG_CONFIG_HOME` to a temp dir.
pub fn test_home() -> PathBuf {
    let dir = target_dir().join("bmad-host-test-home");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// [`cache_dir`] with the repository's plugins compiled into it: the first caller compiles them
/// (one `bmad-host plugins list`), every other thread of this test process waits for it rather
/// than compiling the same components at the same time. Compiling the six default components
/// with a debug build of cranelift takes about 40 CPU-seconds; tests that do not test the cache
/// itself load from here.
///
/// # Panics
/// When `bmad-host plugins list` fails: no test that loads plugins could run.
pub fn warm_cache_dir() -> PathBuf {
    static WARM: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = WARM.get_or_init(warm_cache) {
        panic!("{e}");
    }
    cache_dir()
}

fn warm_cache() -> Result<(), String> {
    let mut cmd = hermetic();
    cmd.args(["plugins", "list", "--json", "--plugins"])
        .arg(plugins())
        .arg("--project")
        .arg(test_home());
    let out = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", bmad_host().display()))?;
    if !out.status.success() {
        return Err(format!(
            "bmad-host plugins list (warming the component cache) failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// `bmad-host` with a hermetic environment: no `BMAD_HOST_*` or `FAKE_CLAUDE_*` variable
/// inherited from the test's environment, `HOME` and `XDG_CONFIG_HOME` in [`test_home`], the
/// shared [`cache_dir`] (warmed first, see [`warm_cache_dir`]), stdin from /dev/null. Every test
/// that runs the binary starts here.
pub fn command() -> Command {
    warm_cache_dir();
    hermetic()
}

/// [`command`] without waiting for the warm cache.
fn hermetic() -> Command {
    let mut cmd = Command::new(bmad_host());
    cmd.stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("BMAD_HOST_") || name.starts_with("FAKE_CLAUDE_") {
            cmd.env_remove(&key);
        }
    }
    let home = test_home();
    cmd.env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"));
    cmd.env("BMAD_HOST_CACHE_DIR", cache_dir());
    cmd
}

/// [`command`] for `bmad-host run --plugins <repo plugins> --project P --claude-bin <fake>`,
/// for tests that drive the process themselves (signals, a terminal); [`Run::project`] runs it
/// to the end with `--json`.
pub fn run_command(project: &Project) -> Command {
    let mut cmd = command();
    cmd.arg("run")
        .arg("--plugins")
        .arg(plugins())
        .arg("--project")
        .arg(project.path())
        .arg("--claude-bin")
        .arg(fake_claude());
    cmd
}

/// A finished command: exit code, stdout as NDJSON events, stderr.
#[derive(Debug)]
pub struct Run {
    pub output: Output,
    pub events: Vec<Value>,
}

impl Run {
    /// Runs `bmad-host ARGS` with `env` added to the hermetic environment of [`command`].
    pub fn bmad_host(args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = command();
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let output = cmd.output().expect("run bmad-host");
        let events = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Run { output, events }
    }

    /// `bmad-host run --json --plugins <repo plugins> --project P --claude-bin <fake> ARGS`.
    pub fn project(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
        let plugins = plugins();
        let fake = fake_claude();
        let mut all = vec![
            "run",
            "--json",
            "--plugins",
            plugins.to_str().expect("utf-8 path"),
            "--project",
            project.path().to_str().expect("utf-8 path"),
            "--claude-bin",
            fake.to_str().expect("utf-8 path"),
        ];
        all.extend_from_slice(args);
        Run::bmad_host(&all, env)
    }

    /// The exit code (panics if killed by a signal).
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or_else(|| {
            panic!(
                "bmad-host died: {:?}\n{}",
                self.output.status,
                self.stderr()
            )
        })
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// The events named `name`.
    pub fn events_named(&self, name: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == name).collect()
    }

    /// The `story_finished` event of `story`.
    pub fn story_result(&self, story: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == "story_finished" && e["story"] == story)
            .unwrap_or_else(|| panic!("no story_finished for {story}:\n{}", self.stderr()))
    }
}

/// Reads `child`'s NDJSON events from its stdout until `until` says stop (returns the events
/// read, the last one included), or to EOF. Lines that are not JSON are skipped.
pub fn read_events_until(
    child: &mut std::process::Child,
    mut until: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    use std::io::{BufRead as _, BufReader};
    let stdout = child.stdout.as_mut().expect("the child's stdout is piped");
    let mut reader = BufReader::new(stdout);
    let mut events = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader
            .read_line(&mut line)
            .expect("read the child's stdout")
            == 0
        {
            return events;
        }
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let stop = until(&event);
        events.push(event);
        if stop {
            return events;
        }
    }
}
