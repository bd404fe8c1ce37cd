//! The original tool's rule: +1 when every replica is above the upper rate, −1 when every replica is below the lower one.
//!
//! One step per evaluation, no windows or rate policies, clamped to `min..=max`. Any
//! missing data (a failed source, a replica without data) holds the count, as the
//! original tool did when a scrape failed.

use super::{Decision, DecisionInput, Limit, MetricReading, MetricStatus, finish, num};

/// Decides with the threshold strategy; `input.current` is already within `min..=max`.
pub(super) fn decide(input: &DecisionInput) -> Decision {
    let current = input.current;
    let bounds = &input.behavior.threshold;
    let mut statuses = Vec::new();
    let mut missing = false;
    let mut any_above = false;
    let mut all_below = !input.metrics.is_empty();
    for metric in input.metrics {
        let mut status = MetricStatus {
            name: metric.name.clone(),
            per_replica: None,
            target: metric.target_per_replica,
            proposal: None,
            missing: 0,
            error: None,
        };
        let values: Vec<f64> = match &metric.reading {
            MetricReading::Unavailable(why) => {
                status.error = Some(why.clone());
                Vec::new()
            }
            MetricReading::Total(total) if current > 0 && total.is_finite() && *total >= 0.0 => {
                vec![total / f64::from(current); current as usize]
            }
            MetricReading::Total(_) if current == 0 => {
                status.error = Some("no replica to split the total over".to_owned());
                Vec::new()
            }
            MetricReading::Total(total) => {
                status.error = Some(format!("value {total} is not a usable total"));
                Vec::new()
            }
            MetricReading::PerReplica(values) => {
                let ok: Vec<f64> = values
                    .iter()
                    .flatten()
                    .copied()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .collect();
                status.missing = u32::try_from(values.len() - ok.len()).unwrap_or(u32::MAX);
                if ok.is_empty() {
                    status.error = Some("no ready replica reported data".to_owned());
                }
                ok
            }
        };
        if status.error.is_some() || status.missing > 0 {
            missing = true;
        } else {
            status.per_replica = Some(values.iter().sum::<f64>() / values.len() as f64);
            any_above |= values.iter().all(|v| *v > bounds.upper_per_replica);
            all_below &= values.iter().all(|v| *v < bounds.lower_per_replica);
        }
        statuses.push(status);
    }
    let available = statuses.iter().any(|s| s.error.is_none());
    let rule = format!(
        "threshold {}..{} per replica",
        num(bounds.lower_per_replica),
        num(bounds.upper_per_replica)
    );
    if missing {
        let what = format!("{rule}, holding at {current}");
        let limit = if available {
            Limit::MissingData
        } else {
            Limit::MetricsUnavailable { all: true }
        };
        return finish(
            current,
            current,
            Some(limit),
            statuses,
            available,
            None,
            what,
        );
    }
    let wanted = if any_above {
        current.saturating_add(1)
    } else if all_below {
        current.saturating_sub(1)
    } else {
        current
    };
    let replicas = input.replicas;
    let (desired, limit) = if wanted > replicas.max {
        (replicas.max, Some(Limit::Max(replicas.max)))
    } else if wanted < replicas.min {
        (replicas.min, Some(Limit::Min(replicas.min)))
    } else {
        (wanted, None)
    };
    for s in &mut statuses {
        s.proposal = Some(wanted);
    }
    let what = if desired == current {
        format!("{rule}, holding at {current}")
    } else {
        format!("{rule}, {current} → {desired}")
    };
    finish(current, desired, limit, statuses, true, Some(wanted), what)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{Change, History};
    use crate::policy::types::{Behavior, Strategy, Threshold};

    fn threshold() -> Behavior {
        Behavior {
            strategy: Strategy::Threshold,
            ..Behavior::default()
        }
    }

    #[test]
    fn one_step_per_evaluation_when_every_replica_agrees() {
        let n = None;
        // (name, min, max, current, metrics, desired)
        let cases = vec![
            (
                "every_replica_above_upper_adds_one",
                1,
                10,
                2,
                vec![per_replica("m", 10.0, &[45.0, 11.0])],
                3,
            ),
            (
                "far_above_still_adds_only_one",
                1,
                10,
                1,
                vec![per_replica("m", 10.0, &[90.0])],
                2,
            ),
            (
                "one_replica_at_upper_holds",
                1,
                10,
                2,
                vec![per_replica("m", 10.0, &[45.0, 10.0])],
                2,
            ),
            (
                "every_replica_below_lower_removes_one",
                1,
                10,
                3,
                vec![per_replica("m", 10.0, &[4.9, 0.0, 1.0])],
                2,
            ),
            (
                "one_replica_at_lower_holds",
                1,
                10,
                3,
                vec![per_replica("m", 10.0, &[5.0, 0.0, 1.0])],
                3,
            ),
            (
                "between_bounds_holds",
                1,
                10,
                3,
                vec![per_replica("m", 10.0, &[7.0; 3])],
                3,
            ),
            (
                "zero_load_removes_one",
                1,
                10,
                3,
                vec![per_replica("m", 10.0, &[0.0; 3])],
                2,
            ),
            (
                "at_max_holds",
                1,
                10,
                10,
                vec![per_replica("m", 10.0, &[50.0; 10])],
                10,
            ),
            (
                "at_min_holds",
                2,
                10,
                2,
                vec![per_replica("m", 10.0, &[0.0; 2])],
                2,
            ),
            (
                "total_is_split_evenly",
                1,
                10,
                2,
                vec![total("m", 10.0, 30.0)],
                3,
            ),
            (
                "any_metric_above_adds",
                1,
                10,
                2,
                vec![
                    per_replica("a", 10.0, &[1.0; 2]),
                    per_replica("b", 10.0, &[20.0; 2]),
                ],
                3,
            ),
            (
                "all_metrics_must_be_below_to_remove",
                1,
                10,
                2,
                vec![
                    per_replica("a", 10.0, &[1.0; 2]),
                    per_replica("b", 10.0, &[7.0; 2]),
                ],
                2,
            ),
            (
                "missing_replica_holds",
                1,
                10,
                2,
                vec![partial("m", 10.0, &[Some(50.0), n])],
                2,
            ),
            (
                "unavailable_holds",
                1,
                10,
                3,
                vec![unavailable("m", 10.0, "timeout")],
                3,
            ),
            (
                "some_unavailable_holds",
                1,
                10,
                3,
                vec![
                    unavailable("a", 10.0, "timeout"),
                    per_replica("b", 10.0, &[0.0; 3]),
                ],
                3,
            ),
            ("no_metrics_holds", 1, 10, 3, vec![], 3),
        ];
        for (name, min, max, current, metrics, want) in cases {
            let d = run(
                &threshold(),
                min,
                max,
                current,
                &metrics,
                &History::default(),
                0,
            );
            assert_eq!(d.desired, want, "{name}: {d}");
            assert_eq!(d.change == Change::None, want == current, "{name}");
        }
    }

    #[test]
    fn custom_bounds_and_reasons() {
        let behavior = Behavior {
            threshold: Threshold {
                upper_per_replica: 100.0,
                lower_per_replica: 20.0,
            },
            ..threshold()
        };
        let d = run(
            &behavior,
            1,
            10,
            2,
            &[per_replica("rate", 10.0, &[50.0; 2])],
            &History::default(),
            0,
        );
        assert_eq!(d.desired, 2, "{d}");
        let d = run(
            &behavior,
            1,
            10,
            2,
            &[per_replica("rate", 10.0, &[150.0; 2])],
            &History::default(),
            0,
        );
        assert_eq!(
            d.to_string(),
            "rate 150 per replica > target 10, threshold 20..100 per replica, 2 → 3"
        );
        let d = run(
            &behavior,
            1,
            2,
            2,
            &[per_replica("rate", 10.0, &[150.0; 2])],
            &History::default(),
            0,
        );
        assert!(
            d.to_string()
                .ends_with("holding at 2, capped by replicas.max 2"),
            "{d}"
        );
        let d = run(
            &behavior,
            1,
            2,
            2,
            &[unavailable("rate", 10.0, "refused")],
            &History::default(),
            0,
        );
        assert!(!d.metrics_available);
        assert_eq!(
            d.to_string(),
            "rate unavailable (refused), threshold 20..100 per replica, holding at 2, holding: no metric is available"
        );
    }
}
