//! Configuration: defaults < `bmad-host.toml` < `BMAD_HOST_*` environment < flags, with provenance.
//!
//! Every effective value remembers where it came from ([`Source`]) so `bmad-host config` can
//! show it. Unknown keys in `bmad-host.toml` are errors that suggest the nearest known key.
//! The full list of settings is documented in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// The configuration file's name, at the project root.
pub const FILE_NAME: &str = "bmad-host.toml";

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "from", rename_all = "snake_case")]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(n) => write!(f, "flag {n}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Setting<T> {
    fn default(value: T) -> Self {
        Setting {
            value,
            source: Source::Default,
        }
    }

    fn set(&mut self, value: T, source: Source) {
        self.value = value;
        self.source = source;
    }
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: unknown key `{key}`{}", suggestion_text(.suggestion))]
    UnknownKey {
        path: PathBuf,
        key: String,
        suggestion: Option<String>,
    },
    #[error("{origin}: `{key}` {problem}")]
    Invalid {
        origin: String,
        key: String,
        problem: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// `[claude]`: how the Claude Code CLI is run and limited.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaudeConfig {
    pub bin: Setting<PathBuf>,
    pub timeout: Setting<Duration>,
    pub idle_timeout: Setting<Duration>,
    pub tool_idle_timeout: Setting<Duration>,
    pub max_turns: Setting<u32>,
    pub max_budget_usd: Setting<Option<f64>>,
    pub retries: Setting<u32>,
    pub permission_mode: Setting<String>,
    pub model: Setting<Option<String>>,
    pub extra_args: Setting<Vec<String>>,
    pub wait_on_limit: Setting<bool>,
}

/// `[workflow]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkflowConfig {
    pub max_cycles: Setting<u32>,
    pub approve_drafts: Setting<bool>,
}

/// One `[[gates]]` entry: a project check run after Dev.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateConfig {
    pub name: String,
    pub command: String,
    pub timeout: Duration,
    pub enabled: bool,
}

/// `[plugins.NAME]`: what the operator grants a plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PluginGrant {
    pub grant_read: Vec<String>,
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    pub claude: ClaudeConfig,
    pub workflow: WorkflowConfig,
    /// Role → plugin name overrides (`[roles]`, `--policy`).
    pub roles: BTreeMap<String, Setting<String>>,
    pub plugins: BTreeMap<String, PluginGrant>,
    pub gates: Vec<GateConfig>,
}

/// Values given on the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub claude_bin: Option<PathBuf>,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_turns: Option<u32>,
    pub max_cycles: Option<u32>,
    pub wait_on_limit: bool,
    /// `--policy ROLE=NAME`.
    pub policies: Vec<(String, String)>,
    /// `--skip-gates`.
    pub skip_gates: bool,
    /// `--gate NAME` (only these gates) — empty means all enabled gates.
    pub only_gates: Vec<String>,
}

const ROLES: [&str; 4] = ["status", "sm", "dev", "qa"];

/// Every key the file may contain, by table, for validation and suggestions.
const CLAUDE_KEYS: [&str; 11] = [
    "bin",
    "timeout",
    "idle_timeout",
    "tool_idle_timeout",
    "max_turns",
    "max_budget_usd",
    "retries",
    "permission_mode",
    "model",
    "extra_args",
    "wait_on_limit",
];
const WORKFLOW_KEYS: [&str; 2] = ["max_cycles", "approve_drafts"];
const GATE_KEYS: [&str; 4] = ["name", "command", "timeout", "enabled"];
const PLUGIN_KEYS: [&str; 1] = ["grant_read"];
const TOP_KEYS: [&str; 5] = ["claude", "workflow", "roles", "plugins", "gates"];

impl Default for Config {
    fn default() -> Self {
        Config {
            file: None,
            claude: ClaudeConfig {
                bin: Setting::default(PathBuf::from("claude")),
                timeout: Setting::default(Duration::from_secs(60 * 60)),
                idle_timeout: Setting::default(Duration::from_secs(10 * 60)),
                tool_idle_timeout: Setting::default(Duration::from_secs(30 * 60)),
                max_turns: Setting::default(200),
                max_budget_usd: Setting::default(None),
                retries: Setting::default(2),
                permission_mode: Setting::default("acceptEdits".to_string()),
                model: Setting::default(None),
                extra_args: Setting::default(Vec::new()),
                wait_on_limit: Setting::default(false),
            },
            workflow: WorkflowConfig {
                max_cycles: Setting::default(3),
                approve_drafts: Setting::default(true),
            },
            roles: BTreeMap::new(),
            plugins: BTreeMap::new(),
            gates: Vec::new(),
        }
    }
}

impl Config {
    /// Loads the configuration of the project at `root`: defaults, then `bmad-host.toml` (if
    /// present), then the environment (through `env`), then `overrides`.
    pub fn load(
        root: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        let path = root.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => config.apply_file(&path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
        config.apply_env(env)?;
        config.apply_overrides(overrides);
        Ok(config)
    }

    /// The plugin serving `role`, if overridden.
    pub fn role(&self, role: &str) -> Option<&str> {
        self.roles.get(role).map(|s| s.value.as_str())
    }

    /// The gates that run, after `--skip-gates` and `enabled`.
    pub fn active_gates(&self) -> impl Iterator<Item = &GateConfig> {
        self.gates.iter().filter(|g| g.enabled)
    }

    fn apply_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
        let file = Source::File(path.to_path_buf());
        let unknown = |key: String, known: &[&str]| {
            let leaf = key.rsplit('.').next().unwrap_or(&key).to_string();
            ConfigError::UnknownKey {
                path: path.to_path_buf(),
                suggestion: nearest(&leaf, known).map(|s| {
                    let prefix = key.strip_suffix(&leaf).unwrap_or("");
                    format!("{prefix}{s}")
                }),
                key,
            }
        };
        let origin = path.display().to_string();
        for (key, value) in &table {
            match key.as_str() {
                "claude" => {
                    let t = as_table(value, &origin, "claude")?;
                    for (k, v) in t {
                        let name = format!("claude.{k}");
                        let c = &mut self.claude;
                        match k.as_str() {
                            "bin" => c
                                .bin
                                .set(PathBuf::from(as_str(v, &origin, &name)?), file.clone()),
                            "timeout" => {
                                c.timeout.set(as_duration(v, &origin, &name)?, file.clone())
                            }
                            "idle_timeout" => c
                                .idle_timeout
                                .set(as_duration(v, &origin, &name)?, file.clone()),
                            "tool_idle_timeout" => c
                                .tool_idle_timeout
                                .set(as_duration(v, &origin, &name)?, file.clone()),
                            "max_turns" => {
                                c.max_turns.set(as_u32(v, &origin, &name)?, file.clone())
                            }
                            "max_budget_usd" => c
                                .max_budget_usd
                                .set(Some(as_positive_f64(v, &origin, &name)?), file.clone()),
                            "retries" => c.retries.set(as_u32(v, &origin, &name)?, file.clone()),
                            "permission_mode" => c
                                .permission_mode
                                .set(as_str(v, &origin, &name)?.to_string(), file.clone()),
                            "model" => c
                                .model
                                .set(Some(as_str(v, &origin, &name)?.to_string()), file.clone()),
                            "extra_args" => c
                                .extra_args
                                .set(as_str_list(v, &origin, &name)?, file.clone()),
                            "wait_on_limit" => c
                                .wait_on_limit
                                .set(as_bool(v, &origin, &name)?, file.clone()),
                            _ => return Err(unknown(name, &CLAUDE_KEYS)),
                        }
                    }
                }
                "workflow" => {
                    let t = as_table(value, &origin, "workflow")?;
                    for (k, v) in t {
                        let name = format!("workflow.{k}");
                        match k.as_str() {
                            "max_cycles" => self
                                .workflow
                                .max_cycles
                                .set(as_u32(v, &origin, &name)?, file.clone()),
                            "approve_drafts" => self
                                .workflow
                                .approve_drafts
                                .set(as_bool(v, &origin, &name)?, file.clone()),
                            _ => return Err(unknown(name, &WORKFLOW_KEYS)),
                        }
                    }
                }
                "roles" => {
                    let t = as_table(value, &origin, "roles")?;
                    for (k, v) in t {
                        let name = format!("roles.{k}");
                        if !ROLES.contains(&k.as_str()) {
                            return Err(unknown(name, &ROLES));
                        }
                        let plugin = as_str(v, &origin, &name)?.to_string();
                        self.roles.insert(
                            k.clone(),
                            Setting {
                                value: plugin,
                                source: file.clone(),
                            },
                        );
                    }
                }
                "plugins" => {
                    let t = as_table(value, &origin, "plugins")?;
                    for (plugin, v) in t {
                        let pt = as_table(v, &origin, &format!("plugins.{plugin}"))?;
                        let mut grant = PluginGrant::default();
                        for (k, v) in pt {
                            let name = format!("plugins.{plugin}.{k}");
                            match k.as_str() {
                                "grant_read" => grant.grant_read = as_str_list(v, &origin, &name)?,
                                _ => return Err(unknown(name, &PLUGIN_KEYS)),
                            }
                        }
                        self.plugins.insert(plugin.clone(), grant);
                    }
                }
                "gates" => {
                    let list = value.as_array().ok_or_else(|| ConfigError::Invalid {
                        origin: origin.clone(),
                        key: "gates".into(),
                        problem: "must be an array of tables: write each gate as [[gates]]".into(),
                    })?;
                    for (i, g) in list.iter().enumerate() {
                        let prefix = format!("gates[{i}]");
                        let t = as_table(g, &origin, &prefix)?;
                        let mut gate = GateConfig {
                            name: String::new(),
                            command: String::new(),
                            timeout: Duration::from_secs(10 * 60),
                            enabled: true,
                        };
                        for (k, v) in t {
                            let name = format!("{prefix}.{k}");
                            match k.as_str() {
                                "name" => gate.name = as_str(v, &origin, &name)?.to_string(),
                                "command" => gate.command = as_str(v, &origin, &name)?.to_string(),
                                "timeout" => gate.timeout = as_duration(v, &origin, &name)?,
                                "enabled" => gate.enabled = as_bool(v, &origin, &name)?,
                                _ => return Err(unknown(name, &GATE_KEYS)),
                            }
                        }
                        for (key, val) in [("name", &gate.name), ("command", &gate.command)] {
                            if val.trim().is_empty() {
                                return Err(ConfigError::Invalid {
                                    origin: origin.clone(),
                                    key: format!("{prefix}.{key}"),
                                    problem: "is required and must not be empty".into(),
                                });
                            }
                        }
                        if self.gates.iter().any(|g| g.name == gate.name) {
                            return Err(ConfigError::Invalid {
                                origin: origin.clone(),
                                key: format!("{prefix}.name"),
                                problem: format!("`{}` is used by two gates", gate.name),
                            });
                        }
                        self.gates.push(gate);
                    }
                }
                other => return Err(unknown(other.to_string(), &TOP_KEYS)),
            }
        }
        self.file = Some(path.to_path_buf());
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |key: &str| {
            env(key)
                .filter(|v| !v.is_empty())
                .map(|v| (Source::Env(key.to_string()), v))
        };
        let c = &mut self.claude;
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_BIN") {
            c.bin.set(PathBuf::from(v), s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_TIMEOUT") {
            c.timeout.set(env_duration(&s, &v)?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_IDLE_TIMEOUT") {
            c.idle_timeout.set(env_duration(&s, &v)?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_TOOL_IDLE_TIMEOUT") {
            c.tool_idle_timeout.set(env_duration(&s, &v)?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_MAX_TURNS") {
            c.max_turns.set(env_parse(&s, &v, "a whole number")?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_MAX_BUDGET_USD") {
            c.max_budget_usd
                .set(Some(env_parse(&s, &v, "a number of dollars")?), s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_RETRIES") {
            c.retries.set(env_parse(&s, &v, "a whole number")?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_PERMISSION_MODE") {
            c.permission_mode.set(v, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_MODEL") {
            c.model.set(Some(v), s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_EXTRA_ARGS") {
            c.extra_args
                .set(v.split_whitespace().map(str::to_string).collect(), s);
        }
        if let Some((s, v)) = get("BMAD_HOST_CLAUDE_WAIT_ON_LIMIT") {
            c.wait_on_limit.set(env_parse(&s, &v, "true or false")?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_WORKFLOW_MAX_CYCLES") {
            self.workflow
                .max_cycles
                .set(env_parse(&s, &v, "a whole number")?, s);
        }
        if let Some((s, v)) = get("BMAD_HOST_WORKFLOW_APPROVE_DRAFTS") {
            self.workflow
                .approve_drafts
                .set(env_parse(&s, &v, "true or false")?, s);
        }
        Ok(())
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        let flag = |name: &str| Source::Flag(name.to_string());
        let c = &mut self.claude;
        if let Some(v) = &o.claude_bin {
            c.bin.set(v.clone(), flag("--claude-bin"));
        }
        if let Some(v) = o.timeout {
            c.timeout.set(v, flag("--timeout"));
        }
        if let Some(v) = o.idle_timeout {
            c.idle_timeout.set(v, flag("--idle-timeout"));
        }
        if let Some(v) = o.max_turns {
            c.max_turns.set(v, flag("--max-turns"));
        }
        if o.wait_on_limit {
            c.wait_on_limit.set(true, flag("--wait-on-limit"));
        }
        if let Some(v) = o.max_cycles {
            self.workflow.max_cycles.set(v, flag("--max-cycles"));
        }
        for (role, name) in &o.policies {
            self.roles.insert(
                role.clone(),
                Setting {
                    value: name.clone(),
                    source: flag("--policy"),
                },
            );
        }
        if o.skip_gates {
            for g in &mut self.gates {
                g.enabled = false;
            }
        } else if !o.only_gates.is_empty() {
            for g in &mut self.gates {
                g.enabled = o.only_gates.contains(&g.name);
            }
        }
    }

    /// One line per effective setting: `key = value  # source`, for `bmad-host config`.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        fn dur(d: &Duration) -> String {
            humantime::format_duration(*d).to_string()
        }
        let c = &self.claude;
        let mut rows = vec![
            row(
                "claude.bin",
                c.bin.value.display().to_string(),
                &c.bin.source,
            ),
            row("claude.timeout", dur(&c.timeout.value), &c.timeout.source),
            row(
                "claude.idle_timeout",
                dur(&c.idle_timeout.value),
                &c.idle_timeout.source,
            ),
            row(
                "claude.tool_idle_timeout",
                dur(&c.tool_idle_timeout.value),
                &c.tool_idle_timeout.source,
            ),
            row(
                "claude.max_turns",
                c.max_turns.value.to_string(),
                &c.max_turns.source,
            ),
            row(
                "claude.max_budget_usd",
                c.max_budget_usd
                    .value
                    .map_or("none".into(), |v| v.to_string()),
                &c.max_budget_usd.source,
            ),
            row(
                "claude.retries",
                c.retries.value.to_string(),
                &c.retries.source,
            ),
            row(
                "claude.permission_mode",
                c.permission_mode.value.clone(),
                &c.permission_mode.source,
            ),
            row(
                "claude.model",
                c.model
                    .value
                    .clone()
                    .unwrap_or_else(|| "CLI default".into()),
                &c.model.source,
            ),
            row(
                "claude.extra_args",
                format!("{:?}", c.extra_args.value),
                &c.extra_args.source,
            ),
            row(
                "claude.wait_on_limit",
                c.wait_on_limit.value.to_string(),
                &c.wait_on_limit.source,
            ),
            row(
                "workflow.max_cycles",
                self.workflow.max_cycles.value.to_string(),
                &self.workflow.max_cycles.source,
            ),
            row(
                "workflow.approve_drafts",
                self.workflow.approve_drafts.value.to_string(),
                &self.workflow.approve_drafts.source,
            ),
        ];
        for role in ROLES {
            match self.roles.get(role) {
                Some(s) => rows.push(row(&format!("roles.{role}"), s.value.clone(), &s.source)),
                None => rows.push(row(
                    &format!("roles.{role}"),
                    role.to_string(),
                    &Source::Default,
                )),
            }
        }
        let file = self
            .file
            .clone()
            .map(Source::File)
            .unwrap_or(Source::Default);
        for (name, grant) in &self.plugins {
            rows.push(row(
                &format!("plugins.{name}.grant_read"),
                format!("{:?}", grant.grant_read),
                &file,
            ));
        }
        for g in &self.gates {
            rows.push(row(
                &format!("gates.{}", g.name),
                format!(
                    "{:?} timeout {}{}",
                    g.command,
                    dur(&g.timeout),
                    if g.enabled { "" } else { " (disabled)" }
                ),
                &file,
            ));
        }
        rows
    }
}

fn row(key: &str, value: String, source: &Source) -> (String, String, String) {
    (key.to_string(), value, source.to_string())
}

/// The known key closest to `key`, if any is close enough to be a likely typo.
pub fn nearest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn invalid(origin: &str, key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_string(),
        key: key.to_string(),
        problem: problem.into(),
    }
}

fn as_table<'a>(
    v: &'a toml::Value,
    origin: &str,
    key: &str,
) -> Result<&'a toml::Table, ConfigError> {
    v.as_table()
        .ok_or_else(|| invalid(origin, key, format!("must be a table ([{key}])")))
}

fn as_str<'a>(v: &'a toml::Value, origin: &str, key: &str) -> Result<&'a str, ConfigError> {
    v.as_str()
        .ok_or_else(|| invalid(origin, key, "must be a string"))
}

fn as_bool(v: &toml::Value, origin: &str, key: &str) -> Result<bool, ConfigError> {
    v.as_bool()
        .ok_or_else(|| invalid(origin, key, "must be true or false"))
}

fn as_u32(v: &toml::Value, origin: &str, key: &str) -> Result<u32, ConfigError> {
    v.as_integer()
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| invalid(origin, key, "must be a whole number ≥ 0"))
}

fn as_positive_f64(v: &toml::Value, origin: &str, key: &str) -> Result<f64, ConfigError> {
    let f = v
        .as_float()
        .or_else(|| v.as_integer().map(|i| i as f64))
        .ok_or_else(|| invalid(origin, key, "must be a number"))?;
    if f.is_finite() && f > 0.0 {
        Ok(f)
    } else {
        Err(invalid(origin, key, "must be a positive number of dollars"))
    }
}

fn as_str_list(v: &toml::Value, origin: &str, key: &str) -> Result<Vec<String>, ConfigError> {
    v.as_array()
        .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
        .ok_or_else(|| invalid(origin, key, "must be a list of strings"))
}

fn as_duration(v: &toml::Value, origin: &str, key: &str) -> Result<Duration, ConfigError> {
    let text = as_str(v, origin, key).map_err(|_| {
        invalid(
            origin,
            key,
            "must be a duration string such as \"90s\", \"30m\" or \"2h\"",
        )
    })?;
    parse_duration(text).map_err(|e| invalid(origin, key, e))
}

/// Parses a humantime duration (`90s`, `30m`, `2h`), refusing zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("`{text}` is not a duration ({e}); write e.g. \"90s\", \"30m\", \"2h\"")
    })?;
    if d.is_zero() {
        return Err(format!("`{text}` must be longer than zero"));
    }
    Ok(d)
}

fn env_duration(source: &Source, v: &str) -> Result<Duration, ConfigError> {
    parse_duration(v).map_err(|e| invalid(&source.to_string(), "value", e))
}

fn env_parse<T: std::str::FromStr>(source: &Source, v: &str, what: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| {
        invalid(
            &source.to_string(),
            "value",
            format!("`{v}` must be {what}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)], o: &Overrides) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), text).expect("write config");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(
            dir.path(),
            &|k| env.iter().find(|(ek, _)| ek == k).map(|(_, v)| v.clone()),
            o,
        )
    }

    #[test]
    fn layers_apply_in_order_with_provenance() {
        let text = "[claude]\ntimeout = \"20m\"\nmax_turns = 50\nretries = 4\n[workflow]\nmax_cycles = 5\n";
        let o = Overrides {
            max_turns: Some(7),
            ..Overrides::default()
        };
        let c = load(
            text,
            &[
                ("BMAD_HOST_CLAUDE_RETRIES", "1"),
                ("BMAD_HOST_CLAUDE_MAX_TURNS", "9"),
            ],
            &o,
        )
        .expect("config");
        assert_eq!(c.claude.timeout.value, Duration::from_secs(1200));
        assert!(matches!(c.claude.timeout.source, Source::File(_)));
        assert_eq!(c.claude.retries.value, 1);
        assert_eq!(
            c.claude.retries.source,
            Source::Env("BMAD_HOST_CLAUDE_RETRIES".into())
        );
        assert_eq!(c.claude.max_turns.value, 7);
        assert_eq!(
            c.claude.max_turns.source,
            Source::Flag("--max-turns".into())
        );
        assert_eq!(c.workflow.max_cycles.value, 5);
        assert_eq!(c.claude.idle_timeout.source, Source::Default);
    }

    #[test]
    fn unknown_keys_suggest_the_nearest() {
        let err =
            load("[claude]\ntimout = \"1m\"\n", &[], &Overrides::default()).expect_err("unknown");
        let msg = err.to_string();
        assert!(msg.contains("unknown key `claude.timout`"), "{msg}");
        assert!(msg.contains("did you mean `claude.timeout`"), "{msg}");
        let err = load("[workflw]\n", &[], &Overrides::default()).expect_err("unknown");
        assert!(err.to_string().contains("did you mean `workflow`"), "{err}");
        let err = load(
            "[[gates]]\nname='t'\ncomand='x'\n",
            &[],
            &Overrides::default(),
        )
        .expect_err("unknown");
        assert!(
            err.to_string().contains("did you mean `gates[0].command`"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let err =
            load("[claude]\ntimeout = \"soon\"\n", &[], &Overrides::default()).expect_err("bad");
        assert!(err.to_string().contains("`claude.timeout`"), "{err}");
        let err =
            load("[claude]\ntimeout = \"0s\"\n", &[], &Overrides::default()).expect_err("zero");
        assert!(err.to_string().contains("longer than zero"), "{err}");
        let err = load("[claude\n", &[], &Overrides::default()).expect_err("syntax");
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        let err = load(
            "",
            &[("BMAD_HOST_CLAUDE_MAX_TURNS", "many")],
            &Overrides::default(),
        )
        .expect_err("env");
        assert!(
            err.to_string().contains("BMAD_HOST_CLAUDE_MAX_TURNS"),
            "{err}"
        );
    }

    #[test]
    fn gates_roles_and_grants() {
        let text = "[roles]\nqa = \"qa-strict\"\n[plugins.qa-strict]\ngrant_read = [\"docs/**\"]\n\
                    [[gates]]\nname = \"test\"\ncommand = \"cargo test\"\ntimeout = \"5m\"\n\
                    [[gates]]\nname = \"lint\"\ncommand = \"cargo clippy\"\n";
        let c = load(text, &[], &Overrides::default()).expect("config");
        assert_eq!(c.role("qa"), Some("qa-strict"));
        assert_eq!(c.plugins["qa-strict"].grant_read, ["docs/**"]);
        assert_eq!(c.active_gates().count(), 2);
        let o = Overrides {
            only_gates: vec!["lint".into()],
            policies: vec![("qa".into(), "qa".into())],
            ..Overrides::default()
        };
        let c = load(text, &[], &o).expect("config");
        assert_eq!(
            c.active_gates()
                .map(|g| g.name.as_str())
                .collect::<Vec<_>>(),
            ["lint"]
        );
        assert_eq!(c.roles["qa"].source, Source::Flag("--policy".into()));
        let skip = Overrides {
            skip_gates: true,
            ..Overrides::default()
        };
        assert_eq!(
            load(text, &[], &skip)
                .expect("config")
                .active_gates()
                .count(),
            0
        );
        let err = load("[roles]\nqaa = \"x\"\n", &[], &Overrides::default()).expect_err("role");
        assert!(err.to_string().contains("did you mean `roles.qa`"), "{err}");
    }

    #[test]
    fn missing_file_is_all_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = Config::load(dir.path(), &|_| None, &Overrides::default()).expect("config");
        assert_eq!(c, Config::default());
    }
}
