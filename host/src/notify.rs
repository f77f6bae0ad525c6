//! Notifiers (`[[notify]]`): word of the run's notable events (a story escalated or failed, a
//! usage limit, a limit warning, the run's end) to wherever the operator is, through a command
//! (the event's JSON on its stdin, under the gates' supervision: [`crate::gates::run_beside`])
//! or a webhook (the event's JSON POSTed, one retry).
//!
//! They run beside the run loop and never stop or slow it: the loop's [`Ui`] copies each event
//! to a channel (never blocking), a task reads it and starts each notifier the event concerns as
//! a task of its own, bounded by its timeout. A notifier that fails is reported (a warning and a
//! `notify_failed` event) and nothing else. At the end of the run, [`Notifiers::finish`] closes
//! the channel and waits for the notifiers still running, each at most its timeout.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{GateConfig, NotifyConfig, NotifyTarget};
use crate::process::Interrupt;
use crate::ui::{Event, Reporter, Ui};

/// The notifiers of a run: the task that reads the events and runs them.
#[derive(Debug)]
pub struct Notifiers {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Notifiers {
    /// Starts the notifiers of `config` for the events `ui` emits from now on; with none
    /// configured, nothing is started.
    pub fn start(config: &[NotifyConfig], root: PathBuf, run_id: String, ui: &mut Ui) -> Self {
        if config.is_empty() {
            return Notifiers { task: None };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        ui.set_tap(Some(tx));
        let shared = Arc::new(Shared {
            notifiers: config.to_vec(),
            root,
            run_id,
            reporter: ui.reporter(),
        });
        Notifiers {
            task: Some(tokio::spawn(dispatch(shared, rx))),
        }
    }

    /// Stops copying events from `ui`, and waits until every notification started (the last
    /// events' included) has ended: each is bounded by its own timeout.
    pub async fn finish(self, ui: &mut Ui) {
        ui.set_tap(None);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// What every notification needs.
#[derive(Debug)]
struct Shared {
    notifiers: Vec<NotifyConfig>,
    root: PathBuf,
    run_id: String,
    reporter: Reporter,
}

/// Reads the events until the channel closes, starting the notifications each concerns; then
/// waits for those still running.
async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Event>) {
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            event = rx.recv() => {
                let Some(event) = event else { break };
                let Some(name) = event.notify_name() else { continue };
                let body = event.to_json().to_string().into_bytes();
                for (i, notifier) in shared.notifiers.iter().enumerate() {
                    if notifier.on.iter().any(|on| on == name) {
                        running.spawn(notify(shared.clone(), i, name, body.clone()));
                    }
                }
            }
            // Finished ones are collected as they end, so the set stays small.
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

/// Tells notifier `index` of the event `name` (JSON `body`); reports a failure.
async fn notify(shared: Arc<Shared>, index: usize, name: &'static str, body: Vec<u8>) {
    let notifier = &shared.notifiers[index];
    let result = match &notifier.target {
        NotifyTarget::Command(command) => {
            run_command(&shared, index, command, notifier.timeout, name, body).await
        }
        NotifyTarget::Webhook(url) => post(url, &body, notifier.timeout).await,
    };
    match result {
        Ok(()) => tracing::debug!(notifier = index, event = name, "notified"),
        Err(error) => {
            let what = format!("notify[{index}] ({})", notifier.describe());
            tracing::warn!(notifier = %what, event = name, %error, "a notifier failed");
            shared.reporter.report(
                &Event::NotifyFailed {
                    on: name.to_string(),
                    notifier: notifier.describe(),
                    error: error.clone(),
                },
                &format!("{what} failed on `{name}`: {error} (the run goes on)"),
            );
        }
    }
}

/// Runs a notifier's command under the gates' supervision, beside the run, the event's JSON on
/// its stdin, with `BMAD_HOST_EVENT` and `BMAD_HOST_RUN_ID` in its environment.
async fn run_command(
    shared: &Shared,
    index: usize,
    command: &str,
    timeout: Duration,
    name: &str,
    body: Vec<u8>,
) -> Result<(), String> {
    let gate = GateConfig {
        name: format!("notify[{index}]"),
        command: command.to_string(),
        timeout,
        enabled: true,
    };
    let env = [
        ("BMAD_HOST_EVENT".to_string(), name.to_string()),
        ("BMAD_HOST_RUN_ID".to_string(), shared.run_id.clone()),
    ];
    // Its own interrupts: the operator's Ctrl-C stops the run, whose end waits for this at
    // most its timeout.
    let (_never, interrupts) = watch::channel(Interrupt::None);
    let run = crate::gates::run_beside(&gate, &shared.root, &env, body, interrupts).await;
    if !run.clean {
        let list: Vec<String> = run.survivors.iter().map(ToString::to_string).collect();
        return Err(format!(
            "its end cannot be proven: {}",
            if list.is_empty() {
                "its output is held open".to_string()
            } else {
                list.join(", ")
            }
        ));
    }
    if run.report.passed {
        return Ok(());
    }
    let tail = run.report.output_tail.trim();
    let tail = tail
        .char_indices()
        .rev()
        .nth(300)
        .map_or(tail, |(i, _)| &tail[i..]);
    Err(if run.report.timed_out {
        format!(
            "timed out after {}; its process tree was torn down",
            humantime::format_duration(timeout)
        )
    } else {
        match run.report.exit_code {
            Some(code) => format!("exit code {code}: {tail}"),
            None => format!("killed by a signal: {tail}"),
        }
    })
}

/// POSTs `body` to `url` as JSON: one attempt and, when it fails, one retry, both within
/// `timeout`. A 2xx status is success.
async fn post(url: &str, body: &[u8], timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    for attempt in 1..=2 {
        match tokio::time::timeout_at(deadline, http::post_json(url, body)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => {
                tracing::debug!(url, attempt, error = %e, "webhook attempt failed");
                last = e;
            }
            Err(_) => {
                return Err(format!(
                    "no answer within {}{}",
                    humantime::format_duration(timeout),
                    if last.is_empty() {
                        String::new()
                    } else {
                        format!(" (the first attempt: {last})")
                    }
                ));
            }
        }
    }
    Err(format!("{last} (after one retry)"))
}

/// One JSON POST over HTTP/1.1 with hyper, through TLS (rustls, Mozilla's roots) for `https://`.
mod http {
    use std::sync::{Arc, OnceLock};

    use bytes::Bytes;
    use http_body_util::{BodyExt as _, Full};
    use hyper::Request;
    use hyper_util::rt::TokioIo;
    use tokio_rustls::rustls;

    /// POSTs `body` to `url` (`http://` or `https://`); `Ok` on a 2xx status.
    pub(super) async fn post_json(url: &str, body: &[u8]) -> Result<(), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("{url} is not an http:// or https:// URL")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("{url} names no host"))?
            .trim_matches(['[', ']'])
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), ToString::to_string);
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::post(path)
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("bmad-host/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| format!("bad request for {url}: {e}"))?;
        if !tls {
            return exchange(TokioIo::new(stream), request, url).await;
        }
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host} is not a TLS server name: {e}"))?;
        let config = client_config()?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS with {authority}: {e}"))?;
        exchange(TokioIo::new(stream), request, url).await
    }

    /// Sends `request` on the connection `io` and reads the answer to its end.
    async fn exchange<T>(io: T, request: Request<Full<Bytes>>, url: &str) -> Result<(), String>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP handshake for {url}: {e}"))?;
        // The connection is driven beside the request, and ends with it (also when the
        // caller's timeout drops this future).
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        // The answer is read to its end (bounded by the caller's timeout).
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {url}: HTTP {status}"))
        }
    }

    /// The TLS client configuration: rustls with ring, Mozilla's root certificates
    /// (`webpki-roots`), built once.
    fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
        static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("cannot set up TLS: {e}"))
            })
            .clone()
    }

    /// A task aborted when this is dropped.
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A plain-HTTP listener that reads one request and answers `answer`.
        async fn serve_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            let task = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body of the Content-Length they give.
                loop {
                    let n = socket.read(&mut buf).await.expect("read");
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if body.len() >= len || n == 0 {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
                String::from_utf8_lossy(&seen).to_string()
            });
            (format!("127.0.0.1:{}", addr.port()), task)
        }

        #[tokio::test]
        async fn a_post_carries_the_json_and_judges_the_status() {
            let (addr, seen) = serve_once("HTTP/1.1 204 No Content\r\n\r\n").await;
            post_json(
                &format!("http://{addr}/hook?x=1"),
                br#"{"event":"run_finished"}"#,
            )
            .await
            .expect("posted");
            let seen = seen.await.expect("served");
            assert!(seen.starts_with("POST /hook?x=1 HTTP/1.1\r\n"), "{seen}");
            assert!(seen.contains("content-type: application/json"), "{seen}");
            assert!(seen.ends_with(r#"{"event":"run_finished"}"#), "{seen}");

            let (addr, _seen) =
                serve_once("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n").await;
            let err = post_json(&format!("http://{addr}/"), b"{}")
                .await
                .expect_err("a 500");
            assert!(err.contains("HTTP 500"), "{err}");
        }

        #[tokio::test]
        async fn an_https_url_speaks_tls() {
            // A plain-HTTP server on the other side, which answers at once: the TLS handshake
            // is what fails.
            use tokio::io::AsyncWriteExt as _;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let _server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
                let _ = socket.shutdown().await;
            });
            let err = post_json(&format!("https://127.0.0.1:{port}/"), b"{}")
                .await
                .expect_err("no TLS there");
            assert!(err.starts_with("TLS with 127.0.0.1:"), "{err}");
            assert!(client_config().is_ok());
        }
    }
}
