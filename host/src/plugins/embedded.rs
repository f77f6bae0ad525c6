//! The default plugins, compiled into the binary: so `cargo install` gives a `bmad-host` that
//! runs with no `--plugins` folder.
//!
//! `host/embedded/<name>/` holds each default plugin's `plugin.toml` and component, exactly as a
//! plugin folder would; `host/embedded/plugins.rs` lists them. Both are written by
//! `cargo xtask embed` (which builds the plugin crates under `plugins/` for `wasm32-wasip2`
//! reproducibly) and checked by `cargo xtask embed --check`, which rebuilds them and compares
//! the bytes. An embedded plugin is loaded like a folder's: the same manifest checks, the same
//! sandbox and limits, the same compiled-component cache ([`super::PluginSet::load_from`]).
//! [`export`] writes them out as plugin folders, a starting point for one's own.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::error::PluginError;
use super::manifest::MANIFEST_FILE;

/// One plugin compiled into the binary.
#[derive(Clone, Copy)]
pub struct EmbeddedPlugin {
    /// Its name: the name in its manifest and the folder it is exported to.
    pub name: &'static str,
    /// The text of its `plugin.toml`.
    pub manifest: &'static str,
    /// The component's file name (the manifest's `component`).
    pub component: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

impl std::fmt::Debug for EmbeddedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedPlugin")
            .field("name", &self.name)
            .field("component", &self.component)
            .field("wasm_bytes", &self.wasm.len())
            .finish_non_exhaustive()
    }
}

/// The plugins compiled into this binary, sorted by name.
pub static EMBEDDED: &[EmbeddedPlugin] =
    &include!(concat!(env!("CARGO_MANIFEST_DIR"), "/embedded/plugins.rs"));

impl EmbeddedPlugin {
    /// Where an embedded plugin is said to live, in messages and `plugins list`: it has no
    /// folder.
    pub fn location(&self) -> PathBuf {
        PathBuf::from(format!("(embedded)/{}", self.name))
    }
}

/// One plugin folder [`export`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    /// The plugin's name.
    pub name: String,
    /// The folder written: `DIR/<name>` with `plugin.toml` and the component.
    pub dir: PathBuf,
    /// The component file inside it.
    pub component: String,
    /// blake3 of the component, hex (as `plugins list` shows it).
    pub wasm_blake3: String,
}

/// Writes every embedded plugin to `dir/<name>/` (its `plugin.toml` and component), creating
/// `dir` if needed. Refuses, before writing anything, when one of those folders exists already.
pub fn export(dir: &Path) -> Result<Vec<Exported>, PluginError> {
    let failed = |path: &Path, what: &'static str| {
        let path = path.to_path_buf();
        move |source: std::io::Error| PluginError::Export { path, what, source }
    };
    for plugin in EMBEDDED {
        let folder = dir.join(plugin.name);
        if folder.symlink_metadata().is_ok() {
            return Err(PluginError::Export {
                path: folder,
                what: "refusing to overwrite",
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
    }
    let mut written = Vec::new();
    for plugin in EMBEDDED {
        let folder = dir.join(plugin.name);
        std::fs::create_dir_all(&folder).map_err(failed(&folder, "cannot create"))?;
        let manifest = folder.join(MANIFEST_FILE);
        std::fs::write(&manifest, plugin.manifest).map_err(failed(&manifest, "cannot write"))?;
        let component = folder.join(plugin.component);
        std::fs::write(&component, plugin.wasm).map_err(failed(&component, "cannot write"))?;
        written.push(Exported {
            name: plugin.name.to_string(),
            dir: folder,
            component: plugin.component.to_string(),
            wasm_blake3: blake3::hash(plugin.wasm).to_hex().to_string(),
        });
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::super::{Limits, Manifest, PluginRole};
    use super::*;

    #[test]
    fn the_default_plugins_are_embedded_sorted_with_valid_manifests() {
        let names: Vec<&str> = EMBEDDED.iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            ["dev", "qa", "qa-strict", "scheduler", "sm", "status"]
        );
        for plugin in EMBEDDED {
            let manifest = Manifest::parse_with(
                plugin.manifest,
                &plugin.location(),
                &Limits::HOST,
                &|file| file == plugin.component,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", plugin.name));
            assert_eq!(manifest.name, plugin.name);
            assert_eq!(manifest.component, plugin.component);
            assert!(plugin.wasm.starts_with(b"\0asm"), "{}", plugin.name);
        }
        let roles: Vec<PluginRole> = PluginRole::ALL
            .into_iter()
            .filter(|r| EMBEDDED.iter().any(|p| p.name == r.as_str()))
            .collect();
        assert_eq!(roles, PluginRole::ALL, "every role has its default");
    }

    #[test]
    fn the_embedded_set_loads_like_folders_and_serves_every_role() {
        use super::super::{PluginConfig, PluginSet, PluginSources, inspect_from};
        // The tests' shared cache (`target/bmad-host-test-cache`, as the integration tests'
        // harness has it): a debug build of cranelift takes about 40 CPU-seconds to compile
        // the six components, and compiling is not what this test tests. The test binary is
        // `target/<profile>/deps/…`.
        let exe = std::env::current_exe().expect("current exe");
        let target = exe
            .ancestors()
            .nth(3)
            .expect("the test binary lives in target/<profile>/deps");
        let project = tempfile::tempdir().expect("tempdir");
        let cfg = PluginConfig {
            cache_dir: Some(target.join("bmad-host-test-cache")),
            project_root: project.path().to_path_buf(),
            ..PluginConfig::default()
        };
        let sources = PluginSources::embedded_and(None);
        let set = PluginSet::load_from(&sources, &cfg).expect("the embedded plugins load");
        for role in PluginRole::ALL {
            assert_eq!(set.plugin_for(role), role.as_str());
        }
        let outcome = set
            .parse_status("# Story 1.1\n\n## Status\n\nDone\n")
            .expect("parse");
        assert!(
            matches!(outcome, crate::policy::ParseOutcome::Found(ref v) if v.raw == "Done"),
            "{outcome:?}"
        );
        let infos = inspect_from(&sources, &cfg);
        assert_eq!(infos.len(), EMBEDDED.len());
        for info in &infos {
            assert_eq!(info.problem, None, "{}", info.name);
            assert_eq!(info.source, super::super::PluginSource::Embedded);
        }
    }

    #[test]
    fn the_embedded_folders_are_exactly_the_listed_plugins() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("embedded");
        let mut folders: Vec<String> = std::fs::read_dir(&root)
            .expect("host/embedded")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        folders.sort();
        let names: Vec<&str> = EMBEDDED.iter().map(|p| p.name).collect();
        assert_eq!(folders, names);
    }

    #[test]
    fn export_writes_folders_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("mine");
        let written = export(&out).expect("export");
        assert_eq!(written.len(), EMBEDDED.len());
        for (plugin, w) in EMBEDDED.iter().zip(&written) {
            assert_eq!(
                std::fs::read(w.dir.join(plugin.component)).expect("wasm"),
                plugin.wasm
            );
            assert_eq!(
                std::fs::read_to_string(w.dir.join(MANIFEST_FILE)).expect("manifest"),
                plugin.manifest
            );
        }
        std::fs::remove_dir_all(out.join("sm")).expect("rm");
        std::fs::write(out.join("status").join(MANIFEST_FILE), "mine").expect("write");
        let e = export(&out).expect_err("a folder exists");
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        assert!(!out.join("sm").exists(), "nothing is written on refusal");
        assert_eq!(
            std::fs::read_to_string(out.join("status").join(MANIFEST_FILE)).expect("read"),
            "mine"
        );
    }
}
