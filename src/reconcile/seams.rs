//! The boundaries a pass talks to besides the runtime and the load balancer: metric
//! sources, the load balancer's signal, the readiness probe, host ports and the clock. Each is a small trait with its
//! real implementation here and an in-process fake in [`super::testing`].

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;

use crate::metrics::{MetricsError, Scraper, SeriesValue};
use crate::policy::PrometheusMetric;
use crate::runtime::probe::{self, ProbeError};
use crate::signal::{SignalHub, SignalSnapshot};

/// What nginx saw of each policy's requests (the load-balancer signal).
pub trait LoadSignal: Send + Sync {
    /// The policy's figures over the last `window`; `None` without data (never zero load).
    fn snapshot(&self, policy: &str, window: Duration) -> Option<SignalSnapshot>;
    /// Changes whenever new requests of `policy` were reported: the burst check waits on it.
    fn activity(&self, policy: &str) -> tokio::sync::watch::Receiver<u64>;
    /// Counters of the stream itself (for `/metrics`).
    fn stats(&self) -> crate::signal::StreamStats {
        crate::signal::StreamStats::default()
    }
}

impl LoadSignal for SignalHub {
    fn snapshot(&self, policy: &str, window: Duration) -> Option<SignalSnapshot> {
        SignalHub::snapshot(self, policy, window)
    }

    fn activity(&self, policy: &str) -> tokio::sync::watch::Receiver<u64> {
        SignalHub::activity(self, policy)
    }

    fn stats(&self) -> crate::signal::StreamStats {
        SignalHub::stats(self)
    }
}

/// Where metric values come from: replica expositions and a Prometheus server.
pub trait MetricSource: Send + Sync {
    /// Every series of counter `family` in the exposition at `http://addr{path}`.
    fn series<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SeriesValue>, MetricsError>>;

    /// The sum of gauge `family` at `http://addr{path}` (the drain's in-flight gauge).
    fn gauge<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>>;

    /// The single value of a Prometheus source's instant query (its TLS and credentials
    /// included).
    fn query<'a>(
        &'a self,
        source: &'a PrometheusMetric,
    ) -> BoxFuture<'a, Result<f64, MetricsError>>;
}

impl MetricSource for Scraper {
    fn series<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SeriesValue>, MetricsError>> {
        Box::pin(self.family_series(addr, path, family))
    }

    fn gauge<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(self.family_sum(addr, path, family))
    }

    fn query<'a>(
        &'a self,
        source: &'a PrometheusMetric,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(self.prometheus_source(source))
    }
}

/// Readiness probing of a replica through its published port.
pub trait Probe: Send + Sync {
    /// One probe: true when `GET path` answers 2xx within `timeout`.
    fn check<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, bool>;

    /// Probes every `period` until ready, giving up after `timeout`.
    fn wait_ready<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        period: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProbeError>>;
}

/// The real probe: one HTTP/1.1 GET per attempt.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpProbe;

impl Probe for HttpProbe {
    fn check<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(probe::probe_once(addr, path, timeout))
    }

    fn wait_ready<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        period: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProbeError>> {
        Box::pin(probe::wait_ready(addr, path, period, timeout))
    }
}

/// Whether host addresses can be bound right now (replica ports, listen addresses).
pub trait HostPorts: Send + Sync {
    /// True when a TCP listener could bind `addr` at this moment.
    fn is_free(&self, addr: SocketAddr) -> bool;
}

/// The real host: binds a listener and drops it at once.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemPorts;

impl HostPorts for SystemPorts {
    fn is_free(&self, addr: SocketAddr) -> bool {
        TcpListener::bind(addr).is_ok()
    }
}

/// Time as the pass sees it.
///
/// Windows, intervals and timeouts follow [`Clock::now_ms`], which only moves forward
/// with the monotonic clock; [`Clock::wall_ms`] is for what people read (events, status).
pub trait Clock: Send + Sync {
    /// Milliseconds for the scaling core: wall time at start plus monotonic time since.
    /// A wall clock that jumps while the process runs does not move it.
    fn now_ms(&self) -> u64;
    /// Wall-clock milliseconds since the epoch, for display and persistence.
    fn wall_ms(&self) -> u64;
}

/// The real clock: anchored to the wall clock once, then advanced by tokio's monotonic
/// clock (so `tokio::time::pause` controls it in tests).
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    anchor_wall_ms: u64,
    anchor: tokio::time::Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            anchor_wall_ms: wall_now_ms(),
            anchor: tokio::time::Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let elapsed = u64::try_from(self.anchor.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.anchor_wall_ms.saturating_add(elapsed)
    }

    fn wall_ms(&self) -> u64 {
        wall_now_ms()
    }
}

/// Wall-clock milliseconds since the epoch (0 before 1970).
pub fn wall_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Every boundary of a pass besides the runtime and the load balancer.
#[derive(Clone)]
pub struct Seams {
    /// Replica scrapes and Prometheus queries.
    pub metrics: Arc<dyn MetricSource>,
    /// The load balancer's signal.
    pub signal: Arc<dyn LoadSignal>,
    /// Readiness probes.
    pub probe: Arc<dyn Probe>,
    /// Host port checks.
    pub ports: Arc<dyn HostPorts>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl Seams {
    /// The real boundaries: HTTP scrapes with `scrape_timeout`, the signal `hub` (an
    /// empty one without a receiver, e.g. under `reconcile --once`: no data), HTTP probes,
    /// host binds, the system clock.
    pub fn real(scrape_timeout: Duration, hub: SignalHub) -> Result<Self, MetricsError> {
        Ok(Self {
            metrics: Arc::new(Scraper::new(scrape_timeout)?),
            signal: Arc::new(hub),
            probe: Arc::new(HttpProbe),
            ports: Arc::new(SystemPorts),
            clock: Arc::new(SystemClock::default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn system_clock_follows_the_monotonic_clock() {
        let clock = SystemClock::default();
        let start = clock.now_ms();
        tokio::time::advance(Duration::from_secs(90)).await;
        let moved = clock.now_ms() - start;
        assert!((90_000..90_050).contains(&moved), "moved {moved} ms");
    }

    #[test]
    fn a_bound_port_is_not_free() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let addr = held.local_addr().expect("local addr");
        assert!(!SystemPorts.is_free(addr));
        drop(held);
        assert!(SystemPorts.is_free(addr));
    }
}
