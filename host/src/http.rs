//! HTTP/1.1 requests with hyper, through TLS (rustls, Mozilla's roots) for `https://`: the
//! notifiers' webhooks and the Restate client (`run --engine restate`).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio_rustls::rustls;

/// POSTs `body` to `url` (`http://` or `https://`); `Ok` on a 2xx status.
pub(crate) async fn post_json(url: &str, body: &[u8]) -> Result<(), String> {
    let (status, _) = send(hyper::Method::POST, url, body).await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {url}: HTTP {status}"))
    }
}

/// Sends a `method` request with the JSON `body` (none when empty) to `url`; the status and
/// the whole answer.
pub(crate) async fn send(
    method: hyper::Method,
    url: &str,
    body: &[u8],
) -> Result<(hyper::StatusCode, Bytes), String> {
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
    // Answers are read as JSON (Restate's admin API answers a query in Arrow otherwise).
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::ACCEPT, "application/json");
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .header(hyper::header::HOST, authority.as_str())
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
async fn exchange<T>(
    io: T,
    request: Request<Full<Bytes>>,
    url: &str,
) -> Result<(hyper::StatusCode, Bytes), String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake for {url}: {e}"))?;
    // The connection is driven beside the request, and ends with it (also when the
    // caller's timeout drops this future).
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let method = request.method().clone();
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = response.status();
    // The answer is read to its end (bounded by the caller's timeout); one cut short is what
    // arrived of it.
    let body = response
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    Ok((status, body))
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
