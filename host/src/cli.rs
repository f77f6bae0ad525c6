//! The command line as typed: clap derive definitions and nothing else.
//!
//! These are the raw arguments. [`crate::commands`] resolves them once into a
//! [`Context`](crate::context::Context) (and, for `run`, a [`Plan`](crate::context::Plan)); no
//! module below `commands` sees a clap type. Exit codes are in [`crate::exit`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{ClaudeOverrides, GitOverrides, Overrides, WorkflowOverrides};
use crate::context::Options;
use crate::ui::Verbosity;

/// Drives a BMAD project's stories to Done with the Claude Code CLI as SM, Dev and QA;
/// every decision is taken by a WASM policy component.
#[derive(Debug, Parser)]
#[command(name = "bmad-host", version, propagate_version = true)]
#[command(after_help = "Examples:
  bmad-host run --plugins plugins/ --project ~/src/shop --epic 1
  bmad-host status --project ~/src/shop
  bmad-host report --project ~/src/shop
  bmad-host plugins check --plugins plugins/")]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// The BMAD project's root.
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub project: PathBuf,
    /// A folder of plugin folders (each with plugin.toml and a component), added to the
    /// plugins embedded in bmad-host; one named like an embedded plugin replaces it.
    #[arg(long, global = true, value_name = "DIR", env = "BMAD_HOST_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// Machine-readable output: NDJSON events (run) or JSON (other commands) on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail (repeat for debug logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the workflow: draft, develop and review stories until done or a limit stops it.
    #[command(after_help = "Examples:
  bmad-host run --plugins plugins/                      # every story of every epic
  bmad-host run --plugins plugins/ --epic 2 --json      # epic 2, NDJSON events on stdout
  bmad-host run --plugins plugins/ --story 1.3 --dry-run
  bmad-host run --plugins plugins/ --policy qa=qa-strict --max-cycles 2 --timeout 45m

A run that stopped (crash, Ctrl-C, reboot) resumes where it stopped; --fresh starts over.")]
    Run(RunArgs),
    /// Serve the story workflow of a durable-execution engine (`--engine restate`): a worker.
    ///
    /// Needs a bmad-host built with the `restate` feature. Register the worker's address with
    /// the Restate server; `bmad-host run --engine restate` then submits stories to it.
    #[command(after_help = "Examples:
  bmad-host worker --engine restate --listen 127.0.0.1:9080 --project ~/src/shop --plugins plugins/
  restate deployments register http://127.0.0.1:9080")]
    Worker(WorkerArgs),
    /// Spread the Restate server's requests over several workers (feature `restate`).
    ///
    /// Restate sends all of a deployment's invocations over one HTTP/2 connection: register this
    /// balancer as the one deployment, and it gives each new invocation to the worker with the
    /// fewest open, so that each worker drives its own story.
    #[command(after_help = "Examples:
  bmad-host balance --listen 0.0.0.0:9070 http://10.0.0.5:9080 http://10.0.0.6:9080
  restate deployments register http://10.0.0.4:9070")]
    Balance(BalanceArgs),
    /// Show every story: id, title, file, parsed state, raw status, gate, and journal progress.
    #[command(after_help = "Examples:
  bmad-host status --project ~/src/shop
  bmad-host status --json | jq 'select(.state != \"done\")'")]
    Status(StatusArgs),
    /// Show the journaled steps of the latest run.
    #[command(after_help = "Examples:
  bmad-host log
  bmad-host log --story 1.2 --json")]
    Log(LogArgs),
    /// Write a run's report: one self-contained HTML page (timelines, findings, spend).
    ///
    /// Read from the journal only, without the run lock: it works on a finished, an interrupted
    /// or a running run. The page loads nothing from anywhere; its transcript links are relative
    /// to where it is written.
    #[command(after_help = "Examples:
  bmad-host report                           # the latest run, in .bmad-host/reports/
  bmad-host report --run 20261123T154700Z-1a2b -o night.html
  xdg-open \"$(bmad-host report --project ~/src/shop)\"")]
    Report(ReportArgs),
    /// List, check or export the plugins (the embedded ones and those in --plugins DIR).
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// Print the effective configuration and where each value came from.
    #[command(after_help = "Examples:
  bmad-host config --project ~/src/shop
  BMAD_HOST_CLAUDE_TIMEOUT=2h bmad-host config --json")]
    Config(ConfigArgs),
    /// Trust the project's bmad-host.toml as it is now, so its commands and grants take effect.
    ///
    /// Until then, `run` refuses a project file that sets claude.bin, extra_args, allowed_tools,
    /// allowed_models or permission_mode, [[gates]], [[notify]], or [plugins.NAME] grant_read
    /// or allowed_tools.
    #[command(after_help = "Examples:
  bmad-host trust                        # the project in the current directory
  bmad-host trust --project ~/src/shop

The trust is for this exact content at this path: after any edit, trust the file again.
It is stored in $XDG_CONFIG_HOME/bmad-host/trusted/ (else ~/.config/bmad-host/trusted/).")]
    Trust(TrustArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  bmad-host completions bash > ~/.local/share/bash-completion/completions/bmad-host
  bmad-host completions zsh > ~/.zfunc/_bmad-host")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `bmad-host run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// Only stories of this epic.
    #[arg(long, value_name = "N")]
    pub epic: Option<u32>,
    /// Only this story (e.g. 1.3).
    #[arg(long, value_name = "ID")]
    pub story: Option<String>,
    /// The flags that override configuration values.
    #[command(flatten)]
    pub settings: SettingArgs,
    /// Show the plan (each story, its state, what would run next) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start a new run instead of resuming an unfinished one (old runs are kept).
    #[arg(long)]
    pub fresh: bool,
    /// Where the stories run: `local` (this process, the project's journal) or `restate`
    /// (workflows of a Restate server, run by `bmad-host worker`s; needs --restate).
    #[arg(long, value_enum, default_value_t = Engine::Local, hide_possible_values = true)]
    pub engine: Engine,
    /// The Restate server's ingress URL (with --engine restate), e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL", required_if_eq("engine", "restate"))]
    pub restate: Option<String>,
}

/// Where a run's stories are driven and journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// In this process, journaled in the project's SQLite journal.
    Local,
    /// As Restate workflows, on `bmad-host worker`s (feature `restate`).
    Restate,
}

/// `bmad-host worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// The engine whose workflows this worker serves (only `restate`).
    #[arg(long, value_enum, hide_possible_values = true)]
    pub engine: Engine,
    /// The address the worker listens on for the engine, e.g. 127.0.0.1:9080.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The Restate server's ingress URL, where the worker takes each story's lease, e.g.
    /// http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub restate: String,
    /// How long a story's lease lasts without renewal: after a worker dies, another one waits
    /// this long at most before it redoes the call (e.g. 15s).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "15s")]
    pub lease_ttl: Duration,
    /// The flags that override configuration values.
    #[command(flatten)]
    pub settings: SettingArgs,
}

/// `bmad-host balance`.
#[derive(Debug, Args)]
pub struct BalanceArgs {
    /// The address the Restate server reaches the balancer on, e.g. 0.0.0.0:9070.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Each worker's URL (its `--listen`), e.g. http://10.0.0.5:9080.
    #[arg(value_name = "WORKER", required = true)]
    pub workers: Vec<String>,
}

/// The flags that override configuration values (`run`, and `config` to preview them).
#[derive(Debug, Args, Clone, Default)]
pub struct SettingArgs {
    /// The Claude Code CLI to run (default: `claude` on PATH).
    #[arg(long, value_name = "PATH")]
    pub claude_bin: Option<PathBuf>,
    /// Dev/QA rounds per story before escalating.
    #[arg(long, value_name = "N")]
    pub max_cycles: Option<u32>,
    /// Wall-clock limit per agent call (e.g. 90s, 30m, 2h).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Limit on silence between agent output lines (paused while a tool runs).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub idle_timeout: Option<Duration>,
    /// Limit on silence while a tool call is open (at least --idle-timeout).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub tool_idle_timeout: Option<Duration>,
    /// Max agent turns per call.
    #[arg(long, value_name = "N")]
    pub max_turns: Option<u32>,
    /// Use plugin NAME for ROLE (status, sm, dev, qa), e.g. qa=qa-strict.
    #[arg(long, value_name = "ROLE=NAME", value_parser = parse_policy)]
    pub policy: Vec<(String, String)>,
    /// Do not run the quality gates.
    #[arg(long)]
    pub skip_gates: bool,
    /// Run only this gate (repeatable).
    #[arg(long, value_name = "NAME", conflicts_with = "skip_gates")]
    pub gate: Vec<String>,
    /// On a usage limit, wait for the reset time instead of stopping.
    #[arg(long)]
    pub wait_on_limit: bool,
    /// Spend cap per story in API-equivalent dollars (the story is escalated once reached).
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub max_story_usd: Option<f64>,
    /// Spend cap for the run in API-equivalent dollars (the run stops once reached).
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub max_run_usd: Option<f64>,
    /// Token cap per story (input + output + cache tokens).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_story_tokens: Option<u64>,
    /// Token cap for the run (input + output + cache tokens).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_run_tokens: Option<u64>,
    /// Stop a call in flight at the dollar caps: pass what is left of them to the CLI as
    /// --max-budget-usd.
    #[arg(long)]
    pub hard_cap: bool,
    /// Stories in flight at once, each in its own git worktree (default 1: one at a time, in
    /// the project itself).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Trust the project's bmad-host.toml for this command only (for CI and scripts; see
    /// `bmad-host trust`).
    #[arg(long, env = "BMAD_HOST_TRUST", value_parser = clap::builder::FalseyValueParser::new())]
    pub trust: bool,
}

impl SettingArgs {
    /// The configuration layer these flags make.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            claude: ClaudeOverrides {
                bin: self.claude_bin.clone(),
                timeout: self.timeout,
                idle_timeout: self.idle_timeout,
                tool_idle_timeout: self.tool_idle_timeout,
                max_turns: self.max_turns,
                wait_on_limit: self.wait_on_limit.then_some(true),
            },
            workflow: WorkflowOverrides {
                max_cycles: self.max_cycles,
                max_story_usd: self.max_story_usd.map(Some),
                max_run_usd: self.max_run_usd.map(Some),
                max_story_tokens: self.max_story_tokens.map(Some),
                max_run_tokens: self.max_run_tokens.map(Some),
                hard_cap: self.hard_cap.then_some(true),
                jobs: self.jobs,
            },
            git: GitOverrides {},
            policies: self.policy.clone(),
            skip_gates: self.skip_gates,
            only_gates: self.gate.clone(),
        }
    }
}

impl Common {
    /// The flags as the library takes them.
    pub fn options(&self) -> Options {
        Options {
            project: self.project.clone(),
            plugins: self.plugins.clone(),
            json: self.json,
            verbosity: self.verbosity(),
            trust: env_trust(),
        }
    }

    /// How much people see, from `-q` and `-v`.
    pub fn verbosity(&self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else if self.verbose > 0 {
            Verbosity::Verbose
        } else {
            Verbosity::Normal
        }
    }
}

/// `bmad-host status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// Only stories of this epic.
    #[arg(long, value_name = "N")]
    pub epic: Option<u32>,
    /// Show the stories' workflows as the Restate server at this admin URL keeps them (runs
    /// made with --engine restate), e.g. http://127.0.0.1:9070.
    #[arg(long, value_name = "URL")]
    pub restate_admin: Option<String>,
}

/// `bmad-host log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// Only this story's steps.
    #[arg(long, value_name = "ID")]
    pub story: Option<String>,
    /// Show the steps the Restate server at this admin URL journaled (runs made with --engine
    /// restate), e.g. http://127.0.0.1:9070.
    #[arg(long, value_name = "URL")]
    pub restate_admin: Option<String>,
}

/// `bmad-host report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// The run to report (default: the latest; `bmad-host log --json` shows run ids).
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Where to write the page (default: .bmad-host/reports/<run-id>.html in the project).
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `bmad-host plugins ...`.
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Each plugin with its role, version, WIT version and capabilities.
    #[command(after_help = "Example:\n  bmad-host plugins list --plugins plugins/")]
    List(PluginsArgs),
    /// Load every plugin and report problems; exit 2 if any plugin is unusable.
    #[command(after_help = "Example:\n  bmad-host plugins check --plugins plugins/ --json")]
    Check(PluginsArgs),
    /// Write the plugins embedded in bmad-host to DIR (one folder each: plugin.toml and the
    /// component), as a starting point for your own; use them with --plugins DIR.
    #[command(
        after_help = "Example:\n  bmad-host plugins export my-plugins/ && bmad-host plugins list --plugins my-plugins/"
    )]
    Export(ExportArgs),
}

/// `bmad-host plugins export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// The folder to write the plugin folders into (created if missing; existing plugin
    /// folders are not overwritten).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `bmad-host plugins list|check`.
#[derive(Debug, Args)]
pub struct PluginsArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
}

/// `bmad-host trust`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
}

/// `bmad-host config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The common flags.
    #[command(flatten)]
    pub common: Common,
    /// The configuration as `run` would see it with these flags.
    #[command(flatten)]
    pub settings: SettingArgs,
}

/// `BMAD_HOST_TRUST` set to anything but a false word (`0`, `false`, `no`, `off`, `n`, `f`),
/// as the `--trust` flag reads it.
fn env_trust() -> bool {
    std::env::var("BMAD_HOST_TRUST").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        !v.is_empty() && !["0", "false", "no", "off", "n", "f"].contains(&v.as_str())
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::config::parse_duration(s)
}

fn parse_usd(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite() && *f > 0.0)
        .ok_or_else(|| format!("`{s}` must be a positive number of dollars"))
}

fn parse_policy(s: &str) -> Result<(String, String), String> {
    let (role, name) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` must be ROLE=NAME, e.g. qa=qa-strict"))?;
    let role = role.trim();
    if !crate::config::ROLES.contains(&role) {
        return Err(format!("unknown role `{role}`: use status, sm, dev or qa"));
    }
    if name.trim().is_empty() {
        return Err(format!("`{s}` names no plugin"));
    }
    Ok((role.to_string(), name.trim().to_string()))
}

impl Command {
    /// The common flags, for the commands that take them.
    pub fn common(&self) -> Option<&Common> {
        match self {
            Command::Run(a) => Some(&a.common),
            Command::Worker(a) => Some(&a.common),
            Command::Status(a) => Some(&a.common),
            Command::Log(a) => Some(&a.common),
            Command::Report(a) => Some(&a.common),
            Command::Plugins(PluginsCommand::List(a) | PluginsCommand::Check(a)) => Some(&a.common),
            Command::Plugins(PluginsCommand::Export(a)) => Some(&a.common),
            Command::Config(a) => Some(&a.common),
            Command::Trust(a) => Some(&a.common),
            Command::Balance(_) | Command::Completions { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn policy_flag_parses_and_rejects() {
        assert_eq!(
            parse_policy("qa=qa-strict"),
            Ok(("qa".into(), "qa-strict".into()))
        );
        assert!(parse_policy("qa").is_err());
        assert!(parse_policy("boss=x").is_err());
        assert!(parse_policy("qa=").is_err());
    }
}
