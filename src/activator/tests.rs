//! The activator against real loopback sockets: a backend that echoes what it got.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::policy::ScaleToZero;
use crate::telemetry::Telemetry;

/// A backend answering 200 with the request body, and the proxy headers it saw echoed
/// as `seen-*` headers.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let (parts, body) = req.into_parts();
                    let bytes = body.collect().await.map(|c| c.to_bytes())?;
                    let mut resp = Response::new(Full::new(bytes));
                    for name in [
                        "x-forwarded-for",
                        "x-forwarded-proto",
                        "x-forwarded-host",
                        "x-autoscaler-policy",
                        "host",
                    ] {
                        if let Some(v) = parts.headers.get(name) {
                            resp.headers_mut().insert(
                                hyper::header::HeaderName::from_bytes(
                                    format!("seen-{name}").as_bytes(),
                                )
                                .expect("name"),
                                v.clone(),
                            );
                        }
                    }
                    Ok::<_, hyper::Error>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Harness {
    addr: SocketAddr,
    registry: Registry,
    telemetry: Arc<Telemetry>,
    events: Arc<Mutex<Vec<String>>>,
    wakes: tokio::sync::mpsc::UnboundedReceiver<String>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

async fn start(max_pending: u32, timeout_seconds: u64) -> Harness {
    let telemetry = Arc::new(Telemetry::new());
    let registry = Registry::new(telemetry.clone());
    let rule = ScaleToZero {
        idle_seconds: 60,
        max_pending,
        timeout_seconds,
    };
    registry.configure([("web", &rule)]);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    registry.set_event_sink(Arc::new(move |policy: &str, kind: &str, msg: String| {
        if let Ok(mut e) = sink.lock() {
            e.push(format!("{policy} {kind} {msg}"));
        }
    }));
    let wakes = registry.subscribe_wakes();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind activator");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(
        listener,
        registry.clone(),
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    Harness {
        addr,
        registry,
        telemetry,
        events,
        wakes,
        shutdown,
        server,
    }
}

struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn send(addr: SocketAddr, policy: Option<&str>, body: Vec<u8>) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect activator");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method("POST")
        .uri("/upload?x=1")
        .header("host", "shop.example")
        .header("x-forwarded-for", "10.1.2.3");
    if let Some(p) = policy {
        req = req.header(crate::nginx::ACTIVATOR_POLICY_HEADER, p);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let (parts, body) = resp.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("body").to_bytes(),
    }
}

async fn until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn header<'a>(a: &'a Answer, name: &str) -> &'a str {
    a.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn held_request_is_forwarded_once_a_replica_is_published() {
    let mut h = start(10, 30).await;
    let backend = echo_backend().await;
    let addr = h.addr;
    let request = tokio::spawn(async move { send(addr, Some("web"), b"hello".to_vec()).await });
    let registry = h.registry.clone();
    until("the request to be held", || registry.held("web") == 1).await;
    assert_eq!(
        h.wakes.recv().await.as_deref(),
        Some("web"),
        "asks for a replica at once"
    );
    h.registry.publish("web", vec![backend], None);
    let a = request.await.expect("join");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"hello");
    assert_eq!(header(&a, "seen-x-forwarded-for"), "10.1.2.3");
    assert_eq!(header(&a, "seen-x-forwarded-proto"), "http");
    assert_eq!(header(&a, "seen-x-forwarded-host"), "shop.example");
    assert_eq!(header(&a, "seen-host"), "shop.example");
    assert_eq!(
        header(&a, "seen-x-autoscaler-policy"),
        "",
        "routing header not forwarded"
    );
    assert_eq!(h.registry.held("web"), 0);
    let events = h.events.lock().expect("events").clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with("web Activated Activated: 1 request held "),
        "{events:?}"
    );
    let text = h.telemetry.encode();
    assert!(
        text.contains("autoscaler_activator_cold_start_seconds_count{policy=\"web\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("autoscaler_activator_forwarded_total{policy=\"web\"} 1"),
        "{text}"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn large_body_is_forwarded_intact() {
    let h = start(10, 30).await;
    let backend = echo_backend().await;
    h.registry.publish("web", vec![backend], None);
    // 8 MiB of a pattern that a truncation or reorder would change.
    let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let a = send(h.addr, Some("web"), body.clone()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), body.len());
    assert!(a.body[..] == body[..], "body changed on the way");
    h.shutdown.cancel();
}

#[tokio::test]
async fn queue_is_bounded_by_max_pending() {
    let h = start(2, 30).await;
    let backend = echo_backend().await;
    let addr = h.addr;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { send(addr, Some("web"), b"a".to_vec()).await }))
        .collect();
    let registry = h.registry.clone();
    until("two held", || registry.held("web") == 2).await;
    assert_eq!(
        h.telemetry.held_now.lock().expect("held").get("web"),
        Some(&2),
        "/status shows the held requests"
    );
    let third = send(h.addr, Some("web"), b"b".to_vec()).await;
    assert_eq!(third.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&third, "retry-after"), "1");
    assert!(
        String::from_utf8_lossy(&third.body).contains("maxPending"),
        "{:?}",
        third.body
    );
    h.registry.publish("web", vec![backend], None);
    for r in held {
        assert_eq!(r.await.expect("join").status, StatusCode::OK);
    }
    let text = h.telemetry.encode();
    assert!(
        text.contains("autoscaler_activator_rejections_total{policy=\"web\"} 1"),
        "{text}"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn held_request_times_out_with_503_retry_after_and_the_reason() {
    let h = start(10, 1).await;
    h.registry.publish(
        "web",
        Vec::new(),
        Some("create: image \"nope:latest\" does not exist".to_owned()),
    );
    let a = send(h.addr, Some("web"), Vec::new()).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&a, "retry-after"), "1");
    let body = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        body.contains("within 1 s") && body.contains("nope:latest"),
        "{body}"
    );
    assert_eq!(h.registry.held("web"), 0);
    let text = h.telemetry.encode();
    assert!(
        text.contains("autoscaler_activator_timeouts_total{policy=\"web\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("autoscaler_activator_held_requests{policy=\"web\"} 0"),
        "{text}"
    );
    h.shutdown.cancel();
}

#[tokio::test]
async fn shutdown_answers_held_requests_503_and_closes_the_port() {
    let h = start(10, 300).await;
    let addr = h.addr;
    let held = tokio::spawn(async move { send(addr, Some("web"), b"x".to_vec()).await });
    let registry = h.registry.clone();
    until("the request to be held", || registry.held("web") == 1).await;
    h.shutdown.cancel();
    let a = held.await.expect("join");
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&a, "retry-after"), "1");
    h.server.await.expect("server ends");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "port closed after shutdown"
    );
}

#[tokio::test]
async fn requests_without_a_known_policy_are_refused() {
    let h = start(10, 30).await;
    for policy in [None, Some("other"), Some("")] {
        let a = send(h.addr, policy, Vec::new()).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{policy:?}");
        assert_eq!(header(&a, "retry-after"), "1");
    }
    assert_eq!(h.registry.held_all().get("web"), Some(&0));
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_policy_leaving_the_set_frees_its_held_requests() {
    let h = start(10, 300).await;
    let addr = h.addr;
    let held = tokio::spawn(async move { send(addr, Some("web"), Vec::new()).await });
    let registry = h.registry.clone();
    until("held", || registry.held("web") == 1).await;
    h.registry.configure(std::iter::empty());
    let a = held.await.expect("join");
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(String::from_utf8_lossy(&a.body).contains("no longer scales to zero"));
    h.shutdown.cancel();
}

#[tokio::test]
async fn a_dead_replica_is_skipped_for_the_next_one() {
    let h = start(10, 30).await;
    let backend = echo_backend().await;
    // A port nothing listens on: bind, note, drop.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr")
    };
    h.registry.publish("web", vec![dead, backend], None);
    let a = send(h.addr, Some("web"), b"ok".to_vec()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(&a.body[..], b"ok");
    h.shutdown.cancel();
}
