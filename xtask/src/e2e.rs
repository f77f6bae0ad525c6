//! `cargo xtask e2e`: bmad-host with the REAL Claude Code CLI, offline, against the project's
//! mock Anthropic Messages API (`tests/src/bin/mock-anthropic`, scenarios in `tests/e2e/`).
//!
//! It installs the pinned `@anthropic-ai/claude-code` with npm into `target/e2e/npm` (reused
//! while it holds that version), builds the plugins, bmad-host and the mock, and runs each case
//! on a fresh copy of its fixture project (`tests/fixtures/v4-sample` or `v6-sample`): the mock
//! is started on a free loopback port (its readiness line is awaited before anything spawns the
//! CLI), then `bmad-host run --json`
//! with `--claude-bin <cache>/node_modules/.bin/claude` and the environment
//! `claude-mock/run-real-claude.sh` uses. Each case asserts the exit code, the NDJSON events,
//! the files the CLI wrote, the mock's request log and the transcripts, and that no process of
//! the run is left (every process bmad-host starts inherits a marker variable; `/proc` is
//! searched for it after bmad-host exits). A pass/fail table ends the run.
//!
//! `cargo xtask e2e [CASE...] [--keep] [--list]`. Environment: `BMAD_E2E_CLAUDE_VERSION`
//! (default [`CLAUDE_VERSION`]), `BMAD_E2E_NPM_DIR` (default `target/e2e/npm`).

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// The CLI version the cases are written against (the one `run-real-claude.sh` pins).
pub const CLAUDE_VERSION: &str = "2.1.330";

/// Variable set on bmad-host (so on every Claude and tool process): finds leftovers.
const MARKER_ENV: &str = "BMAD_HOST_E2E";

/// Longest a case may run before bmad-host is killed and the case fails.
const CASE_DEADLINE: Duration = Duration::from_secs(300);

/// bmad-host's per-call wall clock for the cases that do not set their own.
const DEFAULT_CALL_TIMEOUT: &str = "120s";

/// Credentials and providers that would take the CLI away from the mock.
const UNSET: &[&str] = &[
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "CLAUDE_CODE_API_BASE_URL",
];

/// `bmad-host.toml` written into every case's project.
const PROJECT_TOML: &str = r#"# Written by cargo xtask e2e.
[claude]
# acceptEdits (the default) runs Write, Edit and Read; the mock's Dev and QA also run Bash.
extra_args = ["--allowedTools", "Bash"]

[[gates]]
name = "tests"
command = "for t in tests/story-*.sh; do sh \"$t\" || exit 1; done"
timeout = "60s"
"#;

/// One end-to-end case.
struct Case {
    name: &'static str,
    what: &'static str,
    /// Scenario file in `tests/e2e/`.
    scenario: &'static str,
    /// The project copied for the case, in `tests/fixtures/`.
    fixture: &'static str,
    /// Extra `bmad-host run` arguments.
    args: &'static [&'static str],
    /// A subscriber login (`CLAUDE_CODE_OAUTH_TOKEN`, no API key): the only one for which the
    /// CLI reads the `anthropic-ratelimit-unified-*` headers.
    subscriber: bool,
    /// `TZ` for bmad-host and the CLI (default: inherited).
    tz: Option<&'static str>,
    check: fn(&Outcome, &mut Verdict),
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "full-epic",
            what: "epic 1 to Done with real tool calls (SM, Dev, QA; a FAIL review and a fix)",
            scenario: "full-epic.json",
            fixture: "v4-sample",
            args: &[],
            subscriber: false,
            tz: None,
            check: check_full_epic,
        },
        Case {
            name: "hang-timeout",
            what: "the API hangs mid-call: --timeout 8s, clean teardown",
            scenario: "hang-timeout.json",
            fixture: "v4-sample",
            args: &["--story", "1.1", "--timeout", "8s"],
            subscriber: false,
            tz: None,
            check: check_hang_timeout,
        },
        Case {
            name: "stall-idle",
            what: "the stream stalls mid-response: --idle-timeout 4s, clean teardown",
            scenario: "stall-idle.json",
            fixture: "v4-sample",
            args: &["--story", "1.1", "--idle-timeout", "4s"],
            subscriber: false,
            tz: None,
            check: check_stall_idle,
        },
        Case {
            name: "overload-retry",
            what: "HTTP 529: retried by the CLI, then by bmad-host, then done",
            scenario: "overload-retry.json",
            fixture: "v4-sample",
            args: &["--story", "1.1"],
            subscriber: false,
            tz: None,
            check: check_overload_retry,
        },
        Case {
            name: "dropped-stream",
            what: "TCP resets mid-stream: CLI retry, resume, non-streaming fallback",
            scenario: "dropped-stream.json",
            fixture: "v4-sample",
            args: &["--story", "1.1"],
            subscriber: false,
            tz: None,
            check: check_dropped_stream,
        },
        Case {
            name: "usage-limit-wait",
            what: "a subscriber hits the 5-hour limit mid-story in New York time: --wait-on-limit waits for the reset and carries the story to Done",
            scenario: "usage-limit-wait.json",
            fixture: "v4-sample",
            args: &["--story", "1.1", "--wait-on-limit"],
            subscriber: true,
            tz: Some("America/New_York"),
            check: check_usage_limit_wait,
        },
        Case {
            name: "v6-epic",
            what: "BMAD v6 (create-story / dev-story / code-review): epic 1 to done, a review sends 1.1 back once",
            scenario: "v6-epic.json",
            fixture: "v6-sample",
            args: &[],
            subscriber: false,
            tz: None,
            check: check_v6_epic,
        },
        Case {
            name: "build-flow-v612",
            what: "BMAD 6.12 build flow, epic 1: a spec in review is reviewed; stories with no spec are built, gated and reviewed; 1.3's first review sends it back",
            scenario: "build-flow-v612.json",
            // The corpus' 6.12 project, with the build skills installed (stand-ins).
            fixture: "../corpus/v6.12-build",
            args: &["--epic", "1"],
            subscriber: false,
            tz: None,
            check: check_build_flow,
        },
    ]
}

#[derive(Debug, Default)]
struct Options {
    only: Vec<String>,
    keep: bool,
    list: bool,
}

fn options(args: impl Iterator<Item = String>) -> Result<Options> {
    let mut o = Options::default();
    for a in args {
        match a.as_str() {
            "--keep" => o.keep = true,
            "--list" => o.list = true,
            "-h" | "--help" => {
                println!(
                    "usage: cargo xtask e2e [CASE...] [--keep] [--list]\n\n\
                     Runs bmad-host with the real Claude CLI {CLAUDE_VERSION} against mock-anthropic.\n\
                     --keep  keep the cases' projects, logs and transcripts even when all pass\n\
                     --list  list the cases"
                );
                std::process::exit(0);
            }
            flag if flag.starts_with('-') => bail!("e2e: unknown option {flag}"),
            name => o.only.push(name.to_owned()),
        }
    }
    Ok(o)
}

/// `cargo xtask e2e`.
pub fn run(root: &Path) -> Result<()> {
    let opts = options(std::env::args().skip(2))?;
    let mut all = cases();
    if opts.list {
        for c in &all {
            println!("{:<16} {}", c.name, c.what);
        }
        return Ok(());
    }
    if let Some(unknown) = opts
        .only
        .iter()
        .find(|n| !all.iter().any(|c| c.name == n.as_str()))
    {
        bail!("e2e: no case named {unknown} (cargo xtask e2e --list)");
    }
    if !opts.only.is_empty() {
        all.retain(|c| opts.only.iter().any(|n| n == c.name));
    }
    let started = Instant::now();
    let version =
        std::env::var("BMAD_E2E_CLAUDE_VERSION").unwrap_or_else(|_| CLAUDE_VERSION.to_owned());
    let npm_dir = std::env::var_os("BMAD_E2E_NPM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::target_dir(root).join("e2e").join("npm"));
    let claude = ensure_cli(&npm_dir, &version)?;
    let installed = started.elapsed();

    super::build_plugins(root)?;
    // Built as `cargo xtask test` builds them (its workspace crates through clippy-driver), so
    // that after it (as in CI) nothing is compiled again: a plain build would change their
    // fingerprints and compile bmad-host and the test crate once more (35 s on 2 cores).
    let mut build = super::cargo();
    super::linted_by_clippy(build.current_dir(root))?.args([
        "build",
        "-p",
        "bmad-host-tests",
        "--bin",
        "bmad-host",
        "--bin",
        "mock-anthropic",
    ]);
    super::run(&mut build)?;
    let built = started.elapsed() - installed;
    let bins = super::target_dir(root).join("debug");
    let env = Env {
        root: root.to_owned(),
        claude,
        bmad_host: bins.join("bmad-host"),
        mock: bins.join("mock-anthropic"),
        // The tests' component cache: after `cargo xtask test` the default components are
        // compiled there already (a debug build of bmad-host takes ~17 s to compile them).
        cache: super::test_cache_dir(root),
        work: std::env::temp_dir().join(format!("bmad-host-e2e-{}", std::process::id())),
    };
    std::fs::create_dir_all(&env.work)
        .with_context(|| format!("cannot create {}", env.work.display()))?;

    let mut results = Vec::new();
    for case in &all {
        eprintln!("\n=== e2e {}: {}", case.name, case.what);
        let t = Instant::now();
        let verdict = match run_case(&env, case) {
            Ok(outcome) => {
                let mut v = Verdict::default();
                common_checks(&outcome, &mut v);
                (case.check)(&outcome, &mut v);
                if !v.failures.is_empty() {
                    eprintln!("  files of this case: {}", outcome.dir.display());
                }
                v
            }
            Err(e) => Verdict {
                failures: vec![format!("{e:#}")],
                notes: Vec::new(),
            },
        };
        for f in &verdict.failures {
            eprintln!("  FAIL: {f}");
        }
        results.push((case, t.elapsed(), verdict));
    }

    let passed = results.iter().all(|(_, _, v)| v.failures.is_empty());
    let mut table = format!(
        "\ne2e: bmad-host + real Claude CLI {version} ({}) + mock-anthropic\n\n{:<16} {:<6} {:>7}  detail\n",
        env.claude.display(),
        "case",
        "result",
        "time"
    );
    for (case, took, v) in &results {
        let result = if v.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let detail = if v.failures.is_empty() {
            v.notes.join("; ")
        } else {
            v.failures.join("; ")
        };
        let _ = writeln!(
            table,
            "{:<16} {:<6} {:>6.1}s  {detail}",
            case.name,
            result,
            took.as_secs_f64()
        );
    }
    let _ = writeln!(
        table,
        "\n{} of {} passed; CLI install/check {:.1}s, build {:.1}s, total {:.1}s",
        results
            .iter()
            .filter(|(_, _, v)| v.failures.is_empty())
            .count(),
        results.len(),
        installed.as_secs_f64(),
        built.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!("{table}");
    if passed && !opts.keep {
        let _ = std::fs::remove_dir_all(&env.work);
    } else {
        println!(
            "projects, logs and transcripts: {}/<case>/",
            env.work.display()
        );
    }
    if !passed {
        bail!("e2e failed");
    }
    Ok(())
}

/// Paths shared by the cases.
#[derive(Debug)]
struct Env {
    root: PathBuf,
    claude: PathBuf,
    bmad_host: PathBuf,
    mock: PathBuf,
    cache: PathBuf,
    work: PathBuf,
}

// ---------------------------------------------------------------------------------------------
// The CLI

fn installed_version(dir: &Path) -> Option<String> {
    let manifest = dir.join("node_modules/@anthropic-ai/claude-code/package.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(manifest).ok()?).ok()?;
    v.get("version")?.as_str().map(str::to_owned)
}

/// Whether `bin --version` prints `version`.
fn cli_runs(bin: &Path, version: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with(version)
        })
}

/// The CLI at `dir/node_modules/.bin/claude`, installed with npm unless it is there already.
fn ensure_cli(dir: &Path, version: &str) -> Result<PathBuf> {
    let bin = dir.join("node_modules").join(".bin").join("claude");
    if installed_version(dir).as_deref() == Some(version) && cli_runs(&bin, version) {
        eprintln!("e2e: Claude CLI {version} already in {}", dir.display());
        return Ok(bin);
    }
    match Command::new("npm").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!(
            "`npm --version` failed ({}): cargo xtask e2e installs @anthropic-ai/claude-code@{version} with npm",
            o.status
        ),
        Err(e) => bail!(
            "npm is not available ({e}): cargo xtask e2e installs @anthropic-ai/claude-code@{version} \
             with npm into {}. Install Node.js and npm (e.g. `apt-get install nodejs npm`), or point \
             BMAD_E2E_NPM_DIR at a directory where that version is installed.",
            dir.display()
        ),
    }
    eprintln!(
        "e2e: installing @anthropic-ai/claude-code@{version} into {} (about 360 MB)",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let manifest = dir.join("package.json");
    if !manifest.exists() {
        std::fs::write(
            &manifest,
            "{\"name\": \"bmad-host-e2e\", \"version\": \"0.0.0\", \"private\": true}\n",
        )
        .with_context(|| format!("cannot write {}", manifest.display()))?;
    }
    super::run(Command::new("npm").current_dir(dir).args([
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        &format!("@anthropic-ai/claude-code@{version}"),
    ]))?;
    if !cli_runs(&bin, version) {
        // The package's postinstall puts the native binary in place; run it if scripts were
        // skipped (npm's ignore-scripts).
        let install = dir.join("node_modules/@anthropic-ai/claude-code/install.cjs");
        super::run(Command::new("node").arg(&install).current_dir(dir))?;
    }
    if !cli_runs(&bin, version) {
        bail!(
            "{} --version does not print {version} after the install",
            bin.display()
        );
    }
    Ok(bin)
}

// ---------------------------------------------------------------------------------------------
// Running one case

/// What one case produced.
#[derive(Debug)]
struct Outcome {
    dir: PathBuf,
    project: PathBuf,
    exit: Option<i32>,
    /// bmad-host was killed at [`CASE_DEADLINE`].
    deadline_hit: bool,
    events: Vec<Value>,
    /// The mock's request log.
    mock: Vec<Value>,
    /// Processes with the case's marker after bmad-host exited (pid and command line).
    leftovers: Vec<String>,
    stderr_tail: String,
}

/// Failures and notes of one case.
#[derive(Debug, Default)]
struct Verdict {
    failures: Vec<String>,
    notes: Vec<String>,
}

impl Verdict {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            self.failures.push(what());
        }
        ok
    }

    fn note(&mut self, note: String) {
        self.notes.push(note);
    }
}

/// A running mock: killed when dropped.
struct Mock {
    child: Child,
    url: String,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mock(env: &Env, scenario: &Path, dir: &Path) -> Result<Mock> {
    let stderr = std::fs::File::create(dir.join("mock.stderr"))?;
    let mut child = Command::new(&env.mock)
        .arg("--scenario")
        .arg(scenario)
        .arg("--log")
        .arg(dir.join("mock.jsonl"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", env.mock.display()))?;
    // The first stdout line says the listener is bound (or EOF: the mock failed).
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let url = line
        .trim()
        .rsplit_once("listening on ")
        .map(|(_, url)| url.to_owned());
    let mock = Mock {
        child,
        url: url.unwrap_or_default(),
    };
    if mock.url.is_empty() {
        let err = std::fs::read_to_string(dir.join("mock.stderr")).unwrap_or_default();
        bail!("mock-anthropic did not start: {}", err.trim());
    }
    Ok(mock)
}

fn run_case(env: &Env, case: &Case) -> Result<Outcome> {
    let dir = env.work.join(case.name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    for sub in ["config", "home", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let project = dir.join("project");
    super::copy_dir(
        &env.root.join("tests/fixtures").join(case.fixture),
        &project,
    )?;
    std::fs::write(project.join("bmad-host.toml"), PROJECT_TOML)?;

    let mock = start_mock(env, &env.root.join("tests/e2e").join(case.scenario), &dir)?;
    let marker = format!("{}-{}", std::process::id(), case.name);
    let mut cmd = Command::new(&env.bmad_host);
    cmd.arg("run")
        .arg("--json")
        .arg("--plugins")
        .arg(env.root.join("plugins"))
        .arg("--project")
        .arg(&project)
        .arg("--claude-bin")
        .arg(&env.claude)
        // PROJECT_TOML sets extra_args and a gate: trusted for this run, as CI would.
        .arg("--trust")
        .args(case.args);
    if !case.args.contains(&"--timeout") {
        cmd.args(["--timeout", DEFAULT_CALL_TIMEOUT]);
    }
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("BMAD_HOST_") {
            cmd.env_remove(&k);
        }
    }
    for k in UNSET {
        cmd.env_remove(k);
    }
    if case.subscriber {
        // A dummy subscriber token (never leaves the machine: the base URL is the mock's).
        cmd.env_remove("ANTHROPIC_API_KEY").env(
            "CLAUDE_CODE_OAUTH_TOKEN",
            "sk-ant-oat01-mock-not-a-real-token",
        );
    } else {
        cmd.env("ANTHROPIC_API_KEY", "sk-ant-mock-not-a-real-key");
    }
    if let Some(tz) = case.tz {
        cmd.env("TZ", tz);
    }
    cmd.env("ANTHROPIC_BASE_URL", &mock.url)
        .env("CLAUDE_CONFIG_DIR", dir.join("config"))
        .env("CLAUDE_CODE_TMPDIR", dir.join("tmp"))
        .env("HOME", dir.join("home"))
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_MAX_RETRIES", "2")
        .env("API_TIMEOUT_MS", "60000")
        .env("BMAD_HOST_CACHE_DIR", &env.cache)
        .env(MARKER_ENV, &marker)
        .current_dir(&project)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("bmad-host.stderr"))?);
    eprintln!(
        "  mock {} ; bmad-host run {}",
        mock.url,
        case.args.join(" ")
    );
    let (status, stdout, deadline_hit) = wait_with_deadline(cmd, CASE_DEADLINE)?;
    let leftovers = reap_marked(&marker);
    drop(mock);

    std::fs::write(dir.join("events.ndjson"), &stdout)?;
    let stderr = std::fs::read_to_string(dir.join("bmad-host.stderr")).unwrap_or_default();
    let stderr_tail = stderr
        .lines()
        .rev()
        .take(8)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    Ok(Outcome {
        events: json_lines(&stdout),
        mock: json_lines(&std::fs::read_to_string(dir.join("mock.jsonl")).unwrap_or_default()),
        exit: status.and_then(|s| s.code()),
        deadline_hit,
        leftovers,
        stderr_tail,
        project,
        dir,
    })
}

/// Runs `cmd` to the end, or kills it at `deadline` (what it started is reaped by marker
/// afterwards). It stays in the terminal's process group, so Ctrl-C reaches it.
fn wait_with_deadline(
    mut cmd: Command,
    deadline: Duration,
) -> Result<(Option<ExitStatus>, String, bool)> {
    let mut child = cmd.spawn().context("cannot start bmad-host")?;
    let pid = child.id();
    let mut stdout = child
        .stdout
        .take()
        .context("bmad-host has no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let status = child.wait().ok();
        let _ = tx.send((status, out));
    });
    match rx.recv_timeout(deadline) {
        Ok((status, out)) => Ok((status, out, false)),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let (status, out) = rx
                .recv_timeout(Duration::from_secs(30))
                .context("bmad-host did not end after SIGKILL")?;
            Ok((status, out, true))
        }
    }
}

/// Live processes whose environment has `MARKER_ENV=marker`; each is killed after it is listed.
fn reap_marked(marker: &str) -> Vec<String> {
    let needle = format!("{MARKER_ENV}={marker}");
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            found.push(format!("pid {pid}: {}", cmdline.trim()));
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
    found
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading what a case produced

impl Outcome {
    fn events(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    fn story_finished(&self, story: &str) -> Option<&Value> {
        self.events
            .iter()
            .find(|e| e["event"] == "story_finished" && e["story"] == story)
    }

    fn agents(&self, kind: &str, role: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["event"] == kind && e["role"] == role)
            .collect()
    }

    /// The mock's `/v1/messages` entries of `script`, turn `turn`.
    fn requests(&self, script: &str, turn: u64) -> Vec<&Value> {
        self.mock
            .iter()
            .filter(|e| e["script"] == script && e["turn"] == turn)
            .collect()
    }

    /// The `## Status` value of `docs/stories/<id>.story.md`.
    fn status(&self, id: &str) -> Option<String> {
        let text =
            std::fs::read_to_string(self.project.join(format!("docs/stories/{id}.story.md")))
                .ok()?;
        let mut lines = text.lines().skip_while(|l| l.trim() != "## Status").skip(1);
        lines
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    }

    /// Every line of the transcripts of the agent calls of `role` (all, when `None`).
    fn transcript_lines(&self, role: Option<&str>) -> Vec<Value> {
        let mut paths: Vec<&str> = self
            .events("agent_finished")
            .into_iter()
            .filter(|e| role.is_none_or(|r| e["role"] == r))
            .filter_map(|e| e["transcript"].as_str())
            .collect();
        paths.dedup();
        paths
            .iter()
            .flat_map(|p| json_lines(&std::fs::read_to_string(p).unwrap_or_default()))
            .collect()
    }

    fn file(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.project.join(rel)).ok()
    }
}

fn count_api_retries(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter(|l| l["type"] == "system" && l["subtype"] == "api_retry")
        .count()
}

// ---------------------------------------------------------------------------------------------
// Checks

fn common_checks(o: &Outcome, v: &mut Verdict) {
    v.check(!o.deadline_hit, || {
        format!("bmad-host still running after {CASE_DEADLINE:?}: killed")
    });
    v.check(o.leftovers.is_empty(), || {
        format!(
            "processes left after bmad-host exited: {}",
            o.leftovers.join(" | ")
        )
    });
    let finished = o.events("run_finished");
    if v.check(finished.len() == 1, || {
        format!(
            "no run_finished event (exit {:?}); stderr: {}",
            o.exit, o.stderr_tail
        )
    }) {
        let code = finished[0]["exit_code"].as_i64();
        v.check(code == o.exit.map(i64::from), || {
            format!(
                "run_finished says exit {code:?}, the process exited {:?}",
                o.exit
            )
        });
    }
    v.check(!o.mock.iter().any(|e| e["script"] == "default"), || {
        "a request matched no script of the scenario (the mock answered 400)".into()
    });
}

fn check_done(o: &Outcome, v: &mut Verdict, id: &str, cycles: u64) {
    let sf = o.story_finished(id);
    v.check(
        sf.is_some_and(|e| e["result"] == "done" && e["cycles"] == cycles),
        || format!("story {id}: expected done in {cycles} cycle(s), got {sf:?}"),
    );
    let status = o.status(id);
    v.check(status.as_deref() == Some("Done"), || {
        format!("story {id}: file Status is {status:?}, not Done")
    });
    for f in [format!("src/story-{id}.sh"), format!("tests/story-{id}.sh")] {
        v.check(o.file(&f).is_some(), || {
            format!("the Dev agent did not write {f}")
        });
    }
    let test = Command::new("sh")
        .arg(format!("tests/story-{id}.sh"))
        .current_dir(&o.project)
        .output();
    v.check(test.as_ref().is_ok_and(|t| t.status.success()), || {
        format!("story {id}: `sh tests/story-{id}.sh` does not pass in the project")
    });
    let gates = std::fs::read_dir(o.project.join("docs/qa/gates"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{id}-"))
                })
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    v.check(gates.len() == 1 && gates[0].contains("gate: PASS"), || {
        format!(
            "story {id}: expected one PASS gate file, found {}",
            gates.len()
        )
    });
}

/// The build flow of `tests/corpus/v6.12-build`: story 1.3 built and reviewed, no SM, the spec,
/// sprint-status and the code in step.
fn check_build_flow(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0", o.exit)
    });
    let ia = "_bmad-output/implementation-artifacts";
    let sprint = o
        .file(&format!("{ia}/sprint-status.yaml"))
        .unwrap_or_default();
    for (id, key, cycles, built) in [
        ("1.2", "1-2-user-registration", 1, false),
        ("1.3", "1-3-sign-in-and-session", 2, true),
        ("1.4", "1-4-add-a-plant", 1, true),
    ] {
        let sf = o.story_finished(id);
        v.check(
            sf.is_some_and(|e| e["result"] == "done" && e["cycles"] == cycles),
            || format!("story {id}: expected done in {cycles} cycle(s), got {sf:?}"),
        );
        let spec = o.file(&format!("{ia}/spec-{key}.md"));
        v.check(
            spec.as_deref()
                .is_some_and(|t| t.contains("\nstatus: 'done'\n")),
            || format!("story {id}: the spec is not done: {spec:?}"),
        );
        v.check(
            sprint.lines().any(|l| l.trim() == format!("{key}: done")),
            || format!("sprint-status does not say {key}: done"),
        );
        if built {
            for f in [format!("src/story-{id}.sh"), format!("tests/story-{id}.sh")] {
                v.check(o.file(&f).is_some(), || {
                    format!("the build did not write {f}")
                });
            }
        }
    }
    let again: Vec<_> = o
        .events("agent_started")
        .into_iter()
        .filter(|e| e["story"] == "1.1")
        .collect();
    v.check(again.is_empty(), || {
        format!("story 1.1 (done before the run) was worked on again: {again:?}")
    });
    v.check(sprint.lines().any(|l| l.trim() == "epic-1: done"), || {
        "sprint-status does not say epic-1: done after its last story".to_owned()
    });
    v.check(o.agents("agent_started", "sm").is_empty(), || {
        "the build flow ran an SM step".to_owned()
    });
    let calls: Vec<usize> = ["dev", "qa"]
        .iter()
        .map(|r| o.agents("agent_finished", r).len())
        .collect();
    v.check(calls == [3, 4], || {
        format!("build and review calls {calls:?}, expected [3, 4]")
    });
    let spec13 = o
        .file(&format!("{ia}/spec-1-3-sign-in-and-session.md"))
        .unwrap_or_default();
    v.check(spec13.contains("- [x] [Review][High]"), || {
        "story 1.3: the review's finding is not ticked in the spec".to_owned()
    });
    v.check(!o.events("ledgers_reconciled").is_empty(), || {
        "no ledgers_reconciled event: the host did not bring the ledgers into line".to_owned()
    });
    let requests = o.mock.iter().filter(|e| e["script"].is_string()).count();
    v.note(format!(
        "1.2 reviewed, 1.3 (after a send-back) and 1.4 built and reviewed: done; {} CLI calls, {requests} API requests",
        o.events("agent_finished").len(),
    ));
}

fn check_full_epic(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0", o.exit)
    });
    check_done(o, v, "1.1", 1);
    check_done(o, v, "1.2", 2);
    check_done(o, v, "1.3", 1);
    let calls: Vec<(String, usize)> = ["sm", "dev", "qa"]
        .iter()
        .map(|r| (r.to_string(), o.agents("agent_finished", r).len()))
        .collect();
    let expected = [("sm", 1), ("dev", 4), ("qa", 4)];
    v.check(
        calls.iter().zip(expected).all(|((_, n), (_, e))| *n == e),
        || format!("agent calls per role {calls:?}, expected {expected:?}"),
    );
    let not_ok: Vec<_> = o
        .events("agent_finished")
        .into_iter()
        .filter(|e| e["outcome"] != "success")
        .map(|e| format!("{} {} {}", e["role"], e["story"], e["outcome"]))
        .collect();
    v.check(not_ok.is_empty(), || {
        format!("agent calls not successful: {not_ok:?}")
    });
    let gates = o.events("gate_finished");
    v.check(
        gates.len() == 4 && gates.iter().all(|g| g["passed"] == true),
        || format!("expected 4 passing quality-gate runs, got {gates:?}"),
    );
    let sent_back = o
        .events("state_changed")
        .into_iter()
        .any(|e| e["story"] == "1.2" && e["from"] == "review" && e["to"] == "in-progress");
    v.check(sent_back, || {
        "story 1.2 was not sent back by its FAIL review".into()
    });
    // The tools the real CLI ran, from the transcripts.
    let lines = o.transcript_lines(None);
    let mut tools = std::collections::BTreeMap::<String, usize>::new();
    let mut tool_errors = Vec::new();
    for l in &lines {
        for block in l["message"]["content"].as_array().into_iter().flatten() {
            if l["type"] == "assistant" && block["type"] == "tool_use" {
                *tools
                    .entry(block["name"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            if l["type"] == "user" && block["type"] == "tool_result" && block["is_error"] == true {
                tool_errors.push(block["content"].to_string());
            }
        }
    }
    for t in ["Write", "Edit", "Read", "Bash"] {
        v.check(tools.contains_key(t), || format!("the CLI never ran {t}"));
    }
    v.check(tool_errors.is_empty(), || {
        format!("tool calls failed: {}", tool_errors.join(" | "))
    });
    let faults = o.mock.iter().filter(|e| !e["fault"].is_null()).count();
    v.check(faults == 0, || format!("{faults} requests got a fault"));
    let requests = o.mock.iter().filter(|e| e["script"].is_string()).count();
    v.note(format!(
        "3 stories Done (1.2 after a FAIL review), {} CLI calls, {requests} API requests, tools {}",
        o.events("agent_finished").len(),
        tools
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
}

/// A v6 story's `Status:` line and its sprint-status value.
fn v6_status(o: &Outcome, key: &str) -> (Option<String>, Option<String>) {
    let line = |text: Option<String>, prefix: &str| {
        text.and_then(|t| {
            t.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                // A YAML comment after the value is not part of it.
                .map(|v| v.split(" #").next().unwrap_or(v).trim().to_owned())
        })
    };
    (
        line(
            o.file(&format!("_bmad-output/implementation-artifacts/{key}.md")),
            "Status:",
        ),
        line(
            o.file("_bmad-output/implementation-artifacts/sprint-status.yaml"),
            &format!("{key}:"),
        ),
    )
}

fn check_v6_epic(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0", o.exit)
    });
    for (id, key, cycles) in [
        ("1.1", "1-1-count-lines", 2),
        ("1.2", "1-2-count-words", 1),
        ("1.3", "1-3-count-characters", 1),
    ] {
        let sf = o.story_finished(id);
        v.check(
            sf.is_some_and(|e| e["result"] == "done" && e["cycles"] == cycles),
            || format!("story {id}: expected done in {cycles} cycle(s), got {sf:?}"),
        );
        let (file, sprint) = v6_status(o, key);
        v.check(file.as_deref() == Some("done"), || {
            format!("story {id}: file Status is {file:?}, not done")
        });
        v.check(sprint.as_deref() == Some("done"), || {
            format!("story {id}: sprint-status says {sprint:?}, not done")
        });
        let test = Command::new("sh")
            .arg(format!("tests/story-{id}.sh"))
            .current_dir(&o.project)
            .output();
        v.check(test.as_ref().is_ok_and(|t| t.status.success()), || {
            format!("story {id}: `sh tests/story-{id}.sh` does not pass in the project")
        });
    }
    let calls: Vec<usize> = ["sm", "dev", "qa"]
        .iter()
        .map(|r| o.agents("agent_finished", r).len())
        .collect();
    v.check(calls == [2, 4, 4], || {
        format!("agent calls per role (sm, dev, qa) {calls:?}, expected [2, 4, 4]")
    });
    let sent_back = o
        .events("state_changed")
        .into_iter()
        .any(|e| e["story"] == "1.1" && e["from"] == "review" && e["to"] == "in-progress");
    v.check(sent_back, || {
        "story 1.1 was not sent back by its first code review".into()
    });
    let (_, epic) = v6_status(o, "epic-1");
    v.check(epic.as_deref() == Some("done"), || {
        format!("sprint-status says epic-1: {epic:?} after its last story, not done")
    });
    let follow_up = o
        .file("_bmad-output/implementation-artifacts/1-1-count-lines.md")
        .unwrap_or_default();
    v.check(follow_up.contains("- [x] [AI-Review][Medium]"), || {
        "story 1.1: the review's follow-up is not ticked in the story file".into()
    });
    let requests = o.mock.iter().filter(|e| e["script"].is_string()).count();
    v.note(format!(
        "3 stories done (1.1 after a send-back), {} CLI calls, {requests} API requests",
        o.events("agent_finished").len(),
    ));
}

fn check_hang_timeout(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(1), || {
        format!("exit code {:?}, expected 1", o.exit)
    });
    let dev = o.agents("agent_finished", "dev");
    let timed_out = dev.len() == 1 && dev[0]["outcome"] == "timed_out";
    v.check(timed_out, || {
        format!("expected one dev call that timed out, got {dev:?}")
    });
    let sf = o.story_finished("1.1");
    v.check(sf.is_some_and(|e| e["result"] == "failed"), || {
        format!("story 1.1 should fail on the timeout, got {sf:?}")
    });
    let status = o.status("1.1");
    v.check(status.as_deref() == Some("Approved"), || {
        format!("story 1.1 Status changed to {status:?} by a call that timed out")
    });
    v.check(o.file("src/story-1.1.sh").is_some(), || {
        "the Dev call did not get as far as writing src/story-1.1.sh before the hang".into()
    });
    // The hung request, and the mock seeing the CLI's connection close.
    let hung: Vec<_> = o
        .mock
        .iter()
        .filter(|e| e["fault"] == "hang" && e["script"] == "dev")
        .collect();
    let hung_seq = hung.first().map(|e| e["seq"].clone());
    v.check(hung.len() == 1, || {
        format!("expected one hung request, got {}", hung.len())
    });
    let closed = o
        .mock
        .iter()
        .any(|e| e["event"] == "hang_ended" && Some(&e["request"]) == hung_seq.as_ref());
    v.check(closed, || {
        "the CLI's connection to the hung request was still open when bmad-host exited".into()
    });
    // The background process a Bash tool left behind.
    let sleeper = o
        .file("sleeper.pid")
        .and_then(|s| s.trim().parse::<u32>().ok());
    if v.check(sleeper.is_some(), || {
        "the Bash tool did not record its background process (sleeper.pid)".into()
    }) && let Some(pid) = sleeper
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        v.check(!alive, || {
            format!("the Bash tool's background `sleep 300` (pid {pid}) survived the teardown")
        });
    }
    // Teardown latency, from the transcript's own notes.
    let lines = o.transcript_lines(Some("dev"));
    let t = |note: &str| {
        lines
            .iter()
            .find(|l| l["bmad_host"] == note)
            .and_then(|l| l["t_ms"].as_u64())
    };
    let signals: Vec<String> = lines
        .iter()
        .filter(|l| l["bmad_host"] == "teardown")
        .filter_map(|l| l["step"].as_str().map(str::to_owned))
        .collect();
    match (t("teardown"), t("end")) {
        (Some(start), Some(end)) => {
            let took = end.saturating_sub(start);
            v.check(start >= 8000, || {
                format!("teardown started at {start} ms, before the 8 s timeout")
            });
            v.check(took < 3000, || {
                format!(
                    "teardown took {took} ms (steps {signals:?}); the CLI should exit on SIGINT"
                )
            });
            v.note(format!(
                "dev timed out at {:.1}s; teardown {took} ms ({}); CLI and background sleep gone",
                start as f64 / 1000.0,
                signals.join("→")
            ));
        }
        _ => {
            v.check(false, || {
                "no teardown/end notes in the dev transcript".into()
            });
        }
    }
}

fn check_stall_idle(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(1), || {
        format!("exit code {:?}, expected 1", o.exit)
    });
    let dev = o.agents("agent_finished", "dev");
    v.check(
        dev.len() == 1 && dev[0]["outcome"] == "idle_timeout",
        || format!("expected one dev call ended by the idle timeout, got {dev:?}"),
    );
    let stalled: Vec<_> = o
        .mock
        .iter()
        .filter(|e| e["fault"] == "stall_after 4")
        .collect();
    v.check(stalled.len() == 1, || {
        format!("expected one stalled stream, got {}", stalled.len())
    });
    let seq = stalled.first().map(|e| e["seq"].clone());
    v.check(
        o.mock
            .iter()
            .any(|e| e["event"] == "hang_ended" && Some(&e["request"]) == seq.as_ref()),
        || "the CLI's stalled connection was still open when bmad-host exited".into(),
    );
    let status = o.status("1.1");
    v.check(status.as_deref() == Some("Approved"), || {
        format!("story 1.1 Status changed to {status:?} by a call that stalled")
    });
    let lines = o.transcript_lines(Some("dev"));
    let t = |note: &str| {
        lines
            .iter()
            .find(|l| l["bmad_host"] == note)
            .and_then(|l| l["t_ms"].as_u64())
    };
    match (t("teardown"), t("end")) {
        (Some(start), Some(end)) => {
            let took = end.saturating_sub(start);
            v.check(took < 3000, || {
                format!("teardown took {took} ms; the CLI should exit on SIGINT")
            });
            v.note(format!(
                "dev idle for 4 s mid-stream at {:.1}s: idle_timeout; teardown {} ms; connection closed",
                start as f64 / 1000.0,
                took
            ));
        }
        _ => {
            v.check(false, || {
                "no teardown/end notes in the dev transcript".into()
            });
        }
    }
}

fn check_overload_retry(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0", o.exit)
    });
    check_done(o, v, "1.1", 1);
    let started: Vec<_> = o.agents("agent_started", "dev");
    let pids: std::collections::BTreeSet<String> =
        started.iter().map(|e| e["pid"].to_string()).collect();
    v.check(started.len() == 2 && pids.len() == 2, || {
        format!("expected bmad-host to run the Dev call twice (one retry), got {started:?}")
    });
    v.check(o.agents("agent_started", "qa").len() == 1, || {
        "QA's overload should be absorbed by the CLI's own retry, not bmad-host's".into()
    });
    let dev_529 = o
        .requests("dev", 0)
        .iter()
        .filter(|e| e["fault"] == "error 529")
        .count();
    let qa_529 = o
        .requests("qa", 0)
        .iter()
        .filter(|e| e["fault"] == "error 529")
        .count();
    v.check(dev_529 == 4 && qa_529 == 1, || {
        format!("expected 4 + 1 overloaded answers, the mock gave {dev_529} + {qa_529}")
    });
    let dev_lines = o.transcript_lines(Some("dev"));
    let dev_retries = count_api_retries(&dev_lines);
    let qa_retries = count_api_retries(&o.transcript_lines(Some("qa")));
    v.check(dev_retries == 3 && qa_retries == 1, || {
        format!(
            "expected 3 + 1 system/api_retry lines from the CLI, got {dev_retries} + {qa_retries}"
        )
    });
    let gave_up = dev_lines
        .iter()
        .any(|l| l["type"] == "result" && l["is_error"] == true && l["api_error_status"] == 529);
    v.check(gave_up, || {
        "the first Dev process should end with an is_error result, api_error_status 529".into()
    });
    v.note(format!(
        "{} × HTTP 529: CLI retried {} times, bmad-host retried the Dev call once; Done",
        dev_529 + qa_529,
        dev_retries + qa_retries
    ));
}

fn check_usage_limit_wait(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0\n{}", o.exit, o.stderr_tail)
    });
    check_done(o, v, "1.1", 1);
    let limits = o.events("usage_limit");
    v.check(
        limits.len() == 1 && limits[0]["wait"] == true && limits[0]["role"] == "dev",
        || format!("expected one usage_limit event of Dev, waited for, got {limits:?}"),
    );
    let waits = o.events("waiting_for_reset");
    v.check(!waits.is_empty(), || "no waiting_for_reset event".into());
    // The instant is the CLI's resetsAt (the mock's {{now+6}}), not the text's minute.
    let reset = limits
        .first()
        .and_then(|e| e["resets_at"].as_str())
        .unwrap_or_default()
        .to_owned();
    let rejected: Vec<&Value> = o
        .events("rate_limit")
        .into_iter()
        .filter(|e| e["status"] == "rejected")
        .collect();
    v.check(
        rejected.len() == 1
            && rejected[0]["type"] == "five_hour"
            && rejected[0]["resets_at"] == reset.as_str(),
        || format!("expected one rejected five_hour rate_limit event at {reset}, got {rejected:?}"),
    );
    let warned = o
        .events("rate_limit")
        .into_iter()
        .filter(|e| e["status"] == "allowed_warning" && e["role"] == "qa")
        .count();
    v.check(warned >= 1, || {
        "QA's allowed_warning was not reported as a rate_limit event".into()
    });
    let dev = o.agents("agent_started", "dev");
    v.check(dev.len() == 2 && dev[1]["retry"] == true, || {
        format!("expected the Dev step redone once (a retry), got {dev:?}")
    });
    let outcomes: Vec<&str> = o
        .agents("agent_finished", "dev")
        .iter()
        .filter_map(|e| e["outcome"].as_str())
        .collect();
    v.check(outcomes == ["usage_limit", "success"], || {
        format!("Dev outcomes {outcomes:?}, expected usage_limit then success")
    });
    // The CLI stated the reset in the process's zone.
    let texts: Vec<String> = o
        .transcript_lines(Some("dev"))
        .iter()
        .filter(|l| l["type"] == "result")
        .filter_map(|l| l["result"].as_str().map(str::to_owned))
        .collect();
    let stated = texts
        .iter()
        .find(|t| t.contains("limit"))
        .cloned()
        .unwrap_or_default();
    v.check(stated.contains("(America/New_York)"), || {
        format!("the CLI's limit text is not in New York time: {texts:?}")
    });
    let limited = o
        .requests("dev", 1)
        .iter()
        .filter(|e| e["fault"] == "error 429")
        .count();
    v.check(limited == 1, || {
        format!("expected one 429 from the mock, got {limited}")
    });
    v.note(format!(
        "\"{stated}\"; waited for {reset} (New York), redid Dev; Done"
    ));
}

fn check_dropped_stream(o: &Outcome, v: &mut Verdict) {
    v.check(o.exit == Some(0), || {
        format!("exit code {:?}, expected 0", o.exit)
    });
    check_done(o, v, "1.1", 1);
    let dev = o.agents("agent_started", "dev").len();
    let qa = o.agents("agent_started", "qa").len();
    v.check(dev == 1 && qa == 1, || {
        format!("the CLI should absorb every reset (no bmad-host retry): dev {dev}, qa {qa} calls")
    });
    let retried = o.requests("dev", 0);
    v.check(
        retried.len() == 2 && retried[0]["fault"] == "drop_after 3",
        || {
            format!(
                "dev turn 0: expected a reset then a retry, got {} requests",
                retried.len()
            )
        },
    );
    // A reset after a complete block: the CLI either retries the request or (when it had read
    // the block before the reset) keeps it and asks the model to resume; both must work.
    let turn1 = o.requests("dev", 1);
    let resumed = turn1.iter().any(|e| e["resume_from"] == 1);
    v.check(
        turn1.len() == 2 && turn1[0]["fault"] == "drop_after 5",
        || {
            format!(
                "dev turn 1: expected a reset then one more request, got {}",
                turn1.len()
            )
        },
    );
    if resumed {
        let nudged = o
            .transcript_lines(Some("dev"))
            .iter()
            .any(|l| l["type"] == "user" && l.to_string().contains("cut off mid-stream"));
        v.check(nudged, || {
            "the mock saw a resume request the Dev transcript does not show".into()
        });
    }
    let qa2 = o.requests("qa", 2);
    let fallback = qa2.last().is_some_and(|e| e["stream"] == false);
    v.check(fallback && qa2.len() >= 2, || {
        format!(
            "qa turn 2: expected dropped streams then a non-streaming request, got {} requests",
            qa2.len()
        )
    });
    let resets = o
        .mock
        .iter()
        .filter(|e| e["fault"].as_str().is_some_and(|f| f.starts_with("drop")))
        .count();
    v.note(format!(
        "{resets} TCP resets: CLI retried, {} a cut-off response, fell back to non-streaming after {} streams; Done",
        if resumed { "resumed" } else { "re-requested" },
        qa2.len().saturating_sub(1)
    ));
}
