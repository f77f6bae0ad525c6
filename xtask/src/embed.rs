//! `cargo xtask embed [--check] [--toolchain VERSION]`: the default plugins embedded in
//! bmad-host, rebuilt from this repository's sources.
//!
//! `host/embedded/` holds, for every plugin crate under `plugins/`, its `plugin.toml` and its
//! component (`host/embedded/<name>/`), plus `plugins.rs`, the list the host `include!`s, and
//! `TOOLCHAIN`, the Rust version the components are built with. `embed` builds the plugin
//! crates for `wasm32-wasip2` (profile `wasm`) and writes all of it; `embed --check` builds
//! them the same way and fails, naming each component that differs, unless every byte matches.
//!
//! The build is reproducible across clone paths and users: it runs with the pinned toolchain
//! (installed through rustup when missing), `--locked`, and with `--remap-path-prefix` for the
//! workspace root, the target directory and `CARGO_HOME` (through `CARGO_ENCODED_RUSTFLAGS`,
//! which reaches only the wasm target's crates because `--target` is given). `--toolchain
//! VERSION` moves the pin. Every wasm build of the xtasks uses the same flags and the workspace's
//! target directory ([`reproducible`]), so that `build-plugins`, the test components and
//! `embed --check` share one build instead of compiling the guests' dependencies twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{PluginCrate, cargo, plugin_crates, run, show, target_dir};

/// Where the embedded plugins live, relative to the workspace root.
const EMBEDDED_DIR: &str = "host/embedded";
/// The pinned toolchain's file inside [`EMBEDDED_DIR`].
const TOOLCHAIN_FILE: &str = "TOOLCHAIN";
/// The list of embedded plugins inside [`EMBEDDED_DIR`], `include!`d by the host.
const INDEX_FILE: &str = "plugins.rs";
/// What the paths of the machine that built the components become inside them.
const REMAPPED_ROOT: &str = "/bmad-host";
const REMAPPED_TARGET: &str = "/bmad-host-target";
const REMAPPED_CARGO_HOME: &str = "/cargo";
/// Files of [`EMBEDDED_DIR`] that `embed` neither writes nor checks.
const KEPT: &[&str] = &["README.md"];
/// The command that regenerates `host/embedded/`.
const REGENERATE: &str = "cargo xtask embed";

/// What `embed` was asked to do.
#[derive(Debug, Default)]
pub struct Options {
    /// Compare instead of writing.
    pub check: bool,
    /// Pin this toolchain instead of the one in `host/embedded/TOOLCHAIN`.
    pub toolchain: Option<String>,
    /// Build in this target directory instead of `<target>/embed` (for the reproducibility
    /// check across clones).
    pub target_dir: Option<PathBuf>,
}

impl Options {
    /// Reads `--check`, `--toolchain VERSION` and `--target-dir DIR` from the arguments after
    /// `embed`.
    pub fn parse(args: &[String]) -> Result<Options> {
        let mut options = Options::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--check" => options.check = true,
                "--toolchain" => {
                    options.toolchain =
                        Some(args.next().context("--toolchain needs a VERSION")?.clone());
                }
                "--target-dir" => {
                    options.target_dir =
                        Some(args.next().context("--target-dir needs a DIR")?.into());
                }
                other => bail!(
                    "embed: unknown argument `{other}` (use --check, --toolchain VERSION, --target-dir DIR)"
                ),
            }
        }
        if options.check && options.toolchain.is_some() {
            bail!(
                "embed: --check verifies the pinned toolchain's build; --toolchain moves the pin"
            );
        }
        Ok(options)
    }
}

/// `cargo xtask embed`.
pub fn run_embed(root: &Path, options: &Options) -> Result<()> {
    let embedded = root.join(EMBEDDED_DIR);
    let toolchain = match &options.toolchain {
        Some(version) => version.clone(),
        None => pinned_toolchain(&embedded)?,
    };
    let target = options
        .target_dir
        .clone()
        .unwrap_or_else(|| target_dir(root));
    let plugins = plugin_crates(root)?;
    if plugins.is_empty() {
        bail!("no plugin crates under {}/plugins", root.display());
    }
    let files = build(root, &plugins, &toolchain, &target)?;
    if options.check {
        check(&embedded, &files)
    } else {
        write(&embedded, &files)?;
        eprintln!(
            "wrote {} ({} plugins, built with Rust {toolchain})",
            embedded.display(),
            plugins.len()
        );
        Ok(())
    }
}

/// `cargo xtask embed --check`, as `cargo xtask test` runs it.
pub fn check_current(root: &Path) -> Result<()> {
    run_embed(
        root,
        &Options {
            check: true,
            ..Options::default()
        },
    )
}

/// The toolchain version `host/embedded/TOOLCHAIN` pins.
fn pinned_toolchain(embedded: &Path) -> Result<String> {
    let path = embedded.join(TOOLCHAIN_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: run `{REGENERATE} --toolchain VERSION` to pin one",
            path.display()
        )
    })?;
    let version = text.trim();
    if version.is_empty() || version.contains(char::is_whitespace) {
        bail!(
            "{} must hold one toolchain version, e.g. 1.95.0",
            path.display()
        );
    }
    Ok(version.to_string())
}

/// Builds the plugin crates reproducibly and returns every file of `host/embedded/`
/// (relative path → bytes).
fn build(
    root: &Path,
    plugins: &[PluginCrate],
    toolchain: &str,
    target: &Path,
) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut cmd = cargo_for(toolchain)?;
    cmd.current_dir(root)
        .args([
            "build",
            "--locked",
            "--target",
            "wasm32-wasip2",
            "--profile",
        ])
        .arg("wasm")
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_ENCODED_RUSTFLAGS", remap_flags(root, target))
        .env_remove("RUSTFLAGS");
    for p in plugins {
        cmd.args(["-p", &p.package]);
    }
    run(&mut cmd)?;
    let out = target.join("wasm32-wasip2").join("wasm");
    let mut files = BTreeMap::new();
    let mut index = String::from(
        "// @generated by `cargo xtask embed` from the plugin crates under plugins/: do not edit.\n\
         // The plugins compiled into bmad-host (see host/src/plugins/embedded.rs), sorted by name.\n[\n",
    );
    let mut named: Vec<(String, &PluginCrate)> = Vec::new();
    for p in plugins {
        named.push((manifest_name(p)?, p));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, p) in named {
        let built = out.join(format!("{}.wasm", p.package.replace('-', "_")));
        let wasm =
            std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
        let manifest = p.dir.join("plugin.toml");
        let manifest = std::fs::read(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let folder = PathBuf::from(&name);
        files.insert(folder.join("plugin.toml"), manifest);
        files.insert(folder.join(&p.component), wasm);
        index.push_str(&format!(
            "    EmbeddedPlugin {{\n        \
             name: {name:?},\n        \
             manifest: include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/embedded/{name}/plugin.toml\")),\n        \
             component: {component:?},\n        \
             wasm: include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/embedded/{name}/{component}\")),\n    \
             }},\n",
            component = p.component,
        ));
    }
    index.push_str("]\n");
    files.insert(PathBuf::from(INDEX_FILE), index.into_bytes());
    files.insert(
        PathBuf::from(TOOLCHAIN_FILE),
        format!("{toolchain}\n").into_bytes(),
    );
    Ok(files)
}

/// The plugin's `name` in its `plugin.toml` (the folder it is embedded in).
fn manifest_name(p: &PluginCrate) -> Result<String> {
    let path = p.dir.join("plugin.toml");
    crate::read_toml(&path)?
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .with_context(|| format!("{} has no `name`", path.display()))
}

/// `cargo` of `toolchain`: the running one when it is that version, else rustup's (installing
/// the toolchain and its wasm32-wasip2 target when missing).
fn cargo_for(toolchain: &str) -> Result<Command> {
    let current = rustc_version()?;
    if current == toolchain {
        crate::ensure_wasm_target()?;
        return Ok(cargo());
    }
    let Ok(installed) = Command::new("rustup").args(["toolchain", "list"]).output() else {
        bail!(
            "the embedded plugins are built with Rust {toolchain} (host/embedded/TOOLCHAIN), this is {current} and there is no rustup to get {toolchain}: install it, or move the pin with `{REGENERATE} --toolchain {current}`"
        );
    };
    let listed = String::from_utf8_lossy(&installed.stdout);
    if !listed
        .lines()
        .any(|l| l.starts_with(&format!("{toolchain}-")))
    {
        eprintln!("the embedded plugins are built with Rust {toolchain}: installing it");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            toolchain,
            "--profile",
            "minimal",
            "--target",
            "wasm32-wasip2",
        ]))?;
    } else {
        // Not `toolchain install` again: on an installed toolchain it updates it.
        let targets = Command::new("rustup")
            .args(["target", "list", "--installed", "--toolchain", toolchain])
            .output()
            .context("cannot run rustup target list")?;
        if !String::from_utf8_lossy(&targets.stdout).contains("wasm32-wasip2") {
            run(Command::new("rustup").args([
                "target",
                "add",
                "--toolchain",
                toolchain,
                "wasm32-wasip2",
            ]))?;
        }
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["run", toolchain, "cargo"]).env_remove("RUSTC");
    Ok(cmd)
}

/// The running toolchain's version (`1.95.0`).
fn rustc_version() -> Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("-V");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", show(&cmd)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .map(str::to_string)
        .with_context(|| format!("cannot read the version in `{}`", text.trim()))
}

/// Sets `cmd` (a `cargo build --target wasm32-wasip2` in the workspace's target directory) up
/// as the embedded plugins are built: the same `--remap-path-prefix` flags, so that it shares
/// their build.
pub fn reproducible(cmd: &mut Command, root: &Path) {
    let target = target_dir(root);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", remap_flags(root, &target))
        .env_remove("RUSTFLAGS");
}

/// `--remap-path-prefix` for every path of this machine a component could otherwise carry
/// (panic locations of dependencies and of generated code), joined for
/// `CARGO_ENCODED_RUSTFLAGS`. The more specific prefixes come last: rustc applies the last
/// that matches.
fn remap_flags(root: &Path, target: &Path) -> String {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let mut pairs: Vec<(PathBuf, &str)> = vec![(root.to_path_buf(), REMAPPED_ROOT)];
    if let Some(home) = cargo_home {
        pairs.push((home, REMAPPED_CARGO_HOME));
    }
    pairs.push((target.to_path_buf(), REMAPPED_TARGET));
    // A prefix inside another one must come after it.
    pairs.sort_by_key(|(path, _)| path.components().count());
    pairs
        .iter()
        .map(|(from, to)| format!("--remap-path-prefix={}={to}", from.display()))
        .collect::<Vec<_>>()
        .join("\u{1f}")
}

/// Replaces `host/embedded/` with `files` (removing what is no longer built).
fn write(embedded: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    for stale in existing(embedded)? {
        if !files.contains_key(&stale) {
            let path = embedded.join(&stale);
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    for (rel, bytes) in files {
        let path = embedded.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    remove_empty_dirs(embedded)
}

/// Fails unless `host/embedded/` holds exactly `files`, naming what differs.
fn check(embedded: &Path, files: &BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    let on_disk = existing(embedded)?;
    let mut problems = Vec::new();
    for (rel, bytes) in files {
        match std::fs::read(embedded.join(rel)) {
            Ok(found) if &found == bytes => {}
            Ok(found) => problems.push(format!(
                "{} differs ({} bytes, blake3 {}; rebuilt: {} bytes, blake3 {})",
                rel.display(),
                found.len(),
                blake3::hash(&found).to_hex(),
                bytes.len(),
                blake3::hash(bytes).to_hex()
            )),
            Err(_) => problems.push(format!("{} is missing", rel.display())),
        }
    }
    for rel in on_disk.iter().filter(|r| !files.contains_key(*r)) {
        problems.push(format!(
            "{} is not built from any plugin crate",
            rel.display()
        ));
    }
    if !problems.is_empty() {
        bail!(
            "{} does not match the plugins built from this repository's sources:\n  {}\nrun `{REGENERATE}` and commit {EMBEDDED_DIR}/",
            EMBEDDED_DIR,
            problems.join("\n  ")
        );
    }
    eprintln!(
        "{EMBEDDED_DIR}: every embedded plugin matches its rebuild ({} files)",
        files.len()
    );
    Ok(())
}

/// Every file under `dir`, relative to it (none when it does not exist).
fn existing(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    if !dir.exists() {
        return Ok(found);
    }
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let here = dir.join(&rel);
        for entry in
            std::fs::read_dir(&here).with_context(|| format!("cannot list {}", here.display()))?
        {
            let entry = entry?;
            let rel = rel.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                stack.push(rel);
            } else {
                found.push(rel);
            }
        }
    }
    found.retain(|rel| !KEPT.iter().any(|k| rel == Path::new(k)));
    found.sort();
    Ok(found)
}

fn remove_empty_dirs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            remove_empty_dirs(&path)?;
            if std::fs::read_dir(&path)?.next().is_none() {
                std::fs::remove_dir(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = Options::parse(&args(&["--check"])).expect("parse");
        assert!(o.check && o.toolchain.is_none());
        let o = Options::parse(&args(&["--toolchain", "1.96.0"])).expect("parse");
        assert_eq!(o.toolchain.as_deref(), Some("1.96.0"));
        assert!(Options::parse(&args(&["--check", "--toolchain", "1.96.0"])).is_err());
        assert!(Options::parse(&args(&["--frobnicate"])).is_err());
    }

    #[test]
    fn remapping_puts_nested_prefixes_last() {
        let flags = remap_flags(Path::new("/w/repo"), Path::new("/w/repo/target/embed"));
        let parts: Vec<&str> = flags.split('\u{1f}').collect();
        assert_eq!(parts[0], "--remap-path-prefix=/w/repo=/bmad-host");
        assert_eq!(
            parts.last(),
            Some(&"--remap-path-prefix=/w/repo/target/embed=/bmad-host-target")
        );
    }
}
