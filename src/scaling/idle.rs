//! Scale to zero: the idle rule of a `replicas.min: 0` policy, on top of [`super::decide`].
//!
//! Pure: the caller passes the times (ms since the epoch) and the held-request count.
//!
//! ```text
//!  current == 0, held == 0  ──► stay at 0 (nothing asks for a replica; a restart or a
//!                               new policy does not wake a policy at zero)
//!  current == 0, held  > 0  ──► activate: the usual decision with min raised to 1
//!  current  > 0, held == 0,
//!    idle >= idleSeconds    ──► 0 ("ScaledToZero after 300 s idle"), through the drain
//!  otherwise                ──► the usual decision with min raised to 1
//! ```
//!
//! **Idle** is the time since the last request any source saw (the load-balancer signal,
//! the activator, a metric showing load). A source that never saw a request (`None`, e.g.
//! the signal receiver is missing) does not make the policy "idle forever": idle then
//! counts from when this process started watching the policy (`watching_since_ms`), so
//! a fresh operator waits a full `idleSeconds` before it scales anything to zero.

use crate::policy::types::{Replicas, ScaleToZero};

use super::{Change, Decision, DecisionInput, MetricInput, MetricReading, decide};

/// The scale-to-zero inputs of one evaluation.
#[derive(Debug, Clone, Copy)]
pub struct ZeroInput<'a> {
    /// The policy's rule.
    pub rule: &'a ScaleToZero,
    /// Requests the activator holds for the policy now (demand at zero).
    pub held: u32,
    /// The latest request any source saw, ms since the epoch; `None`: none seen.
    pub last_request_ms: Option<u64>,
    /// When this process started watching the policy, ms since the epoch.
    pub watching_since_ms: u64,
}

/// What the idle rule says before the metrics are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// At zero with nothing held: stay there.
    StayAtZero,
    /// At zero with requests held: at least one replica, at once.
    Activate {
        /// Requests held.
        held: u32,
    },
    /// Idle for at least `idleSeconds`: go to zero.
    ScaleToZero {
        /// Whole seconds since the last request (or since watching began).
        idle_seconds: u64,
    },
    /// The usual decision, with `min` raised to 1.
    Usual,
}

/// Milliseconds the policy has been idle at `now_ms`.
pub fn idle_ms(z: &ZeroInput, now_ms: u64) -> u64 {
    let since = z
        .last_request_ms
        .map_or(z.watching_since_ms, |last| last.max(z.watching_since_ms));
    now_ms.saturating_sub(since)
}

/// The idle rule (see the module diagram).
pub fn verdict(z: &ZeroInput, current: u32, now_ms: u64) -> Verdict {
    if current == 0 {
        return if z.held > 0 {
            Verdict::Activate { held: z.held }
        } else {
            Verdict::StayAtZero
        };
    }
    let idle = idle_ms(z, now_ms);
    if z.held == 0 && idle >= z.rule.idle_seconds.saturating_mul(1000) {
        Verdict::ScaleToZero {
            idle_seconds: idle / 1000,
        }
    } else {
        Verdict::Usual
    }
}

/// Whether any metric reading shows requests (a positive finite value): load the
/// metrics see is activity even when the load-balancer signal saw none.
pub fn metrics_show_requests(metrics: &[MetricInput]) -> bool {
    let busy = |v: f64| v.is_finite() && v > 0.0;
    metrics.iter().any(|m| match &m.reading {
        MetricReading::PerReplica(values) => values.iter().flatten().any(|v| busy(*v)),
        MetricReading::Total(v) => busy(*v),
        MetricReading::Unavailable(_) => false,
    })
}

/// [`decide`] with the idle rule of a `min: 0` policy; `zero: None` is plain [`decide`].
///
/// # Guarantees
/// - Without held requests a policy at zero stays at zero; with some it gets at least one
///   replica (never more than `replicas.max`).
/// - Above zero, `replicas.min`/`max` and every behavior rule apply as for any policy,
///   with `min` taken as 1 until the policy is idle.
pub fn decide_with_zero(input: &DecisionInput, zero: Option<&ZeroInput>) -> Decision {
    let Some(z) = zero else {
        return decide(input);
    };
    let raised = Replicas {
        min: input.replicas.min.max(1),
        max: input.replicas.max.max(1),
    };
    let usual = decide(&DecisionInput {
        replicas: &raised,
        ..*input
    });
    let current = input.current;
    match verdict(z, current, input.now_ms) {
        Verdict::Usual => usual,
        Verdict::Activate { held } => Decision {
            reason: format!(
                "{held} request{} held at zero: {}",
                plural(held),
                usual.reason
            ),
            ..usual
        },
        Verdict::StayAtZero => Decision {
            desired: 0,
            change: Change::None,
            reason: "at zero, no request held".to_owned(),
            limit: None,
            recommendation: None,
            ..usual
        },
        Verdict::ScaleToZero { idle_seconds } => Decision {
            desired: 0,
            change: Change::Down,
            reason: format!(
                "ScaledToZero after {idle_seconds} s idle (scaleToZero.idleSeconds {}): {current} → 0",
                z.rule.idle_seconds
            ),
            limit: None,
            recommendation: None,
            ..usual
        },
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::super::History;
    use super::*;
    use crate::policy::types::Behavior;

    fn rule(idle_seconds: u64) -> ScaleToZero {
        ScaleToZero {
            idle_seconds,
            max_pending: 100,
            timeout_seconds: 30,
        }
    }

    #[test]
    fn verdict_table() {
        // (name, idleSeconds, current, held, last request, watching since, now, expected)
        type Case = (&'static str, u64, u32, u32, Option<u64>, u64, u64, Verdict);
        let cases: &[Case] = &[
            (
                "at_zero_nothing_held_stays",
                300,
                0,
                0,
                None,
                0,
                10_000_000,
                Verdict::StayAtZero,
            ),
            (
                "at_zero_held_activates",
                300,
                0,
                3,
                None,
                0,
                1,
                Verdict::Activate { held: 3 },
            ),
            (
                "busy_recently_is_usual",
                300,
                2,
                0,
                Some(1_000_000),
                0,
                1_299_999,
                Verdict::Usual,
            ),
            (
                "idle_exactly_idle_seconds_goes_to_zero",
                300,
                2,
                0,
                Some(1_000_000),
                0,
                1_300_000,
                Verdict::ScaleToZero { idle_seconds: 300 },
            ),
            (
                "never_seen_counts_from_watching_start_not_forever",
                300,
                1,
                0,
                None,
                5_000_000,
                5_299_000,
                Verdict::Usual,
            ),
            (
                "never_seen_idle_after_watching_long_enough",
                300,
                1,
                0,
                None,
                5_000_000,
                5_301_000,
                Verdict::ScaleToZero { idle_seconds: 301 },
            ),
            (
                "request_before_watching_counts_from_watching",
                60,
                1,
                0,
                Some(10),
                100_000,
                150_000,
                Verdict::Usual,
            ),
            (
                "held_requests_block_scale_to_zero",
                1,
                1,
                1,
                Some(0),
                0,
                u64::MAX,
                Verdict::Usual,
            ),
            (
                "clock_behind_the_last_request_is_not_idle",
                1,
                1,
                0,
                Some(9_000),
                0,
                5_000,
                Verdict::Usual,
            ),
            (
                "huge_idle_seconds_does_not_overflow",
                u64::MAX,
                1,
                0,
                Some(0),
                0,
                u64::MAX - 1,
                Verdict::Usual,
            ),
        ];
        for (name, idle, current, held, last, since, now, want) in cases {
            let r = rule(*idle);
            let z = ZeroInput {
                rule: &r,
                held: *held,
                last_request_ms: *last,
                watching_since_ms: *since,
            };
            assert_eq!(verdict(&z, *current, *now), *want, "{name}");
        }
    }

    #[test]
    fn metrics_show_requests_only_for_positive_finite_values() {
        let m = |reading| MetricInput {
            name: "m".to_owned(),
            target_per_replica: 10.0,
            reading,
            burst: None,
        };
        let cases = [
            (vec![], false),
            (vec![m(MetricReading::PerReplica(vec![]))], false),
            (
                vec![m(MetricReading::PerReplica(vec![None, Some(0.0)]))],
                false,
            ),
            (
                vec![m(MetricReading::PerReplica(vec![Some(f64::NAN)]))],
                false,
            ),
            (
                vec![m(MetricReading::PerReplica(vec![Some(f64::INFINITY)]))],
                false,
            ),
            (vec![m(MetricReading::PerReplica(vec![Some(-1.0)]))], false),
            (
                vec![m(MetricReading::PerReplica(vec![None, Some(0.2)]))],
                true,
            ),
            (vec![m(MetricReading::Total(0.0))], false),
            (vec![m(MetricReading::Total(3.0))], true),
            (vec![m(MetricReading::Unavailable("down".into()))], false),
        ];
        for (metrics, want) in cases {
            assert_eq!(metrics_show_requests(&metrics), want, "{metrics:?}");
        }
    }

    fn decide_at(current: u32, held: u32, idle_ms: u64, min: u32, max: u32) -> Decision {
        let r = rule(300);
        let z = ZeroInput {
            rule: &r,
            held,
            last_request_ms: Some(1_000_000),
            watching_since_ms: 0,
        };
        let rate: Vec<Option<f64>> = vec![Some(0.0); current as usize];
        let metrics = [MetricInput {
            name: "rate".to_owned(),
            target_per_replica: 10.0,
            reading: MetricReading::PerReplica(rate),
            burst: None,
        }];
        decide_with_zero(
            &DecisionInput {
                behavior: &Behavior::default(),
                replicas: &Replicas { min, max },
                current,
                metrics: &metrics,
                history: &History::default(),
                now_ms: 1_000_000 + idle_ms,
            },
            Some(&z),
        )
    }

    #[test]
    fn decisions_honour_bounds_and_explain_themselves() {
        // (name, current, held, idle ms, min, max, desired, reason contains)
        let cases = [
            (
                "idle_goes_to_zero",
                3,
                0,
                300_000,
                0,
                10,
                0,
                "ScaledToZero after 300 s idle",
            ),
            (
                "at_zero_stays",
                0,
                0,
                900_000,
                0,
                10,
                0,
                "at zero, no request held",
            ),
            (
                "held_wakes_one",
                0,
                3,
                0,
                0,
                10,
                1,
                "3 requests held at zero",
            ),
            (
                "one_held_singular",
                0,
                1,
                0,
                0,
                10,
                1,
                "1 request held at zero",
            ),
            ("busy_keeps_min_one", 1, 0, 10_000, 0, 10, 1, ""),
            (
                "above_max_still_capped",
                12,
                0,
                10_000,
                0,
                10,
                10,
                "replicas.max",
            ),
            ("max_zero_still_wakes_one", 0, 1, 0, 0, 0, 1, "held at zero"),
        ];
        for (name, current, held, idle, min, max, want, text) in cases {
            let d = decide_at(current, held, idle, min, max);
            assert_eq!(d.desired, want, "{name}: {d}");
            assert!(d.reason.contains(text), "{name}: {}", d.reason);
        }
    }

    #[test]
    fn no_rule_is_plain_decide() {
        let metrics = [];
        let input = DecisionInput {
            behavior: &Behavior::default(),
            replicas: &Replicas { min: 0, max: 10 },
            current: 0,
            metrics: &metrics,
            history: &History::default(),
            now_ms: 0,
        };
        assert_eq!(decide_with_zero(&input, None), decide(&input));
    }
}
