//! `bmad-host log --restate-admin URL` and `status --restate-admin URL`: the project's story
//! workflows as the Restate server keeps them (its SQL over `sys_invocation` and `sys_journal`),
//! for runs made with `run --engine restate`.

use std::path::Path;

use serde_json::{Value, json};

use super::client::{ingress, project_key};
use crate::error::Error;

/// One row per workflow of the project: key, story, status, and when it was created.
async fn workflows(admin: &str, root: &Path) -> Result<Vec<Value>, Error> {
    let rows = query(
        admin,
        "SELECT id, target_service_key AS key, status, created_at FROM sys_invocation \
         WHERE target_service_name = 'StoryWorkflow' AND target_handler_name = 'run' \
         ORDER BY created_at",
    )
    .await?;
    let prefix = format!("{}.", project_key(root));
    Ok(rows
        .into_iter()
        .filter(|r| r["key"].as_str().is_some_and(|k| k.starts_with(&prefix)))
        .map(|mut r| {
            let key = r["key"].as_str().unwrap_or_default().to_string();
            // `<project>.<story>.<run>`: the story is what lies between.
            let story = key[prefix.len()..]
                .rsplit_once('.')
                .map_or(String::new(), |(s, _)| s.to_string());
            r["story"] = json!(story);
            r
        })
        .collect())
}

async fn query(admin: &str, sql: &str) -> Result<Vec<Value>, Error> {
    let url = format!("{}/query", admin.trim_end_matches('/'));
    let body = serde_json::to_vec(&json!({ "query": sql })).unwrap_or_default();
    let answer = ingress(hyper::Method::POST, url.clone(), &body).await?;
    let rows = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|v| v["rows"].as_array().cloned())
        .ok_or_else(|| crate::error::EngineError::Ingress {
            url,
            detail: "the answer has no rows".into(),
        })?;
    Ok(rows)
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)
}

/// `status --restate-admin URL`: each story's latest workflow and its state.
pub fn status(root: &Path, admin: &str, json_out: bool) -> Result<u8, Error> {
    let rows = runtime()?.block_on(workflows(admin, root))?;
    let mut latest = std::collections::BTreeMap::new();
    for row in rows {
        latest.insert(row["story"].as_str().unwrap_or_default().to_string(), row);
    }
    for (story, row) in &latest {
        let line = json!({
            "story": story,
            "workflow": row["key"],
            "status": row["status"],
            "created_at": row["created_at"],
        });
        if json_out {
            println!("{line}");
        } else {
            println!(
                "{story:<8} {:<10} {}",
                row["status"].as_str().unwrap_or("?"),
                row["key"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(crate::exit::OK)
}

/// `log --restate-admin URL`: the journaled steps of the project's workflows (of `story`'s).
pub fn log(root: &Path, admin: &str, story: Option<&str>, json_out: bool) -> Result<u8, Error> {
    let runtime = runtime()?;
    let rows = runtime.block_on(workflows(admin, root))?;
    for row in rows {
        if story.is_some_and(|s| row["story"] != s) {
            continue;
        }
        let id = row["id"].as_str().unwrap_or_default();
        // Invocation ids are `inv_` and base62: nothing to quote.
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let entries = runtime.block_on(query(
            admin,
            &format!(
                "SELECT index, name FROM sys_journal WHERE id = '{id}' \
                 AND entry_type = 'Command: Run' ORDER BY index"
            ),
        ))?;
        for entry in entries {
            let name = entry["name"].as_str().unwrap_or_default();
            let line = json!({
                "workflow": row["key"],
                "story": row["story"],
                "index": entry["index"],
                "step": name,
            });
            if json_out {
                println!("{line}");
            } else {
                println!(
                    "{:<8} {:>4}  {name}",
                    row["story"].as_str().unwrap_or("?"),
                    entry["index"]
                );
            }
        }
    }
    Ok(crate::exit::OK)
}
