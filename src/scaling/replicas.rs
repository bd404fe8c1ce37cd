//! One metric → the replica count it asks for (HPA's replica calculator).
//!
//! Per-replica readings follow HPA's rules for pods without data: when the ready
//! replicas ask to shrink, a replica without data counts as exactly on target; when they
//! ask to grow, it counts as idle; when they sit exactly on target, nothing is filled in
//! and the count holds. If the conservative recount lands inside the tolerance band or
//! flips the direction, the count is held. So missing data can slow a change down but
//! never cause a scale-down.

use super::{DecisionInput, Limit, MetricInput, MetricReading, MetricStatus};

/// Slack for float noise: a ratio of exactly `1 + tolerance` (e.g. 11 / 10 with tolerance
/// 0.1, which is 0.10000000000000009 away from 1 in binary) is inside the band.
const EPSILON: f64 = 1e-9;

/// What one metric asks for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Proposal {
    /// Status for reports.
    pub status: MetricStatus,
    /// Replica count asked for; `None` when the metric is unavailable.
    pub replicas: Option<u32>,
    /// Why the proposal equals the current count although the ratio is not 1.
    pub hold: Option<Limit>,
}

/// Computes the proposal of `metric` for `input.current` replicas.
pub(super) fn evaluate(metric: &MetricInput, input: &DecisionInput) -> Proposal {
    let target = metric.target_per_replica;
    let mut status = MetricStatus {
        name: metric.name.clone(),
        per_replica: None,
        target,
        proposal: None,
        missing: 0,
        error: None,
    };
    let fail = |mut status: MetricStatus, why: String| {
        status.error = Some(why);
        Proposal {
            status,
            replicas: None,
            hold: None,
        }
    };
    if !(target.is_finite() && target > 0.0) {
        return fail(status, format!("target {target} is not a positive number"));
    }
    let tolerance = input.behavior.tolerance;
    let current = input.current;
    let (replicas, hold) = match &metric.reading {
        MetricReading::Unavailable(why) => return fail(status, why.clone()),
        MetricReading::Total(total) => {
            if !(total.is_finite() && *total >= 0.0) {
                return fail(status, format!("value {total} is not a usable total"));
            }
            if current > 0 {
                status.per_replica = Some(total / f64::from(current));
            }
            let ratio = total / (target * f64::from(current));
            if current > 0 && within(ratio, tolerance) {
                (current, held_by_tolerance(ratio, tolerance))
            } else {
                (ceil_count(total / target), None)
            }
        }
        MetricReading::PerReplica(values) => {
            // A NaN, infinite or negative rate is garbage: treat it as missing.
            let ready: Vec<f64> = values
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .collect();
            let missing = values.len() - ready.len();
            status.missing = u32::try_from(missing).unwrap_or(u32::MAX);
            if ready.is_empty() {
                return fail(status, "no ready replica reported data".to_owned());
            }
            let sum: f64 = ready.iter().sum();
            let average = sum / ready.len() as f64;
            status.per_replica = Some(average);
            let ratio = average / target;
            if missing == 0 || (1.0 - ratio).abs() <= EPSILON {
                // Ready replicas exactly on target say nothing about the missing ones:
                // HPA fills them in only when the ready ones ask for a change, so this
                // holds (filling them as idle would scale down on missing data alone).
                if within(ratio, tolerance) {
                    (current, held_by_tolerance(ratio, tolerance))
                } else {
                    (ceil_count(ratio * ready.len() as f64), None)
                }
            } else {
                // Recount conservatively: missing replicas on target when shrinking,
                // idle when growing.
                let fill = if ratio < 1.0 { target } else { 0.0 };
                let n = values.len() as f64;
                let new_ratio = (sum + fill * missing as f64) / (target * n);
                let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
                if within(new_ratio, tolerance) || flipped {
                    (current, Some(Limit::MissingData))
                } else {
                    let proposed = ceil_count(new_ratio * n);
                    if (new_ratio < 1.0 && proposed > current)
                        || (new_ratio > 1.0 && proposed < current)
                    {
                        (current, Some(Limit::MissingData))
                    } else {
                        (proposed, None)
                    }
                }
            }
        }
    };
    status.proposal = Some(replicas);
    Proposal {
        status,
        replicas: Some(replicas),
        hold,
    }
}

/// Whether `ratio` is inside the band `1 ± tolerance`.
fn within(ratio: f64, tolerance: f64) -> bool {
    (1.0 - ratio).abs() <= tolerance + EPSILON
}

/// A tolerance limit worth reporting: only when the ratio is not exactly 1.
fn held_by_tolerance(ratio: f64, tolerance: f64) -> Option<Limit> {
    ((1.0 - ratio).abs() > EPSILON).then_some(Limit::Tolerance(tolerance))
}

/// `⌈x⌉` as a count, forgiving float noise (7.000000000000001 → 7), saturating.
fn ceil_count(x: f64) -> u32 {
    let c = (x - EPSILON).ceil();
    if c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Behavior, History, Replicas};
    use super::*;

    fn proposal(metric: MetricInput, current: u32, tolerance: f64) -> Proposal {
        let behavior = Behavior {
            tolerance,
            ..Behavior::default()
        };
        let input = DecisionInput {
            behavior: &behavior,
            replicas: &Replicas { min: 0, max: 1000 },
            current,
            metrics: &[],
            history: &History::default(),
            now_ms: 0,
        };
        evaluate(&metric, &input)
    }

    /// (name, metric, current, expected replicas, expected hold)
    type Case = (&'static str, MetricInput, u32, Option<u32>, Option<Limit>);

    #[test]
    fn proposals_follow_hpa_formula_tolerance_and_missing_data_rules() {
        let n = None;
        let cases: Vec<Case> = vec![
            // HPA docs: 200m current vs 100m target doubles; 50m halves.
            (
                "docs_double",
                per_replica("m", 0.1, &[0.2]),
                1,
                Some(2),
                None,
            ),
            (
                "docs_halve",
                per_replica("m", 100.0, &[50.0; 4]),
                4,
                Some(2),
                None,
            ),
            (
                "ratio_exactly_1_1_is_within_tolerance",
                per_replica("m", 10.0, &[11.0; 3]),
                3,
                Some(3),
                Some(Limit::Tolerance(0.1)),
            ),
            (
                "ratio_exactly_0_9_is_within_tolerance",
                per_replica("m", 10.0, &[9.0; 3]),
                3,
                Some(3),
                Some(Limit::Tolerance(0.1)),
            ),
            (
                "ratio_just_above_band_scales",
                per_replica("m", 10.0, &[11.000001; 3]),
                3,
                Some(4),
                None,
            ),
            (
                "ratio_just_below_band_scales",
                per_replica("m", 10.0, &[8.99999; 10]),
                10,
                Some(9),
                None,
            ),
            (
                "exact_target_holds_without_limit",
                per_replica("m", 10.0, &[10.0; 2]),
                2,
                Some(2),
                None,
            ),
            (
                "zero_tolerance_scales_on_any_excess",
                per_replica("m", 10.0, &[10.5; 2]),
                2,
                Some(3),
                None,
            ),
            (
                "float_noise_does_not_add_a_replica",
                per_replica("m", 10.0, &[7.0; 10]),
                10,
                Some(7),
                None,
            ),
            (
                "zero_load_asks_for_zero",
                per_replica("m", 10.0, &[0.0; 5]),
                5,
                Some(0),
                None,
            ),
            (
                "average_not_max_drives_it",
                per_replica("m", 10.0, &[30.0, 0.0, 0.0]),
                3,
                Some(3),
                None,
            ),
            // Missing replicas: on target when shrinking, idle when growing.
            (
                "missing_counts_as_target_on_scale_down",
                partial("m", 10.0, &[Some(2.0), Some(2.0), n, n]),
                4,
                Some(3),
                None,
            ),
            (
                "missing_can_cancel_scale_down",
                partial("m", 10.0, &[Some(6.0), n, n, n]),
                4,
                Some(4),
                Some(Limit::MissingData),
            ),
            (
                "missing_counts_as_idle_on_scale_up",
                partial("m", 10.0, &[Some(40.0), n]),
                2,
                Some(4),
                None,
            ),
            (
                "missing_can_cancel_scale_up",
                partial("m", 10.0, &[Some(12.0), n]),
                2,
                Some(2),
                Some(Limit::MissingData),
            ),
            // Regression (issue 11 item 17): ready replicas exactly on target say nothing
            // about the missing ones; HPA leaves them out and holds. Counting them as idle
            // scaled 4 → 1 on missing data alone.
            (
                "missing_with_ready_exactly_on_target_holds",
                partial("m", 10.0, &[Some(10.0), n, n, n]),
                4,
                Some(4),
                None,
            ),
            (
                "garbage_rate_is_missing",
                partial("m", 10.0, &[Some(40.0), Some(f64::NAN)]),
                2,
                Some(4),
                None,
            ),
            (
                "all_missing_is_unavailable",
                partial("m", 10.0, &[n, n]),
                2,
                None,
                None,
            ),
            (
                "no_replicas_reporting_is_unavailable",
                per_replica("m", 10.0, &[]),
                0,
                None,
                None,
            ),
            // Totals: ceil(total / target) with tolerance against the current count.
            (
                "total_scales_to_total_over_target",
                total("m", 10.0, 90.0),
                1,
                Some(9),
                None,
            ),
            (
                "total_within_tolerance_holds",
                total("m", 10.0, 31.0),
                3,
                Some(3),
                Some(Limit::Tolerance(0.1)),
            ),
            (
                "total_from_zero_replicas",
                total("m", 10.0, 25.0),
                0,
                Some(3),
                None,
            ),
            ("total_zero_load", total("m", 10.0, 0.0), 4, Some(0), None),
            (
                "negative_total_is_unavailable",
                total("m", 10.0, -1.0),
                4,
                None,
                None,
            ),
            (
                "nonpositive_target_is_unavailable",
                total("m", 0.0, 5.0),
                4,
                None,
                None,
            ),
            (
                "failed_source_is_unavailable",
                unavailable("m", 10.0, "timeout"),
                4,
                None,
                None,
            ),
        ];
        for (name, metric, current, want, hold) in cases {
            let tolerance = if name.starts_with("zero_tolerance") {
                0.0
            } else {
                0.1
            };
            let p = proposal(metric, current, tolerance);
            assert_eq!(p.replicas, want, "{name}: {p:?}");
            assert_eq!(p.hold, hold, "{name}");
            assert_eq!(p.status.error.is_some(), want.is_none(), "{name}");
        }
    }

    #[test]
    fn status_reports_average_of_ready_replicas_and_missing_count() {
        let p = proposal(partial("m", 10.0, &[Some(20.0), Some(40.0), None]), 3, 0.1);
        assert_eq!(p.status.per_replica, Some(30.0));
        assert_eq!(p.status.missing, 1);
        let p = proposal(total("m", 10.0, 90.0), 3, 0.1);
        assert_eq!(p.status.per_replica, Some(30.0));
    }
}
