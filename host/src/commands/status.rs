//! `bmad-host status`: where every story stands, from its file, its QA gate, sprint-status and
//! the journal. Reads only.

use std::io::Write;

use serde::Serialize;

use crate::context::{Context, select};
use crate::error::{Error, Report};
use crate::exit;
use crate::journal::{Journal, JournalReader, LaneIntent, LaneWork, StepKind};
use crate::plugins::PluginSet;
use crate::policy::ParseOutcome;
use crate::project::{Project, StoryEntry};
use crate::ui::Verbosity;
use crate::workflow;

/// The status parser `status` uses: the plugin (the folder's or the embedded one) when
/// `--plugins` is given, else the built-in parser (the same code as `plugins/status`).
#[derive(Debug)]
enum Parser {
    /// The status plugin, with `--plugins DIR` given.
    Plugin(Box<PluginSet>),
    /// [`crate::builtin`].
    Builtin,
}

impl Parser {
    fn open(context: &Context) -> Result<Parser, Error> {
        Ok(match &context.plugins_dir {
            Some(_) => Parser::Plugin(Box::new(PluginSet::load_from(
                &context.plugin_sources(),
                &context.plugin_config(),
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

/// One story as `status` reports it.
#[derive(Debug, Serialize)]
struct StoryStatus {
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
    /// In a parallel run (`run --jobs N`): the lane that last held the story.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lane: Option<LaneNow>,
    /// The project's flow (`v4`, `stories`, `build`) and why: the same on every line.
    pub flow: &'static str,
    /// Why that flow: the installed file that decided it.
    pub flow_why: String,
}

/// The lane that last held a story in a parallel run *(extension)*.
#[derive(Debug, Serialize)]
struct LaneNow {
    /// The lane, from 1.
    pub lane: u32,
    /// `drive` or `integrate`.
    pub work: &'static str,
    /// Whether the lane holds it still (no result recorded: in flight, or stopped with the run).
    pub open: bool,
    /// How the lane let it go (`done`, `integrated`, `not-integrated`, ...).
    pub outcome: Option<String>,
}

/// Each story's last `lane` record in the latest run, by story id.
fn lanes(journal: &JournalReader) -> Result<Vec<(String, LaneNow)>, Error> {
    let mut out: Vec<(String, LaneNow)> = Vec::new();
    for step in journal.steps(None, None)? {
        if step.key.kind != StepKind::Lane {
            continue;
        }
        let Ok(intent) = serde_json::from_value::<LaneIntent>(step.intent.clone()) else {
            continue;
        };
        let now = LaneNow {
            lane: intent.lane,
            work: match intent.work {
                LaneWork::Drive => "drive",
                LaneWork::Integrate => "integrate",
            },
            open: step.result.is_none(),
            outcome: step
                .result
                .as_ref()
                .and_then(|r| r.get("outcome"))
                .and_then(|o| o.as_str())
                .map(str::to_owned),
        };
        out.retain(|(story, _)| *story != step.key.story);
        out.push((step.key.story.clone(), now));
    }
    Ok(out)
}

/// What the journal knows of a story.
#[derive(Debug, Serialize)]
struct JournalProgress {
    pub cycles: u32,
    pub turns: u32,
    pub cost_usd: f64,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// `input_tokens + output_tokens`, what `max_story_tokens` counts.
    pub tokens: u64,
    /// `[workflow] max_story_usd`, when set.
    pub max_story_usd: Option<f64>,
    /// `[workflow] max_story_tokens`, when set.
    pub max_story_tokens: Option<u64>,
    pub duration_ms: u64,
    pub result: Option<String>,
    pub last_outcome: Option<String>,
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
        lane: None,
        flow: "",
        flow_why: String::new(),
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
            Err(e) => status.problem = Some(Report(&e).to_string()),
        }
    }
    match project.read_qa_gate(entry) {
        Ok(gate) => status.gate = gate.map(|g| g.gate),
        Err(e) => tracing::warn!("{}", Report(&e)),
    }
    status.drift = project.drift(entry, value.as_ref()).map(|d| d.to_string());
    Ok(status)
}

/// Prints every story of the project (of `epic`, when given) with its state, gate and journal
/// progress.
pub(super) fn print(context: &Context, epic: Option<u32>) -> Result<u8, Error> {
    let project = context.project()?;
    let choice = project.flow()?.clone();
    let mut parser = Parser::open(context)?;
    let stories = select(&project, epic, None)?;
    let journal = Journal::open_read_only(&context.root)?;
    let summaries = match &journal {
        Some(j) => j.story_summaries(None)?,
        None => Vec::new(),
    };
    let mut lanes = match &journal {
        Some(j) => lanes(j)?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    if !context.json && !(context.verbosity == Verbosity::Quiet) {
        eprintln!("{}", project.describe());
        eprintln!("flow: {}: {}", choice.flow, choice.why);
        for warning in project.warnings() {
            eprintln!("warning: {warning}");
        }
    }
    for entry in &stories {
        let mut s = story_status(&project, &mut parser, entry)?;
        s.flow = choice.flow.name();
        s.flow_why.clone_from(&choice.why);
        if let Some(sum) = summaries.iter().find(|x| x.record.story_id == s.id) {
            let r = &sum.record;
            s.journal = Some(JournalProgress {
                cycles: r.cycle,
                turns: r.usage.turns,
                cost_usd: r.usage.cost_usd,
                input_tokens: r.usage.input_tokens,
                output_tokens: r.usage.output_tokens,
                tokens: r.usage.input_tokens.saturating_add(r.usage.output_tokens),
                max_story_usd: context.config.workflow.max_story_usd.value,
                max_story_tokens: context.config.workflow.max_story_tokens.value,
                duration_ms: u64::try_from(r.usage.duration.as_millis()).unwrap_or(u64::MAX),
                result: r.result.map(|x| x.as_str().to_string()),
                last_outcome: r.last_outcome.clone(),
            });
        }
        if let Some(at) = lanes.iter().position(|(story, _)| *story == s.id) {
            s.lane = Some(lanes.swap_remove(at).1);
        }
        if context.json {
            serde_json::to_writer(&mut out, &s)?;
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
                        "  [{} cycles, {} turns, {}, {}{}]",
                        j.cycles,
                        j.turns,
                        spend_text(j.cost_usd, j.max_story_usd, j.tokens, j.max_story_tokens),
                        crate::ui::clock(std::time::Duration::from_millis(j.duration_ms)),
                        j.last_outcome
                            .as_deref()
                            .map(|o| format!(", last {o}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default();
            let lane = s
                .lane
                .as_ref()
                .map(|l| match (l.open, l.work, l.outcome.as_deref()) {
                    (true, "drive", _) => format!("  lane {}: in flight", l.lane),
                    (true, _, _) => format!("  lane {}: integrating", l.lane),
                    (false, _, Some(outcome)) => format!("  lane {}: {outcome}", l.lane),
                    (false, _, None) => format!("  lane {}", l.lane),
                })
                .unwrap_or_default();
            writeln!(
                out,
                "{:<6} {:<14}{raw}{gate}{progress}{lane}  {}  {}",
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
    if !context.json
        && let Some(first) = summaries.first()
    {
        let (usd, tokens) = summaries.iter().fold((0.0, 0u64), |(u, t), s| {
            let usage = &s.record.usage;
            (
                u + usage.cost_usd,
                t.saturating_add(usage.input_tokens.saturating_add(usage.output_tokens)),
            )
        });
        let w = &context.config.workflow;
        writeln!(
            out,
            "run {}: {}",
            first.run,
            spend_text(usd, w.max_run_usd.value, tokens, w.max_run_tokens.value)
        )
        .map_err(Error::Output)?;
    }
    Ok(exit::OK)
}

/// `$0.42 of $1.00, 12345 of 50000 tokens`: spend against the caps (a cap not set is not named).
fn spend_text(usd: f64, max_usd: Option<f64>, tokens: u64, max_tokens: Option<u64>) -> String {
    let usd_cap = max_usd.map(|c| format!(" of ${c:.2}")).unwrap_or_default();
    let token_cap = max_tokens.map(|c| format!(" of {c}")).unwrap_or_default();
    format!("${usd:.2}{usd_cap}, {tokens}{token_cap} tokens")
}
