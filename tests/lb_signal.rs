//! The load-balancer signal end to end against the real nginx binary: nginx reports every
//! request to the receiver, the hub counts them (ports 28100-28199).

mod lb_support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use autoscaler::lb::{LoadBalancer, ManagedNginx};
use autoscaler::nginx::Upstream;
use autoscaler::policy::Algorithm;
use autoscaler::signal::{Endpoint, SignalHub, SignalReceiver};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use lb_support::{Client, NginxDir, nginx_bin};
use tokio_util::sync::CancellationToken;

fn upstream(policy: &str, listen: u16, servers: &[SocketAddr]) -> Upstream {
    Upstream {
        policy: policy.to_owned(),
        algorithm: Algorithm::RoundRobin,
        keepalive: 16,
        listen: SocketAddr::from(([127, 0, 0, 1], listen)),
        servers: servers.to_vec(),
        drain_timeout_seconds: 5,
        hold: None,
    }
}

/// A backend answering 200, or 500 for a path starting `/fail`; stops on drop.
struct StatusBackend {
    addr: SocketAddr,
    /// Requests answered.
    served: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusBackend {
    async fn start(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async move {
                            let status = if req.uri().path().starts_with("/fail") {
                                StatusCode::INTERNAL_SERVER_ERROR
                            } else {
                                StatusCode::OK
                            };
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"x")));
                            *resp.status_mut() = status;
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, served, task }
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for StatusBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Waits (bounded) until the hub has received `n` records.
async fn wait_received(hub: &SignalHub, n: u64) -> u64 {
    for _ in 0..300 {
        let got = hub.stats().received_total;
        if got >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.stats().received_total
}

/// GETs `url` `n` times; returns the status of each.
async fn get_n(client: &Client, url: &str, n: usize) -> Vec<StatusCode> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, _) = client.get(url).await.expect("nginx answers");
        out.push(status);
    }
    out
}

/// A managed nginx in `dir` reporting to a receiver on `endpoint`.
async fn start(
    dir: &NginxDir,
    endpoint: &Endpoint,
    upstreams: &[Upstream],
) -> (
    ManagedNginx,
    SignalHub,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let receiver = SignalReceiver::bind(endpoint).unwrap();
    let hub = SignalHub::new();
    let stop = CancellationToken::new();
    let bound = receiver.endpoint().clone();
    let task = receiver.spawn(hub.clone(), stop.clone());
    let lb = ManagedNginx::new(dir.path().join("nginx"), nginx_bin().unwrap(), 2)
        .with_stop_timeout(Duration::from_secs(5))
        .with_signal(bound);
    lb.apply(upstreams).await.unwrap();
    lb.ensure_running().await.unwrap();
    (lb, hub, stop, task)
}

fn count(rate: f64, window: Duration) -> u64 {
    (rate * window.as_secs_f64()).round() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted_per_policy_replica_and_status() {
    if nginx_bin().is_none() {
        return;
    }
    let dir = NginxDir::new("as-sig-count");
    let (a, b) = (
        StatusBackend::start(28101).await,
        StatusBackend::start(28102).await,
    );
    let dead: SocketAddr = "127.0.0.1:28199".parse().unwrap();
    let ups = [
        upstream("web", 28110, &[a.addr, b.addr]),
        upstream("idle", 28111, &[]),
        upstream("dead", 28112, &[dead]),
    ];
    let endpoint = Endpoint::Udp("127.0.0.1:0".parse().unwrap());
    let (lb, hub, stop, task) = start(&dir, &endpoint, &ups).await;
    // The live check of apply/ensure_running is not a request of the policy.
    assert_eq!(hub.stats().received_total, 0);

    let client = Client::new();
    let ok = get_n(&client, "http://127.0.0.1:28110/", 240).await;
    let failed = get_n(&client, "http://127.0.0.1:28110/fail", 60).await;
    let unrouted = get_n(&client, "http://127.0.0.1:28111/", 50).await;
    let gateway = get_n(&client, "http://127.0.0.1:28112/", 20).await;
    assert!(ok.iter().all(|s| *s == StatusCode::OK));
    assert!(
        failed
            .iter()
            .all(|s| *s == StatusCode::INTERNAL_SERVER_ERROR)
    );
    assert!(
        unrouted
            .iter()
            .all(|s| *s == StatusCode::SERVICE_UNAVAILABLE)
    );
    assert!(gateway.iter().all(|s| *s == StatusCode::BAD_GATEWAY));

    let total = 240 + 60 + 50 + 20;
    assert_eq!(wait_received(&hub, total).await, total);
    let stats = hub.stats();
    assert_eq!(stats.dropped_total, 0, "{stats:?}");

    let window = Duration::from_secs(60);
    let web = hub.snapshot("web", window).unwrap();
    assert_eq!(web.requests, 300);
    assert_eq!(count(web.errors_5xx_rate, web.window), 60);
    assert_eq!(count(web.unrouted_rate, web.window), 0);
    assert!(web.p50_ms.is_some());
    let split: Vec<u64> = web
        .per_replica
        .values()
        .map(|r| count(r.rate, web.window))
        .collect();
    assert_eq!(
        web.per_replica.keys().cloned().collect::<Vec<_>>(),
        vec![a.addr.to_string(), b.addr.to_string()]
    );
    // Each replica's share is what it really served (the two workers balance apart).
    assert_eq!(split, vec![a.served(), b.served()], "{web:?}");
    assert_eq!(a.served() + b.served(), 300);

    let idle = hub.snapshot("idle", window).unwrap();
    assert_eq!(idle.requests, 50);
    assert_eq!(count(idle.unrouted_rate, idle.window), 50, "{idle:?}");
    assert_eq!(count(idle.errors_5xx_rate, idle.window), 50);
    assert!(idle.per_replica.is_empty());

    let dead_snap = hub.snapshot("dead", window).unwrap();
    assert_eq!(dead_snap.requests, 20);
    assert_eq!(count(dead_snap.gateway_errors_rate, dead_snap.window), 20);
    // nginx tried the replica (502 from a refused connection) or, once it was marked
    // down, answered `no live upstreams` itself: all 20 are gateway errors either way.
    assert!(hub.snapshot("nope", window).is_none());
    assert!(hub.idle_for("web").unwrap() < Duration::from_secs(30));

    lb.stop().await.unwrap();
    stop.cancel();
    task.await.unwrap();
}

/// With the receiver gone nginx answers every request; a receiver bound again on the
/// same endpoint (a restarted operator; a stale unix socket file replaced) gets records
/// again without touching nginx.
async fn survives_receiver_restart(tag: &str, endpoint: Endpoint, listen: u16, backend: u16) {
    let dir = NginxDir::new(tag);
    let a = StatusBackend::start(backend).await;
    let ups = [upstream("web", listen, &[a.addr])];
    let endpoint = match endpoint {
        Endpoint::Unix(name) => {
            // nginx workers run as `nobody` under root: they must reach the socket.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            Endpoint::Unix(dir.path().join(name))
        }
        udp => udp,
    };
    let (lb, hub, stop, task) = start(&dir, &endpoint, &ups).await;
    let url = format!("http://127.0.0.1:{listen}/");
    let client = Client::new();
    get_n(&client, &url, 20).await;
    assert_eq!(wait_received(&hub, 20).await, 20);

    stop.cancel();
    task.await.unwrap();
    if let Endpoint::Unix(path) = &endpoint {
        assert!(!path.exists(), "socket file removed on exit");
    }
    let log_before = std::fs::read_to_string(lb.error_log_path()).unwrap_or_default();
    let statuses = get_n(&client, &url, 200).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let log_after = std::fs::read_to_string(lb.error_log_path()).unwrap_or_default();
    if matches!(endpoint, Endpoint::Udp(_)) {
        // A failed send is an [error] of the main context, which logs only `crit`: the
        // log does not grow a line per request while the operator is away. (A unix socket
        // gives a `connect() failed` [alert] per request: one reason UDP is the default.)
        assert_eq!(
            log_after.lines().count(),
            log_before.lines().count(),
            "{}",
            &log_after[log_before.len().min(log_after.len())..]
        );
    }

    // Restart on the same endpoint (for unix, leave a stale file like a crash would).
    let bound = match &endpoint {
        Endpoint::Udp(_) => {
            let mut s = String::new();
            std::io::Read::read_to_string(
                &mut std::fs::File::open(lb.config_path()).unwrap(),
                &mut s,
            )
            .unwrap();
            let port = s
                .split("syslog:server=127.0.0.1:")
                .nth(1)
                .and_then(|r| r.split(',').next())
                .and_then(|p| p.parse::<u16>().ok())
                .expect("udp port in config");
            Endpoint::Udp(SocketAddr::from(([127, 0, 0, 1], port)))
        }
        Endpoint::Unix(path) => {
            drop(std::os::unix::net::UnixDatagram::bind(path).unwrap());
            endpoint.clone()
        }
    };
    let receiver = SignalReceiver::bind(&bound).unwrap();
    let hub2 = SignalHub::new();
    let stop2 = CancellationToken::new();
    let task2 = receiver.spawn(hub2.clone(), stop2.clone());
    // nginx re-opens its socket after a failed send: a few records may go to the old one.
    let mut sent = 0;
    while hub2.stats().received_total == 0 && sent < 200 {
        get_n(&client, &url, 10).await;
        sent += 10;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        hub2.stats().received_total > 0,
        "no record after {sent} requests"
    );
    lb.stop().await.unwrap();
    stop2.cancel();
    task2.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_receiver_stopped_nginx_still_answers_then_restart_receives() {
    if nginx_bin().is_none() {
        return;
    }
    survives_receiver_restart(
        "as-sig-udp",
        Endpoint::Udp("127.0.0.1:0".parse().unwrap()),
        28120,
        28121,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_receiver_stopped_nginx_still_answers_then_restart_receives() {
    if nginx_bin().is_none() {
        return;
    }
    survives_receiver_restart(
        "as-sig-unix",
        Endpoint::Unix("signal.sock".into()),
        28130,
        28131,
    )
    .await;
}
