//! Open- and closed-loop `load::run` against in-process loopback servers.

mod load_common;

use std::time::{Duration, Instant};

use autoscaler::loadgen::{self, LoadConfig, Profile};
use hyper::StatusCode;
use load_common::http_server;

fn within(got: u64, want: u64, frac: f64) -> bool {
    (got as f64 - want as f64).abs() <= want as f64 * frac
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_requested_count_within_two_percent() {
    let server = http_server(StatusCode::OK, Duration::ZERO).await;
    let config = LoadConfig::open(
        server.url(),
        Profile::Constant(400.0),
        Duration::from_secs(2),
    );
    let started = Instant::now();
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(report.sent, 800, "{report:?}");
    assert!(
        within(server.hits(), 800, 0.02),
        "server saw {}",
        server.hits()
    );
    assert!(within(report.ok, 800, 0.02), "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        within(report.send_rate.round() as u64, 400, 0.02),
        "{report:?}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    let per_second: Vec<u64> = report.timeline.iter().map(|s| s.sent).collect();
    assert_eq!(per_second, vec![400, 400]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn step_profile_holds_each_rate() {
    let server = http_server(StatusCode::OK, Duration::ZERO).await;
    let profile = Profile::parse_steps("50@1s,200@1s").unwrap();
    let duration = profile.length().unwrap();
    let report = loadgen::run(
        LoadConfig::open(server.url(), profile, duration),
        std::future::pending::<()>(),
    )
    .await
    .unwrap();
    let rows: Vec<(u64, u64)> = report.timeline.iter().map(|s| (s.sent, s.ok)).collect();
    assert_eq!(rows, vec![(50, 50), (200, 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_latency_counts_queueing_behind_a_slow_server() {
    // One connection, 40 ms per request, 50 req/s offered for 0.5 s: 25 requests need 1 s
    // of service, so the last waits ~0.5 s past its schedule. A closed-loop meter would
    // report ~40 ms (coordinated omission); measuring from the schedule shows the queue.
    let server = http_server(StatusCode::OK, Duration::from_millis(40)).await;
    let mut config = LoadConfig::open(
        server.url(),
        Profile::Constant(50.0),
        Duration::from_millis(500),
    );
    config.connections = Some(1);
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    assert_eq!((report.sent, report.ok), (25, 25), "{report:?}");
    assert!(report.latency.p50_ms >= 40.0, "{:?}", report.latency);
    assert!(report.latency.max_ms >= 400.0, "{:?}", report.latency);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sends_exactly_max_requests() {
    let server = http_server(StatusCode::OK, Duration::ZERO).await;
    let mut config = LoadConfig::closed(server.url(), 4, Duration::from_secs(10));
    config.max_requests = Some(500);
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    assert_eq!(
        (report.mode, report.sent, report.ok, report.failed),
        ("closed", 500, 500, 0)
    );
    assert_eq!(server.hits(), 500);
    assert!(
        report.throughput > 0.0 && report.latency.max_ms > 0.0,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_stops_at_the_duration_and_reuses_connections() {
    let server = http_server(StatusCode::OK, Duration::from_millis(5)).await;
    let config = LoadConfig::closed(server.url(), 3, Duration::from_millis(300));
    let started = Instant::now();
    let report = loadgen::run(config, std::future::pending::<()>())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // 3 workers, ~5 ms each, 300 ms: about 180; at least a third of that on a busy machine.
    assert!(report.ok >= 60 && report.ok == report.sent, "{report:?}");
    assert_eq!(report.failed, 0);
    assert_eq!(server.conns(), 3, "one keep-alive connection per worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_sending_early() {
    let server = http_server(StatusCode::OK, Duration::ZERO).await;
    let config = LoadConfig::open(
        server.url(),
        Profile::Constant(100.0),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let report = loadgen::run(config, tokio::time::sleep(Duration::from_millis(500)))
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!((40..=60).contains(&report.sent), "{report:?}");
    assert_eq!(report.ok, report.sent);
}

#[tokio::test]
async fn bad_configurations_fail_before_sending() {
    let cases = [
        LoadConfig::open(
            "https://127.0.0.1:1/",
            Profile::Constant(1.0),
            Duration::from_secs(1),
        ),
        LoadConfig::open(
            "127.0.0.1:1/",
            Profile::Constant(1.0),
            Duration::from_secs(1),
        ),
        LoadConfig::open("not a url", Profile::Constant(1.0), Duration::from_secs(1)),
        LoadConfig::closed("http://127.0.0.1:1/", 0, Duration::from_secs(1)),
        LoadConfig {
            timeout: Duration::ZERO,
            ..LoadConfig::closed("http://127.0.0.1:1/", 1, Duration::from_secs(1))
        },
    ];
    for config in cases {
        let url = config.url.clone();
        let got = loadgen::run(config, std::future::pending::<()>()).await;
        assert!(got.is_err(), "{url}: {got:?}");
    }
}
