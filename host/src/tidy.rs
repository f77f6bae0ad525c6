//! Checks of the host's source itself, run as unit tests: the modules form layers, with no
//! import running back up (and so no circle). (That every file opens with a `//!` paragraph is
//! checked for the whole workspace by the integration tests' tidy.)
//!
//! The layers are [`LAYERS`]; a module may use (`crate::x`) only modules of the layers below
//! its own. Inside a folder module, the files may use each other (`super::x`) in any direction
//! but not in a circle. Both are read from the text of `host/src` with no parser: a path in a
//! `//` comment does not count, one in a string does (none do today).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, from the entry down. A module uses only modules of later rows.
const LAYERS: &[&[&str]] = &[
    &["commands"],
    &["engine"],
    &["cli", "run"],
    &["context", "notify"],
    &["error", "gates"],
    &[
        "builtin", "claude", "git", "plugins", "project", "report", "ui", "workflow",
    ],
    &["journal", "process"],
    &["policy"],
    &["bindings", "config", "exit", "http", "trust"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without its `//` comments (doc comments included).
fn code(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segments of every `prefix::` path in `code`: `crate::a::b` and
/// `crate::{a, b::c}` give `a` and `b` for the prefix `crate`.
fn paths_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let needle = format!("{prefix}::");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices(&needle) {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[at + needle.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The items at the group's own depth: `{a, b::{c, d}}` gives `a` and `b`.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        start = false;
                        found.extend(ident(&group[i..]));
                    }
                    _ => {}
                }
            }
        } else {
            found.extend(ident(rest));
        }
    }
    found
}

fn ident(text: &str) -> Option<String> {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    let name = &text[..end];
    (!name.is_empty() && name != "self").then(|| name.to_string())
}

/// The top-level module a file belongs to (`None` for the crate roots and this file).
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "tidy")).then(|| name.to_string())
}

/// A circle in `edges`, if there is one, as the modules along it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|n| n == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// `module → modules it uses` between the top-level modules.
fn top_edges() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root) {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        let Some(module) = top_module(rel) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}"));
        let used = paths_after(&code(&text), "crate");
        let entry = edges.entry(module.clone()).or_default();
        entry.extend(used.into_iter().filter(|u| *u != module));
    }
    edges
}

#[test]
fn modules_use_only_the_layers_below() {
    let rank = |m: &str| LAYERS.iter().position(|layer| layer.contains(&m));
    let mut wrong = Vec::new();
    for (module, used) in top_edges() {
        let Some(from) = rank(&module) else {
            wrong.push(format!(
                "`{module}` is in no layer: add it to LAYERS in tidy.rs"
            ));
            continue;
        };
        for target in used {
            match rank(&target) {
                Some(to) if to > from => {}
                Some(_) => wrong.push(format!("`{module}` uses `{target}`, which is not below it")),
                // Not one of ours (a macro's `crate::` path, say): nothing to check.
                None => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_module_folder_has_a_circle() {
    let root = src();
    let mut folders: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in rust_files(&root) {
        let rel = file.strip_prefix(&root).unwrap_or(&file);
        let parts: Vec<&str> = rel.iter().filter_map(|p| p.to_str()).collect();
        let [folder, name] = parts.as_slice() else {
            continue;
        };
        let module = name.strip_suffix(".rs").unwrap_or(name).to_string();
        if module == "mod" {
            continue;
        }
        let text = code(&std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{e}")));
        let mut used = paths_after(&text, "super");
        used.extend(paths_after(&text, &format!("crate::{folder}")));
        used.remove(&module);
        folders
            .entry((*folder).to_string())
            .or_default()
            .entry(module)
            .or_default()
            .extend(used);
    }
    for (folder, mut edges) in folders {
        let files: BTreeSet<String> = edges.keys().cloned().collect();
        for used in edges.values_mut() {
            used.retain(|u| files.contains(u));
        }
        if let Some(cycle) = find_cycle(&edges) {
            panic!("{folder}/ has an import circle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_reader_finds_grouped_and_plain_paths() {
    let text = "use crate::{a, b::{c, d}, self};\nlet x = crate::e::f(); // crate::g\n$crate::h";
    let found = paths_after(&code(text), "crate");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["a", "b", "e"]);
    let mut edges = BTreeMap::new();
    edges.insert("x".to_string(), BTreeSet::from(["y".to_string()]));
    edges.insert("y".to_string(), BTreeSet::from(["x".to_string()]));
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["x".into(), "y".into(), "x".into()])
    );
}
