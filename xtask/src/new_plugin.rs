//! `cargo xtask new-plugin NAME --role ROLE [--path DIR]`: a new plugin crate from the template.
//!
//! The crate depends on the policy SDK (`bmad-policy`, in `sdk/`) and nothing else: a type
//! implementing `bmad_policy::Policy` (or `StatusParser` for the `status` role, `Scheduler` for
//! the `scheduler` role of `bmad:policy@0.2.0`) with sensible defaults for the role, exported
//! with `export_policy!` (`export_status_parser!`, `export_scheduler!`), a unit test of its
//! decisions on the host target, and a `plugin.toml` for the SDK's WIT version.
//!
//! - Without `--path`: `plugins/NAME/` in this workspace (crate `bmad-plugin-NAME`,
//!   `bmad-policy.workspace = true`, the workspace's lints), added to the workspace members.
//!   `cargo xtask build-plugins` then builds it into its folder.
//! - With `--path DIR`: a standalone crate in DIR, anywhere, for a team's own repository:
//!   `bmad-policy = { path = "<this checkout>/sdk" }` (or `--git URL`: `{ git = "URL" }`), its own
//!   `[profile.release]` for small components. `cargo build --release --target wasm32-wasip2`
//!   builds it; the `.wasm` goes next to its `plugin.toml`.
//!
//! Either way, select it with `[roles] ROLE = "NAME"` in `bmad-host.toml` or
//! `--policy ROLE=NAME`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const ROLES: [&str; 5] = ["status", "sm", "dev", "qa", "scheduler"];

/// Where the new crate goes and how it finds the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// `plugins/NAME` of the workspace at this root, a member of it.
    Workspace(PathBuf),
    /// A standalone crate in this folder.
    Standalone { dir: PathBuf, sdk: Sdk },
}

/// How a standalone crate depends on `bmad-policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// `{ path = "..." }`: the SDK folder of a checkout.
    Path(PathBuf),
    /// `{ git = "..." }`: the bmad-host repository.
    Git(String),
}

/// The parsed `new-plugin` arguments (after the command name).
pub fn parse_args(args: &[String], root: &Path) -> Result<(String, String, Dest)> {
    let name = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .context("new-plugin needs a NAME")?;
    let value = |flag: &str| -> Result<Option<&String>> {
        match args.iter().position(|a| a == flag) {
            Some(i) => args
                .get(i + 1)
                .map(Some)
                .with_context(|| format!("{flag} needs a value")),
            None => Ok(None),
        }
    };
    let role = value("--role")?
        .context("new-plugin needs --role status|sm|dev|qa|scheduler")?
        .clone();
    let dest = match (value("--path")?, value("--git")?) {
        (None, None) => Dest::Workspace(root.to_path_buf()),
        (None, Some(_)) => bail!("--git goes with --path DIR (a crate outside this workspace)"),
        (Some(dir), git) => {
            let dir = std::path::absolute(dir)
                .with_context(|| format!("cannot make {dir} an absolute path"))?;
            let sdk = match git {
                Some(url) => Sdk::Git(url.clone()),
                None => Sdk::Path(root.join("sdk")),
            };
            Dest::Standalone { dir, sdk }
        }
    };
    Ok((name.clone(), role, dest))
}

/// Creates the plugin crate; returns its folder.
pub fn create(name: &str, role: &str, dest: &Dest) -> Result<PathBuf> {
    check_name(name)?;
    if !ROLES.contains(&role) {
        bail!("unknown role `{role}`: choose one of {}", ROLES.join(", "));
    }
    let wit = bmad_policy_wit_version(dest)?;
    let (dir, standalone) = match dest {
        Dest::Workspace(root) => (root.join("plugins").join(name), None),
        Dest::Standalone { dir, sdk } => (dir.clone(), Some(sdk)),
    };
    let occupied = match std::fs::read_dir(&dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => dir.exists(),
    };
    if occupied {
        bail!("{} already exists: choose another name", dir.display());
    }
    // The workspace's member list, updated before anything is written so that a refusal
    // leaves no half-made crate behind.
    let workspace = match dest {
        Dest::Workspace(root) => {
            let path = root.join("Cargo.toml");
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            Some((path, add_member(&text, &format!("plugins/{name}"))?))
        }
        Dest::Standalone { .. } => None,
    };

    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |file: &str, text: String| -> Result<()> {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let cargo = match standalone {
        None => workspace_cargo_toml(name, role),
        Some(sdk) => standalone_cargo_toml(name, role, sdk),
    };
    write("Cargo.toml", cargo)?;
    write("plugin.toml", plugin_toml(name, role, &wit))?;
    write("src/lib.rs", lib_rs(name, role, standalone.is_some()))?;
    if standalone.is_some() {
        write(".gitignore", "/target\n*.wasm\n".to_string())?;
    }
    if let Some((path, text)) = workspace {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// `cargo xtask new-plugin`: creates the crate and says what to do next.
pub fn run(args: &[String], root: &Path) -> Result<()> {
    let (name, role, dest) = parse_args(args, root)?;
    let dir = create(&name, &role, &dest)?;
    eprintln!(
        "created {} (crate bmad-plugin-{name}, role {role}, bmad:policy@{})",
        dir.display(),
        bmad_policy_wit_version(&dest)?
    );
    eprintln!("next:");
    eprintln!("  1. edit {}", dir.join("src/lib.rs").display());
    match dest {
        Dest::Workspace(_) => {
            eprintln!("  2. cargo xtask build-plugins        (builds plugins/{name}/{name}.wasm)");
            eprintln!("  3. bmad-host plugins check --plugins plugins/");
        }
        Dest::Standalone { .. } => {
            eprintln!(
                "  2. cargo test && cargo build --release --target wasm32-wasip2   (in {})",
                dir.display()
            );
            eprintln!(
                "  3. cp target/wasm32-wasip2/release/{} {name}.wasm",
                wasm_file(&name)
            );
            eprintln!(
                "  4. bmad-host plugins check --plugins {}",
                dir.parent().unwrap_or(&dir).display()
            );
        }
    }
    eprintln!(
        "  then use it: [roles] {role} = \"{name}\" in bmad-host.toml, or --policy {role}={name}"
    );
    Ok(())
}

/// The file name cargo gives the plugin's component.
pub fn wasm_file(name: &str) -> String {
    format!("bmad_plugin_{}.wasm", name.replace('-', "_"))
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

/// The version of the `bmad:policy` package the plugin is built against: the one in the SDK's
/// `wit/policy.wit` (for a git dependency, this checkout's).
fn bmad_policy_wit_version(dest: &Dest) -> Result<String> {
    let sdk = match dest {
        Dest::Workspace(root) => root.join("sdk"),
        Dest::Standalone {
            sdk: Sdk::Path(sdk),
            ..
        } => sdk.clone(),
        Dest::Standalone {
            sdk: Sdk::Git(_), ..
        } => Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk"),
    };
    wit_version(&sdk.join("wit").join("policy.wit"))
}

/// The version of the `bmad:policy` package in this WIT file.
fn wit_version(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
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

fn workspace_cargo_toml(name: &str, role: &str) -> String {
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
bmad-policy.workspace = true

[lints]
workspace = true
"#
    )
}

fn standalone_cargo_toml(name: &str, role: &str, sdk: &Sdk) -> String {
    let dependency = match sdk {
        Sdk::Path(path) => format!(
            "{{ path = {} }}",
            toml::Value::String(path.display().to_string())
        ),
        Sdk::Git(url) => format!("{{ git = {} }}", toml::Value::String(url.clone())),
    };
    format!(
        r#"[package]
name = "bmad-plugin-{name}"
description = "bmad-host {role} plugin `{name}`"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
# The bmad-host policy SDK: the bmad:policy WIT, its types, export_policy! and
# export_status_parser!. From a checkout of bmad-host (`{{ path = "…/bmad-host/sdk" }}`) or
# straight from its repository (`{{ git = "<bmad-host repository URL>" }}`, optionally with a
# `tag` or `rev`). Nothing else is needed.
bmad-policy = {dependency}

[lints.rust]
unsafe_code = "deny"

# `cargo build --release --target wasm32-wasip2`: a small component.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
"#
    )
}

fn plugin_toml(name: &str, role: &str, wit: &str) -> String {
    let what = match role {
        "status" => "status parser",
        "scheduler" => "scheduler (which stories of a parallel run start)",
        _ => "policy",
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

fn lib_rs(name: &str, role: &str, standalone: bool) -> String {
    let build = if standalone {
        format!(
            "Build it with `cargo build --release --target wasm32-wasip2` and copy\n\
             //! `target/wasm32-wasip2/release/{wasm}` to `{name}.wasm` next to `plugin.toml`; check it\n\
             //! with `bmad-host plugins check --plugins DIR` (DIR: the folder holding this plugin's folder),",
            wasm = wasm_file(name)
        )
    } else {
        format!(
            "Build it with `cargo xtask build-plugins` (which writes `plugins/{name}/{name}.wasm`), check it\n\
             //! with `bmad-host plugins check --plugins plugins/`,"
        )
    };
    let header = format!(
        r#"//! `{name}`: a bmad-host {role} plugin, a WebAssembly component for `bmad:policy`.
//!
//! {build}
//! and select it with `[roles] {role} = "{name}"` in `bmad-host.toml` or `--policy {role}={name}`.
//! `cargo test` runs the unit tests of its decisions on the host target.
//!
//! The host gives a plugin facts and takes decisions; it has no clock, environment, network or
//! filesystem of its own. `host::log` writes to the host's log, and `host::read_file` reads a
//! project file if `plugin.toml` requests it and the operator grants it.
"#
    );
    let body = match role {
        "status" => STATUS_TEMPLATE.to_string(),
        "scheduler" => SCHEDULER_TEMPLATE.to_string(),
        _ => POLICY_TEMPLATE
            .replace("{{name}}", name)
            .replace("{{types}}", types_for(role))
            .replace("{{prompt}}", prompt_for(role))
            .replace("{{end}}", end_for(role)),
    };
    format!("{header}\n{body}")
}

fn types_for(role: &str) -> &'static str {
    match role {
        "qa" => "AgentRequest, Decision, OutcomeKind, StepReport, Story, StoryState",
        _ => "AgentRequest, Decision, OutcomeKind, StepReport, Story",
    }
}

fn prompt_for(role: &str) -> &'static str {
    match role {
        "sm" => {
            "format!(\n            \"Draft story {} ({}) of epic {} from the epic file {}, and write it to {}.\",\n            story.id, story.title, story.epic, story.epic_path, story.path\n        )"
        }
        "dev" => {
            "if story.previous_findings.is_empty() {\n            format!(\n                \"Implement story {} at {}, then set its status to Review.\",\n                story.id, story.path\n            )\n        } else {\n            format!(\n                \"Fix these review findings for story {} at {}, then set its status to Review:\\n- {}\",\n                story.id,\n                story.path,\n                story.previous_findings.join(\"\\n- \")\n            )\n        }"
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
            r#"let Some(outcome) = &report.outcome else {
            let failed: Vec<String> = report
                .gates
                .iter()
                .filter(|g| !g.passed)
                .map(|g| format!("quality gate `{}` failed:\n{}", g.name, g.output_tail))
                .collect();
            return if failed.is_empty() {
                Decision::Complete
            } else {
                Decision::SendBack(failed)
            };
        };
        if outcome.kind != OutcomeKind::Success {
            return Decision::Fail(format!(
                "agent call ended with {}: {}",
                outcome.kind.as_str(),
                outcome.message
            ));
        }
        Decision::RunGates"#
        }
        // QA: done when the reviewer set the story to done; changes requested when it went back.
        "qa" => {
            r#"if let Some(outcome) = &report.outcome
            && outcome.kind != OutcomeKind::Success
        {
            return Decision::Fail(format!(
                "agent call ended with {}: {}",
                outcome.kind.as_str(),
                outcome.message
            ));
        }
        match report.status.state() {
            Some(StoryState::Done) => Decision::Complete,
            Some(StoryState::InProgress | StoryState::ChangesRequested) => Decision::SendBack(vec![
                "QA requested changes: see the story's QA Results".to_string(),
            ]),
            _ => Decision::Escalate("QA left the story neither done nor sent back".to_string()),
        }"#
        }
        // SM: done when the story file now exists with a status.
        _ => {
            r#"if let Some(outcome) = &report.outcome
            && outcome.kind != OutcomeKind::Success
        {
            return Decision::Fail(format!(
                "agent call ended with {}: {}",
                outcome.kind.as_str(),
                outcome.message
            ));
        }
        match report.status.state() {
            Some(_) => Decision::Complete,
            None => Decision::Fail("the story file has no readable status after drafting".to_string()),
        }"#
        }
    }
}

const POLICY_TEMPLATE: &str = r#"use bmad_policy::Policy;
use bmad_policy::host::{self, Level};
use bmad_policy::types::{{{types}}};

/// The `{{name}}` policy.
#[derive(Debug)]
pub struct Plugin;

impl Policy for Plugin {
    /// The step starts: ask the host to run the agent with this prompt.
    fn begin(story: &Story, _document: &str) -> Decision {
        host::log(Level::Info, &format!("story {}: cycle {}", story.id, story.cycle));
        let prompt = {{prompt}};
        Decision::InvokeAgent(AgentRequest {
            prompt,
            ..AgentRequest::default()
        })
    }

    // `on_event` (each line of the agent's stream) keeps the default: continue. Return
    // `Directive::Stop` from it to have the host stop the agent.

    /// The agent call (or the gates) ended: decide what happens next.
    fn end(_story: &Story, report: &StepReport) -> Decision {
        {{end}}
    }
}

bmad_policy::export_policy!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use bmad_policy::types::CallOutcome;

    fn story() -> Story {
        Story {
            id: "1.1".into(),
            path: "docs/stories/1.1.story.md".into(),
            cycle: 1,
            ..Story::default()
        }
    }

    #[test]
    fn begin_asks_for_the_agent_naming_the_story() {
        match Plugin::begin(&story(), "") {
            Decision::InvokeAgent(request) => {
                assert!(request.prompt.contains("1.1"), "{}", request.prompt)
            }
            other => panic!("expected invoke-agent, got {other:?}"),
        }
    }

    #[test]
    fn a_failed_agent_call_fails_the_story() {
        let report = StepReport {
            outcome: Some(CallOutcome::new(OutcomeKind::TimedOut, "too slow")),
            ..StepReport::default()
        };
        assert!(
            matches!(Plugin::end(&story(), &report), Decision::Fail(reason) if reason.contains("timed-out"))
        );
    }
}
"#;

const SCHEDULER_TEMPLATE: &str = r#"use bmad_policy::Scheduler;
use bmad_policy::schedule::footprints_overlap;
use bmad_policy::types::{Candidate, Running};

/// The scheduler: which of the candidate stories of a parallel run start now.
#[derive(Debug)]
pub struct Plugin;

impl Scheduler for Plugin {
    /// The ids to start now, in order, at most `slots`: here the default rule (dependencies
    /// done, no footprint overlap with a running or just-admitted story; an unknown footprint
    /// is admitted), which `bmad_policy::schedule::admit` also implements.
    fn admit(candidates: &[Candidate], running: &[Running], slots: u32) -> Vec<String> {
        let mut taken: Vec<&[String]> = running
            .iter()
            .filter(|r| r.footprint_known)
            .map(|r| r.footprint.as_slice())
            .collect();
        let mut admitted = Vec::new();
        for c in candidates {
            if admitted.len() >= slots as usize {
                break;
            }
            if !c.depends_on.iter().all(|d| d.done) {
                continue;
            }
            if c.footprint_known {
                if taken.iter().any(|fp| footprints_overlap(&c.footprint, fp)) {
                    continue;
                }
                taken.push(&c.footprint);
            }
            admitted.push(c.id.clone());
        }
        admitted
    }
}

bmad_policy::export_scheduler!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn story(id: &str, footprint: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            footprint: footprint.iter().map(|g| g.to_string()).collect(),
            footprint_known: !footprint.is_empty(),
            ..Candidate::default()
        }
    }

    #[test]
    fn overlapping_stories_wait() {
        let candidates = [story("1.1", &["src/a/**"]), story("1.2", &["src/a/x.rs"]), story("1.3", &[])];
        assert_eq!(Plugin::admit(&candidates, &[], 3), ["1.1", "1.3"]);
    }
}
"#;

const STATUS_TEMPLATE: &str = r###"use bmad_policy::StatusParser;
use bmad_policy::types::{MissingReason, ParseOutcome, StatusSource, StatusValue, StoryState};

/// The status parser.
#[derive(Debug)]
pub struct Plugin;

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

impl StatusParser for Plugin {
    /// Reads the first `Status: VALUE` line (or the line after a `## Status` heading).
    fn parse(document: &str) -> ParseOutcome {
        if document.trim().is_empty() {
            return ParseOutcome::Missing(MissingReason::EmptyFile);
        }
        let lines: Vec<&str> = document.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let (raw, at, source) = if let Some(v) = line.strip_prefix("Status:") {
                (v.trim(), i, StatusSource::Line)
            } else if line.trim() == "## Status" {
                match lines
                    .iter()
                    .enumerate()
                    .skip(i + 1)
                    .find(|(_, l)| !l.trim().is_empty())
                {
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
            let value = StatusValue {
                raw: raw.to_string(),
                line: line_no(at),
                source,
                state,
            };
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

bmad_policy::export_status_parser!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_status_line_and_a_status_section() {
        assert_eq!(
            Plugin::parse("# Story 1.1\n\nStatus: Done\n").state(),
            Some(StoryState::Done)
        );
        assert_eq!(
            Plugin::parse("# Story 1.1\n\n## Status\n\nDraft\n").state(),
            Some(StoryState::Drafted)
        );
        assert_eq!(
            Plugin::parse(""),
            ParseOutcome::Missing(MissingReason::EmptyFile)
        );
    }
}
"###;

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// `plugins/NAME` of the workspace at `root`.
    fn in_workspace(name: &str, role: &str, root: &Path) -> Result<PathBuf> {
        create(name, role, &Dest::Workspace(root.to_path_buf()))
    }

    /// Copies the SDK's WIT into `root/sdk/wit` (where the version is read).
    fn copy_wit(root: &Path) {
        std::fs::create_dir_all(root.join("sdk/wit")).expect("mkdir");
        std::fs::copy(
            repo().join("sdk/wit/policy.wit"),
            root.join("sdk/wit/policy.wit"),
        )
        .expect("copy wit");
    }

    /// A minimal workspace: the real WIT and a members list.
    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_wit(dir.path());
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
            in_workspace(name, role, ws.path()).expect("created");
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
            assert!(manifest.contains("wit = \"0.2.0\""), "{manifest}");
            assert!(
                manifest.contains(&format!("component = \"{name}.wasm\"")),
                "{manifest}"
            );
            let parsed: toml::Table = toml::from_str(&manifest).expect("plugin.toml is TOML");
            assert_eq!(parsed.get("name").and_then(|v| v.as_str()), Some(name));
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
            let export = if role == "status" {
                "bmad_policy::export_status_parser!(Plugin);"
            } else {
                "bmad_policy::export_policy!(Plugin);"
            };
            assert!(lib.contains(export), "{lib}");
            assert!(cargo.contains("bmad-policy.workspace = true"), "{cargo}");
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
        assert!(in_workspace("Team QA", "qa", ws.path()).is_err());
        assert!(
            in_workspace("x", "architect", ws.path())
                .expect_err("refused")
                .to_string()
                .contains("unknown role")
        );
        in_workspace("x", "qa", ws.path()).expect("first");
        assert!(
            in_workspace("x", "qa", ws.path())
                .expect_err("refused")
                .to_string()
                .contains("already exists")
        );
    }

    #[test]
    fn standalone_crates_depend_on_the_sdk_by_path_or_git() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sdk = repo().join("sdk");
        let dir = tmp.path().join("our-qa");
        let dest = Dest::Standalone {
            dir: dir.clone(),
            sdk: Sdk::Path(sdk.clone()),
        };
        assert_eq!(create("our-qa", "qa", &dest).expect("created"), dir);
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(dir.join("Cargo.toml")).expect("read"))
                .expect("Cargo.toml is TOML");
        assert_eq!(
            cargo["dependencies"]["bmad-policy"]["path"].as_str(),
            Some(sdk.display().to_string().as_str())
        );
        assert_eq!(
            cargo["dependencies"].as_table().map(|d| d.len()),
            Some(1),
            "the SDK is the only dependency"
        );
        assert!(
            cargo
                .get("lints")
                .and_then(|l| l.get("workspace"))
                .is_none()
        );
        assert_eq!(cargo["profile"]["release"]["panic"].as_str(), Some("abort"));
        let manifest = std::fs::read_to_string(dir.join("plugin.toml")).expect("plugin.toml");
        assert!(
            manifest.contains("component = \"our-qa.wasm\""),
            "{manifest}"
        );
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).expect("lib.rs");
        assert!(
            lib.contains("bmad_policy::export_policy!(Plugin);"),
            "{lib}"
        );
        assert!(
            lib.contains("cargo build --release --target wasm32-wasip2"),
            "{lib}"
        );
        assert!(
            create("our-qa", "qa", &dest)
                .expect_err("refused")
                .to_string()
                .contains("already exists")
        );

        let git = tmp.path().join("drafts");
        let dest = Dest::Standalone {
            dir: git.clone(),
            sdk: Sdk::Git("https://example.org/bmad-host.git".into()),
        };
        create("drafts", "sm", &dest).expect("created");
        let cargo: toml::Table =
            toml::from_str(&std::fs::read_to_string(git.join("Cargo.toml")).expect("read"))
                .expect("Cargo.toml is TOML");
        assert_eq!(
            cargo["dependencies"]["bmad-policy"]["git"].as_str(),
            Some("https://example.org/bmad-host.git")
        );
    }

    #[test]
    fn arguments_choose_the_destination() {
        let root = Path::new("/ws");
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (name, role, dest) = parse_args(&args(&["x", "--role", "qa"]), root).expect("parsed");
        assert_eq!((name.as_str(), role.as_str()), ("x", "qa"));
        assert_eq!(dest, Dest::Workspace(root.to_path_buf()));
        let (_, _, dest) =
            parse_args(&args(&["x", "--role", "qa", "--path", "/tmp/x"]), root).expect("parsed");
        assert_eq!(
            dest,
            Dest::Standalone {
                dir: PathBuf::from("/tmp/x"),
                sdk: Sdk::Path(root.join("sdk")),
            }
        );
        let (_, _, dest) = parse_args(
            &args(&[
                "x",
                "--role",
                "dev",
                "--path",
                "/tmp/x",
                "--git",
                "https://g/b.git",
            ]),
            root,
        )
        .expect("parsed");
        assert!(
            matches!(dest, Dest::Standalone { sdk: Sdk::Git(url), .. } if url == "https://g/b.git")
        );
        assert!(parse_args(&args(&["x", "--role", "qa", "--git", "u"]), root).is_err());
        assert!(parse_args(&args(&["x"]), root).is_err());
        assert!(parse_args(&args(&["--role", "qa"]), root).is_err());
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
        let repo = repo();
        let ws = tempfile::tempdir().expect("tempdir");
        copy_wit(ws.path());
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
                "[workspace]\nresolver = \"3\"\nmembers = [\n]\n\n[workspace.package]\n{}\n[workspace.dependencies]\nbmad-policy = {{ path = {} }}\n\n[workspace.lints.rust]\n{lints_rust}\n[workspace.lints.clippy]\n{lints_clippy}\n[profile.wasm]\n{wasm_profile}",
                section("package"),
                toml::Value::String(repo.join("sdk").display().to_string()),
            ),
        )
        .expect("write");
        let roles = [
            ("p-status", "status"),
            ("p-sm", "sm"),
            ("p-dev", "dev"),
            ("p-qa", "qa"),
            ("p-sched", "scheduler"),
        ];
        for (name, role) in roles {
            in_workspace(name, role, ws.path()).expect("created");
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
                "--all-targets",
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
