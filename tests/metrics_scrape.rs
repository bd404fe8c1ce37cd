//! The replica scraper and the aggregation rules against HTTP servers on loopback: hostile
//! expositions (NaN, overflow, label churn) and huge or endless bodies (issue 11, items 3-5).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscaler::metrics::aggregate::{ReplicaInput, ReplicaScrape, request_rate};
use autoscaler::metrics::{MAX_SCRAPE_BYTES, MetricsError, Scraper};
use autoscaler::scaling::MetricReading;
use autoscaler::state::CounterSample;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::routing::get;

const COUNTER: &str = "http_requests_total";

/// Size of the huge bodies served: 16 times the default cap.
const HUGE: usize = 64 << 20;

/// Peak resident set of this process (`VmHWM`), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// 1 MiB of comment lines, allocated once: serving it again costs no memory.
fn chunk() -> Bytes {
    static CHUNK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    CHUNK
        .get_or_init(|| {
            let line = b"# padding padding padding padding padding padding padding pad\n";
            Bytes::from(
                line.iter()
                    .copied()
                    .cycle()
                    .take(1 << 20)
                    .collect::<Vec<u8>>(),
            )
        })
        .clone()
}

/// A stream of `HUGE` bytes in 1 MiB chunks, with no `Content-Length`.
fn huge_stream() -> Body {
    let chunks = std::iter::repeat_n((), HUGE >> 20).map(|()| Ok::<_, std::io::Error>(chunk()));
    Body::from_stream(futures::stream::iter(chunks))
}

struct Server {
    addr: SocketAddr,
    /// What `/metrics` answers.
    body: Arc<Mutex<String>>,
    /// Requests to `/slow` in flight, and the most seen at once.
    in_flight: Arc<AtomicUsize>,
    most_in_flight: Arc<AtomicUsize>,
}

async fn start() -> Server {
    let body = Arc::new(Mutex::new(String::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let (b, now, most) = (body.clone(), in_flight.clone(), most_in_flight.clone());
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let text = b.lock().map(|t| t.clone()).unwrap_or_default();
                async move { text }
            }),
        )
        .route("/huge", get(|| async { huge_stream() }))
        .route(
            "/huge-announced",
            get(|| async { ([(header::CONTENT_LENGTH, HUGE.to_string())], huge_stream()) }),
        )
        .route("/api/v1/query", get(|| async { huge_stream() }))
        .route(
            "/slow",
            get(move || {
                let (now, most) = (now.clone(), most.clone());
                async move {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    "m 1\n"
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        addr,
        body,
        in_flight,
        most_in_flight,
    }
}

impl Server {
    fn serve(&self, text: &str) {
        *self.body.lock().expect("body lock") = text.to_owned();
    }
}

/// One pass over one replica: scrape with the real scraper, aggregate, merge the samples.
async fn pass(
    scraper: &Scraper,
    server: &Server,
    stored: &mut BTreeMap<String, CounterSample>,
    now_ms: u64,
) -> (MetricReading, Vec<String>) {
    let scrape = scraper
        .replica_scrape(server.addr, "/metrics", COUNTER)
        .await;
    let inputs = [ReplicaInput {
        replica_id: "replica-1",
        scrape,
    }];
    let outcome = request_rate("/metrics", COUNTER, &inputs, stored, now_ms);
    stored.extend(outcome.samples);
    (outcome.reading, outcome.warnings)
}

/// What the state file would hold, written and read back.
fn round_trip(stored: &BTreeMap<String, CounterSample>) -> BTreeMap<String, CounterSample> {
    let json = serde_json::to_string(stored).expect("serialize samples");
    assert!(!json.contains("null"), "state would get a null: {json}");
    serde_json::from_str(&json).expect("stored samples read back")
}

#[tokio::test]
async fn a_replica_serving_nan_is_missing_data_and_never_stored() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(5)).expect("scraper");
    let mut stored = BTreeMap::new();

    server.serve("http_requests_total 10\n");
    pass(&scraper, &server, &mut stored, 1_000).await;
    for (i, bad) in ["NaN", "+Inf", "-Inf"].into_iter().enumerate() {
        server.serve(&format!("http_requests_total {bad}\n"));
        let (reading, warnings) = pass(&scraper, &server, &mut stored, 2_000 + i as u64).await;
        assert_eq!(reading, MetricReading::PerReplica(vec![None]), "{bad}");
        assert_eq!(warnings.len(), 1, "{bad}: {warnings:?}");
        stored = round_trip(&stored);
        assert!(stored.values().all(|s| s.value == 10.0), "{stored:?}");
    }
    // Back to numbers: the rate is taken against the last good sample.
    server.serve("http_requests_total 40\n");
    let (reading, _) = pass(&scraper, &server, &mut stored, 4_000).await;
    assert_eq!(reading, MetricReading::PerReplica(vec![Some(10.0)]));

    // The drain's gauge read: a NaN sum is an error, not a number.
    server.serve("inflight NaN\n");
    let e = scraper
        .family_sum(server.addr, "/metrics", "inflight")
        .await
        .unwrap_err();
    assert!(matches!(e, MetricsError::NonFinite { .. }), "{e}");
}

#[tokio::test]
async fn rates_whose_sum_overflows_are_missing_data_and_never_stored() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(5)).expect("scraper");
    let mut stored = BTreeMap::new();
    server.serve("http_requests_total{a=\"1\"} 0\nhttp_requests_total{a=\"2\"} 0\n");
    pass(&scraper, &server, &mut stored, 1_000).await;
    server.serve("http_requests_total{a=\"1\"} 1.7e308\nhttp_requests_total{a=\"2\"} 1.7e308\n");
    let (reading, warnings) = pass(&scraper, &server, &mut stored, 2_000).await;
    assert_eq!(reading, MetricReading::PerReplica(vec![None]));
    assert!(warnings[0].contains("overflows"), "{warnings:?}");
    round_trip(&stored);
    let e = scraper
        .family_sum(server.addr, "/metrics", COUNTER)
        .await
        .unwrap_err();
    assert!(matches!(e, MetricsError::NonFinite { .. }), "{e}");
}

#[tokio::test]
async fn a_vanished_label_set_is_not_read_as_a_counter_reset() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(5)).expect("scraper");
    let mut stored = BTreeMap::new();
    // Two processes behind one replica, 10 req/s in all; then the second one's series goes.
    let steps: &[(u64, &str, Option<f64>)] = &[
        (
            1_000,
            "http_requests_total{pid=\"1\"} 100\nhttp_requests_total{pid=\"2\"} 50\n",
            None,
        ),
        (
            2_000,
            "http_requests_total{pid=\"1\"} 105\nhttp_requests_total{pid=\"2\"} 55\n",
            Some(10.0),
        ),
        (3_000, "http_requests_total{pid=\"1\"} 115\n", Some(10.0)),
        (4_000, "http_requests_total{pid=\"1\"} 125\n", Some(10.0)),
    ];
    for (now_ms, text, want) in steps {
        server.serve(text);
        let (reading, warnings) = pass(&scraper, &server, &mut stored, *now_ms).await;
        assert_eq!(
            reading,
            MetricReading::PerReplica(vec![*want]),
            "at {now_ms}"
        );
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

#[tokio::test]
async fn a_huge_body_is_refused_at_the_cap_with_bounded_memory() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(30)).expect("scraper");
    // Warm up the client and the server (their first allocations are not the body's).
    server.serve("http_requests_total 1\n");
    scraper
        .family_series(server.addr, "/metrics", COUNTER)
        .await
        .expect("warm-up scrape");

    let before = peak_rss_kib();
    let e = scraper
        .family_series(server.addr, "/huge", COUNTER)
        .await
        .unwrap_err();
    let grew_kib = peak_rss_kib() - before;
    println!("peak RSS grew by {grew_kib} KiB scraping a {HUGE}-byte body");
    // The body is 64 MiB; reading it whole took +133 MiB of peak RSS before the cap.
    assert!(
        grew_kib < 16 << 10,
        "peak RSS grew by {grew_kib} KiB for a refused {HUGE}-byte body"
    );
    match &e {
        MetricsError::BodyTooLarge { url, limit } => {
            assert_eq!(*limit, MAX_SCRAPE_BYTES);
            assert!(url.ends_with("/huge"), "{url}");
        }
        other => panic!("want BodyTooLarge, got {other}"),
    }
    assert!(e.to_string().contains("limit"), "{e}");

    // Announced too large: refused before reading.
    let e = scraper
        .fetch(server.addr, "/huge-announced")
        .await
        .unwrap_err();
    assert!(matches!(e, MetricsError::BodyTooLarge { .. }), "{e}");
    // A Prometheus answer is capped too.
    let base = format!("http://{}", server.addr);
    let e = scraper.prometheus_query(&base, "up").await.unwrap_err();
    assert!(matches!(e, MetricsError::BodyTooLarge { .. }), "{e}");
    let grew_kib = peak_rss_kib() - before;
    assert!(grew_kib < 16 << 10, "peak RSS grew by {grew_kib} KiB");
}

#[tokio::test]
async fn a_smaller_cap_refuses_what_the_default_accepts() {
    let server = start().await;
    let text = format!("{}http_requests_total 1\n", "# pad\n".repeat(1000));
    server.serve(&text);
    let scraper = Scraper::new(Duration::from_secs(5)).expect("scraper");
    assert!(scraper.fetch(server.addr, "/metrics").await.is_ok());
    let exact = scraper.clone().with_limits(text.len(), 4);
    assert_eq!(exact.max_body_bytes(), text.len());
    assert!(
        exact.fetch(server.addr, "/metrics").await.is_ok(),
        "the cap is inclusive"
    );
    let small = scraper.with_limits(text.len() - 1, 4);
    let e = small.fetch(server.addr, "/metrics").await.unwrap_err();
    assert!(
        matches!(e, MetricsError::BodyTooLarge { limit, .. } if limit == text.len() - 1),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_scrapes_are_bounded() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(5))
        .expect("scraper")
        .with_limits(MAX_SCRAPE_BYTES, 2);
    let scrapes = (0..8).map(|_| {
        let scraper = scraper.clone();
        let addr = server.addr;
        tokio::spawn(async move { scraper.family_sum(addr, "/slow", "m").await })
    });
    for result in futures::future::join_all(scrapes).await {
        assert_eq!(result.expect("task").expect("scrape"), 1.0);
    }
    assert_eq!(server.in_flight.load(Ordering::SeqCst), 0);
    assert_eq!(server.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn replica_scrapes_tell_a_missing_family_from_a_failure() {
    let server = start().await;
    let scraper = Scraper::new(Duration::from_secs(5)).expect("scraper");
    server.serve("other_total 1\n");
    let got = scraper
        .replica_scrape(server.addr, "/metrics", COUNTER)
        .await;
    assert_eq!(got, ReplicaScrape::MissingFamily);
    server.serve("http_requests_total{a=\"1\"} 1\nhttp_requests_total 2\n");
    let got = scraper
        .replica_scrape(server.addr, "/metrics", COUNTER)
        .await;
    let labels: Vec<&str> = match &got {
        ReplicaScrape::Series(series) => series.iter().map(|s| s.labels.as_str()).collect(),
        other => panic!("want series, got {other:?}"),
    };
    assert_eq!(labels, ["", r#"{a="1"}"#]);
    server.serve("not { an exposition\n");
    let got = scraper
        .replica_scrape(server.addr, "/metrics", COUNTER)
        .await;
    assert!(
        matches!(&got, ReplicaScrape::Failed(m) if m.contains("does not parse")),
        "{got:?}"
    );
    // (Not /huge: that would run beside the RSS measurement of the test above.)
    let tiny = scraper.with_limits(8, 1);
    let got = tiny.replica_scrape(server.addr, "/metrics", COUNTER).await;
    assert!(
        matches!(&got, ReplicaScrape::Failed(m) if m.contains("limit")),
        "{got:?}"
    );
}
