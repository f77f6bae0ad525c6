//! `bmad-host run --engine restate --restate URL`: submits each selected story as a workflow to
//! the Restate server's ingress, in order, waits for it, and prints its events as a local run
//! would (one `run_started` and one `run_finished` for the whole run).

use std::time::Instant;

use serde_json::{Value, json};

use super::{StoryInput, StoryOutput};
use crate::context::{Context, Plan};
use crate::engine::EngineError;
use crate::error::Error;
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
    let mut finished = Vec::new();
    let mut code = crate::exit::OK;
    let mut first = true;
    for entry in &plan.stories {
        let story = entry.id.to_string();
        let key = format!("{project}.{}.{run_id}", key_part(story.as_str().into()));
        submit(url, &key, &story, &project).await?;
        let output = attach(url, &key).await?;
        for line in &output.events {
            match line["event"].as_str() {
                Some("run_started") if first => {
                    let mut line = line.clone();
                    line["run_id"] = json!(run_id);
                    line["stories"] = json!(
                        plan.stories
                            .iter()
                            .map(|s| s.id.to_string())
                            .collect::<Vec<_>>()
                    );
                    line["engine"] = json!("restate");
                    emit(ui, &line);
                    first = false;
                }
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
                    "story": story,
                    "commit": landed.commit,
                    "branch": landed.branch,
                    "ts": crate::ui::timestamp(),
                }),
            );
        }
        if let Some(error) = &output.error {
            ui.say(&format!("story {story}: {error}"));
        }
        code = output.exit_code;
        if code != crate::exit::OK {
            break;
        }
    }
    let mut total = sum(&finished);
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
