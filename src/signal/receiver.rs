//! The transport: a datagram socket nginx's `access_log syslog:` writes one record to per
//! request, and the thread that drains it into a [`SignalHub`].
//!
//! Why datagrams: nginx's syslog sender is non-blocking and never retries, so a stalled
//! or absent operator costs a request nothing (the record is lost, the request is not
//! delayed), and a record arrives as soon as the request finishes (plus at most
//! [`IDLE_PAUSE`] here). A buffered `access_log` file costs nothing per request but delays
//! records by up to its `flush` and grows a file nobody trims while the operator is down;
//! a FIFO blocks nginx: the master's `open()` waits for a reader, and once the pipe's
//! 64 KiB fill up every worker's `write()` (and so every request) waits for the reader.
//!
//! Two endpoints (measured with `benches/lb_signal.sh`, numbers in the issue note):
//! - [`Endpoint::Udp`] on loopback, the default: the kernel queues up to `SO_RCVBUF` bytes
//!   (we ask for 8 MiB; the kernel caps it at `net.core.rmem_max`), so the receiver may
//!   pause for hundreds of milliseconds without loss, and the kernel counts what it drops
//!   (`/proc/net/udp`, read into [`StreamStats::kernel_dropped_total`](super::StreamStats)).
//!   Measured: no record lost at ~20k req/s.
//! - [`Endpoint::Unix`]: a socket file (mode 0666, removed on exit, a stale one replaced on
//!   start). The kernel queues at most `net.unix.max_dgram_qlen` datagrams (10 by
//!   default) per socket, whatever the buffer size: beyond that nginx's send fails and the
//!   record is lost, with a `[warn]` line per loss. Measured: 1-20% of records lost at
//!   ~15-20k req/s on a busy 2-core machine; while no receiver is bound, nginx logs a
//!   `connect() failed` `[alert]` per request.

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use tokio_util::sync::CancellationToken;

use super::SignalHub;
use super::record::MAX_RECORD_BYTES;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
pub const RECV_BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Most datagrams handled under one hub lock.
const BATCH: usize = 1024;
/// After a drain, wait this long before waiting for the socket again: datagrams pile up
/// in the kernel buffer and are read in one go, instead of one wakeup (three syscalls
/// and a task switch) per request. The signal is that much later, far below the ~100 ms
/// it may take. (This needs the UDP buffer: a unix socket queues only 10 datagrams.)
const DRAIN_PAUSE: Duration = Duration::from_millis(5);
/// Sleep of an idle UDP receiver, and longest blocking `recv` of a unix one (also how
/// soon a shutdown is noticed). Bounds the delay of the first record after a quiet spell.
const IDLE_PAUSE: Duration = Duration::from_millis(20);

/// Where the operator receives records, as nginx's `syslog:server=` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A UDP address (loopback); port 0 picks a free one at bind.
    Udp(SocketAddr),
    /// A unix datagram socket file.
    Unix(PathBuf),
}

impl Endpoint {
    /// The value of nginx's `syslog:server=` parameter.
    pub fn nginx_server(&self) -> String {
        match self {
            Endpoint::Udp(addr) => addr.to_string(),
            Endpoint::Unix(path) => format!("unix:{}", path.display()),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.nginx_server())
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `unix:/abs/path` or `IP:PORT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(format!("{s:?}: the socket path must be absolute"));
            }
            return Ok(Endpoint::Unix(path));
        }
        s.parse()
            .map(Endpoint::Udp)
            .map_err(|_| format!("{s:?}: want IP:PORT (UDP) or unix:/absolute/path"))
    }
}

/// Why the receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// Creating or binding the socket failed.
    #[error("binding the load-balancer signal socket {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: Endpoint,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another process receives on the socket file.
    #[error(
        "the signal socket {path} is in use by another process (another operator of this instance?)"
    )]
    InUse {
        /// The socket file.
        path: PathBuf,
    },
    /// Something that is not a socket sits at the path.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Removing a stale socket file failed.
    #[error("removing the stale signal socket {path}: {source}")]
    Remove {
        /// The socket file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

/// Removes the socket file when dropped.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A bound receiving socket; [`SignalReceiver::spawn`] drains it into a hub.
pub struct SignalReceiver {
    sock: Sock,
    endpoint: Endpoint,
    /// Kernel inode of a UDP socket, to find its drop counter in `/proc/net/udp`.
    udp_inode: Option<u64>,
    _file: Option<SocketFile>,
}

impl std::fmt::Debug for SignalReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalReceiver")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl SignalReceiver {
    /// Binds `endpoint`. A unix socket file left by a crashed
    /// run is replaced; one another process still receives on is refused. The file is
    /// made writable by all (nginx workers run as another user) and removed on drop.
    ///
    /// # Errors
    ///
    /// A [`ReceiverError`] naming the endpoint.
    pub fn bind(endpoint: &Endpoint) -> Result<Self, ReceiverError> {
        let bind_err = |source| ReceiverError::Bind {
            endpoint: endpoint.clone(),
            source,
        };
        match endpoint {
            Endpoint::Udp(addr) => {
                let socket =
                    Socket::new(Domain::for_address(*addr), Type::DGRAM, None).map_err(bind_err)?;
                // Best effort: a smaller buffer still works, it only drops sooner.
                let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
                socket.set_nonblocking(true).map_err(bind_err)?;
                socket.bind(&SockAddr::from(*addr)).map_err(bind_err)?;
                let std_sock: std::net::UdpSocket = socket.into();
                let local = std_sock.local_addr().map_err(bind_err)?;
                let inode = socket_inode(&std_sock);
                let sock = std_sock;
                Ok(Self {
                    sock: Sock::Udp(sock),
                    endpoint: Endpoint::Udp(local),
                    udp_inode: inode,
                    _file: None,
                })
            }
            Endpoint::Unix(path) => {
                replace_stale(path)?;
                let socket = Socket::new(Domain::UNIX, Type::DGRAM, None).map_err(bind_err)?;
                let _ = socket.set_recv_buffer_size(RECV_BUFFER_BYTES);
                socket.set_nonblocking(true).map_err(bind_err)?;
                let addr = SockAddr::unix(path).map_err(bind_err)?;
                socket.bind(&addr).map_err(bind_err)?;
                let file = SocketFile(path.clone());
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                    .map_err(bind_err)?;
                let sock: UnixDatagram = std::os::fd::OwnedFd::from(socket).into();
                sock.set_read_timeout(Some(IDLE_PAUSE)).map_err(bind_err)?;
                Ok(Self {
                    sock: Sock::Unix(sock),
                    endpoint: endpoint.clone(),
                    udp_inode: None,
                    _file: Some(file),
                })
            }
        }
    }

    /// The endpoint as bound (a UDP port 0 resolved to the port chosen).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Drains the socket into `hub` on a thread of its own until `shutdown`; the socket
    /// (and its file) go with the thread. The handle resolves when the thread ended (a
    /// runtime shut down without cancelling does not wait for it).
    pub fn spawn(self, hub: SignalHub, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("lb-signal".to_owned())
            .spawn(move || {
                self.run_blocking(&hub, &shutdown);
                let _ = done_tx.send(());
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the load-balancer signal thread");
        }
        tokio::spawn(async move {
            let _ = done_rx.await;
        })
    }

    /// The receive loop, on a plain thread, polling rather than waiting on readiness:
    /// drain everything queued (up to [`BATCH`] per hub lock), then sleep. While it
    /// sleeps nobody waits on the socket, so an arriving datagram costs no wakeup (a
    /// readiness wait woke the receiver, and made the nginx worker's send signal it, once
    /// per request: that halved nginx's throughput). UDP sleeps [`DRAIN_PAUSE`] after
    /// data and [`IDLE_PAUSE`] when idle; a unix socket (10 datagrams of queue) instead
    /// blocks in `recv` for at most [`IDLE_PAUSE`] and never pauses.
    pub fn run_blocking(self, hub: &SignalHub, shutdown: &CancellationToken) {
        tracing::info!(endpoint = %self.endpoint, "load-balancer signal receiver started");
        let mut buf = vec![0u8; MAX_RECORD_BYTES + 1];
        let mut last_drops = std::time::Instant::now();
        while !shutdown.is_cancelled() {
            let got = match &self.sock {
                Sock::Udp(_) => self.drain(hub, &mut buf),
                Sock::Unix(s) => {
                    // Block (bounded) for the first datagram, then drain the rest.
                    let first = s.set_nonblocking(false).and_then(|()| s.recv(&mut buf));
                    let _ = s.set_nonblocking(true);
                    match first {
                        Ok(n) => {
                            hub.batch().add_datagram(&buf[..n]);
                            1 + self.drain(hub, &mut buf)
                        }
                        Err(e) if is_timeout(&e) => 0,
                        Err(error) => {
                            tracing::warn!(%error, "receiving a signal datagram failed");
                            std::thread::sleep(IDLE_PAUSE);
                            0
                        }
                    }
                }
            };
            hub.flush_activity();
            if last_drops.elapsed() >= Duration::from_secs(1) {
                last_drops = std::time::Instant::now();
                if let Some(drops) = self.udp_inode.and_then(udp_drops) {
                    hub.set_kernel_dropped(drops);
                }
            }
            if matches!(self.sock, Sock::Udp(_)) {
                std::thread::sleep(if got > 0 { DRAIN_PAUSE } else { IDLE_PAUSE });
            }
        }
        tracing::info!(endpoint = %self.endpoint, "load-balancer signal receiver stopped");
    }

    fn try_recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match &self.sock {
            Sock::Udp(s) => s.recv(buf),
            Sock::Unix(s) => s.recv(buf),
        }
    }

    /// Reads what is queued, [`BATCH`] datagrams per hub lock; returns how many.
    fn drain(&self, hub: &SignalHub, buf: &mut [u8]) -> usize {
        let mut total = 0;
        loop {
            let mut batch = hub.batch();
            for _ in 0..BATCH {
                match self.try_recv(buf) {
                    Ok(n) => {
                        total += 1;
                        batch.add_datagram(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return total,
                    Err(error) => {
                        tracing::warn!(%error, "receiving a signal datagram failed");
                        return total;
                    }
                }
            }
        }
    }
}

/// A `recv` that ran into its read timeout.
fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Removes a socket file nobody receives on; refuses a live one or a non-socket.
fn replace_stale(path: &Path) -> Result<(), ReceiverError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ReceiverError::Remove {
            path: path.to_owned(),
            source,
        }),
        Ok(meta) if meta.file_type().is_socket() => {
            let probe = std::os::unix::net::UnixDatagram::unbound().map_err(|source| {
                ReceiverError::Remove {
                    path: path.to_owned(),
                    source,
                }
            })?;
            if probe.connect(path).is_ok() {
                return Err(ReceiverError::InUse {
                    path: path.to_owned(),
                });
            }
            std::fs::remove_file(path).map_err(|source| ReceiverError::Remove {
                path: path.to_owned(),
                source,
            })
        }
        Ok(_) => Err(ReceiverError::NotASocket {
            path: path.to_owned(),
        }),
    }
}

/// The inode of a socket (its key in `/proc/net/udp`).
fn socket_inode(sock: &std::net::UdpSocket) -> Option<u64> {
    use std::os::fd::AsFd;
    nix::sys::stat::fstat(sock.as_fd()).ok().map(|st| st.st_ino)
}

/// The `drops` column of the socket with `inode` in `/proc/net/udp` or `udp6`.
fn udp_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"].iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        parse_udp_drops(&text, inode)
    })
}

/// Finds `inode`'s line in a `/proc/net/udp` table and returns its last column (drops).
fn parse_udp_drops(table: &str, inode: u64) -> Option<u64> {
    let want = inode.to_string();
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        (cols.get(9) == Some(&want.as_str()))
            .then(|| cols.last()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const LINE: &str =
        "<190>Dec  1 21:46:29 autoscaler: as1|web|200|0.001|10.0.0.1:80|0.001|1.0|7|1|";

    fn dgram(n: u64) -> Vec<u8> {
        format!("{LINE}{n}").into_bytes()
    }

    #[test]
    fn endpoint_parses() {
        assert_eq!(
            "unix:/run/a.sock".parse::<Endpoint>(),
            Ok(Endpoint::Unix("/run/a.sock".into()))
        );
        assert_eq!(
            "127.0.0.1:0".parse::<Endpoint>(),
            Ok(Endpoint::Udp("127.0.0.1:0".parse().unwrap()))
        );
        assert!("unix:rel.sock".parse::<Endpoint>().is_err());
        assert!("nonsense".parse::<Endpoint>().is_err());
        assert_eq!(
            Endpoint::Unix("/x/y".into()).nginx_server(),
            "unix:/x/y".to_owned()
        );
    }

    #[test]
    fn proc_net_udp_drops_column() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                     1234: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99887 2 0000000000000000 42\n";
        assert_eq!(parse_udp_drops(table, 99887), Some(42));
        assert_eq!(parse_udp_drops(table, 1), None);
        assert_eq!(parse_udp_drops("", 1), None);
    }

    async fn wait_received(hub: &SignalHub, n: u64) {
        for _ in 0..500 {
            if hub.stats().received_total >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A stalled reader never blocks the sender (non-blocking sends fail instead), the
    /// records it queued arrive once it reads again, and a lost one shows as a gap.
    #[tokio::test]
    async fn unix_stalled_reader_never_blocks_sender_and_gaps_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signal.sock");
        let rx = SignalReceiver::bind(&Endpoint::Unix(path.clone())).unwrap();
        let sender = std::os::unix::net::UnixDatagram::unbound().unwrap();
        sender.connect(&path).unwrap();
        sender.set_nonblocking(true).unwrap();
        // Nobody reads yet: send until the queue is full; every send returns at once.
        let mut sent = 0u64;
        let mut refused = 0u64;
        for n in 1..=10_000u64 {
            match sender.send(&dgram(n)) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => refused += 1,
                Err(e) => panic!("send {n}: {e}"),
            }
        }
        assert!(refused > 0, "the queue never filled");
        let hub = SignalHub::new();
        let stop = CancellationToken::new();
        let task = rx.spawn(hub.clone(), stop.clone());
        wait_received(&hub, sent).await;
        // One more record after the refused ones: the gap reveals them.
        sender.send(&dgram(10_001)).unwrap();
        wait_received(&hub, sent + 1).await;
        let stats = hub.stats();
        assert_eq!(stats.received_total, sent + 1);
        assert_eq!(stats.gaps_total, refused);
        assert_eq!(stats.dropped_total, refused);
        stop.cancel();
        task.await.unwrap();
        assert!(!path.exists(), "socket file left behind");
    }

    #[tokio::test]
    async fn unix_stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signal.sock");
        // A crashed run leaves the file with nobody bound.
        let stale = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        let rx = SignalReceiver::bind(&Endpoint::Unix(path.clone())).unwrap();
        // While it lives, a second receiver is refused.
        let err = SignalReceiver::bind(&Endpoint::Unix(path.clone())).unwrap_err();
        assert!(matches!(err, ReceiverError::InUse { .. }), "{err}");
        drop(rx);
        assert!(!path.exists());
        // Not a socket: refused, left alone.
        std::fs::write(&path, b"data").unwrap();
        let err = SignalReceiver::bind(&Endpoint::Unix(path.clone())).unwrap_err();
        assert!(matches!(err, ReceiverError::NotASocket { .. }), "{err}");
        assert!(path.exists());
    }

    #[tokio::test]
    async fn udp_receives_and_counts_garbage() {
        let rx = SignalReceiver::bind(&Endpoint::Udp("127.0.0.1:0".parse().unwrap())).unwrap();
        let Endpoint::Udp(addr) = rx.endpoint().clone() else {
            panic!("not udp")
        };
        assert_ne!(addr.port(), 0);
        let hub = SignalHub::new();
        let stop = CancellationToken::new();
        let task = rx.spawn(hub.clone(), stop.clone());
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for n in 1..=100 {
            sender.send_to(&dgram(n), addr).unwrap();
        }
        sender.send_to(b"garbage", addr).unwrap();
        sender.send_to(&vec![b'x'; 5000], addr).unwrap();
        wait_received(&hub, 100).await;
        for _ in 0..100 {
            if hub.stats().unparsable_total == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stats = hub.stats();
        assert_eq!(stats.received_total, 100);
        assert_eq!(stats.unparsable_total, 2);
        let snap = hub.snapshot("web", Duration::from_secs(10)).unwrap();
        assert_eq!(snap.requests, 100);
        assert_eq!(snap.per_replica.len(), 1);
        stop.cancel();
        task.await.unwrap();
    }
}
