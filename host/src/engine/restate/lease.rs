//! The lease that lets a story's agent call or gates run on one worker at a time: a Restate
//! virtual object (`StoryLease`, keyed like the story's workflow) holding the holder, a fencing
//! token and an expiry, and the worker's side that takes it, renews it while the step runs, and
//! reports it lost.
//!
//! A worker takes the lease inside the step's result entry, over the ingress, each time the
//! step runs (a replayed grant would be the dead worker's). It waits while another worker holds
//! it unexpired: a worker that died lost its lease at most `ttl` after its last renewal, and its
//! keeper took its call down at once (milliseconds), so the call is gone before anyone else may
//! start it. A worker alive but cut off from the server takes its lease for lost once it has not
//! renewed it for two thirds of its time, and tears its call down (SIGKILL, no grace) in the
//! last third, before the lease expires: two copies of a call never run at once. (A worker
//! frozen for longer than the whole lease, a stopped process or a suspended machine, finds its
//! renewal refused when it wakes, and stops its call then.)

use std::time::Duration;

use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// A worker asks for the lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acquire {
    /// Who asks (host, address and pid of the worker).
    pub holder: String,
    /// How long the lease lasts without a renewal, in milliseconds.
    pub ttl_ms: u64,
}

/// The answer to [`Acquire`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Grant {
    /// The fencing token, when granted (each grant's is larger than any before).
    pub token: Option<u64>,
    /// When refused: milliseconds until the current holder's lease expires.
    pub wait_ms: u64,
    /// When refused: who holds it.
    pub holder: Option<String>,
}

/// A renewal or a release, by token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renew {
    /// The token of the grant.
    pub token: u64,
    /// How long from now (renewal).
    pub ttl_ms: u64,
}

/// The lease object.
#[derive(Debug, Default)]
pub(crate) struct StoryLease;

const HOLDER: &str = "holder";
const TOKEN: &str = "token";
const EXPIRES: &str = "expires_ms";

/// Now, in milliseconds since the epoch, journaled (replay sees the same time).
async fn now(ctx: &ObjectContext<'_>) -> Result<u64, TerminalError> {
    Ok(ctx
        .run(|| async {
            Ok(Json(
                u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0),
            ))
        })
        .name("now")
        .await?
        .into_inner())
}

#[restate_sdk::object]
impl StoryLease {
    /// Grants the lease when nobody holds it unexpired.
    #[handler]
    async fn acquire(
        &self,
        ctx: ObjectContext<'_>,
        req: Json<Acquire>,
    ) -> Result<Json<Grant>, HandlerError> {
        let req = req.into_inner();
        let now = now(&ctx).await?;
        let expires = ctx.get::<u64>(EXPIRES).await?.unwrap_or(0);
        let token = ctx.get::<u64>(TOKEN).await?.unwrap_or(0);
        if expires > now {
            return Ok(Json(Grant {
                token: None,
                wait_ms: expires - now,
                holder: ctx.get::<String>(HOLDER).await?,
            }));
        }
        let token = token + 1;
        ctx.set(TOKEN, token);
        ctx.set(HOLDER, req.holder);
        ctx.set(EXPIRES, now.saturating_add(req.ttl_ms));
        Ok(Json(Grant {
            token: Some(token),
            wait_ms: 0,
            holder: None,
        }))
    }

    /// Extends the lease of `token` when it still holds it; false when it lost it.
    #[handler]
    async fn renew(&self, ctx: ObjectContext<'_>, req: Json<Renew>) -> Result<bool, HandlerError> {
        let req = req.into_inner();
        let now = now(&ctx).await?;
        let held = ctx.get::<u64>(TOKEN).await?.unwrap_or(0) == req.token
            && ctx.get::<u64>(EXPIRES).await?.unwrap_or(0) > now;
        if held {
            ctx.set(EXPIRES, now.saturating_add(req.ttl_ms));
        }
        Ok(held)
    }

    /// Gives the lease of `token` up (nothing when it was lost already).
    #[handler]
    async fn release(&self, ctx: ObjectContext<'_>, req: Json<Renew>) -> Result<(), HandlerError> {
        if ctx.get::<u64>(TOKEN).await?.unwrap_or(0) == req.into_inner().token {
            ctx.set(EXPIRES, 0_u64);
        }
        Ok(())
    }
}

/// The worker's side of the leases: the ingress to ask, who it is, and how long a lease lasts.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    pub ingress: String,
    pub holder: String,
    pub ttl: Duration,
}

/// A lease held: renewed in the background until dropped (then released).
#[derive(Debug)]
pub(crate) struct Held {
    /// Becomes true once the lease is lost.
    pub lost: watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
    release: Option<(Leases, String, u64)>,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        if let Some((leases, key, token)) = self.release.take() {
            // Best effort: an unreleased lease expires by itself.
            tokio::spawn(async move {
                let _ = leases
                    .call(&key, "release", &Renew { token, ttl_ms: 0 })
                    .await;
            });
        }
    }
}

impl Leases {
    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX)
    }

    async fn call<T: Serialize>(
        &self,
        key: &str,
        handler: &str,
        body: &T,
    ) -> Result<bytes::Bytes, String> {
        let url = format!("{}/StoryLease/{key}/{handler}", self.ingress);
        let body = serde_json::to_vec(body).unwrap_or_default();
        let (status, answer) = crate::http::send(hyper::Method::POST, &url, &body).await?;
        if status.is_success() {
            Ok(answer)
        } else {
            Err(format!(
                "{url}: HTTP {status}: {}",
                String::from_utf8_lossy(&answer)
            ))
        }
    }

    /// Takes the lease of `key`, waiting while another holder's is unexpired; `say` is told who
    /// is waited for.
    pub(crate) async fn acquire(&self, key: &str) -> Result<Held, String> {
        let ask = Acquire {
            holder: self.holder.clone(),
            ttl_ms: self.ttl_ms(),
        };
        let token = loop {
            let answer = self.call(key, "acquire", &ask).await?;
            let grant: Grant = serde_json::from_slice(&answer)
                .map_err(|e| format!("the lease's grant does not decode: {e}"))?;
            if let Some(token) = grant.token {
                break token;
            }
            tracing::info!(
                key,
                holder = grant.holder.as_deref().unwrap_or("?"),
                wait_ms = grant.wait_ms,
                "the story's lease is held: waiting for it to expire"
            );
            // Not a wait for the holder to finish: the instant its lease ends unless renewed,
            // after which the lease is asked for again.
            let expiry = Duration::from_millis(grant.wait_ms.max(1));
            tokio::time::sleep(expiry).await; // a deadline: the holder's lease expiry
        };
        let (tx, lost) = watch::channel(false);
        let renewal = tokio::spawn({
            let (leases, key) = (self.clone(), key.to_string());
            async move { leases.renew(&key, token, tx).await }
        });
        Ok(Held {
            lost,
            renewal,
            release: Some((self.clone(), key.to_string(), token)),
        })
    }

    /// Renews the lease every third of its time until it is refused or has not been renewed by
    /// a third of its time before it expires; then says it is lost. That last third is the
    /// teardown's: the call is gone before the lease expires, so before anyone else may take it.
    async fn renew(&self, key: &str, token: u64, lost: watch::Sender<bool>) {
        let margin = self.ttl / 3;
        let mut valid_until = tokio::time::Instant::now() + self.ttl;
        let mut every = tokio::time::interval(margin);
        every.tick().await;
        loop {
            every.tick().await;
            let asked = tokio::time::Instant::now();
            // The server counts the lease from when it renews it, after `asked`.
            let deadline = valid_until - margin;
            let renewed = tokio::time::timeout_at(
                deadline,
                self.call(
                    key,
                    "renew",
                    &Renew {
                        token,
                        ttl_ms: self.ttl_ms(),
                    },
                ),
            )
            .await;
            match renewed {
                Ok(Ok(answer)) if answer.as_ref() == b"true" => valid_until = asked + self.ttl,
                Ok(Ok(_)) => break,
                // Unreachable: try again while the lease may still be ours.
                Ok(Err(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(key, error = %e, "cannot renew the story's lease");
                }
                _ => break,
            }
        }
        tracing::warn!(key, token, "lost the story's lease");
        let _ = lost.send(true);
    }
}
