//! Readiness probing: HTTP GET on a replica's readiness path through its published port.
//!
//! One probe is one fresh HTTP/1.1 connection (no pooling, no proxy): a 2xx status means
//! ready; anything else, a refused connection or a timeout means not ready.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The longest a single attempt inside [`wait_ready`] may take, whatever the period.
const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// The shortest a single attempt inside [`wait_ready`] may take (the final one at the deadline).
const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(100);

/// Why waiting for readiness failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The readiness path cannot be sent as an HTTP request target.
    #[error("readiness path {path:?} is not a valid HTTP path (it must start with '/')")]
    BadPath {
        /// The path given.
        path: String,
    },
    /// The replica did not answer 2xx before the timeout.
    #[error(
        "http://{addr}{path} not ready after {waited:?} ({attempts} attempts); last failure: {last}"
    )]
    NotReady {
        /// Address probed.
        addr: SocketAddr,
        /// Readiness path.
        path: String,
        /// How long we waited.
        waited: Duration,
        /// How many probes were made.
        attempts: u32,
        /// The last probe's failure, in words.
        last: String,
    },
}

/// One probe's outcome when it was not a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The path does not form a valid request.
    BadPath,
    /// TCP connect failed (refused, unreachable).
    Connect(String),
    /// The HTTP exchange failed after connecting.
    Http(String),
    /// The replica answered with a non-2xx status.
    Status(u16),
    /// No answer within the attempt's timeout.
    Timeout(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::BadPath => write!(f, "invalid path"),
            Failure::Connect(e) => write!(f, "connect failed: {e}"),
            Failure::Http(e) => write!(f, "HTTP exchange failed: {e}"),
            Failure::Status(s) => write!(f, "status {s}"),
            Failure::Timeout(t) => write!(f, "no answer within {t:?}"),
        }
    }
}

/// Sends one `GET path` to `addr`; true when the answer is 2xx within `timeout`.
pub async fn probe_once(addr: SocketAddr, path: &str, timeout: Duration) -> bool {
    attempt(addr, path, timeout).await.is_ok()
}

/// Probes every `period` until a 2xx answer, giving up after `timeout`.
///
/// # Errors
/// [`ProbeError::NotReady`] saying how long it waited and the last failure;
/// [`ProbeError::BadPath`] at once for a path that cannot be requested.
pub async fn wait_ready(
    addr: SocketAddr,
    path: &str,
    period: Duration,
    timeout: Duration,
) -> Result<(), ProbeError> {
    if !is_valid_path(path) {
        return Err(ProbeError::BadPath {
            path: path.to_string(),
        });
    }
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let attempt_timeout = remaining
            .min(MAX_ATTEMPT_TIMEOUT.max(period))
            .max(MIN_ATTEMPT_TIMEOUT);
        attempts += 1;
        let failure = match attempt(addr, path, attempt_timeout).await {
            Ok(()) => {
                tracing::debug!(%addr, path, attempts, waited_ms = start.elapsed().as_millis() as u64, "replica ready");
                return Ok(());
            }
            Err(failure) => failure,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::NotReady {
                addr,
                path: path.to_string(),
                waited: start.elapsed(),
                attempts,
                last: failure.to_string(),
            });
        }
        tracing::trace!(%addr, path, %failure, "replica not ready yet");
        // The last sleep ends at the deadline, so one final attempt is made there.
        tokio::time::sleep(period.min(deadline - now)).await;
    }
}

/// Whether `path` can be sent as an origin-form request target.
fn is_valid_path(path: &str) -> bool {
    path.starts_with('/')
        && path
            .parse::<hyper::Uri>()
            .is_ok_and(|u| u.scheme().is_none())
}

/// One probe: connect, GET, read the status, all within `timeout`.
async fn attempt(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), Failure> {
    if !is_valid_path(path) {
        return Err(Failure::BadPath);
    }
    match tokio::time::timeout(timeout, exchange(addr, path)).await {
        Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
        Ok(Ok(status)) => Err(Failure::Status(status)),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

/// The HTTP/1.1 exchange of one probe; returns the status code.
async fn exchange(addr: SocketAddr, path: &str) -> Result<u16, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Failure::Http(e.to_string()))?;
    // Drives the connection; it ends when `sender` is dropped or the peer closes.
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::trace!(error = %e, "probe connection ended with an error");
        }
    });
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::USER_AGENT, "autoscaler-probe")
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|_| Failure::BadPath)?;
    let result = sender
        .send_request(request)
        .await
        .map(|response| response.status().as_u16())
        .map_err(|e| Failure::Http(e.to_string()));
    drop(sender);
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Serves `responses` one connection each (the last one repeats), answering with the raw text.
    async fn server(responses: Vec<&'static str>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let response = responses[i.min(responses.len() - 1)];
                i += 1;
                let mut buf = [0u8; 1024];
                let _ = socket.read(&mut buf).await;
                if !response.is_empty() {
                    let _ = socket.write_all(response.as_bytes()).await;
                }
                if response == "HANG" {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
            }
        });
        addr
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";
    const UNAVAILABLE: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
    const REDIRECT: &str = "HTTP/1.1 302 Found\r\nlocation: /\r\ncontent-length: 0\r\n\r\n";

    #[tokio::test]
    async fn probe_is_ready_only_on_2xx() {
        let cases: &[(&'static str, bool)] = &[
            (OK, true),
            (NO_CONTENT, true),
            (UNAVAILABLE, false),
            (REDIRECT, false),
            ("garbage\r\n\r\n", false),
            ("", false),
        ];
        for (response, want) in cases {
            let addr = server(vec![response]).await;
            let got = probe_once(addr, "/healthz", Duration::from_secs(2)).await;
            assert_eq!(got, *want, "response {response:?}");
        }
    }

    #[tokio::test]
    async fn probe_fails_fast_on_refused_and_times_out_on_silence() {
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(!probe_once(closed, "/", Duration::from_secs(2)).await);

        let addr = server(vec!["HANG"]).await;
        let start = std::time::Instant::now();
        assert!(!probe_once(addr, "/", Duration::from_millis(300)).await);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "took {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn bad_paths_are_rejected() {
        let addr = server(vec![OK]).await;
        for path in ["healthz", "", "/a b", "http://evil/x", "/x\r\nHost: y"] {
            assert!(
                !probe_once(addr, path, Duration::from_secs(1)).await,
                "path {path:?}"
            );
            let err = wait_ready(
                addr,
                path,
                Duration::from_millis(10),
                Duration::from_secs(1),
            )
            .await;
            assert!(
                matches!(err, Err(ProbeError::BadPath { .. })),
                "path {path:?}: {err:?}"
            );
        }
        assert!(probe_once(addr, "/healthz?full=1", Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn wait_ready_succeeds_once_the_replica_turns_ready() {
        let addr = server(vec![UNAVAILABLE, UNAVAILABLE, OK]).await;
        let got = wait_ready(
            addr,
            "/healthz",
            Duration::from_millis(20),
            Duration::from_secs(5),
        )
        .await;
        assert!(got.is_ok(), "{got:?}");
    }

    #[tokio::test]
    async fn wait_ready_error_says_how_long_and_last_failure() {
        let addr = server(vec![UNAVAILABLE]).await;
        let start = std::time::Instant::now();
        let got = wait_ready(
            addr,
            "/healthz",
            Duration::from_millis(50),
            Duration::from_millis(400),
        )
        .await;
        let elapsed = start.elapsed();
        match got {
            Err(ProbeError::NotReady {
                waited,
                attempts,
                last,
                ..
            }) => {
                assert!(waited >= Duration::from_millis(400), "waited {waited:?}");
                assert!(elapsed < Duration::from_secs(2), "elapsed {elapsed:?}");
                assert!(attempts >= 3, "attempts {attempts}");
                assert_eq!(last, "status 503");
            }
            other => panic!("expected NotReady, got {other:?}"),
        }
    }
}
