//! The demo backend's own metrics: request counter, in-flight gauge, process start time.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// The `Content-Type` of [`DemoMetrics::encode`]'s output (prometheus-client writes OpenMetrics).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label set of `http_requests_total`: the route (`/` or `other`) and the status class.
type RequestLabels = [(&'static str, &'static str); 2];

/// Shared handles to the metrics the handlers update.
#[derive(Debug, Clone)]
pub struct DemoMetrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    in_flight: Gauge,
}

impl DemoMetrics {
    /// Registers every metric; `process_start_time_seconds` is set to the current time.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        // Expose the main series at 0 from the start (Prometheus' advice for known label
        // values): a fresh replica then reports a rate of 0 instead of a missing family.
        let _ = requests.get_or_create(&[("path", "/"), ("code", "2xx")]);
        // prometheus-client appends `_total` itself (and panics in debug if we do).
        registry.register(
            "http_requests",
            "HTTP requests served, by route and status class (scrapes and health checks excluded)",
            requests.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served now (scrapes excluded)",
            in_flight.clone(),
        );
        let start = Gauge::<f64, AtomicU64>::default();
        start.set(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            start,
        );
        DemoMetrics {
            registry: Arc::new(registry),
            requests,
            in_flight,
        }
    }

    /// Marks a request as started; dropping the guard marks it finished (also on cancel).
    pub fn start_request(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Counts one finished request of `route` whose status was `status`.
    pub fn count(&self, route: &'static str, status: u16) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.requests
            .get_or_create(&[("path", route), ("code", class)])
            .inc();
    }

    /// The exposition text served on `/metrics`.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for DemoMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Decrements `http_requests_in_flight` when dropped.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
