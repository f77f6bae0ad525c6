//! A worker whose Claude account hit its usage limit pauses, alone: until the reset it takes no
//! story, and the one the limit stopped goes back to Restate, to go on elsewhere.
//!
//! The story's run loop stops at the limit as a local run without `--wait-on-limit` does (the
//! limited step has an intent and no result, so it is redone wherever the story goes on). The
//! workflow then pauses the worker until the reset and fails the attempt with a retryable
//! error; Restate retries the invocation. While paused, the worker answers each new story
//! invocation `503 Service Unavailable` with `Retry-After` (the seconds to the reset) before the
//! SDK sees it. Restate waits that long before it retries a worker registered alone (its stories
//! wait for the reset); `bmad-host balance` skips the worker until then and drops the header,
//! so that Restate retries at once, on another worker. Its other services (leases, the
//! integration lane) go on. Every answer says how many stories the worker drives at once
//! ([`super::SLOTS_HEADER`]), which the balancer weighs its choice by.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use jiff::Timestamp;
use restate_sdk::endpoint::{Endpoint, ResponseBody};
use restate_sdk::hyper::HyperEndpoint;

use super::{SLOTS_HEADER, STORY_INVOCATION};

/// How long a worker pauses after a usage limit whose reset the CLI did not state.
pub const UNSTATED_RESET_PAUSE: Duration = Duration::from_secs(15 * 60);

/// The margin past the reset before the worker takes stories again.
const RESET_MARGIN: Duration = Duration::from_secs(2);

/// Until when this worker takes no story.
#[derive(Debug, Default)]
pub(crate) struct Pause {
    until: Mutex<Option<Timestamp>>,
}

impl Pause {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Timestamp>> {
        self.until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pauses until `reset` (plus a margin), or for [`UNSTATED_RESET_PAUSE`] from `now` when
    /// it is not known; a longer pause already in force stays. Returns the end of the pause.
    pub fn until_reset(&self, reset: Option<Timestamp>, now: Timestamp) -> Timestamp {
        let end = match reset {
            Some(at) => at.checked_add(RESET_MARGIN).unwrap_or(at),
            None => now.checked_add(UNSTATED_RESET_PAUSE).unwrap_or(now),
        };
        let mut until = self.lock();
        let end = until.map_or(end, |u| u.max(end));
        *until = Some(end);
        end
    }

    /// The end of the pause and the time left, when `now` is within it.
    pub fn left(&self, now: Timestamp) -> Option<(Timestamp, Duration)> {
        let until = (*self.lock())?;
        let left = Duration::try_from(until.duration_since(now)).ok()?;
        (!left.is_zero()).then_some((until, left))
    }
}

/// The usage limit that stopped a story, from its events (this worker's own, not those it
/// replayed): when it resets, if stated.
pub(crate) fn limited(events: &[serde_json::Value]) -> Option<Option<Timestamp>> {
    let own = || events.iter().filter(|e| e["replayed"] != true);
    let ended = own().any(|e| e["event"] == "story_finished");
    let limit = own().rfind(|e| e["event"] == "usage_limit")?;
    (!ended).then(|| limit["resets_at"].as_str().and_then(|t| t.parse().ok()))
}

/// Serves `endpoint` on `listener` as the SDK's own server does (HTTP/2), but a new story's
/// invocation is refused while `pause` is in force, and every answer carries `slots`. Ends on
/// Ctrl-C.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    endpoint: Endpoint,
    pause: Arc<Pause>,
    slots: u32,
) {
    let endpoint = HyperEndpoint::new(endpoint);
    let mut interrupted = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = &mut interrupted => return,
        };
        let (endpoint, pause) = (endpoint.clone(), Arc::clone(&pause));
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<_>| {
                let mut answer = gate(&endpoint, &pause, request);
                answer.headers_mut().insert(SLOTS_HEADER, slots.into());
                async move { Ok::<_, Infallible>(answer) }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended");
            }
        });
    }
}

type Answer = Response<Either<ResponseBody, Full<Bytes>>>;

/// The SDK's answer, or `503` with `Retry-After` for a new story while paused.
fn gate(
    endpoint: &HyperEndpoint,
    pause: &Pause,
    request: Request<hyper::body::Incoming>,
) -> Answer {
    if request.uri().path() == STORY_INVOCATION
        && let Some((until, left)) = pause.left(Timestamp::now())
    {
        let text = format!(
            "this worker's Claude account is at its usage limit until {until}: it takes no story until then"
        );
        let mut answer = Response::new(Either::Right(Full::new(Bytes::from(text))));
        *answer.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        if let Ok(value) = secs.to_string().parse() {
            answer
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, value);
        }
        return answer;
    }
    let Ok(answer) = hyper::service::Service::call(endpoint, request).into_inner();
    answer.map(Either::Left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pause_lasts_until_the_reset_and_a_longer_one_stays() {
        let now: Timestamp = "2026-12-04T06:00:00Z".parse().expect("valid");
        let pause = Pause::default();
        assert_eq!(pause.left(now), None);
        let reset: Timestamp = "2026-12-04T07:00:00Z".parse().expect("valid");
        let end = pause.until_reset(Some(reset), now);
        assert_eq!(end, reset.checked_add(RESET_MARGIN).expect("valid"));
        assert_eq!(
            pause.left(now),
            Some((end, Duration::from_secs(3600) + RESET_MARGIN))
        );
        // A shorter one does not cut it.
        assert_eq!(pause.until_reset(None, now), end);
        // Over once the end has passed.
        assert_eq!(pause.left(end), None);
        // Unknown reset: the default pause.
        let other = Pause::default();
        assert_eq!(other.left(now).map(|(_, l)| l), None);
        other.until_reset(None, now);
        assert_eq!(other.left(now).map(|(_, l)| l), Some(UNSTATED_RESET_PAUSE));
    }

    #[test]
    fn a_story_stopped_by_a_limit_is_told_from_one_that_ended() {
        let limit = json!({"event": "usage_limit", "resets_at": "2026-12-04T07:00:00Z"});
        let stopped = [json!({"event": "story_started"}), limit.clone()];
        assert_eq!(
            limited(&stopped),
            Some(Some("2026-12-04T07:00:00Z".parse().expect("valid")))
        );
        let unstated = [json!({"event": "usage_limit", "resets_at": null})];
        assert_eq!(limited(&unstated), Some(None));
        // Waited out and ended (not a worker's case, but not a pause either).
        let ended = [limit, json!({"event": "story_finished", "result": "done"})];
        assert_eq!(limited(&ended), None);
        assert_eq!(limited(&[json!({"event": "story_finished"})]), None);
        // Another worker's limit, replayed here, is not this one's.
        let replayed = [json!({"event": "usage_limit", "resets_at": null, "replayed": true})];
        assert_eq!(limited(&replayed), None);
    }
}
