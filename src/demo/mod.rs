//! The demo backend the image runs: `/`, `/metrics`, `/healthz`, load knobs, graceful shutdown.
//!
//! What the operator scales in the examples and tests. Each request to `/` may sleep
//! (`latency`) and spin the CPU (`work`) so that load is realistic; `/metrics` exposes
//! `http_requests_total{path,code}` (scrapes of `/metrics` and `/healthz` are not
//! counted), `http_requests_in_flight` (what the operator's drain waits on) and
//! `process_start_time_seconds` (unless `expose_metrics` is off: then `/metrics` is a
//! 404, an image with nothing to scrape). [`serve`] stops accepting when `shutdown` resolves and
//! returns once every in-flight request has been answered.

mod metrics;

pub use metrics::DemoMetrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

/// How a demo backend behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Address to bind ([`serve`] only; [`serve_listener`] takes a bound listener).
    pub listen: SocketAddr,
    /// Replica name shown on `/` (the container hostname by default).
    pub name: String,
    /// Sleep per request to `/`, to simulate I/O-bound work.
    pub latency: Duration,
    /// CPU spin per request to `/`, to simulate CPU-bound work.
    pub work: Duration,
    /// `/healthz` answers 503 until this long after start, to simulate slow start.
    pub ready_delay: Duration,
    /// Whether `/metrics` is served; off, it answers 404 like any unknown path, so the
    /// image stands for one that exposes nothing (scaled on the load balancer's signal).
    pub expose_metrics: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8000)),
            name: "demo".to_string(),
            latency: Duration::ZERO,
            work: Duration::ZERO,
            ready_delay: Duration::ZERO,
            expose_metrics: true,
        }
    }
}

/// Why the demo backend could not serve.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Binding the listen address failed (in use, no permission, bad address).
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading the bound address of the listener failed.
    #[error("cannot read the listener's local address: {0}")]
    LocalAddr(std::io::Error),
    /// The accept loop failed.
    #[error("serving on {addr} failed: {source}")]
    Serve {
        /// The bound address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Binds `config.listen` and serves until `shutdown` resolves and in-flight requests finish.
///
/// # Errors
/// [`DemoError::Bind`] when the address cannot be bound, else as [`serve_listener`].
pub async fn serve(
    config: DemoConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| DemoError::Bind {
            addr: config.listen,
            source,
        })?;
    serve_listener(listener, config, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0 and read its address first).
///
/// # Guarantees
/// When `shutdown` resolves the listener is closed at once; requests already received
/// are answered (keep-alive connections are closed after their current response), and
/// only then does this return `Ok(())`.
///
/// # Errors
/// [`DemoError::LocalAddr`] or [`DemoError::Serve`] when the socket fails.
pub async fn serve_listener(
    listener: TcpListener,
    config: DemoConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DemoError> {
    let addr = listener.local_addr().map_err(DemoError::LocalAddr)?;
    let app = router(&config, addr.port(), DemoMetrics::new());
    tracing::info!(%addr, name = %config.name, latency = ?config.latency, work = ?config.work,
        ready_delay = ?config.ready_delay, "demo backend listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: no longer accepting, finishing in-flight requests");
        })
        .await
        .map_err(|source| DemoError::Serve { addr, source })?;
    tracing::info!("all in-flight requests finished");
    Ok(())
}

/// State every handler shares.
struct AppState {
    page: String,
    latency: Duration,
    work: Duration,
    ready_at: Instant,
    metrics: DemoMetrics,
}

/// The demo backend's routes, for a server whose bound port is `port`.
pub fn router(config: &DemoConfig, port: u16, metrics: DemoMetrics) -> Router {
    let state = Arc::new(AppState {
        page: format!("demo-backend replica {} on port {port}\n", config.name),
        latency: config.latency,
        work: config.work,
        ready_at: Instant::now() + config.ready_delay,
        metrics,
    });
    let routes = Router::new().route("/", get(index));
    let routes = if config.expose_metrics {
        routes.route("/metrics", get(metrics_page))
    } else {
        routes
    };
    routes
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(state)
}

async fn index(State(state): State<Arc<AppState>>) -> Response {
    let _in_flight = state.metrics.start_request();
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    if !state.work.is_zero() {
        let work = state.work;
        // Off the async workers so a CPU-bound replica still answers health checks.
        if let Err(err) = tokio::task::spawn_blocking(move || spin(work)).await {
            tracing::warn!(%err, "CPU work task failed");
        }
    }
    state.metrics.count("/", 200);
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        state.page.clone(),
    )
        .into_response()
}

async fn not_found(State(state): State<Arc<AppState>>) -> Response {
    let _in_flight = state.metrics.start_request();
    state.metrics.count("other", 404);
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

async fn metrics_page(State(state): State<Arc<AppState>>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(err) => {
            tracing::error!(%err, "encoding metrics failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics encoding failed\n",
            )
                .into_response()
        }
    }
}

async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    if Instant::now() >= state.ready_at {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

/// Busy-loops for `work` of wall time.
fn spin(work: Duration) {
    let start = Instant::now();
    let mut x: u64 = 0;
    while start.elapsed() < work {
        for _ in 0..256 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
    std::hint::black_box(x);
}

#[cfg(test)]
mod tests;
