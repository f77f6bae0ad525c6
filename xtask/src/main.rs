//! `cargo xtask`: the project's own tasks, in Rust so they run wherever cargo does.
//!
//! - `build-plugins`: ensure the `wasm32-wasip2` target, build every plugin crate under
//!   `plugins/` (and the test components) and copy each component into its plugin folder.
//! - `test`: build-plugins and the test components, `embed --check`, rustfmt, then one build of
//!   every target linted by clippy, the whole test suite on it, and `install-check`.
//! - `embed [--check]`: rebuild the default plugins reproducibly into `host/embedded/` (the ones
//!   compiled into bmad-host), or check that it matches a rebuild (see `embed.rs`).
//! - `install-check`: `cargo install --path host` into a temp root, then drive the sample
//!   project to Done with the installed binary and no `--plugins` (see `install_check.rs`).
//! - `demo`: copy the sample BMAD v4 project to a temp dir and drive it to Done with the fake
//!   Claude and the embedded plugins; print where it left the project.
//! - `bench`: the benchmarks (see `BENCHMARKS.md`).
//! - `e2e`: bmad-host with the real Claude CLI against the mock Anthropic API (see `e2e.rs`).
//! - `report-check`: the demo run's `bmad-host report` loaded in headless Chromium (no console
//!   message, the page's end-of-load marker set) and its screenshot written to
//!   `docs/report.png` (see `report_check.rs`).
//! - `build-js-plugin [--check]`: the JavaScript QA policy `examples/qa-js` (npm: componentize-js
//!   and jco; see `js_plugin.rs`).
//! - `new-plugin NAME --role ROLE [--path DIR [--git URL]]`: a new plugin crate from the
//!   template, in `plugins/` or standalone in DIR (see `new_plugin.rs`).
//! - `sdk-check`: a plugin generated outside the workspace builds with plain cargo against the
//!   policy SDK and loads in bmad-host (see `sdk_check.rs`).
//! - `docs`: regenerate `docs/configuration.md` from the settings table in `host/src/config.rs`
//!   (a unit test there fails while the committed page is stale).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod bench;
mod e2e;
mod e2e_restate;
mod embed;
mod install_check;
mod js_plugin;
mod new_plugin;
mod report_check;
mod sdk_check;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build-plugins             build every WASM plugin into its plugin folder
  test [--timings]          WASM components, fmt, one build linted by clippy, every test
                            (--timings: cargo's build timings, in target/cargo-timings/)
  embed [--check]           rebuild the plugins embedded in bmad-host into host/embedded/
                            (--check: fail unless it matches; --toolchain V: move the pin)
  install-check             cargo install --path host, then run the demo with no --plugins
  demo [--v6]               run bmad-host on a sample project with the fake Claude
  bench                     run the benchmarks and write BENCHMARKS.md
  e2e [CASE...]             bmad-host with the real Claude CLI (npm) against mock-anthropic
  e2e-restate [--bench]     stories as Restate workflows on two workers, one killed mid-call (npm);
                            --bench: the engine's cost per step and story against the SQLite journal
  report-check              the demo run's report in headless Chromium; writes docs/report.png
  build-js-plugin [--check] build examples/qa-js (npm: componentize-js); --check: run it in bmad-host
  new-plugin NAME --role R  create plugins/NAME from the template (R: status|sm|dev|qa|scheduler);
                            --path DIR: a standalone crate in DIR (--git URL: the SDK by git)
  sdk-check                 generate a plugin outside the workspace, build it with cargo, load it
  docs                      regenerate docs/configuration.md from host/src/config.rs";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    match args.first().map(String::as_str) {
        Some("build-plugins") => build_plugins(&root),
        Some("test") => test(&root, args.iter().any(|a| a == "--timings")),
        Some("embed") => embed::run_embed(&root, &embed::Options::parse(&args[1..])?),
        Some("install-check") => install_check::run_check(&root, install_check::Build::Plain),
        Some("demo") => demo(&root, args.iter().any(|a| a == "--v6")),
        Some("bench") => bench(&root),
        Some("e2e") => e2e::run(&root),
        Some("e2e-restate") => e2e_restate::run(&root, &args[1..]),
        Some("report-check") => report_check::run(&root),
        Some("build-js-plugin") => js_plugin::run(&root, args.iter().any(|a| a == "--check")),
        Some("new-plugin") => new_plugin::run(&args[1..], &root),
        Some("sdk-check") => sdk_check::run(&root),
        Some("docs") => docs(&root),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", show(cmd));
    }
    Ok(())
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A plugin folder with a crate: where its component goes.
#[derive(Debug)]
struct PluginCrate {
    dir: PathBuf,
    package: String,
    component: String,
}

fn plugin_crates(root: &Path) -> Result<Vec<PluginCrate>> {
    let mut found = Vec::new();
    let dir = root.join("plugins");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let (manifest, cargo_toml) = (path.join("plugin.toml"), path.join("Cargo.toml"));
        if !manifest.is_file() || !cargo_toml.is_file() {
            continue;
        }
        let package = read_toml(&cargo_toml)?
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .with_context(|| format!("{} has no [package] name", cargo_toml.display()))?;
        let plugin = read_toml(&manifest)?;
        let component = plugin
            .get("component")
            .and_then(|c| c.as_str())
            .map(str::to_string)
            .with_context(|| format!("{} has no `component`", manifest.display()))?;
        found.push(PluginCrate {
            dir: path,
            package,
            component,
        });
    }
    Ok(found)
}

fn read_toml(path: &Path) -> Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))
}

fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).contains("wasm32-wasip2") => Ok(()),
        Ok(_) => run(Command::new("rustup").args(["target", "add", "wasm32-wasip2"])),
        // No rustup: trust that the toolchain has the target; cargo will say if not.
        Err(_) => Ok(()),
    }
}

fn build_plugins(root: &Path) -> Result<()> {
    ensure_wasm_target()?;
    let plugins = plugin_crates(root)?;
    if plugins.is_empty() {
        bail!("no plugin crates under {}/plugins", root.display());
    }
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm"]);
    embed::reproducible(&mut cmd, root);
    for p in &plugins {
        cmd.args(["-p", &p.package]);
    }
    run(&mut cmd)?;
    let out = target_dir(root).join("wasm32-wasip2").join("wasm");
    for p in &plugins {
        let built = out.join(format!("{}.wasm", p.package.replace('-', "_")));
        let dest = p.dir.join(&p.component);
        std::fs::copy(&built, &dest)
            .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
        eprintln!("  {} -> {}", p.package, dest.display());
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// The compiled-component cache the tests share (`target/bmad-host-test-cache`, the test
/// harness's `cache_dir`), for the checks that run `bmad-host` after the tests: the default
/// components are already compiled in it (compiling the six with a debug build of cranelift
/// takes about 40 CPU-seconds), and it is no user's cache.
fn test_cache_dir(root: &Path) -> PathBuf {
    target_dir(root).join("bmad-host-test-cache")
}

/// The test crate's WebAssembly components (`tests/components/*`), built for the tests.
const TEST_COMPONENTS: &[&str] = &[
    "bmad-test-good",
    "bmad-test-evil",
    "bmad-test-wit9",
    "bmad-test-bare",
    "bmad-test-old01",
    "bmad-test-reverse",
];

/// `cargo xtask test`: everything CI checks, each step timed.
///
/// Clippy does not get a pass of its own: `cargo clippy` would type-check every dependency
/// (wasmtime and cranelift) a second time in check mode, which cannot share anything with the
/// test build. Instead the test build itself runs the workspace's crates through `clippy-driver`
/// (cargo's `rustc-workspace-wrapper`, the mechanism `cargo clippy` uses) with `-D warnings`,
/// for every target (the benches, then the libraries, binaries, tests and examples: what
/// `cargo clippy --workspace --all-targets` covers), and the tests run on that very build. The
/// WASM components (plugins and test components) are built first, and the tests are told so
/// (`BMAD_TESTS_PREBUILT`) instead of each starting a nested cargo.
fn test(root: &Path, timings: bool) -> Result<()> {
    let started = std::time::Instant::now();
    let step = |name: &str, at: std::time::Instant| {
        eprintln!("xtask test: {name} took {:.1}s", at.elapsed().as_secs_f64());
    };
    let t = std::time::Instant::now();
    build_plugins(root)?;
    let mut cmd = cargo();
    cmd.current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm"]);
    embed::reproducible(&mut cmd, root);
    for krate in TEST_COMPONENTS {
        cmd.args(["-p", krate]);
    }
    run(&mut cmd)?;
    step("WASM components", t);

    let t = std::time::Instant::now();
    embed::check_current(root)?;
    step("embedded plugins rebuilt and compared", t);

    let t = std::time::Instant::now();
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    step("rustfmt", t);

    let t = std::time::Instant::now();
    let linted = |args: &[&str]| -> Result<()> {
        let mut cmd = cargo();
        linted_by_clippy(cmd.current_dir(root))?
            .env("BMAD_TESTS_PREBUILT", "1")
            .args(&args[..1]);
        if timings {
            cmd.arg("--timings");
        }
        cmd.args(&args[1..]);
        run(&mut cmd)
    };
    // The benches first, on their own: building them builds `host`'s `bmad-host` binary, which
    // in the same cargo run as the test crate's `bmad-host` would collide in target/debug.
    linted(&["test", "--workspace", "--benches", "--no-run"])?;
    step("build + clippy of the benches", t);

    let t = std::time::Instant::now();
    // The integration tests spend most of their time waiting on the processes they drive (the
    // binary, the fake Claude, gates, timeouts): eight test threads per core keep the cores busy.
    // Measured on 2 cores (warm component cache): the integration binary in 109 s at 4 threads
    // (158 CPU-seconds), 79 s at 8, 70 s at 16.
    let threads = std::thread::available_parallelism().map_or(16, |n| (n.get() * 8).min(64));
    let mut tested = vec!["test", "--workspace", "--", "--test-threads"];
    let threads = threads.to_string();
    tested.push(&threads);
    linted(&tested)?;
    step("build + clippy of the other targets, and every test", t);

    let t = std::time::Instant::now();
    sdk_check::run_prebuilt(root)?;
    step("SDK check (a plugin built outside the workspace)", t);

    let t = std::time::Instant::now();
    install_check::run_check(root, install_check::Build::AsTested)?;
    step(
        "install check (cargo install --path host, the demo with no --plugins)",
        t,
    );
    eprintln!(
        "all checks passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Rewrites the generated docs: the docs test, told to write what it would compare.
fn docs(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).env("UPDATE_EXPECT", "1").args([
        "test",
        "--workspace",
        "--lib",
        "--",
        "--exact",
        "config::tests::configuration_docs_are_current",
    ]))?;
    eprintln!("docs/configuration.md is current");
    Ok(())
}

/// `cmd` (a cargo command, before its subcommand) with the workspace's crates compiled through
/// `clippy-driver`, denying warnings: what `cargo clippy -- -D warnings` does, in a build that
/// also produces code.
fn linted_by_clippy(cmd: &mut Command) -> Result<&mut Command> {
    Ok(cmd
        .arg("--config")
        .arg(format!(
            "build.rustc-workspace-wrapper={}",
            toml::Value::from(clippy_driver()?.to_string_lossy().into_owned())
        ))
        // What `cargo clippy -- -D warnings` hands clippy-driver.
        .env(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        ))
}

/// `clippy-driver` of the toolchain that runs us (next to `$CARGO`), else the one on PATH.
fn clippy_driver() -> Result<PathBuf> {
    let beside_cargo = std::env::var_os("CARGO")
        .map(PathBuf::from)
        .and_then(|cargo| Some(cargo.parent()?.join("clippy-driver")))
        .filter(|p| p.is_file());
    if let Some(driver) = beside_cargo {
        return Ok(driver);
    }
    let found = Command::new("clippy-driver").arg("--version").output();
    match found {
        Ok(out) if out.status.success() => Ok(PathBuf::from("clippy-driver")),
        _ => bail!("clippy-driver not found: `rustup component add clippy`"),
    }
}

fn demo(root: &Path, v6: bool) -> Result<()> {
    run(cargo()
        .current_dir(root)
        .args(["build", "-p", "bmad-host-tests", "--bins"]))?;
    let sample = root
        .join("tests/fixtures")
        .join(if v6 { "v6-sample" } else { "v4-sample" });
    let project = std::env::temp_dir().join(format!(
        "bmad-host-demo-{}-{}",
        if v6 { "v6" } else { "v4" },
        std::process::id()
    ));
    copy_dir(&sample, &project)?;
    let bin = target_dir(root).join("debug");
    eprintln!("\ndemo project: {}\n", project.display());
    // No --plugins: the default plugins embedded in the binary, as after `cargo install`.
    let status = Command::new(bin.join("bmad-host"))
        .arg("run")
        .arg("--project")
        .arg(&project)
        .arg("--claude-bin")
        .arg(bin.join("fake-claude"))
        .status()
        .context("cannot run bmad-host")?;
    let _ = Command::new(bin.join("bmad-host"))
        .arg("status")
        .arg("--project")
        .arg(&project)
        .status();
    eprintln!(
        "\nthe project is left at {} (journal and transcripts in .bmad-host/)",
        project.display()
    );
    if !status.success() {
        bail!("bmad-host run ended with {status}");
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))?
    {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn bench(root: &Path) -> Result<()> {
    bench::run(root)
}
