//! The scaling decision: metric readings + history + `now` → desired replica count with a reason.
//!
//! Pure: no clock, no I/O. The daemon, `reconcile --once`, `diff` and `simulate` all call
//! [`decide`] with what they observed and feed the outcome back with [`History::record`].
//!
//! ```text
//!  metrics ──► per-metric proposal (replicas.rs: HPA formula, tolerance, missing data)
//!                 │ largest wins; unavailable metrics never allow a scale-down
//!                 ▼
//!  history ──► stabilization windows ──► rate policies + min/max (hpa.rs) ──► Decision
//! ```
//!
//! The `threshold` strategy (threshold.rs) replaces the whole pipeline with the original
//! tool's one-step rule. Bounds that hold for every strategy (zero replicas, a count
//! outside `min..=max`) are applied here before any metric is looked at, as HPA does.

use std::fmt;

use serde::Serialize;

use crate::policy::types::{
    Behavior, Direction, RatePolicy, RatePolicyKind, Replicas, SelectPolicy, Strategy,
};

mod burst;
mod history;
mod hpa;
pub mod idle;
mod replicas;
mod threshold;
pub mod windows;

pub use burst::{BurstState, burst_count, triggers};
pub use history::{History, Recommendation, ScaleEvent};

/// One metric as observed for this evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricInput {
    /// Human name used in reasons and status, e.g. `requestRate(http_requests_total)`.
    pub name: String,
    /// Desired value per replica (from the policy).
    pub target_per_replica: f64,
    /// What the source returned.
    pub reading: MetricReading,
    /// The same metric as a service-wide total over the burst window, when trusted
    /// (load-balancer metrics only; see [`windows::burst_reading`]): drives burst mode.
    pub burst: Option<f64>,
}

/// What a metric source returned for one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricReading {
    /// One entry per current replica: `Some(rate)` for a ready replica with data, `None`
    /// for a missing or unready one.
    PerReplica(Vec<Option<f64>>),
    /// A service-wide total (e.g. a Prometheus query); desired = ⌈total / target⌉.
    Total(f64),
    /// The source failed entirely (reason in words).
    Unavailable(String),
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// Strategy, tolerance, windows and rate policies.
    pub behavior: &'a Behavior,
    /// Bounds on the count.
    pub replicas: &'a Replicas,
    /// Replicas the service has now (the count last scaled to).
    pub current: u32,
    /// One entry per metric of the policy.
    pub metrics: &'a [MetricInput],
    /// Past recommendations and scale events of this policy.
    pub history: &'a History,
    /// Evaluation time, milliseconds since the epoch.
    pub now_ms: u64,
}

/// Direction of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Change {
    /// Keep the count.
    None,
    /// Add replicas.
    Up,
    /// Remove replicas.
    Down,
}

/// The rule that moved the decision away from what the metrics alone asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Limit {
    /// Raised to `replicas.min`.
    Min(u32),
    /// Capped at `replicas.max`.
    Max(u32),
    /// Capped by a rate policy: the one `selectPolicy` chose, allowing `allowed` replicas.
    Rate {
        /// Direction of the capped change.
        direction: Direction,
        /// The policy that set the cap.
        policy: RatePolicy,
        /// How the direction's policies combine.
        select: SelectPolicy,
        /// Count the cap allows now.
        allowed: u32,
    },
    /// `selectPolicy: Disabled` forbids changes in this direction.
    Disabled(Direction),
    /// A stabilization window kept an earlier recommendation.
    Stabilization {
        /// Window that held the change back.
        direction: Direction,
        /// Its length.
        window_seconds: u32,
        /// What the metrics asked for now.
        wanted: u32,
    },
    /// The usage ratio was within the tolerance band around 1.
    Tolerance(f64),
    /// Replica data was missing and, counted conservatively, no change was justified.
    MissingData,
    /// Metric sources failed: all of them (hold) or some (never scale down).
    MetricsUnavailable {
        /// Whether every metric failed.
        all: bool,
    },
    /// Burst mode set the count (scale-up rate policies passed; no scale-down).
    Burst {
        /// Burst mode lasts until then (milliseconds since the epoch).
        until_ms: u64,
    },
}

/// One metric's state in a decision, for status and reasons.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricStatus {
    /// Human name of the metric.
    pub name: String,
    /// Average value per ready replica, when known.
    pub per_replica: Option<f64>,
    /// Desired value per replica.
    pub target: f64,
    /// Replica count this metric alone asks for, when it could be computed.
    pub proposal: Option<u32>,
    /// Replicas whose data was missing or unready.
    pub missing: u32,
    /// Why the metric is unavailable.
    pub error: Option<String>,
}

/// The outcome of [`decide`]: the count, the direction, the reason and any limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Count before the decision.
    pub current: u32,
    /// Count to scale to.
    pub desired: u32,
    /// Direction of `current → desired`.
    pub change: Change,
    /// The whole decision in words (also what `Display` prints).
    pub reason: String,
    /// The rule that moved `desired` away from the metrics' proposal, if any.
    pub limit: Option<Limit>,
    /// Every metric's value and proposal.
    pub metrics: Vec<MetricStatus>,
    /// False when no metric could be read (HPA's `ScalingActive=False`).
    pub metrics_available: bool,
    /// The raw recommendation to remember for stabilization (`None` when none was made).
    pub recommendation: Option<u32>,
    /// Burst mode after this decision, when it holds.
    pub burst: Option<BurstState>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::None => "none",
            Change::Up => "up",
            Change::Down => "down",
        })
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Min(n) => write!(f, "raised to replicas.min {n}"),
            Limit::Max(n) => write!(f, "capped by replicas.max {n}"),
            Limit::Rate {
                direction,
                policy,
                select,
                ..
            } => write!(
                f,
                "capped by {} {} per {} s (selectPolicy {select:?})",
                verb(*direction),
                policy_amount(policy, *direction),
                policy.period_seconds
            ),
            Limit::Disabled(direction) => {
                write!(f, "{} disabled (selectPolicy Disabled)", verb(*direction))
            }
            Limit::Stabilization {
                direction,
                window_seconds,
                wanted,
            } => write!(
                f,
                "held by the {window_seconds} s {} stabilization window (now wants {wanted})",
                verb(*direction)
            ),
            Limit::Tolerance(t) => write!(f, "within tolerance {}", num(t * 100.0) + " %"),
            Limit::MissingData => f.write_str("held because replica data is missing"),
            Limit::MetricsUnavailable { all: true } => {
                f.write_str("holding: no metric is available")
            }
            Limit::MetricsUnavailable { all: false } => {
                f.write_str("no scale-down while a metric is unavailable")
            }
            Limit::Burst { .. } => f.write_str(
                "burst mode: no scale-down before the stable window passes without a burst",
            ),
        }
    }
}

fn verb(direction: Direction) -> &'static str {
    match direction {
        Direction::Up => "scale-up",
        Direction::Down => "scale-down",
    }
}

fn policy_amount(policy: &RatePolicy, direction: Direction) -> String {
    let sign = match direction {
        Direction::Up => "+",
        Direction::Down => "−",
    };
    match policy.kind {
        RatePolicyKind::Pods => format!("{sign}{} Pods", policy.value),
        RatePolicyKind::Percent => format!("{sign}{} %", policy.value),
    }
}

/// A number for people: at most two decimals, no trailing zeros.
pub(crate) fn num(x: f64) -> String {
    let s = format!("{x:.2}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    if s == "-0" { "0".to_owned() } else { s }
}

/// Decides the desired replica count for one evaluation.
///
/// # Guarantees
/// - The result is within `replicas.min..=replicas.max` (when `min <= max`).
/// - Missing or unavailable data never causes a scale-down.
/// - The same input always gives the same output.
pub fn decide(input: &DecisionInput) -> Decision {
    let DecisionInput {
        replicas, current, ..
    } = *input;
    // Bounds that hold whatever the metrics say (HPA checks these first, too).
    let bound = if current > replicas.max {
        Some((replicas.max, Limit::Max(replicas.max), "above replicas.max"))
    } else if current < replicas.min {
        let why = if current == 0 {
            "no replica running"
        } else {
            "below replicas.min"
        };
        Some((replicas.min, Limit::Min(replicas.min), why))
    } else {
        None
    };
    if let Some((desired, limit, why)) = bound {
        let metrics = input
            .metrics
            .iter()
            .map(|m| replicas::evaluate(m, input).status)
            .collect::<Vec<_>>();
        let available = metrics.iter().any(|m| m.error.is_none());
        let text = format!("{why}: {current} → {desired}");
        return finish(
            current,
            desired,
            Some(limit),
            metrics,
            available,
            None,
            text,
        );
    }
    let base = match input.behavior.strategy {
        Strategy::Hpa => hpa::decide(input),
        Strategy::Threshold => threshold::decide(input),
    };
    burst::overlay(input, base)
}

/// Assembles a [`Decision`], writing the reason from its parts.
fn finish(
    current: u32,
    desired: u32,
    limit: Option<Limit>,
    metrics: Vec<MetricStatus>,
    metrics_available: bool,
    recommendation: Option<u32>,
    what: String,
) -> Decision {
    let change = match desired.cmp(&current) {
        std::cmp::Ordering::Less => Change::Down,
        std::cmp::Ordering::Equal => Change::None,
        std::cmp::Ordering::Greater => Change::Up,
    };
    let mut reason = describe_metrics(&metrics);
    if !reason.is_empty() {
        reason.push_str(", ");
    }
    reason.push_str(&what);
    if let Some(limit) = &limit {
        reason.push_str(", ");
        reason.push_str(&limit.to_string());
    }
    Decision {
        current,
        desired,
        change,
        reason,
        limit,
        metrics,
        metrics_available,
        recommendation,
        burst: None,
    }
}

/// `23.1 per replica > target 10; other unavailable (timeout)`.
fn describe_metrics(metrics: &[MetricStatus]) -> String {
    if metrics.is_empty() {
        return "no metrics configured".to_owned();
    }
    metrics
        .iter()
        .map(|m| match (&m.error, m.per_replica) {
            (Some(err), _) => format!("{} unavailable ({err})", m.name),
            (None, Some(v)) => {
                let cmp = match v.partial_cmp(&m.target) {
                    Some(std::cmp::Ordering::Greater) => ">",
                    Some(std::cmp::Ordering::Less) => "<",
                    _ => "=",
                };
                let missing = if m.missing > 0 {
                    format!(" ({} replicas without data)", m.missing)
                } else {
                    String::new()
                };
                format!(
                    "{} {} per replica {cmp} target {}{missing}",
                    m.name,
                    num(v),
                    num(m.target)
                )
            }
            (None, None) => format!("{} target {}", m.name, num(m.target)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod conformance;

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    /// (name, current, min, max, metrics, expected desired, limit)
    type Case = (&'static str, u32, u32, u32, Vec<MetricInput>, u32, Limit);

    #[test]
    fn count_outside_bounds_is_brought_back_regardless_of_metrics() {
        let cases: &[Case] = &[
            (
                "zero_replicas_start_at_min",
                0,
                2,
                10,
                vec![],
                2,
                Limit::Min(2),
            ),
            (
                "zero_replicas_start_at_min_even_when_metrics_fail",
                0,
                1,
                10,
                vec![unavailable("rate", 10.0, "timeout")],
                1,
                Limit::Min(1),
            ),
            (
                "above_max_drops_to_max_at_once",
                14,
                1,
                10,
                vec![per_replica("rate", 10.0, &[99.0; 14])],
                10,
                Limit::Max(10),
            ),
            (
                "below_min_rises_to_min_at_once",
                1,
                3,
                10,
                vec![per_replica("rate", 10.0, &[0.0])],
                3,
                Limit::Min(3),
            ),
        ];
        for (name, current, min, max, metrics, want, limit) in cases {
            for strategy in [Strategy::Hpa, Strategy::Threshold] {
                let behavior = Behavior {
                    strategy,
                    ..Behavior::default()
                };
                let d = run(
                    &behavior,
                    *min,
                    *max,
                    *current,
                    metrics,
                    &History::default(),
                    0,
                );
                assert_eq!(d.desired, *want, "{name} {strategy:?}: {d}");
                assert_eq!(d.limit.as_ref(), Some(limit), "{name} {strategy:?}");
                assert_eq!(
                    d.recommendation, None,
                    "{name}: not a metric recommendation"
                );
            }
        }
    }

    #[test]
    fn decision_displays_metric_transition_and_limit() {
        let behavior = Behavior::default();
        let d = run(
            &behavior,
            1,
            10,
            2,
            &[per_replica(
                "requestRate(http_requests_total)",
                10.0,
                &[23.1, 23.1],
            )],
            &History::default(),
            0,
        );
        assert_eq!(
            d.to_string(),
            "requestRate(http_requests_total) 23.1 per replica > target 10, 2 → 5"
        );
        let d = run(
            &behavior,
            1,
            10,
            2,
            &[per_replica("rate", 10.0, &[40.0, 40.0])],
            &History::default(),
            0,
        );
        assert_eq!(
            d.to_string(),
            "rate 40 per replica > target 10, 2 → 6 (wanted 8), \
             capped by scale-up +4 Pods per 15 s (selectPolicy Max)"
        );
    }

    #[test]
    fn num_prints_short_numbers() {
        for (x, s) in [
            (10.0, "10"),
            (23.1, "23.1"),
            (0.126, "0.13"),
            (-0.0001, "0"),
            (1e6, "1000000"),
        ] {
            assert_eq!(num(x), s);
        }
    }
}
