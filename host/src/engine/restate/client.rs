//! `bmad-host run --engine restate --restate URL`: submits the selected stories as workflows to
//! the Restate server's ingress, up to `--jobs` of them at a time, admitted as a local parallel
//! run admits them (the scheduler role's component, `[workflow] same_epic`), waits for each, and
//! prints its events as it ends, as a local run would (one `run_started` and one `run_finished`
//! for the whole run). A story that stops before its end (a usage limit, an error) stops the
//! admission of others; one that fails or is escalated only holds back its dependents.

use std::collections::BTreeSet;
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
use crate::ui::{Ui, write_json_line};

/// The workflow's name at the ingress.
const WORKFLOW: &str = "StoryWorkflow";

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
    runtime.block_on(follow(&plan, &ui, url.trim_end_matches('/')))
}

async fn follow(plan: &Plan, ui: &Ui, url: &str) -> Result<u8, Error> {
    let started = Instant::now();
    let run_id = format!("r{}", jiff::Timestamp::now().as_millisecond());
    let project = project_key(&plan.context.root);
    emit(ui, &run_started(plan, &run_id));
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
    let mut in_flight = FuturesUnordered::new();
    let mut finished = Vec::new();
    // The first story that stopped without ending (a usage limit, an error, Ctrl-C on its
    // worker): no other starts, and the run's code is its.
    let mut halted: Option<u8> = None;
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
                in_flight.push(async move { (id, attach(url, &key).await) });
            }
        }
        let Some((id, output)) = in_flight.next().await else {
            break;
        };
        let output = output?;
        running.retain(|r| r.id != id);
        unfinished.remove(&id);
        show(ui, &output, &mut finished);
        match ended(&output) {
            Some(true) => {}
            Some(false) => {
                failed.insert(id);
            }
            None => {
                failed.insert(id);
                halted.get_or_insert(match output.exit_code {
                    crate::exit::OK => crate::exit::STORY_FAILED,
                    code => code,
                });
            }
        }
    }
    // Stories the scheduler never started while nothing ran: escalated, each with its reason.
    let mut escalated = 0;
    if halted.is_none() {
        let board = Board {
            waiting: &waiting,
            running: &running,
            unfinished: &unfinished,
            failed: &failed,
            slots: jobs,
        };
        for story in &waiting {
            emit(
                ui,
                &json!({
                    "event": "story_finished",
                    "story": story.id.to_string(),
                    "result": "escalated",
                    "reason": admission.why_not_started(story, &board),
                    "ts": crate::ui::timestamp(),
                }),
            );
            escalated += 1;
        }
    }
    let mut total = sum(&finished);
    total["escalated"] = json!(total["escalated"].as_u64().unwrap_or(0) + escalated);
    let code = halted.unwrap_or(
        if total["failed"].as_u64().unwrap_or(0) + total["escalated"].as_u64().unwrap_or(0) > 0 {
            crate::exit::STORY_FAILED
        } else {
            crate::exit::OK
        },
    );
    total["run_id"] = json!(run_id);
    total["total"] = json!(plan.stories.len());
    total["duration_ms"] = json!(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
    total["exit_code"] = json!(code);
    total["engine"] = json!("restate");
    let reached: u64 = ["done", "failed", "escalated"]
        .iter()
        .filter_map(|k| total[*k].as_u64())
        .sum();
    total["not_run"] = json!((plan.stories.len() as u64).saturating_sub(reached));
    emit(ui, &total);
    Ok(code)
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

/// Prints a story's events as it ended (its `run_started` left out, its `run_finished` kept
/// in `finished` for the total), and where it landed.
fn show(ui: &Ui, output: &StoryOutput, finished: &mut Vec<Value>) {
    for line in &output.events {
        match line["event"].as_str() {
            Some("run_started") => {}
            Some("run_finished") => finished.push(line.clone()),
            _ => emit(ui, line),
        }
    }
    if let Some(landed) = &output.landed {
        emit(
            ui,
            &json!({
                "event": "story_landed",
                "story": output.story,
                "commit": landed.commit,
                "branch": landed.branch,
                "ts": crate::ui::timestamp(),
            }),
        );
    }
    if let Some(error) = &output.error {
        ui.say(&format!("story {}: {error}", output.story));
    }
}

/// Whether the story ended: `Some(true)` done, `Some(false)` failed or escalated, `None`
/// stopped before its end (a halt).
fn ended(output: &StoryOutput) -> Option<bool> {
    output
        .events
        .iter()
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

/// An NDJSON line (`--json`), or the story lines for people.
fn emit(ui: &Ui, line: &Value) {
    if ui.json() {
        write_json_line(line);
        return;
    }
    match line["event"].as_str() {
        Some("story_finished") => ui.say(&format!(
            "story {}: {}{}",
            line["story"].as_str().unwrap_or("?"),
            line["result"].as_str().unwrap_or("?"),
            line["reason"]
                .as_str()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        )),
        Some("story_landed") => ui.say(&format!(
            "story {}: landed on {} as {}",
            line["story"].as_str().unwrap_or("?"),
            line["branch"].as_str().unwrap_or("?"),
            line["commit"].as_str().unwrap_or("?"),
        )),
        Some("run_finished") => ui.say(&format!(
            "{} done, {} failed, {} escalated, {} not run",
            line["done"], line["failed"], line["escalated"], line["not_run"]
        )),
        _ => {}
    }
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
async fn attach(url: &str, key: &str) -> Result<StoryOutput, EngineError> {
    let target = format!("{url}/restate/workflow/{WORKFLOW}/{key}/attach");
    let answer = ingress(hyper::Method::GET, target.clone(), &[]).await?;
    serde_json::from_slice(&answer).map_err(|e| EngineError::Ingress {
        url: target,
        detail: format!("the workflow's output does not decode: {e}"),
    })
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
