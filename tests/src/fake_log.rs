//! The fake Claude's call log: the file named by `FAKE_CLAUDE_LOG`, to which every process of
//! the fake appends one JSON line (`pid`, `ppid`, `pgid`, `role`, `story`, `argv`, `env`,
//! `stdin`, `cwd`, ...; see the fake's docs). One reader for every test.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::Project;

/// The log's file name inside a test project (`<project>/.fake-claude.log`).
pub const FILE: &str = ".fake-claude.log";

/// The calls logged in `path`, in order: one JSON object per process started. Empty when the
/// file does not exist (no call was made); lines that are not JSON are skipped.
pub fn read(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The log of `project`'s fake: where `FAKE_CLAUDE_LOG` points for it.
pub fn path(project: &Project) -> PathBuf {
    project.path().join(FILE)
}

/// [`path`] as the value of `FAKE_CLAUDE_LOG`.
pub fn env_value(project: &Project) -> String {
    path(project).to_str().expect("utf-8 path").to_owned()
}

/// The calls logged for `project` (see [`read`]).
pub fn calls(project: &Project) -> Vec<Value> {
    read(&path(project))
}

/// A logged call's command line, program first.
pub fn argv(call: &Value) -> Vec<&str> {
    call["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// A logged call's prompt, as the fake read its command line like the real CLI (empty when
/// there is none).
pub fn prompt(call: &Value) -> String {
    call["prompt"].as_str().unwrap_or_default().to_owned()
}
