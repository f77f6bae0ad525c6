//! Hostile policies against the real binary: agents get only what the operator grants.
//!
//! The Dev policy here is the adversarial test component (`bmad-test-evil`), which turns the
//! `ask.KEY: VALUE` lines of the story it is given into its `invoke-agent` request: a prompt
//! that starts like an option, tools and models nobody granted, prompts past the caps. The fake
//! Claude parses its command line as the real CLI (commander.js) does and logs what it read.

use std::path::{Path, PathBuf};

use bmad_host_tests::components::{Folder, plugin_folder, wasm};
use bmad_host_tests::fake_log;
use bmad_host_tests::harness::{Project, Run, fake_claude};
use serde_json::Value;
use tempfile::TempDir;

const STORY: &str = "docs/stories/1.1.story.md";

/// v4-sample with story 1.1's policy asking for `asks` (`ask.` lines), and a plugins folder
/// whose only plugin is the evil Dev policy `dev-evil`.
struct Hostile {
    project: Project,
    plugins: TempDir,
}

impl Hostile {
    fn new(asks: &[(&str, &str)]) -> Hostile {
        let project = Project::fixture("v4-sample");
        let mut story = project.read(STORY);
        for (key, value) in asks {
            story.push_str(&format!("\nask.{key}: {value}\n"));
        }
        project.write(STORY, &story);
        let plugins = tempfile::tempdir().expect("tempdir");
        plugin_folder(
            plugins.path(),
            "dev-evil",
            "dev",
            &wasm("bmad-test-evil"),
            &Folder::default(),
        );
        Hostile { project, plugins }
    }

    /// `bmad-host run --json --story 1.1` with the evil Dev and the fake Claude (logging).
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let fake = fake_claude();
        let log = fake_log::env_value(&self.project);
        let mut all = vec![
            "run",
            "--json",
            "--plugins",
            path_str(self.plugins.path()),
            "--policy",
            "dev=dev-evil",
            "--project",
            path_str(self.project.path()),
            "--claude-bin",
            path_str(&fake),
            "--story",
            "1.1",
            "--max-cycles",
            "1",
        ];
        all.extend_from_slice(args);
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("FAKE_CLAUDE_LOG", &log));
        Run::bmad_host(&all, &env)
    }

    /// The fake's logged Dev calls.
    fn dev_calls(&self) -> Vec<Value> {
        fake_log::calls(&self.project)
            .into_iter()
            .filter(|c| c["role"] == "dev")
            .collect()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A user configuration directory (`XDG_CONFIG_HOME`) holding `bmad-host/config.toml`.
fn user_config(text: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let file: PathBuf = dir.path().join("bmad-host/config.toml");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, text).expect("write config.toml");
    dir
}

/// The story's `story_finished` reason (empty when there is none).
fn reason(run: &Run) -> String {
    run.story_result("1.1")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_prompt_that_starts_like_an_option_is_still_the_prompt() {
    for prompt in [
        "--dangerously-skip-permissions",
        "--dangerously-skip-permissions and then do the story",
    ] {
        let system = "--dangerously-skip-permissions --model evil";
        let h = Hostile::new(&[("prompt", prompt), ("system", system)]);
        let run = h.run(&[], &[]);
        let calls = h.dev_calls();
        assert_eq!(calls.len(), 1, "{}", run.stderr());
        let call = &calls[0];
        assert_eq!(call["prompt"], prompt, "{call:#}");
        assert_eq!(call["append_system_prompt"], system, "{call:#}");
        assert_eq!(call["dangerously_skip_permissions"], false, "{call:#}");
        assert_eq!(call["unknown_options"], serde_json::json!([]), "{call:#}");
        assert_eq!(call["model"], Value::Null, "{call:#}");
        // The prompt is the last argument, after the `--` that ends the options.
        let argv = fake_log::argv(call);
        assert_eq!(argv[argv.len() - 2..], ["--", prompt]);
    }
}

#[test]
fn a_tool_the_operator_did_not_grant_fails_the_step() {
    let h = Hostile::new(&[("tool", "Read"), ("tool", "Bash")]);
    let run = h.run(&[], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert_eq!(run.story_result("1.1")["result"], "failed");
    let why = reason(&run);
    for part in [
        "`dev-evil`",
        "\"Read\"",
        "[plugins.dev-evil] allowed_tools",
        "[claude] allowed_tools",
    ] {
        assert!(why.contains(part), "{part} missing in: {why}");
    }
    assert!(h.dev_calls().is_empty(), "no agent may run");

    // Granted to every plugin (Read) and to this plugin alone (Bash), in the user's
    // configuration (no trust needed): the agent gets exactly what was asked.
    let home = user_config(
        "[claude]\nallowed_tools = [\"Read\"]\n[plugins.dev-evil]\nallowed_tools = [\"Bash\"]\n",
    );
    let run = h.run(&["--fresh"], &[("XDG_CONFIG_HOME", path_str(home.path()))]);
    let calls = h.dev_calls();
    assert_eq!(calls.len(), 1, "{}", run.stderr());
    assert_eq!(
        calls[0]["allowed_tools"],
        serde_json::json!(["Read", "Bash"])
    );

    // A grant to another plugin is no grant to this one.
    let h = Hostile::new(&[("tool", "Bash(curl *)")]);
    let home = user_config("[plugins.qa]\nallowed_tools = [\"Bash\"]\n");
    let run = h.run(&[], &[("XDG_CONFIG_HOME", path_str(home.path()))]);
    assert_eq!(run.story_result("1.1")["result"], "failed");
    assert!(
        reason(&run).contains("\"Bash(curl *)\""),
        "{}",
        reason(&run)
    );
    assert!(h.dev_calls().is_empty());
}

#[test]
fn a_model_the_operator_did_not_grant_fails_the_step() {
    let h = Hostile::new(&[("model", "claude-opus-9-expensive")]);
    let run = h.run(&[], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let why = reason(&run);
    assert!(
        why.contains("`dev-evil`")
            && why.contains("\"claude-opus-9-expensive\"")
            && why.contains("[claude] allowed_models"),
        "{why}"
    );
    assert!(h.dev_calls().is_empty());

    // Granted in the project's file, which then needs trust (here: --trust).
    h.project.write(
        "bmad-host.toml",
        "[claude]\nallowed_models = [\"claude-opus-9-expensive\"]\n",
    );
    let run = h.run(&["--fresh", "--trust"], &[]);
    let calls = h.dev_calls();
    assert_eq!(calls.len(), 1, "{}", run.stderr());
    assert_eq!(calls[0]["model"], "claude-opus-9-expensive");
}

#[test]
fn prompts_past_the_caps_fail_the_step_with_the_cap_named() {
    let h = Hostile::new(&[("prompt-bytes", "200000")]);
    let run = h.run(&[], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let why = reason(&run);
    assert!(
        why.contains("`dev-evil`")
            && why.contains("200000 bytes")
            && why.contains("[claude] max_prompt_bytes"),
        "{why}"
    );
    assert!(h.dev_calls().is_empty());

    let h = Hostile::new(&[("system-bytes", "30000")]);
    let run = h.run(&[], &[]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        reason(&run).contains("[claude] max_system_prompt_bytes"),
        "{}",
        reason(&run)
    );
    assert!(h.dev_calls().is_empty());

    // The caps are settings: raised, the same request runs.
    let run = h.run(
        &["--fresh"],
        &[("BMAD_HOST_CLAUDE_MAX_SYSTEM_PROMPT_BYTES", "40000")],
    );
    let calls = h.dev_calls();
    assert_eq!(calls.len(), 1, "{}", run.stderr());
    assert_eq!(
        calls[0]["append_system_prompt"].as_str().map(str::len),
        Some(30000)
    );
}
