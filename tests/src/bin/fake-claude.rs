//! fake-claude: a stand-in for the Claude Code CLI (`claude -p ... --output-format stream-json
//! --verbose -- PROMPT`), for tests. It parses its arguments as the real CLI (commander.js) does:
//! an option's value is the next argument whatever it starts with, `--allowedTools` takes every
//! following argument up to one starting with `-`, `--` ends the options and the first positional
//! argument is the prompt (unknown options are ignored and logged). It prints the
//! real CLI's stream-json lines (`system/init`, `assistant` text and `tool_use`, `user`
//! `tool_result`, `result` with `subtype`, `is_error`, `num_turns`, `total_cost_usd`, `usage`,
//! `session_id`, `duration_ms`, ...), and handles signals like the real CLI: SIGINT while waiting
//! prints `[Request interrupted by user]` and exits 0 without a result; SIGINT during a tool
//! prints the rejected tool result and an `error_during_execution` result and exits 0; SIGTERM
//! exits 143.
//!
//! # Behaviour
//!
//! By default it plays the BMAD agent named by `BMAD_HOST_ROLE`, editing the project at its
//! working directory like the real agents do (BMAD v6 if the project has `_bmad/`, else v4):
//! - `sm`: drafts the story at `BMAD_HOST_STORY_PATH` if and only if it does not exist (title
//!   from the epic file's `Story <id>:` heading when found, else `Story <id>`). v4: `## Status`
//!   `Draft`; v6: `Status: ready-for-dev` (and `sprint-status.yaml` when present).
//! - `dev`: checks every `- [ ]` box, adds a Dev Agent Record line, sets the status value to
//!   `Ready for Review` (v4) or `review` (v6).
//! - `qa`: writes or replaces `## QA Results`; v4 also writes the gate file
//!   `<qaLocation>/gates/<epic>.<story>-<slug>.yml` (`qaLocation` from
//!   `.bmad-core/core-config.yaml`, default `docs/qa`); v6 sets `Status:` to `done`, or to
//!   `in-progress` with `- [ ] [AI-Review][High] ...` items on a FAIL verdict.
//!
//! # Script
//!
//! `FAKE_CLAUDE_SCRIPT` names a JSON file; `FAKE_CLAUDE_BEHAVIOUR` holds one behaviour object
//! inline (it wins over the script). The script:
//! ```json
//! {
//!   "calls": [
//!     { "role": "dev", "story": "1.1", "occurrence": 2, "do": "hang", "ignore_signals": true },
//!     { "role": "qa", "story": "1.2", "verdicts": ["FAIL", "PASS"] },
//!     { "do": "api_error", "status": 529 }
//!   ],
//!   "default": { "do": "play" }
//! }
//! ```
//! The first entry whose `role`, `story` and `occurrence` all match (an absent key matches
//! anything; `only_env: "NAME=VALUE"` also needs that in the call's environment, and `once:
//! PATH` matches only the first call that creates PATH) gives the behaviour, else `default`,
//! else `{"do": "play"}`. `occurrence` counts the calls with the same role and story, from 1,
//! in the state file `<script>.state` (locked, so concurrent calls count right). For QA,
//! `verdicts[occurrence - 1]` is the gate verdict (the last one repeats; default PASS), and
//! `findings[occurrence - 1]` (a list of texts; the last one repeats) the findings of a FAIL or
//! CONCERNS verdict instead of the fixed one (v4: the gate's `top_issues`, ids `TEST-001`...;
//! v6: `[AI-Review][High]` / `[Review][High]` items).
//!
//! A behaviour object: `do` is one of
//! - `play` (default): the role play above.
//! - `hang`: prints `system/init`, then waits forever (a pipe read that never ends).
//! - `hang_in_tool`: prints a Bash `tool_use`, then waits forever.
//! - `slow`: `lines` (default 5) text lines, `delay_ms` (default 100) apart, then a success.
//! - `slow_tool`: a Bash `tool_use` (and `system/task_started`), `delay_ms` of silence, its
//!   `tool_result`, then a success.
//! - `chatter`: a text line every `delay_ms` (default 20), forever, never a result.
//! - `garbage`: non-JSON lines, broken JSON, unknown line types, stderr noise, one line of
//!   `bytes` bytes (default 50 MB, written in chunks), then a success.
//! - `no_result`: `system/init`, a text line, exit 0 without a result.
//! - `api_error`: `system/api_retry`, the synthetic API-error message and a `result` with subtype
//!   `success`, `is_error: true`, `api_error_status` = `status` (default 529); exit 1.
//! - `usage_limit`: the same with status 429 and the text `You've hit your session limit ·
//!   resets <reset>` (`reset` default `3pm (UTC)`); exit 1.
//! - `die`: `system/init`, then kills itself with `signal` (`KILL` default, or `SEGV`, `ABRT`...).
//! - `max_turns`, `max_budget`, `during_execution`: a tool call, then the matching `error_*`
//!   result; exit 1.
//! - `close_stdout`: `system/init` and a text line, then closes stdout and stderr and waits forever.
//! - `replay`: prints the lines of the stream-json file `file` as they are (a capture of the real
//!   CLI, e.g. `tests/fixtures/claude-captures/*/stdout.jsonl`: no `system/init` of its own) and
//!   exits with `exit_code` (default 0). With `play: true` it prints the capture's lines but its
//!   `system/init` and `result` after its own `system/init`, then plays the role (the capture's
//!   rate-limit reports in a call that does the work).
//!
//! Modifiers on any behaviour: `ignore_signals: true` (SIGINT and SIGTERM are blocked, so only
//! SIGKILL ends it); `grandchild: true` (first spawns `setsid sleep 3600`, which inherits stdout
//! and stderr, in its own session, and is never waited for); `orphan: true` (first leaves behind
//! a grandchild that runs `env -i setsid sh -c 'echo $$; exec sleep 3600'` in the background of
//! a shell that exits at once: without the call's environment, so without its marker, in its own
//! session, with stdin, stdout and stderr away from the call's, re-parented to the nearest
//! subreaper; the fake waits until it runs without environment and its shell is gone);
//! `wait_for: PATH` (before its first line, opens the FIFO at PATH for reading, which blocks until
//! a writer opens it, and closes it at once: a test's go signal); `held_by: PATH` (then opens
//! the FIFO at PATH and reads it to its end: the call runs until its writer closes it); `result_text` (the success
//! text); `exit_code` (after a success, default 0); `linger: true` (after a success result, keep
//! running instead of exiting); `set_status` (as dev: the status value written instead of `Ready
//! for Review` / `review`; a v6.12 spec's frontmatter `status:` is set too) and `sprint_status`
//! (as dev on v6: the sprint-status value, default `set_status`, else `review`); `sprint_set`
//! (`{"1.2": "done", "epic-1": "done"}`: after the role play, those sprint-status keys, a story
//! id naming its key, set to those values, a trailing comment dropped) and `sprint_reorder:
//! true` (after the role play, the `development_status` lines reversed, blank lines between them
//! dropped, a comment line added above them),
//! as an agent that edits sprint-status on its own does; `cost_usd` (the
//! `total_cost_usd` of every result line; with `--max-budget-usd` below it, `play` stops at once
//! with an `error_max_budget_usd` result that spent the whole budget, as the real CLI stops
//! once a turn passes it); `tokens` (the sum of every result line's `usage`: a quarter each as
//! `input_tokens`, `cache_creation_input_tokens` and `cache_read_input_tokens`, the rest
//! `output_tokens`); `gate_slug` (v4 QA: the gate file is
//! `<epic>.<story>-<gate_slug>.yml` instead of the slug of the story's title, as a QA agent that
//! picks its own name does); `no_sprint: true` (as dev on a 6.12 spec: no sprint-status edit, as
//! `bmad-build-auto`).
//!
//! `write_files` (`{"src/a.txt": "text"}`, any role): after the role play, those files written
//! whole, relative to the working directory (with `append: true` the text is appended to a file
//! that exists), as an agent that edits code does (the parallel runs' real conflicts).
//!
//! The build flow (BMAD 6.11+): when the story file is a `spec-*.md`, `dev` plays `bmad-build`:
//! it writes the spec (YAML frontmatter `status:`) when there is none, implements it (checks its
//! boxes), sets its `status:` to `done` (or `set_status`) and sprint-status to `review` (or
//! `sprint_status`; none with `no_sprint`), as `bmad-build` does; `qa` plays `bmad-code-review`:
//! `done`, or `in-progress` with a `- [ ] [Review][High] ...` item under `### Review Findings` on
//! a FAIL verdict, in the frontmatter and sprint-status.
//!
//! # Other environment
//! - `FAKE_CLAUDE_LOG`: a file to which each call appends one JSON line: `pid`, `ppid`, `pgid`,
//!   `sid`, `role`, `story`, `occurrence`, `do`, `argv`, `env` (every `BMAD_HOST_*` variable and
//!   `CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC`), `cwd`, `stdin` (what fd 0 is), `grandchild`,
//!   `orphan` (`{pid, ppid, marked}` once its shell is gone, or null), and the command line as
//!   the real CLI would read it: `prompt`, `append_system_prompt`, `model`, `allowed_tools`,
//!   `permission_mode`, `dangerously_skip_permissions`, `unknown_options`.
//! - `FAKE_CLAUDE_SESSION`: the `session_id` to print (default: a fresh uuid-like id).
//! - `FAKE_CLAUDE_EXCLUSIVE`: a folder; each call holds an exclusive lock on
//!   `<story>-<role>.lock` there for its whole life, and its log line says `"overlap": true` when
//!   another call of the same story and role held it (two copies alive at once).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use serde::Deserialize;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Default)]
struct Args {
    prompt: Option<String>,
    output_format: Option<String>,
    verbose: bool,
    max_turns: Option<u32>,
    permission_mode: Option<String>,
    model: Option<String>,
    allowed_tools: Vec<String>,
    append_system_prompt: Option<String>,
    max_budget_usd: Option<f64>,
    dangerously_skip_permissions: bool,
    /// Options this fake does not know (the real CLI would refuse them); kept for the log.
    unknown_options: Vec<String>,
}

/// The real CLI's options that take a value (commander.js: `--name <value>` takes the next
/// argument whatever it starts with, `--name=value` too).
const VALUE_OPTIONS: &[&str] = &[
    "--output-format",
    "--input-format",
    "--max-turns",
    "--permission-mode",
    "--model",
    "--append-system-prompt",
    "--system-prompt",
    "--max-budget-usd",
    "--resume",
    "--session-id",
    "--settings",
    "--fallback-model",
];

/// Parses argv like the real CLI (commander.js): options and their values, the variadic
/// `--allowedTools <tools...>` (every following argument up to the next one starting with `-`),
/// `--` ending the options, and the first positional argument as the prompt.
fn parse_args(argv: &[String]) -> Args {
    let mut a = Args::default();
    let mut i = 0;
    let mut positional: Vec<String> = Vec::new();
    while i < argv.len() {
        let arg = argv[i].as_str();
        if arg == "--" {
            positional.extend(argv[i + 1..].iter().cloned());
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            positional.push(arg.to_owned());
            i += 1;
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_owned())),
            _ => (arg, None),
        };
        let mut value = || -> Option<String> {
            if inline.is_some() {
                return inline.clone();
            }
            i += 1;
            argv.get(i).cloned()
        };
        match name {
            "-p" | "--print" => {}
            "--verbose" => a.verbose = true,
            "--dangerously-skip-permissions" => a.dangerously_skip_permissions = true,
            "--allowedTools" | "--allowed-tools" => {
                if let Some(v) = &inline {
                    a.allowed_tools.extend(v.split(',').map(str::to_owned));
                } else {
                    while let Some(next) = argv.get(i + 1).filter(|n| !n.starts_with('-')) {
                        a.allowed_tools.extend(next.split(',').map(str::to_owned));
                        i += 1;
                    }
                }
            }
            n if VALUE_OPTIONS.contains(&n) => {
                let v = value();
                match n {
                    "--output-format" => a.output_format = v,
                    "--max-turns" => a.max_turns = v.and_then(|v| v.parse().ok()),
                    "--permission-mode" => a.permission_mode = v,
                    "--model" => a.model = v,
                    "--append-system-prompt" => a.append_system_prompt = v,
                    "--max-budget-usd" => a.max_budget_usd = v.and_then(|v| v.parse().ok()),
                    _ => {}
                }
            }
            other => a.unknown_options.push(other.to_owned()),
        }
        i += 1;
    }
    a.prompt = positional.into_iter().next();
    a
}

// ---------------------------------------------------------------------------------------------
// Script

#[derive(Debug, Clone, Default, Deserialize)]
struct Behaviour {
    #[serde(rename = "do", default)]
    action: Option<String>,
    #[serde(default)]
    ignore_signals: bool,
    #[serde(default)]
    grandchild: bool,
    #[serde(default)]
    verdicts: Vec<String>,
    /// QA: the findings of a FAIL / CONCERNS verdict, per occurrence (the last one repeats).
    #[serde(default)]
    findings: Vec<Vec<String>>,
    signal: Option<String>,
    lines: Option<u32>,
    delay_ms: Option<u64>,
    bytes: Option<usize>,
    status: Option<u16>,
    reset: Option<String>,
    result_text: Option<String>,
    exit_code: Option<u8>,
    #[serde(default)]
    linger: bool,
    /// `play` as dev: the story status value to write instead of `Ready for Review` / `review`.
    set_status: Option<String>,
    /// `play` as dev (v6): the sprint-status value to write (default: `set_status`, else `review`).
    sprint_status: Option<String>,
    /// `play` as dev on a 6.12 spec: write no sprint-status (as `bmad-build-auto` does).
    #[serde(default)]
    no_sprint: bool,
    /// `total_cost_usd` of every result line.
    cost_usd: Option<f64>,
    /// The total of every result line's `usage` (spread over input, cache and output tokens).
    tokens: Option<u64>,
    #[serde(default)]
    orphan: bool,
    wait_for: Option<PathBuf>,
    held_by: Option<PathBuf>,
    file: Option<PathBuf>,
    #[serde(default)]
    play: bool,
    gate_slug: Option<String>,
    /// `play` (any role, v6): after its own edits, sets these sprint-status keys (an exact key,
    /// or a story id `1.2` for that story's key) to these values, as an agent that edits
    /// sprint-status on its own does.
    #[serde(default)]
    sprint_set: BTreeMap<String, String>,
    /// `play` (any role, v6): after its own edits, reverses the order of the
    /// `development_status` lines and adds a comment line above them.
    #[serde(default)]
    sprint_reorder: bool,
    /// `play` (any role): after its own edits, writes these files (paths relative to its
    /// working directory) with these contents, whole; a line is appended to each instead when
    /// `append` is set. For the parallel runs' tests (real conflicts between worktrees).
    #[serde(default)]
    write_files: BTreeMap<String, String>,
    #[serde(default)]
    append: bool,
}

#[derive(Debug, Deserialize)]
struct Entry {
    role: Option<String>,
    story: Option<String>,
    occurrence: Option<u32>,
    /// `NAME=VALUE`: the entry is for calls whose environment has it (one worker's, say).
    only_env: Option<String>,
    /// A path: the entry is for one call only, the first that creates this file.
    once: Option<PathBuf>,
    #[serde(flatten)]
    behaviour: Behaviour,
}

#[derive(Debug, Default, Deserialize)]
struct Script {
    #[serde(default)]
    calls: Vec<Entry>,
    default: Option<Behaviour>,
}

/// Counts this call in the script's state file and returns its occurrence (1-based).
fn count_occurrence(script: &Path, key: &str) -> Result<u32> {
    let mut state_path = script.as_os_str().to_owned();
    state_path.push(".state");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&state_path)
        .with_context(|| format!("opening {}", PathBuf::from(&state_path).display()))?;
    let mut locked = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking the state file: {e}"))?;
    let mut text = String::new();
    locked.read_to_string(&mut text)?;
    let mut counts: BTreeMap<String, u32> = serde_json::from_str(&text).unwrap_or_default();
    let n = counts.entry(key.to_owned()).or_insert(0);
    *n += 1;
    let occurrence = *n;
    let out = serde_json::to_string(&counts)?;
    locked.set_len(0)?;
    std::io::Seek::seek(&mut *locked, std::io::SeekFrom::Start(0))?;
    locked.write_all(out.as_bytes())?;
    Ok(occurrence)
}

fn choose_behaviour(role: &str, story: &str) -> Result<(Behaviour, u32)> {
    let inline = std::env::var("FAKE_CLAUDE_BEHAVIOUR").ok();
    let Some(script_path) = std::env::var_os("FAKE_CLAUDE_SCRIPT").map(PathBuf::from) else {
        let b = match inline {
            Some(text) => serde_json::from_str(&text).context("FAKE_CLAUDE_BEHAVIOUR")?,
            None => Behaviour::default(),
        };
        return Ok((b, 1));
    };
    let text = fs::read_to_string(&script_path)
        .with_context(|| format!("reading {}", script_path.display()))?;
    let script: Script = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", script_path.display()))?;
    let occurrence = count_occurrence(&script_path, &format!("{role}/{story}"))?;
    if let Some(text) = inline {
        return Ok((
            serde_json::from_str(&text).context("FAKE_CLAUDE_BEHAVIOUR")?,
            occurrence,
        ));
    }
    let found = script.calls.into_iter().find(|e| {
        e.role.as_deref().is_none_or(|r| r == role)
            && e.story.as_deref().is_none_or(|s| s == story)
            && e.occurrence.is_none_or(|o| o == occurrence)
            && e.only_env.as_deref().is_none_or(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, v)| std::env::var(k).is_ok_and(|x| x == v))
            })
            && e.once.as_deref().is_none_or(|path| {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                    .is_ok()
            })
    });
    let b = match found {
        Some(e) => e.behaviour,
        None => script.default.unwrap_or_default(),
    };
    Ok((b, occurrence))
}

// ---------------------------------------------------------------------------------------------
// Output

static SESSION: OnceLock<String> = OnceLock::new();
static SEQ: AtomicU32 = AtomicU32::new(0);
static STARTED: OnceLock<Instant> = OnceLock::new();
/// The id of the tool call in progress (for SIGINT during a tool).
static IN_TOOL: Mutex<Option<String>> = Mutex::new(None);
static TURNS: AtomicU32 = AtomicU32::new(0);
/// The behaviour's `cost_usd`, when it sets one.
static COST: OnceLock<f64> = OnceLock::new();
/// The behaviour's `tokens`, when it sets one.
static TOKENS: OnceLock<u64> = OnceLock::new();

fn uuid() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let x = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ u64::from(n);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (x >> 32) as u32,
        (x >> 16) as u16,
        (x & 0xfff) as u16,
        n & 0xfff,
        x & 0xffff_ffff_ffff
    )
}

fn session() -> &'static str {
    SESSION.get_or_init(|| std::env::var("FAKE_CLAUDE_SESSION").unwrap_or_else(|_| uuid()))
}

fn elapsed_ms() -> u64 {
    STARTED.get().map_or(0, |s| s.elapsed().as_millis() as u64)
}

/// Prints one line on stdout (errors such as a closed pipe are ignored, like the real CLI does).
fn emit(mut v: Value) {
    if let Value::Object(m) = &mut v {
        m.entry("session_id")
            .or_insert_with(|| Value::from(session()));
        m.entry("uuid").or_insert_with(|| Value::from(uuid()));
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

fn emit_init(args: &Args, cwd: &Path) {
    emit(json!({
        "type": "system", "subtype": "init", "cwd": cwd.display().to_string(),
        "tools": ["Task", "Bash", "Edit", "Read", "Write"], "mcp_servers": [],
        "model": args.model.clone().unwrap_or_else(|| "claude-opus-5-5".into()),
        "permissionMode": args.permission_mode.clone().unwrap_or_else(|| "default".into()),
        "apiKeySource": "ANTHROPIC_API_KEY", "claude_code_version": "2.1.330-fake",
        "output_style": "default",
    }));
}

fn message(content: Value) -> Value {
    json!({
        "id": format!("msg_fake_{}", SEQ.load(Ordering::Relaxed)), "type": "message",
        "role": "assistant", "model": "claude-opus-5-5", "content": [content],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 1200, "output_tokens": 1, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })
}

fn emit_text(text: &str) {
    TURNS.fetch_add(1, Ordering::Relaxed);
    emit(json!({
        "type": "assistant", "message": message(json!({"type": "text", "text": text})),
        "parent_tool_use_id": null,
    }));
}

fn emit_tool_use(name: &str, input: Value) -> String {
    TURNS.fetch_add(1, Ordering::Relaxed);
    let id = format!("toolu_fake_{}", uuid().replace('-', ""));
    if let Ok(mut t) = IN_TOOL.lock() {
        *t = Some(id.clone());
    }
    emit(json!({
        "type": "assistant",
        "message": message(json!({"type": "tool_use", "id": id, "name": name, "input": input})),
        "parent_tool_use_id": null,
    }));
    id
}

fn emit_tool_result(id: &str, content: &str, is_error: bool) {
    if let Ok(mut t) = IN_TOOL.lock() {
        *t = None;
    }
    emit(json!({
        "type": "user",
        "message": {"role": "user", "content": [{"tool_use_id": id, "type": "tool_result", "content": content, "is_error": is_error}]},
        "parent_tool_use_id": null,
        "timestamp": "2026-11-23T05:20:01.310Z",
    }));
}

fn result_base(subtype: &str, is_error: bool) -> Value {
    let turns = TURNS.load(Ordering::Relaxed).max(1);
    json!({
        "subtype": subtype, "is_error": is_error, "api_error_status": null,
        "duration_ms": elapsed_ms(), "duration_api_ms": elapsed_ms() / 2, "num_turns": turns,
        "stop_reason": "end_turn", "total_cost_usd": COST.get().copied().unwrap_or(0.01 * f64::from(turns)),
        "usage": match TOKENS.get() {
            // A quarter each as input, cache writes and cache reads; the rest output.
            Some(&t) => json!({"input_tokens": t / 4, "cache_creation_input_tokens": t / 4,
                "cache_read_input_tokens": t / 4, "output_tokens": t - 3 * (t / 4)}),
            None => json!({"input_tokens": 1200 * turns, "output_tokens": 50 * turns,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}),
        },
        "modelUsage": {}, "permission_denials": [], "terminal_reason": "completed",
        "type": "result",
    })
}

fn emit_success(text: &str) {
    let mut r = result_base("success", false);
    r["result"] = Value::from(text);
    emit(r);
}

fn emit_error_result(subtype: &str, errors: &[&str], terminal: &str) {
    let mut r = result_base(subtype, true);
    r["errors"] = json!(errors);
    r["terminal_reason"] = Value::from(terminal);
    r["stop_reason"] = Value::from("tool_use");
    emit(r);
}

fn emit_api_error(status: u16, text: &str) {
    emit(json!({
        "type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 2,
        "retry_delay_ms": 564, "error_status": status,
        "error": if status == 429 { "rate_limit" } else { "overloaded" },
    }));
    emit(json!({
        "type": "assistant",
        "message": {"id": uuid(), "model": "<synthetic>", "role": "assistant", "stop_reason": "stop_sequence", "type": "message",
                    "usage": {"input_tokens": 0, "output_tokens": 0}, "content": [{"type": "text", "text": text}]},
        "error": if status == 429 { "rate_limit" } else { "server_error" },
        "is_api_error_message": true, "api_error_status": status,
    }));
    let mut r = result_base("success", true);
    r["api_error_status"] = Value::from(status);
    r["result"] = Value::from(text);
    r["terminal_reason"] = Value::from("api_error");
    r["stop_reason"] = Value::from("stop_sequence");
    r["total_cost_usd"] = Value::from(COST.get().copied().unwrap_or(0.0));
    emit(r);
}

// ---------------------------------------------------------------------------------------------
// Signals and waiting

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts). Unless `ignore`, a
/// thread then takes them with sigwait and acts like the real CLI.
fn setup_signals(ignore: bool) -> Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block()?;
    if !ignore {
        std::thread::spawn(move || {
            loop {
                match set.wait() {
                    Ok(Signal::SIGINT) => on_sigint(),
                    Ok(_) => std::process::exit(143),
                    Err(_) => {}
                }
            }
        });
    }
    Ok(())
}

fn on_sigint() -> ! {
    let tool = IN_TOOL.lock().ok().and_then(|t| t.clone());
    match tool {
        Some(id) => {
            emit_tool_result(
                &id,
                "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if it was a file edit, the new_string was NOT written to the file). STOP what you are doing and wait for the user to tell you how to proceed.",
                true,
            );
            emit(
                json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user for tool use]"}]}}),
            );
            emit_error_result(
                "error_during_execution",
                &["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason=tool_use"],
                "aborted_tools",
            );
        }
        None => emit(
            json!({"type": "user", "message": {"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user]"}]}}),
        ),
    }
    std::process::exit(0)
}

/// Waits forever: reads a pipe whose write end stays open. No busy loop.
fn wait_forever() -> ! {
    match nix::unistd::pipe() {
        Ok((read_end, write_end)) => {
            let mut r = File::from(read_end);
            let mut buf = [0u8; 1];
            loop {
                let _ = r.read(&mut buf);
                let _ = &write_end;
            }
        }
        Err(_) => loop {
            std::thread::park();
        },
    }
}

/// Plays a slow process: the only place that sleeps.
fn pause_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn spawn_grandchild() -> Option<u32> {
    std::process::Command::new("setsid")
        .args(["sleep", "3600"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .ok()
        .map(|c| c.id())
}

/// The `orphan` modifier: a grandchild that drops the environment (`env -i`) and the session
/// (`setsid`), orphaned at once. Returns `{pid, ppid, marked}` as it is once its shell has exited
/// (its parent is then the nearest subreaper; `marked`: whether its environment still holds the
/// host's `BMAD_HOST_CALL`).
fn spawn_orphan() -> Option<Value> {
    use std::io::BufRead as _;
    let mut shell = std::process::Command::new("sh")
        .args([
            "-c",
            "env -i setsid sh -c 'echo $$; exec sleep 3600' </dev/null 2>/dev/null &",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    // The grandchild prints its pid once it runs without environment, in its own session.
    let mut line = String::new();
    let mut out = std::io::BufReader::new(shell.stdout.take()?);
    out.read_line(&mut line).ok()?;
    drop(out);
    shell.wait().ok()?;
    let pid: i32 = line.trim().parse().ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ppid: i32 = stat
        .rsplit_once(')')?
        .1
        .split_ascii_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let marked = fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
        env.split(|&b| b == 0)
            .any(|e| e.starts_with(b"BMAD_HOST_CALL="))
    });
    Some(json!({ "pid": pid, "ppid": ppid, "marked": marked }))
}

fn signal_by_name(name: &str) -> Signal {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse().unwrap_or(Signal::SIGKILL)
}

// ---------------------------------------------------------------------------------------------
// Role play

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    V4,
    V6,
}

/// One file edit the agent makes, shown as a Write or Edit tool call.
struct FileEdit {
    path: PathBuf,
    content: String,
    old: Option<String>,
}

struct Story {
    id: String,
    epic: String,
    num: String,
    path: PathBuf,
}

fn story_from_env() -> Result<Story> {
    let id = std::env::var("BMAD_HOST_STORY_ID").context("BMAD_HOST_STORY_ID is not set")?;
    let path = PathBuf::from(
        std::env::var("BMAD_HOST_STORY_PATH").context("BMAD_HOST_STORY_PATH is not set")?,
    );
    let (epic, num) = id
        .split_once('.')
        .map_or((id.clone(), String::new()), |(e, n)| {
            (e.to_owned(), n.to_owned())
        });
    Ok(Story {
        id,
        epic,
        num,
        path,
    })
}

fn md_files(dir: &Path, depth: u32, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && depth > 0 {
            md_files(&p, depth - 1, out);
        } else if p.extension().is_some_and(|x| x == "md" || x == "yaml") {
            out.push(p);
        }
    }
}

/// The story's title from an epic file (`## Story 1.3: Title`), if one has it.
fn title_from_epics(root: &Path, story: &Story) -> Option<String> {
    let mut files = Vec::new();
    for dir in ["docs", "_bmad-output"] {
        md_files(&root.join(dir), 4, &mut files);
    }
    let needle = format!("Story {}:", story.id);
    files.sort();
    for f in files.iter().filter(|f| **f != story.path) {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines() {
            let t = line.trim_start();
            if t.starts_with('#')
                && let Some(i) = t.find(&needle)
            {
                let title = t[i + needle.len()..].trim().trim_matches('*').trim();
                if !title.is_empty() {
                    return Some(title.to_owned());
                }
            }
        }
    }
    None
}

fn title_from_story(text: &str, story: &Story) -> String {
    let needle = format!("Story {}:", story.id);
    text.lines()
        .find_map(|l| {
            l.find(&needle)
                .map(|i| l[i + needle.len()..].trim().to_owned())
        })
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("Story {}", story.id))
}

fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    s.trim_end_matches('-').to_owned()
}

fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn v4_story(story: &Story, title: &str) -> String {
    format!(
        "# Story {id}: {title}\n\n## Status\n\nDraft\n\n## Story\n\n**As a** user,\n**I want** {title_l},\n**so that** the product moves forward.\n\n\
## Acceptance Criteria\n\n1. {title} works as described in the epic.\n2. Automated tests cover the new behaviour.\n3. Existing tests still pass.\n\n\
## Tasks / Subtasks\n\n- [ ] Implement {title} (AC: 1)\n  - [ ] Write the code\n  - [ ] Handle errors\n- [ ] Add tests (AC: 2, 3)\n\n\
## Dev Notes\n\nDrafted by fake-claude (SM) from the epic.\n\n### Testing\n\nRun the project's test suite.\n\n\
## Change Log\n\n| Date | Version | Description | Author |\n| --- | --- | --- | --- |\n| {date} | 0.1 | Initial draft | Bob (SM) |\n\n\
## Dev Agent Record\n\n### Agent Model Used\n\n### Debug Log References\n\n### Completion Notes List\n\n### File List\n\n## QA Results\n",
        id = story.id,
        title_l = title.to_lowercase(),
        date = today(),
    )
}

fn v6_story(story: &Story, title: &str) -> String {
    format!(
        "# Story {id}: {title}\n\nStatus: ready-for-dev\n\n## Story\n\nAs a user,\nI want {title_l},\nso that the product moves forward.\n\n\
## Acceptance Criteria\n\n1. {title} works as described in the epic.\n2. Automated tests cover the new behaviour.\n\n\
## Tasks / Subtasks\n\n- [ ] Implement {title} (AC: #1)\n  - [ ] Write the code\n- [ ] Add tests (AC: #2)\n\n\
## Dev Notes\n\n- Drafted by fake-claude (SM) from the epics.\n\n### Project Structure Notes\n\n### References\n\n\
## Dev Agent Record\n\n### Agent Model Used\n\nclaude-opus-5-5\n\n### Debug Log References\n\n### Completion Notes List\n\n### File List\n",
        id = story.id,
        title_l = title.to_lowercase(),
    )
}

/// Whether `path` is a BMAD 6.11+ build spec (`spec-*.md`).
fn is_spec(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("spec-") && n.ends_with(".md"))
}

/// A new `bmad-build` spec (the 6.12 template's shape), `status: 'in-progress'` until the build
/// sets its end state.
fn spec(title: &str) -> String {
    format!(
        "---\ntitle: '{t}'\ntype: 'feature'\ncreated: '{date}'\nstatus: 'in-progress'\nroute: 'plan-code-review'\n\
review_loop_iteration: 0\ncontext: []\nbaseline_commit: NO_VCS\n---\n\n\
<frozen-after-approval reason=\"human-owned intent\">\n\n## Intent\n\n**Problem:** {title} is missing.\n\n\
**Approach:** Build it as the epic describes.\n\n</frozen-after-approval>\n\n## Tasks & Acceptance\n\n\
**Execution:**\n- [ ] `src/lib.rs` -- implement {title}\n\n## Spec Change Log\n\n## Verification\n\n\
**Commands:**\n- `make test` -- expected: exit 0\n\n### Completion Notes List\n",
        t = title.replace('\'', "''"),
        date = today(),
    )
}

/// Replaces the value of the v4 `## Status` section or the v6 `Status:` line, nothing else.
fn set_status(text: &str, layout: Layout, value: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    match layout {
        Layout::V4 => {
            if let Some(h) = lines.iter().position(|l| l.trim() == "## Status")
                && let Some(v) = (h + 1..lines.len()).find(|&i| !lines[i].trim().is_empty())
                && !lines[v].trim_start().starts_with('#')
            {
                let indent: String = lines[v].chars().take_while(|c| c.is_whitespace()).collect();
                lines[v] = format!("{indent}{value}");
            }
        }
        Layout::V6 => {
            if let Some(l) = lines.iter_mut().find(|l| l.starts_with("Status:")) {
                *l = format!("Status: {value}");
            } else if lines.first().is_some_and(|l| l.trim() == "---")
                && let Some(end) = (1..lines.len()).find(|&i| lines[i].trim() == "---")
                && let Some(l) = lines[1..end].iter_mut().find(|l| l.starts_with("status:"))
            {
                // A 6.12 spec: `status:` in the YAML frontmatter.
                *l = format!("status: {value}");
            }
        }
    }
    lines.join("\n")
}

/// Inserts `line` after the heading `heading` (and its blank line), or appends a section.
fn add_under(text: &str, heading: &str, line: &str) -> String {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    match lines.iter().position(|l| l.trim() == heading) {
        Some(h) => {
            let mut at = h + 1;
            if lines.get(at).is_some_and(|l| l.trim().is_empty()) {
                at += 1;
            }
            lines.insert(at, line.to_owned());
            if lines
                .get(at + 1)
                .is_some_and(|l| l.trim_start().starts_with('#'))
            {
                lines.insert(at + 1, String::new());
            }
            lines.join("\n")
        }
        None => format!("{}\n\n{heading}\n\n{line}\n", text.trim_end()),
    }
}

/// Replaces the body of the `## QA Results` section (or appends the section).
fn set_qa_results(text: &str, body: &str) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(h) = lines.iter().position(|l| l.trim() == "## QA Results") else {
        return format!("{}\n\n## QA Results\n\n{body}\n", text.trim_end());
    };
    let end = (h + 1..lines.len())
        .find(|&i| lines[i].starts_with("## "))
        .unwrap_or(lines.len());
    let mut out: Vec<String> = lines[..=h].iter().map(|s| (*s).to_owned()).collect();
    out.push(String::new());
    out.push(body.trim_end().to_owned());
    out.push(String::new());
    out.extend(lines[end..].iter().map(|s| (*s).to_owned()));
    let mut s = out.join("\n");
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

/// The v6 `sprint-status.yaml` with the story's entry set to `value`, if the file and entry exist.
fn sprint_status_edit(root: &Path, story: &Story, value: &str) -> Option<FileEdit> {
    let mut files = Vec::new();
    md_files(&root.join("_bmad-output"), 4, &mut files);
    md_files(&root.join("docs"), 4, &mut files);
    let path = files
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "sprint-status.yaml"))?;
    let text = fs::read_to_string(&path).ok()?;
    let key = format!("{}-{}-", story.epic, story.num);
    let mut changed = false;
    let lines: Vec<String> = text
        .split('\n')
        .map(|l| {
            let t = l.trim_start();
            if !changed && t.starts_with(&key) && t.contains(':') {
                changed = true;
                let indent = &l[..l.len() - t.len()];
                let k = t.split(':').next().unwrap_or(t);
                format!("{indent}{k}: {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    changed.then(|| FileEdit {
        old: Some(text),
        content: lines.join("\n"),
        path,
    })
}

/// The agent's own sprint-status edits (`sprint_set`, `sprint_reorder`), made over the role
/// play's: merged into its sprint-status edit, or a new one.
fn agent_sprint_edits(root: &Path, b: &Behaviour, edits: &mut Vec<FileEdit>) {
    let mut files = Vec::new();
    md_files(&root.join("_bmad-output"), 4, &mut files);
    md_files(&root.join("docs"), 4, &mut files);
    let Some(path) = files
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "sprint-status.yaml"))
    else {
        return;
    };
    let at = edits.iter().position(|e| e.path == path);
    let text = match at {
        Some(i) => edits[i].content.clone(),
        None => match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    for (target, value) in &b.sprint_set {
        // `1.2` names story 1.2's key (`1-2-...`); anything else is a key as written.
        let prefix = target.split_once('.').map(|(e, n)| format!("{e}-{n}-"));
        for l in &mut lines {
            let t = l.trim_start();
            let k = t.split(':').next().unwrap_or("");
            let hit = match &prefix {
                Some(p) => k.starts_with(p.as_str()),
                None => k == target,
            };
            if hit && t.contains(':') && l.starts_with(' ') {
                let indent = &l[..l.len() - t.len()];
                *l = format!("{indent}{k}: {value}");
            }
        }
    }
    if b.sprint_reorder
        && let Some(h) = lines
            .iter()
            .position(|l| l.starts_with("development_status:"))
    {
        let mut end = (h + 1..lines.len())
            .find(|&i| !lines[i].starts_with(' ') && !lines[i].trim().is_empty())
            .unwrap_or(lines.len());
        // Blank lines after the block (the final newline) stay where they are.
        while end > h + 1 && lines[end - 1].trim().is_empty() {
            end -= 1;
        }
        let mut block: Vec<String> = lines[h + 1..end]
            .iter()
            .filter(|l| !l.trim().is_empty())
            .cloned()
            .collect();
        block.reverse();
        block.insert(0, "  # reordered by the agent".to_owned());
        lines.splice(h + 1..end, block);
    }
    let content = lines.join("\n");
    match at {
        Some(i) => edits[i].content = content,
        None => edits.push(FileEdit {
            old: Some(text),
            content,
            path,
        }),
    }
}

fn qa_location(root: &Path) -> PathBuf {
    let config = fs::read_to_string(root.join(".bmad-core/core-config.yaml")).unwrap_or_default();
    let loc = config
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("qaLocation:")
                .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "docs/qa".into());
    root.join(loc)
}

fn gate_yaml(
    story: &Story,
    title: &str,
    verdict: &str,
    history: &[String],
    findings: Option<&[String]>,
) -> String {
    let now = format!("{}T00:00:00Z", today());
    let (reason, issues) = match verdict {
        "PASS" => ("All acceptance criteria met; tests pass.", String::from("top_issues: []\n")),
        _ if findings.is_some() => {
            let mut issues = String::from("top_issues:\n");
            for (i, f) in findings.unwrap_or_default().iter().enumerate() {
                issues.push_str(&format!(
                    "  - id: \"TEST-{:03}\"\n    severity: high\n    finding: \"{}\"\n",
                    i + 1,
                    f.replace('"', "'")
                ));
            }
            ("Scripted findings.", issues)
        }
        "CONCERNS" => (
            "Non-blocking issues found.",
            "top_issues:\n  - id: \"MNT-001\"\n    severity: medium\n    finding: \"Error handling is thin\"\n    suggested_action: \"Add tests for the error paths\"\n".to_owned(),
        ),
        _ => (
            "Acceptance criteria not met.",
            "top_issues:\n  - id: \"TEST-001\"\n    severity: high\n    finding: \"Acceptance criterion 2 has no test\"\n    suggested_action: \"Add the missing tests\"\n".to_owned(),
        ),
    };
    let mut hist = String::from("history:\n");
    for h in history {
        hist.push_str(h);
        hist.push('\n');
    }
    hist.push_str(&format!(
        "  - at: \"{now}\"\n    gate: {verdict}\n    note: \"Review by fake-claude\"\n"
    ));
    format!(
        "schema: 1\nstory: '{id}'\nstory_title: '{title}'\ngate: {verdict}\nstatus_reason: '{reason}'\nreviewer: 'Quinn (Test Architect)'\nupdated: '{now}'\n\n{issues}\nwaiver: {{ active: false }}\n\n{hist}",
        id = story.id,
        title = title.replace('\'', "''"),
    )
}

/// The v6 review items of a FAIL: the scripted findings, else the fixed one.
fn review_items(scripted: Option<&[String]>, tag: &str) -> Vec<String> {
    match scripted {
        Some(findings) => findings
            .iter()
            .map(|f| format!("- [ ] {tag} {f}"))
            .collect(),
        None => vec![format!(
            "- [ ] {tag} Add the missing tests for acceptance criterion 2"
        )],
    }
}

/// Previous `history:` entries of a gate file (the lines under the key).
fn gate_history(text: &str) -> Vec<String> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with("history:"));
    lines.next();
    lines
        .take_while(|l| l.starts_with(' ') || l.is_empty())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn plan_edits(
    role: &str,
    root: &Path,
    b: &Behaviour,
    occurrence: u32,
) -> Result<(Vec<FileEdit>, String)> {
    let story = story_from_env()?;
    let layout = if root.join("_bmad").is_dir() {
        Layout::V6
    } else {
        Layout::V4
    };
    let existing = fs::read_to_string(&story.path).ok();
    let mut edits = Vec::new();
    let summary;
    match role {
        "sm" => {
            if existing.is_some() {
                return Ok((
                    edits,
                    format!(
                        "Story {} already exists at {}; nothing to draft.",
                        story.id,
                        story.path.display()
                    ),
                ));
            }
            let title =
                title_from_epics(root, &story).unwrap_or_else(|| format!("Story {}", story.id));
            let content = match layout {
                Layout::V4 => v4_story(&story, &title),
                Layout::V6 => v6_story(&story, &title),
            };
            edits.push(FileEdit {
                path: story.path.clone(),
                content,
                old: None,
            });
            if layout == Layout::V6 {
                edits.extend(sprint_status_edit(root, &story, "ready-for-dev"));
            }
            summary = format!("Drafted story {}: {title}.", story.id);
        }
        "dev" => {
            let is_spec = layout == Layout::V6 && is_spec(&story.path);
            let Some(text) = existing.or_else(|| {
                is_spec.then(|| {
                    let title = title_from_epics(root, &story)
                        .unwrap_or_else(|| format!("Story {}", story.id));
                    spec(&title)
                })
            }) else {
                return Ok((edits, format!("No story file at {}.", story.path.display())));
            };
            let created = !story.path.exists();
            let checked = text.replace("- [ ]", "- [x]");
            let cycle = std::env::var("BMAD_HOST_CYCLE").unwrap_or_else(|_| "1".into());
            let noted = add_under(
                &checked,
                "### Completion Notes List",
                &format!("- Implemented every task (fake-claude dev, cycle {cycle})."),
            );
            let value = match &b.set_status {
                Some(v) => v.as_str(),
                None if layout == Layout::V4 => "Ready for Review",
                // bmad-build finishes its spec as `done` (and sprint-status as `review`).
                None if is_spec => "done",
                None => "review",
            };
            let content = set_status(&noted, layout, value);
            edits.push(FileEdit {
                path: story.path.clone(),
                content,
                old: (!created).then_some(text),
            });
            if layout == Layout::V6 && !(is_spec && b.no_sprint) {
                let sprint = match (&b.sprint_status, &b.set_status) {
                    (Some(v), _) => v.as_str(),
                    (None, _) if is_spec => "review",
                    (None, Some(v)) => v.as_str(),
                    (None, None) => "review",
                };
                edits.extend(sprint_status_edit(root, &story, sprint));
            }
            summary = format!("Implemented story {}; ready for review.", story.id);
        }
        "qa" => {
            let Some(text) = existing else {
                return Ok((edits, format!("No story file at {}.", story.path.display())));
            };
            let verdict = b
                .verdicts
                .get(occurrence.saturating_sub(1) as usize)
                .or(b.verdicts.last())
                .map_or("PASS".to_owned(), |v| v.to_ascii_uppercase());
            let scripted = b
                .findings
                .get(occurrence.saturating_sub(1) as usize)
                .or(b.findings.last())
                .map(Vec::as_slice);
            let title = title_from_story(&text, &story);
            let mut body = format!(
                "### Review Date: {}\n\n### Reviewed By: Quinn (Test Architect)\n\nGate: {verdict}",
                today()
            );
            let mut content = text.clone();
            match layout {
                Layout::V4 => {
                    let gate_slug = b.gate_slug.clone().unwrap_or_else(|| slug(&title));
                    let gate = qa_location(root)
                        .join("gates")
                        .join(format!("{}.{}-{gate_slug}.yml", story.epic, story.num,));
                    let old_gate = fs::read_to_string(&gate).ok();
                    let history = old_gate.as_deref().map(gate_history).unwrap_or_default();
                    body.push_str(&format!(
                        " → {}",
                        gate.strip_prefix(root).unwrap_or(&gate).display()
                    ));
                    content = set_qa_results(&content, &body);
                    edits.push(FileEdit {
                        path: story.path.clone(),
                        content,
                        old: Some(text),
                    });
                    edits.push(FileEdit {
                        content: gate_yaml(&story, &title, &verdict, &history, scripted),
                        path: gate,
                        old: old_gate,
                    });
                }
                Layout::V6 if is_spec(&story.path) => {
                    let status = if verdict == "FAIL" {
                        for item in review_items(scripted, "[Review][High]") {
                            content = add_under(&content, "### Review Findings", &item);
                        }
                        "in-progress"
                    } else {
                        "done"
                    };
                    content = set_status(&content, layout, status);
                    edits.push(FileEdit {
                        path: story.path.clone(),
                        content,
                        old: Some(text),
                    });
                    edits.extend(sprint_status_edit(root, &story, status));
                }
                Layout::V6 => {
                    let status = if verdict == "FAIL" {
                        for item in review_items(scripted, "[AI-Review][High]") {
                            content = add_under(&content, "## Tasks / Subtasks", &item);
                        }
                        "in-progress"
                    } else {
                        "done"
                    };
                    content = set_qa_results(&content, &body);
                    content = set_status(&content, layout, status);
                    edits.push(FileEdit {
                        path: story.path.clone(),
                        content,
                        old: Some(text),
                    });
                    edits.extend(sprint_status_edit(root, &story, status));
                }
            }
            summary = format!("Reviewed story {}. Gate: {verdict}.", story.id);
        }
        other => summary = format!("Nothing to do for role {other:?}."),
    }
    Ok((edits, summary))
}

fn play(role: &str, root: &Path, b: &Behaviour, occurrence: u32, max_turns: u32) -> Result<u8> {
    let (mut edits, summary) = plan_edits(role, root, b, occurrence)?;
    if !b.sprint_set.is_empty() || b.sprint_reorder {
        agent_sprint_edits(root, b, &mut edits);
    }
    for (rel, content) in &b.write_files {
        let path = root.join(rel);
        let old = fs::read_to_string(&path).ok();
        let content = match (&old, b.append) {
            (Some(old), true) => format!("{old}{content}"),
            _ => content.clone(),
        };
        edits.push(FileEdit { path, content, old });
    }
    emit_text(&format!("I'll work on this as the {role} agent."));
    for (i, edit) in edits.into_iter().enumerate() {
        if i as u32 >= max_turns {
            emit_error_result(
                "error_max_turns",
                &[&format!("Reached maximum number of turns ({max_turns})")],
                "max_turns",
            );
            return Ok(1);
        }
        let path = edit.path.display().to_string();
        let (tool, input) = match &edit.old {
            None => ("Write", json!({"file_path": path, "content": edit.content})),
            Some(old) => (
                "Edit",
                json!({"file_path": path, "old_string": old, "new_string": edit.content}),
            ),
        };
        let id = emit_tool_use(tool, input);
        if let Some(dir) = edit.path.parent() {
            fs::create_dir_all(dir)?;
        }
        write_whole(&edit.path, &edit.content).with_context(|| format!("writing {path}"))?;
        let text = match edit.old {
            None => format!("File created successfully at: {path}"),
            Some(_) => format!("The file {path} has been updated successfully."),
        };
        emit_tool_result(&id, &text, false);
    }
    emit_text(&summary);
    emit_success(b.result_text.as_deref().unwrap_or(&summary));
    if b.linger {
        wait_forever();
    }
    Ok(b.exit_code.unwrap_or(0))
}

/// Writes `content` to `path` whole (a temp file beside it, renamed over it). A host killed with
/// `kill -9` leaves its agent running; the tests that then read the project must see the fake's
/// files before or after an edit, never a truncated one they would blame on the host.
fn write_whole(path: &Path, content: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.fake-claude-tmp", std::process::id()));
    fs::write(&tmp, content)?;
    fs::rename(&tmp, path)
}

// ---------------------------------------------------------------------------------------------
// Misbehaviours

fn garbage(bytes: usize) {
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "this is not JSON");
        let _ = writeln!(out, "{{\"type\":\"assistant\",\"message\":{{\"content\":[");
        let _ = writeln!(out, "\u{1b}[31mred terminal noise\u{1b}[0m");
        let _ = out.write_all(b"\xff\xfe invalid utf-8 \xc3\x28\n");
        let _ = writeln!(out, "[1,2,3]");
        let _ = writeln!(
            out,
            "{{\"type\":\"mystery_line\",\"subtype\":\"new\",\"payload\":{{\"deep\":[1,{{\"x\":null}}]}}}}"
        );
        let _ = writeln!(out, "{{\"type\":\"result\",\"subtype\":{{\"odd\":true}}}}");
        let _ = out.flush();
    }
    eprintln!("warning: stderr noise from fake-claude");
    eprintln!("\u{1b}[33mmore noise\u{1b}[0m");
    let mut out = std::io::stdout().lock();
    let chunk = vec![b'x'; 64 * 1024];
    let _ = out.write_all(b"{\"type\":\"assistant\",\"huge\":\"");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len());
        if out.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let _ = out.write_all(b"\"}\n");
    let _ = out.flush();
}

fn close_output() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// What a call left behind on purpose before it logged itself.
struct Leftovers<'a> {
    /// The `setsid sleep` grandchild's pid (`grandchild: true`).
    grandchild: Option<u32>,
    /// The marker-less orphan (`orphan: true`).
    orphan: Option<&'a Value>,
}

fn log_call(
    log: &Path,
    args: &Args,
    role: &str,
    story: &str,
    occurrence: u32,
    action: &str,
    left: Leftovers<'_>,
) -> Result<()> {
    let Leftovers { grandchild, orphan } = left;
    let overlap = exclusive(story, role);
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("BMAD_HOST_") || k == "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"
        })
        .collect();
    let pid = nix::unistd::getpid();
    let line = json!({
        "pid": pid.as_raw(),
        "ppid": nix::unistd::getppid().as_raw(),
        "pgid": nix::unistd::getpgid(None).map(|p| p.as_raw()).unwrap_or(-1),
        "sid": nix::unistd::getsid(None).map(|p| p.as_raw()).unwrap_or(-1),
        "role": role, "story": story, "occurrence": occurrence, "do": action,
        "argv": std::env::args().collect::<Vec<_>>(),
        "env": env,
        "cwd": std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default(),
        "stdin": fs::read_link("/proc/self/fd/0").map(|p| p.display().to_string()).unwrap_or_default(),
        "grandchild": grandchild,
        "orphan": orphan,
        "overlap": overlap,
        "session_id": session(),
        "prompt": args.prompt,
        "append_system_prompt": args.append_system_prompt,
        "model": args.model,
        "allowed_tools": args.allowed_tools,
        "permission_mode": args.permission_mode,
        "dangerously_skip_permissions": args.dangerously_skip_permissions,
        "unknown_options": args.unknown_options,
    });
    let mut f = OpenOptions::new().create(true).append(true).open(log)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    Ok(())
}

/// `FAKE_CLAUDE_EXCLUSIVE`: takes this call's lock for the rest of its life; whether another
/// call held it (`None` without the variable).
fn exclusive(story: &str, role: &str) -> Option<bool> {
    let dir = std::env::var_os("FAKE_CLAUDE_EXCLUSIVE")?;
    let path = Path::new(&dir).join(format!("{story}-{role}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            // Held until this process ends, whichever way.
            std::mem::forget(lock);
            Some(false)
        }
        Err(_) => Some(true),
    }
}

fn run() -> Result<u8> {
    let _ = STARTED.set(Instant::now());
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(&argv);
    if args.output_format.as_deref() == Some("stream-json") && !args.verbose {
        eprintln!("Error: When using --print, --output-format=stream-json requires --verbose");
        return Ok(1);
    }
    let role = std::env::var("BMAD_HOST_ROLE").unwrap_or_default();
    let story = std::env::var("BMAD_HOST_STORY_ID").unwrap_or_default();
    let (b, occurrence) = choose_behaviour(&role, &story)?;
    let action = b.action.clone().unwrap_or_else(|| "play".into());
    let over_budget = args
        .max_budget_usd
        .filter(|budget| action == "play" && b.cost_usd.is_some_and(|c| c > *budget));
    if let Some(cost) = over_budget.or(b.cost_usd) {
        let _ = COST.set(cost);
    }
    if let Some(tokens) = b.tokens {
        let _ = TOKENS.set(tokens);
    }
    let grandchild = if b.grandchild {
        spawn_grandchild()
    } else {
        None
    };
    let orphan = if b.orphan { spawn_orphan() } else { None };
    setup_signals(b.ignore_signals)?;
    if let Some(log) = std::env::var_os("FAKE_CLAUDE_LOG") {
        log_call(
            Path::new(&log),
            &args,
            &role,
            &story,
            occurrence,
            &action,
            Leftovers {
                grandchild,
                orphan: orphan.as_ref(),
            },
        )?;
    }
    if let Some(fifo) = &b.wait_for {
        File::open(fifo).with_context(|| format!("opening {}", fifo.display()))?;
    }
    if let Some(fifo) = &b.held_by {
        // Read to its end: the writer keeps the call alive until it closes.
        let mut held = File::open(fifo).with_context(|| format!("opening {}", fifo.display()))?;
        std::io::copy(&mut held, &mut std::io::sink())?;
    }
    let cwd = std::env::current_dir()?;
    let max_turns = args.max_turns.unwrap_or(u32::MAX);
    let delay = b.delay_ms.unwrap_or(100);
    if action == "replay" {
        return replay(&b, &role, &cwd, occurrence, max_turns, &args);
    }
    emit_init(&args, &cwd);
    // As the real CLI: a call whose cost would pass `--max-budget-usd` stops on the budget,
    // having spent it.
    if let Some(budget) = over_budget {
        emit_text("Working on it.");
        emit_error_result(
            "error_max_budget_usd",
            &[&format!("Reached maximum budget (${budget})")],
            "budget_exhausted",
        );
        return Ok(1);
    }
    match action.as_str() {
        "play" => return play(&role, &cwd, &b, occurrence, max_turns),
        "hang" => wait_forever(),
        "hang_in_tool" => {
            emit_tool_use(
                "Bash",
                json!({"command": "sleep 3600", "description": "wait"}),
            );
            wait_forever()
        }
        "slow" => {
            for i in 0..b.lines.unwrap_or(5) {
                pause_ms(delay);
                emit_text(&format!("Still working ({i})."));
            }
        }
        "slow_tool" => {
            let id = emit_tool_use(
                "Bash",
                json!({"command": "make test", "description": "run the tests"}),
            );
            emit(
                json!({"type": "system", "subtype": "task_started", "task_id": "fake1", "tool_use_id": id, "description": "run the tests", "task_type": "local_bash"}),
            );
            pause_ms(delay);
            emit(
                json!({"type": "system", "subtype": "task_notification", "task_id": "fake1", "tool_use_id": id, "status": "completed"}),
            );
            emit_tool_result(&id, "ok", false);
        }
        "chatter" => loop {
            pause_ms(b.delay_ms.unwrap_or(20));
            emit_text("Thinking out loud.");
        },
        "garbage" => garbage(b.bytes.unwrap_or(50 * 1024 * 1024)),
        "no_result" => {
            emit_text("I'll stop here without a result.");
            return Ok(0);
        }
        "api_error" => {
            let status = b.status.unwrap_or(529);
            emit_api_error(
                status,
                &format!(
                    "API Error: {status} Overloaded. This is a server-side issue, usually temporary — try again in a moment."
                ),
            );
            return Ok(1);
        }
        "usage_limit" => {
            let reset = b.reset.clone().unwrap_or_else(|| "3pm (UTC)".into());
            emit_api_error(
                b.status.unwrap_or(429),
                &format!("You've hit your session limit · resets {reset}"),
            );
            return Ok(1);
        }
        "die" => {
            let _ = nix::sys::prctl::set_dumpable(false);
            let sig = signal_by_name(b.signal.as_deref().unwrap_or("KILL"));
            // Rust's runtime catches the first SIGSEGV/SIGBUS (its stack-overflow check), restores
            // the default action and returns; the second one kills.
            let _ = nix::sys::signal::raise(sig);
            let _ = nix::sys::signal::raise(sig);
            wait_forever()
        }
        "max_turns" | "max_budget" | "during_execution" => {
            let id = emit_tool_use(
                "Read",
                json!({"file_path": cwd.join("README.md").display().to_string()}),
            );
            emit_tool_result(&id, "(file content)", false);
            match action.as_str() {
                "max_turns" => emit_error_result(
                    "error_max_turns",
                    &[&format!(
                        "Reached maximum number of turns ({})",
                        args.max_turns.unwrap_or(1)
                    )],
                    "max_turns",
                ),
                "max_budget" => emit_error_result(
                    "error_max_budget_usd",
                    &["Reached maximum budget ($0.01)"],
                    "budget_exhausted",
                ),
                _ => emit_error_result(
                    "error_during_execution",
                    &["[ede_diagnostic] result_type=user"],
                    "aborted_tools",
                ),
            }
            return Ok(1);
        }
        "close_stdout" => {
            emit_text("Closing my output now.");
            close_output();
            wait_forever()
        }
        other => anyhow::bail!("unknown behaviour {other:?}"),
    }
    let text = b
        .result_text
        .clone()
        .unwrap_or_else(|| format!("Done ({action})."));
    emit_success(&text);
    if b.linger {
        wait_forever();
    }
    Ok(b.exit_code.unwrap_or(0))
}

/// `replay`: a captured stream, verbatim (or, with `play`, inside a played call).
fn replay(
    b: &Behaviour,
    role: &str,
    cwd: &Path,
    occurrence: u32,
    max_turns: u32,
    args: &Args,
) -> Result<u8> {
    let file = b.file.as_deref().context("`replay` needs a `file`")?;
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if b.play {
        emit_init(args, cwd);
    }
    let mut out = std::io::stdout().lock();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if b.play {
            let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
            let kind = (v["type"].as_str(), v["subtype"].as_str());
            if matches!(kind, (Some("system"), Some("init")) | (Some("result"), _)) {
                continue;
            }
        }
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    drop(out);
    if b.play {
        return play(role, cwd, b, occurrence, max_turns);
    }
    Ok(b.exit_code.unwrap_or(0))
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("fake-claude: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_like_the_real_cli() {
        let argv: Vec<String> = [
            "-p",
            "do it",
            "--output-format",
            "stream-json",
            "--verbose",
            "--max-turns",
            "3",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Read,Edit",
            "--unknown-flag",
            "--model",
            "opus",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let a = parse_args(&argv);
        assert_eq!(a.prompt.as_deref(), Some("do it"));
        assert!(a.verbose);
        assert_eq!(a.max_turns, Some(3));
        assert_eq!(a.allowed_tools, ["Read", "Edit"]);
        assert_eq!(a.model.as_deref(), Some("opus"));
        assert_eq!(a.unknown_options, ["--unknown-flag"]);
    }

    #[test]
    fn a_prompt_after_the_double_dash_is_never_an_option() {
        let parse =
            |args: &[&str]| parse_args(&args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        // Before `--`, a prompt that looks like an option is one.
        let a = parse(&["-p", "--dangerously-skip-permissions", "--verbose"]);
        assert!(a.dangerously_skip_permissions);
        assert_eq!(a.prompt, None);
        // After it, it is the prompt.
        let a = parse(&[
            "-p",
            "--allowedTools",
            "Read",
            "--",
            "--dangerously-skip-permissions",
        ]);
        assert!(!a.dangerously_skip_permissions);
        assert_eq!(a.allowed_tools, ["Read"]);
        assert_eq!(a.prompt.as_deref(), Some("--dangerously-skip-permissions"));
        // An option's value is taken whatever it starts with.
        let a = parse(&[
            "--append-system-prompt",
            "--dangerously-skip-permissions",
            "-p",
            "x",
        ]);
        assert!(!a.dangerously_skip_permissions);
        assert_eq!(
            a.append_system_prompt.as_deref(),
            Some("--dangerously-skip-permissions")
        );
        assert_eq!(a.prompt.as_deref(), Some("x"));
        // The variadic option swallows a prompt that follows it without `--`.
        let a = parse(&["-p", "--allowedTools", "Read", "do it"]);
        assert_eq!(a.prompt, None);
        assert_eq!(a.allowed_tools, ["Read", "do it"]);
    }

    #[test]
    fn status_edits_touch_only_the_value() {
        let v4 = "# Story 1.1: X\n\n## Status\n\nDraft\n\n## Story\n\nDraft this\n";
        assert_eq!(
            set_status(v4, Layout::V4, "Ready for Review"),
            "# Story 1.1: X\n\n## Status\n\nReady for Review\n\n## Story\n\nDraft this\n"
        );
        let v6 = "# Story 1.1: X\n\nStatus: ready-for-dev\n\n## Story\n";
        assert_eq!(
            set_status(v6, Layout::V6, "review"),
            "# Story 1.1: X\n\nStatus: review\n\n## Story\n"
        );
        assert_eq!(slug("Hello, World: the 2nd!"), "hello-world-the-2nd");
    }
}
