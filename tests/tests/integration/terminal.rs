//! The progress display for people: drawn on stderr when it is a terminal (a PTY here), absent
//! when stderr is a pipe; and `config`, `completions` and `--help` for operators.

use std::io::Read;
use std::process::{Command, Stdio};

use bmad_host_tests::harness::{self, Project, Run};
use serde_json::json;

/// The progress line of an agent call (role and cycle of the story).
const PROGRESS: &str = "story 1.1 · dev · cycle 1";

fn slow_script(project: &Project) -> std::path::PathBuf {
    // A Dev call that takes a moment, so the display has something to draw. It does not play
    // the role, so the story then fails (exit 1): only the display matters here.
    project.script(&json!({
        "calls": [{ "role": "dev", "story": "1.1", "do": "slow", "lines": 6, "delay_ms": 150 }]
    }))
}

fn run_command(project: &Project, script: &std::path::Path) -> Command {
    let mut cmd = harness::run_command(project);
    cmd.args(["--story", "1.1"])
        .env("FAKE_CLAUDE_SCRIPT", script)
        .stdout(Stdio::null());
    cmd
}

#[test]
fn progress_is_drawn_on_a_terminal() {
    let project = Project::fixture("v4-sample");
    let script = slow_script(&project);
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut cmd = run_command(&project, &script);
    cmd.stderr(Stdio::from(pty.slave));
    let mut child = cmd.spawn().expect("spawn bmad-host");
    // Drop our copy of the slave (moved into the command and closed after spawn): the master
    // then reads until the child's last handle closes (EIO on Linux).
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    let mut screen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match master.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => screen.extend_from_slice(&buf[..n]),
        }
    }
    let status = child.wait().expect("wait");
    let screen = String::from_utf8_lossy(&screen);
    assert_eq!(status.code(), Some(1), "{screen}");
    assert!(
        screen.contains(PROGRESS),
        "no progress line on the terminal:\n{screen}"
    );
    assert!(
        screen.contains('\u{1b}'),
        "a terminal display redraws with escape codes"
    );
    assert!(screen.contains("story 1.1 failed"), "{screen}");
}

#[test]
fn nothing_is_drawn_on_a_pipe() {
    let project = Project::fixture("v4-sample");
    let script = slow_script(&project);
    let out = run_command(&project, &script)
        .stderr(Stdio::piped())
        .output()
        .expect("run bmad-host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains(PROGRESS), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape codes on a pipe: {stderr:?}"
    );
    // People still get the outcome lines and the summary.
    assert!(stderr.contains("story 1.1 failed"), "{stderr}");
}

#[test]
fn quiet_prints_nothing_but_errors() {
    let project = Project::fixture("v4-sample");
    let run = Run::project(&project, &["--story", "1.1", "-q"], &[]);
    assert_eq!(run.code(), 0);
    assert_eq!(run.stderr(), "");
}

#[test]
fn config_shows_each_value_and_where_it_came_from() {
    let project = Project::fixture("v4-sample");
    project.write(
        "bmad-host.toml",
        "[claude]\ntimeout = \"20m\"\nretries = 4\n[workflow]\nmax_cycles = 5\n[roles]\nqa = \"qa-strict\"\n",
    );
    let dir = project.path().to_str().expect("utf-8");
    let run = Run::bmad_host(
        &["config", "--json", "--project", dir, "--max-turns", "7"],
        &[("BMAD_HOST_CLAUDE_RETRIES", "1")],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let get = |key: &str| {
        run.events
            .iter()
            .find(|e| e["key"] == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    assert_eq!(get("claude.timeout")["value"], "20m");
    assert!(
        get("claude.timeout")["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("file ")
    );
    assert_eq!(get("claude.retries")["value"], "1");
    assert_eq!(
        get("claude.retries")["source"],
        "env BMAD_HOST_CLAUDE_RETRIES"
    );
    assert_eq!(get("claude.max_turns")["value"], "7");
    assert_eq!(get("claude.max_turns")["source"], "flag --max-turns");
    assert_eq!(get("claude.idle_timeout")["source"], "default");
    assert_eq!(get("workflow.max_cycles")["value"], "5");
    assert_eq!(get("roles.qa")["value"], "qa-strict");

    // Human form: one line per key with its source.
    let run = Run::bmad_host(&["config", "--project", dir], &[]);
    let text = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("claude.retries = 4") && l.contains("# file")),
        "{text}"
    );

    // Unknown keys are errors with a suggestion.
    project.write("bmad-host.toml", "[workflow]\nmax_cycle = 2\n");
    let run = Run::bmad_host(&["config", "--project", dir], &[]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("did you mean `workflow.max_cycles`"),
        "{}",
        run.stderr()
    );
}

#[test]
fn completions_and_help_with_examples() {
    let run = Run::bmad_host(&["completions", "bash"], &[]);
    assert_eq!(run.code(), 0);
    let script = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        script.contains("complete -F") && script.contains("bmad-host"),
        "{script}"
    );
    for sub in [
        vec!["run"],
        vec!["status"],
        vec!["log"],
        vec!["config"],
        vec!["completions"],
        vec!["plugins", "list"],
        vec!["plugins", "check"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let run = Run::bmad_host(&args, &[]);
        assert_eq!(run.code(), 0, "{sub:?}");
        let help = String::from_utf8_lossy(&run.output.stdout);
        assert!(
            help.contains("Example"),
            "{sub:?} --help has no example:\n{help}"
        );
    }
}
