//! The exposition parser against `prometheus-parse` 0.2.5: agreement where that crate is
//! right, and the known cases where it is wrong.

use std::collections::HashMap;

use autoscaler::exposition::{self, Exposition, MetricType};
use prometheus_parse::{Scrape, Value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn oracle(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn ours(text: &str) -> Exposition {
    exposition::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn label_map(labels: &[(String, String)], skip: &str) -> HashMap<String, String> {
    labels.iter().filter(|(k, _)| k != skip).cloned().collect()
}

fn same(a: f64, b: f64) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

/// Every sample the oracle reports is one of ours with the same name, labels and value.
fn assert_agrees(text: &str) {
    let exp = ours(text);
    let mine: Vec<_> = exp.families.iter().flat_map(|f| &f.samples).collect();
    let theirs = oracle(text);
    let mut checked = 0;
    for s in &theirs.samples {
        let labels: HashMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let find = |name: &str, skip: &str, extra: Option<(&str, f64)>, value: f64| {
            mine.iter().any(|m| {
                m.name == name
                    && label_map(&m.labels, skip) == labels
                    && same(m.value, value)
                    && extra.is_none_or(|(k, want)| {
                        m.label(k)
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(|v| same(v, want))
                    })
            })
        };
        let ok = match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                find(&s.metric, "", None, *v)
            }
            Value::Histogram(buckets) => buckets.iter().all(|b| {
                find(
                    &format!("{}_bucket", s.metric),
                    "le",
                    Some(("le", b.less_than)),
                    b.count,
                )
            }),
            Value::Summary(quantiles) => quantiles.iter().all(|q| {
                find(
                    &s.metric,
                    "quantile",
                    Some(("quantile", q.quantile)),
                    q.count,
                )
            }),
        };
        assert!(ok, "oracle sample {s:?} not found in ours\n{text}");
        checked += 1;
    }
    assert!(checked > 0, "nothing compared\n{text}");
}

/// Label values the oracle splits correctly: no quotes, backslashes, commas, braces or `=`.
fn safe_value(rng: &mut StdRng) -> String {
    const ALPHABET: &[u8] = b"abcXYZ019 /._-:;#!?";
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn value(rng: &mut StdRng) -> String {
    match rng.random_range(0..8) {
        0 => "NaN".to_string(),
        1 => "+Inf".to_string(),
        2 => "-Inf".to_string(),
        3 => format!("{}", rng.random_range(0..1_000_000u64)),
        4 => format!("{:e}", rng.random_range(-1e9..1e9f64)),
        _ => format!("{}", rng.random_range(-1e6..1e6f64)),
    }
}

/// A random text 0.0.4 exposition with counters, gauges, untyped, histograms and summaries.
fn random_exposition(rng: &mut StdRng) -> String {
    let mut out = String::new();
    for f in 0..rng.random_range(1..6) {
        let name = format!(
            "fam_{f}_{}",
            ["a", "b_total", "c_seconds"][rng.random_range(0..3)]
        );
        let kind = ["counter", "gauge", "untyped", "histogram", "summary"][rng.random_range(0..5)];
        out.push_str(&format!(
            "# HELP {name} Help for {name}.\n# TYPE {name} {kind}\n"
        ));
        for series in 0..rng.random_range(1..4) {
            let labels = format!("series=\"{series}\",v=\"{}\"", safe_value(rng));
            match kind {
                "histogram" => {
                    let mut count = 0u64;
                    for le in ["0.1", "1", "+Inf"] {
                        count += rng.random_range(0..10u64);
                        out.push_str(&format!("{name}_bucket{{{labels},le=\"{le}\"}} {count}\n"));
                    }
                    out.push_str(&format!(
                        "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {count}\n",
                        value(rng)
                    ));
                }
                "summary" => {
                    for q in ["0.5", "0.99"] {
                        out.push_str(&format!(
                            "{name}{{{labels},quantile=\"{q}\"}} {}\n",
                            value(rng)
                        ));
                    }
                    out.push_str(&format!(
                        "{name}_sum{{{labels}}} 1\n{name}_count{{{labels}}} 2\n"
                    ));
                }
                _ => {
                    let ts = if rng.random_bool(0.3) {
                        format!(
                            " {}",
                            rng.random_range(1_600_000_000_000..1_800_000_000_000i64)
                        )
                    } else {
                        String::new()
                    };
                    out.push_str(&format!("{name}{{{labels}}} {}{ts}\n", value(rng)));
                }
            }
        }
    }
    out
}

#[test]
fn agrees_with_prometheus_parse_on_random_expositions() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..300 {
        assert_agrees(&random_exposition(&mut rng));
    }
}

#[test]
fn agrees_with_prometheus_parse_on_client_fixtures_without_odd_labels() {
    for name in [
        "go_text_0_0_4.txt",
        "rust_prometheus_text_0_0_4.txt",
        "python_text_0_0_4.txt",
    ] {
        let path = format!(
            "{}/tests/fixtures/exposition/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.contains('\\'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_agrees(&text);
    }
}

#[test]
fn escaped_quotes_stay_in_one_label_where_prometheus_parse_splits_them() {
    let text = "# TYPE r counter\nr{path=\"/say \\\"hi\\\", ok=1\"} 1\n";
    let sample = &ours(text).families[0].samples[0];
    assert_eq!(
        sample.labels,
        vec![("path".to_string(), "/say \"hi\", ok=1".to_string())]
    );
    let theirs = oracle(text);
    assert_eq!(
        theirs.samples[0].labels.len(),
        2,
        "prometheus-parse 0.2.5 splits the value"
    );
}

#[test]
fn brace_in_label_value_keeps_the_sample_where_prometheus_parse_drops_it() {
    let text = "# TYPE r counter\nr{path=\"/a}b\"} 7\nr{path=\"/\"} 1\n";
    assert_eq!(ours(text).sum("r"), Some(8.0));
    let theirs = oracle(text);
    let total: f64 = theirs
        .samples
        .iter()
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .sum();
    assert_ne!(total, 8.0, "prometheus-parse 0.2.5 mangles the `}}` sample");
}

#[test]
fn openmetrics_counters_are_typed_where_prometheus_parse_leaves_them_untyped() {
    let text = "# TYPE http_requests counter\nhttp_requests_total{code=\"2xx\"} 5\n# EOF\n";
    let exp = ours(text);
    assert_eq!(
        exp.family("http_requests_total").unwrap().kind,
        MetricType::Counter
    );
    assert_eq!(exp.sum("http_requests"), Some(5.0));
    assert!(matches!(oracle(text).samples[0].value, Value::Untyped(5.0)));
}

#[test]
fn openmetrics_float_timestamps_are_kept_where_prometheus_parse_uses_now() {
    let text = "# TYPE g gauge\ng 1 1600000000.5\n# EOF\n";
    assert_eq!(
        ours(text).families[0].samples[0].timestamp,
        Some(1_600_000_000.5)
    );
    let theirs = oracle(text);
    assert!(
        theirs.samples[0].timestamp.timestamp() > 1_700_000_000,
        "prometheus-parse 0.2.5 uses now"
    );
}
