//! `bmad-host run --engine restate --restate URL`: submits the selected stories as workflows to
//! the Restate server's ingress, up to `--jobs` of them at a time, admitted as a local parallel
//! run admits them (the scheduler role's component, `[workflow] same_epic`), waits for each, and
//! prints their events as they happen, as a local run would (one `run_started` and one
//! `run_finished` for the whole run; with more than one job, each story's lines carry its
//! `lane`). The events are read from each story's `StoryEvents` object every
//! [`EVENTS_EVERY`], and at its end from its output too (a line is shown once). A story that stops before its end (a usage limit, an error) stops the
//! admission of others; one that fails or is escalated only holds back its dependents.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};

use super::{StoryInput, StoryOutput};
use crate::config::SameEpic as SameEpicSetting;
use crate::context::{Context, Plan};
use crate::engine::EngineError;
use crate::error::Error;
use crate::policy::Layout;
use crate::project::StoryId;
use crate::run::admit::{Admission, Board, Candidate, Running, SameEpic};
use crate::ui::{Event, Ui, write_json_line};

/// The workflow's name at the ingress.
const WORKFLOW: &str = "StoryWorkflow";

/// How often the events of the running stories are fetched: a display refresh (a story's end
/// is awaited, not polled).
pub const EVENTS_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs the plan's stories as workflows of the Restate server at `url`; returns the exit code.
pub fn run(
    context: Context,
    epic: Option<u32>,
    story: Option<&str>,
    url: &str,
) -> Result<u8, Error> {
    let plan = Plan::resolve(context, epic, story)?;
    let ui = Ui::new(plan.context.json, plan.context.verbosity);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(follow(&plan, ui, url.trim_end_matches('/')))
}

/// A story in flight, as the client follows it.
#[derive(Debug)]
struct Followed {
    id: StoryId,
    /// Its workflow's key.
    key: String,
    /// Its lane (a run of more than one job), as a local parallel run numbers them.
    lane: Option<u32>,
    /// How many lines of its events object have been read.
    read: usize,
    /// The lines shown, as text (a line is shown once, live or from the story's output).
    shown: HashSet<String>,
    /// The result of the `story_finished` line shown, if one was.
    result: Option<String>,
    /// The last `run_finished` line a worker sent live (its spend, when the story's output has
    /// none).
    last_run: Option<Value>,
}

impl Followed {
    /// Shows `line` unless shown before (or replayed, or a run's own line: its `run_finished`
    /// is kept).
    fn show(&mut self, out: &mut Out, line: &Value) {
        match line["event"].as_str() {
            Some("run_started") => return,
            Some("run_finished") => {
                self.last_run = Some(line.clone());
                return;
            }
            _ if line["replayed"] == true => return,
            _ => {}
        }
        if self.shown.insert(line.to_string()) {
            if line["event"] == "story_finished" {
                self.result = line["result"].as_str().map(str::to_owned);
            }
            out.line(line, self.lane);
        }
    }

    /// Shows that its workflow failed (`reason`): a `story_finished` line, failed, or when the
    /// story's end was shown already (it failed to land), an `integration_failed` line.
    fn show_failure(&mut self, out: &mut Out, reason: &str) {
        let story = self.id.to_string();
        let line = if self.result.is_some() {
            Event::IntegrationFailed {
                story,
                reason: reason.to_owned(),
                files: Vec::new(),
                back_to_dev: false,
            }
            .to_json()
        } else {
            ended_here(story, "failed", reason.to_owned())
        };
        self.show(out, &line);
        self.result = Some("failed".into());
    }
}

/// Where the run's lines go: NDJSON as the workers wrote them, or the local run's output for
/// people.
#[derive(Debug)]
struct Out {
    ui: Ui,
    /// The stories' `story_finished` lines shown, for the table at the end.
    ends: Vec<Value>,
}

impl Out {
    fn line(&mut self, line: &Value, lane: Option<u32>) {
        if line["event"] == "story_finished" {
            // A story sent back to Dev after its landing failed ends again: its last end counts.
            self.ends.retain(|e| e["story"] != line["story"]);
            self.ends.push(line.clone());
        }
        if self.ui.json() {
            let mut line = line.clone();
            if let Some(lane) = lane {
                line["lane"] = json!(lane);
            }
            write_json_line(&line);
        } else if let Ok(event) = serde_json::from_value::<Event>(line.clone()) {
            self.ui.emit_in(lane, event);
        }
    }

    /// The end-of-run table for people, as a local run prints it.
    fn table(&self) {
        if self.ui.json() {
            return;
        }
        let ui = &self.ui;
        let mut ends: Vec<&Value> = self.ends.iter().collect();
        ends.sort_by_key(|e| e["story"].as_str().and_then(|s| s.parse::<StoryId>().ok()));
        ui.say("");
        ui.say(&format!(
            "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
            "story", "result", "cycles", "time", "turns", "cost*"
        ));
        for end in ends {
            let ms = end["duration_ms"].as_u64().unwrap_or(0);
            ui.say(&format!(
                "{:<7}{:<11}{:>7}{:>10}{:>8}{:>10}",
                end["story"].as_str().unwrap_or("?"),
                end["result"].as_str().unwrap_or("?"),
                end["cycles"].as_u64().unwrap_or(0),
                crate::ui::clock(std::time::Duration::from_millis(ms)),
                end["turns"].as_u64().unwrap_or(0),
                format!("${:.2}", end["cost_usd"].as_f64().unwrap_or(0.0))
            ));
            if let Some(reason) = end["reason"].as_str() {
                ui.say(&format!("       {reason}"));
            }
        }
        ui.say("* API-equivalent cost reported by the CLI");
        ui.say("steps: bmad-host log --restate-admin URL (the server's admin API)");
    }

    fn landed(&self, story: &str, landed: &super::lane::Landed) {
        let line = json!({
            "event": "story_landed",
            "story": story,
            "commit": landed.commit,
            "branch": landed.branch,
            "ts": crate::ui::timestamp(),
        });
        if self.ui.json() {
            write_json_line(&line);
        } else {
            self.ui.say(&format!(
                "story {story}: landed on {} as {}",
                landed.branch, landed.commit
            ));
        }
    }
}

async fn follow(plan: &Plan, ui: Ui, url: &str) -> Result<u8, Error> {
    let started = Instant::now();
    let run_id = format!("r{}", jiff::Timestamp::now().as_millisecond());
    let project = project_key(&plan.context.root);
    let mut out = Out {
        ui,
        ends: Vec::new(),
    };
    out.line(&run_started(plan, &run_id), None);
    let jobs = usize::try_from(plan.context.config.workflow.jobs.value.max(1)).unwrap_or(1);
    let admission = Admission {
        scheduler: plan.plugins.scheduler()?,
        same_epic: match plan.context.config.workflow.same_epic.value {
            SameEpicSetting::Serial => SameEpic::Serial,
            SameEpicSetting::Parallel => SameEpic::Parallel,
        },
    };
    let mut waiting: Vec<Candidate> = plan
        .stories
        .iter()
        .map(|s| Candidate::of(&plan.project, &plan.plugins, s))
        .collect();
    let mut unfinished: BTreeSet<StoryId> = waiting.iter().map(|c| c.id).collect();
    let mut failed: BTreeSet<StoryId> = BTreeSet::new();
    let mut running: Vec<Running> = Vec::new();
    let mut followed: Vec<Followed> = Vec::new();
    let mut lanes: Vec<u32> = (1..=u32::try_from(jobs).unwrap_or(1)).rev().collect();
    let mut in_flight = FuturesUnordered::new();
    let mut finished = Vec::new();
    // How the stories ended, as this run saw it (a story its loop finished done that did not
    // land is failed; one that stopped before its end is in none).
    let (mut done, mut failed_count, mut escalated) = (0_u64, 0_u64, 0_u64);
    // The first story that stopped without ending (an error, Ctrl-C on its worker): no other
    // starts, and the run's code is its.
    let mut halted: Option<u8> = None;
    let mut refresh = tokio::time::interval(EVENTS_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if halted.is_none() {
            let admitted = admission.admit(&Board {
                waiting: &waiting,
                running: &running,
                unfinished: &unfinished,
                failed: &failed,
                slots: jobs.saturating_sub(running.len()),
            })?;
            for id in admitted {
                let Some(pos) = waiting.iter().position(|c| c.id == id) else {
                    continue;
                };
                let candidate = waiting.remove(pos);
                let story = id.to_string();
                let key = format!("{project}.{}.{run_id}", key_part(story.as_str().into()));
                submit(url, &key, &story, &project).await?;
                running.push(Running {
                    id,
                    footprint: candidate.footprint,
                });
                let lane = lanes.pop().filter(|_| jobs > 1);
                followed.push(Followed {
                    id,
                    key: key.clone(),
                    lane,
                    read: 0,
                    shown: HashSet::new(),
                    result: None,
                    last_run: None,
                });
                in_flight.push(async move { (id, attach(url, &key).await) });
            }
        }
        if in_flight.is_empty() {
            break;
        }
        let (id, output) = tokio::select! {
            ended = in_flight.next() => match ended {
                Some(ended) => ended,
                None => break,
            },
            _ = refresh.tick() => {
                for story in &mut followed {
                    for line in new_events(url, story).await {
                        story.show(&mut out, &line);
                    }
                }
                continue;
            }
        };
        let attached = output?;
        let Some(pos) = followed.iter().position(|f| f.id == id) else {
            continue;
        };
        let mut story = followed.remove(pos);
        // What the workers appended since the last refresh, then what the last one kept.
        for line in new_events(url, &mut story).await {
            story.show(&mut out, &line);
        }
        let mut stopped = None;
        match &attached {
            Attached::Output(output) => {
                story.last_run = None;
                for line in &output.events {
                    story.show(&mut out, line);
                }
                if let Some(landed) = &output.landed {
                    out.landed(&output.story, landed);
                }
                if let Some(error) = &output.error {
                    out.ui.say(&format!("story {}: {error}", output.story));
                }
                if ended(output).is_none() {
                    stopped = Some(match output.exit_code {
                        crate::exit::OK => crate::exit::STORY_FAILED,
                        code => code,
                    });
                }
            }
            Attached::Failed(reason) => story.show_failure(&mut out, reason),
        }
        forget_events(url, &story.key).await;
        if let Some(lane) = story.lane {
            lanes.push(lane);
        }
        finished.extend(story.last_run.take());
        running.retain(|r| r.id != id);
        unfinished.remove(&id);
        match (stopped, story.result.as_deref()) {
            (Some(code), _) => {
                failed.insert(id);
                halted.get_or_insert(code);
            }
            (None, Some("done")) => done += 1,
            (None, Some("escalated")) => {
                failed.insert(id);
                escalated += 1;
            }
            (None, _) => {
                failed.insert(id);
                failed_count += 1;
            }
        }
    }
    // Stories the scheduler never started while nothing ran: escalated, each with its reason.
    if halted.is_none() {
        let board = Board {
            waiting: &waiting,
            running: &running,
            unfinished: &unfinished,
            failed: &failed,
            slots: jobs,
        };
        for story in &waiting {
            let why = admission.why_not_started(story, &board);
            out.line(&ended_here(story.id.to_string(), "escalated", why), None);
            escalated += 1;
        }
    }
    // The spend from the stories' own ends; the counts as this run saw the stories end (a
    // story done by its loop that did not land is failed).
    let mut total = sum(&finished);
    total["done"] = json!(done);
    total["failed"] = json!(failed_count);
    total["escalated"] = json!(escalated);
    let code = halted.unwrap_or(if failed_count + escalated > 0 {
        crate::exit::STORY_FAILED
    } else {
        crate::exit::OK
    });
    total["run_id"] = json!(run_id);
    total["total"] = json!(plan.stories.len());
    total["duration_ms"] = json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    total["exit_code"] = json!(code);
    total["engine"] = json!("restate");
    total["ts"] = json!(crate::ui::timestamp());
    let reached: u64 = ["done", "failed", "escalated"]
        .iter()
        .filter_map(|k| total[*k].as_u64())
        .sum();
    total["not_run"] = json!((plan.stories.len() as u64).saturating_sub(reached));
    out.line(&total, None);
    out.table();
    Ok(code)
}

/// The `story_finished` line of a story that ended here, not in a worker's loop: `result`, why,
/// nothing spent.
fn ended_here(story: String, result: &str, reason: String) -> Value {
    Event::ended_unrun(story, result, reason).to_json()
}

/// The lines of `story`'s events object not read yet (none when it cannot be read: the story's
/// output brings them at its end).
async fn new_events(url: &str, story: &mut Followed) -> Vec<Value> {
    let target = format!("{url}/StoryEvents/{}/since", story.key);
    let body = serde_json::to_vec(&story.read).unwrap_or_default();
    let Ok(answer) = ingress(hyper::Method::POST, target, &body).await else {
        return Vec::new();
    };
    let lines: Vec<Value> = serde_json::from_slice(&answer).unwrap_or_default();
    story.read += lines.len();
    lines
}

/// Drops the story's events object's lines, all shown (best effort: they are small).
async fn forget_events(url: &str, key: &str) {
    let target = format!("{url}/StoryEvents/{key}/clear");
    if let Err(e) = ingress(hyper::Method::POST, target, &[]).await {
        tracing::debug!(key, error = %e, "cannot clear the story's events");
    }
}

/// The run's `run_started` line, made here (the stories' own are not shown).
fn run_started(plan: &Plan, run_id: &str) -> Value {
    json!({
        "event": "run_started",
        "run_id": run_id,
        "project": plan.context.root.display().to_string(),
        "layout": match plan.project.layout() {
            Layout::V4 => "v4",
            Layout::V6 => "v6",
        },
        "version": plan.project.version().unwrap_or("unknown"),
        "stories": plan.stories.iter().map(|s| s.id.to_string()).collect::<Vec<_>>(),
        "resumed": false,
        "dry_run": false,
        "engine": "restate",
        "ts": crate::ui::timestamp(),
    })
}

/// Whether the story ended: `Some(true)` done, `Some(false)` failed or escalated, `None`
/// stopped before its end (a halt).
fn ended(output: &StoryOutput) -> Option<bool> {
    output
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "story_finished")
        .map(|e| e["result"] == "done")
        .filter(|_| output.error.is_none())
}

/// The stories' `run_finished` lines added up (counts, spend, tokens); the last one's other
/// fields.
fn sum(lines: &[Value]) -> Value {
    let mut total = lines
        .last()
        .cloned()
        .unwrap_or_else(|| json!({ "event": "run_finished" }));
    for key in [
        "done",
        "failed",
        "escalated",
        "cost_usd",
        "input_tokens",
        "output_tokens",
        "tokens",
    ] {
        let value: f64 = lines.iter().filter_map(|l| l[key].as_f64()).sum();
        total[key] = if key == "cost_usd" {
            json!(value)
        } else {
            json!(value as u64)
        };
    }
    total["interrupted"] = json!(lines.iter().any(|l| l["interrupted"] == true));
    total
}

/// The project's part of its workflows' keys: its folder's name.
pub(super) fn project_key(root: &std::path::Path) -> String {
    key_part(
        root.file_name()
            .map_or("project".into(), |n| n.to_string_lossy()),
    )
}

/// Characters a workflow key keeps (the rest become `_`).
fn key_part(text: std::borrow::Cow<'_, str>) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Starts the story's workflow (it then runs whether or not this process waits for it).
async fn submit(url: &str, key: &str, story: &str, project: &str) -> Result<(), EngineError> {
    let body = serde_json::to_vec(&StoryInput {
        story: story.to_string(),
        project: project.to_string(),
    })
    .unwrap_or_default();
    let target = format!("{url}/{WORKFLOW}/{key}/run/send");
    ingress(hyper::Method::POST, target, &body).await.map(drop)
}

/// Waits for the story's workflow to end; its output.
///
/// A workflow that failed (a terminal error: a story that does not land, say) is the story
/// failed, with the error as its reason; a server that cannot be reached is an error.
async fn attach(url: &str, key: &str) -> Result<Attached, EngineError> {
    let target = format!("{url}/restate/workflow/{WORKFLOW}/{key}/attach");
    let answer = match crate::http::send(hyper::Method::GET, &target, &[]).await {
        Ok((status, answer)) if status.is_success() => answer,
        Ok((status, answer)) => return Ok(Attached::Failed(failure(status, &answer))),
        Err(detail) => {
            return Err(EngineError::Ingress {
                url: target,
                detail,
            });
        }
    };
    serde_json::from_slice(&answer)
        .map(Attached::Output)
        .map_err(|e| EngineError::Ingress {
            url: target,
            detail: format!("the workflow's output does not decode: {e}"),
        })
}

/// How a story's workflow ended.
#[derive(Debug)]
enum Attached {
    /// With its output.
    Output(StoryOutput),
    /// It failed: the reason (a story that does not land, say).
    Failed(String),
}

/// The reason of a workflow that failed with `status` and `body`.
fn failure(status: hyper::StatusCode, body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    format!("its workflow failed (HTTP {status}): {message}")
}

/// One request to the ingress; the answer of a 2xx status.
pub(super) async fn ingress(
    method: hyper::Method,
    target: String,
    body: &[u8],
) -> Result<bytes::Bytes, EngineError> {
    match crate::http::send(method, &target, body).await {
        Ok((status, answer)) if status.is_success() => Ok(answer),
        Ok((status, answer)) => Err(EngineError::Ingress {
            url: target,
            detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&answer)),
        }),
        Err(detail) => Err(EngineError::Ingress {
            url: target,
            detail,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story_finished_run(done: usize, cost: f64) -> Value {
        Event::RunFinished {
            run_id: "local".into(),
            total: 1,
            done,
            failed: 0,
            escalated: 0,
            not_run: 1 - done,
            interrupted: false,
            duration_ms: 10,
            cost_usd: cost,
            input_tokens: 5,
            output_tokens: 6,
            tokens: 11,
            capped: None,
            exit_code: 0,
            survivors: Vec::new(),
        }
        .to_json()
    }

    #[test]
    fn the_run_s_total_adds_the_stories_up_and_reads_as_a_run_finished_event() {
        let mut total = sum(&[story_finished_run(1, 0.5), story_finished_run(1, 0.25)]);
        total["engine"] = json!("restate");
        assert_eq!(total["done"], 2);
        assert_eq!(total["tokens"], 22);
        assert_eq!(total["cost_usd"], 0.75);
        // People see it as a local run's end.
        let event: Event = serde_json::from_value(total).expect("a run_finished event");
        assert!(matches!(event, Event::RunFinished { done: 2, .. }));
    }

    #[test]
    fn a_failed_workflow_s_reason_is_the_engine_s_message() {
        let body = br#"{"message": "story 1.2 does not land on main: conflicts in src/a.rs"}"#;
        let reason = failure(hyper::StatusCode::INTERNAL_SERVER_ERROR, body);
        assert!(reason.contains("HTTP 500"), "{reason}");
        assert!(reason.ends_with("conflicts in src/a.rs"), "{reason}");
        assert!(failure(hyper::StatusCode::NOT_FOUND, b" gone ").ends_with(": gone"));
    }

    #[test]
    fn a_story_that_stopped_before_its_end_is_told_from_one_that_ended() {
        let output = |events: Vec<Value>, error: Option<&str>| StoryOutput {
            story: "1.1".into(),
            exit_code: 1,
            error: error.map(String::from),
            events,
            landed: None,
        };
        let done = json!({"event": "story_finished", "result": "done"});
        let failed = json!({"event": "story_finished", "result": "failed"});
        assert_eq!(ended(&output(vec![done.clone()], None)), Some(true));
        assert_eq!(ended(&output(vec![failed], None)), Some(false));
        assert_eq!(
            ended(&output(vec![json!({"event": "usage_limit"})], None)),
            None
        );
        assert_eq!(ended(&output(vec![done], Some("journal"))), None);
    }
}
