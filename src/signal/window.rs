//! Sliding windows over request records, per policy and per replica (pure: time is a
//! millisecond count the caller passes).
//!
//! - Policy counts live in [`BUCKET_MS`] buckets (a ring covering [`MAX_WINDOW_MS`]):
//!   requests, the sum of request times (Little's law: sum / window = the time-average of
//!   requests in flight), 5xx, 502/504 and unrouted answers.
//! - Latency percentiles come from one HDR histogram per second (1 ms .. 1 h, 2
//!   significant digits, ~8 KiB each, created only for seconds that had requests),
//!   merged over the window: per-100 ms histograms would cost 10x the memory.
//! - Per-replica counts use one-second buckets (so a policy with many replicas stays
//!   small); their window is rounded out to whole seconds.
//!
//! Memory is bounded: [`MAX_POLICIES`] policies, [`MAX_REPLICAS`] replicas each; a replica
//! or policy without a record for [`MAX_WINDOW_MS`] is forgotten (the policy's "last seen"
//! time survives for `idle_for`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::record::Record;
use super::{ReplicaSignal, SignalSnapshot};

/// Width of one policy bucket, milliseconds.
pub const BUCKET_MS: u64 = 100;
/// Longest window a snapshot can cover, milliseconds.
pub const MAX_WINDOW_MS: u64 = 60_000;
/// Most policies tracked at once; past it the least recently seen one is forgotten.
pub const MAX_POLICIES: usize = 256;
/// Most replicas tracked per policy; records of further replicas count for the policy only.
pub const MAX_REPLICAS: usize = 128;

const BUCKETS: usize = (MAX_WINDOW_MS / BUCKET_MS) as usize;
const SECONDS: usize = (MAX_WINDOW_MS / 1000) as usize;
/// Highest latency the histograms hold, milliseconds (longer requests are clamped).
const MAX_LATENCY_MS: u64 = 3_600_000;

/// A ring of `T` keyed by an absolute slot number (bucket index since time zero).
#[derive(Debug, Clone)]
struct Ring<T> {
    slots: Vec<(u64, T)>,
}

impl<T: Default + Clone> Ring<T> {
    fn new(len: usize) -> Self {
        Self {
            slots: vec![(u64::MAX, T::default()); len],
        }
    }

    /// The slot for absolute index `idx`, reset if it held an older index.
    fn slot(&mut self, idx: u64) -> &mut T {
        let len = self.slots.len() as u64;
        let (at, value) = &mut self.slots[(idx % len) as usize];
        if *at != idx {
            *at = idx;
            *value = T::default();
        }
        value
    }

    /// Values of the slots with absolute index in `from..=to`.
    fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .filter(move |(at, _)| *at != u64::MAX && (from..=to).contains(at))
            .map(|(_, v)| v)
    }
}

/// One policy bucket.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    time_sum: f64,
    errors_5xx: u64,
    gateway: u64,
    unrouted: u64,
}

/// One replica second.
#[derive(Debug, Clone, Copy, Default)]
struct ReplicaCounts {
    requests: u64,
    time_sum: f64,
}

#[derive(Debug)]
struct ReplicaWindow {
    seconds: Ring<ReplicaCounts>,
    last_ms: u64,
}

#[derive(Debug)]
struct PolicyWindow {
    buckets: Ring<Counts>,
    histograms: Ring<Option<Box<Histogram<u32>>>>,
    replicas: HashMap<SocketAddr, ReplicaWindow>,
    last_ms: u64,
}

impl PolicyWindow {
    fn new() -> Self {
        Self {
            buckets: Ring::new(BUCKETS),
            histograms: Ring::new(SECONDS),
            replicas: HashMap::new(),
            last_ms: 0,
        }
    }

    fn add(&mut self, now_ms: u64, record: &Record<'_>) {
        self.last_ms = now_ms;
        let time = record.request_time;
        let b = self.buckets.slot(now_ms / BUCKET_MS);
        b.requests += 1;
        b.time_sum += time;
        if (500..=599).contains(&record.status) {
            b.errors_5xx += 1;
        }
        if matches!(record.status, 502 | 504) {
            b.gateway += 1;
        }
        if record.replica.is_none() {
            b.unrouted += 1;
        }
        let second = now_ms / 1000;
        let hist = self.histograms.slot(second);
        if hist.is_none() {
            *hist = Histogram::new_with_bounds(1, MAX_LATENCY_MS, 2)
                .ok()
                .map(Box::new);
        }
        if let Some(h) = hist {
            let ms = (time * 1000.0).round().clamp(0.0, MAX_LATENCY_MS as f64) as u64;
            h.saturating_record(ms);
        }
        if let Some(addr) = record.replica {
            if !self.replicas.contains_key(&addr) && self.replicas.len() >= MAX_REPLICAS {
                self.forget_stale_replicas(now_ms);
            }
            if self.replicas.len() < MAX_REPLICAS || self.replicas.contains_key(&addr) {
                let r = self.replicas.entry(addr).or_insert_with(|| ReplicaWindow {
                    seconds: Ring::new(SECONDS),
                    last_ms: now_ms,
                });
                r.last_ms = now_ms;
                let s = r.seconds.slot(second);
                s.requests += 1;
                s.time_sum += time;
            }
        }
    }

    fn forget_stale_replicas(&mut self, now_ms: u64) {
        self.replicas
            .retain(|_, r| now_ms.saturating_sub(r.last_ms) < MAX_WINDOW_MS);
    }

    fn snapshot(&self, now_ms: u64, covered_ms: u64) -> SignalSnapshot {
        let seconds = covered_ms as f64 / 1000.0;
        let now_idx = now_ms / BUCKET_MS;
        let from_idx = now_ms.saturating_sub(covered_ms) / BUCKET_MS;
        let mut sum = Counts::default();
        for b in self.buckets.range(from_idx, now_idx) {
            sum.requests += b.requests;
            sum.time_sum += b.time_sum;
            sum.errors_5xx += b.errors_5xx;
            sum.gateway += b.gateway;
            sum.unrouted += b.unrouted;
        }
        let now_s = now_ms / 1000;
        let from_s = now_ms.saturating_sub(covered_ms) / 1000;
        let mut merged: Option<Histogram<u32>> = None;
        for h in self.histograms.range(from_s, now_s).flatten() {
            match &mut merged {
                None => merged = Some((**h).clone()),
                Some(m) => {
                    // Same bounds everywhere: add cannot fail short of a count overflow.
                    let _ = m.add(&**h);
                }
            }
        }
        let quantile = |q: f64| {
            merged
                .as_ref()
                .filter(|h| !h.is_empty() && sum.requests > 0)
                .map(|h| h.lowest_equivalent(h.value_at_quantile(q)) as f64)
        };
        let per_replica = self
            .replicas
            .iter()
            .filter_map(|(addr, r)| {
                let (n, t) = r
                    .seconds
                    .range(from_s, now_s)
                    .fold((0u64, 0.0), |(n, t), c| (n + c.requests, t + c.time_sum));
                (n > 0).then(|| {
                    (
                        addr.to_string(),
                        ReplicaSignal {
                            rate: n as f64 / seconds,
                            concurrency: t / seconds,
                        },
                    )
                })
            })
            .collect::<BTreeMap<_, _>>();
        SignalSnapshot {
            window: Duration::from_millis(covered_ms),
            requests: sum.requests,
            rate: sum.requests as f64 / seconds,
            concurrency: sum.time_sum / seconds,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
            errors_5xx_rate: sum.errors_5xx as f64 / seconds,
            gateway_errors_rate: sum.gateway as f64 / seconds,
            unrouted_rate: sum.unrouted as f64 / seconds,
            per_replica,
        }
    }
}

/// Every policy's windows, plus when each policy was last seen.
#[derive(Debug)]
pub struct Windows {
    /// Time (ms) the stream started: windows never reach before it, since nothing was
    /// received then (a rate over 6 s one second after start divides by 1 s).
    start_ms: u64,
    policies: HashMap<String, PolicyWindow>,
    last_seen: HashMap<String, u64>,
}

impl Windows {
    /// Empty windows for a stream that starts at `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            start_ms,
            policies: HashMap::new(),
            last_seen: HashMap::new(),
        }
    }

    /// Adds a record that arrived at `now_ms`. Returns false when it was not kept (the
    /// policy table is full of policies seen within the last window).
    pub fn add(&mut self, now_ms: u64, record: &Record<'_>) -> bool {
        if !self.last_seen.contains_key(record.policy) && self.last_seen.len() >= MAX_POLICIES {
            self.evict_oldest(now_ms);
            if self.last_seen.len() >= MAX_POLICIES {
                return false;
            }
        }
        match self.last_seen.get_mut(record.policy) {
            Some(t) => *t = now_ms,
            None => {
                self.last_seen.insert(record.policy.to_owned(), now_ms);
            }
        }
        let window = match self.policies.get_mut(record.policy) {
            Some(w) => w,
            None => self
                .policies
                .entry(record.policy.to_owned())
                .or_insert_with(PolicyWindow::new),
        };
        window.add(now_ms, record);
        true
    }

    /// Forgets the least recently seen policy if it is stale (no record for a window).
    fn evict_oldest(&mut self, now_ms: u64) {
        let oldest = self
            .last_seen
            .iter()
            .min_by_key(|(_, t)| **t)
            .map(|(p, t)| (p.clone(), *t));
        if let Some((policy, t)) = oldest
            && now_ms.saturating_sub(t) >= MAX_WINDOW_MS
        {
            self.last_seen.remove(&policy);
            self.policies.remove(&policy);
        }
    }

    /// Drops the windows (not the last-seen times) of policies and replicas idle for a
    /// whole [`MAX_WINDOW_MS`]: their snapshot is all zeros anyway.
    pub fn forget_stale(&mut self, now_ms: u64) {
        self.policies.retain(|_, w| {
            w.forget_stale_replicas(now_ms);
            now_ms.saturating_sub(w.last_ms) < MAX_WINDOW_MS
        });
    }

    /// The policy's figures over the `window` ending at `now_ms`; `None` if it was never
    /// seen. The window is clamped to `BUCKET_MS..=MAX_WINDOW_MS` and to the time since
    /// the stream started.
    pub fn snapshot(&self, policy: &str, now_ms: u64, window: Duration) -> Option<SignalSnapshot> {
        self.last_seen.get(policy)?;
        let wanted = u64::try_from(window.as_millis())
            .unwrap_or(u64::MAX)
            .clamp(BUCKET_MS, MAX_WINDOW_MS);
        let covered = wanted.min(now_ms.saturating_sub(self.start_ms).max(BUCKET_MS));
        Some(match self.policies.get(policy) {
            Some(w) => w.snapshot(now_ms, covered),
            None => SignalSnapshot {
                window: Duration::from_millis(covered),
                ..SignalSnapshot::default()
            },
        })
    }

    /// Milliseconds since the policy's last record, `None` if never seen.
    pub fn idle_ms(&self, policy: &str, now_ms: u64) -> Option<u64> {
        self.last_seen
            .get(policy)
            .map(|t| now_ms.saturating_sub(*t))
    }

    /// Number of policies with windows (for tests and bounds checks).
    pub fn tracked_policies(&self) -> usize {
        self.policies.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(policy: &str, status: u16, time: f64, replica: Option<&str>) -> Record<'static> {
        Record {
            policy: Box::leak(policy.to_owned().into_boxed_str()),
            status,
            request_time: time,
            replica: replica.map(|r| r.parse().unwrap()),
            upstream_time: replica.map(|_| time),
            msec: 0.0,
            worker: 1,
            connection: 1,
            connection_requests: 1,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn never_seen_is_none_and_seen_but_idle_is_zero() {
        let mut w = Windows::new(0);
        assert_eq!(w.snapshot("web", 10_000, Duration::from_secs(5)), None);
        assert_eq!(w.idle_ms("web", 10_000), None);
        assert!(w.add(1_000, &rec("web", 200, 0.1, Some("10.0.0.1:80"))));
        w.forget_stale(200_000);
        assert_eq!(w.tracked_policies(), 0);
        let s = w.snapshot("web", 200_000, Duration::from_secs(5)).unwrap();
        assert_eq!(s.requests, 0);
        assert_eq!(s.rate, 0.0);
        assert_eq!(s.p50_ms, None);
        assert_eq!(w.idle_ms("web", 200_000), Some(199_000));
    }

    #[test]
    fn rate_concurrency_and_errors_over_a_window() {
        let mut w = Windows::new(0);
        // 10 s of 20 req/s, 0.5 s each: concurrency 10 by Little's law.
        for i in 0..200u64 {
            let t = 100_000 + i * 50;
            let replica = if i % 2 == 0 {
                "10.0.0.1:80"
            } else {
                "10.0.0.2:80"
            };
            assert!(w.add(t, &rec("web", 200, 0.5, Some(replica))));
        }
        let now = 100_000 + 200 * 50;
        let s = w.snapshot("web", now, Duration::from_secs(10)).unwrap();
        assert_eq!(s.window, Duration::from_secs(10));
        assert_eq!(s.requests, 200);
        assert!(close(s.rate, 20.0), "{}", s.rate);
        assert!(close(s.concurrency, 10.0), "{}", s.concurrency);
        assert_eq!(s.p50_ms, Some(500.0));
        assert_eq!(s.per_replica.len(), 2);
        // A 2 s window sees only the last 40 requests.
        let s = w.snapshot("web", now, Duration::from_secs(2)).unwrap();
        assert_eq!(s.requests, 40);
        assert!(close(s.rate, 20.0));
    }

    #[test]
    fn status_mix() {
        let mut w = Windows::new(0);
        let cases = [
            (200, Some("10.0.0.1:80")),
            (499, Some("10.0.0.1:80")),
            (500, Some("10.0.0.1:80")),
            (502, Some("10.0.0.1:80")),
            (504, Some("10.0.0.1:80")),
            (503, None), // nginx's own answer for an empty upstream
            (502, None), // no live upstreams
        ];
        for (status, replica) in cases {
            w.add(5_000, &rec("web", status, 0.01, replica));
        }
        let s = w.snapshot("web", 5_000, Duration::from_secs(1)).unwrap();
        assert_eq!(s.requests, 7);
        assert!(close(s.errors_5xx_rate, 5.0));
        assert!(close(s.gateway_errors_rate, 3.0));
        assert!(close(s.unrouted_rate, 2.0));
        assert_eq!(s.per_replica["10.0.0.1:80"].rate, 5.0);
    }

    #[test]
    fn window_never_reaches_before_the_start() {
        let mut w = Windows::new(10_000);
        for i in 0..10 {
            w.add(10_000 + i * 100, &rec("web", 200, 0.0, None));
        }
        let s = w.snapshot("web", 11_000, Duration::from_secs(6)).unwrap();
        assert_eq!(s.window, Duration::from_secs(1));
        assert!(close(s.rate, 10.0));
        // Zero and absurd windows are clamped.
        let s = w.snapshot("web", 11_000, Duration::ZERO).unwrap();
        assert_eq!(s.window, Duration::from_millis(BUCKET_MS));
        let s = w.snapshot("web", 200_000, Duration::MAX).unwrap();
        assert_eq!(s.window, Duration::from_millis(MAX_WINDOW_MS));
    }

    #[test]
    fn ugly_times_are_clamped_not_lost() {
        let mut w = Windows::new(0);
        w.add(1_000, &rec("web", 200, 0.0, None));
        w.add(1_000, &rec("web", 200, 1e9, None));
        let s = w.snapshot("web", 1_000, Duration::from_secs(1)).unwrap();
        assert_eq!(s.requests, 2);
        assert_eq!(s.p50_ms, Some(0.0));
        assert!(s.p99_ms.unwrap() >= MAX_LATENCY_MS as f64 * 0.99);
    }

    #[test]
    fn ring_slots_are_reused_after_a_full_turn() {
        let mut w = Windows::new(0);
        w.add(1_000, &rec("web", 200, 0.1, Some("10.0.0.1:80")));
        // Exactly one ring later the old bucket must not be counted.
        let later = 1_000 + MAX_WINDOW_MS;
        w.add(later, &rec("web", 200, 0.1, Some("10.0.0.1:80")));
        let s = w
            .snapshot("web", later, Duration::from_millis(BUCKET_MS))
            .unwrap();
        assert_eq!(s.requests, 1);
        let s = w.snapshot("web", later, Duration::from_secs(60)).unwrap();
        assert_eq!(s.requests, 1);
    }

    #[test]
    fn bounded_policies_and_replicas() {
        let mut w = Windows::new(0);
        for i in 0..MAX_POLICIES {
            assert!(w.add(1_000, &rec(&format!("p{i}"), 200, 0.1, None)));
        }
        // Full of fresh policies: a new one is refused.
        assert!(!w.add(2_000, &rec("late", 200, 0.1, None)));
        // Once the oldest is stale it gives way.
        assert!(w.add(1_000 + MAX_WINDOW_MS, &rec("late", 200, 0.1, None)));
        assert_eq!(w.last_seen.len(), MAX_POLICIES);

        let mut w = Windows::new(0);
        for i in 0..(MAX_REPLICAS + 10) {
            let addr = format!("10.0.{}.{}:80", i / 256, i % 256);
            w.add(1_000, &rec("web", 200, 0.1, Some(&addr)));
        }
        let s = w.snapshot("web", 1_000, Duration::from_secs(1)).unwrap();
        assert_eq!(s.requests, (MAX_REPLICAS + 10) as u64);
        assert_eq!(s.per_replica.len(), MAX_REPLICAS);
    }
}
