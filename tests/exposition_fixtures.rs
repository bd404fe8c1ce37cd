//! The exposition parser on real outputs of the Python, Go and Rust client libraries.

use autoscaler::exposition::{self, Exposition, Format, MetricType};

fn fixture(name: &str) -> Exposition {
    let path = format!(
        "{}/tests/fixtures/exposition/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    exposition::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (fixture, format, counter sum of `http_requests_total`, `/say "hi", ok=1` count)
const REQUEST_COUNTERS: &[(&str, Format, f64, f64)] = &[
    ("python_text_0_0_4.txt", Format::Text004, 45.0, 1.0),
    ("python_openmetrics.txt", Format::OpenMetrics, 45.0, 1.0),
    ("go_text_0_0_4.txt", Format::Text004, 1211.0, 3.0),
    ("go_openmetrics.txt", Format::OpenMetrics, 1211.0, 3.0),
    ("rust_prometheus_text_0_0_4.txt", Format::Text004, 6.0, 1.0),
];

#[test]
fn request_counters_sum_the_same_under_either_name() {
    for (name, format, total, hi) in REQUEST_COUNTERS {
        let exp = fixture(name);
        assert_eq!(exp.format, *format, "{name}");
        assert_eq!(exp.sum("http_requests_total"), Some(*total), "{name}");
        assert_eq!(exp.sum("http_requests"), Some(*total), "{name}");
        assert_eq!(
            exp.family("http_requests_total").unwrap().kind,
            MetricType::Counter,
            "{name}"
        );
        let quoted = exp.sum_where("http_requests_total", |s| {
            s.label("path") == Some("/say \"hi\", ok=1")
        });
        assert_eq!(quoted, Some(*hi), "{name}");
    }
}

#[test]
fn brace_and_backslash_label_values_survive() {
    for name in [
        "python_text_0_0_4.txt",
        "python_openmetrics.txt",
        "go_text_0_0_4.txt",
        "go_openmetrics.txt",
    ] {
        let exp = fixture(name);
        let odd = exp
            .samples("http_requests_total")
            .into_iter()
            .filter(|s| s.label("path") == Some("/a}b\\c\nd"))
            .count();
        assert_eq!(odd, 1, "{name}");
    }
}

#[test]
fn python_families_have_their_types_and_parts() {
    let om = fixture("python_openmetrics.txt");
    let cases: &[(&str, MetricType, usize)] = &[
        ("http_requests", MetricType::Counter, 6),
        ("http_requests_in_flight", MetricType::Gauge, 1),
        ("http_request_duration_seconds", MetricType::Histogram, 7),
        ("http_response_size_bytes", MetricType::Summary, 3),
        ("build", MetricType::Info, 1),
        ("task_state", MetricType::StateSet, 3),
        ("temperature_celsius", MetricType::Gauge, 3),
    ];
    assert_eq!(om.families.len(), cases.len());
    for (family, kind, samples) in cases {
        let f = om.family(family).unwrap_or_else(|| panic!("{family}"));
        assert_eq!((f.kind, f.samples.len()), (*kind, *samples), "{family}");
    }
    assert_eq!(om.sum("http_request_duration_seconds_count"), Some(5.0));
    assert_eq!(om.sum("build_info"), Some(1.0));
    assert_eq!(
        om.sum_where("task_state", |s| s.label("task_state") == Some("running")),
        Some(1.0)
    );
    let temps = om.samples("temperature_celsius");
    assert!(temps[0].value.is_nan());
    assert_eq!(
        (temps[1].value, temps[2].value),
        (f64::INFINITY, f64::NEG_INFINITY)
    );
    // The text format splits `_created` into a gauge family of its own.
    let text = fixture("python_text_0_0_4.txt");
    assert_eq!(
        text.family("http_requests_created").unwrap().kind,
        MetricType::Gauge
    );
}

#[test]
fn go_summary_quantiles_and_openmetrics_units_are_read() {
    let text = fixture("go_text_0_0_4.txt");
    let gc = text.family("go_gc_duration_seconds").unwrap();
    assert_eq!(gc.kind, MetricType::Summary);
    assert_eq!(text.samples("go_gc_duration_seconds").len(), 5);
    assert_eq!(text.sum("go_gc_duration_seconds_count"), Some(31.0));
    assert_eq!(text.sum("process_cpu_seconds"), Some(0.41));
    let om = fixture("go_openmetrics.txt");
    assert_eq!(
        om.family("process_cpu_seconds_total")
            .unwrap()
            .unit
            .as_deref(),
        Some("seconds")
    );
    assert_eq!(om.sum("http_request_duration_seconds_count"), Some(1211.0));
}

#[test]
fn rust_prometheus_client_output_is_read_captured_and_live() {
    let captured = fixture("rust_prometheus_client_openmetrics.txt");
    assert_eq!(captured.sum("http_requests_total"), Some(4.0));
    assert_eq!(
        captured.sum_where("http_requests", |s| s.label("code") == Some("2xx")),
        Some(3.0)
    );
    assert_eq!(captured.sum("http_requests_in_flight"), Some(0.0));

    // A live registry of the same library, with values that need escaping.
    use prometheus_client::metrics::{counter::Counter, family::Family};
    let mut registry = prometheus_client::registry::Registry::default();
    let family = Family::<Vec<(String, String)>, Counter>::default();
    registry.register("http_requests", "Requests", family.clone());
    for (path, n) in [("/say \"hi\", ok=1", 2), ("/a}b\\c", 5)] {
        family
            .get_or_create(&vec![("path".to_string(), path.to_string())])
            .inc_by(n);
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let live = exposition::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(live.sum("http_requests_total"), Some(7.0), "{text}");
    assert_eq!(
        live.sum_where("http_requests", |s| s.label("path") == Some("/a}b\\c")),
        Some(5.0),
        "{text}"
    );
}
