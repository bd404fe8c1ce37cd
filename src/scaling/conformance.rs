//! Conformance with Kubernetes' HPA: upstream's table tests replayed through the scaling core.
//!
//! Every case names the test of `pkg/controller/podautoscaler` (`replica_calculator_test.go`
//! or `horizontal_test.go`) it mirrors and asserts upstream's replica count. Upstream's inputs
//! are translated to ours as follows:
//! - a pod is a replica; its metric is a per-replica value (`PerReplica`), `None` when the
//!   pod is missing from the metrics or unready (we never scrape unready replicas);
//! - CPU utilization: a pod's value is its usage in millicores and the target is the
//!   target utilization times the mean request, which gives upstream's ratio
//!   (Σ usage / Σ requests / target) exactly whenever every pod has data;
//! - custom metrics are in their own unit (upstream's milli-units divided by 1000);
//! - `AverageValue` object and external metrics are a `Total` (our Prometheus query);
//! - failed and terminating pods are not replicas, so they never appear in a reading;
//! - upstream's `recommendations: []` (a controller that has seen the HPA before) is a
//!   history whose only recommendation has expired ([`warm`]); `nil` is an empty history.
//!
//! Upstream tests that cannot be expressed (`Value` targets of object and external metrics,
//! per-pod CPU requests with missing pods, container metrics) are left out; the cases where
//! we deliberately differ are in [`documented_differences_from_upstream`] and in the
//! README's "Differences from Kubernetes' HPA".

use super::replicas;
use super::test_support::*;
use super::{Decision, DecisionInput, History, Limit, MetricInput, Recommendation, ScaleEvent};
use crate::policy::types::{
    Behavior, Direction, RatePolicy, RatePolicyKind, Replicas, ScalingRules, SelectPolicy,
};

const S: u64 = 1000;
/// "Now" far from the epoch, so no window saturates.
const NOW: u64 = 5_000_000 * S;
/// Upstream's `defaultTestingTolerance`.
const TOLERANCE: f64 = 0.1;

/// Upstream's `recommendations: []timestampedRecommendation{}`: the controller knows the
/// HPA already and nothing it recommended is inside any window.
fn warm() -> History {
    recs(&[(100_000, 1)])
}

/// Recommendations `(seconds ago, replicas)`.
fn recs(list: &[(u64, u32)]) -> History {
    History {
        recommendations: list
            .iter()
            .map(|&(ago, replicas)| Recommendation {
                at_ms: NOW - ago * S,
                replicas,
            })
            .collect(),
        events: vec![],
        burst: None,
    }
}

/// A warm history with scale-up and scale-down events, each `(seconds ago, change)`.
fn events(up: &[(u64, u32)], down: &[(u64, u32)]) -> History {
    let mut h = warm();
    let ups = up.iter().map(|&(ago, n)| (ago, 0, n));
    let downs = down.iter().map(|&(ago, n)| (ago, n, 0));
    h.events = ups
        .chain(downs)
        .map(|(ago, from, to)| ScaleEvent {
            at_ms: NOW - ago * S,
            from,
            to,
        })
        .collect();
    h
}

/// Upstream's `generateEventsUniformDistribution`: `changes` spread over the last
/// `period` seconds, each in the middle of its segment, oldest first.
fn spread(changes: &[u32], period: u64) -> Vec<(u64, u32)> {
    let n = changes.len() as u64;
    let segment = period / n;
    changes
        .iter()
        .enumerate()
        .map(|(i, &c)| (period - segment * (i as u64 + 1) + segment / 2, c))
        .collect()
}

fn pods(value: u32, period_seconds: u32) -> RatePolicy {
    RatePolicy {
        kind: RatePolicyKind::Pods,
        value,
        period_seconds,
    }
}

fn percent(value: u32, period_seconds: u32) -> RatePolicy {
    RatePolicy {
        kind: RatePolicyKind::Percent,
        value,
        period_seconds,
    }
}

/// Upstream's `generateScalingRules(pods, podsPeriod, percent, percentPeriod, window)`
/// (selectPolicy Max; a zero amount leaves that policy out).
fn generated(pods_n: u32, pods_p: u32, pct: u32, pct_p: u32, window: u32) -> ScalingRules {
    let mut policies = Vec::new();
    if pods_n != 0 {
        policies.push(pods(pods_n, pods_p));
    }
    if pct != 0 {
        policies.push(percent(pct, pct_p));
    }
    ScalingRules {
        stabilization_window_seconds: Some(window),
        select_policy: Some(SelectPolicy::Max),
        policies: Some(policies),
    }
}

fn behavior(up: Option<ScalingRules>, down: Option<ScalingRules>) -> Behavior {
    Behavior {
        tolerance: TOLERANCE,
        scale_up: up.unwrap_or_default(),
        scale_down: down.unwrap_or_default(),
        ..Behavior::default()
    }
}

/// A metric whose raw recommendation is exactly `n` replicas (upstream's
/// `prenormalizedDesiredReplicas`): a total of `n` × the target.
fn wants(n: u32) -> Vec<MetricInput> {
    vec![total("m", 10.0, f64::from(n) * 10.0)]
}

fn opt(values: &[f64]) -> Vec<Option<f64>> {
    values.iter().copied().map(Some).collect()
}

/// Upstream's `ScalingLimited` reason for our limit.
fn condition(d: &Decision) -> &'static str {
    match &d.limit {
        None => "DesiredWithinRange",
        Some(Limit::Max(_)) => "TooManyReplicas",
        Some(Limit::Min(_)) => "TooFewReplicas",
        Some(Limit::Rate {
            direction: Direction::Up,
            ..
        })
        | Some(Limit::Disabled(Direction::Up)) => "ScaleUpLimit",
        Some(Limit::Rate {
            direction: Direction::Down,
            ..
        })
        | Some(Limit::Disabled(Direction::Down)) => "ScaleDownLimit",
        Some(_) => "other",
    }
}

/// One replica-calculator case: (upstream test, current, metric, upstream's count).
type Calc = (&'static str, u32, MetricInput, u32);

fn proposal(current: u32, metric: &MetricInput) -> Option<u32> {
    let behavior = behavior(None, None);
    let input = DecisionInput {
        behavior: &behavior,
        replicas: &Replicas {
            min: 0,
            max: 10_000,
        },
        current,
        metrics: &[],
        history: &History::default(),
        now_ms: NOW,
    };
    replicas::evaluate(metric, &input).replicas
}

#[test]
fn replica_calculator_matches_upstream() {
    let n = None;
    // CPU: millicores per pod of a 1000m request; target = utilization × 1000m.
    let cpu = |target_pct: f64, values: &[Option<f64>]| partial("cpu", target_pct * 10.0, values);
    let qps = |target: f64, values: &[Option<f64>]| partial("qps", target, values);
    let cases: Vec<Calc> = vec![
        (
            "TestReplicaCalcScaleUp",
            3,
            cpu(30.0, &opt(&[300.0, 500.0, 700.0])),
            5,
        ),
        (
            "TestReplicaCalcScaleUpUnreadyLessScale",
            3,
            cpu(30.0, &[n, Some(500.0), Some(700.0)]),
            4,
        ),
        (
            "TestReplicaCalcScaleUpHotCpuLessScale",
            3,
            cpu(30.0, &[n, Some(500.0), Some(700.0)]),
            4,
        ),
        (
            "TestReplicaCalcScaleUpUnreadyNoScale",
            3,
            cpu(30.0, &[Some(400.0), n, n]),
            3,
        ),
        (
            "TestReplicaCalcScaleHotCpuNoScale",
            3,
            cpu(30.0, &[Some(400.0), n, n]),
            3,
        ),
        (
            "TestReplicaCalcScaleUpIgnoresFailedPods",
            2,
            cpu(30.0, &opt(&[500.0, 700.0])),
            4,
        ),
        (
            "TestReplicaCalcScaleUpIgnoresDeletionPods",
            2,
            cpu(30.0, &opt(&[500.0, 700.0])),
            4,
        ),
        (
            "TestReplicaCalcScaleUpCM",
            3,
            qps(15.0, &opt(&[20.0, 10.0, 30.0])),
            4,
        ),
        (
            "TestReplicaCalcScaleUpCMPerPodObject",
            3,
            total("qps", 5.0, 20.0),
            4,
        ),
        (
            "TestReplicaCalcScaleUpCMExternal (Pods metric)",
            1,
            qps(4.4, &[Some(8.6)]),
            2,
        ),
        (
            "TestReplicaCalcScaleUpCMExternalNoLabels",
            1,
            qps(4.4, &[Some(8.6)]),
            2,
        ),
        (
            "TestReplicaCalcScaleUpPerPodCMExternal",
            3,
            total("qps", 2.15, 8.6),
            4,
        ),
        (
            "TestReplicaCalcScaleDown",
            5,
            cpu(50.0, &opt(&[100.0, 300.0, 500.0, 250.0, 250.0])),
            3,
        ),
        (
            "TestReplicaCalcScaleDownCM",
            5,
            qps(20.0, &opt(&[12.0; 5])),
            3,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMObject",
            5,
            total("qps", 2.0, 6.0),
            3,
        ),
        (
            "TestReplicaCalcScaleDownPerPodCMExternal",
            5,
            total("qps", 2.867, 8.6),
            3,
        ),
        (
            "TestReplicaCalcScaleDownIgnoresFailedPods",
            5,
            cpu(50.0, &opt(&[100.0, 300.0, 500.0, 250.0, 250.0])),
            3,
        ),
        (
            "TestReplicaCalcScaleDownIgnoresDeletionPods",
            5,
            cpu(50.0, &opt(&[100.0, 300.0, 500.0, 250.0, 250.0])),
            3,
        ),
        (
            // Requests 0.9/1.0/1.1 (mean 1.0): Σ usage / Σ requests = 102 %.
            "TestReplicaCalcTolerance",
            3,
            cpu(100.0, &opt(&[1010.0, 1030.0, 1020.0])),
            3,
        ),
        (
            "TestReplicaCalcToleranceCM",
            3,
            qps(20.0, &opt(&[20.0, 21.0, 21.0])),
            3,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMObject",
            4,
            total("qps", 5.0, 20.166),
            4,
        ),
        (
            "TestReplicaCalcTolerancePerPodCMExternal",
            3,
            total("qps", 2.9, 8.6),
            3,
        ),
        (
            // Metrics of pods that are not replicas never reach the reading.
            "TestReplicaCalcSuperfluousMetrics",
            4,
            cpu(100.0, &opt(&[4000.0, 9500.0, 3000.0, 7000.0])),
            24,
        ),
        (
            "TestReplicaCalcMissingMetrics",
            4,
            cpu(100.0, &[Some(400.0), Some(95.0), n, n]),
            3,
        ),
        (
            // Fixed: ready replicas exactly on target hold; we scaled 5 → 3.
            "TestPlainMetricReplicaCalcMissingMetricsNoChangeEq",
            5,
            qps(20.0, &[Some(20.0), Some(19.0), Some(21.0), n, n]),
            5,
        ),
        (
            // Fixed: we scaled 2 → 1.
            "TestReplicaCalcMissingMetricsNoChangeEq",
            2,
            cpu(100.0, &[Some(1000.0), n]),
            2,
        ),
        (
            "TestReplicaCalcMissingMetricsNoChangeGt",
            2,
            cpu(100.0, &[Some(1900.0), n]),
            2,
        ),
        (
            "TestReplicaCalcMissingMetricsNoChangeLt",
            2,
            cpu(100.0, &[Some(600.0), n]),
            2,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyChange",
            3,
            cpu(50.0, &[n, Some(450.0), n]),
            3,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuNoChange",
            3,
            cpu(50.0, &[n, Some(450.0), n]),
            3,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleUp",
            3,
            cpu(50.0, &[n, Some(2000.0), n]),
            4,
        ),
        (
            "TestReplicaCalcMissingMetricsHotCpuScaleUp",
            3,
            cpu(50.0, &[n, Some(2000.0), n]),
            4,
        ),
        (
            "TestReplicaCalcMissingMetricsUnreadyScaleDown",
            4,
            cpu(50.0, &[n, Some(100.0), Some(100.0), n]),
            3,
        ),
        (
            // Surge: three pods for two replicas; the recount would grow, so it holds.
            "TestReplicaCalcDuringRollingUpdateWithMaxSurge",
            2,
            cpu(50.0, &[Some(100.0), Some(100.0), n]),
            2,
        ),
        (
            "TestReplicaCalcDuringRollingUpdateWithMaxSurgeCM",
            2,
            qps(17.0, &[Some(10.0), Some(10.0), n]),
            2,
        ),
        (
            // 150m of ~300m requested each, target int(56.56) % → just outside tolerance.
            "TestReplicaCalcComputedToleranceAlgImplementation (scale)",
            10,
            partial("cpu", 0.56 * 300.0, &opt(&[150.0; 10])),
            9,
        ),
        (
            "TestReplicaCalcComputedToleranceAlgImplementation (hold)",
            10,
            partial("cpu", 0.55 * 300.0, &opt(&[150.0; 10])),
            10,
        ),
    ];
    for (name, current, metric, want) in &cases {
        assert_eq!(
            proposal(*current, metric),
            Some(*want),
            "{name}: {current} replicas, {metric:?}"
        );
    }
    assert!(cases.len() >= 35);
}

/// One controller case: (upstream test, min, max, current, metrics, history, upstream's count).
type Controller = (&'static str, u32, u32, u32, Vec<MetricInput>, History, u32);

#[test]
fn controller_cases_match_upstream() {
    let n = None;
    let cpu =
        |target_pct: f64, values: &[Option<f64>]| vec![partial("cpu", target_pct * 10.0, values)];
    let failed = || unavailable("qps", 1.0, "something went wrong");
    let down5 = || opt(&[100.0, 300.0, 500.0, 250.0, 250.0]);
    let cases: Vec<Controller> = vec![
        (
            "TestScaleUp",
            2,
            6,
            3,
            cpu(30.0, &opt(&[300.0, 500.0, 700.0])),
            History::default(),
            5,
        ),
        (
            "TestScaleUpDeployment",
            2,
            6,
            3,
            cpu(30.0, &opt(&[300.0, 500.0, 700.0])),
            History::default(),
            5,
        ),
        (
            "TestScaleUpReplicaSet",
            2,
            6,
            3,
            cpu(30.0, &opt(&[300.0, 500.0, 700.0])),
            History::default(),
            5,
        ),
        (
            "TestScaleUpUnreadyLessScale",
            2,
            6,
            3,
            cpu(30.0, &[n, Some(500.0), Some(700.0)]),
            History::default(),
            4,
        ),
        (
            "TestScaleUpHotCpuLessScale",
            2,
            6,
            3,
            cpu(30.0, &[n, Some(500.0), Some(700.0)]),
            History::default(),
            4,
        ),
        (
            "TestScaleUpHotCpuNoScale",
            2,
            6,
            3,
            cpu(30.0, &[Some(400.0), n, n]),
            History::default(),
            3,
        ),
        (
            "TestScaleUpIgnoresDeletionPods",
            2,
            6,
            2,
            cpu(30.0, &opt(&[500.0, 700.0])),
            History::default(),
            4,
        ),
        (
            "TestScaleUpCM",
            2,
            6,
            3,
            vec![per_replica("qps", 15.0, &[20.0, 10.0, 30.0])],
            History::default(),
            4,
        ),
        (
            // Every pod ready (hot CPU plays no part for a Pods metric): 7, capped at 6.
            "TestScaleUpHotCpuNoScaleWouldScaleDown",
            2,
            6,
            3,
            vec![per_replica("qps", 15.0, &[50.0, 15.0, 30.0])],
            History::default(),
            6,
        ),
        (
            "TestScaleUpUnreadyNoScale",
            2,
            6,
            3,
            cpu(30.0, &[Some(400.0), n, n]),
            History::default(),
            3,
        ),
        (
            "TestScaleUpIgnoresFailedPods",
            2,
            6,
            2,
            cpu(30.0, &opt(&[500.0, 700.0])),
            History::default(),
            4,
        ),
        (
            "TestScaleUpPerPodCMObject",
            2,
            6,
            3,
            vec![total("qps", 10.0, 40.0)],
            History::default(),
            4,
        ),
        (
            "TestScaleUpPerPodCMExternal",
            2,
            6,
            3,
            vec![total("qps", 2.222, 8.6)],
            History::default(),
            4,
        ),
        ("TestScaleDown", 2, 6, 5, cpu(50.0, &down5()), warm(), 3),
        (
            "TestScaleDownWithScalingRules",
            2,
            6,
            5,
            cpu(50.0, &down5()),
            warm(),
            3,
        ),
        (
            // No history yet: the current size counts as a recommendation.
            "TestScaleDownStabilizeInitialSize",
            2,
            6,
            5,
            cpu(50.0, &down5()),
            History::default(),
            5,
        ),
        (
            "TestScaleDownCM",
            2,
            6,
            5,
            vec![per_replica("qps", 20.0, &[12.0; 5])],
            warm(),
            3,
        ),
        (
            "TestScaleDownPerPodCMObject",
            2,
            6,
            5,
            vec![total("qps", 20.0, 60.0)],
            warm(),
            3,
        ),
        (
            "TestScaleDownPerPodCMExternal",
            2,
            6,
            5,
            vec![total("qps", 3.0, 8.6)],
            warm(),
            3,
        ),
        (
            "TestScaleDownIgnoresFailedPods",
            2,
            6,
            5,
            cpu(50.0, &down5()),
            warm(),
            3,
        ),
        (
            "TestScaleDownIgnoresDeletionPods",
            2,
            6,
            5,
            cpu(50.0, &down5()),
            warm(),
            3,
        ),
        (
            "TestScaleUpOneMetricInvalid",
            2,
            6,
            3,
            vec![
                partial("cpu", 300.0, &opt(&[300.0, 400.0, 500.0])),
                failed(),
            ],
            History::default(),
            4,
        ),
        (
            "TestScaleUpOneMetricEmpty",
            2,
            6,
            3,
            vec![
                partial("cpu", 300.0, &opt(&[300.0, 400.0, 500.0])),
                failed(),
            ],
            History::default(),
            4,
        ),
        (
            "TestScaleUpFromZeroOneMetricInvalid",
            0,
            6,
            0,
            vec![
                partial("cpu", 300.0, &opt(&[300.0, 400.0, 500.0])),
                failed(),
            ],
            warm(),
            4,
        ),
        (
            "TestScaleUpBothMetricsEmpty",
            2,
            6,
            3,
            vec![failed()],
            History::default(),
            3,
        ),
        (
            "TestNoScaleDownOneMetricInvalid",
            2,
            6,
            5,
            vec![partial("cpu", 500.0, &down5()), failed()],
            warm(),
            5,
        ),
        (
            "TestNoScaleDownOneMetricEmpty",
            2,
            6,
            5,
            vec![partial("cpu", 500.0, &down5()), failed()],
            warm(),
            5,
        ),
        (
            "TestTolerance",
            1,
            5,
            3,
            cpu(100.0, &opt(&[1010.0, 1030.0, 1020.0])),
            History::default(),
            3,
        ),
        (
            "TestToleranceCM",
            1,
            5,
            3,
            vec![per_replica("qps", 20.0, &[20.0, 20.001, 21.0])],
            History::default(),
            3,
        ),
        (
            "TestTolerancePerPodCMObject",
            2,
            6,
            4,
            vec![total("qps", 2.2, 8.6)],
            History::default(),
            4,
        ),
        (
            "TestTolerancePerPodCMExternal",
            2,
            6,
            4,
            vec![total("qps", 2.2, 8.6)],
            History::default(),
            4,
        ),
        (
            // Requests 0.9/1.0/1.1, target 90 %.
            "TestMinReplicas",
            2,
            5,
            3,
            cpu(90.0, &opt(&[10.0, 95.0, 10.0])),
            warm(),
            2,
        ),
        (
            "TestZeroMinReplicasDesiredZero",
            0,
            5,
            3,
            cpu(90.0, &opt(&[0.0; 3])),
            warm(),
            0,
        ),
        (
            "TestMinReplicasDesiredZero",
            2,
            5,
            3,
            cpu(90.0, &opt(&[0.0; 3])),
            warm(),
            2,
        ),
        (
            "TestTooFewReplicas",
            3,
            5,
            2,
            vec![failed()],
            History::default(),
            3,
        ),
        (
            "TestTooManyReplicas",
            3,
            5,
            10,
            vec![failed()],
            History::default(),
            5,
        ),
        (
            "TestMaxReplicas",
            2,
            5,
            3,
            cpu(90.0, &opt(&[8000.0, 9500.0, 1000.0])),
            History::default(),
            5,
        ),
        (
            "TestSuperfluousMetrics",
            2,
            6,
            4,
            cpu(100.0, &opt(&[4000.0, 9500.0, 3000.0, 7000.0])),
            History::default(),
            6,
        ),
        (
            "TestMissingMetrics",
            2,
            6,
            4,
            cpu(100.0, &[Some(400.0), Some(95.0), n, n]),
            warm(),
            3,
        ),
        (
            "TestEmptyMetrics",
            2,
            6,
            4,
            cpu(100.0, &[n, n, n, n]),
            History::default(),
            4,
        ),
        (
            // One pod of 200m requested using 200m, target 50 %.
            "TestEventCreated",
            1,
            5,
            1,
            vec![per_replica("cpu", 100.0, &[200.0])],
            History::default(),
            2,
        ),
        (
            "TestEventNotCreated",
            1,
            5,
            2,
            vec![per_replica("cpu", 200.0, &[200.0, 200.0])],
            History::default(),
            2,
        ),
        (
            // Only one of four replicas is listed: upstream counts the listed one alone.
            "TestMissingReports",
            1,
            5,
            4,
            vec![per_replica("cpu", 100.0, &[200.0])],
            warm(),
            2,
        ),
        (
            "TestMoreReplicasThanSpecNoScale",
            1,
            8,
            4,
            cpu(50.0, &opt(&[500.0; 5])),
            History::default(),
            4,
        ),
        (
            "TestScaleUpRCImmediately",
            2,
            6,
            1,
            cpu(50.0, &opt(&[0.0])),
            History::default(),
            2,
        ),
        (
            "TestScaleDownRCImmediately",
            2,
            5,
            6,
            cpu(50.0, &opt(&[8000.0, 9500.0, 1000.0])),
            History::default(),
            5,
        ),
        (
            "TestComputedToleranceAlgImplementation (scale)",
            0,
            1000,
            10,
            vec![per_replica("cpu", 0.56 * 300.0, &[150.0; 10])],
            warm(),
            9,
        ),
        (
            "TestComputedToleranceAlgImplementation (hold)",
            0,
            1000,
            10,
            vec![per_replica("cpu", 0.55 * 300.0, &[150.0; 10])],
            warm(),
            10,
        ),
        (
            "TestConditionFailedGetMetrics",
            1,
            100,
            3,
            vec![failed()],
            History::default(),
            3,
        ),
    ];
    let legacy = behavior(None, None);
    let scale_down_rules = behavior(Some(generated(0, 0, 100, 15, 30)), None);
    for (name, min, max, current, metrics, history, want) in &cases {
        let b = if *name == "TestScaleDownWithScalingRules" {
            &scale_down_rules
        } else {
            &legacy
        };
        let d = run(b, *min, *max, *current, metrics, history, NOW);
        assert_eq!(d.desired, *want, "{name}: {d}");
    }
    // With a behavior: 700 % per 60 s from 3 replicas wanting 60.
    for (name, max, want) in [
        ("TestUpscaleCap", 100, 24),
        ("TestUpscaleCapGreaterThanMaxReplicas", 20, 20),
    ] {
        let b = behavior(Some(generated(0, 0, 700, 60, 0)), None);
        let metrics = [per_replica("cpu", 10.0, &[100.0, 200.0, 300.0])];
        let d = run(&b, 1, max, 3, &metrics, &History::default(), NOW);
        assert_eq!(d.desired, want, "{name}: {d}");
    }
    assert!(cases.len() >= 40);
}

/// `TestScalingWithRules`: (name, up rules, down rules, up events, down events, min, max,
/// current, prenormalized desired, upstream's count, upstream's condition).
type Rule = (
    &'static str,
    Option<ScalingRules>,
    Option<ScalingRules>,
    Vec<(u64, u32)>,
    Vec<(u64, u32)>,
    u32,
    u32,
    u32,
    u32,
    u32,
    &'static str,
);

#[test]
fn rate_policies_match_upstream_scaling_with_rules() {
    let g = |a, b, c, d, e| Some(generated(a, b, c, d, e));
    let none = Vec::new;
    let cases: Vec<Rule> = vec![
        (
            "prenormalized desired replicas within range",
            None,
            None,
            none(),
            none(),
            3,
            8,
            5,
            7,
            7,
            "DesiredWithinRange",
        ),
        (
            "prenormalized desired replicas < minReplicas",
            None,
            None,
            none(),
            none(),
            2,
            8,
            3,
            1,
            2,
            "TooFewReplicas",
        ),
        (
            "prenormalized desired replicas within range when minReplicas is 0",
            None,
            None,
            none(),
            none(),
            0,
            10,
            1,
            0,
            0,
            "DesiredWithinRange",
        ),
        (
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            None,
            None,
            none(),
            none(),
            1,
            10,
            20,
            1000,
            10,
            "TooManyReplicas",
        ),
        (
            "desired replica count is more than the maximum replica count",
            None,
            None,
            none(),
            none(),
            100,
            150,
            100,
            1000,
            150,
            "TooManyReplicas",
        ),
        (
            "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies",
            g(0, 0, 1, 60, 0),
            None,
            none(),
            none(),
            1,
            2000,
            3,
            1000,
            4,
            "ScaleUpLimit",
        ),
        // Skipped upstream (testThis), but its expectation holds.
        (
            "scaleDownLimit is the limit because scaleDownLimit > minReplicas with user defined policies",
            None,
            g(20, 60, 0, 0, 0),
            none(),
            none(),
            3,
            2000,
            1000,
            3,
            980,
            "ScaleDownLimit",
        ),
        (
            "scaleUp with default behavior",
            None,
            None,
            none(),
            none(),
            1,
            1000,
            10,
            50,
            20,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with pods policy larger than percent policy",
            g(100, 60, 100, 60, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            500,
            110,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy larger than pods policy",
            g(2, 60, 100, 60, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            500,
            20,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large pod policy",
            g(100, 60, 0, 0, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            50,
            50,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large percent policy",
            g(10000, 60, 0, 0, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            50,
            50,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with pod policy limitation",
            g(30, 60, 0, 0, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            50,
            40,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy limitation",
            g(0, 0, 200, 60, 0),
            None,
            none(),
            none(),
            1,
            1000,
            10,
            50,
            30,
            "ScaleUpLimit",
        ),
        (
            "scaleDown with percent policy larger than pod policy",
            None,
            g(20, 60, 1, 60, 300),
            none(),
            none(),
            1,
            1000,
            100,
            2,
            80,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with pod policy larger than percent policy",
            None,
            g(2, 60, 1, 60, 300),
            none(),
            none(),
            1,
            1000,
            100,
            2,
            98,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with spec MinReplicas=nil limitation with large pod policy",
            None,
            g(100, 60, 0, 0, 300),
            none(),
            none(),
            1,
            1000,
            10,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large pod policy",
            None,
            g(100, 60, 0, 0, 300),
            none(),
            none(),
            1,
            1000,
            10,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large percent policy",
            None,
            g(0, 0, 100, 60, 300),
            none(),
            none(),
            5,
            1000,
            10,
            2,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with pod policy limitation",
            None,
            g(5, 60, 0, 0, 300),
            none(),
            none(),
            1,
            1000,
            10,
            2,
            5,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with percent policy limitation",
            None,
            g(0, 0, 50, 60, 300),
            none(),
            none(),
            1,
            1000,
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large pod policy and events",
            g(300, 60, 0, 0, 0),
            None,
            spread(&[1, 5, 9], 120),
            none(),
            1,
            200,
            100,
            500,
            200,
            "TooManyReplicas",
        ),
        (
            "scaleUp with spec MaxReplicas limitation with large percent policy and events",
            g(0, 0, 10000, 60, 0),
            None,
            spread(&[1, 5, 9], 120),
            none(),
            1,
            200,
            100,
            500,
            200,
            "TooManyReplicas",
        ),
        (
            "scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
            g(5, 120, 0, 0, 0),
            None,
            spread(&[1, 5, 9], 120),
            none(),
            1,
            1000,
            100,
            500,
            100,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with pod policy and previous scale up events",
            g(150, 120, 0, 0, 0),
            None,
            spread(&[1, 5, 9], 120),
            none(),
            1,
            1000,
            100,
            500,
            235,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy and previous scale up events",
            g(0, 0, 200, 120, 0),
            None,
            spread(&[1, 5, 9], 120),
            none(),
            1,
            1000,
            100,
            500,
            255,
            "ScaleUpLimit",
        ),
        (
            "scaleUp with percent policy and previous scale up and down events",
            g(0, 0, 300, 300, 0),
            None,
            spread(&[4], 120),
            spread(&[2], 120),
            1,
            1000,
            6,
            24,
            16,
            "ScaleUpLimit",
        ),
        (
            "scaleDown with default policy and previous events",
            None,
            None,
            none(),
            spread(&[1, 5, 9], 120),
            1,
            1000,
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events",
            None,
            g(115, 120, 0, 0, 300),
            none(),
            spread(&[1, 5, 9], 120),
            1,
            1000,
            100,
            0,
            1,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large pod policy and previous events",
            None,
            g(130, 120, 0, 0, 300),
            none(),
            spread(&[1, 5, 9], 120),
            5,
            1000,
            100,
            0,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with spec MinReplicas limitation with large percent policy and previous events",
            None,
            g(0, 0, 100, 120, 300),
            none(),
            spread(&[1, 5, 9], 120),
            5,
            1000,
            100,
            2,
            5,
            "TooFewReplicas",
        ),
        (
            "scaleDown with pod policy limitation and previous events",
            None,
            g(5, 120, 0, 0, 300),
            none(),
            spread(&[1, 5, 9], 120),
            1,
            1000,
            100,
            2,
            100,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with percent policy limitation and previous events",
            None,
            g(0, 0, 50, 120, 300),
            none(),
            spread(&[2, 4, 6], 120),
            1,
            1000,
            100,
            0,
            56,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with percent policy and previous scale up and down events",
            None,
            g(0, 0, 50, 180, 0),
            spread(&[2], 120),
            spread(&[4], 120),
            1,
            1000,
            10,
            1,
            6,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with previous events preventing further scale down",
            None,
            g(0, 0, 10, 120, 300),
            none(),
            spread(&[10, 10, 10], 120),
            1,
            1000,
            100,
            0,
            100,
            "ScaleDownLimit",
        ),
        (
            "scaleDown with with previous events still allowing more scale down",
            None,
            g(0, 0, 1000, 120, 300),
            none(),
            spread(&[10, 10, 10], 120),
            1,
            1000,
            10,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check 'outdated' flag for events for one behavior for up",
            g(1000, 60, 0, 0, 0),
            None,
            spread(&[8, 12, 9, 11], 120),
            none(),
            1,
            1000,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check that events were not marked 'outdated' for two different policies in the behavior for up",
            g(1000, 120, 100, 60, 0),
            None,
            spread(&[8, 12, 9, 11], 120),
            none(),
            1,
            1000,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check that events were marked 'outdated' for two different policies in the behavior for up",
            g(1000, 30, 100, 60, 0),
            None,
            spread(&[8, 12, 9, 11], 120),
            none(),
            1,
            1000,
            100,
            200,
            200,
            "DesiredWithinRange",
        ),
        (
            "check 'outdated' flag for events for one behavior for down",
            None,
            g(1000, 60, 0, 0, 300),
            none(),
            spread(&[8, 12, 9, 11], 120),
            1,
            1000,
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check that events were not marked 'outdated' for two different policies in the behavior for down",
            None,
            g(1000, 120, 100, 60, 300),
            none(),
            spread(&[8, 12, 9, 11], 120),
            1,
            1000,
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
        (
            "check that events were marked 'outdated' for two different policies in the behavior for down",
            None,
            g(1000, 30, 100, 60, 300),
            none(),
            spread(&[8, 12, 9, 11], 120),
            1,
            1000,
            100,
            5,
            5,
            "DesiredWithinRange",
        ),
    ];
    for (name, up, down, up_events, down_events, min, max, current, raw, want, cond) in &cases {
        let b = behavior(up.clone(), down.clone());
        let h = events(up_events, down_events);
        let d = run(&b, *min, *max, *current, &wants(*raw), &h, NOW);
        assert_eq!(d.recommendation.unwrap_or(*raw), *raw, "{name}: raw {d}");
        assert_eq!(d.desired, *want, "TestScalingWithRules/{name}: {d}");
        assert_eq!(condition(&d), *cond, "TestScalingWithRules/{name}: {d}");
    }
    assert_eq!(cases.len(), 42);
}

#[test]
fn rate_limit_helpers_match_upstream() {
    // TestConvertDesiredReplicasWithRules (HPA without behavior; our defaults), minus the
    // last case, which is in `documented_differences_from_upstream`.
    for (annotation, current, raw, min, max, want, cond) in [
        (
            "prenormalized desired replicas within range",
            5,
            7,
            3,
            8,
            7,
            "DesiredWithinRange",
        ),
        (
            "prenormalized desired replicas < minReplicas",
            3,
            1,
            2,
            8,
            2,
            "TooFewReplicas",
        ),
        (
            "prenormalized desired zeroed replicas within range",
            1,
            0,
            0,
            10,
            0,
            "DesiredWithinRange",
        ),
        (
            "maxReplicas is the limit because maxReplicas < scaleUpLimit",
            20,
            1000,
            1,
            10,
            10,
            "TooManyReplicas",
        ),
    ] {
        let d = run(
            &behavior(None, None),
            min,
            max,
            current,
            &wants(raw),
            &warm(),
            NOW,
        );
        assert_eq!(
            d.desired, want,
            "TestConvertDesiredReplicasWithRules/{annotation}: {d}"
        );
        assert_eq!(
            condition(&d),
            cond,
            "TestConvertDesiredReplicasWithRules/{annotation}"
        );
    }
    // TestCalculateScaleUpLimitWithScalingRules / TestCalculateScaleDownLimitWithBehaviors:
    // selectPolicy Min of 2 Pods and 50 % per 60 s.
    let min_rules = ScalingRules {
        stabilization_window_seconds: Some(300),
        select_policy: Some(SelectPolicy::Min),
        policies: Some(vec![pods(2, 60), percent(50, 60)]),
    };
    let up = behavior(Some(min_rules.clone()), None);
    let d = run(&up, 1, 100, 1, &wants(10), &warm(), NOW);
    assert_eq!(
        d.desired, 2,
        "TestCalculateScaleUpLimitWithScalingRules: {d}"
    );
    let mut down_rules = min_rules;
    down_rules.stabilization_window_seconds = Some(0);
    let down = behavior(None, Some(down_rules));
    let d = run(&down, 1, 100, 5, &wants(1), &warm(), NOW);
    assert_eq!(
        d.desired, 3,
        "TestCalculateScaleDownLimitWithBehaviors: {d}"
    );
}

#[test]
fn scale_events_count_only_inside_the_period_as_upstream() {
    // TestStoreScaleEvents: getReplicasChangePerPeriod(60, events), (seconds ago, change).
    for (name, list, want) in [
        ("empty entries with default behavior", vec![], 0),
        (
            "one outdated entry to be replaced with behavior",
            vec![(61, 7)],
            0,
        ),
        (
            "one actual entry to be not touched with behavior",
            vec![(58, 7)],
            7,
        ),
        (
            "two entries, one of them to be replaced",
            vec![(61, 7), (59, 6)],
            6,
        ),
        (
            "replace one entry, use policies with different periods",
            vec![(29, 8), (59, 6), (61, 7), (61, 9)],
            14,
        ),
        ("two entries, both actual", vec![(58, 7), (59, 6)], 13),
    ] {
        let up = events(&list, &[]);
        assert_eq!(up.changes_within(NOW, 60), (want, 0), "up: {name}");
        let down = events(&[], &list);
        assert_eq!(down.changes_within(NOW, 60), (0, want), "down: {name}");
    }
}

#[test]
fn stabilization_matches_upstream_normalize_desired_replicas() {
    // TestNormalizeDesiredReplicasWithBehavior: (name, recommendations (seconds ago,
    // replicas), current, prenormalized, upstream's count, up window, down window).
    // Rates wide enough never to limit, so only the windows act.
    let cases: Vec<(&str, History, u32, u32, u32, u32, u32)> = vec![
        (
            "empty recommendations for scaling down",
            History::default(),
            100,
            5,
            5,
            0,
            0,
        ),
        (
            "simple scale down stabilization",
            recs(&[(120, 4), (60, 5)]),
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "simple scale up stabilization",
            recs(&[(120, 4), (60, 5)]),
            1,
            7,
            4,
            300,
            0,
        ),
        (
            "no scale down stabilization",
            recs(&[(120, 1), (60, 2)]),
            100,
            3,
            3,
            300,
            0,
        ),
        (
            "no scale up stabilization",
            recs(&[(120, 4), (60, 5)]),
            1,
            3,
            3,
            0,
            300,
        ),
        (
            "no scale down stabilization, reuse recommendation element",
            recs(&[(600, 10), (540, 9)]),
            100,
            3,
            3,
            0,
            0,
        ),
        (
            "no scale up stabilization, reuse recommendation element",
            recs(&[(600, 10), (540, 9)]),
            1,
            100,
            100,
            0,
            0,
        ),
        (
            "scale down stabilization, reuse one of obsolete recommendation element",
            recs(&[(600, 10), (60, 4), (120, 5), (540, 9)]),
            100,
            3,
            5,
            0,
            180,
        ),
        (
            "scale up stabilization, reuse one of obsolete recommendation element",
            recs(&[(6000, 10), (60, 6), (120, 5), (180, 9)]),
            1,
            100,
            5,
            300,
            0,
        ),
        (
            "scale up and down stabilization, do not scale up when prenormalized rec goes down",
            recs(&[(6000, 2), (180, 3)]),
            2,
            1,
            2,
            300,
            300,
        ),
        (
            "scale up and down stabilization, do not scale down when prenormalized rec goes up",
            recs(&[(6000, 2), (180, 1)]),
            2,
            3,
            2,
            300,
            300,
        ),
    ];
    for (name, history, current, raw, want, up_window, down_window) in &cases {
        let rules = |window: u32, policy: RatePolicy| ScalingRules {
            stabilization_window_seconds: Some(window),
            select_policy: None,
            policies: Some(vec![policy]),
        };
        let b = behavior(
            Some(rules(*up_window, pods(1000, 15))),
            Some(rules(*down_window, percent(100, 15))),
        );
        let d = run(&b, 0, 1000, *current, &wants(*raw), history, NOW);
        assert_eq!(
            d.desired, *want,
            "TestNormalizeDesiredReplicasWithBehavior/{name}: {d}"
        );
    }
    // TestNormalizeDesiredReplicas: HPA without behavior, 5-minute scale-down window.
    for (name, history, raw, want) in [
        ("empty log", warm(), 5, 5),
        ("stabilize", recs(&[(120, 4), (60, 5)]), 3, 5),
        ("no stabilize", recs(&[(120, 1), (60, 2)]), 3, 3),
        (
            "no stabilize - old recommendations",
            recs(&[(600, 10), (540, 9)]),
            3,
            3,
        ),
        (
            "stabilize - old recommendations",
            recs(&[(600, 10), (60, 4), (120, 5), (540, 9)]),
            3,
            5,
        ),
    ] {
        let d = run(
            &behavior(None, None),
            1,
            100,
            10,
            &wants(raw),
            &history,
            NOW,
        );
        assert_eq!(d.desired, want, "TestNormalizeDesiredReplicas/{name}: {d}");
    }
}

/// A deliberate difference: (upstream test, what upstream returns, what we return, why).
struct Difference {
    upstream: &'static str,
    theirs: u32,
    ours: u32,
    decision: Decision,
    why: &'static str,
}

#[test]
fn documented_differences_from_upstream() {
    let n = None;
    const UNREADY: &str = "unready replicas are not scraped, so they are missing data: \
                           counted on target when shrinking, where HPA leaves them out";
    const UNREADY_DATA: &str = "unready replicas are not scraped, so a running-but-unready \
                                pod's value, which HPA uses for non-CPU metrics, is missing";
    let cpu5 = |values: &[Option<f64>]| vec![partial("cpu", 500.0, values)];
    let legacy = behavior(None, None);
    let calc = |upstream, theirs, ours, current, metric: MetricInput, why| Difference {
        upstream,
        theirs,
        ours,
        decision: run(&legacy, 0, 1000, current, &[metric], &warm(), NOW),
        why,
    };
    let cases = vec![
        calc(
            "TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale",
            6,
            4,
            3,
            partial("qps", 15.0, &[Some(50.0), Some(10.0), n]),
            UNREADY_DATA,
        ),
        calc(
            "TestReplicaCalcScaleUpCMUnreadyHotCpuScaleWouldScaleDown",
            7,
            3,
            3,
            partial("qps", 15.0, &[n, Some(15.0), n]),
            UNREADY_DATA,
        ),
        calc(
            "TestReplicaCalcScaleDownExcludeUnreadyPods",
            2,
            4,
            5,
            partial("cpu", 500.0, &[Some(100.0), Some(300.0), Some(500.0), n, n]),
            UNREADY,
        ),
        calc(
            "TestReplicaCalcScaleDownIgnoreHotCpuPods",
            2,
            4,
            5,
            partial("cpu", 500.0, &[Some(100.0), Some(300.0), Some(500.0), n, n]),
            UNREADY,
        ),
        calc(
            "TestReplicaCalcScaleDownExcludeUnscheduledPods",
            1,
            5,
            5,
            partial("cpu", 500.0, &[Some(100.0), n, n, n, n]),
            UNREADY,
        ),
        Difference {
            upstream: "TestScaleUpCMUnreadyAndHotCpuNoLessScale",
            theirs: 6,
            ours: 4,
            decision: run(
                &legacy,
                2,
                6,
                3,
                &[partial("qps", 15.0, &[Some(50.0), Some(10.0), n])],
                &History::default(),
                NOW,
            ),
            why: UNREADY_DATA,
        },
        Difference {
            upstream: "TestScaleUpCMUnreadyandCpuHot",
            theirs: 6,
            ours: 3,
            decision: run(
                &legacy,
                2,
                6,
                3,
                &[partial("qps", 15.0, &[n, Some(15.0), n])],
                &History::default(),
                NOW,
            ),
            why: UNREADY_DATA,
        },
        Difference {
            upstream: "TestScaleDownIncludeUnreadyPods",
            theirs: 2,
            ours: 4,
            decision: run(
                &legacy,
                2,
                6,
                5,
                &cpu5(&[Some(100.0), Some(300.0), Some(500.0), n, n]),
                &warm(),
                NOW,
            ),
            why: UNREADY,
        },
        Difference {
            upstream: "TestScaleDownIgnoreHotCpuPods",
            theirs: 2,
            ours: 4,
            decision: run(
                &legacy,
                2,
                6,
                5,
                &cpu5(&[Some(100.0), Some(300.0), Some(500.0), n, n]),
                &warm(),
                NOW,
            ),
            why: UNREADY,
        },
        Difference {
            upstream: "TestZeroReplicas",
            theirs: 0,
            ours: 3,
            decision: run(&legacy, 3, 5, 0, &[], &History::default(), NOW),
            why: "zero replicas do not switch autoscaling off: the operator owns the \
                  replicas and always runs at least replicas.min",
        },
        Difference {
            upstream: "TestConvertDesiredReplicasWithRules (scaleUpLimit < maxReplicas)",
            theirs: 6,
            ours: 7,
            decision: run(&legacy, 1, 2000, 3, &wants(1000), &warm(), NOW),
            why: "an HPA without behavior uses the legacy limit max(2 × current, 4); \
                  a policy without behavior gets HPA v2's behavior defaults \
                  (max of 4 Pods and 100 % per 15 s)",
        },
        Difference {
            upstream: "calculateScaleUpLimitWithScalingRules (Percent rounding)",
            theirs: 56,
            ours: 55,
            decision: run(
                &behavior(Some(generated(0, 0, 10, 60, 0)), None),
                1,
                1000,
                50,
                &wants(100),
                &warm(),
                NOW,
            ),
            why: "upstream rounds 50 × 1.1 = 55.000000000000007 up in floating point; \
                  we compute ⌈50 × 110 / 100⌉ exactly",
        },
    ];
    for c in &cases {
        assert_ne!(c.theirs, c.ours, "{}: not a difference", c.upstream);
        assert_eq!(
            c.decision.desired, c.ours,
            "{}: upstream {}, we {} ({}): {}",
            c.upstream, c.theirs, c.ours, c.why, c.decision
        );
    }
}
