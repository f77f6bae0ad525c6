//! `cargo xtask build-js-plugin [--check]`: the QA policy written in JavaScript
//! (`examples/qa-js`), built into a WebAssembly component with componentize-js and checked
//! with jco.
//!
//! It installs the tools pinned by `examples/qa-js/package.json` and `package-lock.json`
//! (`@bytecodealliance/componentize-js` 0.20.0 and `@bytecodealliance/jco`) with npm into
//! `target/js-plugin/` (reused while the two files are unchanged), runs `componentize-js qa.js
//! --wit sdk/wit/policy.wit --world-name agent-policy --disable stdio random clocks http
//! fetch-event`, and writes `examples/qa-js/qa-js.wasm` (skipped when it is newer than its
//! inputs). It then reads the component's world with `jco wit` and refuses it if it imports
//! anything but `bmad:policy/*`: with every StarlingMonkey feature disabled it imports no WASI.
//!
//! Why not `jco componentize`: jco 1.34/1.35 drive componentize-js 0.22, whose generated
//! bindings spread every string crossing the boundary through the interpreter's string
//! iterator (`[...s].length`) and run an async-task bookkeeping layer on every call: about 20
//! times the per-call cost (a 2 KB prompt took 3 ms, a 4 KB list of findings ran out of the
//! host's 100 M fuel). componentize-js 0.20.0 has neither.
//!
//! `--check` also proves that the host runs it: it builds the Rust plugins and the binaries
//! (`bmad-host`, `fake-claude`), copies every plugin of `plugins/` and `examples/qa-js` into a
//! temporary plugins folder with an empty compiled-component cache, and
//! - measures `bmad-host plugins list` (the cold load, then the cached one) and runs
//!   `plugins check`;
//! - runs the sample v4 project with `--policy qa=qa-js` and the fake Claude: exit 0, every
//!   story done, and the policy's own log line for each story's QA decision;
//! - runs it again with the fake QA's verdicts scripted (1.1 CONCERNS, 1.2 FAIL then PASS):
//!   CONCERNS passes, FAIL sends 1.2 back with the gate's `top_issues` and the re-review passes;
//!   the same script under the Rust `qa` policy must journal the very same QA decisions.
//!
//! Needs Node.js and npm, so it is not part of `cargo xtask test` (nor of CI).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// Where the plugin lives, relative to the workspace root.
const EXAMPLE: &str = "examples/qa-js";
/// The component file its `plugin.toml` names.
const COMPONENT: &str = "qa-js.wasm";
/// The files that pin the tools' versions (the lock pins every transitive package).
const PINS: [&str; 2] = ["package.json", "package-lock.json"];
/// The plugin's name in its `plugin.toml`.
const PLUGIN: &str = "qa-js";
/// What `componentize-js` is told: the world, and no WASI feature in the engine.
const COMPONENTIZE_ARGS: &[&str] = &[
    "--world-name",
    "agent-policy",
    "--disable",
    "stdio",
    "random",
    "clocks",
    "http",
    "fetch-event",
];
/// The only imports the component may have.
const ALLOWED_IMPORT_PREFIX: &str = "bmad:policy/";
/// The fake QA's verdicts for the second run (see `tests/src/bin/fake-claude.rs`).
const VERDICT_SCRIPT: &str = r#"{"calls": [
  {"role": "qa", "story": "1.1", "verdicts": ["CONCERNS"]},
  {"role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"]}
]}"#;
/// The finding the fake's FAIL gate carries, as the QA rules turn a `top_issues` entry into one.
const FAIL_FINDING: &str =
    "high: Acceptance criterion 2 has no test (suggested: Add the missing tests)";

/// `cargo xtask build-js-plugin [--check]`.
pub fn run(root: &Path, check: bool) -> Result<()> {
    let tools = super::target_dir(root).join("js-plugin");
    let bin_dir = ensure_tools(root, &tools)?;
    let wasm = build(root, &bin_dir)?;
    let imports = component_imports(&bin_dir.join("jco"), &wasm)?;
    let size = std::fs::metadata(&wasm)
        .with_context(|| format!("cannot stat {}", wasm.display()))?
        .len();
    eprintln!(
        "qa-js: {} ({}), imports: {}",
        wasm.display(),
        mib(size),
        imports.join(", ")
    );
    if check {
        check_host_runs_it(root, size)?;
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

// ---------------------------------------------------------------------------------------------
// Tools and build

/// `tools/node_modules/.bin`, with `componentize-js` and `jco` installed with npm from the example's pinned `package.json`
/// and `package-lock.json` unless those very files were installed there already (a stamp file
/// holds what was installed). `npm install` rather than `npm ci`: the lock lists every
/// platform's optional binaries, and a registry mirror that lacks some of them makes `npm ci`
/// refuse the lock although this platform's are there.
fn ensure_tools(root: &Path, tools: &Path) -> Result<PathBuf> {
    let example = root.join(EXAMPLE);
    let bin_dir = tools.join("node_modules").join(".bin");
    let installed = || {
        ["componentize-js", "jco"]
            .iter()
            .all(|b| bin_dir.join(b).is_file())
    };
    let stamp_file = tools.join(".bmad-qa-js-installed");
    let mut stamp = Vec::new();
    for pin in PINS {
        let path = example.join(pin);
        stamp.extend(
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        stamp.push(0);
    }
    if installed() && std::fs::read(&stamp_file).is_ok_and(|s| s == stamp) {
        eprintln!(
            "qa-js: componentize-js and jco already installed in {}",
            tools.display()
        );
        return Ok(bin_dir);
    }
    match Command::new("npm").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!(
            "`npm --version` failed ({}): build-js-plugin installs componentize-js and jco with npm",
            o.status
        ),
        Err(e) => bail!(
            "npm is not available ({e}): build-js-plugin installs @bytecodealliance/jco and \
             @bytecodealliance/componentize-js with npm into {}. Install Node.js (20 or later) and \
             npm, e.g. `apt-get install nodejs npm`.",
            tools.display()
        ),
    }
    std::fs::create_dir_all(tools).with_context(|| format!("cannot create {}", tools.display()))?;
    let _ = std::fs::remove_file(&stamp_file);
    for pin in PINS {
        std::fs::copy(example.join(pin), tools.join(pin))
            .with_context(|| format!("cannot copy {EXAMPLE}/{pin} to {}", tools.display()))?;
    }
    eprintln!(
        "qa-js: installing jco and componentize-js into {} (about 350 MB)",
        tools.display()
    );
    super::run(Command::new("npm").current_dir(tools).args([
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
    ]))?;
    ensure!(
        installed(),
        "npm install did not install componentize-js and jco in {} (see its output above)",
        bin_dir.display()
    );
    std::fs::write(&stamp_file, &stamp)
        .with_context(|| format!("cannot write {}", stamp_file.display()))?;
    Ok(bin_dir)
}

/// The modification time of `path`, if it exists.
fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Builds `examples/qa-js/qa-js.wasm` unless it is newer than every input.
fn build(root: &Path, bin_dir: &Path) -> Result<PathBuf> {
    let example = root.join(EXAMPLE);
    let source = example.join("qa.js");
    let wit = root.join("sdk").join("wit").join("policy.wit");
    let wasm = example.join(COMPONENT);
    let inputs = [
        source.clone(),
        wit.clone(),
        example.join("package.json"),
        example.join("package-lock.json"),
    ];
    let newest_input = inputs.iter().filter_map(|p| modified(p)).max();
    if let (Some(out), Some(input)) = (modified(&wasm), newest_input)
        && out > input
    {
        eprintln!("qa-js: {} is up to date", wasm.display());
        return Ok(wasm);
    }
    // Written next to the target and renamed, so that a failed build leaves no partial file.
    let partial = example.join(format!("{COMPONENT}.partial"));
    let started = Instant::now();
    let componentize = bin_dir.join("componentize-js");
    let mut cmd = Command::new(&componentize);
    cmd.current_dir(root)
        .arg(&source)
        .arg("--wit")
        .arg(&wit)
        .args(COMPONENTIZE_ARGS)
        .arg("-o")
        .arg(&partial);
    super::run(&mut cmd)?;
    std::fs::rename(&partial, &wasm)
        .with_context(|| format!("cannot move {} to {}", partial.display(), wasm.display()))?;
    eprintln!(
        "qa-js: componentized in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(wasm)
}

/// The component's imports (`jco wit`); an error if any is not `bmad:policy/*`.
fn component_imports(jco: &Path, wasm: &Path) -> Result<Vec<String>> {
    let out = Command::new(jco)
        .arg("wit")
        .arg(wasm)
        .output()
        .with_context(|| format!("cannot run {} wit", jco.display()))?;
    ensure!(
        out.status.success(),
        "`jco wit {}` failed ({}): {}",
        wasm.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let imports = world_imports(&String::from_utf8_lossy(&out.stdout));
    ensure!(
        !imports.is_empty(),
        "`jco wit {}` shows no imports: expected bmad:policy/host and bmad:policy/types",
        wasm.display()
    );
    let foreign: Vec<&String> = imports
        .iter()
        .filter(|i| !i.starts_with(ALLOWED_IMPORT_PREFIX))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} imports {foreign:?}: a policy may import only {ALLOWED_IMPORT_PREFIX}* \
             (componentize with every feature disabled; the host's sandbox refuses sockets and HTTP and \
             traps on any wait)",
            wasm.display()
        );
    }
    Ok(imports)
}

/// The names of a printed world's `import` lines: `import bmad:policy/host@0.2.0;`.
fn world_imports(wit: &str) -> Vec<String> {
    wit.lines()
        .filter_map(|l| l.trim().strip_prefix("import "))
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The check

/// A scratch folder removed when the check passes, kept (and named) when it fails.
struct Scratch {
    dir: PathBuf,
    passed: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "qa-js: the check's files are kept in {}",
                self.dir.display()
            );
        }
    }
}

fn check_host_runs_it(root: &Path, size: u64) -> Result<()> {
    super::build_plugins(root)?;
    super::run(super::cargo().current_dir(root).args([
        "build",
        "-p",
        "bmad-host-tests",
        "--bins",
    ]))?;
    let bin = super::target_dir(root).join("debug");
    let host = bin.join("bmad-host");
    let fake = bin.join("fake-claude");

    let dir = std::env::temp_dir().join(format!("bmad-qa-js-check-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    let mut scratch = Scratch { dir, passed: false };
    let plugins = scratch.dir.join("plugins");
    let cache = scratch.dir.join("cache");
    for p in super::plugin_crates(root)? {
        let name = p.dir.file_name().context("a plugin folder has a name")?;
        copy_plugin(&p.dir, &p.component, &plugins.join(name))?;
    }
    copy_plugin(&root.join(EXAMPLE), COMPONENT, &plugins.join(PLUGIN))?;
    let bmad = BmadHost {
        bin: host,
        fake,
        plugins,
        cache,
    };

    let cold = bmad.load_time()?;
    ensure!(
        cold.0 == "cold",
        "the first `plugins list` with an empty cache loaded qa-js {}",
        cold.0
    );
    let cached = bmad.load_time()?;
    ensure!(
        cached.0 == "cached",
        "the second `plugins list` loaded qa-js {}, not from the cache",
        cached.0
    );
    let out = bmad.command(&["plugins", "check"]).output()?;
    ensure!(
        out.status.success(),
        "`bmad-host plugins check` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let sample = root.join("tests/fixtures/v4-sample");
    let pass = bmad.run_project(&sample, &scratch.dir.join("pass"), PLUGIN, None)?;
    pass.all_done()?;
    pass.logged_by_qa_js()?;

    let script = scratch.dir.join("verdicts.json");
    std::fs::write(&script, VERDICT_SCRIPT)
        .with_context(|| format!("cannot write {}", script.display()))?;
    let js = bmad.run_project(&sample, &scratch.dir.join("js"), PLUGIN, Some(&script))?;
    js.all_done()?;
    js.logged_by_qa_js()?;
    ensure!(
        js.cycles("1.1")? == 1,
        "story 1.1 (CONCERNS) should pass in one cycle"
    );
    ensure!(
        js.cycles("1.2")? == 2,
        "story 1.2 (FAIL, then PASS) should take two cycles"
    );
    let js_decisions = bmad.qa_decisions(&js.project)?;
    let send_back = Value::Array(vec![Value::String(FAIL_FINDING.to_owned())]);
    ensure!(
        js_decisions
            .iter()
            .any(|d| d.story == "1.2" && d.result.get("SendBack") == Some(&send_back)),
        "qa-js did not send 1.2 back with the FAIL gate's top issue {FAIL_FINDING:?}; its QA \
         decisions: {js_decisions:#?}"
    );

    // The same script with the Rust policy (its own copy: the fake counts calls per script file):
    // the same QA decisions, prompts included.
    let script_rs = scratch.dir.join("verdicts-rs.json");
    std::fs::write(&script_rs, VERDICT_SCRIPT)
        .with_context(|| format!("cannot write {}", script_rs.display()))?;
    let rust = bmad.run_project(&sample, &scratch.dir.join("rust"), "qa", Some(&script_rs))?;
    rust.all_done()?;
    let rust_decisions = bmad.qa_decisions(&rust.project)?;
    ensure!(
        js_decisions.len() == rust_decisions.len(),
        "qa-js took {} QA decisions, the Rust qa {}",
        js_decisions.len(),
        rust_decisions.len()
    );
    for (j, r) in js_decisions.iter().zip(&rust_decisions) {
        ensure!(
            j == r,
            "qa-js and the Rust qa decided differently:\nqa-js: {j:#?}\nqa:    {r:#?}"
        );
    }

    scratch.passed = true;
    eprintln!(
        "\nqa-js check passed\n  component: {} ({size} bytes), imports only {ALLOWED_IMPORT_PREFIX}*\n  \
         plugins list (debug bmad-host): cold load {:.1} ms, cached load {:.1} ms\n  \
         sample v4 project, all PASS: exit 0, {} stories done in {:.2} s\n  \
         scripted CONCERNS / FAIL→PASS: exit 0, all done in {:.2} s; {} QA decisions, identical \
         to the Rust qa's",
        mib(size),
        cold.1,
        cached.1,
        pass.stories.len(),
        pass.seconds,
        js.seconds,
        js_decisions.len()
    );
    Ok(())
}

/// Copies a plugin folder's `plugin.toml` and component into `to`.
fn copy_plugin(from: &Path, component: &str, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for file in ["plugin.toml", component] {
        std::fs::copy(from.join(file), to.join(file))
            .with_context(|| format!("cannot copy {}", from.join(file).display()))?;
    }
    Ok(())
}

/// How the check runs `bmad-host`.
struct BmadHost {
    bin: PathBuf,
    fake: PathBuf,
    plugins: PathBuf,
    cache: PathBuf,
}

/// One QA decision from the journal (`bmad-host log --json`).
#[derive(Debug, PartialEq)]
struct QaDecision {
    story: String,
    cycle: Value,
    call: Value,
    result: Value,
}

impl BmadHost {
    /// `bmad-host ARGS --plugins DIR` with the check's own component cache.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .arg("--plugins")
            .arg(&self.plugins)
            .env("BMAD_HOST_CACHE_DIR", &self.cache)
            .env("NO_COLOR", "1");
        cmd
    }

    /// `plugins list --json`: how qa-js was loaded (`cold` / `cached`) and in how many ms.
    fn load_time(&self) -> Result<(String, f64)> {
        let out = output(self.command(&["plugins", "list", "--json"]))?;
        ensure!(
            out.status.success(),
            "`bmad-host plugins list` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let info = ndjson(&out.stdout)
            .into_iter()
            .find(|v| v["name"] == PLUGIN)
            .context("`plugins list --json` does not list qa-js")?;
        ensure!(
            info["problem"].is_null(),
            "bmad-host cannot use qa-js: {}",
            info["problem"]
        );
        let kind = info["load"]["kind"].as_str().unwrap_or_default().to_owned();
        let micros = info["load"]["micros"].as_f64().unwrap_or_default();
        Ok((kind, micros / 1000.0))
    }

    /// `run` on a copy of `sample` at `project` with `--policy qa=POLICY`, the fake Claude
    /// scripted by `script` if given, and debug logs (the policy's `log` lines).
    fn run_project(
        &self,
        sample: &Path,
        project: &Path,
        policy: &str,
        script: Option<&Path>,
    ) -> Result<Run> {
        super::copy_dir(sample, project)?;
        let mut cmd = self.command(&["run", "--json", "-vv"]);
        cmd.arg("--policy")
            .arg(format!("qa={policy}"))
            .arg("--project")
            .arg(project)
            .arg("--claude-bin")
            .arg(&self.fake)
            .env_remove("FAKE_CLAUDE_BEHAVIOUR");
        match script {
            Some(s) => cmd.env("FAKE_CLAUDE_SCRIPT", s),
            None => cmd.env_remove("FAKE_CLAUDE_SCRIPT"),
        };
        let started = Instant::now();
        let out = output(cmd)?;
        let seconds = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let events = ndjson(&out.stdout);
        let log = project.join("bmad-host.stderr.log");
        let _ = std::fs::write(&log, &stderr);
        ensure!(
            out.status.code() == Some(0),
            "bmad-host run --policy qa={policy} on {} exited with {} (stderr in {})",
            project.display(),
            out.status,
            log.display()
        );
        let stories = events
            .iter()
            .find(|e| e["event"] == "run_started")
            .and_then(|e| e["stories"].as_array())
            .context("no run_started event with the stories")?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect::<Vec<_>>();
        ensure!(!stories.is_empty(), "the run has no stories");
        Ok(Run {
            project: project.to_path_buf(),
            events,
            stderr,
            stories,
            seconds,
        })
    }

    /// The QA decisions the journal of `project` holds, in order.
    fn qa_decisions(&self, project: &Path) -> Result<Vec<QaDecision>> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(["log", "--json", "--project"]).arg(project);
        let out = output(cmd)?;
        ensure!(
            out.status.success(),
            "`bmad-host log` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(ndjson(&out.stdout)
            .into_iter()
            .filter(|e| e["kind"] == "decision" && e["role"] == "qa")
            .map(|e| QaDecision {
                story: e["story"].as_str().unwrap_or_default().to_owned(),
                cycle: e["cycle"].clone(),
                call: e["intent"]["call"].clone(),
                result: e["result"].clone(),
            })
            .collect())
    }
}

/// What one `bmad-host run` produced.
struct Run {
    project: PathBuf,
    events: Vec<Value>,
    stderr: String,
    stories: Vec<String>,
    seconds: f64,
}

impl Run {
    fn finished(&self, story: &str) -> Result<&Value> {
        self.events
            .iter()
            .find(|e| e["event"] == "story_finished" && e["story"] == story)
            .with_context(|| format!("no story_finished event for {story}"))
    }

    /// Every story finished `done`, and the run says so.
    fn all_done(&self) -> Result<()> {
        for story in &self.stories {
            let result = &self.finished(story)?["result"];
            ensure!(
                result == "done",
                "story {story} finished {result} in {}",
                self.project.display()
            );
        }
        let end = self
            .events
            .iter()
            .find(|e| e["event"] == "run_finished")
            .context("no run_finished event")?;
        ensure!(
            end["done"].as_u64() == Some(self.stories.len() as u64)
                && end["failed"] == 0
                && end["escalated"] == 0,
            "run_finished: {end}"
        );
        Ok(())
    }

    /// The JS policy's own `log` line for each story's QA decision is in the debug log: qa-js,
    /// not the Rust qa, took them.
    fn logged_by_qa_js(&self) -> Result<()> {
        for story in &self.stories {
            let line = format!("qa-js: story {story}: gate `");
            ensure!(
                self.stderr.contains(&line),
                "the debug log of {} has no {line:?}: did qa-js decide?",
                self.project.display()
            );
        }
        Ok(())
    }

    fn cycles(&self, story: &str) -> Result<u64> {
        self.finished(story)?["cycles"]
            .as_u64()
            .with_context(|| format!("story_finished of {story} has no cycles"))
    }
}

fn output(mut cmd: Command) -> Result<Output> {
    eprintln!("$ {}", super::show(&cmd));
    cmd.output()
        .with_context(|| format!("cannot run {}", super::show(&cmd)))
}

fn ndjson(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
