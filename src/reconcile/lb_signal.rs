//! Reading the load balancer's signal for a policy: the stable reading a `loadBalancer`
//! metric decides on, its burst reading, and the figures `status` shows.
//!
//! The reading is a service-wide **total** (desired = ⌈total / target⌉), not per replica:
//! nginx's own answers (the 503 of an empty upstream) belong to no replica yet are demand,
//! a replica that vanished or is new has no row of its own worth trusting, and a total
//! still reads at zero replicas.

use std::time::Duration;

use super::seams::LoadSignal;
use crate::policy::{LbSignal, ScalingPolicy};
use crate::scaling::windows::{self, WindowFigures};
use crate::scaling::{MetricReading, burst_count, triggers};
use crate::signal::SignalSnapshot;
use crate::state::LbStatus;

/// Why a `loadBalancer` metric has no reading.
pub const NO_SIGNAL: &str = "no load-balancer signal for this policy yet (no request \
    reported, or no receiver: only `autoscaler run` has one)";

/// The figure of `snap` that `signal` scales on. The request rate counts every request,
/// nginx's own answers included: the larger of the hub's total and the per-replica rates
/// plus the unrouted ones, so that neither accounting loses demand.
pub fn figure(signal: LbSignal, snap: &SignalSnapshot) -> f64 {
    match signal {
        LbSignal::RequestRate => {
            let parts: f64 =
                snap.per_replica.values().map(|r| r.rate).sum::<f64>() + snap.unrouted_rate;
            snap.rate.max(parts)
        }
        LbSignal::Concurrency => snap.concurrency,
    }
}

/// The stable reading of one `loadBalancer` metric: unavailable without data, never zero.
pub fn stable_reading(
    signal: &dyn LoadSignal,
    policy: &ScalingPolicy,
    which: LbSignal,
) -> MetricReading {
    let window = Duration::from_millis(policy.spec.behavior.windows.stable_ms());
    match signal.snapshot(&policy.metadata.name, window) {
        Some(snap) => {
            let v = figure(which, &snap);
            if v.is_finite() && v >= 0.0 {
                MetricReading::Total(v)
            } else {
                MetricReading::Unavailable(format!("the signal reads {v}"))
            }
        }
        None => MetricReading::Unavailable(NO_SIGNAL.to_owned()),
    }
}

/// The burst reading of one `loadBalancer` metric, when trusted; None with burst mode off.
/// A request rate comes from `counted` when given (exact counts at exact times, see
/// [`windows::CountSamples`]; `Some(None)`: no trusted reading), else, like a
/// concurrency, from the signal's windows ([`windows::burst_reading`]).
pub fn burst_reading(
    signal: &dyn LoadSignal,
    policy: &ScalingPolicy,
    which: LbSignal,
    counted: Option<Option<f64>>,
) -> Option<f64> {
    let w = &policy.spec.behavior.windows;
    if !w.burst_enabled() {
        return None;
    }
    if which == LbSignal::RequestRate
        && let Some(counted) = counted
    {
        return counted;
    }
    let name = policy.metadata.name.as_str();
    windows::burst_reading(u64::from(w.burst_millis), |ms| {
        let snap = signal.snapshot(name, Duration::from_millis(ms))?;
        // The hub's windows are whole buckets, the current (partial) one included: a
        // window of `ms` holds `ms` to `ms` + one bucket of records, half a bucket more
        // on average. Long windows do not care; a burst window of 100 ms would read up
        // to twice the rate without this.
        let scale = ms as f64 / (ms as f64 + HUB_BUCKET_MS as f64 / 2.0);
        Some(WindowFigures {
            requests: snap.requests,
            rate: figure(LbSignal::RequestRate, &snap) * scale,
            value: figure(which, &snap) * scale,
        })
    })
    .map(|r| r.value)
}

/// Width of the signal hub's buckets (see [`crate::signal::window`]).
const HUB_BUCKET_MS: u64 = crate::signal::window::BUCKET_MS;

/// The burst trigger's cheap check between ticks: the burst count when it calls for
/// burst mode at `current` replicas (the daemon then runs a pass at once).
pub fn burst_check(
    signal: &dyn LoadSignal,
    policy: &ScalingPolicy,
    current: u32,
    counted: Option<Option<f64>>,
) -> Option<u32> {
    let inputs: Vec<crate::scaling::MetricInput> = policy
        .spec
        .metrics
        .iter()
        .filter_map(|m| match m {
            crate::policy::MetricSpec::LoadBalancer(lb) => Some(crate::scaling::MetricInput {
                name: m.display_name(),
                target_per_replica: lb.target_per_replica,
                reading: MetricReading::Unavailable(String::new()),
                burst: burst_reading(signal, policy, lb.signal, counted),
            }),
            _ => None,
        })
        .collect();
    let (wanted, _) = burst_count(&inputs)?;
    triggers(&policy.spec.behavior.windows, current, wanted).then_some(wanted)
}

/// The figures `status` and `/metrics` show, over the stable window; None while the signal
/// has no data for the policy.
pub fn status(signal: &dyn LoadSignal, policy: &ScalingPolicy) -> Option<LbStatus> {
    // Every policy's requests pass through nginx: its figures are shown whether or not a
    // `loadBalancer` metric scales on them.
    let window = Duration::from_millis(policy.spec.behavior.windows.stable_ms());
    let snap = signal.snapshot(&policy.metadata.name, window)?;
    Some(LbStatus {
        window_ms: u64::try_from(snap.window.as_millis()).unwrap_or(u64::MAX),
        rate: figure(LbSignal::RequestRate, &snap),
        concurrency: snap.concurrency,
        p50_ms: snap.p50_ms,
        p99_ms: snap.p99_ms,
        errors_5xx_rate: snap.errors_5xx_rate,
        gateway_errors_rate: snap.gateway_errors_rate,
        unrouted_rate: snap.unrouted_rate,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::signal::ReplicaSignal;

    #[test]
    fn the_request_rate_counts_every_request_once() {
        let replica = |rate| ReplicaSignal {
            rate,
            concurrency: 0.0,
        };
        // (name, hub rate, per replica, unrouted, want)
        let cases: &[(&str, f64, &[f64], f64, f64)] = &[
            (
                "hub_total_includes_everything",
                30.0,
                &[10.0, 10.0],
                10.0,
                30.0,
            ),
            ("unrouted_only_at_the_floor", 0.0, &[], 12.5, 12.5),
            (
                "hub_total_without_unrouted",
                20.0,
                &[10.0, 10.0],
                10.0,
                30.0,
            ),
            (
                "vanished_replica_still_in_the_total",
                30.0,
                &[10.0],
                0.0,
                30.0,
            ),
            ("nothing", 0.0, &[], 0.0, 0.0),
        ];
        for (name, rate, per, unrouted, want) in cases {
            let snap = SignalSnapshot {
                rate: *rate,
                unrouted_rate: *unrouted,
                concurrency: 2.5,
                per_replica: per
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (format!("127.0.0.1:{}", 8000 + i), replica(*r)))
                    .collect::<BTreeMap<_, _>>(),
                ..SignalSnapshot::default()
            };
            assert_eq!(figure(LbSignal::RequestRate, &snap), *want, "{name}");
            assert_eq!(figure(LbSignal::Concurrency, &snap), 2.5, "{name}");
        }
    }
}
