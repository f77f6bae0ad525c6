//! `cargo xtask sdk-check`: the policy SDK works for a plugin author outside this repository.
//!
//! 1. `cargo xtask new-plugin sdk-check-qa --role qa --path DIR` with DIR a fresh temporary
//!    folder outside the workspace: a standalone crate whose only dependency is
//!    `bmad-policy = { path = "<this checkout>/sdk" }`.
//! 2. In DIR, with plain cargo and nothing from this workspace but that path: `cargo test`
//!    (the template's unit tests of its decisions, natively) and `cargo build --target
//!    wasm32-wasip2`, both in the template's release profile (see below); the component is
//!    copied next to its `plugin.toml`, as the README tells an author to.
//! 3. A plugins folder holding it and the default plugins (built by `build-plugins`), a project
//!    whose `bmad-host.toml` makes it the QA policy, and `bmad-host plugins check --json`: it
//!    loads without a problem and serves the `qa` role.
//!
//! Alone, bmad-host is built as `cargo test --workspace` builds it (its test binaries depend on
//! it). Within `cargo xtask test` the check uses the plugins and the `bmad-host` that the test
//! run has just built ([`run_prebuilt`]): building them again without the clippy wrapper would
//! change their fingerprints and compile the whole workspace a second time (71 s of a fresh
//! clone's run on 2 cores).
//!
//! The workspace's `Cargo.lock` is copied into DIR so that the crate resolves to the versions
//! this repository is tested with (and needs no registry access once they are downloaded). Its
//! target directory is the workspace's, and it is built in its own `[profile.release]` named
//! `wasm` (`--config profile.wasm.inherits="release"`): the template's release settings are
//! those of the workspace's `wasm` profile, so the SDK, wit-bindgen, their proc-macros and the
//! rest of the dependency tree are the very units the components' build (the first step of
//! `cargo xtask test`) compiled, for wasm32 and for the host. Measured on 2 cores: the check took
//! 73.5 s in a fresh-clone `cargo xtask test` with a target directory of its own and
//! `--release`, compiling that tree twice more (natively and for wasm32). DIR is removed when
//! the check passes and kept when it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::new_plugin::{self, Dest, Sdk};

/// The generated plugin's name.
const NAME: &str = "sdk-check-qa";

/// The profile the crate is built in: its own `[profile.release]` under the name of the
/// workspace's profile for components, whose settings are the same, so that it shares
/// `target/` with the components' build (see the module's documentation).
const PROFILE: &str = "wasm";

/// Runs the check.
pub fn run(root: &Path) -> Result<()> {
    crate::build_plugins(root)?;
    // The `bmad-host` binary as `cargo test --workspace` builds it, where a narrower `cargo
    // build -p bmad-host` would resolve other features and compile wasmtime again.
    crate::run(
        crate::cargo()
            .current_dir(root)
            .args(["test", "--workspace", "--no-run"]),
    )?;
    run_prebuilt(root)
}

/// The check on the default plugins and the `target/debug/bmad-host` already built (by
/// `cargo xtask test`, a moment before).
pub fn run_prebuilt(root: &Path) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("bmad-sdk-check-{}", std::process::id()));
    ensure!(
        !scratch.starts_with(root),
        "the temporary folder {} is inside the workspace; set TMPDIR elsewhere",
        scratch.display()
    );
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot clear {}", scratch.display()))?;
    }
    match check(root, &scratch) {
        Ok(()) => {
            std::fs::remove_dir_all(&scratch)
                .with_context(|| format!("cannot remove {}", scratch.display()))?;
            eprintln!("sdk-check: a plugin outside the workspace builds and loads");
            Ok(())
        }
        Err(e) => {
            eprintln!(
                "sdk-check: the generated crate is kept in {}",
                scratch.display()
            );
            Err(e)
        }
    }
}

fn check(root: &Path, scratch: &Path) -> Result<()> {
    let plugins = scratch.join("plugins");
    let dir = plugins.join(NAME);
    let dest = Dest::Standalone {
        dir: dir.clone(),
        sdk: Sdk::Path(root.join("sdk")),
    };
    new_plugin::create(NAME, "qa", &dest)?;
    let lock = root.join("Cargo.lock");
    std::fs::copy(&lock, dir.join("Cargo.lock"))
        .with_context(|| format!("cannot copy {}", lock.display()))?;

    let target = crate::target_dir(root);
    let plain_cargo = |args: &[&str], wasm: bool| -> Result<()> {
        let mut cmd = crate::cargo();
        cmd.current_dir(&dir)
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "--config",
                &format!("profile.{PROFILE}.inherits=\"release\""),
            ])
            .args(args)
            .args(["--profile", PROFILE]);
        if wasm {
            cmd.args(["--target", "wasm32-wasip2"]);
            crate::embed::reproducible(&mut cmd, root);
        }
        crate::run(&mut cmd)
    };
    plain_cargo(&["test"], false)?;
    plain_cargo(&["build"], true)?;
    let built = target
        .join("wasm32-wasip2")
        .join(PROFILE)
        .join(new_plugin::wasm_file(NAME));
    let component = dir.join(format!("{NAME}.wasm"));
    std::fs::copy(&built, &component)
        .with_context(|| format!("cannot copy {}", built.display()))?;

    for default in default_plugins(root)? {
        let name = default
            .file_name()
            .context("a plugin folder has a name")?
            .to_owned();
        copy_plugin(&default, &plugins.join(name))?;
    }
    let project = scratch.join("project");
    std::fs::create_dir_all(&project)
        .with_context(|| format!("cannot create {}", project.display()))?;
    std::fs::write(
        project.join("bmad-host.toml"),
        format!("[roles]\nqa = \"{NAME}\"\n"),
    )
    .context("cannot write bmad-host.toml")?;

    let host = crate::target_dir(root).join("debug").join("bmad-host");
    let mut cmd = Command::new(&host);
    cmd.current_dir(&project)
        .env("BMAD_HOST_CACHE_DIR", crate::test_cache_dir(root))
        .arg("plugins")
        .arg("check")
        .arg("--json")
        .arg("--plugins")
        .arg(&plugins)
        .arg("--project")
        .arg(&project);
    eprintln!("$ {}", crate::show(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", host.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "`bmad-host plugins check` refused the plugins ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    judge(&stdout)
}

/// Reads `plugins check --json`: the generated plugin loaded with no problem and serves QA.
fn judge(stdout: &str) -> Result<()> {
    let lines: Vec<Value> = stdout
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("`plugins check --json` printed a line that is not JSON")?;
    let plugin = lines
        .iter()
        .find(|l| l["name"] == NAME)
        .with_context(|| format!("`plugins check` does not list {NAME}:\n{stdout}"))?;
    ensure!(
        plugin["problem"].is_null() && plugin["load"].is_object(),
        "{NAME} did not load: {plugin}"
    );
    ensure!(
        plugin["serves"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r == "qa")),
        "{NAME} does not serve the qa role: {plugin}"
    );
    let role = lines
        .iter()
        .find(|l| l["role"] == "qa" && l.get("plugin").is_some())
        .with_context(|| format!("`plugins check` shows no qa role:\n{stdout}"))?;
    if role["plugin"] != NAME || !role["problem"].is_null() {
        bail!("the qa role is not served by {NAME}: {role}");
    }
    Ok(())
}

/// The plugin folders of `plugins/` (a `plugin.toml` and its built component).
fn default_plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("plugins");
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.join("plugin.toml").is_file() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Copies a plugin folder's manifest and component (not its sources).
fn copy_plugin(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    let manifest = from.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let component = table
        .get("component")
        .and_then(|c| c.as_str())
        .with_context(|| format!("{} has no `component`", manifest.display()))?;
    std::fs::write(to.join("plugin.toml"), &text)
        .with_context(|| format!("cannot write {}", to.display()))?;
    std::fs::copy(from.join(component), to.join(component))
        .with_context(|| format!("cannot copy {}", from.join(component).display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_the_check_output() {
        let ok = format!(
            "{{\"name\":\"{NAME}\",\"load\":{{\"kind\":\"Cold\"}},\"serves\":[\"qa\"],\"problem\":null}}\n\
             {{\"role\":\"qa\",\"plugin\":\"{NAME}\",\"configured\":true,\"problem\":null}}\n"
        );
        judge(&ok).expect("passes");
        let refused = ok.replace(
            "\"problem\":null}\n{\"role\"",
            "\"problem\":\"bad\"}\n{\"role\"",
        );
        assert!(judge(&refused).is_err());
        let elsewhere = ok.replace(&format!("\"plugin\":\"{NAME}\""), "\"plugin\":\"qa\"");
        assert!(judge(&elsewhere).is_err());
        assert!(judge("not json\n").is_err());
    }
}
