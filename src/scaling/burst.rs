//! Burst mode (Knative's panic mode): a sharp rise scales up at once; no scale-down while it lasts.
//!
//! ```text
//!              burst count ≥ threshold × current
//!   stable ─────────────────────────────────────────► burst (until = now + stable window,
//!     ▲                                                  │    peak = max(peak, burst count))
//!     │   now ≥ until (a whole stable window            │ again: until and peak move on
//!     └──────── without the condition) ◄────────────────┘
//! ```
//!
//! In burst the count is `max(peak, what the stable path decided, current)`, capped by
//! `replicas.max`: the scale-up rate policies are passed (a burst is exactly what they
//! would slow down) but `selectPolicy: Disabled` is honoured, and nothing scales down.
//! The burst count of a metric is ⌈burst reading / target⌉ over the service
//! ([`MetricInput::burst`], load-balancer metrics only; the largest one wins).

use serde::{Deserialize, Serialize};

use super::{Decision, DecisionInput, Limit, MetricInput, finish, num};
use crate::policy::types::{Direction, SelectPolicy, Windows};

/// Burst mode carried from one evaluation to the next (in [`super::History`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BurstState {
    /// Burst mode lasts while `now < until_ms`.
    pub until_ms: u64,
    /// Largest burst count seen since burst mode began.
    pub peak: u32,
}

impl BurstState {
    /// Whether burst mode still holds at `now_ms`.
    pub fn active(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }
}

/// The count the metrics' burst readings ask for (the largest), and the metric asking.
pub fn burst_count(metrics: &[MetricInput]) -> Option<(u32, &MetricInput)> {
    metrics
        .iter()
        .filter_map(|m| {
            let b = m.burst?;
            let t = m.target_per_replica;
            if !(b.is_finite() && b >= 0.0 && t.is_finite() && t > 0.0) {
                return None;
            }
            let n = (b / t - 1e-9).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
            Some((n, m))
        })
        .max_by_key(|(n, _)| *n)
}

/// The cheap check the burst trigger runs between ticks: does `wanted` replicas (the burst
/// count) for a service at `current` call for burst mode?
pub fn triggers(windows: &Windows, current: u32, wanted: u32) -> bool {
    if !windows.burst_enabled() || wanted <= current {
        return false;
    }
    current == 0 || f64::from(wanted) >= windows.burst_threshold * f64::from(current)
}

/// Lays burst mode over the stable path's decision `base` (see the module documentation).
pub(super) fn overlay(input: &DecisionInput, base: Decision) -> Decision {
    let windows = &input.behavior.windows;
    let now = input.now_ms;
    let current = input.current;
    let previous = input.history.burst.filter(|b| b.active(now));
    let count = burst_count(input.metrics);
    let fired = count.filter(|(n, _)| triggers(windows, current, *n));
    let state = match (fired, previous) {
        (Some((n, _)), prev) => BurstState {
            until_ms: now.saturating_add(windows.stable_ms()),
            peak: prev.map_or(n, |p| p.peak.max(n)),
        },
        // While burst mode lasts the count follows every burst reading up, threshold or
        // not (an early reading of a step may fall a replica short).
        (None, Some(prev)) => BurstState {
            peak: count.map_or(prev.peak, |(n, _)| prev.peak.max(n)),
            ..prev
        },
        (None, None) => return base,
    };
    let max = input.replicas.max;
    let up_disabled = input.behavior.scale_up.select_policy == Some(SelectPolicy::Disabled);
    let floor = base.desired.max(current);
    let desired = if up_disabled {
        floor
    } else {
        floor.max(state.peak.min(max))
    };
    let limit = if up_disabled && state.peak > floor {
        Some(Limit::Disabled(Direction::Up))
    } else if state.peak > max && desired == max {
        Some(Limit::Max(max))
    } else {
        Some(Limit::Burst {
            until_ms: state.until_ms,
        })
    };
    let what = match fired {
        Some((n, m)) => format!(
            "{} {} burst asks for {n} (at least {}× {current}), {current} → {desired}",
            m.name,
            num(m.burst.unwrap_or_default()),
            num(windows.burst_threshold)
        ),
        None if desired == current => format!("holding at {current} in burst mode"),
        None => format!("{current} → {desired} in burst mode"),
    };
    let mut d = finish(
        current,
        desired,
        limit,
        base.metrics,
        base.metrics_available,
        base.recommendation,
        what,
    );
    d.burst = Some(state);
    d
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use crate::policy::types::{Behavior, ScalingRules, Windows};

    fn lb(stable: f64, burst: Option<f64>) -> MetricInput {
        let mut m = total("loadBalancer(requestRate)", 10.0, stable);
        m.burst = burst;
        m
    }

    fn history(burst: Option<BurstState>) -> History {
        History {
            burst,
            ..History::default()
        }
    }

    #[test]
    fn burst_table() {
        let active = Some(BurstState {
            until_ms: 10_000,
            peak: 9,
        });
        // (name, current, metrics, history, now, desired, burst state after)
        type Case = (
            &'static str,
            u32,
            Vec<MetricInput>,
            History,
            u64,
            u32,
            Option<BurstState>,
        );
        let cases: Vec<Case> = vec![
            (
                "step_scales_straight_to_the_burst_count",
                1,
                vec![lb(20.0, Some(88.2))],
                History::default(),
                1_000,
                9,
                Some(BurstState {
                    until_ms: 7_000,
                    peak: 9,
                }),
            ),
            (
                "below_threshold_follows_the_stable_path",
                3,
                vec![lb(30.0, Some(50.0))],
                History::default(),
                1_000,
                3,
                None,
            ),
            (
                "no_scale_down_while_burst_lasts",
                9,
                vec![lb(5.0, Some(5.0))],
                history(active),
                9_999,
                9,
                active,
            ),
            (
                "burst_ends_after_a_quiet_stable_window",
                9,
                vec![lb(5.0, Some(5.0))],
                history(active),
                10_000,
                // The stable path's 300 s scale-down window still holds it.
                9,
                None,
            ),
            (
                "a_new_burst_extends_and_raises_the_peak",
                4,
                vec![lb(40.0, Some(100.0))],
                history(active),
                5_000,
                10,
                Some(BurstState {
                    until_ms: 11_000,
                    peak: 10,
                }),
            ),
            (
                "active_burst_follows_a_rising_count_below_threshold",
                8,
                vec![lb(60.0, Some(90.0))],
                history(Some(BurstState {
                    until_ms: 10_000,
                    peak: 8,
                })),
                2_000,
                9,
                Some(BurstState {
                    until_ms: 10_000,
                    peak: 9,
                }),
            ),
            (
                "capped_by_max",
                1,
                vec![lb(5.0, Some(1_000.0))],
                History::default(),
                0,
                10,
                Some(BurstState {
                    until_ms: 6_000,
                    peak: 100,
                }),
            ),
            (
                "nan_burst_is_no_burst",
                1,
                vec![lb(5.0, Some(f64::NAN))],
                History::default(),
                0,
                1,
                None,
            ),
            (
                "metrics_without_burst_readings_never_burst",
                1,
                vec![total("prometheus(q)", 10.0, 5.0)],
                History::default(),
                0,
                1,
                None,
            ),
            (
                "largest_burst_of_several_metrics_wins",
                1,
                vec![lb(5.0, Some(30.0)), lb(5.0, Some(70.0))],
                History::default(),
                0,
                7,
                Some(BurstState {
                    until_ms: 6_000,
                    peak: 7,
                }),
            ),
            (
                "unavailable_stable_reading_still_bursts",
                1,
                vec![{
                    let mut m = unavailable("loadBalancer(requestRate)", 10.0, "no data");
                    m.burst = Some(90.0);
                    m
                }],
                History::default(),
                0,
                9,
                Some(BurstState {
                    until_ms: 6_000,
                    peak: 9,
                }),
            ),
        ];
        for (name, current, metrics, hist, now, want, want_state) in cases {
            let d = run(&Behavior::default(), 1, 10, current, &metrics, &hist, now);
            assert_eq!(d.desired, want, "{name}: {d}");
            assert_eq!(d.burst, want_state, "{name}");
            let mut after = hist.clone();
            after.record(&d, now, &Behavior::default());
            assert_eq!(after.burst.filter(|b| b.active(now)), want_state, "{name}");
        }
    }

    #[test]
    fn burst_reason_names_the_signal_and_respects_disabled() {
        let d = run(
            &Behavior::default(),
            1,
            10,
            1,
            &[lb(5.0, Some(88.2))],
            &History::default(),
            0,
        );
        assert_eq!(
            d.to_string(),
            "loadBalancer(requestRate) 5 per replica < target 10, \
             loadBalancer(requestRate) 88.2 burst asks for 9 (at least 2× 1), 1 → 9, \
             burst mode: no scale-down before the stable window passes without a burst"
        );
        let disabled = Behavior {
            scale_up: ScalingRules {
                select_policy: Some(SelectPolicy::Disabled),
                ..ScalingRules::default()
            },
            ..Behavior::default()
        };
        let d = run(
            &disabled,
            1,
            10,
            1,
            &[lb(5.0, Some(88.2))],
            &History::default(),
            0,
        );
        assert_eq!(d.desired, 1, "{d}");
        assert_eq!(d.limit, Some(Limit::Disabled(Direction::Up)));
        let off = Behavior {
            windows: Windows {
                burst_threshold: 0.0,
                ..Windows::default()
            },
            ..Behavior::default()
        };
        let d = run(
            &off,
            1,
            10,
            1,
            &[lb(5.0, Some(88.2))],
            &History::default(),
            0,
        );
        assert_eq!((d.desired, d.burst), (1, None), "burst off: {d}");
    }

    #[test]
    fn trigger_check() {
        let w = Windows::default();
        let cases = [
            (1, 2, true),
            (1, 1, false),
            (4, 7, false),
            (4, 8, true),
            (0, 1, true),
            (0, 0, false),
            (u32::MAX, u32::MAX, false),
        ];
        for (current, wanted, want) in cases {
            assert_eq!(triggers(&w, current, wanted), want, "{current} → {wanted}");
        }
    }
}
