//! The daemon's own HTTP endpoint: `/metrics` (Prometheus), `/healthz`, `/status` (JSON),
//! serving what [`crate::telemetry`] holds.
//!
//! Read-only by design: nothing here changes state. Binds loopback unless told otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;

pub use crate::telemetry::Telemetry;

/// Errors of the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The server failed.
    #[error("HTTP endpoint failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A non-loopback listen address without `--allow-remote-api`.
    #[error(
        "refusing to serve the endpoint on {addr}: it is not a loopback address, and /metrics, /status and /healthz have no authentication (anyone who reaches it reads policy names, replica addresses and events); listen on 127.0.0.1 or [::1], or pass --allow-remote-api and put a firewall or an authenticating proxy in front"
    )]
    RemoteListen {
        /// The refused address.
        addr: SocketAddr,
    },
}

/// Refuses a listen address that is not loopback (`0.0.0.0`, `::`, a LAN address)
/// unless `allow_remote` says the operator meant it.
///
/// # Errors
/// [`ApiError::RemoteListen`] naming the address and why.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), ApiError> {
    if allow_remote || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(ApiError::RemoteListen { addr })
    }
}

/// Serves the endpoint on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    tracing::info!(%addr, "HTTP endpoint listening (/metrics, /healthz, /status)");
    serve_on(listener, telemetry, shutdown).await
}

/// Serves on an already bound listener (tests bind port 0).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(telemetry);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            // Let a scrape in progress finish.
            tokio::time::sleep(Duration::from_millis(50)).await;
        })
        .await
        .map_err(ApiError::Serve)
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), text 0.0.4 otherwise
/// (curl, `promtool check metrics`).
async fn metrics(
    AxumState(t): AxumState<Arc<Telemetry>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let body = t.encode();
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            openmetrics_to_text(&body),
        )
            .into_response()
    }
}

/// Rewrites prometheus-client's OpenMetrics into text format 0.0.4: counter metadata is
/// named after the `_total` series, and `# UNIT` / `# EOF` lines go.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match renamed {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

async fn healthz(AxumState(t): AxumState<Arc<Telemetry>>) -> Response {
    if t.docker_ok.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "docker engine unreachable\n",
        )
            .into_response()
    }
}

async fn status(AxumState(t): AxumState<Arc<Telemetry>>) -> Response {
    let snapshot = t.snapshot.read().await;
    let held = t.held_now.lock().map(|h| h.clone()).unwrap_or_default();
    let body = serde_json::json!({
        "policies": snapshot.0.policies,
        "events": snapshot.1,
        "heldRequests": held,
    });
    axum::Json(body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{PolicyLabels, ResultLabels};

    /// Item 16: only loopback is accepted without the flag.
    #[test]
    fn non_loopback_listen_is_refused_unless_allowed() {
        let cases = [
            ("127.0.0.1:9100", true),
            ("127.0.0.2:9100", true),
            ("[::1]:9100", true),
            ("[::ffff:127.0.0.1]:9100", true),
            ("0.0.0.0:9100", false),
            ("[::]:9100", false),
            ("192.168.1.10:9100", false),
            ("[::ffff:10.0.0.1]:9100", false),
        ];
        for (addr, loopback) in cases {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(check_listen(addr, false).is_ok(), loopback, "{addr}");
            assert!(check_listen(addr, true).is_ok(), "{addr}");
        }
        let err = check_listen("0.0.0.0:9100".parse().unwrap(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-remote-api"), "{err}");
        assert!(err.contains("no authentication"), "{err}");
    }

    #[test]
    fn exposition_names_every_family_without_double_total() {
        let t = Telemetry::new();
        t.reconciles
            .get_or_create(&ResultLabels {
                policy: "web".into(),
                result: "converged".into(),
            })
            .inc();
        t.desired
            .get_or_create(&PolicyLabels {
                policy: "web".into(),
            })
            .set(3);
        let text = t.encode();
        assert!(
            text.contains("autoscaler_reconciles_total{policy=\"web\",result=\"converged\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("autoscaler_replicas_desired{policy=\"web\"} 3"),
            "{text}"
        );
        assert!(!text.contains("_total_total"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn text_format_names_counter_metadata_after_the_total_series() {
        let om = "# HELP a_reconciles Passes.\n# TYPE a_reconciles counter\na_reconciles_total{p=\"w\"} 1\n# HELP g Gauge.\n# TYPE g gauge\n# UNIT g seconds\ng 2\n# EOF\n";
        let text = openmetrics_to_text(om);
        assert_eq!(
            text,
            "# HELP a_reconciles_total Passes.\n# TYPE a_reconciles_total counter\na_reconciles_total{p=\"w\"} 1\n# HELP g Gauge.\n# TYPE g gauge\ng 2\n"
        );
    }
}
