//! Checks before the first pass: what cannot work is said at once, with the flag to change.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A precondition of a command that the host does not meet (exit 3).
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// The nginx binary is not on `PATH` (or not at the path given).
    #[error(
        "nginx was not found: {bin:?} {where_}; install nginx or give its path with --nginx-bin (env AUTOSCALER_NGINX)"
    )]
    NginxNotFound {
        /// The `--nginx-bin` value.
        bin: PathBuf,
        /// Where it was looked for, in words.
        where_: String,
    },
    /// The HTTP endpoint's address cannot be bound (taken, or not an address of this host).
    #[error(
        "cannot listen on {addr}: {source}; choose another address with --listen (env AUTOSCALER_LISTEN)"
    )]
    Listen {
        /// The `--listen` value.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Resolves `bin` as the shell would: a name with a `/` is a path, any other name is
/// looked up in `PATH`. Returns the executable found.
pub fn find_nginx(bin: &Path) -> Result<PathBuf, PreflightError> {
    let not_found = |where_: String| PreflightError::NginxNotFound {
        bin: bin.to_owned(),
        where_,
    };
    if bin.components().count() > 1 || bin.is_absolute() {
        return if is_executable(bin) {
            Ok(bin.to_owned())
        } else {
            Err(not_found("is not an executable file".into()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(bin))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| not_found("is not on PATH".into()))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Binds the daemon's HTTP endpoint before anything else runs.
pub async fn bind_listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, PreflightError> {
    let listen = || {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        // As `TcpListener::bind` does; a port another listener holds is still refused.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    listen().map_err(|source| PreflightError::Listen { addr, source })
}

/// Accept queue of the operator's listeners (the kernel caps it at `net.core.somaxconn`).
/// A burst at zero reaches the activator all at once, one nginx connection per held
/// request (up to `maxPending`, at most 10,000); with the 128 that `TcpListener::bind`
/// asks for, a loaded machine overflowed the queue, the dropped SYNs outlasted nginx's 1 s
/// connect timeout and those requests got 503 (`tests/scale_to_zero.rs`, 4 of 25 bursts).
const LISTEN_BACKLOG: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn nginx_is_found_on_path_or_named_as_missing_with_the_flag() {
        assert!(find_nginx(Path::new("sh")).is_ok(), "sh is on every PATH");
        assert!(find_nginx(Path::new("/bin/sh")).is_ok());
        for bin in ["no-such-nginx-binary", "/no/such/nginx", "./nope/nginx"] {
            let err = find_nginx(Path::new(bin)).expect_err(bin).to_string();
            assert!(err.contains("nginx was not found"), "{err}");
            assert!(err.contains("--nginx-bin"), "{err}");
        }
    }

    /// Connections nobody accepts yet wait in the queue instead of being dropped: with
    /// the 128 of `TcpListener::bind`, the 129th or so connect would time out here.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_accept_queue() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let burst = 400.min(somaxconn.saturating_sub(8));
        assert!(
            burst > 200,
            "net.core.somaxconn {somaxconn} is too small for this test"
        );
        let listener = bind_listen("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        // Stops at the first connect that is not queued (each waits up to 500 ms).
        let queued = tokio::task::spawn_blocking(move || {
            (0..burst)
                .map_while(|_| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("connect thread");
        assert_eq!(
            queued.len(),
            burst,
            "connects queued before one was dropped"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_taken_listen_address_is_refused_naming_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let addr = taken.local_addr().expect("local addr");
        let err = bind_listen(addr).await.expect_err("port is taken");
        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
