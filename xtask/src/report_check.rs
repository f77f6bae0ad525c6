//! `cargo xtask report-check`: the report looked at in a real browser. Outside `cargo xtask test`
//! (like `e2e`), as it needs Chromium (Debian: `apt-get install -y chromium`).
//!
//! It runs the offline demo (`cargo xtask demo`: the v4 sample project, the fake Claude, the
//! embedded plugins), with the fake's QA failing story 1.2's first review so that the page has
//! a round of findings, writes its report with `bmad-host report`, and loads the page in
//! headless Chromium twice:
//!
//! - `--dump-dom` with `--enable-logging=stderr --v=0`: Chromium prints every console message
//!   of the page on stderr as an `INFO:CONSOLE` line, whatever its level: a `console.error`, an
//!   uncaught exception, and a load the page's Content-Security-Policy blocked (the page allows
//!   nothing from elsewhere, so any attempt to fetch something is such a line). The report writes
//!   nothing to the console, so the check is that there is no console line at all, and that the
//!   DOM Chromium dumps after loading carries `data-report-ready="yes"`, which the page's only
//!   script, its last element, sets: the page was parsed to its end and its script ran.
//! - `--screenshot`: the picture, written to `docs/report.png` (the README shows it).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The browser window: wide enough for the page's 1000 px column, tall enough for the run's
/// header, the story table and the first stories.
const WINDOW: &str = "1040,1500";

/// Runs the check and writes `docs/report.png`.
pub(crate) fn run(root: &Path) -> Result<()> {
    let chromium = find_chromium()?;
    super::run(
        super::cargo()
            .current_dir(root)
            .args(["build", "--workspace", "--bins"]),
    )?;
    let bin = super::target_dir(root).join("debug");
    let project =
        std::env::temp_dir().join(format!("bmad-host-report-check-{}", std::process::id()));
    if project.exists() {
        std::fs::remove_dir_all(&project)
            .with_context(|| format!("cannot remove {}", project.display()))?;
    }
    super::copy_dir(&root.join("tests/fixtures/v4-sample"), &project)?;
    let result = check(root, &chromium, &bin, &project);
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&project);
    } else {
        eprintln!("the demo project is left at {}", project.display());
    }
    result
}

fn check(root: &Path, chromium: &Path, bin: &Path, project: &Path) -> Result<()> {
    let script = project.join(".fake-claude-script.json");
    std::fs::write(
        &script,
        r#"{"calls": [{"role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"]}]}"#,
    )
    .with_context(|| format!("cannot write {}", script.display()))?;
    super::run(
        Command::new(bin.join("bmad-host"))
            .arg("run")
            .arg("--project")
            .arg(project)
            .arg("--claude-bin")
            .arg(bin.join("fake-claude"))
            .env("FAKE_CLAUDE_SCRIPT", &script),
    )?;
    let out = Command::new(bin.join("bmad-host"))
        .arg("report")
        .arg("--project")
        .arg(project)
        .output()
        .context("cannot run bmad-host report")?;
    if !out.status.success() {
        bail!(
            "bmad-host report failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let page = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let size = std::fs::metadata(&page)
        .with_context(|| format!("no report at {}", page.display()))?
        .len();
    eprintln!("report: {} ({size} bytes)", page.display());
    let url = format!("file://{}", page.display());

    // Loaded: no console line, and the end-of-page marker set.
    let loaded = Command::new(chromium)
        .args(headless())
        .args(["--enable-logging=stderr", "--v=0", "--dump-dom"])
        .arg(&url)
        .output()
        .with_context(|| format!("cannot run {}", chromium.display()))?;
    if !loaded.status.success() {
        bail!(
            "{} --dump-dom failed ({})",
            chromium.display(),
            loaded.status
        );
    }
    let console: Vec<String> = String::from_utf8_lossy(&loaded.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    if !console.is_empty() {
        bail!(
            "the page wrote to the console (errors, blocked loads):\n{}",
            console.join("\n")
        );
    }
    let dom = String::from_utf8_lossy(&loaded.stdout);
    if !dom.contains("data-report-ready=\"yes\"") {
        bail!(
            "the page did not load to its end: its marker is missing from the DOM Chromium dumped"
        );
    }
    for story in ["1.1", "1.2", "1.3"] {
        if !dom.contains(&format!("data-story=\"{story}\"")) {
            bail!("story {story} is missing from the page");
        }
    }
    eprintln!("loaded in Chromium: no console message, the end-of-page marker set");

    // The picture.
    let png = root.join("docs/report.png");
    let shot = Command::new(chromium)
        .args(headless())
        .arg(format!("--window-size={WINDOW}"))
        .arg(format!("--screenshot={}", png.display()))
        .arg(&url)
        .output()
        .with_context(|| format!("cannot run {}", chromium.display()))?;
    if !shot.status.success() {
        bail!(
            "{} --screenshot failed ({})",
            chromium.display(),
            shot.status
        );
    }
    let png_size = std::fs::metadata(&png)
        .with_context(|| format!("no screenshot at {}", png.display()))?
        .len();
    eprintln!("screenshot: {} ({png_size} bytes)", png.display());
    Ok(())
}

/// Headless, no GPU, no first-run chores; without the sandbox, which cannot start as root (CI
/// containers): the page is ours and loads nothing.
fn headless() -> [&'static str; 6] {
    [
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--no-first-run",
        "--force-device-scale-factor=1",
    ]
}

/// `$CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on PATH.
fn find_chromium() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "no Chromium found (chromium, chromium-browser or google-chrome on PATH, or $CHROMIUM): \
         install it, e.g. `apt-get install -y chromium` on Debian"
    )
}
