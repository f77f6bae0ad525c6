//! `plugin.toml`, the manifest of a plugin folder: what the plugin is (name, version, role), the
//! `bmad:policy` version it targets, its component file, the capabilities it requests and the
//! (tighter) limits it asks for. Unknown fields are refused, and every value is checked.

use std::fmt;
use std::path::{Component as PathPart, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::access::validate_glob;
use super::error::PluginError;
use super::limits::Limits;
use super::{SUPPORTED_WIT, supported_wit};
use crate::policy::Role;

/// The manifest's file name inside a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// The role a plugin plays: the status parser, one of the agent roles, or the scheduler of a
/// parallel run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginRole {
    /// The `status-parser` world.
    Status,
    /// The Scrum Master's `agent-policy`.
    Sm,
    /// The Developer's `agent-policy`.
    Dev,
    /// QA's `agent-policy`.
    Qa,
    /// The `scheduler` world (new in `bmad:policy@0.2.0`): which stories of a parallel run
    /// start. Optional: a plugin set without one serves the other roles.
    Scheduler,
}

impl PluginRole {
    /// The roles every run needs, in the order the workflow meets them.
    pub const ALL: [PluginRole; 4] = [
        PluginRole::Status,
        PluginRole::Sm,
        PluginRole::Dev,
        PluginRole::Qa,
    ];

    /// Every role: [`PluginRole::ALL`], then the optional [`PluginRole::Scheduler`].
    pub const EVERY: [PluginRole; 5] = [
        PluginRole::Status,
        PluginRole::Sm,
        PluginRole::Dev,
        PluginRole::Qa,
        PluginRole::Scheduler,
    ];

    /// The name used in `plugin.toml`, `[roles]` and `--policy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginRole::Status => "status",
            PluginRole::Sm => "sm",
            PluginRole::Dev => "dev",
            PluginRole::Qa => "qa",
            PluginRole::Scheduler => "scheduler",
        }
    }

    /// The role with this name, if any.
    pub fn from_name(name: &str) -> Option<PluginRole> {
        PluginRole::EVERY.into_iter().find(|r| r.as_str() == name)
    }

    /// Whether a run needs a plugin for this role (all but the scheduler).
    pub fn required(self) -> bool {
        self != PluginRole::Scheduler
    }

    /// The first `bmad:policy` version with this role's world.
    pub fn since_wit(self) -> &'static str {
        match self {
            PluginRole::Scheduler => "0.2.0",
            _ => "0.1.0",
        }
    }

    /// The plugin role serving an agent role.
    pub fn of_policy(role: Role) -> PluginRole {
        match role {
            Role::Sm => PluginRole::Sm,
            Role::Dev => PluginRole::Dev,
            Role::Qa => PluginRole::Qa,
        }
    }

    /// The WIT world a component for this role must implement.
    pub fn world(self) -> &'static str {
        match self {
            PluginRole::Status => "status-parser",
            PluginRole::Sm | PluginRole::Dev | PluginRole::Qa => "agent-policy",
            PluginRole::Scheduler => "scheduler",
        }
    }

    /// The functions that world exports.
    pub fn exports(self) -> &'static [&'static str] {
        match self {
            PluginRole::Status => &["parse"],
            PluginRole::Sm | PluginRole::Dev | PluginRole::Qa => &["begin", "on-event", "end"],
            PluginRole::Scheduler => &["admit"],
        }
    }
}

impl fmt::Display for PluginRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed and validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique name; `[roles]` and `--policy` refer to it.
    pub name: String,
    /// The plugin's own version (`MAJOR.MINOR.PATCH`).
    pub version: String,
    /// The role it plays.
    pub role: PluginRole,
    /// The `bmad:policy` WIT version the component was built for.
    pub wit: String,
    /// The component file, relative to the folder.
    pub component: String,
    /// One line for `plugins list`.
    #[serde(default)]
    pub description: String,
    /// What it asks to be allowed to do (granted only if the operator agrees).
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Limits tighter than the host's.
    #[serde(default)]
    pub limits: ManifestLimits,
}

/// `[capabilities]`: requests, each of which the operator must also grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Globs (relative to the project root) of files the plugin wants to `read-file`.
    #[serde(default)]
    pub read: Vec<String>,
}

/// `[limits]`: each may only lower the host's limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Memory cap in MiB.
    pub memory_mb: Option<u64>,
    /// Output cap per call in KiB.
    pub max_output_kb: Option<u64>,
}

impl Manifest {
    /// Reads, parses and validates `dir/plugin.toml` against the host's limits.
    pub fn load(dir: &Path, host: &Limits) -> Result<Manifest, PluginError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| PluginError::Manifest {
            dir: dir.to_path_buf(),
            problem: if e.kind() == std::io::ErrorKind::NotFound {
                format!("no {MANIFEST_FILE}: every plugin folder needs one (name, version, role, wit, component)")
            } else {
                format!("cannot read {MANIFEST_FILE}: {e}")
            },
        })?;
        Manifest::parse(&text, dir, host)
    }

    /// Parses and validates a manifest's text; `dir` is the folder it belongs to.
    pub fn parse(text: &str, dir: &Path, host: &Limits) -> Result<Manifest, PluginError> {
        Manifest::parse_with(text, dir, host, &|file| dir.join(file).is_file())
    }

    /// Parses and validates a manifest's text, asking `has_component` whether the component
    /// file it names exists: a folder's manifest looks in the folder, an embedded one among
    /// the files embedded with it. Every other check is the same for both.
    pub(super) fn parse_with(
        text: &str,
        dir: &Path,
        host: &Limits,
        has_component: &dyn Fn(&str) -> bool,
    ) -> Result<Manifest, PluginError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| PluginError::Manifest {
            dir: dir.to_path_buf(),
            problem: format!("invalid {MANIFEST_FILE}: {}", e.to_string().trim_end()),
        })?;
        manifest.validate(dir, host, has_component)?;
        Ok(manifest)
    }

    fn validate(
        &self,
        dir: &Path,
        host: &Limits,
        has_component: &dyn Fn(&str) -> bool,
    ) -> Result<(), PluginError> {
        let bad = |problem: String| PluginError::Manifest {
            dir: dir.to_path_buf(),
            problem,
        };
        if !valid_name(&self.name) {
            return Err(bad(format!(
                "name `{}` is not valid: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
                self.name
            )));
        }
        if parse_version(&self.version).is_none() {
            return Err(bad(format!(
                "version `{}` is not MAJOR.MINOR.PATCH",
                self.version
            )));
        }
        if parse_version(&self.wit).is_none() {
            return Err(bad(format!(
                "wit `{}` is not a version (MAJOR.MINOR.PATCH)",
                self.wit
            )));
        }
        if !SUPPORTED_WIT.contains(&self.wit.as_str()) {
            return Err(PluginError::WitVersion {
                plugin: self.name.clone(),
                dir: dir.to_path_buf(),
                what: "its plugin.toml declares",
                found: self.wit.clone(),
                supported: supported_wit(),
            });
        }
        if parse_version(&self.wit) < parse_version(self.role.since_wit()) {
            return Err(bad(format!(
                "role = \"{}\" needs wit = \"{}\" or later: the `{}` world is new in bmad:policy@{} (this plugin.toml says wit = \"{}\")",
                self.role,
                self.role.since_wit(),
                self.role.world(),
                self.role.since_wit(),
                self.wit
            )));
        }
        let component = Path::new(&self.component);
        let plain = !self.component.is_empty()
            && component
                .components()
                .all(|p| matches!(p, PathPart::Normal(_)));
        if !plain {
            return Err(bad(format!(
                "component `{}` must be a file name inside the plugin folder (no absolute path, no `..`)",
                self.component
            )));
        }
        if !has_component(&self.component) {
            return Err(bad(format!(
                "component file {} does not exist (build it with `cargo xtask build-plugins`)",
                self.component_path(dir).display()
            )));
        }
        for glob in &self.capabilities.read {
            validate_glob(glob).map_err(|e| bad(format!("[capabilities] read: {e}")))?;
        }
        let tighter = |field: &str, asked: Option<u64>, host_value: u64, unit: &str| match asked {
            Some(0) => Err(bad(format!("[limits] {field} must be greater than 0"))),
            Some(v) if v > host_value => Err(bad(format!(
                "[limits] {field} = {v} is above the host's limit of {host_value}{unit}: a plugin may only tighten limits"
            ))),
            _ => Ok(()),
        };
        tighter("fuel", self.limits.fuel, host.fuel, "")?;
        tighter(
            "memory_mb",
            self.limits.memory_mb,
            host.memory_bytes >> 20,
            " MiB",
        )?;
        tighter(
            "max_output_kb",
            self.limits.max_output_kb,
            host.max_output_bytes >> 10,
            " KiB",
        )?;
        Ok(())
    }

    /// The component file's path.
    pub fn component_path(&self, dir: &Path) -> PathBuf {
        dir.join(&self.component)
    }

    /// The limits this plugin runs under: the host's, lowered where the manifest asks.
    pub fn limits(&self, host: &Limits) -> Limits {
        Limits {
            fuel: self.limits.fuel.map_or(host.fuel, |v| v.min(host.fuel)),
            memory_bytes: self
                .limits
                .memory_mb
                .map_or(host.memory_bytes, |v| (v << 20).min(host.memory_bytes)),
            max_output_bytes: self
                .limits
                .max_output_kb
                .map_or(host.max_output_bytes, |v| {
                    (v << 10).min(host.max_output_bytes)
                }),
        }
    }
}

fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Parses `MAJOR.MINOR.PATCH` with an optional `-pre` / `+build` suffix.
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let mut next = || -> Option<u64> {
        let p = parts.next()?;
        if p.is_empty()
            || !p.bytes().all(|b| b.is_ascii_digit())
            || (p.len() > 1 && p.starts_with('0'))
        {
            return None;
        }
        p.parse().ok()
    };
    let version = (next()?, next()?, next()?);
    if parts.next().is_some() {
        return None;
    }
    Some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("qa.wasm"), b"\0asm").expect("write");
        dir
    }

    const GOOD: &str = r#"
name = "qa"
version = "0.1.0"
role = "qa"
wit = "0.1.0"
component = "qa.wasm"
description = "Default QA policy"

[capabilities]
read = ["docs/qa/**"]

[limits]
fuel = 50_000_000
memory_mb = 32
max_output_kb = 256
"#;

    fn problem(text: &str) -> String {
        let dir = folder();
        match Manifest::parse(text, dir.path(), &Limits::HOST) {
            Ok(m) => panic!("accepted: {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_complete_manifest_parses_and_tightens_limits() {
        let dir = folder();
        let m = Manifest::parse(GOOD, dir.path(), &Limits::HOST).expect("valid");
        assert_eq!(m.name, "qa");
        assert_eq!(m.role, PluginRole::Qa);
        assert_eq!(m.capabilities.read, vec!["docs/qa/**".to_string()]);
        let l = m.limits(&Limits::HOST);
        assert_eq!(l.fuel, 50_000_000);
        assert_eq!(l.memory_bytes, 32 << 20);
        assert_eq!(l.max_output_bytes, 256 << 10);
    }

    #[test]
    fn optional_sections_default_to_nothing_requested_and_host_limits() {
        let dir = folder();
        let text = "name = \"qa\"\nversion = \"1.2.3\"\nrole = \"qa\"\nwit = \"0.1.0\"\ncomponent = \"qa.wasm\"\n";
        let m = Manifest::parse(text, dir.path(), &Limits::HOST).expect("valid");
        assert!(m.capabilities.read.is_empty());
        assert_eq!(m.limits(&Limits::HOST), Limits::HOST);
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        assert!(problem(&format!("{GOOD}\nextra = 1\n")).contains("unknown field `extra`"));
        let text = GOOD.replace("read = [", "write = [\"x\"]\nread = [");
        assert!(problem(&text).contains("unknown field `write`"));
        let text = GOOD.replace("fuel = ", "cpu = 1\nfuel = ");
        assert!(problem(&text).contains("unknown field `cpu`"));
    }

    #[test]
    fn missing_fields_and_unknown_roles_are_refused() {
        assert!(problem(&GOOD.replace("wit = \"0.1.0\"\n", "")).contains("missing field `wit`"));
        let p = problem(&GOOD.replace("role = \"qa\"", "role = \"architect\""));
        assert!(p.contains("architect") && p.contains("status"), "{p}");
    }

    #[test]
    fn a_wit_version_the_host_does_not_support_names_both_versions() {
        let p = problem(&GOOD.replace("wit = \"0.1.0\"", "wit = \"9.0.0\""));
        assert!(
            p.contains("bmad:policy@9.0.0") && p.contains("bmad:policy@0.1.0"),
            "{p}"
        );
        assert!(
            problem(&GOOD.replace("wit = \"0.1.0\"", "wit = \"latest\"")).contains("not a version")
        );
    }

    #[test]
    fn limits_may_only_tighten() {
        let p = problem(&GOOD.replace("memory_mb = 32", "memory_mb = 4096"));
        assert!(
            p.contains("memory_mb = 4096") && p.contains("only tighten"),
            "{p}"
        );
        assert!(
            problem(&GOOD.replace("fuel = 50_000_000", "fuel = 1_000_000_000"))
                .contains("only tighten")
        );
        assert!(
            problem(&GOOD.replace("max_output_kb = 256", "max_output_kb = 0"))
                .contains("greater than 0")
        );
    }

    #[test]
    fn the_component_must_be_a_present_file_inside_the_folder() {
        assert!(problem(&GOOD.replace("qa.wasm", "other.wasm")).contains("does not exist"));
        assert!(
            problem(&GOOD.replace("qa.wasm", "../qa.wasm")).contains("inside the plugin folder")
        );
        assert!(
            problem(&GOOD.replace("qa.wasm", "/etc/passwd")).contains("inside the plugin folder")
        );
    }

    #[test]
    fn names_versions_and_globs_are_checked() {
        assert!(
            problem(&GOOD.replace("name = \"qa\"", "name = \"QA Strict\"")).contains("not valid")
        );
        assert!(
            problem(&GOOD.replace("version = \"0.1.0\"", "version = \"1.0\""))
                .contains("MAJOR.MINOR.PATCH")
        );
        assert!(
            problem(&GOOD.replace("docs/qa/**", "../secrets/**")).contains("[capabilities] read")
        );
        assert!(problem(&GOOD.replace("docs/qa/**", "/etc/*")).contains("[capabilities] read"));
    }

    #[test]
    fn a_missing_manifest_says_so() {
        let dir = folder();
        let e = Manifest::load(dir.path(), &Limits::HOST).expect_err("no manifest");
        assert!(e.to_string().contains("no plugin.toml"), "{e}");
    }

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("0.1.0"), Some((0, 1, 0)));
        assert_eq!(parse_version("1.22.333-rc.1+build"), Some((1, 22, 333)));
        for bad in ["", "1", "1.2", "1.2.3.4", "01.2.3", "a.b.c", "1..3"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
