//! `demo-backend`: the HTTP server the demo image runs (see `autoscaler::demo`).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use autoscaler::demo::{self, DemoConfig};
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Demo backend: `/` (a page naming the replica), `/metrics`, `/healthz`.
#[derive(Debug, Parser)]
#[command(name = "demo-backend", version, about, long_about = None)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Replica name shown on `/` (default: $HOSTNAME, then the kernel hostname).
    #[arg(long)]
    name: Option<String>,
    /// Sleep this many milliseconds per request to `/`.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Spin the CPU this many microseconds per request to `/`.
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// Answer 503 on `/healthz` for this long after start (e.g. `2s`, `500ms`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    ready_delay: Duration,
    /// Answer 404 on `/metrics`: stand for an image that exposes no metrics (scale it on
    /// the load balancer's signal).
    #[arg(long, env = "DEMO_NO_METRICS")]
    no_metrics: bool,
    /// Log filter (tracing `EnvFilter` syntax).
    #[arg(long, env = "DEMO_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let config = DemoConfig {
        listen: SocketAddr::new(args.host, args.port),
        name: args.name.unwrap_or_else(hostname),
        latency: Duration::from_millis(args.latency_ms),
        work: Duration::from_micros(args.work_us),
        ready_delay: args.ready_delay,
        expose_metrics: !args.no_metrics,
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(%err, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // Installed before serving: as PID 1 in a container there is no default action.
        let shutdown = shutdown_signal().map_err(|err| {
            tracing::error!(%err, "cannot install signal handlers");
        })?;
        demo::serve(config, shutdown).await.map_err(|err| {
            tracing::error!(%err, "demo backend failed");
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    }
}

/// Resolves on the first SIGTERM or SIGINT.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// The replica name when `--name` is not given.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "demo".to_string())
}
