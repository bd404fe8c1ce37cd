//! Load signals from the load balancer: nginx reports every finished request of a managed
//! upstream to the operator, which aggregates them per policy and per replica over sliding
//! windows (request rate, concurrency by Little's law, latency percentiles, error rates).
//!
//! ```text
//! nginx worker ──(one syslog datagram per request, non-blocking: drops, never waits)──►
//!   receiver (record::parse, batch drain) ──► SignalHub (window::Windows) ──► readers
//! ```
//!
//! - [`record`]: the `log_format` and the parser of one datagram.
//! - [`window`]: the sliding windows (pure).
//! - [`receiver`]: the socket the operator binds before nginx starts, and its task.
//!
//! The hub is a cheap clone; every reader (metric source, status, `/metrics`, idle rule,
//! burst trigger) holds one.

pub mod receiver;
pub mod record;
pub mod window;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use receiver::{Endpoint, ReceiverError, SignalReceiver};
use record::Record;
use window::Windows;

/// One policy's load as nginx saw it over a window.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SignalSnapshot {
    /// Length of the window the figures cover.
    pub window: Duration,
    /// Requests that finished inside the window (all statuses, nginx's own 503s included).
    pub requests: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// Time-average of requests in flight (sum of request time inside the window / window).
    pub concurrency: f64,
    /// Median request time, milliseconds (None without requests).
    pub p50_ms: Option<f64>,
    /// 99th percentile request time, milliseconds.
    pub p99_ms: Option<f64>,
    /// 5xx answers per second (nginx's own and the replicas').
    pub errors_5xx_rate: f64,
    /// 502 and 504 answers per second (a replica unreachable or too slow).
    pub gateway_errors_rate: f64,
    /// Requests nginx answered itself (no replica in the upstream), per second: demand too.
    pub unrouted_rate: f64,
    /// Per replica address (`IP:PORT`, nginx's `$upstream_addr`).
    pub per_replica: BTreeMap<String, ReplicaSignal>,
}

/// One replica's share of a [`SignalSnapshot`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct ReplicaSignal {
    /// Requests per second it answered.
    pub rate: f64,
    /// Its time-average of requests in flight.
    pub concurrency: f64,
}

/// Counters of the stream itself, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StreamStats {
    /// Request records received and parsed.
    pub received_total: u64,
    /// Records lost (receiver full, unparsable, or reported dropped by the transport):
    /// the sum of the counters below that are known to be losses.
    pub dropped_total: u64,
    /// Datagrams that were not a record (oversized, not UTF-8, wrong format).
    pub unparsable_total: u64,
    /// Records known to be missing: gaps in a connection's `$connection_requests`
    /// (a datagram nginx could not send, or the kernel dropped), and records refused
    /// because the policy table was full. Losses nginx never reveals (the last requests
    /// of a connection) are not counted.
    pub gaps_total: u64,
    /// Datagrams the kernel dropped at the receiving socket (UDP only: its overflow
    /// counter; a unix socket makes nginx's send fail instead, which is counted in gaps).
    pub kernel_dropped_total: u64,
}

/// Notifications of [`SignalHub::activity`] per policy are at least this far apart.
pub const ACTIVITY_INTERVAL: Duration = Duration::from_millis(100);
/// Connections tracked for gap counting; past it the table is cleared (bounded memory).
const MAX_CONNECTIONS: usize = 65_536;

/// The shared, cheap-to-clone handle every reader uses: the pass (metric source), status,
/// `/metrics`, the scale-to-zero idle rule and the burst trigger.
#[derive(Debug, Clone)]
pub struct SignalHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Time zero of the windows' millisecond clock (tokio's, so tests can pause it).
    epoch: Instant,
    state: Mutex<State>,
    received: AtomicU64,
    unparsable: AtomicU64,
    gaps: AtomicU64,
    kernel_dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    windows: Windows,
    activity: HashMap<String, Activity>,
    /// (worker pid, connection serial) -> last `$connection_requests` seen.
    connections: HashMap<(u32, u64), u64>,
    /// When stale windows were last forgotten (ms on the hub clock).
    forgot_ms: u64,
}

#[derive(Debug)]
struct Activity {
    tx: watch::Sender<u64>,
    /// Records seen so far.
    count: u64,
    /// When `tx` last changed (ms on the hub clock).
    notified_ms: Option<u64>,
}

impl Default for SignalHub {
    fn default() -> Self {
        Self::new()
    }
}

impl SignalHub {
    /// An empty hub (no records yet); its windows start now.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                state: Mutex::new(State {
                    windows: Windows::new(0),
                    activity: HashMap::new(),
                    connections: HashMap::new(),
                    forgot_ms: 0,
                }),
                received: AtomicU64::new(0),
                unparsable: AtomicU64::new(0),
                gaps: AtomicU64::new(0),
                kernel_dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Milliseconds on the hub clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The policy's figures over the last `window`; `None` when nothing was ever received
    /// for the policy (no data is missing data, not zero load). The window is clamped to
    /// 100 ms..=60 s and to the time since the hub started (the snapshot's `window` says
    /// what it covers).
    pub fn snapshot(&self, policy: &str, window: Duration) -> Option<SignalSnapshot> {
        let now = self.now_ms();
        self.state().windows.snapshot(policy, now, window)
    }

    /// How long ago the policy's last request finished (None: never seen).
    pub fn idle_for(&self, policy: &str) -> Option<Duration> {
        let now = self.now_ms();
        self.state()
            .windows
            .idle_ms(policy, now)
            .map(Duration::from_millis)
    }

    /// A receiver whose value changes whenever new records of `policy` arrived (at most
    /// once per [`ACTIVITY_INTERVAL`]; the value is the count of records seen): the burst
    /// check and the activator wait on it.
    pub fn activity(&self, policy: &str) -> watch::Receiver<u64> {
        let mut state = self.state();
        if let Some(a) = state.activity.get(policy) {
            return a.tx.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        // Bounded like the windows: past the cap a reader gets a channel that never changes.
        if state.activity.len() < window::MAX_POLICIES {
            state.activity.insert(
                policy.to_owned(),
                Activity {
                    tx,
                    count: 0,
                    notified_ms: None,
                },
            );
        }
        rx
    }

    /// Counters of the stream.
    pub fn stats(&self) -> StreamStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let unparsable = load(&self.inner.unparsable);
        let gaps = load(&self.inner.gaps);
        let kernel = load(&self.inner.kernel_dropped);
        StreamStats {
            received_total: load(&self.inner.received),
            dropped_total: unparsable + gaps + kernel,
            unparsable_total: unparsable,
            gaps_total: gaps,
            kernel_dropped_total: kernel,
        }
    }

    /// Starts a batch of records arriving now (one lock for the whole batch).
    pub(crate) fn batch(&self) -> Batch<'_> {
        let now_ms = self.now_ms();
        Batch {
            hub: self,
            state: self.state(),
            now_ms,
        }
    }

    /// Counts a datagram that was not a record.
    pub(crate) fn count_unparsable(&self) {
        self.inner.unparsable.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the kernel's drop counter of the receiving socket (a running total).
    pub(crate) fn set_kernel_dropped(&self, total: u64) {
        self.inner.kernel_dropped.store(total, Ordering::Relaxed);
    }

    /// Sends due activity notifications (records seen, last one at least
    /// [`ACTIVITY_INTERVAL`] ago). The receiver calls it after each batch and on a timer,
    /// so the last records of a burst are announced too.
    pub(crate) fn flush_activity(&self) {
        let now = self.now_ms();
        let interval = ACTIVITY_INTERVAL.as_millis() as u64;
        for a in self.state().activity.values_mut() {
            let due = a
                .notified_ms
                .is_none_or(|t| now.saturating_sub(t) >= interval);
            if due && *a.tx.borrow() != a.count {
                a.tx.send_replace(a.count);
                a.notified_ms = Some(now);
            }
        }
    }

    /// Adds records as if received now (tests and benches without a socket).
    pub fn ingest_message(&self, message: &str) -> Result<(), record::RecordError> {
        let record = record::parse_message(message)?;
        self.batch().add(&record);
        Ok(())
    }
}

/// Records of one receive batch, under one lock.
pub(crate) struct Batch<'a> {
    hub: &'a SignalHub,
    state: MutexGuard<'a, State>,
    now_ms: u64,
}

impl Batch<'_> {
    /// Parses one datagram and adds its record, or counts it as unparsable.
    pub(crate) fn add_datagram(&mut self, datagram: &[u8]) {
        match record::parse(datagram) {
            Ok(r) => self.add(&r),
            Err(error) => {
                self.hub.count_unparsable();
                tracing::debug!(%error, "signal datagram dropped");
            }
        }
    }

    /// Adds one record.
    pub(crate) fn add(&mut self, record: &Record<'_>) {
        let inner = &self.hub.inner;
        inner.received.fetch_add(1, Ordering::Relaxed);
        let state = &mut *self.state;
        if !state.windows.add(self.now_ms, record) {
            inner.gaps.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(a) = state.activity.get_mut(record.policy) {
            a.count += 1;
        }
        // Gaps in one connection's request numbers are records that never arrived.
        let key = (record.worker, record.connection);
        if !state.connections.contains_key(&key) && state.connections.len() >= MAX_CONNECTIONS {
            state.connections.clear();
        }
        let last = state.connections.entry(key).or_insert(0);
        if *last > 0 && record.connection_requests > *last + 1 {
            inner
                .gaps
                .fetch_add(record.connection_requests - *last - 1, Ordering::Relaxed);
        }
        *last = (*last).max(record.connection_requests);
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        let now = self.now_ms;
        // Forget stale windows about once a second, on the receive path (no extra task).
        if now.saturating_sub(self.state.forgot_ms) >= 1000 {
            self.state.windows.forget_stale(now);
            self.state.forgot_ms = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REC: &str = "as1|web|200|0.010|10.0.0.1:80|0.010|1.0|7|1|";

    fn ingest(hub: &SignalHub, n: u64) {
        hub.ingest_message(&format!("{REC}{n}")).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn activity_notifies_at_most_every_interval_and_never_loses_the_tail() {
        let hub = SignalHub::new();
        let mut rx = hub.activity("web");
        let other = hub.activity("other");
        ingest(&hub, 1);
        hub.flush_activity();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        // More records within the interval: held back.
        for n in 2..=50 {
            ingest(&hub, n);
            hub.flush_activity();
        }
        assert!(!rx.has_changed().unwrap());
        // The interval passes with no new record: the timer's flush announces the tail.
        tokio::time::advance(ACTIVITY_INTERVAL).await;
        hub.flush_activity();
        assert_eq!(*rx.borrow_and_update(), 50);
        // Nothing new: no notification.
        tokio::time::advance(ACTIVITY_INTERVAL).await;
        hub.flush_activity();
        assert!(!rx.has_changed().unwrap());
        assert!(!other.has_changed().unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_for_and_snapshot_follow_the_clock() {
        let hub = SignalHub::new();
        assert_eq!(hub.idle_for("web"), None);
        assert_eq!(hub.snapshot("web", Duration::from_secs(5)), None);
        tokio::time::advance(Duration::from_secs(10)).await;
        for n in 1..=20 {
            ingest(&hub, n);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(hub.idle_for("web"), Some(Duration::from_secs(2)));
        let s = hub.snapshot("web", Duration::from_secs(5)).unwrap();
        assert_eq!(s.requests, 20);
        assert_eq!(s.window, Duration::from_secs(5));
        assert!((s.rate - 4.0).abs() < 1e-9);
        assert!((s.concurrency - 0.04).abs() < 1e-9);
        assert_eq!(hub.stats().received_total, 20);
    }

    #[test]
    fn connection_gaps_are_counted_as_drops() {
        let hub = SignalHub::new();
        // Connection 1 of worker 7: requests 1, 2, 5 (3 and 4 lost); connection 2: 1.
        for msg in [
            "as1|web|200|0.001|-|-|1.0|7|1|1",
            "as1|web|200|0.001|-|-|1.0|7|1|2",
            "as1|web|200|0.001|-|-|1.0|7|1|5",
            "as1|web|200|0.001|-|-|1.0|7|2|1",
            "as1|web|200|0.001|-|-|1.0|8|1|1",
        ] {
            hub.ingest_message(msg).unwrap();
        }
        let stats = hub.stats();
        assert_eq!(stats.received_total, 5);
        assert_eq!(stats.gaps_total, 2);
        assert_eq!(stats.dropped_total, 2);
        assert!(hub.ingest_message("garbage").is_err());
    }
}
