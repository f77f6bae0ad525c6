//! The run as the report shows it, read from the journal's public queries: each story with its
//! steps as timeline items (agent calls, gates, send-backs, escalations, teardowns), its rounds
//! of findings, its spend per role, and the run's totals. An entry that does not decode is shown
//! as such rather than stopping the report (the report only reads).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::ReportError;
use crate::journal::{
    AgentCallResult, GatesResult, JournalReader, LaneIntent, LaneResult, LaneWork,
    PluginFingerprint, RunId, RunRecord, RunStatus, StepKind, StepRow, TeardownIntent,
    TeardownResult, Usage, run_in_progress, transcript_path,
};
use crate::policy::{Decision, OutcomeKind, state_name};

/// A row of a story's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// The Scrum Master's calls.
    Sm,
    /// The Developer's calls.
    Dev,
    /// The reviewer's calls.
    Qa,
    /// The project's quality gates.
    Gates,
}

impl Lane {
    /// Every lane, top to bottom.
    pub const ALL: [Lane; 4] = [Lane::Sm, Lane::Dev, Lane::Qa, Lane::Gates];

    /// `sm`, `dev`, `qa`, `gates`.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Sm => "sm",
            Lane::Dev => "dev",
            Lane::Qa => "qa",
            Lane::Gates => "gates",
        }
    }

    fn of_role(role: &str) -> Lane {
        match role {
            "sm" => Lane::Sm,
            "dev" => Lane::Dev,
            "qa" => Lane::Qa,
            _ => Lane::Gates,
        }
    }
}

/// What a timeline item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// One Claude CLI call.
    AgentCall,
    /// A run of the quality gates.
    Gates,
    /// A policy sent the story back with findings.
    SendBack,
    /// A policy escalated the story.
    Escalate,
    /// A policy failed the story.
    Fail,
    /// An end the host could not prove (survivors journaled).
    Teardown,
}

impl ItemKind {
    /// The name in the page's `data-kind`.
    pub fn name(self) -> &'static str {
        match self {
            ItemKind::AgentCall => "agent-call",
            ItemKind::Gates => "gates",
            ItemKind::SendBack => "send-back",
            ItemKind::Escalate => "escalate",
            ItemKind::Fail => "fail",
            ItemKind::Teardown => "teardown",
        }
    }

    /// A point in time rather than a span.
    pub fn is_marker(self) -> bool {
        !matches!(self, ItemKind::AgentCall | ItemKind::Gates)
    }
}

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// It succeeded (a call with a success result, gates that passed).
    Ok,
    /// It ended badly (an error result, a failed gate, an escalation, a teardown).
    Failed,
    /// The call hit a usage limit.
    Limited,
    /// It has an intent and no result, and the run is not running: Ctrl-C, a kill, a crash.
    Interrupted,
    /// It has an intent and no result, and the run is marked running: in progress now, or its
    /// host died without a word.
    Open,
}

impl ItemState {
    /// The name in the page's `data-state`.
    pub fn name(self) -> &'static str {
        match self {
            ItemState::Ok => "ok",
            ItemState::Failed => "failed",
            ItemState::Limited => "usage-limit",
            ItemState::Interrupted => "interrupted",
            ItemState::Open => "open",
        }
    }
}

/// One step of a story as the report shows it.
#[derive(Debug, Clone)]
pub struct Item {
    /// The journal's step id.
    pub step: i64,
    /// Its row.
    pub lane: Lane,
    /// What it is.
    pub kind: ItemKind,
    /// The Dev/QA cycle.
    pub cycle: u32,
    /// The attempt recorded (above 1: an earlier attempt was interrupted).
    pub attempt: u32,
    /// When its (latest attempt's) intent was journaled.
    pub start: SystemTime,
    /// When its result was journaled.
    pub end: Option<SystemTime>,
    /// For a call with no result in a run that is not live: when its transcript was last
    /// written (about when it stopped), to draw it that long.
    pub last_seen: Option<SystemTime>,
    /// How it ended.
    pub state: ItemState,
    /// Its outcome in a word or two (`success`, `error-max-turns`, `2/3 passed`, ...).
    pub outcome: String,
    /// Detail: the call's message, the failed gates' output, the findings, the reason.
    pub detail: String,
    /// An agent call's cost in USD, as the CLI reported it.
    pub cost_usd: Option<f64>,
    /// An agent call's turns.
    pub turns: Option<u32>,
    /// An agent call's input and output tokens, when the journal records them.
    pub tokens: Option<(u64, u64)>,
    /// Processes started for the call (above 1: transient failures were retried).
    pub processes: u32,
    /// False when the end of the call could not be proven.
    pub clean: bool,
    /// The call's transcripts, one per attempt, that exist.
    pub transcripts: Vec<PathBuf>,
    /// The attempts before the one journaled (redone after an interruption or a usage limit),
    /// as their transcripts tell.
    pub earlier: Vec<Attempt>,
}

/// An attempt of an agent call as its transcript tells it: the host's last note (`end`, with
/// the judged outcome) and the file's modification time (when the attempt stopped writing).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub n: u32,
    /// The transcript.
    pub transcript: PathBuf,
    /// The host's judgement of how it ended (`usage-limit`, `cancelled`, ...); `None` when the
    /// transcript has no end note (the host was killed during it).
    pub outcome: Option<String>,
    /// When it started (its last write less the time since the transcript was opened).
    pub start: Option<SystemTime>,
    /// When it last wrote to its transcript.
    pub end: Option<SystemTime>,
}

/// One send-back: the findings a round ended with.
#[derive(Debug, Clone)]
pub struct Round {
    /// The cycle it closed.
    pub cycle: u32,
    /// Who sent it back (`qa` for a review, `dev` for failing gates).
    pub lane: Lane,
    /// The decision's step id.
    pub step: i64,
    /// When.
    pub at: SystemTime,
    /// The findings, as the policy gave them.
    pub findings: Vec<String>,
}

/// What one role's calls used in a story.
#[derive(Debug, Clone, Default)]
pub struct RoleSpend {
    /// Agent calls (or gate runs).
    pub calls: u32,
    /// USD, as the CLI reported it.
    pub cost_usd: f64,
    /// Agent turns.
    pub turns: u32,
    /// Input and output tokens, when the journal records them per call.
    pub tokens: Option<(u64, u64)>,
    /// Wall-clock time of the finished steps.
    pub duration: Duration,
}

/// One story of the run.
#[derive(Debug, Clone)]
pub struct StoryView {
    /// The story id.
    pub id: String,
    /// Its title (empty when the journal has no record of it yet).
    pub title: String,
    /// The last state the host saw or wrote.
    pub state: Option<String>,
    /// `done`, `failed`, `escalated`, or none yet.
    pub result: Option<String>,
    /// Cycles used.
    pub cycles: u32,
    /// What its calls and gates used, as the run loop summed it.
    pub usage: Usage,
    /// The last thing that happened to it.
    pub last_outcome: Option<String>,
    /// Its steps, in journal order.
    pub items: Vec<Item>,
    /// Its send-backs, in order.
    pub rounds: Vec<Round>,
    /// Spend per lane.
    pub roles: BTreeMap<Lane, RoleSpend>,
}

/// A lane of a parallel run (`run --jobs N`), or its integration lane: the stories it held, in
/// time order.
#[derive(Debug, Clone)]
pub struct RunLane {
    /// `1`, `2`, ... for the lanes that drive stories; `integration` for the integration lane.
    pub name: String,
    /// What it held.
    pub spans: Vec<LaneSpan>,
}

/// A lane holding one story, from its `lane` record.
#[derive(Debug, Clone)]
pub struct LaneSpan {
    /// The record's step id.
    pub step: i64,
    /// The story.
    pub story: String,
    /// The lane the story held (for the integration lane: the lane it came from).
    pub lane: u32,
    /// Driving or integrating.
    pub work: LaneWork,
    /// When the lane took it.
    pub start: SystemTime,
    /// When it let it go (`None`: the run stopped with it, or is running).
    pub end: Option<SystemTime>,
    /// How it ended.
    pub state: ItemState,
    /// `done`, `escalated`, `integrated`, `not-integrated`, or the open state's name.
    pub outcome: String,
    /// The commit it landed as, or why it was not integrated or ended so.
    pub detail: String,
}

/// The run's totals.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Stories in the run.
    pub stories: usize,
    /// Stories done.
    pub done: usize,
    /// Stories failed.
    pub failed: usize,
    /// Stories escalated.
    pub escalated: usize,
    /// Agent calls.
    pub calls: usize,
    /// Agent calls with no result (interrupted or in progress).
    pub open_calls: usize,
    /// Steps redone after an interruption.
    pub retried: usize,
    /// Everything the stories used.
    pub usage: Usage,
}

/// Whether a run's host is at work, for a run the journal marks running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// The run is not marked running: it ended (done, failed, interrupted, abandoned).
    Ended,
    /// A host holds the project's run lock: the run is live.
    Running,
    /// Marked running, but no host holds the lock: its host died (a kill, a crash); the next
    /// `bmad-host run` resumes it.
    Gone,
    /// Marked running; whether a host holds the lock cannot be told.
    Unknown,
}

/// A run, read for the report.
#[derive(Debug, Clone)]
pub struct RunView {
    /// Its id.
    pub id: RunId,
    /// How it stands.
    pub status: RunStatus,
    /// When it first started.
    pub started_at: SystemTime,
    /// When it last finished.
    pub finished_at: Option<SystemTime>,
    /// When the journal was read.
    pub read_at: SystemTime,
    /// Whether its host is still running it.
    pub host: HostState,
    /// Its command line.
    pub args: Vec<String>,
    /// Its plugins.
    pub plugins: Vec<PluginFingerprint>,
    /// Its stories, in story order.
    pub stories: Vec<StoryView>,
    /// Its lanes, when it ran stories in parallel (`1`, `2`, ..., then `integration`); empty
    /// for a run of one story at a time.
    pub lanes: Vec<RunLane>,
    /// Its totals.
    pub totals: Totals,
}

/// Reads `run` (default: the latest) of the journal of the project at `root`.
pub(super) fn read(
    reader: &JournalReader,
    root: &Path,
    run: Option<&RunId>,
) -> Result<RunView, ReportError> {
    let runs = reader.runs()?;
    let record = pick(reader, &runs, run)?;
    let read_at = SystemTime::now();
    // A run marked running is live only while a host holds the run lock; the latest run's
    // host holds it (an earlier run marked running was left by a host that died).
    let latest = runs.last().map(|r| &r.id) == Some(&record.id);
    let host = match record.status {
        RunStatus::Running if latest => match run_in_progress(root) {
            Some(true) => HostState::Running,
            Some(false) => HostState::Gone,
            None => HostState::Unknown,
        },
        RunStatus::Running => HostState::Gone,
        _ => HostState::Ended,
    };
    let live = matches!(host, HostState::Running | HostState::Unknown);
    let mut stories: Vec<StoryView> = reader
        .story_summaries(Some(&record.id))?
        .into_iter()
        .map(|s| {
            let r = s.record;
            StoryView {
                id: r.story_id,
                title: r.title,
                state: Some(state_name(r.state).to_owned()),
                result: r.result.map(|x| x.as_str().to_owned()),
                cycles: r.cycle,
                usage: r.usage,
                last_outcome: r.last_outcome,
                items: Vec::new(),
                rounds: Vec::new(),
                roles: BTreeMap::new(),
            }
        })
        .collect();
    let mut lanes: Vec<RunLane> = Vec::new();
    for step in reader.steps(Some(&record.id), None)? {
        // The host's sprint-status reconciliations are not drawn (`bmad-host log` lists them).
        if step.key.kind == StepKind::SprintSync {
            continue;
        }
        if step.key.kind == StepKind::Lane {
            add_lane_span(&mut lanes, &step, live);
            continue;
        }
        let at = match stories.iter().position(|s| s.id == step.key.story) {
            Some(at) => at,
            None => {
                stories.push(StoryView {
                    id: step.key.story.clone(),
                    title: String::new(),
                    state: None,
                    result: None,
                    cycles: step.key.cycle,
                    usage: Usage::default(),
                    last_outcome: None,
                    items: Vec::new(),
                    rounds: Vec::new(),
                    roles: BTreeMap::new(),
                });
                stories.len() - 1
            }
        };
        add_step(&mut stories[at], &step, root, live);
    }
    lanes.sort_by_key(|l| match l.name.parse::<u32>() {
        Ok(n) => (0, n),
        Err(_) => (1, 0),
    });
    let mut totals = Totals {
        stories: stories.len(),
        ..Totals::default()
    };
    for s in &stories {
        match s.result.as_deref() {
            Some("done") => totals.done += 1,
            Some("failed") => totals.failed += 1,
            Some("escalated") => totals.escalated += 1,
            _ => {}
        }
        totals.usage += s.usage;
        for item in &s.items {
            if item.kind == ItemKind::AgentCall {
                totals.calls += 1;
                if item.end.is_none() {
                    totals.open_calls += 1;
                }
            }
            if item.attempt > 1 {
                totals.retried += 1;
            }
        }
    }
    Ok(RunView {
        id: record.id.clone(),
        status: record.status,
        started_at: record.started_at,
        finished_at: record.finished_at,
        read_at,
        host,
        args: record.args.clone(),
        plugins: record.plugins.clone(),
        stories,
        lanes,
        totals,
    })
}

fn pick<'a>(
    reader: &JournalReader,
    runs: &'a [RunRecord],
    run: Option<&RunId>,
) -> Result<&'a RunRecord, ReportError> {
    let path = reader.path().to_path_buf();
    match run {
        None => runs.last().ok_or(ReportError::NoRun { path }),
        Some(id) => runs.iter().find(|r| &r.id == id).ok_or_else(|| {
            let known: Vec<String> = runs
                .iter()
                .rev()
                .take(5)
                .map(|r| r.id.to_string())
                .collect();
            ReportError::UnknownRun {
                run: id.clone(),
                path,
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            }
        }),
    }
}

/// Adds a `lane` record to its lane's row (a record that does not decode is skipped: the
/// report only reads, and the run's own resume check names it).
fn add_lane_span(lanes: &mut Vec<RunLane>, step: &StepRow, live: bool) {
    let Ok(intent) = serde_json::from_value::<LaneIntent>(step.intent.clone()) else {
        return;
    };
    let result = step
        .result
        .clone()
        .and_then(|r| serde_json::from_value::<LaneResult>(r).ok());
    let open = if live {
        ItemState::Open
    } else {
        ItemState::Interrupted
    };
    let (state, outcome, detail) = match result {
        None => (open, open.name().to_owned(), String::new()),
        Some(r) => {
            let good = matches!(r.outcome.as_str(), "done" | "integrated");
            let detail = match (r.commit, r.reason) {
                (Some(commit), _) => format!("commit {commit}"),
                (None, Some(reason)) => reason,
                (None, None) => String::new(),
            };
            let state = if good {
                ItemState::Ok
            } else {
                ItemState::Failed
            };
            (state, r.outcome, detail)
        }
    };
    let name = match intent.work {
        LaneWork::Drive => intent.lane.to_string(),
        LaneWork::Integrate => "integration".to_owned(),
    };
    let span = LaneSpan {
        step: step.id.get(),
        story: step.key.story.clone(),
        lane: intent.lane,
        work: intent.work,
        start: step.intent_at,
        end: step.result_at,
        state,
        outcome,
        detail,
    };
    match lanes.iter_mut().find(|l| l.name == name) {
        Some(lane) => lane.spans.push(span),
        None => lanes.push(RunLane {
            name,
            spans: vec![span],
        }),
    }
}

/// Adds one journaled step to its story.
fn add_step(story: &mut StoryView, step: &StepRow, root: &Path, live: bool) {
    let open = if live {
        ItemState::Open
    } else {
        ItemState::Interrupted
    };
    let key = &step.key;
    let mut item = Item {
        step: step.id.get(),
        lane: Lane::of_role(&key.role),
        kind: ItemKind::AgentCall,
        cycle: key.cycle,
        attempt: step.attempt,
        start: step.intent_at,
        end: step.result_at,
        last_seen: None,
        state: open,
        outcome: open.name().to_owned(),
        detail: String::new(),
        cost_usd: None,
        turns: None,
        tokens: None,
        processes: 0,
        clean: true,
        transcripts: Vec::new(),
        earlier: Vec::new(),
    };
    match key.kind {
        StepKind::AgentCall => {
            let mut attempts: Vec<Attempt> = (1..=step.attempt)
                .filter_map(|a| {
                    let path = transcript_path(root, &key.run, &key.story, key.cycle, &key.role, a);
                    attempt(path, a)
                })
                .collect();
            item.transcripts = attempts.iter().map(|a| a.transcript.clone()).collect();
            let current = attempts.pop_if(|a| a.n == step.attempt);
            item.earlier = attempts;
            match &step.result {
                Some(result) => agent_result(&mut item, result),
                None => unfinished(&mut item, current.as_ref(), live),
            }
            let spend = story.roles.entry(item.lane).or_default();
            spend.calls += 1;
            spend.cost_usd += item.cost_usd.unwrap_or(0.0);
            spend.turns += item.turns.unwrap_or(0);
            if let Some((i, o)) = item.tokens {
                let (si, so) = spend.tokens.get_or_insert((0, 0));
                *si = si.saturating_add(i);
                *so = so.saturating_add(o);
            }
            spend.duration += span(&item);
        }
        StepKind::Gates => {
            item.kind = ItemKind::Gates;
            item.lane = Lane::Gates;
            if let Some(result) = &step.result {
                gates_result(&mut item, result);
            }
            let spend = story.roles.entry(Lane::Gates).or_default();
            spend.calls += 1;
            spend.duration += span(&item);
        }
        StepKind::Decision => {
            let Some(result) = &step.result else { return };
            let Ok(decision) = serde_json::from_value::<Decision>(result.clone()) else {
                return;
            };
            item.end = item.end.or(Some(item.start));
            item.state = ItemState::Failed;
            match decision {
                Decision::SendBack(findings) => {
                    item.kind = ItemKind::SendBack;
                    item.outcome = match findings.len() {
                        1 => "sent back, 1 finding".to_owned(),
                        n => format!("sent back, {n} findings"),
                    };
                    story.rounds.push(Round {
                        cycle: key.cycle,
                        lane: item.lane,
                        step: item.step,
                        at: item.end.unwrap_or(item.start),
                        findings,
                    });
                }
                Decision::Escalate(reason) => {
                    item.kind = ItemKind::Escalate;
                    item.outcome = "escalated".to_owned();
                    item.detail = reason;
                }
                Decision::Fail(reason) => {
                    item.kind = ItemKind::Fail;
                    item.outcome = "failed".to_owned();
                    item.detail = reason;
                }
                Decision::InvokeAgent(_)
                | Decision::RunGates
                | Decision::SetState(_)
                | Decision::Complete => return,
            }
        }
        StepKind::Teardown => {
            item.kind = ItemKind::Teardown;
            item.state = ItemState::Failed;
            item.end = item.end.or(Some(item.start));
            item.clean = false;
            let what = serde_json::from_value::<TeardownIntent>(step.intent.clone())
                .map(|t| t.what)
                .unwrap_or_default();
            let survivors = step
                .result
                .clone()
                .and_then(|r| serde_json::from_value::<TeardownResult>(r).ok())
                .map(|r| r.survivors)
                .unwrap_or_default();
            item.outcome = format!("unproven end, {} survivors", survivors.len());
            let mut detail = what;
            for s in survivors {
                detail.push_str(&format!(
                    "\npid {}{}: {}",
                    s.pid,
                    if s.holds_output {
                        " (held the output open)"
                    } else {
                        " (alive after SIGKILL)"
                    },
                    s.command
                ));
            }
            item.detail = detail;
        }
        StepKind::StatusParse
        | StepKind::StatusWrite
        | StepKind::SprintSync
        | StepKind::Lane
        | StepKind::AfterStory => {
            return;
        }
    }
    story.items.push(item);
}

/// Reads how attempt `n` of a call ended from its transcript, if the transcript exists.
fn attempt(transcript: PathBuf, n: u32) -> Option<Attempt> {
    use std::io::{Read, Seek, SeekFrom};
    /// Enough of the file's end for its last notes (a note is a short line).
    const TAIL: u64 = 16 * 1024;
    let mut file = std::fs::File::open(&transcript).ok()?;
    let meta = file.metadata().ok()?;
    let end = meta.modified().ok();
    let mut tail = Vec::new();
    let from = meta.len().saturating_sub(TAIL);
    if file.seek(SeekFrom::Start(from)).is_err() || file.read_to_end(&mut tail).is_err() {
        tail.clear();
    }
    let notes: Vec<Value> = String::from_utf8_lossy(&tail)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("bmad_host").is_some())
        .collect();
    let outcome = notes
        .iter()
        .rev()
        .find(|v| v["bmad_host"] == "end")
        .and_then(|v| v["outcome"].as_str())
        .map(str::to_owned);
    let since_open = notes.last().and_then(|v| v["t_ms"].as_u64());
    let start = end
        .zip(since_open)
        .and_then(|(e, ms)| e.checked_sub(Duration::from_millis(ms)));
    Some(Attempt {
        n,
        transcript,
        outcome,
        start,
        end,
    })
}

/// Fills an agent call's item that has no result: in progress (a live run with no end note
/// yet), stopped at a usage limit, interrupted (Ctrl-C), or cut off (the host was killed).
fn unfinished(item: &mut Item, current: Option<&Attempt>, live: bool) {
    if !live {
        item.last_seen = current.and_then(|a| a.end);
    }
    let ended = current.and_then(|a| a.outcome.as_deref());
    (item.state, item.outcome) = match ended {
        Some("usage-limit") if live => (
            ItemState::Limited,
            "usage limit: waiting for the reset".to_owned(),
        ),
        Some("usage-limit") => (
            ItemState::Limited,
            "usage limit: the run stopped at it".to_owned(),
        ),
        Some("cancelled") => (ItemState::Interrupted, "interrupted (Ctrl-C)".to_owned()),
        Some(other) => (
            ItemState::Interrupted,
            format!("{other}: the run stopped before its result was journaled"),
        ),
        None if live => (ItemState::Open, "in progress".to_owned()),
        None => (
            ItemState::Interrupted,
            "cut off: the host stopped during it".to_owned(),
        ),
    };
}

/// Fills an agent call's item from its journaled result.
fn agent_result(item: &mut Item, result: &Value) {
    let Ok(call) = serde_json::from_value::<AgentCallResult>(result.clone()) else {
        item.state = ItemState::Failed;
        item.outcome = "undecodable".to_owned();
        item.detail = "the journal's result of this call cannot be read".to_owned();
        return;
    };
    let o = &call.outcome;
    item.state = match o.kind {
        OutcomeKind::Success => ItemState::Ok,
        OutcomeKind::UsageLimit => ItemState::Limited,
        OutcomeKind::Cancelled => ItemState::Interrupted,
        _ => ItemState::Failed,
    };
    item.outcome = outcome_name(o.kind).to_owned();
    item.detail = o.message.clone();
    item.cost_usd = Some(o.cost_usd);
    item.turns = Some(o.num_turns);
    item.processes = call.attempts;
    item.clean = call.clean;
    item.tokens = tokens(result);
    if item.transcripts.is_empty() && !call.transcript.is_empty() {
        let stored = PathBuf::from(&call.transcript);
        if stored.is_file() {
            item.transcripts.push(stored);
        }
    }
}

/// Per-call tokens, where a journal records them: `input_tokens` and `output_tokens` in the
/// result or in its outcome.
fn tokens(result: &Value) -> Option<(u64, u64)> {
    [result, &result["outcome"], &result["usage"]]
        .into_iter()
        .find_map(|v| Some((v["input_tokens"].as_u64()?, v["output_tokens"].as_u64()?)))
}

/// Fills a gates item from its journaled result.
fn gates_result(item: &mut Item, result: &Value) {
    let Ok(gates) = serde_json::from_value::<GatesResult>(result.clone()) else {
        item.state = ItemState::Failed;
        item.outcome = "undecodable".to_owned();
        return;
    };
    let passed = gates.reports.iter().filter(|r| r.passed).count();
    item.state = if passed == gates.reports.len() {
        ItemState::Ok
    } else {
        ItemState::Failed
    };
    item.outcome = if gates.reports.is_empty() {
        "no gate configured".to_owned()
    } else {
        format!("{passed}/{} passed", gates.reports.len())
    };
    item.detail = gates
        .reports
        .iter()
        .map(|r| {
            let verdict = if r.passed {
                "passed".to_owned()
            } else if r.timed_out {
                "timed out".to_owned()
            } else {
                match r.exit_code {
                    Some(code) => format!("failed (exit {code})"),
                    None => "failed".to_owned(),
                }
            };
            if r.passed || r.output_tail.trim().is_empty() {
                format!("{}: {verdict}", r.name)
            } else {
                format!("{}: {verdict}\n{}", r.name, r.output_tail.trim_end())
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
}

/// A finished item's duration (zero while it has no end).
pub(super) fn span(item: &Item) -> Duration {
    item.end
        .and_then(|end| end.duration_since(item.start).ok())
        .unwrap_or_default()
}

fn outcome_name(kind: OutcomeKind) -> &'static str {
    match kind {
        OutcomeKind::Success => "success",
        OutcomeKind::ErrorMaxTurns => "error-max-turns",
        OutcomeKind::ErrorMaxBudget => "error-max-budget",
        OutcomeKind::ErrorDuringExecution => "error-during-execution",
        OutcomeKind::ApiError => "api-error",
        OutcomeKind::NoResult => "no-result",
        OutcomeKind::TimedOut => "timed-out",
        OutcomeKind::IdleTimeout => "idle-timeout",
        OutcomeKind::StoppedByPolicy => "stopped-by-policy",
        OutcomeKind::Cancelled => "cancelled",
        OutcomeKind::UsageLimit => "usage-limit",
        OutcomeKind::SpawnFailed => "spawn-failed",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::tokens;

    #[test]
    fn per_call_tokens_are_read_where_a_journal_records_them() {
        assert_eq!(tokens(&json!({"outcome": {"kind": "Success"}})), None);
        assert_eq!(
            tokens(&json!({"input_tokens": 10, "output_tokens": 2})),
            Some((10, 2))
        );
        assert_eq!(
            tokens(&json!({"outcome": {"input_tokens": 7, "output_tokens": 1}})),
            Some((7, 1))
        );
    }
}
