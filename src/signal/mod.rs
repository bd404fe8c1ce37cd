//! Load signals from the load balancer: nginx reports every finished request of a managed
//! upstream to the operator, which aggregates them per policy and per replica over sliding
//! windows (request rate, concurrency by Little's law, latency percentiles, error rates).
//!
//! This file fixes the interface the rest of the operator reads; the transport (how nginx
//! reports) and the aggregation live beside it.
//!
//! STUB (interface only): the receiver and windows are filled in by issue 14's signal work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

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
    /// Records lost (receiver full, unparsable, or reported dropped by the transport).
    pub dropped_total: u64,
}

/// The shared, cheap-to-clone handle every reader uses: the pass (metric source), status,
/// `/metrics`, the scale-to-zero idle rule and the burst trigger.
#[derive(Debug, Clone, Default)]
pub struct SignalHub {
    inner: Arc<()>,
}

impl SignalHub {
    /// An empty hub (no records yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The policy's figures over the last `window`; `None` when nothing was ever received
    /// for the policy (no data is missing data, not zero load).
    pub fn snapshot(&self, policy: &str, window: Duration) -> Option<SignalSnapshot> {
        let _ = (&self.inner, policy, window);
        None
    }

    /// How long ago the policy's last request finished (None: never seen).
    pub fn idle_for(&self, policy: &str) -> Option<Duration> {
        let _ = policy;
        None
    }

    /// A receiver whose value changes whenever new records of `policy` arrived (at most a
    /// few times per second): the burst check and the activator wait on it.
    pub fn activity(&self, policy: &str) -> tokio::sync::watch::Receiver<u64> {
        let _ = policy;
        tokio::sync::watch::channel(0).1
    }

    /// Counters of the stream.
    pub fn stats(&self) -> StreamStats {
        StreamStats::default()
    }
}
