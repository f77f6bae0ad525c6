//! Tidy: invariants of the source tree checked as tests (as rust-analyzer's `tidy.rs` does), so
//! that `cargo test` is the whole of CI.
//!
//! Every Rust module of the workspace's crates (`src/` of each member in the root
//! `Cargo.toml`: host, tests, xtask, the plugins, the SDK and the test components; and this
//! test binary) opens with a `//!` doc saying what it is for.

use std::path::{Path, PathBuf};

use bmad_host_tests::components::workspace_root;

/// The workspace members' directories, from the root `Cargo.toml` (a trailing `/*` is expanded
/// to the directories under it that hold a `Cargo.toml`).
fn members(root: &Path) -> Vec<PathBuf> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("read Cargo.toml");
    let table: toml::Table = manifest.parse().expect("Cargo.toml is TOML");
    let listed = table["workspace"]["members"]
        .as_array()
        .expect("[workspace] members");
    let mut dirs = Vec::new();
    for member in listed {
        let member = member.as_str().expect("a member is a string");
        match member.strip_suffix("/*") {
            Some(parent) => {
                let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(parent))
                    .expect("list members")
                    .filter_map(|e| Some(e.ok()?.path()))
                    .filter(|d| d.join("Cargo.toml").is_file())
                    .collect();
                found.sort();
                dirs.extend(found);
            }
            None => dirs.push(root.join(member)),
        }
    }
    dirs
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// True when the first line that is not blank is a `//!` comment.
fn opens_with_module_doc(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .is_some_and(|l| l.starts_with("//!"))
}

#[test]
fn every_module_opens_with_a_doc_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    for member in members(&root) {
        rust_files(&member.join("src"), &mut files);
    }
    rust_files(&root.join("tests/tests"), &mut files);
    files.sort();
    // The crates that must be there: a mistake in finding them must not pass as "all tidy".
    for krate in ["host/src/lib.rs", "tests/src/lib.rs", "xtask/src/main.rs"] {
        assert!(
            files.contains(&root.join(krate)),
            "{krate} was not found among {} files",
            files.len()
        );
    }
    assert!(
        files.iter().any(|f| f.starts_with(root.join("plugins"))),
        "no plugin crate was found"
    );
    let missing: Vec<String> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            !opens_with_module_doc(&text)
        })
        .map(|f| f.strip_prefix(&root).unwrap_or(f).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these modules do not open with a `//!` doc saying what they are for:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_module_doc_check_tells_a_doc_from_other_comments() {
    assert!(opens_with_module_doc("//! The run loop.\n\nuse std::fs;\n"));
    assert!(opens_with_module_doc("\n//! After a blank line.\n"));
    assert!(!opens_with_module_doc(
        "// A plain comment.\n//! Too late.\n"
    ));
    assert!(!opens_with_module_doc("/// An item doc.\nfn f() {}\n"));
    assert!(!opens_with_module_doc("use std::fs;\n"));
    assert!(!opens_with_module_doc(""));
}
