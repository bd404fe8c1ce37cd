//! Unit tests of the demo backend's metrics.

use super::DemoMetrics;
use crate::exposition::{self, MetricType};

fn scrape(metrics: &DemoMetrics) -> exposition::Exposition {
    let text = metrics.encode().unwrap();
    exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

#[test]
fn requests_are_counted_by_route_and_status_class() {
    let metrics = DemoMetrics::new();
    let served: &[(&'static str, u16)] = &[
        ("/", 200),
        ("/", 204),
        ("/", 503),
        ("other", 404),
        ("/", 301),
    ];
    for (route, status) in served {
        metrics.count(route, *status);
    }
    let exp = scrape(&metrics);
    assert_eq!(
        exp.family("http_requests").unwrap().kind,
        MetricType::Counter
    );
    let cases: &[(&str, &str, Option<f64>)] = &[
        ("/", "2xx", Some(2.0)),
        ("/", "3xx", Some(1.0)),
        ("/", "5xx", Some(1.0)),
        ("other", "4xx", Some(1.0)),
        ("/", "4xx", None),
    ];
    for (path, code, want) in cases {
        let got = exp.sum_where("http_requests_total", |s| {
            s.label("path") == Some(path) && s.label("code") == Some(code)
        });
        assert_eq!(got, *want, "{path} {code}");
    }
    assert_eq!(exp.sum("http_requests_total"), Some(5.0));
}

#[test]
fn in_flight_gauge_follows_guards_even_when_dropped_early() {
    let metrics = DemoMetrics::new();
    let a = metrics.start_request();
    let b = metrics.start_request();
    assert_eq!(scrape(&metrics).sum("http_requests_in_flight"), Some(2.0));
    drop(a);
    assert_eq!(scrape(&metrics).sum("http_requests_in_flight"), Some(1.0));
    drop(b);
    assert_eq!(scrape(&metrics).sum("http_requests_in_flight"), Some(0.0));
}

#[test]
fn start_time_is_a_recent_unix_time() {
    let exp = scrape(&DemoMetrics::new());
    let start = exp.sum("process_start_time_seconds").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - start).abs() < 60.0, "start {start} now {now}");
    assert_eq!(
        exp.sum("http_requests_total"),
        Some(0.0),
        "exposed at 0 before any request"
    );
}
