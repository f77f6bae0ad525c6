//! A story's events as they happen: the worker driving it appends each batch of its NDJSON lines
//! to a virtual object (`StoryEvents`, keyed like the story's workflow) over the ingress, and
//! `run --engine restate` reads what is new while the story runs.
//!
//! The lines are not journal entries: a worker that replays a story's journal re-emits the
//! replayed steps' events, marked `"replayed": true` (see [`crate::ui::Ui::lines_for_engine`]),
//! and those are not appended: the worker that ran the steps appended them first. A batch a
//! worker could not append (the ingress unreachable) goes again with its next one, and is at
//! worst late: the story's output carries every line of its last attempt, and the client shows
//! the ones it has not shown.

use restate_sdk::prelude::*;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedReceiver;

/// How long the worker gathers lines before it sends them: a batching window (the client reads
/// every [`super::client::EVENTS_EVERY`], so a line is not shown later for it).
pub const GATHER: std::time::Duration = std::time::Duration::from_millis(250);

/// The state key of the lines.
const LINES: &str = "lines";

/// The object: a story's lines, in the order they were appended.
#[derive(Debug)]
pub(crate) struct StoryEvents;

#[restate_sdk::object]
impl StoryEvents {
    /// Adds a batch of lines.
    #[handler]
    async fn append(
        &self,
        ctx: ObjectContext<'_>,
        lines: Json<Vec<Value>>,
    ) -> Result<(), HandlerError> {
        let mut all = ctx
            .get::<Json<Vec<Value>>>(LINES)
            .await?
            .map(Json::into_inner)
            .unwrap_or_default();
        all.extend(lines.into_inner());
        ctx.set(LINES, Json(all));
        Ok(())
    }

    /// The lines from the `from`th on.
    #[handler]
    async fn since(
        &self,
        ctx: SharedObjectContext<'_>,
        from: Json<usize>,
    ) -> Result<Json<Vec<Value>>, HandlerError> {
        let all = ctx
            .get::<Json<Vec<Value>>>(LINES)
            .await?
            .map(Json::into_inner)
            .unwrap_or_default();
        Ok(Json(all.into_iter().skip(from.into_inner()).collect()))
    }

    /// Forgets the lines (the client has shown them all).
    #[handler]
    async fn clear(&self, ctx: ObjectContext<'_>) -> Result<(), HandlerError> {
        ctx.clear(LINES);
        Ok(())
    }
}

/// Whether `line` says an agent call begins.
fn starts_a_call(line: &Value) -> bool {
    line["event"] == "agent_started"
}

/// The worker's side: sends each batch of `lines` that is not replayed to the story `key`'s
/// object at `ingress` (one-way, in order: the server queues them on the object), until the run
/// loop is done; returns every line once the loop is done, without waiting for the sends.
pub(crate) async fn feed(
    ingress: String,
    key: String,
    mut lines: UnboundedReceiver<Value>,
) -> Vec<Value> {
    let (batches, mut to_send) = tokio::sync::mpsc::unbounded_channel::<Vec<Value>>();
    tokio::spawn(async move {
        let url = format!("{ingress}/StoryEvents/{key}/append/send");
        let mut warned = false;
        // Lines whose append failed go again, first, with the next batch.
        let mut pending: Vec<Value> = Vec::new();
        while let Some(batch) = to_send.recv().await {
            pending.extend(batch);
            let body = serde_json::to_vec(&pending).unwrap_or_default();
            let failed = match crate::http::send(hyper::Method::POST, &url, &body).await {
                Ok((status, _)) if status.is_success() => None,
                Ok((status, answer)) => Some(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&answer)
                )),
                Err(e) => Some(e),
            };
            match failed {
                None => pending.clear(),
                Some(e) if !warned => {
                    // Once per story: the lines go again with the next batch, and reach the
                    // client with the story's output in any case.
                    tracing::warn!(%key, error = %e, "cannot append the story's events");
                    warned = true;
                }
                Some(_) => {}
            }
        }
    });
    let mut all = Vec::new();
    let mut open = true;
    while open && let Some(first) = lines.recv().await {
        let start = all.len();
        let mut flush = starts_a_call(&first);
        all.push(first);
        // The lines of the next moments go with it (each append is an invocation of the
        // server), but not past a call's start: nothing follows for a while, and a worker that
        // dies in the call has sent what came before.
        let window = tokio::time::sleep(GATHER); // a batching window, raced with the lines
        tokio::pin!(window);
        while !flush {
            tokio::select! {
                more = lines.recv() => match more {
                    Some(line) => {
                        flush = starts_a_call(&line);
                        all.push(line);
                    }
                    None => {
                        open = false;
                        break;
                    }
                },
                () = &mut window => break,
            }
        }
        let batch: Vec<Value> = all[start..]
            .iter()
            .filter(|l| l["replayed"] != true)
            .cloned()
            .collect();
        if !batch.is_empty() {
            let _ = batches.send(batch);
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An ingress that refuses its first append (503) and takes the others; each body it got.
    async fn flaky_ingress() -> (String, tokio::sync::mpsc::UnboundedReceiver<Vec<Value>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (got, bodies) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut first = true;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let refuse = std::mem::replace(&mut first, false);
                let got = got.clone();
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            use http_body_util::BodyExt as _;
                            let body = request.into_body().collect().await?.to_bytes();
                            let _ = got.send(serde_json::from_slice(&body).unwrap_or_default());
                            let mut answer = hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            ));
                            if refuse {
                                *answer.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            Ok::<_, hyper::Error>(answer)
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });
        (url, bodies)
    }

    #[tokio::test]
    async fn a_batch_that_could_not_be_appended_goes_again_with_the_next() {
        let (ingress, mut bodies) = flaky_ingress().await;
        let (lines, incoming) = tokio::sync::mpsc::unbounded_channel();
        let feed = tokio::spawn(feed(ingress, "p.1.1.r1".into(), incoming));
        let (one, two) = (
            json!({"event": "agent_started", "story": "1.1", "role": "sm"}),
            json!({"event": "agent_started", "story": "1.1", "role": "dev"}),
        );
        lines.send(one.clone()).expect("sent");
        assert_eq!(bodies.recv().await, Some(vec![one.clone()]), "refused");
        lines.send(two.clone()).expect("sent");
        assert_eq!(bodies.recv().await, Some(vec![one.clone(), two.clone()]));
        // Replayed lines are not appended, but kept.
        let replayed = json!({"event": "state_changed", "replayed": true});
        lines.send(replayed.clone()).expect("sent");
        drop(lines);
        assert_eq!(feed.await.expect("joined"), [one, two, replayed]);
    }
}
