//! Configuration: defaults < the user's `config.toml` < the project's `bmad-host.toml` <
//! `BMAD_HOST_*` environment < flags, with provenance. What a project's file runs or grants
//! ([`TRUSTED_CLAUDE_KEYS`], `[[gates]]`, `[plugins.NAME]`) applies only once the operator
//! trusted its content ([`ProjectTrust`]; the store is [`crate::trust`]'s, asked through
//! [`Layers::trusted`]).
//!
//! Every effective value remembers where it came from ([`Source`]) so `bmad-host config` can
//! show it. Unknown keys in `bmad-host.toml` are errors that suggest the nearest known key.
//!
//! Each scalar setting is declared once, in the `settings!` table below: its table, key, type,
//! default, flag and meaning. Everything else is derived from that row: the field of
//! [`ClaudeConfig`] or [`WorkflowConfig`], the key the file accepts (and the suggestions for a
//! mistyped one), its `BMAD_HOST_<TABLE>_<KEY>` variable, its slot in [`Overrides`], its line in
//! `bmad-host config` and its row in `docs/configuration.md` ([`reference`] writes that page;
//! a test fails while the committed page differs, and `cargo xtask docs` regenerates it). The
//! structured tables (`[roles]`, `[plugins.NAME]`, `[[gates]]`) are read by hand below. This
//! module imports nothing of the crate: every other module may read the defaults from here.

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
    /// The built-in default.
    Default,
    /// `bmad-host.toml` at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// This command-line flag.
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
    /// The effective value.
    pub value: T,
    /// The layer that set it.
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
    /// `bmad-host.toml` exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `bmad-host.toml` is not TOML.
    #[error("{} is not valid TOML", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's report (line, column and a pointer).
        #[source]
        source: toml::de::Error,
    },
    /// A key no table has.
    #[error("{}: unknown key `{key}`{}", path.display(), suggestion_text(.suggestion))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written, with its table (`claude.timout`).
        key: String,
        /// The nearest known key, when one is close.
        suggestion: Option<String>,
    },
    /// Two settings that contradict each other.
    #[error("{problem}; {fix}")]
    Conflict {
        /// What contradicts what, naming both keys and where each value came from.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The project's file has settings that need trust, and the operator has not trusted it.
    #[error("{}", untrusted_text(path, restricted))]
    Untrusted {
        /// The project's `bmad-host.toml`.
        path: PathBuf,
        /// What it would run or grant.
        restricted: Vec<Restricted>,
    },
    /// A value of the wrong type or out of range.
    #[error("{origin}: `{key}` {problem}")]
    Invalid {
        /// The file or the variable (`env BMAD_HOST_CLAUDE_MAX_TURNS`).
        origin: String,
        /// The key (`value` for a variable).
        key: String,
        /// What is wrong, completing "`key` ...".
        problem: String,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// How a setting's type is read from the file and the environment, and shown.
trait Value: Sized + Clone {
    /// Appended to the variable's name in the docs.
    const ENV_NOTE: &'static str = "";
    /// The value of a file key, or the problem (completing "`key` ...").
    fn from_toml(v: &toml::Value) -> Result<Self, String>;
    /// The value of a `BMAD_HOST_*` variable (never empty), or the problem.
    fn from_env(text: &str) -> Result<Self, String>;
    /// The value as `bmad-host config` shows it; `None` when unset.
    fn show(&self) -> Option<String>;
}

impl Value for PathBuf {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        String::from_toml(v).map(PathBuf::from)
    }
    fn from_env(text: &str) -> Result<Self, String> {
        Ok(PathBuf::from(text))
    }
    fn show(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

impl Value for String {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| "must be a string".to_string())
    }
    fn from_env(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
    fn show(&self) -> Option<String> {
        Some(self.clone())
    }
}

/// An optional string: unset unless given.
impl Value for Option<String> {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        String::from_toml(v).map(Some)
    }
    fn from_env(text: &str) -> Result<Self, String> {
        Ok(Some(text.to_string()))
    }
    fn show(&self) -> Option<String> {
        self.clone()
    }
}

impl Value for Duration {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let text = v.as_str().ok_or_else(|| {
            "must be a duration string such as \"90s\", \"30m\" or \"2h\"".to_string()
        })?;
        parse_duration(text)
    }
    fn from_env(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn show(&self) -> Option<String> {
        Some(humantime::format_duration(*self).to_string())
    }
}

impl Value for u32 {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_integer()
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| "must be a whole number ≥ 0".to_string())
    }
    fn from_env(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` must be a whole number"))
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl Value for bool {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_bool()
            .ok_or_else(|| "must be true or false".to_string())
    }
    fn from_env(text: &str) -> Result<Self, String> {
        text.trim()
            .parse()
            .map_err(|_| format!("`{text}` must be true or false"))
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

/// A list of strings; in the environment, separated by whitespace.
impl Value for Vec<String> {
    const ENV_NOTE: &'static str = " (space-separated)";
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
            .ok_or_else(|| "must be a list of strings".to_string())
    }
    fn from_env(text: &str) -> Result<Self, String> {
        Ok(text.split_whitespace().map(str::to_string).collect())
    }
    fn show(&self) -> Option<String> {
        Some(format!("{self:?}"))
    }
}

/// An optional amount of dollars: unset unless given, and positive when given.
impl Value for Option<f64> {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let f = v
            .as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .ok_or_else(|| "must be a number".to_string())?;
        if f.is_finite() && f > 0.0 {
            Ok(Some(f))
        } else {
            Err("must be a positive number of dollars".to_string())
        }
    }
    fn from_env(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(Some)
            .ok_or_else(|| format!("`{text}` must be a positive number of dollars"))
    }
    fn show(&self) -> Option<String> {
        self.map(|v| v.to_string())
    }
}

/// An optional count (of tokens): unset unless given, and positive when given.
impl Value for Option<u64> {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        v.as_integer()
            .and_then(|i| u64::try_from(i).ok())
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| "must be a whole number > 0".to_string())
    }
    fn from_env(text: &str) -> Result<Self, String> {
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Some)
            .ok_or_else(|| format!("`{text}` must be a whole number > 0"))
    }
    fn show(&self) -> Option<String> {
        self.map(|v| v.to_string())
    }
}

/// `[workflow] retrospective`: whether the host runs an epic's retrospective once its last
/// story is done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrospective {
    /// Never (the default): the `epic-N-retrospective` key stays as it is.
    #[default]
    Off,
    /// Run the installed `bmad-retrospective` workflow as an SM call, then set the key to
    /// `done`.
    Run,
}

impl Value for Retrospective {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let text = v
            .as_str()
            .ok_or_else(|| "must be \"off\" or \"run\"".to_string())?;
        Self::from_env(text)
    }
    fn from_env(text: &str) -> Result<Self, String> {
        match text.trim() {
            "off" => Ok(Retrospective::Off),
            "run" => Ok(Retrospective::Run),
            other => Err(format!("`{other}` must be \"off\" or \"run\"")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(
            match self {
                Retrospective::Off => "off",
                Retrospective::Run => "run",
            }
            .to_string(),
        )
    }
}

/// `[workflow] same_epic`: whether the stories of one epic that name no dependency wait for
/// each other in a parallel run (`--jobs N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameEpic {
    /// A story waits for the earlier stories of its epic (the default).
    #[default]
    Serial,
    /// The stories of one epic run side by side (their footprints permitting).
    Parallel,
}

/// `[git] integrate`: how a story branch is brought onto the integration branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GitIntegrate {
    /// The story's commit is replayed on the integration branch's head (the default).
    #[default]
    Rebase,
    /// The integration branch is merged into the story branch, and the result squashed.
    Merge,
}

/// `[git] commit`: whether each story that is done lands as a commit of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GitCommit {
    /// `story` with `jobs` > 1, `none` with one job (the default).
    #[default]
    Auto,
    /// One commit per story, `<id>: <title>`, on the checked-out branch.
    Story,
    /// No commit (one job only: the integration lane of a parallel run commits).
    None,
}

impl GitCommit {
    /// Whether stories are committed in a run of `jobs` jobs.
    pub fn commits(self, jobs: u32) -> bool {
        match self {
            GitCommit::Auto => jobs > 1,
            GitCommit::Story => true,
            GitCommit::None => false,
        }
    }
}

impl Value for GitCommit {
    fn from_toml(v: &toml::Value) -> Result<Self, String> {
        let text = v
            .as_str()
            .ok_or_else(|| "must be \"auto\", \"story\" or \"none\"".to_string())?;
        Self::from_env(text)
    }
    fn from_env(text: &str) -> Result<Self, String> {
        match text.trim() {
            "auto" => Ok(GitCommit::Auto),
            "story" => Ok(GitCommit::Story),
            "none" => Ok(GitCommit::None),
            other => Err(format!("`{other}` must be \"auto\", \"story\" or \"none\"")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(
            match self {
                GitCommit::Auto => "auto",
                GitCommit::Story => "story",
                GitCommit::None => "none",
            }
            .to_string(),
        )
    }
}

/// A setting whose value is one of two words.
macro_rules! two_words {
    ($ty:ident, $a:ident = $a_word:literal, $b:ident = $b_word:literal) => {
        impl Value for $ty {
            fn from_toml(v: &toml::Value) -> Result<Self, String> {
                let text = v.as_str().ok_or_else(|| {
                    concat!("must be \"", $a_word, "\" or \"", $b_word, "\"").to_string()
                })?;
                Self::from_env(text)
            }
            fn from_env(text: &str) -> Result<Self, String> {
                match text.trim() {
                    $a_word => Ok($ty::$a),
                    $b_word => Ok($ty::$b),
                    other => Err(format!(
                        concat!("`{}` must be \"", $a_word, "\" or \"", $b_word, "\""),
                        other
                    )),
                }
            }
            fn show(&self) -> Option<String> {
                Some(
                    match self {
                        $ty::$a => $a_word,
                        $ty::$b => $b_word,
                    }
                    .to_string(),
                )
            }
        }
    };
}

two_words!(SameEpic, Serial = "serial", Parallel = "parallel");
two_words!(GitIntegrate, Rebase = "rebase", Merge = "merge");

/// One setting's row of the reference (`docs/configuration.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDoc {
    /// Its table (`claude`).
    pub table: &'static str,
    /// Its key in the table (`max_turns`).
    pub key: &'static str,
    /// Its environment variable, with a note on its form where one is needed.
    pub env: String,
    /// Its flag, if it has one.
    pub flag: Option<&'static str>,
    /// The default, as the docs show it.
    pub default: String,
    /// What it means.
    pub help: &'static str,
}

/// The environment variable of `table.key`: `BMAD_HOST_<TABLE>_<KEY>`.
fn env_name(table: &str, key: &str) -> String {
    format!("BMAD_HOST_{table}_{key}").to_ascii_uppercase()
}

/// Declares the scalar settings: for each table, a struct of [`Setting`]s with its defaults, the
/// flags' [`Overrides`] slots, and the readers, the `config` rows and the docs of every key.
///
/// A row is `key: Type = default; [flag "--name";] [shown "docs default";] [unset "text";]
/// help "meaning";`. `shown` replaces the default in the docs; `unset` is how `config` shows an
/// optional value that is not set (default "none").
macro_rules! settings {
    ($(
        #[doc = $table_doc:literal]
        #[heading = $heading:literal]
        [$table:ident] $Struct:ident, $Overrides:ident {
            $(
                $key:ident: $ty:ty = $default:expr;
                $(flag $flag:literal;)?
                $(shown $shown:literal;)?
                $(unset $unset:literal;)?
                help $help:literal;
            )*
        }
    )*) => {
        $(
            #[doc = $table_doc]
            #[derive(Debug, Clone, PartialEq, Serialize)]
            pub struct $Struct {
                $(
                    #[doc = concat!("`", stringify!($table), ".", stringify!($key), "`: ", $help, ".")]
                    pub $key: Setting<$ty>,
                )*
            }

            impl Default for $Struct {
                fn default() -> Self {
                    $Struct {
                        $( $key: Setting::default($default), )*
                    }
                }
            }

            #[doc = concat!("The flags that set `[", stringify!($table), "]` keys; `None` leaves the key as the lower layers set it.")]
            #[derive(Debug, Clone, Default)]
            pub struct $Overrides {
                $($(
                    #[doc = concat!("`", $flag, "`.")]
                    pub $key: Option<$ty>,
                )?)*
            }

            impl $Struct {
                /// The table's name in the file.
                const TABLE: &'static str = stringify!($table);
                /// Its keys, in the order `config` lists them.
                const KEYS: &'static [&'static str] = &[$(stringify!($key)),*];

                /// Sets `key` from the file; `Ok(false)` when the table has no such key.
                fn set_from_file(
                    &mut self,
                    key: &str,
                    value: &toml::Value,
                    origin: &str,
                    file: &Source,
                ) -> Result<bool, ConfigError> {
                    match key {
                        $(
                            stringify!($key) => {
                                let v = <$ty as Value>::from_toml(value).map_err(|problem| {
                                    invalid(origin, &format!("{}.{key}", Self::TABLE), problem)
                                })?;
                                self.$key.set(v, file.clone());
                            }
                        )*
                        _ => return Ok(false),
                    }
                    Ok(true)
                }

                fn apply_env(
                    &mut self,
                    env: &dyn Fn(&str) -> Option<String>,
                ) -> Result<(), ConfigError> {
                    $(
                        let name = env_name(Self::TABLE, stringify!($key));
                        if let Some(text) = env(&name).filter(|v| !v.is_empty()) {
                            let source = Source::Env(name);
                            let v = <$ty as Value>::from_env(&text)
                                .map_err(|problem| invalid(&source.to_string(), "value", problem))?;
                            self.$key.set(v, source);
                        }
                    )*
                    Ok(())
                }

                // A table may have no flag (`[git]`).
                #[allow(unused_variables)]
                fn apply_overrides(&mut self, overrides: &$Overrides) {
                    $($(
                        if let Some(v) = &overrides.$key {
                            self.$key.set(v.clone(), Source::Flag($flag.to_string()));
                        }
                    )?)*
                }

                fn describe(&self, rows: &mut Vec<(String, String, String)>) {
                    $(
                        let unset = [$($unset,)? "none"][0];
                        rows.push(row(
                            &format!("{}.{}", Self::TABLE, stringify!($key)),
                            self.$key.value.show().unwrap_or_else(|| unset.to_string()),
                            &self.$key.source,
                        ));
                    )*
                }

                fn docs(docs: &mut Vec<SettingDoc>) {
                    $(
                        let unset = [$($unset,)? "none"][0];
                        let shown: Option<&str> = [$(Some($shown),)? None][0];
                        let default = shown.map_or_else(
                            || <$ty as Value>::show(&$default)
                                .map_or_else(|| unset.to_string(), |v| format!("`{v}`")),
                            str::to_string,
                        );
                        let flag: Option<&'static str> = [$(Some($flag),)? None][0];
                        docs.push(SettingDoc {
                            table: Self::TABLE,
                            key: stringify!($key),
                            env: format!(
                                "`{}`{}",
                                env_name(Self::TABLE, stringify!($key)),
                                <$ty as Value>::ENV_NOTE
                            ),
                            flag,
                            default,
                            help: $help,
                        });
                    )*
                }
            }
        )*

        /// The tables of scalar settings, in order, each with its heading in the docs.
        const TABLES: &[(&str, &str)] = &[$((stringify!($table), $heading)),*];

        /// Every scalar setting's row of the reference, in declaration order.
        pub fn setting_docs() -> Vec<SettingDoc> {
            let mut docs = Vec::new();
            $( $Struct::docs(&mut docs); )*
            docs
        }
    };
}

settings! {
    /// `[claude]`: how the Claude Code CLI is run and limited.
    #[heading = "the Claude Code CLI and the limits the host enforces"]
    [claude] ClaudeConfig, ClaudeOverrides {
        bin: PathBuf = PathBuf::from("claude");
            flag "--claude-bin";
            shown "`claude` (on PATH)";
            help "the CLI to run";
        timeout: Duration = Duration::from_secs(60 * 60);
            flag "--timeout";
            help "wall-clock limit per agent call";
        idle_timeout: Duration = Duration::from_secs(10 * 60);
            flag "--idle-timeout";
            help "limit on silence between output lines; paused while a tool call is open";
        tool_idle_timeout: Duration = Duration::from_secs(30 * 60);
            flag "--tool-idle-timeout";
            help "limit on silence while a tool call is open (a long Bash command); at least `idle_timeout`";
        max_turns: u32 = 200;
            flag "--max-turns";
            help "`--max-turns` given to the CLI (a policy may ask for fewer)";
        max_budget_usd: Option<f64> = None;
            help "`--max-budget-usd` given to the CLI";
        retries: u32 = 2;
            help "new attempts after a transient API failure (overloaded, 429, 5xx, dropped stream), with exponential backoff";
        permission_mode: String = "acceptEdits".to_string();
            help "`--permission-mode` given to the CLI (policies cannot choose it)";
        model: Option<String> = None;
            shown "the CLI's";
            unset "CLI default";
            help "`--model` (a policy may choose one per call)";
        extra_args: Vec<String> = Vec::new();
            help "more CLI arguments, placed before the `--` that ends the options";
        allowed_tools: Vec<String> = Vec::new();
            shown "none";
            help "the `--allowedTools` entries any policy may ask for (`Bash` also grants `Bash(git *)`); a request outside them fails the step. The default plugins ask for none";
        allowed_models: Vec<String> = Vec::new();
            shown "none";
            help "the `--model` values a policy may ask for (`claude.model` itself is always allowed); a request outside them fails the step. The default plugins ask for none";
        max_prompt_bytes: u32 = 100_000;
            help "longest prompt a policy may give (Linux refuses one argument over 128 KiB); a longer one fails the step";
        max_system_prompt_bytes: u32 = 20_000;
            help "longest `--append-system-prompt` a policy may give; a longer one fails the step";
        wait_on_limit: bool = false;
            flag "--wait-on-limit";
            help "on a usage limit with a stated reset time, wait for it instead of stopping";
        keeper: bool = false;
            help "run each call under a keeper process (`bmad-host __keep`) that kills the call's whole tree as soon as the host dies, even by `kill -9`, instead of when the next run starts; costs one more process per call";
    }

    /// `[workflow]`: how far a story may go before a person looks at it.
    #[heading = "how far a story goes on its own"]
    [workflow] WorkflowConfig, WorkflowOverrides {
        max_cycles: u32 = 3;
            flag "--max-cycles";
            help "Dev+QA rounds per story before it is escalated";
        approve_drafts: bool = true;
            help "a `Draft` story goes straight to Dev; `false` escalates it for a person to approve";
        require_review: bool = true;
            help "a `done` story counts only when QA completed it in this run or it was already done the first time the project's journal saw it; any other `done` (a Dev agent that wrote it) goes to QA. `false` takes every `done` as it is";
        max_story_usd: Option<f64> = None;
            flag "--max-story-usd";
            unset "no cap";
            help "spend cap per story, in API-equivalent dollars summed over its calls (attempts, retries, roles; across resumes): once reached, the story's next agent call does not start and the story is escalated with the figures";
        max_run_usd: Option<f64> = None;
            flag "--max-run-usd";
            unset "no cap";
            help "spend cap for the whole run, in API-equivalent dollars: once reached, the next agent call does not start, its story is escalated and the run stops";
        max_story_tokens: Option<u64> = None;
            flag "--max-story-tokens";
            unset "no cap";
            help "token cap per story (input + output + cache tokens, as the CLI's result lines report them), for subscriptions where dollars are only an equivalent; as `max_story_usd`";
        max_run_tokens: Option<u64> = None;
            flag "--max-run-tokens";
            unset "no cap";
            help "token cap for the whole run; as `max_run_usd`";
        hard_cap: bool = false;
            flag "--hard-cap";
            help "also stop a call in flight at the dollar caps: each call gets what is left of the story's and the run's caps as `--max-budget-usd` (the smaller of that and `claude.max_budget_usd`). Without it a call that crosses a cap finishes (its cost is known only at its end)";
        retrospective: Retrospective = Retrospective::Off;
            help "`\"run\"`: once the last story of an epic is done in a run (BMAD v6 with sprint-status), run the installed `bmad-retrospective` workflow as an SM agent call, then set `epic-N-retrospective: done`; `\"off\"` never runs it";
        jobs: u32 = 1;
            flag "--jobs";
            help "stories in flight at once. 1 drives them one at a time in the project itself; more runs each in its own git worktree (`.bmad-host/worktrees/<story>`, branch `bmad/<story>`) and integrates them one at a time onto the checked-out branch (README, \"Parallel runs\")";
        same_epic: SameEpic = SameEpic::Serial;
            help "with `jobs` > 1, for a story that names no `depends_on`: `\"serial\"` waits for the earlier stories of its epic, `\"parallel\"` does not (footprints permitting)";
    }

    /// `[git]`: how stories land as commits, and how a parallel run integrates them.
    #[heading = "commits and the integration of parallel stories"]
    [git] GitConfig, GitOverrides {
        integrate: GitIntegrate = GitIntegrate::Rebase;
            help "how a finished story's branch is brought onto the integration branch before its gates run again there: `\"rebase\"` replays its commit on the branch's head, `\"merge\"` merges the head into it; either way it lands as one commit";
        commit: GitCommit = GitCommit::Auto;
            help "`\"story\"`: each story that is done lands as one commit on the checked-out branch, `<id>: <title>` with the review in its body (the project must be a git work tree, clean at the start but for sprint-status); `\"none\"`: no commit (one job only); `\"auto\"`: `story` with `jobs` > 1, `none` with one";
        after_story: Option<String> = None;
            shown "none";
            unset "none";
            help "a command run with `sh -c` at the project root after each story landed as a commit (e.g. `gh pr create ...`), under the gates' supervision (`after_story_timeout`, then its process tree torn down), with `BMAD_HOST_STORY_ID`, `BMAD_HOST_STORY_TITLE`, `BMAD_HOST_STORY_BRANCH` and `BMAD_HOST_COMMIT` set; a failure is reported (`after_story` event) and stops nothing. In a project's file it needs the operator's trust";
        after_story_timeout: Duration = Duration::from_secs(10 * 60);
            help "how long `after_story` may run before its process tree is torn down";
    }
}

/// A gate's `timeout` when its `[[gates]]` entry gives none.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// One `[[gates]]` entry: a project check run after Dev.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateConfig {
    /// Its name, unique among the gates (`--gate NAME` picks it).
    pub name: String,
    /// The command, run with `sh -c` at the project root.
    pub command: String,
    /// How long it may run ([`GATE_TIMEOUT`] unless given).
    pub timeout: Duration,
    /// Whether it runs (after `enabled`, `--skip-gates` and `--gate`).
    pub enabled: bool,
}

/// A notifier's `timeout` when its `[[notify]]` entry gives none.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// The events a `[[notify]]` entry may name in `on`.
pub const NOTIFY_EVENTS: [&str; 5] = [
    "escalated",
    "failed",
    "usage_limit",
    "limit_warning",
    "run_finished",
];

/// Where a notifier sends the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyTarget {
    /// `command = "..."`: run with `sh -c` at the project root, the event's JSON on stdin.
    Command(String),
    /// `webhook = "http://..."`: the event's JSON POSTed to this URL.
    Webhook(String),
}

/// One `[[notify]]` entry: which events reach the operator, and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotifyConfig {
    /// The events it is told of (names from [`NOTIFY_EVENTS`]).
    pub on: Vec<String>,
    /// The command or the webhook.
    pub target: NotifyTarget,
    /// How long one notification may take ([`NOTIFY_TIMEOUT`] unless given): the command is
    /// torn down then, the webhook's attempts given up.
    pub timeout: Duration,
}

impl NotifyConfig {
    /// How the entry is named in messages and `config`: `notify[0]` and its target.
    pub fn describe(&self) -> String {
        match &self.target {
            NotifyTarget::Command(c) => format!("command {c:?}"),
            NotifyTarget::Webhook(u) => format!("webhook {u}"),
        }
    }
}

/// `[plugins.NAME]`: what the operator grants a plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PluginGrant {
    /// Globs of project paths the plugin may read, if its manifest asks for them too.
    pub grant_read: Vec<String>,
    /// `--allowedTools` entries this plugin may ask for, besides `[claude] allowed_tools`.
    pub allowed_tools: Vec<String>,
}

/// The `[claude]` keys that, in a project's file, need the operator's trust: they choose what
/// runs, or what a policy may hand the agent.
pub const TRUSTED_CLAUDE_KEYS: [&str; 5] = [
    "bin",
    "extra_args",
    "allowed_tools",
    "allowed_models",
    "permission_mode",
];

/// A setting of a project's `bmad-host.toml` that runs a command or grants more than the
/// defaults, so it takes effect only once the operator trusted the file (`bmad-host trust`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Restricted {
    /// The key (`claude.bin`, `gates.test`, `plugins.qa.grant_read`).
    pub key: String,
    /// Its value as written in the file.
    pub value: String,
    /// What it would do, completing "the file would ..." (`run \`sh -c "make test"\` as gate \`test\``).
    pub effect: String,
}

/// Whether the project's file is trusted, and what in it needs the trust.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProjectTrust {
    /// The settings of the project's file that need trust, by table and key; empty when it has
    /// none (then it needs no trust).
    pub restricted: Vec<Restricted>,
    /// True when the operator trusts this exact content (or `--trust` / `BMAD_HOST_TRUST=1`
    /// says so): only then are [`restricted`](Self::restricted) in force.
    pub trusted: bool,
}

impl ProjectTrust {
    /// True when the file has settings that need trust and does not have it: they are not in
    /// force.
    pub fn blocked(&self) -> bool {
        !self.trusted && !self.restricted.is_empty()
    }
}

/// Where [`Config::load_layers`] reads its layers from.
pub struct Layers<'a> {
    /// The user's own configuration file (`$XDG_CONFIG_HOME/bmad-host/config.toml`), if any:
    /// below the project's file, and trusted (the operator wrote it).
    pub user_file: Option<&'a Path>,
    /// The project root, where `bmad-host.toml` is read.
    pub root: &'a Path,
    /// The environment (`BMAD_HOST_*`).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The flags.
    pub overrides: &'a Overrides,
    /// Whether the operator trusts the project's file at this path with this exact text.
    pub trusted: &'a dyn Fn(&Path, &str) -> bool,
}

impl fmt::Debug for Layers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layers")
            .field("user_file", &self.user_file)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Which file a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileLayer {
    /// The user's configuration: trusted.
    User,
    /// The project's `bmad-host.toml`: its [`Restricted`] settings apply only when trusted.
    Project { trusted: bool },
}

impl FileLayer {
    /// Whether a restricted setting of this layer is in force.
    fn applies_restricted(self) -> bool {
        !matches!(self, FileLayer::Project { trusted: false })
    }
}

/// The effective configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Config {
    /// The project's file that was read, if any.
    pub file: Option<PathBuf>,
    /// The user's configuration file that was read, if any.
    pub user_file: Option<PathBuf>,
    /// What in the project's file needs the operator's trust, and whether it has it.
    pub trust: ProjectTrust,
    /// Where each entry of the structured tables came from: `gates.NAME`,
    /// `plugins.NAME.grant_read`, `plugins.NAME.allowed_tools`.
    pub provenance: BTreeMap<String, Source>,
    /// `[claude]`.
    pub claude: ClaudeConfig,
    /// `[workflow]`.
    pub workflow: WorkflowConfig,
    /// `[git]`.
    pub git: GitConfig,
    /// Role → plugin name overrides (`[roles]`, `--policy`).
    pub roles: BTreeMap<String, Setting<String>>,
    /// `[plugins.NAME]` grants, by plugin name.
    pub plugins: BTreeMap<String, PluginGrant>,
    /// `[[gates]]`, in file order.
    pub gates: Vec<GateConfig>,
    /// `[[notify]]`, the user's file's first, then the project's (when trusted).
    pub notify: Vec<NotifyConfig>,
}

/// Values given on the command line: the top layer.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Flags that set `[claude]` keys.
    pub claude: ClaudeOverrides,
    /// Flags that set `[workflow]` keys.
    pub workflow: WorkflowOverrides,
    /// Flags that set `[git]` keys.
    pub git: GitOverrides,
    /// `--policy ROLE=NAME`.
    pub policies: Vec<(String, String)>,
    /// `--skip-gates`.
    pub skip_gates: bool,
    /// `--gate NAME` (only these gates) — empty means all enabled gates.
    pub only_gates: Vec<String>,
}

/// The roles `[roles]` and `--policy` may name.
pub const ROLES: [&str; 5] = ["status", "sm", "dev", "qa", "scheduler"];

/// The keys of the structured tables, for validation and suggestions.
const GATE_KEYS: [&str; 4] = ["name", "command", "timeout", "enabled"];
const PLUGIN_KEYS: [&str; 2] = ["grant_read", "allowed_tools"];
const STRUCTURED_TABLES: [&str; 4] = ["roles", "plugins", "gates", "notify"];
const NOTIFY_KEYS: [&str; 4] = ["on", "command", "webhook", "timeout"];

impl Config {
    /// Loads the configuration of the project at `root`: defaults, then `bmad-host.toml` (if
    /// present), then the environment (through `env`), then `overrides`.
    ///
    /// No user file is read and the project's file is taken as trusted: for tests and tools.
    /// The commands use [`Config::load_layers`].
    pub fn load(
        root: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        Config::load_layers(&Layers {
            user_file: None,
            root,
            env,
            overrides,
            trusted: &|_, _| true,
        })
    }

    /// Loads every layer: defaults < the user's file < the project's `bmad-host.toml` <
    /// environment < flags. The project file's [`Restricted`] settings apply only when
    /// `layers.trusted` says the operator trusts its exact text; [`Config::trust`] lists them.
    pub fn load_layers(layers: &Layers<'_>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(path) = layers.user_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    config.apply_file(path, &text, FileLayer::User)?;
                    config.user_file = Some(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        let path = layers.root.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let trusted = (layers.trusted)(&path, &text);
                config.trust.trusted = trusted;
                config.apply_file(&path, &text, FileLayer::Project { trusted })?;
                config.file = Some(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ConfigError::Read { path, source }),
        }
        config.apply_env(layers.env)?;
        config.apply_overrides(layers.overrides);
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other once every layer is applied.
    fn validate(&self) -> Result<(), ConfigError> {
        let (jobs, commit) = (&self.workflow.jobs, &self.git.commit);
        if jobs.value > 1 && commit.value == GitCommit::None {
            return Err(ConfigError::Conflict {
                problem: format!(
                    "`git.commit` is \"none\" ({}) but `workflow.jobs` is {} ({}): a parallel \
                     run lands each story as one commit",
                    commit.source, jobs.value, jobs.source
                ),
                fix: "drop `git.commit` (or set it to \"story\"), or run one job (--jobs 1)".into(),
            });
        }
        let c = &self.claude;
        if c.tool_idle_timeout.value < c.idle_timeout.value {
            return Err(ConfigError::Conflict {
                problem: format!(
                    "`claude.tool_idle_timeout` ({}, {}) is shorter than `claude.idle_timeout` \
                     ({}, {}): a tool call would be cut off sooner than plain silence",
                    humantime::format_duration(c.tool_idle_timeout.value),
                    c.tool_idle_timeout.source,
                    humantime::format_duration(c.idle_timeout.value),
                    c.idle_timeout.source,
                ),
                fix: "raise `claude.tool_idle_timeout` (--tool-idle-timeout) to at least \
                      `claude.idle_timeout`, or lower `claude.idle_timeout`"
                    .into(),
            });
        }
        Ok(())
    }

    /// `Ok` unless the project's file has settings that need trust and is not trusted: then
    /// the error lists them and the command that trusts the file.
    pub fn require_trust(&self) -> Result<(), ConfigError> {
        match &self.file {
            Some(path) if self.trust.blocked() => Err(ConfigError::Untrusted {
                path: path.clone(),
                restricted: self.trust.restricted.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The `[plugins.NAME]` grant of `plugin`, if any.
    pub fn plugin_grant(&self, plugin: &str) -> Option<&PluginGrant> {
        self.plugins.get(plugin)
    }

    /// The plugin serving `role`, if overridden.
    pub fn role(&self, role: &str) -> Option<&str> {
        self.roles.get(role).map(|s| s.value.as_str())
    }

    /// The gates that run, after `--skip-gates` and `enabled`.
    pub fn active_gates(&self) -> impl Iterator<Item = &GateConfig> {
        self.gates.iter().filter(|g| g.enabled)
    }

    fn apply_file(&mut self, path: &Path, text: &str, layer: FileLayer) -> Result<(), ConfigError> {
        let table: toml::Table = text.parse().map_err(|source| ConfigError::Syntax {
            path: path.to_path_buf(),
            source,
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
        let project = matches!(layer, FileLayer::Project { .. });
        let applies = layer.applies_restricted();
        for (key, value) in &table {
            match key.as_str() {
                ClaudeConfig::TABLE => {
                    for (k, v) in as_table(value, &origin, ClaudeConfig::TABLE)? {
                        let restricted = TRUSTED_CLAUDE_KEYS.contains(&k.as_str());
                        // A setting that is not in force is still checked, on a copy.
                        let mut scratch;
                        let target = if restricted && !applies {
                            scratch = self.claude.clone();
                            &mut scratch
                        } else {
                            &mut self.claude
                        };
                        if !target.set_from_file(k, v, &origin, &file)? {
                            return Err(unknown(format!("claude.{k}"), ClaudeConfig::KEYS));
                        }
                        if restricted && project {
                            self.trust.restricted.push(Restricted {
                                key: format!("claude.{k}"),
                                value: v.to_string(),
                                effect: claude_effect(k, v),
                            });
                        }
                    }
                }
                WorkflowConfig::TABLE => {
                    for (k, v) in as_table(value, &origin, WorkflowConfig::TABLE)? {
                        if !self.workflow.set_from_file(k, v, &origin, &file)? {
                            return Err(unknown(format!("workflow.{k}"), WorkflowConfig::KEYS));
                        }
                    }
                }
                GitConfig::TABLE => {
                    for (k, v) in as_table(value, &origin, GitConfig::TABLE)? {
                        // `after_story` runs a command: in force only once trusted.
                        let restricted = k == "after_story";
                        let mut scratch;
                        let target = if restricted && !applies {
                            scratch = self.git.clone();
                            &mut scratch
                        } else {
                            &mut self.git
                        };
                        if !target.set_from_file(k, v, &origin, &file)? {
                            return Err(unknown(format!("git.{k}"), GitConfig::KEYS));
                        }
                        if restricted && project {
                            self.trust.restricted.push(Restricted {
                                key: format!("git.{k}"),
                                value: v.to_string(),
                                effect: format!("run `sh -c {v}` after each story"),
                            });
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
                        for (k, v) in pt {
                            let name = format!("plugins.{plugin}.{k}");
                            let list: Vec<String> = match k.as_str() {
                                "grant_read" | "allowed_tools" => read(v, &origin, &name)?,
                                _ => return Err(unknown(name, &PLUGIN_KEYS)),
                            };
                            if project {
                                let effect = if k == "grant_read" {
                                    format!("let the plugin `{plugin}` read {v}")
                                } else {
                                    format!("let the plugin `{plugin}` give agents the tools {v}")
                                };
                                self.trust.restricted.push(Restricted {
                                    key: name.clone(),
                                    value: v.to_string(),
                                    effect,
                                });
                            }
                            if !applies {
                                continue;
                            }
                            let grant = self.plugins.entry(plugin.clone()).or_default();
                            if k == "grant_read" {
                                grant.grant_read = list;
                            } else {
                                grant.allowed_tools = list;
                            }
                            self.provenance.insert(name, file.clone());
                        }
                        if applies {
                            self.plugins.entry(plugin.clone()).or_default();
                        }
                    }
                }
                "gates" => {
                    for gate in parse_gates(value, &origin, &unknown)? {
                        let name = format!("gates.{}", gate.name);
                        if project {
                            self.trust.restricted.push(Restricted {
                                key: name.clone(),
                                value: format!("{:?}", gate.command),
                                effect: format!(
                                    "run `sh -c {:?}` as the gate `{}`",
                                    gate.command, gate.name
                                ),
                            });
                        }
                        if !applies {
                            continue;
                        }
                        // A later layer's gate replaces the earlier one of the same name.
                        match self.gates.iter_mut().find(|g| g.name == gate.name) {
                            Some(old) => *old = gate,
                            None => self.gates.push(gate),
                        }
                        self.provenance.insert(name, file.clone());
                    }
                }
                "notify" => {
                    for notifier in parse_notify(value, &origin, &unknown)? {
                        let key = format!("notify[{}]", self.notify.len());
                        if project {
                            self.trust.restricted.push(Restricted {
                                key: key.clone(),
                                value: notifier.describe(),
                                effect: match &notifier.target {
                                    NotifyTarget::Command(c) => {
                                        format!("run `sh -c {c:?}` on the events {:?}", notifier.on)
                                    }
                                    NotifyTarget::Webhook(u) => {
                                        format!("send the events {:?} to {u}", notifier.on)
                                    }
                                },
                            });
                        }
                        if !applies {
                            continue;
                        }
                        self.provenance.insert(key, file.clone());
                        self.notify.push(notifier);
                    }
                }
                other => {
                    let known: Vec<&str> = TABLES
                        .iter()
                        .map(|(t, _)| *t)
                        .chain(STRUCTURED_TABLES)
                        .collect();
                    return Err(unknown(other.to_string(), &known));
                }
            }
        }
        Ok(())
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        self.claude.apply_env(env)?;
        self.workflow.apply_env(env)?;
        self.git.apply_env(env)
    }

    fn apply_overrides(&mut self, o: &Overrides) {
        self.claude.apply_overrides(&o.claude);
        self.workflow.apply_overrides(&o.workflow);
        self.git.apply_overrides(&o.git);
        for (role, name) in &o.policies {
            self.roles.insert(
                role.clone(),
                Setting {
                    value: name.clone(),
                    source: Source::Flag("--policy".to_string()),
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

    /// One row per effective setting: `(key, value, source)`, for `bmad-host config`.
    pub fn describe(&self) -> Vec<(String, String, String)> {
        let mut rows = Vec::new();
        self.claude.describe(&mut rows);
        self.workflow.describe(&mut rows);
        self.git.describe(&mut rows);
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
        let source = |key: &str| self.provenance.get(key).unwrap_or(&file);
        for (name, grant) in &self.plugins {
            let key = format!("plugins.{name}.grant_read");
            rows.push(row(&key, format!("{:?}", grant.grant_read), source(&key)));
            if !grant.allowed_tools.is_empty() {
                let key = format!("plugins.{name}.allowed_tools");
                rows.push(row(
                    &key,
                    format!("{:?}", grant.allowed_tools),
                    source(&key),
                ));
            }
        }
        for g in &self.gates {
            let key = format!("gates.{}", g.name);
            rows.push(row(
                &key,
                format!(
                    "{:?} timeout {}{}",
                    g.command,
                    humantime::format_duration(g.timeout),
                    if g.enabled { "" } else { " (disabled)" }
                ),
                source(&key),
            ));
        }
        for (i, n) in self.notify.iter().enumerate() {
            let key = format!("notify[{i}]");
            rows.push(row(
                &key,
                format!(
                    "{} on {:?} timeout {}",
                    n.describe(),
                    n.on,
                    humantime::format_duration(n.timeout)
                ),
                source(&key),
            ));
        }
        // What an untrusted project file would set, and that is not in force.
        if self.trust.blocked() {
            for r in &self.trust.restricted {
                rows.push((
                    r.key.clone(),
                    r.value.clone(),
                    format!("{file} (not trusted, not in force: bmad-host trust)"),
                ));
            }
        }
        rows
    }
}

/// The `[[gates]]` entries of one file, checked (names unique within the file).
fn parse_gates(
    value: &toml::Value,
    origin: &str,
    unknown: &dyn Fn(String, &[&str]) -> ConfigError,
) -> Result<Vec<GateConfig>, ConfigError> {
    let list = value.as_array().ok_or_else(|| {
        invalid(
            origin,
            "gates",
            "must be an array of tables: write each gate as [[gates]]",
        )
    })?;
    let mut gates: Vec<GateConfig> = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let prefix = format!("gates[{i}]");
        let t = as_table(g, origin, &prefix)?;
        let mut gate = GateConfig {
            name: String::new(),
            command: String::new(),
            timeout: GATE_TIMEOUT,
            enabled: true,
        };
        for (k, v) in t {
            let name = format!("{prefix}.{k}");
            match k.as_str() {
                "name" => gate.name = read(v, origin, &name)?,
                "command" => gate.command = read(v, origin, &name)?,
                "timeout" => gate.timeout = read(v, origin, &name)?,
                "enabled" => gate.enabled = read(v, origin, &name)?,
                _ => return Err(unknown(name, &GATE_KEYS)),
            }
        }
        for (key, val) in [("name", &gate.name), ("command", &gate.command)] {
            if val.trim().is_empty() {
                return Err(invalid(
                    origin,
                    &format!("{prefix}.{key}"),
                    "is required and must not be empty",
                ));
            }
        }
        if gates.iter().any(|g| g.name == gate.name) {
            return Err(invalid(
                origin,
                &format!("{prefix}.name"),
                format!("`{}` is used by two gates", gate.name),
            ));
        }
        gates.push(gate);
    }
    Ok(gates)
}

/// The `[[notify]]` entries of one file, checked: `on` names known events, and exactly one of
/// `command` and `webhook` is given (a webhook an `http://` or `https://` URL).
fn parse_notify(
    value: &toml::Value,
    origin: &str,
    unknown: &dyn Fn(String, &[&str]) -> ConfigError,
) -> Result<Vec<NotifyConfig>, ConfigError> {
    let list = value.as_array().ok_or_else(|| {
        invalid(
            origin,
            "notify",
            "must be an array of tables: write each notifier as [[notify]]",
        )
    })?;
    let mut out = Vec::new();
    for (i, n) in list.iter().enumerate() {
        let prefix = format!("notify[{i}]");
        let t = as_table(n, origin, &prefix)?;
        let mut on: Vec<String> = Vec::new();
        let mut command: Option<String> = None;
        let mut webhook: Option<String> = None;
        let mut timeout = NOTIFY_TIMEOUT;
        for (k, v) in t {
            let name = format!("{prefix}.{k}");
            match k.as_str() {
                "on" => on = read(v, origin, &name)?,
                "command" => command = Some(read(v, origin, &name)?),
                "webhook" => webhook = Some(read(v, origin, &name)?),
                "timeout" => timeout = read(v, origin, &name)?,
                _ => return Err(unknown(name, &NOTIFY_KEYS)),
            }
        }
        if on.is_empty() {
            return Err(invalid(
                origin,
                &format!("{prefix}.on"),
                format!("is required: a list of events among {NOTIFY_EVENTS:?}"),
            ));
        }
        for event in &on {
            if !NOTIFY_EVENTS.contains(&event.as_str()) {
                let hint = nearest(event, &NOTIFY_EVENTS)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(invalid(
                    origin,
                    &format!("{prefix}.on"),
                    format!(
                        "names the unknown event `{event}`{hint}; the events are {NOTIFY_EVENTS:?}"
                    ),
                ));
            }
        }
        let target = match (command, webhook) {
            (Some(c), None) if !c.trim().is_empty() => NotifyTarget::Command(c),
            (None, Some(u)) if u.starts_with("http://") || u.starts_with("https://") => {
                NotifyTarget::Webhook(u)
            }
            (None, Some(u)) => {
                return Err(invalid(
                    origin,
                    &format!("{prefix}.webhook"),
                    format!("`{u}` must be an http:// or https:// URL"),
                ));
            }
            _ => {
                return Err(invalid(
                    origin,
                    &prefix,
                    "needs exactly one of `command` (not empty) and `webhook`",
                ));
            }
        };
        out.push(NotifyConfig {
            on,
            target,
            timeout,
        });
    }
    Ok(out)
}

/// What a restricted `[claude]` key of a project's file would do.
fn claude_effect(key: &str, value: &toml::Value) -> String {
    match key {
        "bin" => format!("run {value} as the Claude CLI"),
        "extra_args" => format!("pass {value} to every Claude call"),
        "allowed_tools" => format!("let every policy give agents the tools {value}"),
        "allowed_models" => format!("let every policy choose the models {value}"),
        _ => format!("run agents with --permission-mode {value}"),
    }
}

/// `path` as one shell word.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+,:@%".contains(&b))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// The message of [`ConfigError::Untrusted`].
fn untrusted_text(path: &Path, restricted: &[Restricted]) -> String {
    use std::fmt::Write as _;
    let mut text = format!("{} is not trusted, and it would:", path.display());
    for r in restricted {
        let _ = write!(text, "\n  - {} ({} = {})", r.effect, r.key, r.value);
    }
    let dir = path.parent().unwrap_or(path);
    let _ = write!(
        text,
        "\nRead the file; to trust this exact content, run:\n  bmad-host trust --project {}\n\
         (or pass --trust, or set BMAD_HOST_TRUST=1, to trust it for one command)",
        shell_word(dir)
    );
    text
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

/// A value of the structured tables, read like a setting of its type.
fn read<T: Value>(v: &toml::Value, origin: &str, key: &str) -> Result<T, ConfigError> {
    T::from_toml(v).map_err(|problem| invalid(origin, key, problem))
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

/// `docs/configuration.md`: the reference of every setting, generated from the table above.
pub fn reference() -> String {
    use std::fmt::Write as _;
    let docs = setting_docs();
    let mut out = String::from(REFERENCE_HEAD);
    for (table, heading) in TABLES {
        let _ = write!(
            out,
            "\n## `[{table}]`: {heading}\n\n\
             | key | default | env | flag | meaning |\n\
             | --- | --- | --- | --- | --- |\n"
        );
        for d in docs.iter().filter(|d| d.table == *table) {
            let flag = d.flag.map(|f| format!(" `{f}` ")).unwrap_or(" ".into());
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |{flag}| {} |",
                d.key, d.default, d.env, d.help
            );
        }
    }
    out.push_str(
        &REFERENCE_TAIL
            .replace(
                "{gate_timeout}",
                &humantime::format_duration(GATE_TIMEOUT).to_string(),
            )
            .replace(
                "{notify_timeout}",
                &humantime::format_duration(NOTIFY_TIMEOUT).to_string(),
            ),
    );
    out
}

const REFERENCE_HEAD: &str = "# Configuration

<!-- Generated from host/src/config.rs by `cargo xtask docs`; edit the table there. -->

bmad-host reads its settings in five layers, each overriding the one before:

1. built-in defaults,
2. the user's `config.toml` in `$XDG_CONFIG_HOME/bmad-host/` (else `~/.config/bmad-host/`; optional),
3. `bmad-host.toml` at the project root (optional; what it runs or grants needs trust, below),
4. `BMAD_HOST_*` environment variables,
5. command-line flags.

Both files take the same keys. `bmad-host config [--project DIR] [--json]` prints every effective
value and where it came from (`default`, `file <path>` for either file, `env <VAR>`,
`flag <--name>`). An unknown key in either file is an error (exit 2) that names the key and
suggests the nearest known one:

```
error: /src/shop/bmad-host.toml: unknown key `claude.timout` (did you mean `claude.timeout`?)
```

Durations are [humantime](https://docs.rs/humantime) strings: `90s`, `30m`, `2h`, `1h 30m`.
";

const REFERENCE_TAIL: &str = "
## `[roles]`: which plugin serves which role

```toml
[roles]
qa = \"qa-strict\"     # default: the plugin named like the role (status, sm, dev, qa)
scheduler = \"my-scheduler\"  # which stories of a parallel run start (bmad:policy@0.2.0)
```
Flag: `--policy qa=qa-strict` (repeatable). The `scheduler` role is optional: the embedded
default scheduler serves it unless `[roles] scheduler` names another plugin (`role = \"scheduler\"`,
`wit = \"0.2.0\"` or later).

## `[plugins.NAME]`: what the operator grants a plugin

```toml
[plugins.qa-strict]
grant_read = [\"docs/qa/**\", \"docs/stories/**\"]
allowed_tools = [\"Bash(npm test)\"]
```
A plugin can read a file only if its `plugin.toml` requests the path AND this grants it.
`allowed_tools` adds to `[claude] allowed_tools` for this plugin alone: the `--allowedTools`
entries its `invoke-agent` requests may name. A request outside the grant fails the step with a
message naming the plugin, the tool or model and the key that grants it.

## `[[gates]]`: the project's own checks, run after Dev

```toml
[[gates]]
name = \"test\"
command = \"cargo test --quiet\"
timeout = \"15m\"      # default {gate_timeout}
enabled = true       # default true

[[gates]]
name = \"lint\"
command = \"cargo clippy -- -D warnings\"
```
Each command runs with `sh -c` at the project root under the same process-tree supervision as
agent calls. Flags: `--skip-gates`, `--gate NAME` (only the named gates; repeatable). Gates of a
project's file run only once the file is trusted (below); a gate of the project's file replaces
the user's gate of the same name.

## `[[notify]]`: word that reaches the operator

```toml
[[notify]]
on = [\"escalated\", \"failed\", \"usage_limit\", \"run_finished\"]
command = \"curl -s -d @- https://ntfy.sh/my-night-run\"   # the event's JSON on stdin
timeout = \"30s\"      # default {notify_timeout}

[[notify]]
on = [\"limit_warning\", \"run_finished\"]
webhook = \"http://127.0.0.1:8080/bmad\"                  # the event's JSON, POSTed
```
`on` names the events: `escalated` and `failed` (a `story_finished` with that result),
`usage_limit`, `limit_warning` (a `rate_limit` event with status `allowed_warning`) and
`run_finished`; the JSON is the `--json` event itself. A `command` runs with `sh -c` at the
project root under the gates' supervision (its own process group, torn down with its
descendants at its `timeout`). A `webhook` is one POST (`Content-Type: application/json`) with
one retry, both within the `timeout`; a status other than 2xx is a failure (`https://` through rustls,
with Mozilla's root certificates). Notifiers run beside
the run and never stop or slow it: a failing one (an exit status other than 0, a timeout, an
HTTP error) is reported as a warning and a `notify_failed` event, and at its end the run waits
for the notifiers still running, each at most its `timeout`. Entries of the user's file and of
a (trusted) project's file all apply.

## Trust: what a project's file may run

A project's `bmad-host.toml` comes with the repository, so whoever can commit to it could choose
what runs on your machine. These keys of a **project's** file take effect only once you trusted
that exact content at that path (`bmad-host trust [--project DIR]`, stored as a hash in
`$XDG_CONFIG_HOME/bmad-host/trusted/`; any edit needs trusting again):

- `[claude] bin`, `extra_args`, `allowed_tools`, `allowed_models`, `permission_mode`,
- every `[[gates]]` entry,
- every `[[notify]]` entry (the command it runs, the URL it sends the run's events to),
- `[plugins.NAME] grant_read` and `allowed_tools`.

`bmad-host run` on an untrusted file that sets any of them exits 2, listing each command and
grant the file would add and the command that trusts it; `--trust` (or `BMAD_HOST_TRUST=1`)
trusts it for one command, for CI and scripts. `status`, `plugins` and `config` warn and leave
those keys out of force. A project file without them needs no trust, and the user's own
`config.toml`, the environment and the flags never do.

## Other environment

| variable | meaning |
| --- | --- |
| `BMAD_HOST_PLUGINS` | same as `--plugins DIR` |
| `BMAD_HOST_TRUST` | `1`: same as `--trust` (trust the project's `bmad-host.toml` for this command) |
| `BMAD_HOST_CACHE_DIR` | where compiled components are cached (default `$XDG_CACHE_HOME/bmad-host/components`); used only when it is owned by you and writable by no one else |
| `BMAD_HOST_LOG` | log filter (`debug`, `bmad_host=trace`, ...) overriding `-v` / `-q` |
";

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

    /// The message `main` prints: the error and its causes.
    fn report(err: &ConfigError) -> String {
        let mut text = err.to_string();
        let mut cause = std::error::Error::source(err);
        while let Some(c) = cause {
            text.push_str(&format!(": {c}"));
            cause = c.source();
        }
        text
    }

    #[test]
    fn layers_apply_in_order_with_provenance() {
        let text = "[claude]\ntimeout = \"20m\"\nmax_turns = 50\nretries = 4\n[workflow]\nmax_cycles = 5\n";
        let o = Overrides {
            claude: ClaudeOverrides {
                max_turns: Some(7),
                ..ClaudeOverrides::default()
            },
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
    fn every_setting_has_its_variable() {
        let all: Vec<(String, String)> = setting_docs()
            .iter()
            .map(|d| (env_name(d.table, d.key), d.table.to_string()))
            .collect();
        let env: Vec<(&str, &str)> = all
            .iter()
            .map(|(name, _)| {
                let value = match name.as_str() {
                    n if n.ends_with("TIMEOUT") => "7m",
                    n if n.ends_with("USD") => "1.5",
                    n if n.ends_with("RETROSPECTIVE") => "run",
                    n if n.ends_with("SAME_EPIC") => "parallel",
                    n if n.ends_with("INTEGRATE") => "merge",
                    n if n.ends_with("COMMIT") => "story",
                    n if n.ends_with("JOBS") => "2",
                    n if n.ends_with("LIMIT")
                        || n.ends_with("DRAFTS")
                        || n.ends_with("REVIEW")
                        || n.ends_with("CAP")
                        || n.ends_with("KEEPER") =>
                    {
                        "true"
                    }
                    n if n.ends_with("TURNS")
                        || n.ends_with("RETRIES")
                        || n.ends_with("CYCLES")
                        || n.ends_with("BYTES")
                        || n.ends_with("TOKENS") =>
                    {
                        "9"
                    }
                    _ => "x",
                };
                (name.as_str(), value)
            })
            .collect();
        let c = load("", &env, &Overrides::default()).expect("config");
        for (key, _, source) in c.describe().iter().take(all.len()) {
            assert!(source.starts_with("env BMAD_HOST_"), "{key}: {source}");
        }
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
        // The parser's report is the cause, shown after the file's name.
        assert!(report(&err).contains("is not valid TOML: TOML parse error at line 1"));
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

    fn load_two(user: &str, project: &str, trusted: bool) -> Result<Config, ConfigError> {
        let home = tempfile::tempdir().expect("tempdir");
        let dir = tempfile::tempdir().expect("tempdir");
        let user_file = home.path().join("config.toml");
        std::fs::write(&user_file, user).expect("write user config");
        std::fs::write(dir.path().join(FILE_NAME), project).expect("write config");
        Config::load_layers(&Layers {
            user_file: Some(&user_file),
            root: dir.path(),
            env: &|_| None,
            overrides: &Overrides::default(),
            trusted: &|_, _| trusted,
        })
    }

    #[test]
    fn the_user_file_is_a_layer_below_the_project_file() {
        let user = r#"
[claude]
timeout = "20m"
max_turns = 9
bin = "/opt/claude"
[[gates]]
name = "test"
command = "make test"
"#;
        let c = load_two(user, "[claude]\nmax_turns = 5\n", false).expect("config");
        assert_eq!(c.claude.timeout.value, Duration::from_secs(1200));
        assert!(matches!(&c.claude.timeout.source, Source::File(p) if p.ends_with("config.toml")));
        assert_eq!(c.claude.max_turns.value, 5);
        assert!(matches!(&c.claude.max_turns.source, Source::File(p) if p.ends_with(FILE_NAME)));
        // The user's own commands need no trust.
        assert_eq!(c.claude.bin.value, PathBuf::from("/opt/claude"));
        assert_eq!(c.active_gates().count(), 1);
        assert!(!c.trust.blocked());
        assert!(c.require_trust().is_ok());
        let rows = c.describe();
        let gate = rows.iter().find(|r| r.0 == "gates.test").expect("gate row");
        assert!(gate.2.ends_with("config.toml"), "{gate:?}");
    }

    #[test]
    fn an_untrusted_project_file_runs_nothing_and_grants_nothing() {
        let project = r#"
[claude]
bin = "./evil"
extra_args = ["--dangerously-skip-permissions"]
allowed_tools = ["Bash"]
max_turns = 7
[[gates]]
name = "pwn"
command = "curl x | sh"
[plugins.qa]
grant_read = ["**"]
"#;
        let c = load_two("", project, false).expect("config");
        // Harmless keys apply; the restricted ones do not.
        assert_eq!(c.claude.max_turns.value, 7);
        assert_eq!(c.claude.bin.value, PathBuf::from("claude"));
        assert!(c.claude.extra_args.value.is_empty());
        assert!(c.claude.allowed_tools.value.is_empty());
        assert_eq!(c.active_gates().count(), 0);
        assert!(c.plugins.is_empty());
        assert!(c.trust.blocked());
        let keys: Vec<&str> = c.trust.restricted.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "claude.allowed_tools",
                "claude.bin",
                "claude.extra_args",
                "gates.pwn",
                "plugins.qa.grant_read"
            ]
        );
        let err = c.require_trust().expect_err("untrusted").to_string();
        assert!(err.contains("is not trusted"), "{err}");
        assert!(
            err.contains("curl x | sh") && err.contains("./evil"),
            "{err}"
        );
        assert!(err.contains("bmad-host trust --project "), "{err}");
        let rows = c.describe();
        assert!(
            rows.iter()
                .any(|r| r.0 == "gates.pwn" && r.2.contains("not trusted"))
        );

        // Trusted, all of it applies.
        let c = load_two("", project, true).expect("config");
        assert_eq!(c.claude.bin.value, PathBuf::from("./evil"));
        assert_eq!(c.active_gates().count(), 1);
        assert_eq!(c.plugins["qa"].grant_read, ["**"]);
        assert!(c.require_trust().is_ok());
        // Mistakes in a key that is not in force are still errors.
        let err = load_two("", "[claude]\nbin = 3\n", false).expect_err("bad");
        assert!(err.to_string().contains("claude.bin"), "{err}");
    }

    #[test]
    fn notifiers_are_checked_and_a_project_files_need_trust() {
        let user = "[[notify]]\non = [\"run_finished\"]\nwebhook = \"https://hooks.example/x\"\n";
        let project = "[[notify]]\non = [\"escalated\", \"failed\"]\ncommand = \"mail me\"\ntimeout = \"5s\"\n";
        let c = load_two(user, project, false).expect("config");
        // The user's applies; the untrusted project's does not, and is listed.
        assert_eq!(c.notify.len(), 1);
        assert_eq!(
            c.notify[0].target,
            NotifyTarget::Webhook("https://hooks.example/x".into())
        );
        assert_eq!(c.notify[0].timeout, NOTIFY_TIMEOUT);
        assert!(c.trust.blocked());
        // Named by the place it would take among the notifiers, after the user's.
        assert_eq!(c.trust.restricted[0].key, "notify[1]");
        assert!(c.trust.restricted[0].effect.contains("mail me"));
        let c = load_two(user, project, true).expect("config");
        assert_eq!(c.notify.len(), 2);
        assert_eq!(c.notify[1].target, NotifyTarget::Command("mail me".into()));
        assert_eq!(c.notify[1].timeout, Duration::from_secs(5));
        assert!(c.describe().iter().any(|r| r.0 == "notify[1]"));

        let bad = |text: &str| {
            load(text, &[], &Overrides::default())
                .expect_err("invalid")
                .to_string()
        };
        let err = bad("[[notify]]\non = [\"escalate\"]\ncommand = \"x\"\n");
        assert!(
            err.contains("unknown event `escalate`") && err.contains("did you mean `escalated`"),
            "{err}"
        );
        let err = bad("[[notify]]\non = [\"failed\"]\ncommand = \"x\"\nwebhook = \"http://h\"\n");
        assert!(err.contains("exactly one of `command`"), "{err}");
        let err = bad("[[notify]]\non = [\"failed\"]\nwebhook = \"ftp://h\"\n");
        assert!(err.contains("http:// or https://"), "{err}");
        let err = bad("[[notify]]\ncommand = \"x\"\n");
        assert!(err.contains("notify[0].on` is required"), "{err}");
        let err = bad("[[notify]]\non = [\"failed\"]\ncomand = \"x\"\n");
        assert!(err.contains("did you mean `notify[0].command`"), "{err}");
    }

    #[test]
    fn spend_caps_are_positive() {
        let c = load(
            "[workflow]\nmax_story_usd = 2\nmax_run_tokens = 500000\nhard_cap = true\n",
            &[],
            &Overrides::default(),
        )
        .expect("config");
        assert_eq!(c.workflow.max_story_usd.value, Some(2.0));
        assert_eq!(c.workflow.max_run_tokens.value, Some(500_000));
        assert!(c.workflow.hard_cap.value);
        for text in [
            "[workflow]\nmax_run_usd = 0\n",
            "[workflow]\nmax_story_tokens = -1\n",
        ] {
            let err = load(text, &[], &Overrides::default()).expect_err("not positive");
            assert!(err.to_string().contains("workflow.max_"), "{err}");
        }
        let err = load(
            "",
            &[("BMAD_HOST_WORKFLOW_MAX_RUN_USD", "-1")],
            &Overrides::default(),
        )
        .expect_err("negative");
        assert!(
            err.to_string().contains("positive number of dollars"),
            "{err}"
        );
    }

    #[test]
    fn shell_words_quote_what_the_shell_would_split() {
        assert_eq!(shell_word(Path::new("/src/shop")), "/src/shop");
        assert_eq!(shell_word(Path::new("/src/my shop")), "'/src/my shop'");
        assert_eq!(shell_word(Path::new("/src/it's")), r"'/src/it'\''s'");
    }

    /// `docs/configuration.md` is generated from the table: it must be the committed page.
    /// `cargo xtask docs` (this test with `UPDATE_EXPECT=1`) rewrites it.
    #[test]
    fn configuration_docs_are_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
        let want = reference();
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(&path, &want).expect("write docs/configuration.md");
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/configuration.md is not current with the settings table in host/src/config.rs: \
             run `cargo xtask docs` and commit the result"
        );
    }
}
