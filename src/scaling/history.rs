//! What past evaluations left behind: raw recommendations and scale events, pruned by age.
//!
//! HPA keeps both lists in controller memory; here they are plain data so the state
//! directory can persist them between `reconcile --once` runs and the simulator can
//! replay them. Every query takes `now_ms` and looks at entries strictly newer than
//! `now − window`, as HPA's `timestamp.After(cutoff)` does.

use serde::{Deserialize, Serialize};

use super::{BurstState, Decision};
use crate::policy::types::{Behavior, Direction};

/// One raw (unstabilized) recommendation of a past evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// When it was made, milliseconds since the epoch.
    pub at_ms: u64,
    /// The replica count the metrics asked for, before windows and rate limits.
    pub replicas: u32,
}

/// One change of the replica count that the operator carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When it was made, milliseconds since the epoch.
    pub at_ms: u64,
    /// Count before the change.
    pub from: u32,
    /// Count after the change.
    pub to: u32,
}

/// Recommendations and scale events of one policy, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Raw recommendations, for the stabilization windows.
    #[serde(default)]
    pub recommendations: Vec<Recommendation>,
    /// Scale events, for the rate policies' `periodSeconds`.
    #[serde(default)]
    pub events: Vec<ScaleEvent>,
    /// Burst mode, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<BurstState>,
}

impl History {
    /// Records the outcome of `decision` made at `now_ms`, then prunes what no window or
    /// period of `behavior` can see any more.
    ///
    /// Appends the raw recommendation (when the decision computed one) and, when the
    /// count changes, a scale event. Call it once per decision that was acted on.
    pub fn record(&mut self, decision: &Decision, now_ms: u64, behavior: &Behavior) {
        if let Some(replicas) = decision.recommendation {
            self.recommendations.push(Recommendation {
                at_ms: now_ms,
                replicas,
            });
        }
        if decision.desired != decision.current {
            self.events.push(ScaleEvent {
                at_ms: now_ms,
                from: decision.current,
                to: decision.desired,
            });
        }
        if decision.burst.is_some() {
            self.burst = decision.burst;
        }
        self.prune(now_ms, behavior);
    }

    /// Drops recommendations older than the longest stabilization window and events
    /// older than the longest rate-policy period of `behavior`.
    pub fn prune(&mut self, now_ms: u64, behavior: &Behavior) {
        let up = behavior.scale_up.resolve(Direction::Up);
        let down = behavior.scale_down.resolve(Direction::Down);
        let window_s = up
            .stabilization_window_seconds
            .max(down.stabilization_window_seconds);
        let period_s = up
            .policies
            .iter()
            .chain(down.policies.iter())
            .map(|p| p.period_seconds)
            .max()
            .unwrap_or(0);
        let rec_cutoff = cutoff(now_ms, window_s);
        let event_cutoff = cutoff(now_ms, period_s);
        self.burst = self.burst.filter(|b| b.active(now_ms));
        self.recommendations.retain(|r| r.at_ms > rec_cutoff);
        self.events.retain(|e| e.at_ms > event_cutoff);
    }

    /// Recommendations made strictly after `now − window_s`.
    pub fn recommendations_within(
        &self,
        now_ms: u64,
        window_s: u32,
    ) -> impl Iterator<Item = u32> + '_ {
        let cut = cutoff(now_ms, window_s);
        self.recommendations
            .iter()
            .filter(move |r| r.at_ms > cut)
            .map(|r| r.replicas)
    }

    /// Replicas added and removed by events strictly after `now − period_s`.
    pub fn changes_within(&self, now_ms: u64, period_s: u32) -> (u32, u32) {
        let cut = cutoff(now_ms, period_s);
        self.events
            .iter()
            .filter(|e| e.at_ms > cut)
            .fold((0u32, 0u32), |(added, removed), e| {
                if e.to >= e.from {
                    (added.saturating_add(e.to - e.from), removed)
                } else {
                    (added, removed.saturating_add(e.from - e.to))
                }
            })
    }
}

/// `now − seconds`, saturating at the epoch.
fn cutoff(now_ms: u64, seconds: u32) -> u64 {
    now_ms.saturating_sub(u64::from(seconds) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> History {
        History {
            recommendations: vec![
                Recommendation {
                    at_ms: 1_000,
                    replicas: 5,
                },
                Recommendation {
                    at_ms: 10_000,
                    replicas: 3,
                },
            ],
            events: vec![
                ScaleEvent {
                    at_ms: 1_000,
                    from: 1,
                    to: 5,
                },
                ScaleEvent {
                    at_ms: 10_000,
                    from: 5,
                    to: 3,
                },
                ScaleEvent {
                    at_ms: 12_000,
                    from: 3,
                    to: 4,
                },
            ],
            burst: None,
        }
    }

    #[test]
    fn windows_exclude_entries_exactly_at_the_cutoff() {
        let h = history();
        // now 16 s, window 15 s: cutoff 1 s; the entry at 1 s is out, as HPA's After().
        assert_eq!(
            h.recommendations_within(16_000, 15).collect::<Vec<_>>(),
            vec![3]
        );
        assert_eq!(h.changes_within(16_000, 15), (1, 2));
        assert_eq!(h.changes_within(15_999, 15), (5, 2));
        // a zero window sees nothing from the past, even at the same millisecond
        assert_eq!(h.recommendations_within(10_000, 0).count(), 0);
    }

    #[test]
    fn prune_keeps_only_what_the_longest_window_or_period_sees() {
        let mut h = history();
        let behavior = Behavior::default(); // windows 0/300 s, periods 15 s
        h.prune(305_000, &behavior);
        assert_eq!(h.recommendations.len(), 1, "1 s entry older than 300 s");
        assert_eq!(h.events.len(), 0, "all events older than 15 s");
        h.prune(u64::MAX, &behavior);
        assert!(h.recommendations.is_empty());
    }

    #[test]
    fn history_round_trips_through_json() {
        let h = history();
        let text = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<History>(&text).unwrap(), h);
        assert_eq!(
            serde_json::from_str::<History>("{}").unwrap(),
            History::default()
        );
    }
}
