//! Forwarding one held request to a replica: the headers it carries, and the exchange.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::nginx::ACTIVATOR_POLICY_HEADER;

/// How long a connect to a replica may take before the next one is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Why a forward failed.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection to the replica (refused, timed out): nothing was sent, try another.
    #[error("connecting to replica {addr}: {reason}")]
    Connect {
        /// The replica.
        addr: SocketAddr,
        /// What failed.
        reason: String,
    },
    /// The request was sent (or partly) and the exchange failed: never resent.
    #[error("exchange with replica {addr} failed: {source}")]
    Exchange {
        /// The replica.
        addr: SocketAddr,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be rebuilt (a header value hyper refuses).
    #[error("cannot rebuild the request: {0}")]
    Build(#[from] hyper::http::Error),
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(&n) || n == "upgrade" || listed.iter().any(|l| l == n)
}

/// Names the `Connection` header lists (those are hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// The headers a held request carries to the replica: the client's, minus hop-by-hop
/// ones and the activator's routing header, plus the usual proxy headers where nginx did
/// not set them already (nginx's values win: they are what the warm path sends).
pub fn outgoing_headers(incoming: &HeaderMap, peer: IpAddr) -> HeaderMap {
    let listed = connection_listed(incoming);
    let mut out = HeaderMap::with_capacity(incoming.len() + 3);
    for (name, value) in incoming {
        if is_hop_by_hop(name, &listed)
            || name.as_str().eq_ignore_ascii_case(ACTIVATOR_POLICY_HEADER)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if !out.contains_key("x-forwarded-for")
        && let Ok(v) = HeaderValue::from_str(&peer.to_string())
    {
        out.insert("x-forwarded-for", v);
    }
    if !out.contains_key("x-forwarded-proto") {
        out.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    }
    if !out.contains_key("x-forwarded-host")
        && let Some(host) = incoming.get(header::HOST)
    {
        out.insert("x-forwarded-host", host.clone());
    }
    out
}

/// Drops the hop-by-hop headers of a replica's answer (hyper frames the body itself).
pub fn strip_response_headers(headers: &mut HeaderMap) {
    let listed = connection_listed(headers);
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_hop_by_hop(n, &listed))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Sends the request (`parts` + `body`) to `addr` over a fresh HTTP/1.1 connection and
/// returns the answer as soon as its head arrived (the body streams).
///
/// # Errors
/// [`ForwardError::Connect`] when nothing was sent; [`ForwardError::Exchange`] otherwise.
pub async fn send(
    addr: SocketAddr,
    parts: &Parts,
    body: Bytes,
    peer: IpAddr,
) -> Result<Response<Incoming>, ForwardError> {
    let connect_err = |reason: String| ForwardError::Connect { addr, reason };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| connect_err(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| connect_err(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "activator: replica connection ended");
        }
    });
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let mut builder = Request::builder().method(parts.method.clone()).uri(path);
    if let Some(h) = builder.headers_mut() {
        *h = outgoing_headers(&parts.headers, peer);
    }
    let request = builder.body(Full::new(body))?;
    sender
        .send_request(request)
        .await
        .map_err(|source| ForwardError::Exchange { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    fn get<'a>(h: &'a HeaderMap, k: &str) -> Vec<&'a str> {
        h.get_all(k)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    #[test]
    fn proxy_headers_added_hop_by_hop_and_routing_header_dropped() {
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        // (name, incoming headers, header, expected values)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str, &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "xff_added_when_absent",
                &[("host", "a")],
                "x-forwarded-for",
                &["127.0.0.1"],
            ),
            (
                "xff_from_nginx_kept",
                &[("x-forwarded-for", "10.0.0.9")],
                "x-forwarded-for",
                &["10.0.0.9"],
            ),
            (
                "proto_defaults_to_http",
                &[],
                "x-forwarded-proto",
                &["http"],
            ),
            (
                "proto_from_nginx_kept",
                &[("x-forwarded-proto", "https")],
                "x-forwarded-proto",
                &["https"],
            ),
            (
                "forwarded_host_from_host",
                &[("host", "shop.example")],
                "x-forwarded-host",
                &["shop.example"],
            ),
            ("no_host_no_forwarded_host", &[], "x-forwarded-host", &[]),
            (
                "host_kept",
                &[("host", "shop.example")],
                "host",
                &["shop.example"],
            ),
            (
                "policy_header_dropped",
                &[("x-autoscaler-policy", "web")],
                "x-autoscaler-policy",
                &[],
            ),
            (
                "connection_dropped",
                &[("connection", "keep-alive, x-secret")],
                "connection",
                &[],
            ),
            (
                "connection_listed_dropped",
                &[("connection", "X-Secret"), ("x-secret", "1")],
                "x-secret",
                &[],
            ),
            (
                "transfer_encoding_dropped",
                &[("transfer-encoding", "chunked")],
                "transfer-encoding",
                &[],
            ),
            (
                "upgrade_dropped",
                &[("upgrade", "websocket")],
                "upgrade",
                &[],
            ),
            (
                "content_length_kept",
                &[("content-length", "5")],
                "content-length",
                &["5"],
            ),
            (
                "repeated_headers_kept",
                &[("cookie", "a=1"), ("cookie", "b=2")],
                "cookie",
                &["a=1", "b=2"],
            ),
        ];
        for (name, incoming, header, want) in cases {
            let out = outgoing_headers(&map(incoming), peer);
            assert_eq!(get(&out, header), *want, "{name}");
        }
    }

    #[test]
    fn response_hop_by_hop_headers_are_stripped() {
        let mut h = map(&[
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("content-type", "text/plain"),
            ("transfer-encoding", "chunked"),
        ]);
        strip_response_headers(&mut h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["content-type"]);
    }
}
