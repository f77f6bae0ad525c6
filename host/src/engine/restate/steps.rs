//! The story's journaled steps kept by Restate: the run loop (on its own thread, not `Send`)
//! asks through a channel, and the workflow's handler answers with Restate's journal.
//!
//! Each step is two `ctx.run` entries named after its key without the local run id (`1.2 c1 dev
//! agent-call #0`): its intent, then its result. The result entry's closure is what runs the
//! step: it tells the run loop to go, then waits for the loop's result and returns it for
//! Restate to journal. When Restate replays the entry (the worker died and another one took the
//! story over), the closure does not run and the loop is given the journaled result instead:
//! the step is never done twice. An intent replayed before a result entry that runs means the
//! step was interrupted: the loop is told it redoes it (attempt 2). A step the loop opened and
//! left (a spend cap stopped it before it ran) is journaled as left.
//!
//! The loop's requests wait for the answer, so its `finish` returns only once Restate holds the
//! result, as a commit of the SQLite journal would.
//!
//! Replay must see the files each step saw: every result and record entry carries the commit of
//! the project's work tree as the step left it ([`Tree::snapshot`]), and the workflow's first
//! entry the commit it started from. A replayed entry puts the work tree back at its commit
//! ([`Tree::restore`]) before the loop goes on, so the loop reads what it read the first time,
//! and an interrupted call's half-made edits are dropped before it is redone.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use restate_sdk::prelude::*;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use super::lease::Leases;
pub(super) use super::tree::Tree;
use crate::journal::{JournalError, StepId, StepKey, StepKind, StepStart, StepStore};
use crate::process::Interrupt;

/// What the run loop asks the handler.
#[derive(Debug)]
pub(super) enum Request {
    Begin {
        name: String,
        intent: Value,
        /// Runs processes (an agent call, gates): only under the story's lease.
        leased: bool,
        reply: mpsc::Sender<Result<StepStart, String>>,
    },
    Finish {
        id: StepId,
        result: Value,
        reply: mpsc::Sender<Result<(), String>>,
    },
    Record {
        name: String,
        intent: Value,
        result: Value,
        reply: mpsc::Sender<Result<(), String>>,
    },
}

/// The run loop's side: a [`StepStore`] whose steps Restate journals.
#[derive(Debug)]
pub(super) struct EngineSteps {
    requests: UnboundedSender<Request>,
    /// What errors name as the journal: the workflow.
    label: PathBuf,
}

impl EngineSteps {
    pub(super) fn new(requests: UnboundedSender<Request>, workflow: &str) -> Self {
        Self {
            requests,
            label: PathBuf::from(format!("restate:{workflow}")),
        }
    }

    fn ask<T>(
        &self,
        step: String,
        make: impl FnOnce(mpsc::Sender<Result<T, String>>) -> Request,
    ) -> Result<T, JournalError> {
        let (reply, answer) = mpsc::channel();
        let lost = |detail: &str| JournalError::Engine {
            step: step.clone(),
            detail: detail.to_string(),
        };
        self.requests
            .send(make(reply))
            .map_err(|_| lost("the workflow's handler is gone"))?;
        // The run loop's thread waits here, as it waits for a SQLite commit.
        answer
            .recv()
            .map_err(|_| lost("the workflow's handler is gone"))?
            .map_err(|detail| lost(&detail))
    }
}

/// A step's entry name: its key without the local run (which differs from worker to worker).
pub(super) fn entry_name(key: &StepKey) -> String {
    format!(
        "{} c{} {} {} #{}",
        key.story,
        key.cycle,
        key.role,
        key.kind.as_str(),
        key.seq
    )
}

/// A journaled entry's commit, if it has one.
fn head_of(entry: &Value) -> Option<&str> {
    entry.get("head").and_then(Value::as_str)
}

impl StepStore for EngineSteps {
    fn begin_step(&mut self, key: &StepKey, intent: &Value) -> Result<StepStart, JournalError> {
        let name = entry_name(key);
        self.ask(name.clone(), |reply| Request::Begin {
            name,
            intent: intent.clone(),
            leased: matches!(key.kind, StepKind::AgentCall | StepKind::Gates),
            reply,
        })
    }

    fn finish_step(&mut self, id: StepId, result: &Value) -> Result<(), JournalError> {
        self.ask(format!("{id}"), |reply| Request::Finish {
            id,
            result: result.clone(),
            reply,
        })
    }

    fn record_step(
        &mut self,
        key: &StepKey,
        intent: &Value,
        result: &Value,
    ) -> Result<(), JournalError> {
        let name = entry_name(key);
        self.ask(name.clone(), |reply| Request::Record {
            name,
            intent: intent.clone(),
            result: result.clone(),
            reply,
        })
    }

    fn path(&self) -> &Path {
        &self.label
    }
}

/// The story's lease, taken by the steps that run processes; what stops the loop's call when
/// the lease is lost.
pub(super) struct Lease<'a> {
    pub leases: &'a Leases,
    /// The lease object's key: the workflow's.
    pub key: &'a str,
    pub interrupt: &'a tokio::sync::watch::Sender<Interrupt>,
}

/// The handler's side: answers the run loop's requests with `ctx`'s journal until the loop
/// drops its [`EngineSteps`].
///
/// `live` becomes true once an entry runs here rather than replays: the loop's events from then
/// on are this worker's own.
pub(super) async fn serve(
    ctx: &WorkflowContext<'_>,
    tree: &Tree,
    lease: &Lease<'_>,
    live: &AtomicBool,
    requests: &mut UnboundedReceiver<Request>,
) -> Result<(), HandlerError> {
    let mut ids = 0_i64;
    // A request that arrived while a step was open and ended it (the loop left the step).
    let mut next: Option<Request> = None;
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => match requests.recv().await {
                Some(r) => r,
                None => return Ok(()),
            },
        };
        match request {
            Request::Record {
                name,
                intent,
                result,
                reply,
            } => {
                let entry = json!({ "intent": intent, "result": result });
                let done = ctx
                    .run(|| async move {
                        live.store(true, Ordering::SeqCst);
                        Ok(Json(entry))
                    })
                    .name(name)
                    .await;
                let _ = reply.send(done.map(drop).map_err(|e| e.to_string()));
            }
            Request::Finish { id, reply, .. } => {
                let _ = reply.send(Err(format!("step {id} is not open")));
            }
            Request::Begin {
                name,
                intent,
                leased,
                reply,
            } => {
                ids += 1;
                let step = Step {
                    name: &name,
                    id: StepId::of_store(ids),
                    lease: leased.then_some(lease),
                    live,
                };
                next = begin(ctx, tree, requests, &step, intent, reply).await?;
            }
        }
    }
}

/// A step being begun.
struct Step<'a> {
    name: &'a str,
    id: StepId,
    /// The lease it runs under, if it runs processes.
    lease: Option<&'a Lease<'a>>,
    /// Set once an entry runs here (see [`serve`]).
    live: &'a AtomicBool,
}

/// How a step's result entry ended.
enum Ended {
    /// The loop finished the step: acknowledge its `finish` once journaled.
    Finished(mpsc::Sender<Result<(), String>>),
    /// The loop went on without finishing it: this request is its next.
    Left(Option<Request>),
}

/// Journals a step's intent and runs (or replays) its result entry; returns the request that
/// ended the step without finishing it, if one did.
async fn begin(
    ctx: &WorkflowContext<'_>,
    tree: &Tree,
    requests: &mut UnboundedReceiver<Request>,
    step: &Step<'_>,
    intent: Value,
    reply: mpsc::Sender<Result<StepStart, String>>,
) -> Result<Option<Request>, HandlerError> {
    let (name, id) = (step.name, step.id);
    let intent_ran = AtomicBool::new(false);
    let flag = &intent_ran;
    let live = step.live;
    ctx.run(move || async move {
        flag.store(true, Ordering::Relaxed);
        live.store(true, Ordering::SeqCst);
        Ok(Json(intent))
    })
    .name(format!("{name} intent"))
    .await?;
    // A replayed intent whose result is not journaled: the step was interrupted.
    let start = if intent_ran.load(Ordering::Relaxed) {
        StepStart::Fresh(id)
    } else {
        StepStart::Retry { id, attempt: 2 }
    };
    let ran = AtomicBool::new(false);
    let ended: Mutex<Option<Ended>> = Mutex::new(None);
    let (ran_flag, ended_slot, answer, pending) = (&ran, &ended, reply.clone(), &mut *requests);
    let go = start.clone();
    let entry = ctx
        .run(move || async move {
            ran_flag.store(true, Ordering::Relaxed);
            live.store(true, Ordering::SeqCst);
            // Taken each time the step runs, never replayed: a journaled grant would be the
            // grant of a worker that may be dead.
            let held = match step.lease {
                Some(lease) => Some(
                    lease
                        .leases
                        .acquire(lease.key)
                        .await
                        .map_err(|e| HandlerError::from(std::io::Error::other(e)))?,
                ),
                None => None,
            };
            let _ = answer.send(Ok(go));
            let (mut entry, how) = match (&held, step.lease) {
                (Some(held), Some(lease)) => {
                    let mut lost = held.lost.clone();
                    tokio::select! {
                        ended = wait_for_result(pending, id) => ended,
                        () = until_lost(&mut lost) => {
                            // Stop the call now; the loop then stops the story, and this attempt
                            // fails: the lease's next holder redoes the step.
                            let _ = lease.interrupt.send(Interrupt::Immediate);
                            let _ = wait_for_result(pending, id).await;
                            return Err(HandlerError::from(std::io::Error::other(
                                "lost the story's lease while the step ran",
                            )));
                        }
                    }
                }
                _ => wait_for_result(pending, id).await,
            };
            drop(held);
            entry["head"] = json!(tree.snapshot(name).await?);
            *ended_slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(how);
            Ok(Json(entry))
        })
        .name(name.to_string())
        .await?
        .into_inner();
    if ran.load(Ordering::Relaxed) {
        let how = ended
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        return Ok(match how {
            Some(Ended::Finished(ack)) => {
                let _ = ack.send(Ok(()));
                None
            }
            Some(Ended::Left(next)) => next,
            None => None,
        });
    }
    // Replayed: the journal has the step's end, and the work tree as it left it.
    if let Some(head) = head_of(&entry) {
        tree.restore(head).await?;
    }
    if let Some(result) = entry.get("result") {
        let _ = reply.send(Ok(StepStart::Done(result.clone())));
        return Ok(None);
    }
    // The loop left it before: replaying, it reaches the same point and leaves it again (its
    // next request is the journal's next entry); a loop that finishes it now is past the
    // journal's end, and its result is a new entry.
    let _ = reply.send(Ok(start));
    match requests.recv().await {
        Some(Request::Finish {
            id: finished,
            result,
            reply: ack,
        }) if finished == id => {
            ctx.run(|| async move {
                live.store(true, Ordering::SeqCst);
                let head = tree.snapshot(name).await?;
                Ok(Json(json!({ "result": result, "head": head })))
            })
            .name(format!("{name} again"))
            .await?;
            let _ = ack.send(Ok(()));
            Ok(None)
        }
        other => Ok(other),
    }
}

/// Returns once the lease is lost.
async fn until_lost(lost: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard is dropped here, not held across the caller's awaits.
    let _ = lost.wait_for(|lost| *lost).await.map(drop);
}

/// Waits for the loop to finish step `id`; anything else first means it left the step.
async fn wait_for_result(requests: &mut UnboundedReceiver<Request>, id: StepId) -> (Value, Ended) {
    match requests.recv().await {
        Some(Request::Finish {
            id: finished,
            result,
            reply,
        }) if finished == id => (json!({ "result": result }), Ended::Finished(reply)),
        Some(other) => (json!({ "left": true }), Ended::Left(Some(other))),
        None => (json!({ "left": true }), Ended::Left(None)),
    }
}
