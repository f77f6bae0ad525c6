//! `bmad-host balance --listen ADDR WORKER...`: the one deployment address the Restate server
//! knows for several workers.
//!
//! Restate sends every invocation of a deployment over one HTTP/2 connection, each invocation a
//! stream, so a TCP balancer pins them all to one worker. This one balances the streams: each
//! new request goes to the worker whose slots are the least taken (story invocations open
//! through it, over the stories it drives at once: its `--jobs`, which each of its answers says,
//! one until it has), then with the fewest requests open (ties in turn), chosen and counted
//! under one lock so that two stories arriving at once see each other: a worker driving a story
//! is not given a second one while another is idle. A worker that
//! cannot be reached gets `502` for that request (Restate retries the invocation, which then
//! goes to another worker) and is skipped for [`DOWN_FOR`]; one that answers `503` with
//! `Retry-After` (paused at its account's usage limit) is skipped for that long, and the header
//! is dropped from the answer, so that Restate retries at once instead of waiting for it. A dead peer on either side is found
//! by HTTP/2 pings within [`PING_EVERY`] + [`PING_TIMEOUT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::{EngineError, SLOTS_HEADER, STORY_INVOCATION};

/// How long a worker that could not be reached is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(5);
/// How often a connection with no traffic is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(10);
/// How long a ping may go unanswered before the connection is taken for dead.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A worker behind the balancer.
#[derive(Debug)]
struct Worker {
    /// `http://host:port`.
    uri: Uri,
    /// The stories' invocations open through it (each one for its story's whole run).
    stories: AtomicUsize,
    /// All the requests open through it (stories', leases', events', the lane's).
    streams: AtomicUsize,
    /// The stories it drives at once, as its last answer said (0 until one has: taken as one).
    slots: AtomicUsize,
    /// Until when it is skipped, after it could not be reached.
    down_until: Mutex<Option<Instant>>,
}

impl Worker {
    fn up(&self, now: Instant) -> bool {
        lock(&self.down_until).is_none_or(|until| until <= now)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The workers and the client that reaches them.
#[derive(Debug)]
struct Balancer {
    workers: Vec<Worker>,
    /// Where the next tie starts, so that ties go round.
    turn: AtomicUsize,
    /// Held while a worker is chosen and counted, so that two requests at once see each other.
    choosing: Mutex<()>,
    client: Client<HttpConnector, Incoming>,
}

impl Balancer {
    /// `uris`' workers, none open or down yet, reached through `client`.
    fn new(uris: Vec<Uri>, client: Client<HttpConnector, Incoming>) -> Self {
        Self {
            workers: uris
                .into_iter()
                .map(|uri| Worker {
                    uri,
                    stories: AtomicUsize::new(0),
                    streams: AtomicUsize::new(0),
                    slots: AtomicUsize::new(0),
                    down_until: Mutex::new(None),
                })
                .collect(),
            turn: AtomicUsize::new(0),
            choosing: Mutex::new(()),
            client,
        }
    }

    /// The worker for the next request, counted open until the returned guard is dropped:
    /// among those up (all, when none is), the one whose slots are the least taken (its stories
    /// over its slots), then with the fewest open requests (a lease's or an event's are short);
    /// ties go in turn.
    fn open(self: &Arc<Self>, story: bool) -> Open {
        let _choosing = lock(&self.choosing);
        let now = Instant::now();
        let any_up = self.workers.iter().any(|w| w.up(now));
        let start = self.turn.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let index = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| !any_up || self.workers[i].up(now))
            .min_by(|&a, &b| {
                let (a, b) = (&self.workers[a], &self.workers[b]);
                // a.stories / a.slots against b.stories / b.slots, without division.
                let taken = |w: &Worker, other: &Worker| {
                    w.stories.load(Ordering::Relaxed) * other.slots.load(Ordering::Relaxed).max(1)
                };
                taken(a, b).cmp(&taken(b, a)).then_with(|| {
                    a.streams
                        .load(Ordering::Relaxed)
                        .cmp(&b.streams.load(Ordering::Relaxed))
                })
            })
            .unwrap_or(0);
        Open::new(Arc::clone(self), index, story)
    }

    async fn forward(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<BoxBody<Bytes, hyper::Error>>, Infallible> {
        let open = self.open(request.uri().path() == STORY_INVOCATION);
        let index = open.index;
        let worker = &self.workers[index];
        let (mut parts, body) = request.into_parts();
        let mut uri = worker.uri.clone().into_parts();
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = match Uri::from_parts(uri) {
            Ok(uri) => uri,
            Err(e) => return Ok(bad_gateway(format!("bad request path: {e}"))),
        };
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(mut response) => {
                if let Some(slots) = slots_of(&response) {
                    let before = worker.slots.swap(slots, Ordering::Relaxed);
                    if before != slots {
                        tracing::info!(worker = %worker.uri, slots, "the worker's slots (the stories it drives at once)");
                    }
                }
                // A mark ends by itself: an answer to a request sent before it does not end it.
                if let Some(secs) = paused_for(&response) {
                    tracing::warn!(worker = %worker.uri, secs, "the worker takes nothing for now: skipped");
                    *lock(&worker.down_until) = Some(Instant::now() + Duration::from_secs(secs));
                    // Restate would wait that long before it retries; another worker may take
                    // the invocation now.
                    response.headers_mut().remove(hyper::header::RETRY_AFTER);
                }
                Ok(response.map(|body| Counted { body, _open: open }.boxed()))
            }
            Err(e) => {
                if e.is_connect() {
                    *lock(&worker.down_until) = Some(Instant::now() + DOWN_FOR);
                }
                tracing::warn!(worker = %worker.uri, error = %e, "the worker did not answer");
                Ok(bad_gateway(format!(
                    "worker {} did not answer: {e}",
                    worker.uri
                )))
            }
        }
    }
}

/// The stories a worker's answer says it drives at once ([`SLOTS_HEADER`]), if it says.
fn slots_of<B>(response: &Response<B>) -> Option<usize> {
    response
        .headers()
        .get(SLOTS_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&n| n >= 1)
}

/// A worker's `503` with `Retry-After: SECONDS` (a paused worker, see `pause.rs`): how long to
/// skip it.
fn paused_for<B>(response: &Response<B>) -> Option<u64> {
    if response.status() != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    response
        .headers()
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn bad_gateway(text: String) -> Response<BoxBody<Bytes, hyper::Error>> {
    let mut response = Response::new(Full::new(Bytes::from(text)).map_err(|n| match n {}).boxed());
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

/// One open stream through a worker (`story`: a story's invocation), counted until dropped.
#[derive(Debug)]
struct Open {
    balancer: Arc<Balancer>,
    index: usize,
    story: bool,
}

impl Open {
    fn new(balancer: Arc<Balancer>, index: usize, story: bool) -> Self {
        let worker = &balancer.workers[index];
        worker.streams.fetch_add(1, Ordering::Relaxed);
        if story {
            worker.stories.fetch_add(1, Ordering::Relaxed);
        }
        Self {
            balancer,
            index,
            story,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let worker = &self.balancer.workers[self.index];
        worker.streams.fetch_sub(1, Ordering::Relaxed);
        if self.story {
            worker.stories.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A worker's response body, its stream counted open while it lasts.
#[derive(Debug)]
struct Counted {
    body: Incoming,
    _open: Open,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The workers' URLs checked: `http://host:port`, nothing after.
fn worker_uris(workers: &[String]) -> Result<Vec<Uri>, EngineError> {
    if workers.is_empty() {
        return Err(EngineError::Balance(
            "no worker given: name each worker's URL, e.g. http://10.0.0.5:9080".into(),
        ));
    }
    workers
        .iter()
        .map(|w| {
            let uri: Uri = w.trim_end_matches('/').parse().map_err(|e| {
                EngineError::Balance(format!("worker `{w}` is not a URL: {e}"))
            })?;
            if uri.scheme_str() != Some("http")
                || uri.authority().is_none()
                || uri.path_and_query().is_some_and(|p| p.as_str() != "/")
            {
                return Err(EngineError::Balance(format!(
                    "worker `{w}`: give it as http://HOST:PORT (the worker's --listen), nothing after"
                )));
            }
            Ok(uri)
        })
        .collect()
}

/// `bmad-host balance`: forwards the Restate server's requests to `workers` until killed.
pub fn balance(listen: SocketAddr, workers: &[String]) -> Result<u8, crate::error::Error> {
    let uris = worker_uris(workers)?;
    super::runtime()?.block_on(async move {
        let listener = super::bind(listen).await?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(PING_EVERY)
            .http2_keep_alive_timeout(PING_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build_http();
        let balancer = Arc::new(Balancer::new(uris, client));
        eprintln!(
            "bmad-host balance: serving {} workers on http://{listen}/ (register it with the Restate server)",
            balancer.workers.len()
        );
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let balancer = Arc::clone(&balancer);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    Arc::clone(&balancer).forward(request)
                });
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder
                    .http2()
                    .timer(TokioTimer::new())
                    .keep_alive_interval(PING_EVERY)
                    .keep_alive_timeout(PING_TIMEOUT);
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(n: usize) -> Arc<Balancer> {
        let uris = (0..n)
            .map(|i| {
                format!("http://127.0.0.1:{}", 9000 + i)
                    .parse()
                    .expect("valid")
            })
            .collect();
        Arc::new(Balancer::new(
            uris,
            Client::builder(TokioExecutor::new()).build_http(),
        ))
    }

    /// Where a request of the kind `story` goes (not kept open).
    fn next(b: &Arc<Balancer>, story: bool) -> usize {
        b.open(story).index
    }

    #[test]
    fn a_story_goes_to_the_worker_driving_the_fewest_and_ties_go_round() {
        let b = balancer(3);
        // Ties go in turn.
        let firsts: Vec<usize> = (0..3).map(|_| next(&b, true)).collect();
        assert_eq!(firsts, [0, 1, 2]);
        // Stories open on 0 and 1: the next goes to 2 whatever the turn, and two at once are
        // counted as they are chosen.
        let on0 = b.open(true);
        let on1 = b.open(true);
        assert_eq!((on0.index, on1.index), (0, 1));
        assert_eq!((0..4).map(|_| next(&b, true)).collect::<Vec<_>>(), [2; 4]);
        // Short requests (a lease's, an event's) open on 2 do not send a story elsewhere...
        let short = [b.open(false), b.open(false)];
        assert!(short.iter().all(|o| o.index == 2), "{short:?}");
        assert_eq!(next(&b, true), 2);
        // ...but a story open there does.
        {
            let _on2 = b.open(true);
            assert_ne!(next(&b, true), 2);
        }
        drop(short);
        // Closed streams count no more.
        assert_eq!(b.workers[2].streams.load(Ordering::Relaxed), 0);
        assert_eq!(b.workers[2].stories.load(Ordering::Relaxed), 0);
        assert_eq!(next(&b, true), 2);
    }

    #[test]
    fn a_worker_with_more_slots_takes_more_stories() {
        let b = balancer(2);
        b.workers[0].slots.store(2, Ordering::Relaxed);
        // Both free: in turn.
        let first = b.open(true);
        assert_eq!(first.index, 0);
        // 0 has one of two taken, 1 none of one: 1.
        let second = b.open(true);
        assert_eq!(second.index, 1);
        // 0 half taken, 1 full: 0.
        let third = b.open(true);
        assert_eq!(third.index, 0);
        // Both full: the one with the fewest open requests, or in turn.
        let fourth = b.open(true);
        assert_eq!(fourth.index, 1, "1 has fewer streams open");
        drop((first, third));
        // 0 free again, 1 over its slot.
        assert_eq!(next(&b, true), 0);
    }

    #[test]
    fn an_answer_says_its_workers_slots() {
        let answer = |slots: Option<&str>| {
            let mut r = Response::builder().status(200);
            if let Some(v) = slots {
                r = r.header(SLOTS_HEADER, v);
            }
            r.body(()).expect("valid")
        };
        assert_eq!(slots_of(&answer(Some("3"))), Some(3));
        assert_eq!(slots_of(&answer(Some("0"))), None);
        assert_eq!(slots_of(&answer(Some("many"))), None);
        assert_eq!(slots_of(&answer(None)), None);
    }

    #[test]
    fn a_worker_that_could_not_be_reached_is_skipped_until_its_time_is_up_unless_all_are() {
        let b = balancer(2);
        *lock(&b.workers[0].down_until) = Some(Instant::now() + DOWN_FOR);
        let busy = b.open(true);
        assert_eq!(busy.index, 1);
        // 0 drives fewer stories, but is down.
        assert_eq!(
            (0..3).map(|_| next(&b, true)).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        // Its time is up.
        *lock(&b.workers[0].down_until) = Some(Instant::now());
        assert_eq!(next(&b, true), 0);
        // All down: the fewest among all.
        for w in &b.workers {
            *lock(&w.down_until) = Some(Instant::now() + DOWN_FOR);
        }
        assert_eq!(next(&b, true), 0);
    }

    #[test]
    fn a_503_with_retry_after_is_a_pause_and_nothing_else_is() {
        let answer = |status: u16, retry: Option<&str>| {
            let mut r = Response::builder().status(status);
            if let Some(v) = retry {
                r = r.header("retry-after", v);
            }
            r.body(()).expect("valid")
        };
        assert_eq!(paused_for(&answer(503, Some("600"))), Some(600));
        assert_eq!(paused_for(&answer(503, None)), None);
        assert_eq!(paused_for(&answer(503, Some("soon"))), None);
        assert_eq!(paused_for(&answer(200, Some("600"))), None);
    }

    #[test]
    fn worker_urls_must_be_plain_http_addresses() {
        assert!(worker_uris(&["http://127.0.0.1:9080".into(), "http://b:1/".into()]).is_ok());
        for bad in ["127.0.0.1:9080", "https://a:1", "http://a:1/x", "not a url"] {
            let e = worker_uris(&[bad.into()])
                .expect_err("an error")
                .to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
        assert!(
            worker_uris(&[])
                .expect_err("an error")
                .to_string()
                .contains("no worker")
        );
    }
}
