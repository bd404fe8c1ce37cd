//! The activator's HTTP listener: admit, hold until a replica is ready, forward.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::forward::{self, ForwardError};
use super::registry::{Admitted, Registry};
use crate::nginx::ACTIVATOR_POLICY_HEADER;

/// Largest request body held (nginx's own `client_max_body_size` is 1 MiB by default).
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// How often a held request retries replicas that refused a connection.
const RECONNECT_EVERY: Duration = Duration::from_millis(100);

/// The body of every answer: a replica's streamed body or the activator's own text.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Serves `listener` until `shutdown`: then stops accepting, answers every held request
/// 503 at once, lets forwarded ones finish for at most `grace`, and returns.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    conns.spawn(connection(stream, peer, registry.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of descriptors and the like: pause rather than spin.
                    tracing::warn!(error = %e, "activator: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // A closed port makes nginx answer its fast 503 (error_page), never hang.
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            "activator: forwarded requests still running at shutdown were cut"
        );
        conns.abort_all();
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    registry: Registry,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let token = shutdown.clone();
    let svc = service_fn(move |req| handle(registry.clone(), req, peer.ip(), token.clone()));
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(error = %e, "activator: connection ended");
        },
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request: admit it to its policy's queue, wait for a ready replica, forward it.
async fn handle(
    registry: Registry,
    req: Request<Incoming>,
    peer: IpAddr,
    shutdown: CancellationToken,
) -> Result<Response<Body>, Infallible> {
    let Some(policy) = req
        .headers()
        .get(ACTIVATOR_POLICY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Ok(unavailable(format!(
            "the activator serves only requests an autoscaler nginx server sent (no {ACTIVATOR_POLICY_HEADER} header)"
        )));
    };
    let admitted = match registry.admit(&policy) {
        Ok(a) => a,
        Err(refusal) => return Ok(unavailable(refusal.to_string())),
    };
    let deadline = tokio::time::Instant::now() + admitted.timeout;
    let (parts, body) = req.into_parts();
    // nginx has buffered the body already: read it whole, so a refused connect can be
    // retried on another replica with the body intact.
    let body = tokio::select! {
        b = Limited::new(body, MAX_BODY_BYTES).collect() => match b {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &format!("reading the request body: {e}"), None)),
        },
        _ = tokio::time::sleep_until(deadline) => return Ok(timed_out(&registry, &admitted, None)),
        _ = shutdown.cancelled() => return Ok(shutting_down()),
    };
    hold_and_forward(&registry, admitted, &parts, body, peer, deadline, &shutdown).await
}

async fn hold_and_forward(
    registry: &Registry,
    admitted: Admitted,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    peer: IpAddr,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
) -> Result<Response<Body>, Infallible> {
    let mut ready = admitted.ready.clone();
    let mut last_failure: Option<String> = None;
    loop {
        let now = ready.borrow_and_update().clone();
        for addr in &now.addrs {
            match forward::send(*addr, parts, body.clone(), peer).await {
                Ok(resp) => {
                    registry.forwarded(&admitted.policy);
                    registry.first_byte(&admitted.policy);
                    drop(admitted);
                    let (mut head, incoming) = resp.into_parts();
                    forward::strip_response_headers(&mut head.headers);
                    return Ok(Response::from_parts(head, incoming.boxed()));
                }
                Err(e @ ForwardError::Connect { .. }) => {
                    tracing::debug!(error = %e, "activator: trying the next replica");
                    last_failure = Some(e.to_string());
                }
                Err(e) => {
                    // Sent already: resending could repeat a non-idempotent request.
                    tracing::warn!(policy = %admitted.policy, error = %e, "activator: forward failed");
                    return Ok(text(StatusCode::BAD_GATEWAY, &e.to_string(), None));
                }
            }
        }
        let retry = !now.addrs.is_empty();
        tokio::select! {
            changed = ready.changed() => if changed.is_err() {
                return Ok(unavailable(format!(
                    "policy {:?} no longer scales to zero", admitted.policy
                )));
            },
            _ = tokio::time::sleep(RECONNECT_EVERY), if retry => {}
            _ = tokio::time::sleep_until(deadline) => {
                let why = now.error.or(last_failure);
                return Ok(timed_out(registry, &admitted, why));
            }
            _ = shutdown.cancelled() => return Ok(shutting_down()),
        }
    }
}

fn timed_out(registry: &Registry, admitted: &Admitted, why: Option<String>) -> Response<Body> {
    registry.timed_out(&admitted.policy);
    let mut msg = format!(
        "no replica of policy {:?} became ready within {} s (scaleToZero.timeoutSeconds)",
        admitted.policy,
        admitted.timeout.as_secs()
    );
    if let Some(why) = why {
        msg.push_str(": ");
        msg.push_str(&why);
    }
    tracing::warn!(policy = %admitted.policy, "activator: {msg}");
    unavailable(msg)
}

fn shutting_down() -> Response<Body> {
    unavailable("the operator is shutting down; retry shortly".to_owned())
}

/// `503` with `Retry-After: 1` and the reason as text.
fn unavailable(message: String) -> Response<Body> {
    text(StatusCode::SERVICE_UNAVAILABLE, &message, Some("1"))
}

fn text(status: StatusCode, message: &str, retry_after: Option<&'static str>) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(format!("{message}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(v) = retry_after {
        h.insert(header::RETRY_AFTER, header::HeaderValue::from_static(v));
    }
    resp
}
