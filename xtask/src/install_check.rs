//! `cargo xtask install-check`: `cargo install --path host` gives a `bmad-host` that drives a
//! BMAD project to Done with no `--plugins` (the default plugins are embedded in it).
//!
//! It installs into a temp root (`--debug` and the workspace's target directory, so the dev
//! build is reused: a release build would cost minutes), copies the v4 sample project to a temp
//! directory, runs the installed binary on it with the fake Claude of the test crate, the
//! tests' component cache (no user's; see `test_cache_dir`) and no other `BMAD_HOST_*`
//! variable, and requires exit 0 with every story Done (from the run's `--json` events and
//! from `status --json`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{cargo, copy_dir, run, show, target_dir, test_cache_dir};

/// How `cargo install` compiles the workspace's crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// Plain `rustc`: `cargo xtask install-check` on its own.
    Plain,
    /// Through `clippy-driver`, as `cargo xtask test` has just built them: the same code, and
    /// the same fingerprints, so the install reuses that build instead of compiling `bmad-host`
    /// again (about 40 s of a fresh clone's run on 2 cores).
    AsTested,
}

/// `cargo xtask install-check`.
pub fn run_check(root: &Path, build: Build) -> Result<()> {
    let scratch = Scratch::new()?;
    let target = target_dir(root);
    let fake = target.join("debug").join("fake-claude");
    if !fake.is_file() {
        // `cargo xtask test` has built it with the tests; building the test crate alone would
        // resolve other features and rebuild wasmtime, so only when it is missing.
        run(cargo().current_dir(root).args([
            "build",
            "--quiet",
            "-p",
            "bmad-host-tests",
            "--bin",
            "fake-claude",
        ]))?;
    }
    let install_root = scratch.path().join("root");
    let mut install = cargo();
    if build == Build::AsTested {
        crate::linted_by_clippy(&mut install)?;
    }
    run(install
        .current_dir(root)
        .args([
            "install", "--quiet", "--debug", "--locked", "--path", "host",
        ])
        .arg("--root")
        .arg(&install_root)
        .arg("--target-dir")
        .arg(&target))?;
    let bin = install_root.join("bin").join("bmad-host");
    ensure!(bin.is_file(), "cargo install wrote no {}", bin.display());

    let project = scratch.path().join("project");
    copy_dir(&root.join("tests/fixtures/v4-sample"), &project)?;
    let cache = test_cache_dir(root);
    let installed = |args: &[&str]| -> Result<Output> {
        let mut cmd = Command::new(&bin);
        cmd.args(args)
            .arg("--project")
            .arg(&project)
            .stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("BMAD_HOST_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("BMAD_HOST_CACHE_DIR", &cache);
        eprintln!("$ {}", show(&cmd));
        cmd.output()
            .with_context(|| format!("cannot run {}", bin.display()))
    };

    let fake_arg = fake
        .to_str()
        .context("the fake Claude's path is not UTF-8")?;
    let out = installed(&["run", "--json", "--claude-bin", fake_arg])?;
    let events = ndjson(&out);
    let code = out.status.code();
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "story_finished")
        .collect();
    let started = events
        .iter()
        .find(|e| e["event"] == "run_started")
        .context("no run_started event")?;
    let stories = started["stories"].as_array().cloned().unwrap_or_default();
    let not_done: Vec<String> = finished
        .iter()
        .filter(|e| e["result"] != "done")
        .map(|e| format!("{} {}", e["story"], e["result"]))
        .collect();
    if code != Some(0)
        || stories.is_empty()
        || finished.len() != stories.len()
        || !not_done.is_empty()
    {
        bail!(
            "the installed bmad-host did not drive the sample to Done: exit {code:?}, {} stories, {} finished, not done: {not_done:?}\n{}",
            stories.len(),
            finished.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let out = installed(&["status", "--json"])?;
    ensure!(
        out.status.success(),
        "status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let states: Vec<String> = ndjson(&out)
        .iter()
        .map(|s| format!("{} {}", s["id"], s["state"]))
        .collect();
    ensure!(
        states.len() == stories.len() && states.iter().all(|s| s.ends_with("\"done\"")),
        "after the run, status says {states:?}"
    );
    eprintln!(
        "install-check: `cargo install --path host` gives a bmad-host that drove {} stories to Done with no --plugins",
        stories.len()
    );
    Ok(())
}

fn ndjson(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A temp directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("bmad-host-install-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
