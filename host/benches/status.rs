//! Status parse per story file, on the real story files of the vendored BMAD corpus
//! (`tests/corpus/v4/docs/stories/*.md`, `tests/corpus/v6/_bmad-output/implementation-artifacts/*.md`):
//! through the status-parser component (`PluginSet::parse_status`: a fresh instance, the
//! document copied into the guest, the outcome lifted back) and through the native parser
//! (`bmad_status::parse`) the component is built from. Target: under 50 µs per file.
//!
//! Needs the components in `plugins/` (`cargo xtask build-plugins`; `cargo xtask bench` does it).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use bmad_host::plugins::{PluginConfig, PluginSet};
use criterion::{Criterion, criterion_group, criterion_main};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The corpus story files, sorted, as (name, text).
fn stories() -> Vec<(String, String)> {
    let corpus = workspace().join("tests").join("corpus");
    let mut found = Vec::new();
    for dir in [
        corpus.join("v4/docs/stories"),
        corpus.join("v6/_bmad-output/implementation-artifacts"),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "md"))
            .collect();
        files.sort();
        let layout = if dir.starts_with(corpus.join("v4")) {
            "v4"
        } else {
            "v6"
        };
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            found.push((format!("{layout} {name} ({} B)", text.len()), text));
        }
    }
    assert!(!found.is_empty(), "no story files in {}", corpus.display());
    found
}

fn status_parse(c: &mut Criterion) {
    let cache = tempfile::tempdir().expect("cache dir");
    let cfg = PluginConfig {
        project_root: std::env::temp_dir(),
        cache_dir: Some(cache.path().to_path_buf()),
        ..PluginConfig::default()
    };
    let plugins = workspace().join("plugins");
    let set = PluginSet::load(&plugins, &cfg).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `cargo xtask build-plugins`)",
            plugins.display()
        )
    });
    let stories = stories();

    let mut group = c.benchmark_group("status/raw");
    for (name, text) in &stories {
        assert!(
            bmad_status::parse(text).value().is_some(),
            "{name}: no status"
        );
        group.bench_function(name.as_str(), |b| {
            b.iter(|| black_box(bmad_status::parse(black_box(text))))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("status/component");
    for (name, text) in &stories {
        set.parse_status(text).expect("the component parses");
        group.bench_function(name.as_str(), |b| {
            b.iter(|| black_box(set.parse_status(black_box(text)).expect("parse")))
        });
    }
    group.finish();
}

criterion_group!(benches, status_parse);
criterion_main!(benches);
