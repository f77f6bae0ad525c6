//! The test-only WebAssembly components (`tests/components/*`) and plugin folders made from them.
//!
//! [`wasm`] returns the path of a built component. The first call in a process runs
//! `cargo build --target wasm32-wasip2 --profile wasm` for every test component once (cargo
//! makes it a no-op when nothing changed), guarded by a `OnceLock` for the threads of this
//! process and a file lock for concurrently running test processes; unless
//! `BMAD_TESTS_PREBUILT=1` says they are built already ([`prebuilt`]; `cargo xtask test` builds
//! them before the tests).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The test components: crate names under `tests/components/`.
pub const CRATES: &[&str] = &[
    "bmad-test-good",
    "bmad-test-evil",
    "bmad-test-wit9",
    "bmad-test-bare",
    "bmad-test-old01",
    "bmad-test-reverse",
];

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// Cargo's target directory for this workspace.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// True when the caller of the tests has built every WASM component already and said so with
/// `BMAD_TESTS_PREBUILT=1` (`cargo xtask test` does): the tests then start no nested cargo.
pub fn prebuilt() -> bool {
    std::env::var_os("BMAD_TESTS_PREBUILT").is_some_and(|v| v == "1")
}

fn build_all() -> Result<(), String> {
    if prebuilt() {
        return Ok(());
    }
    let target = target_dir();
    std::fs::create_dir_all(&target).map_err(|e| format!("create {}: {e}", target.display()))?;
    let lock_path = target.join("bmad-test-components.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "--target",
        "wasm32-wasip2",
        "--profile",
        "wasm",
    ]);
    for krate in CRATES {
        cmd.args(["-p", krate]);
    }
    let out = cmd.output().map_err(|e| format!("run cargo: {e}"))?;
    // The lock is released when `lock` is dropped (closed) here.
    if !out.status.success() {
        return Err(format!(
            "building the test components failed ({}); is the wasm32-wasip2 target installed (`rustup target add wasm32-wasip2`)?\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The path of the built component of `krate` (one of [`CRATES`]), building them on first use.
///
/// # Panics
/// When the components cannot be built: the tests that need them cannot run.
pub fn wasm(krate: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(build_all) {
        panic!("{e}");
    }
    let path = target_dir()
        .join("wasm32-wasip2")
        .join("wasm")
        .join(format!("{}.wasm", krate.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// What goes into a test plugin folder's manifest besides name, role and component.
#[derive(Debug, Clone, Default)]
pub struct Folder<'a> {
    /// `[capabilities] read`.
    pub read: &'a [&'a str],
    /// Extra manifest lines (e.g. `[limits]`), appended verbatim.
    pub extra: &'a str,
    /// `wit = ...`; the current `bmad:policy` version (the SDK's, `0.2.0`) when empty.
    pub wit: &'a str,
}

/// Writes a plugin folder `dir/name` with `plugin.toml` and a copy of `wasm_file`.
pub fn plugin_folder(
    dir: &Path,
    name: &str,
    role: &str,
    wasm_file: &Path,
    opts: &Folder<'_>,
) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap_or_else(|e| panic!("create {}: {e}", folder.display()));
    std::fs::copy(wasm_file, folder.join("plugin.wasm"))
        .unwrap_or_else(|e| panic!("copy {}: {e}", wasm_file.display()));
    let read = opts
        .read
        .iter()
        .map(|g| format!("{g:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let wit = if opts.wit.is_empty() {
        "0.2.0"
    } else {
        opts.wit
    };
    let manifest = format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nrole = \"{role}\"\nwit = \"{wit}\"\ncomponent = \"plugin.wasm\"\n\
         description = \"test plugin\"\n\n[capabilities]\nread = [{read}]\n{}\n",
        opts.extra
    );
    std::fs::write(folder.join("plugin.toml"), manifest)
        .unwrap_or_else(|e| panic!("write manifest: {e}"));
    folder
}

/// Writes a complete plugin directory: one folder per role (`status`, `sm`, `dev`, `qa`), each
/// a copy of `krate`'s component with default options.
pub fn plugin_dir(dir: &Path, krate: &str) -> PathBuf {
    let wasm = wasm(krate);
    for role in ["status", "sm", "dev", "qa"] {
        plugin_folder(dir, role, role, &wasm, &Folder::default());
    }
    dir.to_path_buf()
}
