//! `cargo xtask new-plugin NAME --role ROLE`: a new plugin crate from the template.
//!
//! Creates `plugins/NAME/` with a `Cargo.toml` (crate `bmad-plugin-NAME`, a `cdylib` built with
//! wit-bindgen against `wit/policy.wit`), a `src/lib.rs` implementing the role's world with
//! sensible defaults, and a `plugin.toml`; then adds the crate to the workspace members. After
//! `cargo xtask build-plugins` the folder is a working plugin: select it with
//! `[roles] ROLE = "NAME"` in `bmad-host.toml` or `--policy ROLE=NAME`.

use std::path::Path;

use anyhow::{Context, Result, bail};

const ROLES: [&str; 4] = ["status", "sm", "dev", "qa"];

/// Creates `plugins/NAME` under the workspace `root` for `role`.
pub fn run(name: &str, role: &str, root: &Path) -> Result<()> {
    check_name(name)?;
    if !ROLES.contains(&role) {
        bail!("unknown role `{role}`: choose one of {}", ROLES.join(", "));
    }
    let wit = wit_version(root)?;
    let dir = root.join("plugins").join(name);
    if dir.exists() {
        bail!("{} already exists: choose another name", dir.display());
    }
    let manifest_path = root.join("Cargo.toml");
    let workspace = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let workspace = add_member(&workspace, &format!("plugins/{name}"))?;

    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |file: &str, text: String| -> Result<()> {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("Cargo.toml", cargo_toml(name, role))?;
    write("plugin.toml", plugin_toml(name, role, &wit))?;
    write("src/lib.rs", lib_rs(name, role))?;
    std::fs::write(&manifest_path, workspace)
        .with_context(|| format!("cannot write {}", manifest_path.display()))?;

    eprintln!(
        "created {} (crate bmad-plugin-{name}, role {role}, bmad:policy@{wit})",
        dir.display()
    );
    eprintln!("next:");
    eprintln!("  1. edit plugins/{name}/src/lib.rs");
    eprintln!("  2. cargo xtask build-plugins        (builds plugins/{name}/{name}.wasm)");
    eprintln!("  3. bmad-host plugins check --plugins plugins/");
    if role != "status" || name != "status" {
        eprintln!(
            "  4. use it: [roles] {role} = \"{name}\" in bmad-host.toml, or --policy {role}={name}"
        );
    }
    Ok(())
}

/// Plugin names: what `plugin.toml` accepts (lowercase letters, digits, `-`, `_`).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok {
        bail!(
            "`{name}` is not a valid plugin name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        );
    }
    Ok(())
}

/// The version of the `bmad:policy` package in `wit/policy.wit`.
fn wit_version(root: &Path) -> Result<String> {
    let path = root.join("wit").join("policy.wit");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("package bmad:policy@")?;
            Some(rest.trim_end_matches(';').trim().to_string())
        })
        .with_context(|| {
            format!(
                "{} has no `package bmad:policy@VERSION;` line",
                path.display()
            )
        })
}

/// Adds `member` to `[workspace] members` (before the closing bracket), keeping the rest of the
/// file byte for byte.
fn add_member(cargo_toml: &str, member: &str) -> Result<String> {
    let start = cargo_toml
        .find("members = [")
        .context("the workspace Cargo.toml has no `members = [` list")?;
    let close = cargo_toml[start..]
        .find(']')
        .map(|i| start + i)
        .context("the workspace `members` list is not closed")?;
    let list = &cargo_toml[start..close];
    if list.contains(&format!("\"{member}\"")) {
        bail!("`{member}` is already a workspace member");
    }
    let line_start = cargo_toml[..close].rfind('\n').map_or(close, |i| i + 1);
    let mut out = String::with_capacity(cargo_toml.len() + member.len() + 8);
    if cargo_toml[line_start..close].trim().is_empty() {
        // The bracket is on its own line: add an indented line before it.
        out.push_str(&cargo_toml[..line_start]);
        out.push_str(&format!("    \"{member}\",\n"));
        out.push_str(&cargo_toml[line_start..]);
    } else {
        // A one-line list: `members = ["a", "b"]`.
        let body = cargo_toml[start + "members = [".len()..close].trim_end();
        let sep = if body.is_empty() || body.ends_with(',') {
            ""
        } else {
            ", "
        };
        out.push_str(&cargo_toml[..start + "members = [".len()]);
        out.push_str(body);
        out.push_str(&format!("{sep}\"{member}\""));
        out.push_str(&cargo_toml[close..]);
    }
    Ok(out)
}

fn cargo_toml(name: &str, role: &str) -> String {
    format!(
        r#"[package]
name = "bmad-plugin-{name}"
description = "bmad-host {role} plugin `{name}`"
version.workspace = true
edition.workspace = true
publish.workspace = true

[lib]
crate-type = ["cdylib"]

[dependencies]
wit-bindgen.workspace = true

[lints]
workspace = true
"#
    )
}

fn plugin_toml(name: &str, role: &str, wit: &str) -> String {
    let what = if role == "status" {
        "status parser"
    } else {
        "policy"
    };
    format!(
        r#"name = "{name}"
version = "0.1.0"
role = "{role}"
wit = "{wit}"
component = "{name}.wasm"
description = "{name}: a {role} {what}"

[capabilities]
# Globs (relative to the project root) this plugin asks to read with `read-file`. The operator
# must also grant them in bmad-host.toml: [plugins.{name}] grant_read = ["docs/qa/**"]
read = []

# [limits]          # optional; may only lower the host's limits
# fuel = 50_000_000
# memory_mb = 32
# max_output_kb = 256
"#
    )
}

fn lib_rs(name: &str, role: &str) -> String {
    let header = format!(
        r#"//! `{name}`: a bmad-host {role} plugin, a WebAssembly component for `bmad:policy`.
//!
//! Build it with `cargo xtask build-plugins` (which writes `plugins/{name}/{name}.wasm`), check it
//! with `bmad-host plugins check --plugins plugins/`, and select it with `[roles] {role} = "{name}"`
//! in `bmad-host.toml` or `--policy {role}={name}`.
//!
//! The host gives a plugin facts and takes decisions; it has no clock, environment, network or
//! filesystem of its own. `host::log` writes to the host's log, and `host::read_file` reads a
//! project file if `plugin.toml` requests it and the operator grants it.
#![allow(unsafe_code)] // wit-bindgen's generated glue (exports, canonical ABI) is unsafe code.
"#
    );
    let body = match role {
        "status" => STATUS_TEMPLATE.to_string(),
        _ => POLICY_TEMPLATE
            .replace("{{prompt}}", prompt_for(role))
            .replace("{{end}}", end_for(role)),
    };
    format!("{header}\n{body}")
}

fn prompt_for(role: &str) -> &'static str {
    match role {
        "sm" => {
            "format!(\n            \"Draft story {} ({}) of epic {} from the epic file {}, and write it to {}.\",\n            story.id, story.title, story.epic, story.epic_path, story.path\n        )"
        }
        "dev" => {
            "if story.previous_findings.is_empty() {\n            format!(\"Implement story {} at {}, then set its status to Review.\", story.id, story.path)\n        } else {\n            format!(\n                \"Fix these review findings for story {} at {}, then set its status to Review:\\n- {}\",\n                story.id,\n                story.path,\n                story.previous_findings.join(\"\\n- \")\n            )\n        }"
        }
        _ => {
            "format!(\n            \"Review story {} at {}: check every acceptance criterion, write your findings in its QA Results section, and set its status to Done or back to InProgress.\",\n            story.id, story.path\n        )"
        }
    }
}

fn end_for(role: &str) -> &'static str {
    match role {
        // Dev: after a successful agent call run the quality gates; after the gates, complete
        // when they all passed, otherwise send the failures back.
        "dev" => {
            r#"let Some(outcome) = report.outcome else {
            let failed: Vec<String> = report
                .gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| format!("quality gate `{}` failed:\n{}", g.name, g.output_tail))
                .collect();
            return if failed.is_empty() { Decision::Complete } else { Decision::SendBack(failed) };
        };
        if outcome.kind != OutcomeKind::Success {
            return Decision::Fail(format!("agent call ended with {:?}: {}", outcome.kind, outcome.message));
        }
        Decision::RunGates"#
        }
        // QA: done when the reviewer set the story to done; changes requested when it went back.
        "qa" => {
            r#"if let Some(outcome) = &report.outcome
            && outcome.kind != OutcomeKind::Success
        {
            return Decision::Fail(format!("agent call ended with {:?}: {}", outcome.kind, outcome.message));
        }
        match state_of(&report.status) {
            Some(StoryState::Done) => Decision::Complete,
            Some(StoryState::InProgress | StoryState::ChangesRequested) => {
                Decision::SendBack(vec!["QA requested changes: see the story's QA Results".to_string()])
            }
            _ => Decision::Escalate("QA left the story neither done nor sent back".to_string()),
        }"#
        }
        // SM: done when the story file now exists with a status.
        _ => {
            r#"if let Some(outcome) = &report.outcome
            && outcome.kind != OutcomeKind::Success
        {
            return Decision::Fail(format!("agent call ended with {:?}: {}", outcome.kind, outcome.message));
        }
        match state_of(&report.status) {
            Some(_) => Decision::Complete,
            None => Decision::Fail("the story file has no readable status after drafting".to_string()),
        }"#
        }
    }
}

const POLICY_TEMPLATE: &str = r#"wit_bindgen::generate!({
    path: "../../wit",
    world: "agent-policy",
});

use bmad::policy::host::{self, Level};
#[allow(unused_imports)]
use bmad::policy::types::{AgentRequest, OutcomeKind, ParseOutcome, StoryState};

struct Plugin;

/// The state to act on: only a confidently parsed status counts.
#[allow(dead_code)]
fn state_of(status: &ParseOutcome) -> Option<StoryState> {
    match status {
        ParseOutcome::Found(value) => value.state,
        _ => None,
    }
}

impl Guest for Plugin {
    /// The step starts: ask the host to run the agent with this prompt.
    fn begin(story: Story, _document: String) -> Decision {
        host::log(Level::Info, &format!("story {}: cycle {}", story.id, story.cycle));
        let prompt = {{prompt}};
        Decision::InvokeAgent(AgentRequest {
            prompt,
            max_turns: None,
            allowed_tools: Vec::new(),
            model: None,
            append_system_prompt: None,
        })
    }

    /// Each line of the agent's stream: keep going (or return `Directive::Stop`).
    fn on_event(_story: Story, _event: AgentEvent) -> Directive {
        Directive::Continue
    }

    /// The agent call (or the gates) ended: decide what happens next.
    fn end(_story: Story, report: StepReport) -> Decision {
        {{end}}
    }
}

export!(Plugin);
"#;

const STATUS_TEMPLATE: &str = r###"wit_bindgen::generate!({
    path: "../../wit",
    world: "status-parser",
});

use bmad::policy::types::{MissingReason, StatusSource, StatusValue, StoryState};

struct Plugin;

/// Maps a written status onto a canonical state.
fn state_of(raw: &str) -> Option<StoryState> {
    Some(match raw.to_ascii_lowercase().as_str() {
        "backlog" => StoryState::Backlog,
        "draft" | "drafted" => StoryState::Drafted,
        "approved" | "ready-for-dev" => StoryState::ReadyForDev,
        "inprogress" | "in-progress" => StoryState::InProgress,
        "review" | "ready for review" => StoryState::Review,
        "changes-requested" => StoryState::ChangesRequested,
        "done" => StoryState::Done,
        "blocked" => StoryState::Blocked,
        _ => return None,
    })
}

impl Guest for Plugin {
    /// Reads the first `Status: VALUE` line (or the line after a `## Status` heading).
    fn parse(document: String) -> ParseOutcome {
        if document.trim().is_empty() {
            return ParseOutcome::Missing(MissingReason::EmptyFile);
        }
        let lines: Vec<&str> = document.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let (raw, at, source) = if let Some(v) = line.strip_prefix("Status:") {
                (v.trim(), i, StatusSource::Line)
            } else if line.trim() == "## Status" {
                match lines.iter().enumerate().skip(i + 1).find(|(_, l)| !l.trim().is_empty()) {
                    Some((j, l)) => (l.trim(), j, StatusSource::Section),
                    None => return ParseOutcome::Missing(MissingReason::EmptyValue(line_no(i))),
                }
            } else {
                continue;
            };
            if raw.is_empty() {
                return ParseOutcome::Missing(MissingReason::EmptyValue(line_no(at)));
            }
            let state = state_of(raw);
            let value = StatusValue { raw: raw.to_string(), line: line_no(at), source, state };
            return match state {
                Some(_) => ParseOutcome::Found(value),
                None => ParseOutcome::Doubtful(value),
            };
        }
        ParseOutcome::Missing(MissingReason::NoStatus)
    }
}

fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

export!(Plugin);
"###;

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal workspace: the real WIT and a members list.
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::create_dir_all(dir.path().join("wit")).expect("mkdir");
        std::fs::copy(
            repo.join("wit/policy.wit"),
            dir.path().join("wit/policy.wit"),
        )
        .expect("copy wit");
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\n    \"host\",\n    \"plugins/qa\",\n]\n\n[workspace.dependencies]\n",
        )
        .expect("write");
        dir
    }

    #[test]
    fn creates_the_crate_manifest_and_member() {
        let ws = workspace();
        for (name, role) in [
            ("team-qa", "qa"),
            ("my-dev", "dev"),
            ("drafts", "sm"),
            ("status2", "status"),
        ] {
            run(name, role, ws.path()).expect("created");
            let dir = ws.path().join("plugins").join(name);
            let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
            assert!(
                cargo.contains(&format!("name = \"bmad-plugin-{name}\"")),
                "{cargo}"
            );
            assert!(cargo.contains("crate-type = [\"cdylib\"]"));
            let manifest = std::fs::read_to_string(dir.join("plugin.toml")).expect("plugin.toml");
            assert!(
                manifest.contains(&format!("role = \"{role}\"")),
                "{manifest}"
            );
            assert!(manifest.contains("wit = \"0.1.0\""), "{manifest}");
            assert!(
                manifest.contains(&format!("component = \"{name}.wasm\"")),
                "{manifest}"
            );
            let parsed: toml::Table = toml::from_str(&manifest).expect("plugin.toml is TOML");
            assert_eq!(parsed.get("name").and_then(|v| v.as_str()), Some(name));
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
            let world = if role == "status" {
                "status-parser"
            } else {
                "agent-policy"
            };
            assert!(lib.contains(&format!("world: \"{world}\"")), "{lib}");
            assert!(!lib.contains("{{"), "unreplaced placeholder in {name}");
        }
        let members = std::fs::read_to_string(ws.path().join("Cargo.toml")).expect("read");
        assert!(
            members.contains("    \"plugins/qa\",\n    \"plugins/team-qa\",\n    \"plugins/my-dev\",\n    \"plugins/drafts\",\n    \"plugins/status2\",\n]"),
            "{members}"
        );
        let parsed: toml::Table = toml::from_str(&members).expect("still TOML");
        assert!(parsed.contains_key("workspace"));
    }

    #[test]
    fn refuses_bad_names_roles_and_existing_folders() {
        let ws = workspace();
        assert!(run("Team QA", "qa", ws.path()).is_err());
        assert!(
            run("x", "architect", ws.path())
                .expect_err("refused")
                .to_string()
                .contains("unknown role")
        );
        run("x", "qa", ws.path()).expect("first");
        assert!(
            run("x", "qa", ws.path())
                .expect_err("refused")
                .to_string()
                .contains("already exists")
        );
    }

    #[test]
    fn add_member_handles_one_line_lists() {
        let out =
            add_member("[workspace]\nmembers = [\"a\", \"b\"]\n", "plugins/c").expect("added");
        assert_eq!(
            out,
            "[workspace]\nmembers = [\"a\", \"b\", \"plugins/c\"]\n"
        );
        let out = add_member("[workspace]\nmembers = []\n", "plugins/c").expect("added");
        assert_eq!(out, "[workspace]\nmembers = [\"plugins/c\"]\n");
        assert!(add_member("[workspace]\nmembers = [\"plugins/c\"]\n", "plugins/c").is_err());
    }

    /// The generated crates compile to components, warning-free under the workspace's lints.
    /// They build in a scratch workspace with the real WIT, lockfile and target directory.
    #[test]
    fn generated_plugins_build_for_wasm32() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let ws = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(ws.path().join("wit")).expect("mkdir");
        std::fs::copy(
            repo.join("wit/policy.wit"),
            ws.path().join("wit/policy.wit"),
        )
        .expect("copy wit");
        std::fs::copy(repo.join("Cargo.lock"), ws.path().join("Cargo.lock")).expect("copy lock");
        let root: toml::Table =
            toml::from_str(&std::fs::read_to_string(repo.join("Cargo.toml")).expect("read"))
                .expect("workspace toml");
        let section = |key: &str| toml::to_string(&root["workspace"][key]).expect("section");
        let wasm_profile = toml::to_string(&root["profile"]["wasm"]).expect("profile");
        let lints_rust = toml::to_string(&root["workspace"]["lints"]["rust"]).expect("lints");
        let lints_clippy = toml::to_string(&root["workspace"]["lints"]["clippy"]).expect("lints");
        std::fs::write(
            ws.path().join("Cargo.toml"),
            format!(
                "[workspace]\nresolver = \"3\"\nmembers = [\n]\n\n[workspace.package]\n{}\n[workspace.dependencies]\nwit-bindgen = {}\n\n[workspace.lints.rust]\n{lints_rust}\n[workspace.lints.clippy]\n{lints_clippy}\n[profile.wasm]\n{wasm_profile}",
                section("package"),
                toml::Value::try_from(&root["workspace"]["dependencies"]["wit-bindgen"]).expect("dep"),
            ),
        )
        .expect("write");
        let roles = [
            ("p-status", "status"),
            ("p-sm", "sm"),
            ("p-dev", "dev"),
            ("p-qa", "qa"),
        ];
        for (name, role) in roles {
            run(name, role, ws.path()).expect("created");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo.join("target"), std::path::PathBuf::from);
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = std::process::Command::new(cargo)
            .current_dir(ws.path())
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "clippy",
                "--quiet",
                "--offline",
                "--target",
                "wasm32-wasip2",
                "--profile",
                "wasm",
                "--workspace",
                "--",
                "-D",
                "warnings",
            ])
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "generated plugins do not build:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
