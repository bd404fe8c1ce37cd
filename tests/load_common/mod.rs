//! In-process loopback test servers for the `load_*` integration tests.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server bound on loopback; its accept loop ends with the test's runtime.
pub struct TestServer {
    pub addr: SocketAddr,
    /// Requests (or connections, for raw servers) seen.
    pub hits: Arc<AtomicU64>,
    /// Connections accepted.
    pub conns: Arc<AtomicU64>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
    pub fn conns(&self) -> u64 {
        self.conns.load(Ordering::SeqCst)
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A hyper HTTP/1.1 keep-alive server answering every request with `status` after `delay`.
pub async fn http_server(status: StatusCode, delay: Duration) -> TestServer {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    let conns = Arc::new(AtomicU64::new(0));
    let accepted = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let counter = Arc::clone(&counter);
                    async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let mut resp = Response::new(Full::new(Bytes::from_static(b"hello\n")));
                        *resp.status_mut() = status;
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer { addr, hits, conns }
}

/// Reads one request head (up to the blank line); false when the peer closed first.
pub async fn read_head(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > 64 * 1024 {
            return false;
        }
    }
    true
}

/// What a raw server does with each connection.
#[derive(Clone, Copy, Debug)]
pub enum Raw {
    /// Read the request, then reset the connection (RST, no response byte).
    Reset,
    /// Read the request and never answer (held for 30 s).
    Stall,
    /// Answer the first request with 200 keep-alive, then read the second and close
    /// without a byte: nginx closing an idle keep-alive connection as a request arrives.
    CloseIdleAfterFirst,
    /// Like `CloseIdleAfterFirst`, but send half a status line before closing.
    PartialAfterFirst,
}

/// A raw TCP server with the behaviour `raw`; `hits` counts requests read.
pub async fn raw_server(raw: Raw) -> TestServer {
    let listener = bind().await;
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&hits);
    let conns = Arc::new(AtomicU64::new(0));
    let accepted = Arc::clone(&conns);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                match raw {
                    Raw::Reset => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                    Raw::Stall => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Raw::CloseIdleAfterFirst | Raw::PartialAfterFirst => {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n";
                        if stream.write_all(ok).await.is_err() || !read_head(&mut stream).await {
                            return;
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        if let Raw::PartialAfterFirst = raw {
                            let _ = stream.write_all(b"HTTP/1.1 200 O").await;
                            let _ = stream.flush().await;
                        }
                        drop(stream);
                    }
                }
            });
        }
    });
    TestServer { addr, hits, conns }
}

/// An address on loopback where nothing listens (bound, then released).
pub async fn refused_addr() -> SocketAddr {
    let listener = bind().await;
    listener.local_addr().unwrap()
}
