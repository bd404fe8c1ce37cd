//! Host port allocation: the lowest port of a range that no replica uses and nothing has bound.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener};

/// The lowest port in `range` (inclusive) not in `used` and bindable on `host_ip` right now.
///
/// Bindability is tested by binding a `TcpListener` and dropping it at once, so a port
/// held by any process on the host is skipped. `used` covers ports the engine has
/// reserved without a listening socket (and replicas that are stopped but still own
/// their port). Port 0 is never returned; an empty or inverted range gives `None`.
pub fn first_free_port(host_ip: IpAddr, range: (u16, u16), used: &BTreeSet<u16>) -> Option<u16> {
    let (low, high) = range;
    (low.max(1)..=high)
        .filter(|port| !used.contains(port))
        .find(|port| is_bindable(SocketAddr::new(host_ip, *port)))
}

/// Whether a TCP listener can bind `addr` at this moment.
fn is_bindable(addr: SocketAddr) -> bool {
    match TcpListener::bind(addr) {
        Ok(listener) => {
            drop(listener);
            true
        }
        Err(e) => {
            tracing::trace!(%addr, error = %e, "port not bindable");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Binds an OS-chosen port and returns the listener with its port.
    fn held_port() -> (TcpListener, u16) {
        let listener = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    #[test]
    fn empty_inverted_zero_or_fully_held_ranges_give_none() {
        let (_held, busy) = held_port();
        let (free_listener, free) = held_port();
        drop(free_listener);
        // (range, used, expected)
        type Case = ((u16, u16), Vec<u16>, Option<u16>);
        let cases: Vec<Case> = vec![
            ((busy, busy), vec![], None),
            ((5, 4), vec![], None),
            ((0, 0), vec![], None),
            ((free, free), vec![free], None),
            ((free, free), vec![busy], Some(free)),
        ];
        for (range, used, want) in cases {
            let used: BTreeSet<u16> = used.into_iter().collect();
            assert_eq!(
                first_free_port(LOOPBACK, range, &used),
                want,
                "range {range:?} used {used:?}"
            );
        }
    }

    #[test]
    fn used_set_is_skipped_even_when_bindable() {
        // Find a bindable port, release it, then mark it used: it must be skipped.
        let (listener, port) = held_port();
        drop(listener);
        let used = BTreeSet::from([port]);
        assert_eq!(first_free_port(LOOPBACK, (port, port), &used), None);
        assert_eq!(
            first_free_port(LOOPBACK, (port, port), &BTreeSet::new()),
            Some(port)
        );
    }

    #[test]
    fn returns_lowest_free_port_past_a_held_one() {
        let (held, busy) = held_port();
        let next = busy.checked_add(1).filter(|_| busy < u16::MAX);
        let Some(next) = next else { return };
        // The next port may be taken by someone else on a busy host; then the answer is larger.
        let got = first_free_port(LOOPBACK, (busy, busy.saturating_add(50)), &BTreeSet::new());
        assert!(got.is_some_and(|p| p >= next), "got {got:?}, held {busy}");
        drop(held);
    }
}
