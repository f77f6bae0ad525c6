//! The commands other than `run`: `status`, `log`, `plugins list|check`, `config`, and the
//! `run --dry-run` plan. Each reads, none writes to the project.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cli::{Common, ConfigArgs, ExportArgs, LogArgs, PluginsArgs, StatusArgs, exit};
use crate::config::{Config, Overrides};
use crate::error::Error;
use crate::journal::Journal;
use crate::plugins::{PluginConfig, PluginSet, PluginSources};
use crate::policy::{ParseOutcome, Role};
use crate::project::{Project, StoryEntry};
use crate::ui::{Ui, Verbosity};
use crate::workflow::{self, Flow, Next, Observed, Settings};

/// The verbosity the common flags ask for.
pub fn verbosity(common: &Common) -> Verbosity {
    if common.quiet {
        Verbosity::Quiet
    } else if common.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    }
}

/// The stories `--epic` and `--story` select, in numeric order. A selection that matches
/// nothing is a usage error naming what exists.
pub fn select(
    project: &Project,
    epic: Option<u32>,
    story: Option<&str>,
) -> Result<Vec<StoryEntry>, Error> {
    let id = story
        .map(|s| {
            s.parse::<crate::project::StoryId>()
                .map_err(|e| Error::Usage(format!("--story {s}: {e}")))
        })
        .transpose()?;
    let chosen: Vec<StoryEntry> = project.select(epic, id)?.into_iter().cloned().collect();
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "{}: no stories found in the plan or the story folder",
            project.describe()
        )));
    }
    Ok(chosen)
}

/// The status parser `status` uses: the plugin (the folder's or the embedded one) when
/// `--plugins` is given, else the built-in parser (the same code as `plugins/status`).
#[derive(Debug)]
pub enum Parser {
    Plugin(Box<PluginSet>),
    Builtin,
}

impl Parser {
    fn open(common: &Common, config: &Config, root: &Path) -> Result<Parser, Error> {
        Ok(match &common.plugins {
            Some(dir) => Parser::Plugin(Box::new(PluginSet::load_from(
                &PluginSources::embedded_and(Some(dir)),
                &plugin_config(config, root),
            )?)),
            None => Parser::Builtin,
        })
    }

    fn parse(&mut self, text: &str) -> Result<ParseOutcome, Error> {
        match self {
            Parser::Plugin(p) => Ok(p.parse_status(text)?),
            Parser::Builtin => Ok(crate::builtin::parse_status(text)),
        }
    }
}

fn plugin_config(config: &Config, root: &Path) -> PluginConfig {
    crate::run::plugin_config(config, root)
}

/// One story as `status` reports it.
#[derive(Debug, Serialize)]
pub struct StoryStatus {
    pub id: String,
    pub epic: u32,
    pub title: String,
    pub file: String,
    pub exists: bool,
    pub state: Option<String>,
    pub raw_status: Option<String>,
    pub status_line: Option<u32>,
    pub problem: Option<String>,
    pub gate: Option<String>,
    /// v6: sprint-status disagrees with the story file (the story file wins).
    pub drift: Option<String>,
    pub journal: Option<JournalProgress>,
}

/// What the journal knows of a story.
#[derive(Debug, Serialize)]
pub struct JournalProgress {
    pub cycles: u32,
    pub turns: u32,
    pub cost_usd: f64,
    pub duration_ms: u64,
    pub result: Option<String>,
    pub last_outcome: Option<String>,
}

fn project_root(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(dir).map_err(|e| {
        Error::Usage(format!(
            "project directory {} cannot be opened: {e}; pass --project DIR",
            dir.display()
        ))
    })
}

fn load_config(root: &Path, overrides: &Overrides) -> Result<Config, Error> {
    Ok(Config::load(root, &|k| std::env::var(k).ok(), overrides)?)
}

/// Reads and parses one story.
fn story_status(
    project: &Project,
    parser: &mut Parser,
    entry: &StoryEntry,
) -> Result<StoryStatus, Error> {
    let mut status = StoryStatus {
        id: entry.id.to_string(),
        epic: entry.id.epic,
        title: entry.title.clone(),
        file: entry.path.display().to_string(),
        exists: entry.exists,
        state: None,
        raw_status: None,
        status_line: None,
        problem: None,
        gate: None,
        drift: None,
        journal: None,
    };
    let mut value = None;
    if entry.exists {
        match project.read_story(entry) {
            Ok(text) => {
                let parse = parser.parse(&text.text)?;
                status.problem =
                    crate::run::StatusProblem::of(&entry.path, &parse).map(|p| p.to_string());
                match parse {
                    ParseOutcome::Found(v) => {
                        status.state = v.state.map(|s| workflow::state_name(s).to_string());
                        status.raw_status = Some(v.raw.clone());
                        status.status_line = Some(v.line);
                        value = Some(v);
                    }
                    ParseOutcome::Doubtful(v) => {
                        status.raw_status = Some(v.raw);
                        status.status_line = Some(v.line);
                    }
                    ParseOutcome::Conflict(_) | ParseOutcome::Missing(_) => {}
                }
            }
            Err(e) => status.problem = Some(e.to_string()),
        }
    }
    match project.read_qa_gate(entry) {
        Ok(gate) => status.gate = gate.map(|g| g.gate),
        Err(e) => tracing::warn!("{e}"),
    }
    status.drift = project.drift(entry, value.as_ref()).map(|d| d.to_string());
    Ok(status)
}

/// `bmad-host status`.
pub fn status(args: &StatusArgs) -> Result<u8, Error> {
    let root = project_root(&args.common.project)?;
    let config = load_config(&root, &Overrides::default())?;
    let project = Project::discover(&root)?;
    let mut parser = Parser::open(&args.common, &config, &root)?;
    let stories = select(&project, args.epic, None)?;
    let journal = Journal::open_read_only(&root)?;
    let summaries = match &journal {
        Some(j) => j.story_summaries(None)?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if !args.common.json && !args.common.quiet {
        eprintln!("{}", project.describe());
        for warning in project.warnings() {
            eprintln!("warning: {warning}");
        }
    }
    for entry in &stories {
        let mut s = story_status(&project, &mut parser, entry)?;
        if let Some(sum) = summaries.iter().find(|x| x.record.story_id == s.id) {
            let r = &sum.record;
            s.journal = Some(JournalProgress {
                cycles: r.cycle,
                turns: r.usage.turns,
                cost_usd: r.usage.cost_usd,
                duration_ms: u64::try_from(r.usage.duration.as_millis()).unwrap_or(u64::MAX),
                result: r.result.map(|x| x.as_str().to_string()),
                last_outcome: r.last_outcome.clone(),
            });
        }
        if args.common.json {
            serde_json::to_writer(&mut out, &s).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            let state = s
                .state
                .as_deref()
                .unwrap_or(if s.exists { "?" } else { "not drafted" });
            let raw = s
                .raw_status
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            let gate = s
                .gate
                .as_deref()
                .map(|g| format!("  gate {g}"))
                .unwrap_or_default();
            let progress = s
                .journal
                .as_ref()
                .map(|j| {
                    format!(
                        "  [{} cycles, {} turns, ${:.2}, {}{}]",
                        j.cycles,
                        j.turns,
                        j.cost_usd,
                        crate::ui::clock(std::time::Duration::from_millis(j.duration_ms)),
                        j.last_outcome
                            .as_deref()
                            .map(|o| format!(", last {o}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            writeln!(
                out,
                "{:<6} {:<14}{raw}{gate}{progress}  {}  {}",
                s.id, state, s.title, s.file
            )
            .map_err(Error::Output)?;
            if let Some(p) = &s.problem {
                writeln!(out, "       problem: {p}").map_err(Error::Output)?;
            }
            if let Some(d) = &s.drift {
                writeln!(out, "       drift: {d}").map_err(Error::Output)?;
            }
        }
    }
    Ok(exit::OK)
}

/// `bmad-host log`.
pub fn log(args: &LogArgs) -> Result<u8, Error> {
    let root = project_root(&args.common.project)?;
    let Some(journal) = Journal::open_read_only(&root)? else {
        eprintln!(
            "no journal at {}: nothing has run here yet",
            root.join(".bmad-host").display()
        );
        return Ok(exit::OK);
    };
    let mut out = std::io::stdout().lock();
    for step in journal.steps(None, args.story.as_deref())? {
        if args.common.json {
            let line = serde_json::json!({
                "step": step.id.get(),
                "run": step.key.run.to_string(),
                "story": step.key.story,
                "cycle": step.key.cycle,
                "role": step.key.role,
                "kind": step.key.kind.as_str(),
                "seq": step.key.seq,
                "attempt": step.attempt,
                "intent_at": humantime::format_rfc3339_millis(step.intent_at).to_string(),
                "intent": step.intent,
                "result_at": step.result_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
                "result": step.result,
            });
            serde_json::to_writer(&mut out, &line).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(out, "{step}").map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}

/// `bmad-host plugins list|check`.
pub fn plugins(args: &PluginsArgs, check: bool) -> Result<u8, Error> {
    let root = project_root(&args.common.project).unwrap_or_else(|_| args.common.project.clone());
    let config = load_config(&root, &Overrides::default())?;
    let sources = PluginSources::embedded_and(args.common.plugins.as_deref());
    let infos = crate::plugins::inspect_from(&sources, &plugin_config(&config, &root));
    let mut out = std::io::stdout().lock();
    let mut problems = 0;
    for info in &infos {
        if info.problem.is_some() {
            problems += 1;
        }
        if args.common.json {
            serde_json::to_writer(&mut out, info).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            let role = info.role.map_or("?".to_string(), |r| r.to_string());
            let load = info
                .load
                .map(|l| format!("{:?} load {:.1} ms", l.kind, l.micros as f64 / 1000.0))
                .unwrap_or_default();
            writeln!(
                out,
                "{:<12} role {:<7} v{:<8} wit {:<7} {}",
                info.name,
                role,
                info.version.as_deref().unwrap_or("?"),
                info.wit.as_deref().unwrap_or("?"),
                load
            )
            .map_err(Error::Output)?;
            writeln!(out, "             from {}", source_text(info)).map_err(Error::Output)?;
            writeln!(
                out,
                "             read requested {:?}, granted {:?}{}",
                info.requested_read,
                info.granted_read,
                if info.serves.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", serves {:?}",
                        info.serves
                            .iter()
                            .map(|r| r.to_string())
                            .collect::<Vec<_>>()
                    )
                }
            )
            .map_err(Error::Output)?;
            if let Some(p) = &info.problem {
                writeln!(out, "             problem: {p}").map_err(Error::Output)?;
            }
        }
    }
    let cfg = plugin_config(&config, &root);
    for role in crate::plugins::inspect_roles_from(&sources, &infos, &cfg) {
        if role.problem.is_some() {
            problems += 1;
        }
        if args.common.json {
            let line = serde_json::json!({
                "role": role.role.to_string(),
                "plugin": role.wanted,
                "configured": role.configured,
                "problem": role.problem,
            });
            serde_json::to_writer(&mut out, &line).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(
                out,
                "role {:<7} -> {}{}{}",
                role.role.to_string(),
                role.wanted,
                if role.configured { " (configured)" } else { "" },
                role.problem
                    .as_deref()
                    .map(|p| format!("  problem: {p}"))
                    .unwrap_or_default()
            )
            .map_err(Error::Output)?;
        }
    }
    if check && problems > 0 {
        eprintln!("{problems} problem(s): these plugins cannot be used as configured");
        return Ok(exit::USAGE);
    }
    Ok(exit::OK)
}

/// Where a plugin of `plugins list` comes from, for people.
fn source_text(info: &crate::plugins::PluginInfo) -> String {
    match info.source {
        crate::plugins::PluginSource::Embedded => "the plugins embedded in bmad-host".to_string(),
        crate::plugins::PluginSource::Folder => info.dir.display().to_string(),
    }
}

/// `bmad-host plugins export DIR`: the embedded plugins, written out as plugin folders.
pub fn plugins_export(args: &ExportArgs) -> Result<u8, Error> {
    let written = crate::plugins::export(&args.dir)?;
    let mut out = std::io::stdout().lock();
    for plugin in &written {
        if args.common.json {
            serde_json::to_writer(&mut out, plugin).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(out, "{:<12} -> {}", plugin.name, plugin.dir.display())
                .map_err(Error::Output)?;
        }
    }
    if !args.common.json && !args.common.quiet {
        eprintln!(
            "use them with --plugins {} (a folder's plugin replaces the embedded one of the same name)",
            args.dir.display()
        );
    }
    Ok(exit::OK)
}

/// `bmad-host config`.
pub fn config(args: &ConfigArgs) -> Result<u8, Error> {
    let root = project_root(&args.common.project)?;
    let overrides = args.settings.overrides();
    let config = load_config(&root, &overrides)?;
    let mut out = std::io::stdout().lock();
    let rows = config.describe();
    if args.common.json {
        for (key, value, source) in rows {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({"key": key, "value": value, "source": source}),
            )
            .map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        }
    } else {
        let width = rows
            .iter()
            .map(|(k, v, _)| k.len() + v.len())
            .max()
            .unwrap_or(0)
            + 4;
        for (key, value, source) in rows {
            let pair = format!("{key} = {value}");
            writeln!(out, "{pair:<width$} # {source}").map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}

/// `run --dry-run`: each story, its state and what would run next. Changes nothing.
pub fn plan(
    project: &Project,
    stories: &[StoryEntry],
    plugins: &PluginSet,
    config: &Config,
    ui: &mut Ui,
) -> Result<u8, Error> {
    let settings = Settings {
        max_cycles: config.workflow.max_cycles.value,
        approve_drafts: config.workflow.approve_drafts.value,
    };
    let mut out = std::io::stdout().lock();
    ui.say(&format!(
        "{} (dry run: nothing is changed)",
        project.describe()
    ));
    for entry in stories {
        let observed = if !entry.exists {
            Observed::NotDrafted
        } else {
            match project.read_story(entry) {
                Ok(t) => crate::run::observed(&entry.path, &plugins.parse_status(&t.text)?),
                Err(e) => Observed::Unusable(e.to_string()),
            }
        };
        let state = match &observed {
            Observed::NotDrafted => "not drafted".to_string(),
            Observed::State(s) => workflow::state_name(*s).to_string(),
            Observed::Unusable(_) => "unreadable".to_string(),
        };
        let next = match Flow::new(settings).next(&observed) {
            Next::Run { role: Role::Sm, .. } => "sm (draft the story)".to_string(),
            Next::Run { role, cycle, .. } => {
                format!("{} (cycle {cycle})", workflow::role_name(role))
            }
            Next::Finish(r) => match r.reason() {
                Some(reason) => format!("nothing: {} ({reason})", r.word()),
                None => format!("nothing: {}", r.word()),
            },
        };
        if ui.json() {
            let line = serde_json::json!({
                "event": "plan", "ts": crate::ui::timestamp(), "story": entry.id.to_string(),
                "title": entry.title, "file": entry.path.display().to_string(), "exists": entry.exists,
                "state": state, "next": next,
            });
            serde_json::to_writer(&mut out, &line).map_err(|e| Error::Output(e.into()))?;
            writeln!(out).map_err(Error::Output)?;
        } else {
            writeln!(
                out,
                "{:<6} {:<14} next: {:<24} {}  {}",
                entry.id.to_string(),
                state,
                next,
                entry.title,
                entry.path.display()
            )
            .map_err(Error::Output)?;
        }
    }
    Ok(exit::OK)
}
