//! Snapshots of the CLI surface (insta): `--help` of the top level and of every subcommand
//! (found in the help itself, so a new subcommand gets its snapshot without a new test), usage
//! errors (exit 2), and the messages for a bad `bmad-host.toml`. Each snapshot holds the
//! command, its exit code and its output, with the temp project's path shown as `[PROJECT]`,
//! the repository's as `[ROOT]` and the fake Claude's as `[FAKE_CLAUDE]`.
//!
//! When the CLI changes on purpose, rewrite the snapshots and review the diff:
//!
//! ```sh
//! INSTA_UPDATE=always cargo test -p bmad-host-tests --test integration -- cli_snapshots::
//! git diff tests/tests/integration/snapshots/
//! ```
//!
//! (`cargo insta test --accept -p bmad-host-tests --test integration` does the same where
//! cargo-insta is installed.) A snapshot left over from a command that no longer exists fails
//! `help_snapshots_are_those_of_existing_commands`: delete the file it names.

use std::path::Path;
use std::process::Output;

use bmad_host_tests::components::workspace_root;
use bmad_host_tests::harness::{self, Project, fake_claude, plugins};

/// `bmad-host ARGS` in the tests' hermetic environment, at a fixed terminal width and without
/// colours, shown as `$ bmad-host ARGS`, `exit: N`, then stdout and stderr; `project`'s path is
/// shown as `[PROJECT]`.
fn show(args: &[&str], project: Option<&Path>) -> String {
    let out = output(args);
    let mut text = format!(
        "{}\nexit: {}\n",
        std::iter::once("$ bmad-host")
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
        out.status
            .code()
            .map_or_else(|| format!("{}", out.status), |c| c.to_string())
    );
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !bytes.is_empty() {
            text.push_str(&format!("--- {name}\n{}", String::from_utf8_lossy(bytes)));
        }
    }
    redact(&text, project)
}

fn output(args: &[&str]) -> Output {
    harness::command()
        .args(args)
        .env("COLUMNS", "100")
        .env("LINES", "50")
        .env("NO_COLOR", "1")
        .env_remove("CLICOLOR_FORCE")
        .output()
        .expect("run bmad-host")
}

/// Replaces the paths that differ between machines and runs.
fn redact(text: &str, project: Option<&Path>) -> String {
    // The fake may live outside the repository (`CARGO_TARGET_DIR`): before `[ROOT]`.
    let fake = fake_claude();
    let mut text = text.replace(fake.to_str().expect("utf-8 path"), "[FAKE_CLAUDE]");
    if let Some(project) = project {
        if let Ok(canonical) = std::fs::canonicalize(project) {
            text = text.replace(canonical.to_str().expect("utf-8 path"), "[PROJECT]");
        }
        text = text.replace(project.to_str().expect("utf-8 path"), "[PROJECT]");
    }
    text.replace(workspace_root().to_str().expect("utf-8 path"), "[ROOT]")
}

/// The subcommands listed under `Commands:` in a help text, without `help`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's own line is indented by two spaces; a wrapped description by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command path (`[]`, `["run"]`, `["plugins", "list"]`, ...) with its `--help` output.
fn every_help() -> Vec<(Vec<String>, Output)> {
    let mut found = Vec::new();
    let mut queue = vec![Vec::<String>::new()];
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = output(&args);
        let help = String::from_utf8_lossy(&out.stdout).into_owned();
        for sub in subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        found.push((path, out));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

fn help_snapshot_name(path: &[String]) -> String {
    std::iter::once("help")
        .chain(path.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("-")
}

#[test]
fn help_of_every_command() {
    let helps = every_help();
    let names: Vec<String> = helps.iter().map(|(p, _)| p.join(" ")).collect();
    // The commands that exist today must be found: a help layout the parser misses must not
    // pass as "no subcommands".
    for expected in ["run", "status", "log", "plugins", "plugins list", "config"] {
        assert!(
            names.iter().any(|n| n == expected),
            "`{expected}` not found in the help: {names:?}"
        );
    }
    for (path, _) in &helps {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        insta::assert_snapshot!(help_snapshot_name(path), show(&args, None));
    }
}

#[test]
fn help_snapshots_are_those_of_existing_commands() {
    let expected: Vec<String> = every_help()
        .iter()
        .map(|(p, _)| format!("integration__cli_snapshots__{}.snap", help_snapshot_name(p)))
        .collect();
    let dir = workspace_root().join("tests/tests/integration/snapshots");
    let stale: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| {
                    f.starts_with("integration__cli_snapshots__help") && f.ends_with(".snap")
                })
                .filter(|f| !expected.contains(f))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        stale.is_empty(),
        "help snapshots of commands that no longer exist (delete them): {stale:?} in {}",
        dir.display()
    );
}

/// Usage errors clap finds: each exits 2 naming the problem.
#[test]
fn usage_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("no-command", &[]),
        ("unknown-command", &["launch"]),
        ("unknown-flag", &["run", "--epix", "1"]),
        ("missing-value", &["run", "--story"]),
        ("bad-duration", &["run", "--timeout", "soon"]),
        ("bad-number", &["status", "--epic", "one"]),
        ("bad-policy", &["run", "--policy", "boss=x"]),
        ("conflicting-flags", &["status", "--quiet", "--verbose"]),
        ("unknown-shell", &["completions", "tcsh"]),
    ];
    for (name, args) in cases {
        let shown = show(args, None);
        assert!(shown.contains("\nexit: 2\n"), "{shown}");
        insta::assert_snapshot!(format!("usage-{name}"), shown);
    }
}

/// Usage errors the host finds once it looks at the project: exit 2 naming the problem.
#[test]
fn usage_errors_about_the_project() {
    let plugins = plugins();
    let fake = fake_claude();
    let (plugins, fake) = (
        plugins.to_str().expect("utf-8 path"),
        fake.to_str().expect("utf-8 path"),
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let project = Project::fixture("v4-sample");
    let cases: &[(&str, &Path, &[&str])] = &[
        ("not-a-project", empty.path(), &["run", "--dry-run"]),
        ("unknown-story", project.path(), &["run", "--story", "9.9"]),
        (
            "unknown-plugin",
            project.path(),
            &["run", "--policy", "qa=nobody"],
        ),
    ];
    for (name, dir, args) in cases {
        let dir_arg = dir.to_str().expect("utf-8 path");
        let mut all = args.to_vec();
        all.extend([
            "--plugins",
            plugins,
            "--claude-bin",
            fake,
            "--project",
            dir_arg,
        ]);
        let shown = show(&all, Some(dir));
        assert!(shown.contains("\nexit: 2\n"), "{shown}");
        insta::assert_snapshot!(format!("project-{name}"), shown);
    }
}

/// A bad `bmad-host.toml`: each exits 2 naming the file, the key and what is wrong.
#[test]
fn bad_config_files() {
    let cases: &[(&str, &str)] = &[
        ("unknown-key", "[claude]\ntimout = \"1m\"\n"),
        ("unknown-table", "[cluade]\ntimeout = \"1m\"\n"),
        ("wrong-type", "[workflow]\nmax_cycles = \"three\"\n"),
        ("bad-duration", "[claude]\nidle_timeout = \"soon\"\n"),
        ("not-toml", "[claude\ntimeout = 1m\n"),
    ];
    for (name, toml) in cases {
        let project = Project::fixture("v4-sample");
        project.write("bmad-host.toml", toml);
        let dir = project.path().to_str().expect("utf-8 path");
        let shown = format!(
            "bmad-host.toml:\n{toml}\n{}",
            show(&["config", "--project", dir], Some(project.path()))
        );
        assert!(shown.contains("\nexit: 2\n"), "{shown}");
        insta::assert_snapshot!(format!("config-{name}"), shown);
    }
}
