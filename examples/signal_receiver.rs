//! Runs only the load-signal receiver, for `benches/lb_signal.sh` (operator CPU per
//! request and loss, without Docker or the reconcile loop).
//!
//! ```text
//! cargo run --release --example signal_receiver -- ENDPOINT [STATS_FILE]
//! ```
//!
//! ENDPOINT is `127.0.0.1:PORT` (UDP) or `unix:/abs/path`. It prints `ready` once bound,
//! and on SIGTERM/SIGINT writes the hub's counters as JSON to STATS_FILE (or stdout).
//!
//! `signal_receiver --render PREFIX LISTEN BACKEND [ENDPOINT]` prints the managed
//! `nginx.conf` the operator would write for one policy `bench` (so the bench measures
//! the real template), with the signal when ENDPOINT is given.

use std::time::Duration;

use autoscaler::signal::{Endpoint, SignalHub, SignalReceiver};
use tokio_util::sync::CancellationToken;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--render") {
        let a: Vec<String> = args.skip(1).collect();
        let [prefix, listen, backend, rest @ ..] = &a[..] else {
            return Err("usage: signal_receiver --render PREFIX LISTEN BACKEND [ENDPOINT]".into());
        };
        let endpoint = rest.first().map(|e| e.parse::<Endpoint>()).transpose()?;
        let upstream = autoscaler::nginx::Upstream {
            policy: "bench".to_owned(),
            algorithm: autoscaler::policy::Algorithm::RoundRobin,
            keepalive: 32,
            listen: listen.parse()?,
            servers: vec![backend.parse()?],
            drain_timeout_seconds: 5,
        };
        let settings = autoscaler::nginx::ManagedSettings {
            prefix: prefix.clone(),
            worker_processes: 2,
        };
        print!(
            "{}",
            autoscaler::nginx::render_managed_with(&[upstream], &settings, endpoint.as_ref())?
        );
        return Ok(());
    }
    let endpoint: Endpoint = args
        .next()
        .ok_or("usage: signal_receiver ENDPOINT [STATS_FILE]")?
        .parse()?;
    let stats_file = args.next();
    let hub = SignalHub::new();
    let stop = CancellationToken::new();
    let receiver = SignalReceiver::bind(&endpoint)?;
    println!("ready {}", receiver.endpoint());
    let task = receiver.spawn(hub.clone(), stop.clone());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    let stats = serde_json::to_string(&hub.stats())?;
    match stats_file {
        Some(path) => std::fs::write(path, stats + "\n")?,
        None => println!("{stats}"),
    }
    Ok(())
}
