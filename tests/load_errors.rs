//! Error classes and the keep-alive retry rule of `load::run`, against misbehaving loopback servers.

mod load_common;

use std::time::{Duration, Instant};

use autoscaler::loadgen::{self, Failures, LoadConfig, LoadReport, Profile};
use hyper::StatusCode;
use load_common::{Raw, http_server, raw_server, refused_addr};

async fn open(url: String, rps: f64, n: u64, timeout: Duration) -> LoadReport {
    let mut config = LoadConfig::open(url, Profile::Constant(rps), Duration::from_secs(5));
    config.max_requests = Some(n);
    config.timeout = timeout;
    loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_lands_in_its_own_class() {
    let n = 20;
    let t = Duration::from_millis(300);
    let s500 = http_server(StatusCode::INTERNAL_SERVER_ERROR, Duration::ZERO).await;
    let s404 = http_server(StatusCode::NOT_FOUND, Duration::ZERO).await;
    let reset = raw_server(Raw::Reset).await;
    let stall = raw_server(Raw::Stall).await;
    let refused = format!("http://{}/", refused_addr().await);
    let only = |f: Failures| f;
    let cases = [
        (
            "500s",
            s500.url(),
            only(Failures {
                status_5xx: n,
                ..Default::default()
            }),
        ),
        (
            "404s",
            s404.url(),
            only(Failures {
                status_4xx: n,
                ..Default::default()
            }),
        ),
        (
            "resets",
            reset.url(),
            only(Failures {
                other: n,
                ..Default::default()
            }),
        ),
        (
            "stalls",
            stall.url(),
            only(Failures {
                timeout: n,
                ..Default::default()
            }),
        ),
        (
            "refused",
            refused,
            only(Failures {
                connect: n,
                ..Default::default()
            }),
        ),
    ];
    for (name, url, want) in cases {
        let started = Instant::now();
        let report = open(url, 100.0, n, t).await;
        assert_eq!(report.failures, want, "{name}: {report:?}");
        assert_eq!((report.sent, report.ok, report.failed), (n, 0, n), "{name}");
        assert_eq!(
            report.retried, 0,
            "{name}: fresh connections are never retried"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{name} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(stall.hits(), n, "a timed-out request is not resent");
    assert_eq!(reset.hits(), n, "a reset fresh connection is not resent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_on_a_closed_idle_connection_is_retried_once_and_not_failed() {
    let server = raw_server(Raw::CloseIdleAfterFirst).await;
    let mut config = LoadConfig::closed(server.url(), 1, Duration::from_secs(5));
    config.max_requests = Some(20);
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    // Each connection answers once; every later request first hits a closed one.
    assert_eq!(
        (report.sent, report.ok, report.failed),
        (20, 20, 0),
        "{report:?}"
    );
    assert_eq!(report.retried, 19, "{report:?}");
    assert_eq!(server.hits(), 20 + 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_is_not_retried_once_the_response_began() {
    let server = raw_server(Raw::PartialAfterFirst).await;
    let mut config = LoadConfig::closed(server.url(), 1, Duration::from_secs(5));
    config.max_requests = Some(20);
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    // ok, partial (fails), ok on a fresh connection, partial, ...
    assert_eq!(
        (report.sent, report.ok, report.retried),
        (20, 10, 0),
        "{report:?}"
    );
    assert_eq!(
        report.failures,
        Failures {
            other: 10,
            ..Default::default()
        }
    );
}

/// Why `load` carries its own retry: hyper-util's pooled client only retries a request
/// that was still queued, not one written to a connection the server had just closed.
/// If this starts passing with zero errors, hyper-util covers the case and could replace ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyper_util_legacy_client_does_not_retry_a_written_request_on_a_closed_connection() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let server = raw_server(Raw::CloseIdleAfterFirst).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .retry_canceled_requests(true)
        .build_http();
    let uri: hyper::Uri = server.url().parse().unwrap();
    let mut errors = 0;
    for _ in 0..10 {
        match client.get(uri.clone()).await {
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors >= 4, "hyper-util failed only {errors} of 10");
}
