//! Output: progress for people on stderr, NDJSON events for machines on stdout.
//!
//! [`Ui::emit`] takes every [`Event`] of a run. With `--json` each becomes one line on stdout
//! (`{"event": ..., "ts": ..., ...}`, schema in the README). For people, a progress line on
//! stderr shows the epic, story, role, cycle, elapsed time, turns and cost of the current agent
//! call when stderr is a terminal; on a pipe nothing is drawn. `-q` silences people's output.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant, SystemTime};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

/// One NDJSON event. Field names are part of the scripting contract.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began (or resumed).
    RunStarted {
        /// The journal's run id.
        run_id: String,
        /// The project root.
        project: String,
        /// `v4` or `v6`.
        layout: String,
        /// The BMAD version the project was installed with, or `unknown`.
        version: String,
        /// The selected story ids, in the order they run.
        stories: Vec<String>,
        /// Whether an unfinished run is being resumed.
        resumed: bool,
        /// Always false: a dry run prints `plan` lines instead.
        dry_run: bool,
    },
    /// The host began driving a story.
    StoryStarted {
        /// The story id.
        story: String,
        /// Its title.
        title: String,
        /// Its epic.
        epic: u32,
        /// Its canonical state, or `None` when not drafted or unreadable.
        state: Option<String>,
    },
    /// An agent process was started.
    AgentStarted {
        /// `sm`, `dev` or `qa`.
        role: String,
        /// The story id.
        story: String,
        /// The Dev/QA cycle (0 while SM drafts).
        cycle: u32,
        /// The process id, when it started.
        pid: Option<u32>,
        /// The attempt, from 1.
        attempt: u32,
        /// Whether this attempt retries a transient failure.
        retry: bool,
    },
    /// An agent call ended (after the host proved its process tree gone, or gave up proving it:
    /// then `clean` is false and the run stops).
    AgentFinished {
        /// `sm`, `dev` or `qa`.
        role: String,
        /// The story id.
        story: String,
        /// The Dev/QA cycle.
        cycle: u32,
        /// How it ended (`success`, `timed_out`, ...; see the README).
        outcome: String,
        /// The result text or the reason it failed.
        message: String,
        /// Wall-clock time of the call.
        duration_ms: u64,
        /// Agent turns used.
        turns: u32,
        /// The API-equivalent cost the CLI reported.
        cost_usd: f64,
        /// The transcript file.
        transcript: String,
        /// Whether its end was proven: process reaped, no descendant alive, output at EOF.
        clean: bool,
        /// When not `clean`: the processes that keep its end from being proven.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        survivors: Vec<SurvivorInfo>,
    },
    /// The CLI reported the account close to or over one of its usage limits (its
    /// `rate_limit_event` with a status other than `allowed`). `allowed_warning` never stops
    /// anything; a `rejected` one comes with a `usage_limit` outcome or a retried rate limit.
    RateLimit {
        /// The story id.
        story: String,
        /// `sm`, `dev` or `qa`.
        role: String,
        /// `allowed_warning` or `rejected`.
        status: String,
        /// The limit (`five_hour`, `seven_day`, `seven_day_opus`, `seven_day_sonnet`,
        /// `overage`), when the CLI named it.
        #[serde(rename = "type")]
        kind: Option<String>,
        /// The share of the limit used, 0 to 1, when stated.
        utilization: Option<f64>,
        /// When the limit resets (RFC 3339, UTC), when stated.
        resets_at: Option<String>,
    },
    /// A usage limit stopped a story's step: the step is not charged, and the run stops, or
    /// waits for the reset (`--wait-on-limit`) and redoes the step.
    UsageLimit {
        /// The story id.
        story: String,
        /// `sm`, `dev` or `qa`.
        role: String,
        /// The CLI's message.
        message: String,
        /// When the limit resets (RFC 3339, UTC), when known.
        resets_at: Option<String>,
        /// Whether the run waits for the reset.
        wait: bool,
    },
    /// A parallel run (`--jobs N`) integrated a finished story onto the integration branch: its
    /// commit, fast-forwarded to after the gates passed on it (`commit` is null when the story
    /// changed no file).
    StoryIntegrated {
        /// The story id.
        story: String,
        /// The integration branch.
        branch: String,
        /// The story's commit on it.
        commit: Option<String>,
    },
    /// `[git] after_story` ran for a story that landed as a commit *(extension)*. A failure is
    /// reported and stops nothing.
    AfterStory {
        /// The story id.
        story: String,
        /// The story's commit (null: it changed nothing).
        commit: Option<String>,
        /// Whether the command exited 0 in time.
        passed: bool,
        /// Its exit code (null: killed by a signal or torn down).
        exit_code: Option<i32>,
        /// Whether it ran out of time.
        timed_out: bool,
        /// How long it ran, teardown included.
        duration_ms: u64,
        /// The tail of its output.
        output: String,
    },
    /// A parallel run could not integrate a finished story: a conflict with the integration
    /// branch (`files` names them) or a gate that failed on the integrated result. The first
    /// time the story goes back to Dev in its worktree; the second time it is escalated.
    IntegrationFailed {
        /// The story id.
        story: String,
        /// What failed, in words.
        reason: String,
        /// The conflicting files (empty for a gate failure).
        files: Vec<String>,
        /// Whether the story goes back to Dev (false: escalated).
        back_to_dev: bool,
    },
    /// Waiting for a usage limit to reset (`--wait-on-limit`): at the start of the wait, then
    /// once a minute.
    WaitingForReset {
        /// The story whose step is redone after the reset.
        story: String,
        /// When the limit resets (RFC 3339, UTC).
        resets_at: String,
        /// How long is left to wait.
        remaining_ms: u64,
    },
    /// A quality gate ran.
    GateFinished {
        /// The story id.
        story: String,
        /// The gate's name.
        gate: String,
        /// Whether it passed.
        passed: bool,
        /// Its exit code, when it exited.
        exit_code: Option<i32>,
        /// Whether it ran out of time.
        timed_out: bool,
        /// How long it ran.
        duration_ms: u64,
        /// Whether its end was proven: process reaped, no descendant alive, output at EOF.
        clean: bool,
        /// When not `clean`: the processes that keep its end from being proven.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        survivors: Vec<SurvivorInfo>,
    },
    /// A story's parsed state changed.
    StateChanged {
        /// The story id.
        story: String,
        /// The state before, if it had one.
        from: Option<String>,
        /// The state now.
        to: String,
    },
    /// *(extension)* The host put its own values of v6 sprint-status back: drift found at the
    /// start of the run, an agent's edit of a value the host owns, an epic's closeout.
    SprintReconciled {
        /// `start`, `story-start`, `after-agent`, `story-end` or `retrospective`.
        when: String,
        /// The story being driven, if any.
        story: Option<String>,
        /// `sprint-status.yaml`, relative to the project root.
        file: String,
        /// The values set.
        changes: Vec<SprintChangeInfo>,
        /// What could not be reconciled, and why (never a failure).
        problems: Vec<String>,
    },
    /// A story finished: done, failed or escalated.
    StoryFinished {
        /// The story id.
        story: String,
        /// `done`, `failed` or `escalated`.
        result: String,
        /// Why it failed or was escalated.
        reason: Option<String>,
        /// Dev/QA cycles used.
        cycles: u32,
        /// Time spent on it, over all runs.
        duration_ms: u64,
        /// API-equivalent cost, over all runs.
        cost_usd: f64,
        /// Agent turns, over all runs.
        turns: u32,
        /// Input tokens (cache reads and writes included), as `cost_usd`.
        input_tokens: u64,
        /// Output tokens, as `cost_usd`.
        output_tokens: u64,
        /// `input_tokens + output_tokens`: what `max_story_tokens` counts.
        tokens: u64,
    },
    /// A notifier (`[[notify]]`) failed: it exited non-zero, timed out, or its webhook answered
    /// with an error or not at all. Never stops the run.
    NotifyFailed {
        /// The event it was told of (`escalated`, `run_finished`, ...).
        on: String,
        /// The notifier: `command "..."` or `webhook URL`.
        notifier: String,
        /// What went wrong.
        error: String,
    },
    /// Build flow: the host brought a story's ledgers (the spec's frontmatter `status:`, the
    /// story file's `Status:` line where there is one, its sprint-status key) into agreement.
    LedgersReconciled {
        /// The story id.
        story: String,
        /// `start` (drift found before the story's first step) or `step` (after a step).
        when: String,
        /// The state all ledgers now say.
        state: String,
        /// Each file changed: `path: old → new`.
        changes: Vec<String>,
    },
    /// The run ended.
    RunFinished {
        /// The journal's run id.
        run_id: String,
        /// Stories selected.
        total: usize,
        /// Stories done.
        done: usize,
        /// Stories failed.
        failed: usize,
        /// Stories escalated.
        escalated: usize,
        /// Stories not reached (interrupted or stopped).
        not_run: usize,
        /// Whether Ctrl-C stopped it.
        interrupted: bool,
        /// The run's wall-clock time.
        duration_ms: u64,
        /// API-equivalent cost of the run.
        cost_usd: f64,
        /// Input tokens of the run (cache reads and writes included).
        input_tokens: u64,
        /// Output tokens of the run.
        output_tokens: u64,
        /// `input_tokens + output_tokens`: what `max_run_tokens` counts.
        tokens: u64,
        /// When a run spend cap stopped the run: which, with the figures.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capped: Option<String>,
        /// The exit code the process ends with.
        exit_code: i32,
        /// When the run stopped because the end of a call or gate (this run's or an earlier
        /// one's) could not be proven: the processes still alive.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        survivors: Vec<SurvivorInfo>,
    },
}

impl Event {
    /// The `story_finished` of a story that ended without running (`result`, `reason`): no
    /// cycle, no time, no spend.
    pub fn ended_unrun(story: String, result: &str, reason: String) -> Event {
        Event::StoryFinished {
            story,
            result: result.to_owned(),
            reason: Some(reason),
            cycles: 0,
            duration_ms: 0,
            cost_usd: 0.0,
            turns: 0,
            input_tokens: 0,
            output_tokens: 0,
            tokens: 0,
        }
    }

    /// The name of the event as `[[notify]] on` lists it, for those a notifier may be told of:
    /// `escalated` and `failed` (a story's end), `usage_limit`, `limit_warning` (a rate-limit
    /// report of `allowed_warning`), `run_finished`.
    pub fn notify_name(&self) -> Option<&'static str> {
        match self {
            Event::StoryFinished { result, .. } if result == "escalated" => Some("escalated"),
            Event::StoryFinished { result, .. } if result == "failed" => Some("failed"),
            Event::UsageLimit { .. } => Some("usage_limit"),
            Event::RateLimit { status, .. } if status == "allowed_warning" => Some("limit_warning"),
            Event::RunFinished { .. } => Some("run_finished"),
            _ => None,
        }
    }

    /// The event as its NDJSON line has it, `ts` included.
    pub fn to_json(&self) -> serde_json::Value {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert("ts".into(), serde_json::Value::String(timestamp()));
                serde_json::Value::Object(map)
            }
            _ => serde_json::Value::Null,
        }
    }
}

/// One sprint-status value the host set, as the `sprint_reconciled` event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SprintChangeInfo {
    /// The key.
    pub key: String,
    /// The value it had.
    pub from: String,
    /// The value written.
    pub to: String,
    /// Why (what the host knows).
    pub reason: String,
}

/// A process that keeps the end of a call or gate from being proven, as the events show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorInfo {
    /// Its pid.
    pub pid: i32,
    /// Its command line.
    pub command: String,
    /// True when it holds the output open; false when it is alive after SIGKILL.
    pub holds_output: bool,
}

impl From<&crate::process::Survivor> for SurvivorInfo {
    fn from(s: &crate::process::Survivor) -> Self {
        SurvivorInfo {
            pid: s.pid,
            command: s.command.clone(),
            holds_output: s.kind == crate::process::SurvivorKind::HoldsOutput,
        }
    }
}

/// How much people see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors only (`-q`).
    Quiet,
    /// Progress and results.
    Normal,
    /// More detail (`-v`).
    Verbose,
}

/// The run's output channels.
#[derive(Debug)]
pub struct Ui {
    json: bool,
    verbosity: Verbosity,
    bar: Option<ProgressBar>,
    call_started: Option<Instant>,
    context: String,
    turns: u32,
    /// A usage-limit warning to show on the progress line.
    limit_note: Option<String>,
    /// Where every event is copied to (the notifiers), when set.
    tap: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    /// Where the NDJSON lines go instead of stdout (a worker's, for the client that follows it).
    lines: Option<tokio::sync::mpsc::UnboundedSender<serde_json::Value>>,
    /// While it is false, each line sent to `lines` says `"replayed": true` (a worker replaying
    /// a story's journal re-emits what another worker emitted first).
    live: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// A parallel run on a terminal: one progress line per lane with a story, under the run's
    /// line (made when the first lane's event arrives).
    lanes: Option<Lanes>,
}

/// The progress lines of a parallel run's lanes.
#[derive(Debug)]
struct Lanes {
    multi: MultiProgress,
    /// By lane: its line, and what it shows.
    lines: std::collections::BTreeMap<u32, LaneLine>,
}

/// One lane's progress line: its story, its call, how long, how many messages.
#[derive(Debug)]
struct LaneLine {
    bar: ProgressBar,
    context: String,
    call_started: Option<Instant>,
    turns: u32,
}

impl LaneLine {
    fn refresh(&self, lane: u32) {
        let elapsed = self
            .call_started
            .map(|t| format!(" · {}", clock(t.elapsed())))
            .unwrap_or_default();
        self.bar.set_message(format!(
            "lane {lane} · {}{elapsed} · {} msgs",
            self.context, self.turns
        ));
    }
}

impl Ui {
    /// `json`: NDJSON on stdout. The progress display is drawn only on a terminal.
    pub fn new(json: bool, verbosity: Verbosity) -> Self {
        let bar = (verbosity != Verbosity::Quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Ui {
            json,
            verbosity,
            bar,
            call_started: None,
            context: String::new(),
            turns: 0,
            limit_note: None,
            tap: None,
            lines: None,
            live: None,
            lanes: None,
        }
    }

    /// Whether NDJSON goes to stdout.
    pub fn json(&self) -> bool {
        self.json
    }

    /// Publishes an event: an NDJSON line, the progress display, and a copy to the tap.
    pub fn emit(&mut self, event: Event) {
        self.emit_in(None, event);
    }

    /// [`Ui::emit`] for a story driven in a lane of a parallel run (`run --jobs N`, N > 1): its
    /// NDJSON line carries `"lane": N` (1-based), an extension of the events. `None`: no field,
    /// as with one job.
    pub fn emit_in(&mut self, lane: Option<u32>, event: Event) {
        if self.json {
            match (&self.lines, json_line(&event, lane)) {
                // A sink whose reader is gone loses the line, never the event.
                (Some(lines), Some(mut line)) => {
                    if self
                        .live
                        .as_ref()
                        .is_some_and(|live| !live.load(std::sync::atomic::Ordering::SeqCst))
                    {
                        line["replayed"] = serde_json::Value::Bool(true);
                    }
                    drop(lines.send(line));
                }
                (None, Some(line)) => write_json_line(&line),
                (_, None) => {}
            }
        }
        self.show(&event);
        if let Some(lane) = lane {
            self.show_lane(lane, &event);
        }
        if let Some(tap) = &self.tap
            && event.notify_name().is_some()
        {
            // A tap whose reader is gone loses the copy, never the event.
            let _ = tap.send(event);
        }
    }

    /// A worker's: NDJSON lines only, to `lines`, each marked `"replayed": true` while `live`
    /// is false.
    pub fn lines_for_engine(
        lines: tokio::sync::mpsc::UnboundedSender<serde_json::Value>,
        live: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        let mut ui = Ui::new(true, Verbosity::Quiet);
        ui.lines = Some(lines);
        ui.live = Some(live);
        ui
    }

    /// Copies every event a notifier may be told of ([`Event::notify_name`]) to `tap`, from now
    /// on; `None` stops it (the reader then sees the channel close).
    pub fn set_tap(&mut self, tap: Option<tokio::sync::mpsc::UnboundedSender<Event>>) {
        self.tap = tap;
    }

    /// How this output reports what happens beside the run (the notifiers): whether NDJSON
    /// goes to stdout, and whether people see warnings.
    pub fn reporter(&self) -> Reporter {
        Reporter {
            json: self.json,
            quiet: self.verbosity == Verbosity::Quiet,
        }
    }

    /// A line for people (above the progress display), unless quiet.
    pub fn say(&self, line: &str) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// Called for each line of the running agent call: refreshes turns and elapsed time.
    pub fn agent_progress(&mut self, assistant_turn: bool) {
        self.agent_progress_in(None, assistant_turn);
    }

    /// [`Ui::agent_progress`] for the call of a lane of a parallel run (its own line).
    pub fn agent_progress_in(&mut self, lane: Option<u32>, assistant_turn: bool) {
        if let Some(lane) = lane
            && let Some(line) = self.lanes.as_mut().and_then(|l| l.lines.get_mut(&lane))
        {
            if assistant_turn {
                line.turns += 1;
            }
            line.refresh(lane);
            return;
        }
        if assistant_turn {
            self.turns += 1;
        }
        self.refresh(None);
    }

    /// A parallel run's lane line (on a terminal only): made when the lane takes its first
    /// story, showing its story and call, cleared when its story ends or lands.
    fn show_lane(&mut self, lane: u32, event: &Event) {
        let Some(main) = &self.bar else { return };
        let lanes = self.lanes.get_or_insert_with(|| {
            let multi = MultiProgress::new();
            let main = multi.add(main.clone());
            main.tick();
            Lanes {
                multi,
                lines: std::collections::BTreeMap::new(),
            }
        });
        let line = lanes.lines.entry(lane).or_insert_with(|| {
            let bar = lanes.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("  {spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            LaneLine {
                bar,
                context: String::new(),
                call_started: None,
                turns: 0,
            }
        });
        match event {
            Event::StoryStarted { story, .. } => {
                line.context = format!("story {story}");
                line.call_started = None;
            }
            Event::AgentStarted {
                role, story, cycle, ..
            } => {
                line.context = format!("story {story} · {role} · cycle {cycle}");
                line.call_started = Some(Instant::now());
                line.turns = 0;
            }
            Event::AgentFinished { story, role, .. } => {
                line.context = format!("story {story} · {role} done");
                line.call_started = None;
            }
            Event::GateFinished { story, gate, .. } => {
                line.context = format!("story {story} · gate {gate}");
            }
            Event::StoryFinished { story, result, .. } => {
                line.context = format!("story {story} {result}, waiting for the integration lane");
                line.call_started = None;
            }
            _ => {}
        }
        line.refresh(lane);
    }

    /// A lane let its story go (landed, or ended without landing): its line is cleared.
    pub fn lane_free(&mut self, lane: u32) {
        if let Some(line) = self.lanes.as_mut().and_then(|l| l.lines.remove(&lane)) {
            line.bar.finish_and_clear();
        }
    }

    /// Removes the progress display.
    pub fn finish(&mut self) {
        if let Some(lanes) = self.lanes.take() {
            for line in lanes.lines.into_values() {
                line.bar.finish_and_clear();
            }
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn refresh(&self, cost: Option<f64>) {
        let Some(bar) = &self.bar else { return };
        let elapsed = self
            .call_started
            .map(|t| format!(" · {}", clock(t.elapsed())))
            .unwrap_or_default();
        let cost = cost.map(|c| format!(" · ${c:.2}")).unwrap_or_default();
        let note = self
            .limit_note
            .as_deref()
            .map(|n| format!(" · {n}"))
            .unwrap_or_default();
        bar.set_message(format!(
            "{}{elapsed} · {} msgs{cost}{note}",
            self.context, self.turns
        ));
    }

    /// While waiting for a usage limit to reset: the time left on the progress line.
    pub fn wait_progress(&self, story: &str, resets_at: jiff::Timestamp, remaining: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "story {story} · usage limit · resets {} · {} left (Ctrl-C to stop)",
                local_and_utc(resets_at),
                clock(Duration::from_secs(remaining.as_secs()))
            ));
        }
    }

    fn show(&mut self, event: &Event) {
        match event {
            Event::RunStarted {
                project,
                layout,
                version,
                stories,
                resumed,
                ..
            } => {
                self.say(&format!(
                    "{} {project} (BMAD {layout} {version}): {} stories",
                    if *resumed { "resuming" } else { "running" },
                    stories.len()
                ));
            }
            Event::StoryStarted {
                story,
                title,
                epic,
                state,
            } => {
                self.context = format!("epic {epic} · story {story}");
                if self.verbosity == Verbosity::Verbose || self.bar.is_none() {
                    self.say(&format!(
                        "story {story} {title} ({})",
                        state.as_deref().unwrap_or("not drafted")
                    ));
                }
                self.refresh(None);
            }
            Event::AgentStarted {
                role, story, cycle, ..
            } => {
                self.context = format!("story {story} · {role} · cycle {cycle}");
                self.call_started = Some(Instant::now());
                self.turns = 0;
                self.refresh(None);
            }
            Event::AgentFinished {
                role,
                story,
                cycle,
                outcome,
                duration_ms,
                turns,
                cost_usd,
                clean,
                ..
            } => {
                self.call_started = None;
                if self.verbosity != Verbosity::Quiet {
                    self.say(&format!(
                        "  {story} {role} (cycle {cycle}): {outcome} in {}, {turns} turns, ${cost_usd:.2} API-equivalent{}",
                        clock(Duration::from_millis(*duration_ms)),
                        unproven(*clean)
                    ));
                }
            }
            Event::RateLimit {
                story,
                role,
                status,
                kind,
                utilization,
                resets_at,
            } => {
                let limit = limit_name(kind.as_deref());
                let used = utilization
                    .map(|u| format!(" {:.0}% used", u * 100.0))
                    .unwrap_or_default();
                let resets = resets_at
                    .as_deref()
                    .and_then(|r| r.parse::<jiff::Timestamp>().ok())
                    .map(|at| format!(", resets {}", local_and_utc(at)))
                    .unwrap_or_default();
                if status == "allowed_warning" {
                    self.limit_note = Some(format!("{limit}{used}"));
                    self.refresh(None);
                }
                self.say(&format!(
                    "  {story} {role}: {limit}{used} ({status}{resets})"
                ));
            }
            Event::UsageLimit {
                story,
                role,
                message,
                resets_at,
                wait,
            } => {
                let resets = resets_at
                    .as_deref()
                    .and_then(|r| r.parse::<jiff::Timestamp>().ok())
                    .map_or_else(
                        || "the reset time is unknown".to_owned(),
                        |at| format!("it resets {}", local_and_utc(at)),
                    );
                // Without the wait, the run's end says it (with what to do).
                if *wait {
                    self.say(&format!(
                        "  {story} {role}: usage limit: {message}; {resets}; waiting for it (--wait-on-limit; Ctrl-C to stop)"
                    ));
                }
            }
            Event::WaitingForReset { .. } => {
                self.limit_note = None;
            }
            Event::GateFinished {
                story,
                gate,
                passed,
                clean,
                ..
            } => {
                self.say(&format!(
                    "  {story} gate {gate}: {}{}",
                    if *passed { "passed" } else { "FAILED" },
                    unproven(*clean)
                ));
            }
            Event::StateChanged { story, from, to } => {
                if self.verbosity == Verbosity::Verbose {
                    self.say(&format!(
                        "  {story}: {} → {to}",
                        from.as_deref().unwrap_or("none")
                    ));
                }
            }
            Event::SprintReconciled {
                file,
                changes,
                problems,
                ..
            } => {
                for c in changes {
                    self.say(&format!(
                        "  {file}: `{}` {} → {} ({})",
                        c.key, c.from, c.to, c.reason
                    ));
                }
                for p in problems {
                    self.say(&format!("  sprint-status not reconciled: {p}"));
                }
            }
            Event::StoryFinished {
                story,
                result,
                reason,
                ..
            } => {
                let why = reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                self.say(&format!("story {story} {result}{why}"));
            }
            Event::NotifyFailed { .. } => {}
            Event::StoryIntegrated {
                story,
                branch,
                commit,
            } => {
                let commit = commit
                    .as_deref()
                    .map_or("no change", |c| &c[..c.len().min(12)]);
                self.say(&format!(
                    "story {story} integrated onto {branch} ({commit})"
                ));
            }
            Event::AfterStory {
                story,
                passed,
                exit_code,
                timed_out,
                ..
            } => {
                let how = match (passed, timed_out, exit_code) {
                    (true, _, _) => "done".to_owned(),
                    (false, true, _) => "timed out (torn down)".to_owned(),
                    (false, false, Some(code)) => format!("failed (exit {code})"),
                    (false, false, None) => "failed (killed)".to_owned(),
                };
                self.say(&format!("story {story}: after_story {how}"));
            }
            Event::IntegrationFailed {
                story,
                reason,
                back_to_dev,
                ..
            } => {
                let then = if *back_to_dev {
                    "back to Dev"
                } else {
                    "escalated"
                };
                self.say(&format!("story {story} not integrated ({reason}): {then}"));
            }
            Event::LedgersReconciled {
                story,
                when,
                state,
                changes,
            } => {
                let what = if when == "start" {
                    "drift repaired"
                } else {
                    "ledgers in step"
                };
                self.say(&format!(
                    "  {story}: {what} ({state}): {}",
                    changes.join("; ")
                ));
            }
            Event::RunFinished { .. } => self.finish(),
        }
    }
}

/// The output of what runs beside the run (the notifiers), which cannot borrow the [`Ui`]: an
/// event as an NDJSON line (with `--json`) and a warning for people (unless `-q`).
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    json: bool,
    quiet: bool,
}

impl Reporter {
    /// Publishes `event` (written whole, as one line) with `warning` for people on stderr.
    pub fn report(&self, event: &Event, warning: &str) {
        if self.json
            && let Some(line) = json_line(event, None)
        {
            write_json_line(&line);
        }
        if !self.quiet {
            eprintln!("warning: {warning}");
        }
    }
}

/// What people read after a call or gate whose end was not proven.
fn unproven(clean: bool) -> &'static str {
    if clean {
        ""
    } else {
        " (its end is not proven)"
    }
}

/// Writes one event as a JSON line with a timestamp, flushing at once so scripts see it live.
/// `event` as its NDJSON object: the event's fields, `ts` and (in a lane) `lane`.
fn json_line(event: &Event, lane: Option<u32>) -> Option<serde_json::Value> {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::to_value(event) else {
        return None;
    };
    map.insert("ts".into(), serde_json::Value::String(timestamp()));
    if let Some(lane) = lane {
        map.insert("lane".into(), serde_json::Value::from(lane));
    }
    Some(serde_json::Value::Object(map))
}

/// Writes one NDJSON line to stdout.
pub fn write_json_line(line: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (the reader went away) must not stop the run: ignore write errors.
    let _ = serde_json::to_writer(&mut out, line);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// An instant for people: in the operator's local time zone (the `TZ` variable, else the
/// system's) and in UTC, e.g. `2026-12-02 01:00 EST (06:00 UTC)`; once when the local zone is
/// UTC.
pub fn local_and_utc(at: jiff::Timestamp) -> String {
    let utc = at.to_zoned(jiff::tz::TimeZone::UTC);
    let local = at.to_zoned(jiff::tz::TimeZone::system());
    let utc_text = utc.strftime("%Y-%m-%d %H:%M UTC").to_string();
    if local.offset() == utc.offset() && local.strftime("%Z").to_string() == "UTC" {
        return utc_text;
    }
    let same_day = local.date() == utc.date();
    format!(
        "{} ({})",
        local.strftime("%Y-%m-%d %H:%M %Z"),
        if same_day {
            utc.strftime("%H:%M UTC").to_string()
        } else {
            utc_text
        }
    )
}

/// A limit's name for people, from the CLI's `rateLimitType`.
fn limit_name(kind: Option<&str>) -> String {
    match kind {
        Some("five_hour") => "5-hour limit".into(),
        Some("seven_day") => "weekly limit".into(),
        Some("seven_day_opus") => "weekly Opus limit".into(),
        Some("seven_day_sonnet") => "weekly Sonnet limit".into(),
        Some("overage") => "usage credits".into(),
        Some(other) => format!("{other} limit"),
        None => "usage limit".into(),
    }
}

/// `1m05s`-style duration for people.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_engine_s_lines_are_marked_replayed_until_it_runs_a_step_of_its_own() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let live = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ui = Ui::lines_for_engine(tx, std::sync::Arc::clone(&live));
        let changed = || Event::StateChanged {
            story: "1.1".into(),
            from: None,
            to: "draft".into(),
        };
        ui.emit(changed());
        live.store(true, std::sync::atomic::Ordering::SeqCst);
        ui.emit(changed());
        let (replayed, own) = (rx.try_recv().expect("valid"), rx.try_recv().expect("valid"));
        assert_eq!(replayed["replayed"], true);
        assert_eq!(own.get("replayed"), None);
        // Both read back as the event they were.
        for line in [replayed, own] {
            let event: Event = serde_json::from_value(line).expect("valid");
            assert!(matches!(event, Event::StateChanged { .. }));
        }
    }

    #[test]
    fn events_serialize_with_their_name_and_fields() {
        let v = serde_json::to_value(Event::StateChanged {
            story: "1.2".into(),
            from: Some("review".into()),
            to: "done".into(),
        })
        .expect("serializes");
        assert_eq!(v["event"], "state_changed");
        assert_eq!(v["story"], "1.2");
        assert_eq!(v["to"], "done");
    }

    #[test]
    fn clock_formats() {
        assert_eq!(clock(Duration::from_millis(1500)), "1.5s");
        assert_eq!(clock(Duration::from_secs(65)), "1m05s");
        assert_eq!(clock(Duration::from_secs(3725)), "1h02m05s");
    }
}
