//! Confirms a reload took effect: every listen address must answer the new config's hash.
//!
//! Each rendered server block answers [`LIVE_PATH`] with the hash of the whole rendered
//! text, to the host itself only (see `crate::nginx`). After a reload the probe connects
//! to each listen address from that same address (loopback for a wildcard listen) and
//! polls until it answers the hash of the text just written.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

use super::LbError;
use crate::nginx::{LIVE_PATH, Upstream, config_hash};

/// Default longest wait for every listen address to answer the new hash.
pub(crate) const LIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between rounds of probes.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for one probe (connect, request, response).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes of a probe response read.
const MAX_RESPONSE: u64 = 4096;

/// Waits until every listen address of `upstreams` answers the hash rendered into `text`.
///
/// Returns at once when `text` has no live-check location (no upstream: nothing listens).
///
/// # Errors
///
/// [`LbError::NotLive`] for the first address (in address order) that did not answer the
/// hash within `patience`, with what it answered last.
pub(crate) async fn confirm_live(
    upstreams: &[Upstream],
    text: &str,
    patience: Duration,
) -> Result<(), LbError> {
    let Some(expected) = config_hash(text) else {
        return Ok(());
    };
    let started = Instant::now();
    let mut pending: BTreeMap<SocketAddr, String> = upstreams
        .iter()
        .map(|u| (u.listen, "nothing yet".to_owned()))
        .collect();
    loop {
        let mut confirmed = Vec::new();
        for (listen, got) in pending.iter_mut() {
            match probe(*listen).await {
                Ok(hash) if hash == expected => confirmed.push(*listen),
                Ok(hash) => *got = format!("hash {hash}"),
                Err(e) => *got = e,
            }
        }
        for listen in confirmed {
            pending.remove(&listen);
        }
        let Some((listen, got)) = pending.first_key_value() else {
            tracing::debug!(elapsed = ?started.elapsed(), "new nginx config is live");
            return Ok(());
        };
        if started.elapsed() >= patience {
            return Err(LbError::NotLive {
                listen: *listen,
                expected: expected.to_owned(),
                got: got.clone(),
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where to connect to reach `listen` from the host itself, and the local address to
/// bind first (`None`: let the kernel pick, which is the loopback address itself).
///
/// nginx compares `$remote_addr` with `$server_addr`: connecting to `127.0.0.2` from an
/// unbound socket would come from `127.0.0.1`, so a specific address is bound as source.
fn probe_route(listen: SocketAddr) -> (SocketAddr, Option<SocketAddr>) {
    let ip = listen.ip();
    if ip.is_unspecified() {
        let loopback = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        (SocketAddr::new(loopback, listen.port()), None)
    } else {
        (listen, Some(SocketAddr::new(ip, 0)))
    }
}

/// One GET of [`LIVE_PATH`] at `listen`: the hash answered, or what went wrong in words.
async fn probe(listen: SocketAddr) -> Result<String, String> {
    tokio::time::timeout(PROBE_TIMEOUT, probe_once(listen))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
}

async fn probe_once(listen: SocketAddr) -> Result<String, String> {
    let (target, source) = probe_route(listen);
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| format!("socket: {e}"))?;
    if let Some(source) = source {
        socket
            .bind(source)
            .map_err(|e| format!("binding {source}: {e}"))?;
    }
    let mut stream = socket
        .connect(target)
        .await
        .map_err(|e| format!("connecting to {target}: {e}"))?;
    let request =
        format!("GET {LIVE_PATH} HTTP/1.0\r\nHost: autoscaler\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending to {target}: {e}"))?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut response)
        .await
        .map_err(|e| format!("reading from {target}: {e}"))?;
    parse_response(&response)
}

/// The trimmed body of a `200` response; otherwise the status (or garbage) in words.
fn parse_response(bytes: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(bytes);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    let Some((_, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("an incomplete response {status_line:?}"));
    };
    if status == "200" {
        Ok(body.trim().to_owned())
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_comes_from_the_listen_address_or_loopback_for_a_wildcard() {
        let cases = [
            ("127.0.0.1:80", "127.0.0.1:80", Some("127.0.0.1:0")),
            ("127.0.0.2:80", "127.0.0.2:80", Some("127.0.0.2:0")),
            ("192.0.2.7:80", "192.0.2.7:80", Some("192.0.2.7:0")),
            ("0.0.0.0:80", "127.0.0.1:80", None),
            ("[::]:80", "[::1]:80", None),
            ("[::1]:80", "[::1]:80", Some("[::1]:0")),
        ];
        for (listen, target, source) in cases {
            let (t, s) = probe_route(listen.parse().unwrap());
            assert_eq!(t, target.parse::<SocketAddr>().unwrap(), "{listen}");
            assert_eq!(s, source.map(|s| s.parse().unwrap()), "{listen}");
        }
    }

    #[test]
    fn responses_read_as_hash_or_reason() {
        let cases: [(&[u8], Result<&str, &str>); 5] = [
            (b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nabc\n", Ok("abc")),
            (b"HTTP/1.1 404 Not Found\r\n\r\n<html>", Err("HTTP 404")),
            (b"HTTP/1.1 503 x\r\n\r\n", Err("HTTP 503")),
            (
                b"HTTP/1.1 200 OK\r\n",
                Err("an incomplete response \"HTTP/1.1 200 OK\""),
            ),
            (b"", Err("an incomplete response \"\"")),
        ];
        for (bytes, want) in cases {
            let got = parse_response(bytes);
            assert_eq!(
                got.as_deref().map_err(String::as_str),
                want,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}
