//! Table tests of the aggregation rules: one behaviour per case, every case checks the
//! stored samples stay finite.

use super::*;

const PATH: &str = "/metrics";
const COUNTER: &str = "http_requests_total";

fn s(at_ms: u64, value: f64) -> CounterSample {
    CounterSample { at_ms, value }
}

fn series(pairs: &[(&str, f64)]) -> ReplicaScrape {
    ReplicaScrape::Series(
        pairs
            .iter()
            .map(|(labels, value)| SeriesValue {
                labels: labels.to_string(),
                value: *value,
            })
            .collect(),
    )
}

/// Previous samples: (replica, labels, at_ms, value).
fn previous(rows: &[(&str, &str, u64, f64)]) -> BTreeMap<String, CounterSample> {
    rows.iter()
        .map(|(id, labels, at, v)| (sample_key(id, PATH, COUNTER, labels), s(*at, *v)))
        .collect()
}

const A: &str = r#"{pid="1"}"#;
const B: &str = r#"{pid="2"}"#;

struct Case {
    name: &'static str,
    previous: &'static [(&'static str, &'static str, u64, f64)],
    now_ms: u64,
    replicas: Vec<(&'static str, ReplicaScrape)>,
    want: MetricReading,
    /// How many warnings, and a word each must contain.
    warnings: &'static [&'static str],
    /// Samples to store: (replica, labels, value), all at `now_ms`.
    stored: &'static [(&'static str, &'static str, f64)],
}

fn per_replica(values: &[Option<f64>]) -> MetricReading {
    MetricReading::PerReplica(values.to_vec())
}

fn cases() -> Vec<Case> {
    use ReplicaScrape::{Failed, MissingFamily, Skipped};
    vec![
        Case {
            name: "first sample of a replica is a baseline, no rate yet",
            previous: &[],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", 5.0)]))],
            want: per_replica(&[None]),
            warnings: &[],
            stored: &[("r1", "", 5.0)],
        },
        Case {
            name: "steady unlabeled counter",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 3000,
            replicas: vec![("r1", series(&[("", 120.0)]))],
            want: per_replica(&[Some(10.0)]),
            warnings: &[],
            stored: &[("r1", "", 120.0)],
        },
        Case {
            name: "two label sets add their rates",
            previous: &[("r1", A, 1000, 100.0), ("r1", B, 1000, 50.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(A, 110.0), (B, 70.0)]))],
            want: per_replica(&[Some(30.0)]),
            warnings: &[],
            stored: &[("r1", A, 110.0), ("r1", B, 70.0)],
        },
        Case {
            // Issue 11 item 4: the sum drops 150 -> 110, which the old code read as a reset
            // (110 req/s); the service really serves 10 req/s.
            name: "a vanished label set contributes nothing and is no reset",
            previous: &[("r1", A, 1000, 100.0), ("r1", B, 1000, 50.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(A, 110.0)]))],
            want: per_replica(&[Some(10.0)]),
            warnings: &[],
            stored: &[("r1", A, 110.0)],
        },
        Case {
            name: "a new label set is a baseline and adds nothing yet",
            previous: &[("r1", A, 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(A, 110.0), (B, 500.0)]))],
            want: per_replica(&[Some(10.0)]),
            warnings: &[],
            stored: &[("r1", A, 110.0), ("r1", B, 500.0)],
        },
        Case {
            name: "every label set new on a known replica is missing data, not zero",
            previous: &[("r1", A, 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(B, 500.0)]))],
            want: per_replica(&[None]),
            warnings: &[],
            stored: &[("r1", B, 500.0)],
        },
        Case {
            name: "a reset is handled per series",
            previous: &[("r1", A, 1000, 100.0), ("r1", B, 1000, 50.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(A, 4.0), (B, 60.0)]))],
            want: per_replica(&[Some(14.0)]),
            warnings: &[],
            stored: &[("r1", A, 4.0), ("r1", B, 60.0)],
        },
        Case {
            name: "samples of another replica never count",
            previous: &[("r2", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![
                ("r1", series(&[("", 110.0)])),
                ("r2", series(&[("", 130.0)])),
            ],
            want: per_replica(&[None, Some(30.0)]),
            warnings: &[],
            stored: &[("r1", "", 110.0), ("r2", "", 130.0)],
        },
        Case {
            name: "NaN is missing data with a warning and is never stored",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", f64::NAN)]))],
            want: per_replica(&[None]),
            warnings: &["NaN"],
            stored: &[],
        },
        Case {
            name: "one NaN label set makes its replica missing; the finite ones are kept",
            previous: &[("r1", A, 1000, 100.0), ("r1", B, 1000, 50.0)],
            now_ms: 2000,
            replicas: vec![
                ("r1", series(&[(A, 110.0), (B, f64::NAN)])),
                ("r2", series(&[("", 1.0)])),
            ],
            want: per_replica(&[None, None]),
            warnings: &["NaN"],
            stored: &[("r1", A, 110.0), ("r2", "", 1.0)],
        },
        Case {
            name: "+Inf is missing data with a warning",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", f64::INFINITY)]))],
            want: per_replica(&[None]),
            warnings: &["inf"],
            stored: &[],
        },
        Case {
            name: "-Inf is missing data with a warning",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", f64::NEG_INFINITY)]))],
            want: per_replica(&[None]),
            warnings: &["-inf"],
            stored: &[],
        },
        Case {
            name: "a negative counter is missing data with a warning",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", -3.0)]))],
            want: per_replica(&[None]),
            warnings: &["negative"],
            stored: &[],
        },
        Case {
            name: "rates whose sum overflows to infinity are missing data with a warning",
            previous: &[("r1", A, 1000, 0.0), ("r1", B, 1000, 0.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[(A, f64::MAX), (B, f64::MAX)]))],
            want: per_replica(&[None]),
            warnings: &["overflows"],
            stored: &[("r1", A, f64::MAX), ("r1", B, f64::MAX)],
        },
        Case {
            name: "one rate that overflows to infinity is missing data with a warning",
            previous: &[("r1", "", 1000, f64::MAX)],
            now_ms: 1001,
            replicas: vec![("r1", series(&[("", f64::MAX / 2.0)]))],
            want: per_replica(&[None]),
            warnings: &["overflows"],
            stored: &[("r1", "", f64::MAX / 2.0)],
        },
        Case {
            name: "zero elapsed time gives no rate",
            previous: &[("r1", "", 2000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", 110.0)]))],
            want: per_replica(&[None]),
            warnings: &[],
            stored: &[("r1", "", 110.0)],
        },
        Case {
            name: "a clock gone backwards gives no rate (not a negative one) and re-baselines",
            previous: &[("r1", "", 5000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", 90.0)]))],
            want: per_replica(&[None]),
            warnings: &[],
            stored: &[("r1", "", 90.0)],
        },
        Case {
            name: "a known replica without the family counts as 0",
            previous: &[("r1", "", 1000, 0.0), ("r2", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", MissingFamily), ("r2", series(&[("", 120.0)]))],
            want: per_replica(&[Some(0.0), Some(20.0)]),
            warnings: &[],
            stored: &[("r1", "", 0.0), ("r2", "", 120.0)],
        },
        Case {
            name: "a replica whose labelled series all vanished counts as 0",
            previous: &[("r1", A, 1000, 40.0), ("r2", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", MissingFamily), ("r2", series(&[("", 120.0)]))],
            want: per_replica(&[Some(0.0), Some(20.0)]),
            warnings: &[],
            stored: &[("r1", "", 0.0), ("r2", "", 120.0)],
        },
        Case {
            name: "an unknown replica without the family is missing data",
            previous: &[("r2", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", MissingFamily), ("r2", series(&[("", 120.0)]))],
            want: per_replica(&[None, Some(20.0)]),
            warnings: &[],
            stored: &[("r1", "", 0.0), ("r2", "", 120.0)],
        },
        Case {
            name: "a lazily created unlabeled counter counts from 0",
            previous: &[("r1", "", 1000, 0.0)],
            now_ms: 2000,
            replicas: vec![("r1", series(&[("", 7.0)]))],
            want: per_replica(&[Some(7.0)]),
            warnings: &[],
            stored: &[("r1", "", 7.0)],
        },
        Case {
            name: "no scraped replica exposes the family: unavailable",
            previous: &[("r1", "", 1000, 0.0)],
            now_ms: 2000,
            replicas: vec![("r1", MissingFamily), ("r2", Skipped), ("r3", series(&[]))],
            want: MetricReading::Unavailable(
                "no replica exposes the counter http_requests_total".into(),
            ),
            warnings: &[],
            stored: &[("r1", "", 0.0), ("r3", "", 0.0)],
        },
        Case {
            name: "every scrape failed: unavailable with the first error",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![
                ("r1", Failed("timed out".into())),
                ("r2", Skipped),
                ("r3", Failed("refused".into())),
            ],
            want: MetricReading::Unavailable("every scrape failed, e.g. timed out".into()),
            warnings: &[],
            stored: &[],
        },
        Case {
            name: "a failed scrape next to a good one is that replica's missing data",
            previous: &[("r1", "", 1000, 100.0), ("r2", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![
                ("r1", Failed("timed out".into())),
                ("r2", series(&[("", 150.0)])),
            ],
            want: per_replica(&[None, Some(50.0)]),
            warnings: &[],
            stored: &[("r2", "", 150.0)],
        },
        Case {
            name: "failures and missing families mixed: per replica, failures missing",
            previous: &[("r1", "", 1000, 0.0)],
            now_ms: 2000,
            replicas: vec![("r1", MissingFamily), ("r2", Failed("refused".into()))],
            want: per_replica(&[Some(0.0), None]),
            warnings: &[],
            stored: &[("r1", "", 0.0)],
        },
        Case {
            name: "no replica scraped (all unready): every replica missing",
            previous: &[("r1", "", 1000, 100.0)],
            now_ms: 2000,
            replicas: vec![("r1", Skipped), ("r2", Skipped)],
            want: per_replica(&[None, None]),
            warnings: &[],
            stored: &[],
        },
        Case {
            name: "no replica at all: an empty reading",
            previous: &[],
            now_ms: 2000,
            replicas: vec![],
            want: per_replica(&[]),
            warnings: &[],
            stored: &[],
        },
    ]
}

#[test]
fn request_rate_follows_prometheus_rate_per_series() {
    for case in cases() {
        let inputs: Vec<ReplicaInput> = case
            .replicas
            .iter()
            .map(|(id, scrape)| ReplicaInput {
                replica_id: id,
                scrape: scrape.clone(),
            })
            .collect();
        let previous = previous(case.previous);
        let got = request_rate(PATH, COUNTER, &inputs, &previous, case.now_ms);
        assert_eq!(got.reading, case.want, "{}", case.name);
        let want_stored: Vec<(String, CounterSample)> = case
            .stored
            .iter()
            .map(|(id, labels, v)| (sample_key(id, PATH, COUNTER, labels), s(case.now_ms, *v)))
            .collect();
        assert_eq!(got.samples, want_stored, "{}", case.name);
        assert!(
            got.samples.iter().all(|(_, s)| s.value.is_finite()),
            "{}: a non-finite sample would be stored",
            case.name
        );
        assert_eq!(
            got.warnings.len(),
            case.warnings.len(),
            "{}: {:?}",
            case.name,
            got.warnings
        );
        for (warning, word) in got.warnings.iter().zip(case.warnings) {
            assert!(warning.contains(word), "{}: {warning}", case.name);
            assert!(warning.contains("missing data"), "{}: {warning}", case.name);
        }
    }
}

#[test]
fn rates_of_stored_samples_serialize_to_valid_state() {
    // Whatever comes in, what is stored reads back (state.json never gets `null`).
    let inputs = [ReplicaInput {
        replica_id: "r1",
        scrape: series(&[
            ("", f64::NAN),
            (A, f64::INFINITY),
            (B, f64::MAX),
            (r#"{pid="3"}"#, f64::NEG_INFINITY),
        ]),
    }];
    let got = request_rate(PATH, COUNTER, &inputs, &BTreeMap::new(), 1000);
    let map: BTreeMap<String, CounterSample> = got.samples.into_iter().collect();
    let json = serde_json::to_string(&map).unwrap();
    assert!(!json.contains("null"), "{json}");
    let back: BTreeMap<String, CounterSample> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, map);
}

#[test]
fn steady_label_churn_gives_a_steady_rate_over_many_passes() {
    // Item 4 over time: two processes, one label set each; the second comes and goes.
    // Each serves 5 req/s; the reading is 10 or 5 (one process unseen), never a burst.
    let mut stored: BTreeMap<String, CounterSample> = BTreeMap::new();
    let mut readings = Vec::new();
    for pass in 1..=8u64 {
        let t = pass * 1000;
        let a = (A, 5.0 * pass as f64);
        let b = (B, 1000.0 + 5.0 * pass as f64);
        let scrape = if pass % 3 == 0 {
            series(&[a])
        } else {
            series(&[a, b])
        };
        let inputs = [ReplicaInput {
            replica_id: "r1",
            scrape,
        }];
        let got = request_rate(PATH, COUNTER, &inputs, &stored, t);
        stored.extend(got.samples);
        readings.push(got.reading);
    }
    // Stored samples are merged as the reconcile pass does (extend), so a label set that
    // comes back is rated against its last sample, over the longer interval.
    let want: Vec<MetricReading> = [None, Some(10.0), Some(5.0), Some(10.0), Some(10.0)]
        .into_iter()
        .chain([Some(5.0), Some(10.0), Some(10.0)])
        .map(|v| per_replica(&[v]))
        .collect();
    assert_eq!(readings, want);
}

#[test]
fn baselines_keep_finite_series_and_mark_a_missing_family() {
    use ReplicaScrape::{Failed, MissingFamily, Skipped};
    /// (case, scrape, samples wanted as (labels, value)).
    type BaselineCase = (&'static str, ReplicaScrape, Vec<(&'static str, f64)>);
    let cases: Vec<BaselineCase> = vec![
        (
            "series",
            series(&[("", 3.0), (A, 4.0)]),
            vec![("", 3.0), (A, 4.0)],
        ),
        (
            "non-finite and negative dropped",
            series(&[("", f64::NAN), (A, f64::INFINITY), (B, -1.0)]),
            vec![],
        ),
        ("missing family is a 0", MissingFamily, vec![("", 0.0)]),
        ("empty series is a 0", series(&[]), vec![("", 0.0)]),
        ("failed gives nothing", Failed("x".into()), vec![]),
        ("skipped gives nothing", Skipped, vec![]),
    ];
    for (name, scrape, want) in cases {
        let got = baseline_samples("r1", PATH, COUNTER, &scrape, 1234);
        let want: Vec<(String, CounterSample)> = want
            .into_iter()
            .map(|(labels, v)| (sample_key("r1", PATH, COUNTER, labels), s(1234, v)))
            .collect();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn a_baseline_gives_the_next_pass_a_rate() {
    let scrape = series(&[(A, 10.0)]);
    let previous: BTreeMap<String, CounterSample> =
        baseline_samples("r1", PATH, COUNTER, &scrape, 1000)
            .into_iter()
            .collect();
    let inputs = [ReplicaInput {
        replica_id: "r1",
        scrape: series(&[(A, 30.0)]),
    }];
    let got = request_rate(PATH, COUNTER, &inputs, &previous, 3000);
    assert_eq!(got.reading, per_replica(&[Some(10.0)]));
}

#[test]
fn sample_keys_start_with_their_owner_and_keep_the_unlabeled_form() {
    let cases: &[(&str, &str, &str, &str, &str)] = &[
        ("abc", "/metrics", "x_total", "", "abc /metrics x_total"),
        (
            "abc",
            "/metrics",
            "x_total",
            r#"{a="b c"}"#,
            r#"abc /metrics x_total {a="b c"}"#,
        ),
        ("abc", "/m e", "x", r#"{a="1"}"#, r#"abc /m e x {a="1"}"#),
    ];
    for (id, path, counter, labels, want) in cases {
        let key = sample_key(id, path, counter, labels);
        assert_eq!(key, *want);
        assert_eq!(sample_owner(&key), *id, "{key}");
        assert!(key.starts_with(&format!("{id} ")));
    }
    assert_eq!(sample_owner("lonely"), "lonely");
}

#[test]
fn rates_between_two_samples() {
    let cases: &[(&str, Option<CounterSample>, CounterSample, Option<f64>)] = &[
        ("first sample has no rate", None, s(1000, 5.0), None),
        (
            "steady increase",
            Some(s(1000, 10.0)),
            s(3000, 30.0),
            Some(10.0),
        ),
        ("no traffic", Some(s(1000, 10.0)), s(2000, 10.0), Some(0.0)),
        (
            "reset counts new value",
            Some(s(1000, 100.0)),
            s(2000, 4.0),
            Some(4.0),
        ),
        ("same instant", Some(s(1000, 1.0)), s(1000, 2.0), None),
        ("clock went back", Some(s(2000, 1.0)), s(1000, 2.0), None),
        ("NaN value", Some(s(1000, 1.0)), s(2000, f64::NAN), None),
        ("NaN previous", Some(s(1000, f64::NAN)), s(2000, 1.0), None),
        (
            "infinite value",
            Some(s(1000, 1.0)),
            s(2000, f64::INFINITY),
            None,
        ),
        ("negative value", Some(s(1000, 1.0)), s(2000, -1.0), None),
        (
            "overflowing rate",
            Some(s(1000, f64::MAX)),
            s(1001, f64::MAX / 2.0),
            None,
        ),
    ];
    for (name, prev, cur, want) in cases {
        assert_eq!(rate(*prev, *cur), *want, "{name}");
    }
}
