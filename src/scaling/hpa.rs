//! The HPA v2 strategy: largest metric proposal → stabilization windows → rate policies and min/max.
//!
//! Same order and semantics as the Kubernetes controller with `behavior` set:
//! 1. every metric proposes a count; the largest wins; if a metric failed, a
//!    scale-down is refused (and if all failed, the count is held);
//! 2. stabilization: the result is at least the minimum of the recommendations in the
//!    scale-up window and at most the maximum of those in the scale-down window, both
//!    windows including the recommendation made now;
//! 3. rate: the change is limited by the direction's policies, each measured from the
//!    count at the start of its period (current minus what the events in that period
//!    added, plus what they removed), combined by `selectPolicy`; then min/max.

use super::replicas::{self, Proposal};
use super::{Decision, History};
use super::{DecisionInput, Limit, finish};
use crate::policy::types::{Direction, RatePolicyKind, ResolvedRules, SelectPolicy};

/// Decides with the HPA strategy; `input.current` is already within `min..=max`.
pub(super) fn decide(input: &DecisionInput) -> Decision {
    let current = input.current;
    let proposals: Vec<Proposal> = input
        .metrics
        .iter()
        .map(|m| replicas::evaluate(m, input))
        .collect();
    let failed = proposals.iter().filter(|p| p.replicas.is_none()).count();
    let best = proposals
        .iter()
        .filter_map(|p| p.replicas.map(|r| (r, p)))
        .max_by_key(|(r, _)| *r);
    let statuses = || proposals.iter().map(|p| p.status.clone()).collect();
    let Some((raw, winner)) = best else {
        let what = format!("holding at {current}");
        let limit = Limit::MetricsUnavailable { all: true };
        return finish(current, current, Some(limit), statuses(), false, None, what);
    };
    if failed > 0 && raw < current {
        // HPA returns an error here: no recommendation is recorded, nothing changes.
        let what = format!("holding at {current} (metrics want {raw})");
        let limit = Limit::MetricsUnavailable { all: false };
        return finish(current, current, Some(limit), statuses(), true, None, what);
    }

    let up = input.behavior.scale_up.resolve(Direction::Up);
    let down = input.behavior.scale_down.resolve(Direction::Down);
    let (stabilized, stab_limit) = stabilize(input, raw, &up, &down);
    let (desired, rate_limit) = limit_rate(input, stabilized, &up, &down);
    let limit = rate_limit.or(stab_limit).or_else(|| {
        if raw == current {
            winner.hold.clone()
        } else {
            None
        }
    });
    let what = if desired == current {
        if raw == current {
            format!("holding at {current}")
        } else {
            format!("holding at {current} (wanted {raw})")
        }
    } else if desired == raw {
        format!("{current} → {desired}")
    } else {
        format!("{current} → {desired} (wanted {raw})")
    };
    finish(current, desired, limit, statuses(), true, Some(raw), what)
}

/// Applies both stabilization windows to the raw recommendation `raw`.
fn stabilize(
    input: &DecisionInput,
    raw: u32,
    up: &ResolvedRules,
    down: &ResolvedRules,
) -> (u32, Option<Limit>) {
    let h: &History = input.history;
    let up_floor = h
        .recommendations_within(input.now_ms, up.stabilization_window_seconds)
        .fold(raw, u32::min);
    let mut down_ceiling = h
        .recommendations_within(input.now_ms, down.stabilization_window_seconds)
        .fold(raw, u32::max);
    // A policy seen for the first time (or after its history expired) has not watched
    // the load for a whole window yet: like HPA's controller start, count the current
    // size as a recommendation so a restart never scales down at once.
    if h.recommendations.is_empty() && down.stabilization_window_seconds > 0 {
        down_ceiling = down_ceiling.max(input.current);
    }
    let stabilized = input.current.max(up_floor).min(down_ceiling);
    // Compared with what min/max would allow anyway: a window that holds at 1 while the
    // metrics want 0 under `min: 1` held nothing (the reason must not say it did).
    let bounds = input.replicas;
    let wanted = if bounds.min <= bounds.max {
        raw.clamp(bounds.min, bounds.max)
    } else {
        raw
    };
    let limit = match stabilized.cmp(&wanted) {
        std::cmp::Ordering::Equal => None,
        std::cmp::Ordering::Greater => Some(Limit::Stabilization {
            direction: Direction::Down,
            window_seconds: down.stabilization_window_seconds,
            wanted,
        }),
        std::cmp::Ordering::Less => Some(Limit::Stabilization {
            direction: Direction::Up,
            window_seconds: up.stabilization_window_seconds,
            wanted,
        }),
    };
    (stabilized, limit)
}

/// Limits `target` by the rate policies of its direction, then by min/max.
fn limit_rate(
    input: &DecisionInput,
    target: u32,
    up: &ResolvedRules,
    down: &ResolvedRules,
) -> (u32, Option<Limit>) {
    let current = input.current;
    let bounds = input.replicas;
    if target > current {
        let rate = rate_bound(input, Direction::Up, up);
        let rate_value = rate.as_ref().map_or(current, |(v, _)| (*v).max(current));
        let (allowed, limit) = if bounds.max > rate_value {
            let limit = match rate {
                Some((_, limit)) => limit,
                None => Limit::Disabled(Direction::Up),
            };
            (rate_value, limit)
        } else {
            (bounds.max, Limit::Max(bounds.max))
        };
        if target > allowed {
            return (allowed, Some(with_allowed(limit, allowed)));
        }
    } else if target < current {
        let rate = rate_bound(input, Direction::Down, down);
        let rate_value = rate.as_ref().map_or(current, |(v, _)| (*v).min(current));
        let (allowed, limit) = if bounds.min < rate_value {
            let limit = match rate {
                Some((_, limit)) => limit,
                None => Limit::Disabled(Direction::Down),
            };
            (rate_value, limit)
        } else {
            (bounds.min, Limit::Min(bounds.min))
        };
        if target < allowed {
            return (allowed, Some(with_allowed(limit, allowed)));
        }
    }
    (target, None)
}

fn with_allowed(limit: Limit, value: u32) -> Limit {
    match limit {
        Limit::Rate {
            direction,
            policy,
            select,
            ..
        } => Limit::Rate {
            direction,
            policy,
            select,
            allowed: value,
        },
        other => other,
    }
}

/// The count the direction's policies allow now, and the policy that set it; `None`
/// when the direction is disabled (or has no policy).
fn rate_bound(
    input: &DecisionInput,
    direction: Direction,
    rules: &ResolvedRules,
) -> Option<(u32, Limit)> {
    if rules.select_policy == SelectPolicy::Disabled {
        return None;
    }
    let current = i64::from(input.current);
    let mut chosen: Option<(i64, &crate::policy::types::RatePolicy)> = None;
    for policy in &rules.policies {
        let (added, removed) = input
            .history
            .changes_within(input.now_ms, policy.period_seconds);
        let start = (current - i64::from(added) + i64::from(removed)).max(0);
        let value = i64::from(policy.value);
        let proposed = match (direction, policy.kind) {
            (Direction::Up, RatePolicyKind::Pods) => start + value,
            // Rounded up so a small count can always grow (as HPA).
            (Direction::Up, RatePolicyKind::Percent) => (start * (100 + value) + 99) / 100,
            (Direction::Down, RatePolicyKind::Pods) => start - value,
            // Truncated toward zero (as HPA).
            (Direction::Down, RatePolicyKind::Percent) => start * (100 - value.min(100)) / 100,
        };
        // Max picks the largest change: the highest bound up, the lowest down.
        let better = match (chosen, direction, rules.select_policy) {
            (None, ..) => true,
            (Some((best, _)), Direction::Up, SelectPolicy::Max)
            | (Some((best, _)), Direction::Down, SelectPolicy::Min) => proposed > best,
            (Some((best, _)), _, _) => proposed < best,
        };
        if better {
            chosen = Some((proposed, policy));
        }
    }
    let (value, policy) = chosen?;
    let value = u32::try_from(value.max(0)).unwrap_or(u32::MAX);
    Some((
        value,
        Limit::Rate {
            direction,
            policy: policy.clone(),
            select: rules.select_policy,
            allowed: value,
        },
    ))
}

#[cfg(test)]
mod tests;
