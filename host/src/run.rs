//! The run loop: ties project, plugins, workflow, supervisor and journal together.
//!
//! For each selected story, in numeric order: read the story file, have the status plugin parse
//! it, ask the [`workflow`](crate::workflow) which role runs next, open a fresh policy instance
//! for that role and carry out its decisions (agent call, gates, state write) until it
//! completes, sends the story back, fails or escalates. Every step is journaled before and after
//! it runs, so a crash resumes where it stopped. The host owns all time, processes and
//! cancellation: Ctrl-C once tears the current call down cleanly and exits 130, twice kills
//! at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::claude::{self, CallSpec, Interrupt, Limits, Outcome};
use crate::cli::{RunArgs, exit};
use crate::config::Config;
use crate::error::Error;
use crate::journal::{Journal, RunFingerprint, StepKey, StepKind, StepStart};
use crate::plugins::{PluginConfig, PluginSet};
use crate::policy::{
    AgentEvent, CallOutcome, Decision, Directive, Layout, OutcomeKind, ParseOutcome, Role,
    StatusValue, StepReport, Story, StoryState,
};
use crate::project::{Project, StoryEntry};
use crate::ui::{Event, Ui};
use crate::workflow::{self, Flow, Next, Observed, Settings, StepEnd, StoryResult};

/// Decisions one role step may take before the host calls it a loop.
const MAX_DECISIONS_PER_STEP: u32 = 16;

/// Why a story stopped being driven before it finished.
enum Halt {
    /// The operator pressed Ctrl-C; the call was torn down.
    Interrupted,
    /// The account's usage limit was hit; the run stops without charging the cycle.
    UsageLimit {
        message: String,
        resets: Option<String>,
    },
    /// The journal failed: without it nothing is durable, so the run stops.
    Fatal(Error),
}

impl From<crate::journal::JournalError> for Halt {
    fn from(e: crate::journal::JournalError) -> Self {
        Halt::Fatal(Error::Journal(e))
    }
}

/// `bmad-host run`.
pub async fn run(args: RunArgs) -> Result<u8, Error> {
    let root = project_root(&args.common.project)?;
    let overrides = args.settings.overrides();
    let mut config = Config::load(&root, &|k| std::env::var(k).ok(), &overrides)?;
    resolve_bin(&mut config.claude.bin.value);
    let project = Project::discover(&root)?;
    let stories = crate::commands::select(&project, args.epic, args.story.as_deref())?;
    let plugins = PluginSet::load_from(
        &crate::plugins::PluginSources::embedded_and(args.common.plugins.as_deref()),
        &plugin_config(&config, &root),
    )?;
    let verbosity = crate::commands::verbosity(&args.common);
    let mut ui = Ui::new(args.common.json, verbosity);

    if args.dry_run {
        return crate::commands::plan(&project, &stories, &plugins, &config, &mut ui);
    }

    let mut journal = Journal::open(&root)?;
    let fingerprint = RunFingerprint {
        config: serde_json::to_string(&config).unwrap_or_default(),
        plugins: plugins
            .fingerprints()
            .into_iter()
            .map(|p| crate::journal::PluginFingerprint {
                name: p.name,
                version: p.version,
                role: p.role.as_str().to_string(),
                wasm_hash: p.wasm_blake3,
            })
            .collect(),
        args: std::env::args().collect(),
    };
    let run = journal.start_run(args.fresh, &fingerprint)?;
    // Keep the journal, transcripts and temp files out of the project's git status.
    let ignore = crate::journal::state_dir(&root).join(".gitignore");
    if !ignore.exists()
        && let Err(e) = std::fs::write(&ignore, "# bmad-host's journal and transcripts\n*\n")
    {
        tracing::warn!("cannot write {}: {e}", ignore.display());
    }

    if run.resumed {
        // A host that died (kill -9, reboot) may have left its agent or gate running: stop
        // them before their step is redone, so two agents never edit the same files.
        let marker = format!("BMAD_HOST_RUN_ID={}", run.id);
        let survivors = claude::stop_leftovers(&marker, Duration::from_secs(5)).await;
        if !survivors.is_empty() {
            tracing::warn!(
                ?survivors,
                "processes of the interrupted run survived SIGKILL"
            );
        }
    }

    let (interrupt_tx, interrupts) = watch::channel(Interrupt::None);
    tokio::spawn(watch_ctrl_c(interrupt_tx));

    let started = Instant::now();
    ui.emit(Event::RunStarted {
        run_id: run.id.to_string(),
        project: root.display().to_string(),
        layout: layout_name(project.layout()).into(),
        version: project.version().unwrap_or("unknown").to_string(),
        stories: stories.iter().map(|s| s.id.to_string()).collect(),
        resumed: run.resumed,
        dry_run: false,
    });

    let mut driver = Driver {
        root: &root,
        project: &project,
        config: &config,
        plugins: &plugins,
        journal: &mut journal,
        run: run.id.clone(),
        ui: &mut ui,
        interrupts,
    };
    let mut results: Vec<(String, StoryResult, Tally)> = Vec::new();
    let mut halt = None;
    let wait_on_limit = config.claude.wait_on_limit.value;
    'stories: for entry in &stories {
        loop {
            match driver.drive(entry).await {
                Ok((result, tally)) => {
                    results.push((entry.id.to_string(), result, tally));
                    break;
                }
                Err(Halt::UsageLimit { message, resets })
                    if wait_on_limit
                        && let Some(wait) = resets
                            .as_deref()
                            .and_then(|r| until_reset(r, SystemTime::now())) =>
                {
                    // The limited step has no result in the journal: driving the story again
                    // after the reset redoes it, and the cycle is not charged.
                    driver.ui.say(&format!(
                        "{message}; waiting {} for the reset (--wait-on-limit)",
                        humantime::format_duration(Duration::from_secs(wait.as_secs()))
                    ));
                    if !driver.wait_for_reset(wait).await {
                        halt = Some(Halt::Interrupted);
                        break 'stories;
                    }
                }
                Err(h) => {
                    halt = Some(h);
                    break 'stories;
                }
            }
        }
    }

    let count = |w: &str| results.iter().filter(|(_, r, _)| r.word() == w).count();
    let (done, failed, escalated) = (count("done"), count("failed"), count("escalated"));
    let interrupted = matches!(halt, Some(Halt::Interrupted));
    let code = match &halt {
        Some(Halt::Interrupted) => exit::INTERRUPTED,
        Some(Halt::UsageLimit { .. }) => exit::STORY_FAILED,
        Some(Halt::Fatal(_)) => exit::USAGE,
        None if failed + escalated > 0 => exit::STORY_FAILED,
        None => exit::OK,
    };
    let status = match &halt {
        Some(_) => crate::journal::RunStatus::Interrupted,
        None if code == exit::OK => crate::journal::RunStatus::Done,
        None => crate::journal::RunStatus::Failed,
    };
    journal.finish_run(&run.id, status)?;
    if let Some(Halt::Fatal(e)) = halt {
        ui.finish();
        return Err(e);
    }
    let cost: f64 = results.iter().map(|(_, _, t)| t.cost_usd).sum();
    ui.emit(Event::RunFinished {
        run_id: run.id.to_string(),
        total: stories.len(),
        done,
        failed,
        escalated,
        not_run: stories.len() - results.len(),
        interrupted,
        duration_ms: millis(started.elapsed()),
        cost_usd: cost,
        exit_code: i32::from(code),
    });
    print_summary(&ui, &root, &run.id.to_string(), &results, &halt);
    Ok(code)
}

/// Per-story totals for the summary.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    cycles: u32,
    turns: u32,
    cost_usd: f64,
    duration: Duration,
}

struct Driver<'a> {
    root: &'a Path,
    project: &'a Project,
    config: &'a Config,
    plugins: &'a PluginSet,
    journal: &'a mut Journal,
    run: crate::journal::RunId,
    ui: &'a mut Ui,
    interrupts: watch::Receiver<Interrupt>,
}

impl Driver<'_> {
    /// Drives one story until it finishes, or the run halts.
    async fn drive(&mut self, entry: &StoryEntry) -> Result<(StoryResult, Tally), Halt> {
        let story_id = entry.id.to_string();
        let settings = Settings {
            max_cycles: self.config.workflow.max_cycles.value,
            approve_drafts: self.config.workflow.approve_drafts.value,
        };
        let mut seen = self.observe(entry);
        let mut record = self
            .journal
            .story(&self.run, &story_id)?
            .unwrap_or_else(|| {
                crate::journal::StoryRecord::new(
                    &story_id,
                    &entry.title,
                    seen.state.unwrap_or(StoryState::Backlog),
                )
            });
        // The journal keeps the workflow's whole state (cycle, findings, the step in flight).
        let mut flow: Flow =
            serde_json::from_value(record.findings.clone()).unwrap_or_else(|_| Flow::new(settings));
        flow.set_settings(settings);
        let mut tally = Tally {
            cycles: flow.cycle(),
            turns: record.usage.turns,
            cost_usd: record.usage.cost_usd,
            duration: record.usage.duration,
        };
        self.ui.emit(Event::StoryStarted {
            story: story_id.clone(),
            title: entry.title.clone(),
            epic: entry.id.epic,
            state: seen.state.map(|s| workflow::state_name(s).to_string()),
        });
        loop {
            let next = flow.next(&seen.observed);
            if let Some(state) = seen.state {
                record.state = state;
            }
            self.save(&mut record, &flow, &tally)?;
            let (role, cycle, resumed) = match next {
                Next::Finish(result) => {
                    tally.cycles = flow.cycle();
                    record.result = Some(match result {
                        StoryResult::Done => crate::journal::StoryResult::Done,
                        StoryResult::Failed(_) => crate::journal::StoryResult::Failed,
                        StoryResult::Escalated(_) => crate::journal::StoryResult::Escalated,
                    });
                    record.last_outcome = Some(match result.reason() {
                        Some(r) => format!("{}: {r}", result.word()),
                        None => result.word().to_string(),
                    });
                    self.save(&mut record, &flow, &tally)?;
                    self.ui.emit(Event::StoryFinished {
                        story: story_id.clone(),
                        result: result.word().into(),
                        reason: result.reason().map(str::to_string),
                        cycles: flow.cycle(),
                        duration_ms: millis(tally.duration),
                        cost_usd: tally.cost_usd,
                        turns: tally.turns,
                    });
                    return Ok((result, tally));
                }
                Next::Run {
                    role,
                    cycle,
                    resumed,
                } => (role, cycle, resumed),
            };
            let end = self
                .role_step(entry, &seen, &flow, role, cycle, resumed, &mut tally)
                .await?;
            flow.step_ended(end);
            tally.cycles = flow.cycle();
            let before = seen.state;
            seen = self.observe(entry);
            if seen.state != before
                && let Some(to) = seen.state
            {
                self.ui.emit(Event::StateChanged {
                    story: story_id.clone(),
                    from: before.map(|s| workflow::state_name(s).to_string()),
                    to: workflow::state_name(to).to_string(),
                });
            }
        }
    }

    fn save(
        &mut self,
        record: &mut crate::journal::StoryRecord,
        flow: &Flow,
        tally: &Tally,
    ) -> Result<(), Halt> {
        record.findings = serde_json::to_value(flow).unwrap_or_default();
        record.cycle = flow.cycle();
        record.usage.turns = tally.turns;
        record.usage.cost_usd = tally.cost_usd;
        record.usage.duration = tally.duration;
        self.journal.save_story(&self.run, record)?;
        Ok(())
    }

    /// Reads the story file and parses its status with the status plugin.
    fn observe(&mut self, entry: &StoryEntry) -> Seen {
        let path = self.root.join(&entry.path);
        if !path.exists() {
            return Seen::not_drafted();
        }
        let text = match self.project.read_story(entry) {
            Ok(t) => t.text,
            Err(e) => return Seen::unusable(e.to_string()),
        };
        match self.plugins.parse_status(&text) {
            Ok(outcome) => Seen::from_parse(&entry.path, text, outcome),
            Err(e) => Seen::unusable(format!("status plugin: {e}")),
        }
    }

    /// Runs one role's step: begin, then each decision, until the policy is done with it.
    #[allow(clippy::too_many_arguments)]
    async fn role_step(
        &mut self,
        entry: &StoryEntry,
        seen: &Seen,
        flow: &Flow,
        role: Role,
        cycle: u32,
        resumed: bool,
        tally: &mut Tally,
    ) -> Result<StepEnd, Halt> {
        let story_id = entry.id.to_string();
        let role_name = workflow::role_name(role);
        let mut story = self.story_record(entry, seen, flow, cycle, resumed);
        let plugins = self.plugins;
        let mut session = match plugins.begin_step(role) {
            Ok(s) => s,
            Err(e) => return Ok(StepEnd::Failed(e.to_string())),
        };
        let mut decision = match session.begin(&story, &seen.text) {
            Ok(d) => d,
            Err(e) => return Ok(StepEnd::Failed(e.to_string())),
        };
        self.record_decision(
            &story_id,
            cycle,
            role_name,
            0,
            "begin",
            &seen.parse,
            &decision,
        )?;
        for seq in 0..MAX_DECISIONS_PER_STEP {
            let report = match decision {
                Decision::Complete => return Ok(StepEnd::Completed),
                Decision::Fail(reason) => return Ok(StepEnd::Failed(reason)),
                Decision::Escalate(reason) => return Ok(StepEnd::Escalated(reason)),
                Decision::SetState(state) => {
                    return Ok(
                        match self.write_state(entry, cycle, role_name, seq, state) {
                            Ok(()) => StepEnd::Completed,
                            Err(reason) => StepEnd::Failed(reason),
                        },
                    );
                }
                Decision::SendBack(findings) => {
                    let state = StoryState::ChangesRequested;
                    return Ok(
                        match self.write_state(entry, cycle, role_name, seq, state) {
                            Ok(()) => StepEnd::SentBack(findings),
                            Err(reason) => StepEnd::Failed(reason),
                        },
                    );
                }
                Decision::InvokeAgent(request) => {
                    let gate_before = self.gate_stamp(entry);
                    let outcome = self
                        .agent_call(
                            entry,
                            &story,
                            &mut session,
                            role,
                            cycle,
                            seq,
                            request,
                            tally,
                        )
                        .await?;
                    let mut report = self.report(entry, Some(outcome), Vec::new());
                    // A gate file QA did not rewrite is an earlier cycle's decision, not this one's.
                    if role == Role::Qa
                        && report.qa_gate.is_some()
                        && gate_before.is_some()
                        && gate_before == self.gate_stamp(entry)
                    {
                        self.ui.say(&format!(
                            "  {story_id}: QA did not write a new gate file; the old one is not this review's decision"
                        ));
                        report.qa_gate = None;
                    }
                    report
                }
                Decision::RunGates => {
                    let gates = self.gates(entry, cycle, role_name, seq).await?;
                    self.report(entry, None, gates)
                }
            };
            story.retry = false;
            decision = match session.end(&story, &report) {
                Ok(d) => d,
                Err(e) => return Ok(StepEnd::Failed(e.to_string())),
            };
            self.record_decision(
                &story_id,
                cycle,
                role_name,
                seq + 1,
                "end",
                &report.status,
                &decision,
            )?;
        }
        Ok(StepEnd::Failed(format!(
            "the {role_name} policy took {MAX_DECISIONS_PER_STEP} decisions in one step without finishing it"
        )))
    }

    /// The story's QA gate file as it is now (path, modification time, length), to tell a
    /// gate written by this review from an old one.
    fn gate_stamp(&self, entry: &StoryEntry) -> Option<(PathBuf, SystemTime, u64)> {
        let gate = self.project.read_qa_gate(entry).ok()??;
        let meta = std::fs::metadata(self.root.join(&gate.path)).ok()?;
        Some((gate.path, meta.modified().ok()?, meta.len()))
    }

    /// Journals a policy decision with the status it was taken on (one commit).
    #[allow(clippy::too_many_arguments)]
    fn record_decision(
        &mut self,
        story_id: &str,
        cycle: u32,
        role_name: &str,
        seq: u32,
        call: &str,
        status: &ParseOutcome,
        decision: &Decision,
    ) -> Result<(), Halt> {
        let key = StepKey {
            run: self.run.clone(),
            story: story_id.to_string(),
            cycle,
            role: role_name.to_string(),
            kind: StepKind::Decision,
            seq,
        };
        let intent = serde_json::json!({ "call": call, "status": status });
        let result = serde_json::to_value(decision).unwrap_or_default();
        self.journal.record_step(&key, &intent, &result)?;
        Ok(())
    }

    fn story_record(
        &self,
        entry: &StoryEntry,
        seen: &Seen,
        flow: &Flow,
        cycle: u32,
        retry: bool,
    ) -> Story {
        Story {
            id: entry.id.to_string(),
            epic: entry.id.epic,
            title: entry.title.clone(),
            path: entry.path.display().to_string(),
            exists: seen.exists,
            state: seen.state,
            raw_status: seen.raw.clone(),
            cycle: cycle.max(1),
            max_cycles: flow.settings().max_cycles,
            retry,
            layout: self.project.layout(),
            bmad_version: self.project.version().unwrap_or_default().to_string(),
            epic_path: entry
                .epic_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            gate_path: entry
                .gate_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            sprint_status_path: self
                .project
                .sprint_status_path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            previous_findings: flow.findings().to_vec(),
            findings_history: flow.findings_history().to_vec(),
        }
    }

    /// What the policy learns after an agent call or a gate run.
    fn report(
        &mut self,
        entry: &StoryEntry,
        outcome: Option<CallOutcome>,
        gates: Vec<crate::policy::GateReport>,
    ) -> StepReport {
        let seen = self.observe(entry);
        let qa_gate = match self.project.read_qa_gate(entry) {
            Ok(g) => g.map(|g| g.to_policy()),
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        };
        StepReport {
            outcome,
            document: seen.text.clone(),
            status: seen.parse.clone(),
            gates,
            qa_gate,
        }
    }
}

/// The story as last read.
#[derive(Debug, Clone)]
struct Seen {
    exists: bool,
    text: String,
    parse: ParseOutcome,
    observed: Observed,
    state: Option<StoryState>,
    raw: Option<String>,
    value: Option<StatusValue>,
}

impl Seen {
    fn not_drafted() -> Self {
        Seen {
            exists: false,
            text: String::new(),
            parse: ParseOutcome::Missing(crate::policy::MissingReason::NoStatus),
            observed: Observed::NotDrafted,
            state: None,
            raw: None,
            value: None,
        }
    }

    fn unusable(why: String) -> Self {
        Seen {
            exists: true,
            observed: Observed::Unusable(why),
            ..Seen::not_drafted()
        }
    }

    fn from_parse(path: &Path, text: String, parse: ParseOutcome) -> Self {
        let file = path.display();
        let (observed, value) = match &parse {
            ParseOutcome::Found(v) => match v.state {
                Some(s) => (Observed::State(s), Some(v.clone())),
                None => (
                    Observed::Unusable(format!(
                        "{file}:{}: status `{}` maps to no state",
                        v.line, v.raw
                    )),
                    Some(v.clone()),
                ),
            },
            ParseOutcome::Doubtful(v) => (
                Observed::Unusable(format!(
                    "{file}:{}: status `{}` is not a standard BMAD status{}; set it to one by hand",
                    v.line,
                    v.raw,
                    v.state
                        .map(|s| format!(" (it might mean {})", workflow::state_name(s)))
                        .unwrap_or_default()
                )),
                Some(v.clone()),
            ),
            ParseOutcome::Conflict(vs) => (
                Observed::Unusable(format!(
                    "{file}: {} status values disagree ({}); keep one",
                    vs.len(),
                    vs.iter()
                        .map(|v| format!("`{}` at line {}", v.raw, v.line))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                None,
            ),
            ParseOutcome::Missing(reason) => (
                Observed::Unusable(format!("{file}: {}", missing_text(reason))),
                None,
            ),
        };
        let state = match &observed {
            Observed::State(s) => Some(*s),
            _ => None,
        };
        Seen {
            exists: true,
            raw: value.as_ref().map(|v| v.raw.clone()),
            value,
            text,
            parse,
            observed,
            state,
        }
    }
}

pub(crate) fn missing_text(reason: &crate::policy::MissingReason) -> String {
    use crate::policy::MissingReason as M;
    match reason {
        M::EmptyFile => "the story file is empty".into(),
        M::NotText => "the story file is not text".into(),
        M::NoStatus => "no Status section or `Status:` line".into(),
        M::EmptyValue(line) => format!("line {line}: the Status has no value"),
    }
}

fn project_root(dir: &Path) -> Result<PathBuf, Error> {
    std::fs::canonicalize(dir).map_err(|e| {
        Error::Usage(format!(
            "project directory {} cannot be opened: {e}; pass --project DIR",
            dir.display()
        ))
    })
}

pub(crate) fn plugin_config(config: &Config, root: &Path) -> PluginConfig {
    PluginConfig {
        roles: config
            .roles
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect(),
        grants: config
            .plugins
            .iter()
            .map(|(k, v)| (k.clone(), v.grant_read.clone()))
            .collect(),
        project_root: root.to_path_buf(),
        ..PluginConfig::default()
    }
}

/// How long until a usage limit resets, from the reset time the CLI stated: an RFC 3339 time
/// (what the `...|<epoch>` form becomes) or a clock time in UTC (`3pm (UTC)`, `10:30am UTC`,
/// `15:00 (UTC)`). `None` when the time is in another zone or cannot be read: bmad-host has no
/// time-zone database, so it stops rather than guess.
fn until_reset(resets: &str, now: SystemTime) -> Option<Duration> {
    let text = resets.trim();
    if let Ok(at) = humantime::parse_rfc3339_weak(text) {
        // An exact instant (the CLI's epoch form): a small margin is enough.
        return Some(at.duration_since(now).unwrap_or_default() + EXACT_RESET_MARGIN);
    }
    let lower = text.to_ascii_lowercase();
    let clock = lower
        .strip_suffix("(utc)")
        .or_else(|| lower.strip_suffix("utc"))?
        .trim();
    let (clock, pm) = match (clock.strip_suffix("pm"), clock.strip_suffix("am")) {
        (Some(c), _) => (c.trim(), Some(true)),
        (_, Some(c)) => (c.trim(), Some(false)),
        _ => (clock, None),
    };
    let (h, m) = match clock.split_once(':') {
        Some((h, m)) => (h.parse::<u64>().ok()?, m.parse::<u64>().ok()?),
        None => (clock.parse::<u64>().ok()?, 0),
    };
    let hour = match pm {
        Some(true) if h < 12 => h + 12,
        Some(false) if h == 12 => 0,
        Some(_) if h > 12 => return None,
        _ => h,
    };
    if hour > 23 || m > 59 {
        return None;
    }
    let since_midnight = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs() % 86_400;
    let target = hour * 3600 + m * 60;
    let wait = (target + 86_400 - since_midnight) % 86_400;
    Some(Duration::from_secs(wait) + RESET_MARGIN)
}

/// Waiting a little past a stated clock time (minute precision), so the first call after it is
/// not refused again.
const RESET_MARGIN: Duration = Duration::from_secs(30);
/// The margin past an exact reset instant.
const EXACT_RESET_MARGIN: Duration = Duration::from_secs(2);

/// A relative CLI path with a directory part (`target/debug/fake-claude`) means relative to
/// where bmad-host was started, not to the project root the agent runs in; a bare name is
/// looked up on PATH.
fn resolve_bin(bin: &mut PathBuf) {
    if bin.is_relative()
        && bin.components().count() > 1
        && let Ok(cwd) = std::env::current_dir()
    {
        *bin = cwd.join(&*bin);
    }
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::V4 => "v4",
        Layout::V6 => "v6",
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn watch_ctrl_c(tx: watch::Sender<Interrupt>) {
    // One signal stream for the whole run, so a second Ctrl-C is never lost between two waits.
    let Ok(mut sigint) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
    else {
        tracing::warn!("cannot listen for Ctrl-C; interrupt with SIGTERM or SIGKILL");
        return;
    };
    let mut count = 0;
    while sigint.recv().await.is_some() {
        count += 1;
        let level = if count == 1 {
            eprintln!(
                "\ninterrupt: finishing teardown of the current call (Ctrl-C again to kill now)"
            );
            Interrupt::Graceful
        } else {
            Interrupt::Immediate
        };
        if tx.send(level).is_err() {
            return;
        }
    }
}

impl Driver<'_> {
    /// Waits until a usage limit resets; false if the operator interrupted the wait.
    async fn wait_for_reset(&mut self, wait: Duration) -> bool {
        // The one deliberate wait besides the retry backoff: the account cannot work before
        // the reset, and the wait ends early on Ctrl-C.
        let reset = tokio::time::sleep(wait); // backoff until the usage limit resets
        tokio::pin!(reset);
        loop {
            tokio::select! {
                () = &mut reset => return true,
                changed = self.interrupts.changed() => match changed {
                    Ok(()) if *self.interrupts.borrow() != Interrupt::None => return false,
                    Ok(()) => {}
                    Err(_) => {
                        (&mut reset).await;
                        return true;
                    }
                },
            }
        }
    }

    /// One agent call: journaled, supervised, reported to the UI; returns its outcome for the
    /// policy. An interrupted or usage-limited call leaves its intent without a result, so a
    /// resumed run redoes it (and the cycle is not charged).
    #[allow(clippy::too_many_arguments)]
    async fn agent_call(
        &mut self,
        entry: &StoryEntry,
        story: &Story,
        session: &mut crate::plugins::PolicySession,
        role: Role,
        cycle: u32,
        seq: u32,
        request: crate::policy::AgentRequest,
        tally: &mut Tally,
    ) -> Result<CallOutcome, Halt> {
        let story_id = entry.id.to_string();
        let role_name = workflow::role_name(role);
        let key = StepKey {
            run: self.run.clone(),
            story: story_id.clone(),
            cycle,
            role: role_name.to_string(),
            kind: StepKind::AgentCall,
            seq,
        };
        let intent = serde_json::json!({
            "prompt": request.prompt,
            "max_turns": request.max_turns,
            "model": request.model,
            "allowed_tools": request.allowed_tools,
        });
        let (step, attempt) = match self.journal.begin_step(&key, &intent)? {
            StepStart::Done(result) => {
                // Finished before a crash: never run an agent twice.
                if let Ok(outcome) =
                    serde_json::from_value::<CallOutcome>(result["outcome"].clone())
                {
                    return Ok(outcome);
                }
                return Err(Halt::Fatal(Error::Usage(format!(
                    "journal step for story {story_id} {role_name} has an unreadable result; move .bmad-host/journal.sqlite aside or run with --fresh"
                ))));
            }
            StepStart::Fresh(id) => (id, 1),
            StepStart::Retry { id, attempt } => (id, attempt),
        };
        let transcript = crate::journal::transcript_path(
            self.root, &self.run, &story_id, cycle, role_name, attempt,
        );
        let claude_tmp = crate::journal::state_dir(self.root).join("tmp");
        if let Err(e) = std::fs::create_dir_all(&claude_tmp) {
            tracing::warn!("cannot create {}: {e}", claude_tmp.display());
        }
        let c = &self.config.claude;
        let max_turns = request
            .max_turns
            .map_or(c.max_turns.value, |t| t.min(c.max_turns.value));
        let spec = CallSpec {
            bin: c.bin.value.clone(),
            prompt: request.prompt.clone(),
            cwd: self.root.to_path_buf(),
            env: vec![
                ("BMAD_HOST_ROLE".into(), role_name.into()),
                ("BMAD_HOST_STORY_ID".into(), story_id.clone()),
                (
                    "BMAD_HOST_STORY_PATH".into(),
                    self.root.join(&entry.path).display().to_string(),
                ),
                ("BMAD_HOST_CYCLE".into(), cycle.to_string()),
                ("BMAD_HOST_RUN_ID".into(), self.run.to_string()),
                // The CLI's sockets and cwd files, which a killed CLI leaves behind, go here and
                // are removed after the call.
                (
                    "CLAUDE_CODE_TMPDIR".into(),
                    claude_tmp.display().to_string(),
                ),
            ],
            model: request.model.clone().or_else(|| c.model.value.clone()),
            permission_mode: c.permission_mode.value.clone(),
            allowed_tools: request.allowed_tools.clone(),
            append_system_prompt: request.append_system_prompt.clone(),
            extra_args: c.extra_args.value.clone(),
            transcript: transcript.clone(),
        };
        let limits = Limits {
            timeout: c.timeout.value,
            idle_timeout: c.idle_timeout.value,
            tool_idle_timeout: c.tool_idle_timeout.value,
            max_turns,
            max_budget_usd: c.max_budget_usd.value,
            retries: c.retries.value,
            ..Limits::default()
        };
        let ui = std::sync::Mutex::new(&mut *self.ui);
        let mut policy_error = None;
        let mut started = false;
        let report = {
            let mut on_event = |event: &claude::Event| {
                if let Ok(mut ui) = ui.lock() {
                    ui.agent_progress(matches!(
                        event,
                        claude::Event::Text(_) | claude::Event::ToolUse { .. }
                    ));
                }
                let Some(event) = agent_event(event) else {
                    return claude::Directive::Continue;
                };
                match session.on_event(story, &event) {
                    Ok(Directive::Continue) => claude::Directive::Continue,
                    Ok(Directive::Stop) => claude::Directive::Stop,
                    Err(e) => {
                        policy_error = Some(e.to_string());
                        claude::Directive::Stop
                    }
                }
            };
            let mut on_spawn = |pid: u32| {
                started = true;
                if let Ok(mut ui) = ui.lock() {
                    ui.emit(Event::AgentStarted {
                        role: role_name.into(),
                        story: story_id.clone(),
                        cycle,
                        pid: Some(pid),
                        attempt,
                        retry: story.retry,
                    });
                }
            };
            claude::run(
                &spec,
                &limits,
                &mut on_event,
                &mut on_spawn,
                self.interrupts.clone(),
            )
            .await
        };
        // The call has ended (its whole tree is gone): its temp files are garbage now.
        let _ = std::fs::remove_dir_all(&claude_tmp);
        if !started {
            self.ui.emit(Event::AgentStarted {
                role: role_name.into(),
                story: story_id.clone(),
                cycle,
                pid: None,
                attempt,
                retry: story.retry,
            });
        }
        let mut message = report
            .result_text
            .clone()
            .filter(|_| !matches!(report.outcome, Outcome::Success))
            .unwrap_or_else(|| report.outcome.to_string());
        if let Some(e) = &policy_error {
            message = format!("policy on-event failed: {e}");
        }
        let outcome = CallOutcome {
            kind: outcome_kind(&report.outcome),
            message: truncate(&message, 4000),
            num_turns: report.num_turns,
            cost_usd: report.cost_usd,
            duration_ms: millis(report.duration),
        };
        tally.turns += report.num_turns;
        tally.cost_usd += report.cost_usd;
        tally.duration += report.duration;
        self.ui.emit(Event::AgentFinished {
            role: role_name.into(),
            story: story_id.clone(),
            cycle,
            outcome: report.outcome.kind().replace('-', "_"),
            message: outcome.message.clone(),
            duration_ms: outcome.duration_ms,
            turns: report.num_turns,
            cost_usd: report.cost_usd,
            transcript: transcript.display().to_string(),
        });
        match &report.outcome {
            Outcome::Cancelled => return Err(Halt::Interrupted),
            Outcome::UsageLimit { resets, .. } => {
                return Err(Halt::UsageLimit {
                    message: report.outcome.to_string(),
                    resets: resets.clone(),
                });
            }
            _ => {}
        }
        self.journal.finish_step(
            step,
            &serde_json::json!({
                "outcome": outcome,
                "pid": report.pid,
                "attempts": report.attempts,
                "clean": report.clean,
                "transcript": transcript.display().to_string(),
            }),
        )?;
        Ok(outcome)
    }

    /// Writes `state` into the story file (and v6 sprint-status), journaled.
    fn write_state(
        &mut self,
        entry: &StoryEntry,
        cycle: u32,
        role_name: &str,
        seq: u32,
        state: StoryState,
    ) -> Result<(), String> {
        let key = StepKey {
            run: self.run.clone(),
            story: entry.id.to_string(),
            cycle,
            role: role_name.to_string(),
            kind: StepKind::StatusWrite,
            seq,
        };
        let seen = self.observe(entry);
        let intent = serde_json::json!({"to": workflow::state_name(state), "from": seen.raw});
        let step = match self.journal.begin_step(&key, &intent) {
            Ok(StepStart::Done(_)) => return Ok(()),
            Ok(start) => start.id(),
            Err(e) => return Err(format!("journal: {e}")),
        };
        if seen.state == Some(state) {
            // Already written (e.g. the host died between the rename and the journal commit).
        } else {
            let Some(value) = &seen.value else {
                return Err(format!(
                    "cannot set {} to {}: its status cannot be read safely ({})",
                    entry.path.display(),
                    workflow::state_name(state),
                    match &seen.observed {
                        Observed::Unusable(why) => why.clone(),
                        _ => "no status".into(),
                    }
                ));
            };
            match self.project.write_status(entry, value, state) {
                Ok(written) => {
                    if let Some(drift) = &written.drift {
                        self.ui.say(&format!("  drift: {drift}"));
                    }
                    if let crate::project::SprintSync::NotUpdated { reason } = &written.sprint {
                        self.ui
                            .say(&format!("  sprint-status not updated: {reason}"));
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if let Some(id) = step
            && let Err(e) = self.journal.finish_step(
                id,
                &serde_json::json!({"written": workflow::state_name(state)}),
            )
        {
            return Err(format!("journal: {e}"));
        }
        Ok(())
    }

    /// Runs the configured quality gates, journaled; reports go to the policy.
    async fn gates(
        &mut self,
        entry: &StoryEntry,
        cycle: u32,
        role_name: &str,
        seq: u32,
    ) -> Result<Vec<crate::policy::GateReport>, Halt> {
        let key = StepKey {
            run: self.run.clone(),
            story: entry.id.to_string(),
            cycle,
            role: role_name.to_string(),
            kind: StepKind::Gates,
            seq,
        };
        let names: Vec<&str> = self
            .config
            .active_gates()
            .map(|g| g.name.as_str())
            .collect();
        let step = match self
            .journal
            .begin_step(&key, &serde_json::json!({ "gates": names }))?
        {
            StepStart::Done(result) => {
                return Ok(serde_json::from_value(result["reports"].clone()).unwrap_or_default());
            }
            start => start.id(),
        };
        let mut reports = Vec::new();
        for gate in self.config.active_gates() {
            let env = [
                ("BMAD_HOST_RUN_ID".to_string(), self.run.to_string()),
                ("BMAD_HOST_STORY_ID".to_string(), entry.id.to_string()),
            ];
            let run = crate::gates::run_gate(gate, self.root, &env, self.interrupts.clone()).await;
            if run.cancelled {
                return Err(Halt::Interrupted);
            }
            self.ui.emit(Event::GateFinished {
                story: entry.id.to_string(),
                gate: gate.name.clone(),
                passed: run.report.passed,
                exit_code: run.report.exit_code,
                timed_out: run.report.timed_out,
                duration_ms: millis(run.duration),
            });
            reports.push(run.report);
        }
        if let Some(id) = step {
            self.journal
                .finish_step(id, &serde_json::json!({ "reports": reports }))?;
        }
        Ok(reports)
    }
}

fn agent_event(event: &claude::Event) -> Option<AgentEvent> {
    Some(match event {
        claude::Event::Init { model, .. } => AgentEvent::Init(model.clone()),
        claude::Event::Text(t) => AgentEvent::Text(t.clone()),
        claude::Event::ToolUse { name } => AgentEvent::ToolUse(name.clone()),
        claude::Event::ToolResult { is_error } => AgentEvent::ToolResult(*is_error),
        claude::Event::ApiRetry { attempt, .. } => AgentEvent::ApiRetry(*attempt),
    })
}

fn outcome_kind(outcome: &Outcome) -> OutcomeKind {
    match outcome {
        Outcome::Success => OutcomeKind::Success,
        Outcome::MaxTurns => OutcomeKind::ErrorMaxTurns,
        Outcome::MaxBudget => OutcomeKind::ErrorMaxBudget,
        Outcome::DuringExecution => OutcomeKind::ErrorDuringExecution,
        Outcome::ApiError { .. } => OutcomeKind::ApiError,
        Outcome::NoResult { .. } => OutcomeKind::NoResult,
        Outcome::TimedOut => OutcomeKind::TimedOut,
        Outcome::IdleTimeout => OutcomeKind::IdleTimeout,
        Outcome::StoppedByPolicy => OutcomeKind::StoppedByPolicy,
        Outcome::Cancelled => OutcomeKind::Cancelled,
        Outcome::UsageLimit { .. } => OutcomeKind::UsageLimit,
        Outcome::SpawnFailed(_) => OutcomeKind::SpawnFailed,
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The end-of-run table for people (stderr).
fn print_summary(
    ui: &Ui,
    root: &Path,
    run_id: &str,
    results: &[(String, StoryResult, Tally)],
    halt: &Option<Halt>,
) {
    ui.say("");
    ui.say(&format!(
        "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
        "story", "result", "cycles", "time", "turns", "cost*"
    ));
    for (id, result, t) in results {
        ui.say(&format!(
            "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
            id,
            result.word(),
            t.cycles,
            crate::ui::clock(t.duration),
            t.turns,
            format!("${:.2}", t.cost_usd)
        ));
        if let Some(reason) = result.reason() {
            ui.say(&format!("       {reason}"));
        }
    }
    ui.say("* API-equivalent cost reported by the CLI");
    match halt {
        Some(Halt::Interrupted) => ui.say("interrupted: run `bmad-host run` again to resume"),
        Some(Halt::UsageLimit { message: msg, .. }) => ui.say(&format!(
            "stopped: {msg}. Run again after the reset (the run resumes; the cycle was not charged), or use --wait-on-limit"
        )),
        Some(Halt::Fatal(e)) => ui.say(&format!("stopped: {e}")),
        None => {}
    }
    ui.say(&format!(
        "transcripts: {}",
        crate::journal::state_dir(root)
            .join("runs")
            .join(run_id)
            .display()
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc3339).expect("time")
    }

    #[test]
    fn reset_times_in_utc_are_understood() {
        let now = at("2026-11-23T14:00:00Z");
        let m = RESET_MARGIN;
        assert_eq!(
            until_reset("3pm (UTC)", now),
            Some(Duration::from_secs(3600) + m)
        );
        assert_eq!(
            until_reset("2:30pm UTC", now),
            Some(Duration::from_secs(1800) + m)
        );
        assert_eq!(
            until_reset("15:00 (UTC)", now),
            Some(Duration::from_secs(3600) + m)
        );
        // Earlier in the day means tomorrow.
        assert_eq!(
            until_reset("10am (UTC)", now),
            Some(Duration::from_secs(20 * 3600) + m)
        );
        assert_eq!(
            until_reset("12am (UTC)", now),
            Some(Duration::from_secs(10 * 3600) + m)
        );
        let exact = EXACT_RESET_MARGIN;
        assert_eq!(
            until_reset("2026-11-23T14:10:00Z", now),
            Some(Duration::from_secs(600) + exact)
        );
        // Already past: go now (after the margin).
        assert_eq!(until_reset("2026-11-23T13:00:00Z", now), Some(exact));
    }

    #[test]
    fn other_zones_and_nonsense_are_not_guessed() {
        let now = at("2026-11-23T14:00:00Z");
        assert_eq!(until_reset("3pm (Europe/Paris)", now), None);
        assert_eq!(until_reset("3pm", now), None);
        assert_eq!(until_reset("soon", now), None);
        assert_eq!(until_reset("25:00 UTC", now), None);
        assert_eq!(until_reset("13pm UTC", now), None);
    }
}
