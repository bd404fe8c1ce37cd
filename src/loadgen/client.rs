//! A small keep-alive HTTP/1.1 client over hyper's connection API, with the one safe retry.
//!
//! hyper-util's pooled client (`client-legacy`) retries a request only when it was still
//! queued and never written; when the server closes an idle keep-alive connection (nginx
//! does so on every reload) just as a request is written to it, the request fails with an
//! incomplete message. Browsers retry such an idempotent GET once on a fresh connection;
//! this client does the same, and only when (a) the connection was reused, (b) not one
//! response byte had arrived, and (c) the request had not timed out. Each connection counts
//! the bytes it has read so (b) is a fact, not a guess from the error text.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response arrived and its body was read; 2xx and 3xx count as ok.
    Status(StatusCode),
    /// No connection could be made (refused, unreachable).
    Connect,
    /// The request did not complete within the per-request timeout.
    Timeout,
    /// Any other transport failure: reset, closed mid-response, malformed response.
    Other,
}

/// The result of [`Client::get`]: how it ended and whether the safe retry was used.
#[derive(Debug, Clone, Copy)]
pub struct Attempted {
    /// How the request ended (after the retry, if any).
    pub outcome: Outcome,
    /// True when the first try hit a connection the server had closed and was resent.
    pub retried: bool,
}

/// A keep-alive pool of HTTP/1.1 connections to one address, sending `GET` to one URL.
pub struct Client {
    /// The whole `GET` request as written on the wire by [`Session`].
    pub(super) raw: Arc<[u8]>,
    pub(super) addr: SocketAddr,
    path: Uri,
    host: hyper::header::HeaderValue,
    pub(super) timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    /// Caps requests in flight, hence open connections, when `--connections` is given.
    slots: Option<Arc<Semaphore>>,
}

struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    /// Bytes this connection has read so far (shared with its I/O wrapper).
    read: Arc<AtomicU64>,
}

/// Why a single try failed, with what the retry rule needs to know.
struct TryError {
    outcome: Outcome,
    /// True when at least one response byte arrived on this connection for this request.
    response_started: bool,
}

impl Client {
    /// Creates a client for `GET path` on `addr`, sending `host` as the Host header.
    pub fn new(
        addr: SocketAddr,
        path: Uri,
        host: hyper::header::HeaderValue,
        timeout: Duration,
        max_connections: Option<usize>,
    ) -> Client {
        let raw = format!(
            "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: autoscaler-load\r\n\r\n",
            path.path_and_query().map_or("/", |pq| pq.as_str()),
            String::from_utf8_lossy(host.as_bytes()),
        );
        Client {
            raw: raw.into_bytes().into(),
            addr,
            path,
            host,
            timeout,
            idle: Mutex::new(Vec::new()),
            slots: max_connections.map(|n| Arc::new(Semaphore::new(n.max(1)))),
        }
    }

    /// Sends one `GET` and reads the whole response, within the per-request timeout.
    pub async fn get(&self) -> Attempted {
        let mut retried = false;
        let work = async {
            let _slot: Option<OwnedSemaphorePermit> = match &self.slots {
                Some(s) => Arc::clone(s).acquire_owned().await.ok(),
                None => None,
            };
            let (conn, reused) = match self.checkout().await {
                Some(conn) => (conn, true),
                None => match self.connect().await {
                    Ok(conn) => (conn, false),
                    Err(outcome) => return outcome,
                },
            };
            match self.try_once(conn).await {
                Ok(status) => Outcome::Status(status),
                Err(e) if reused && !e.response_started => {
                    tracing::debug!(
                        "reused connection closed before any response byte; retrying once"
                    );
                    retried = true;
                    match self.connect().await {
                        Ok(conn) => match self.try_once(conn).await {
                            Ok(status) => Outcome::Status(status),
                            Err(e) => e.outcome,
                        },
                        Err(outcome) => outcome,
                    }
                }
                Err(e) => e.outcome,
            }
        };
        let outcome = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Outcome::Timeout);
        Attempted { outcome, retried }
    }

    /// Takes an idle connection that is still open, dropping any the server has closed.
    async fn checkout(&self) -> Option<Conn> {
        loop {
            let mut conn = self.idle.lock().ok()?.pop()?;
            if conn.sender.is_closed() {
                continue;
            }
            if conn.sender.ready().await.is_ok() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, Outcome> {
        let stream = TcpStream::connect(self.addr).await.map_err(|err| {
            tracing::debug!(addr = %self.addr, %err, "connect failed");
            Outcome::Connect
        })?;
        let _ = stream.set_nodelay(true);
        let read = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(CountingStream {
            inner: stream,
            read: Arc::clone(&read),
        });
        let (sender, connection) =
            hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|err| {
                    tracing::debug!(%err, "http handshake failed");
                    Outcome::Connect
                })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::trace!(%err, "connection ended with an error");
            }
        });
        Ok(Conn { sender, read })
    }

    async fn try_once(&self, mut conn: Conn) -> Result<StatusCode, TryError> {
        let before = conn.read.load(Ordering::Acquire);
        let started = |conn: &Conn| conn.read.load(Ordering::Acquire) > before;
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = self.path.clone();
        req.headers_mut()
            .insert(hyper::header::HOST, self.host.clone());
        req.headers_mut().insert(
            hyper::header::USER_AGENT,
            hyper::header::HeaderValue::from_static("autoscaler-load"),
        );
        let resp = match conn.sender.send_request(req).await {
            Ok(resp) => resp,
            Err(err) => {
                tracing::debug!(%err, "request failed");
                return Err(TryError {
                    outcome: Outcome::Other,
                    response_started: started(&conn),
                });
            }
        };
        let status = resp.status();
        if let Err(err) = resp.into_body().collect().await {
            tracing::debug!(%err, "response body failed");
            return Err(TryError {
                outcome: Outcome::Other,
                response_started: true,
            });
        }
        self.checkin(conn);
        Ok(status)
    }
}

/// A TCP stream that counts the bytes it reads, so a retry can prove no response began.
struct CountingStream {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before) as u64;
        if n > 0 {
            self.read.fetch_add(n, Ordering::Release);
        }
        res
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
