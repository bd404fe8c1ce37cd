//! `autoscaler run`: the daemon. Watches policy files, reacts to Docker events and load.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::common::{self, OperatorArgs, PolicyArgs};
use super::{Exit, preflight};
use crate::api::{self, Telemetry};
use crate::controller::{self, DaemonConfig, Loader};
use crate::runtime::{AnyRuntime, RuntimeError, RuntimeKind};

/// `run --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler run -f policies/
  autoscaler run -f policy.yaml --listen 127.0.0.1:9200 --interval 2s 2>> daemon.log
  AUTOSCALER_LISTEN=0.0.0.0:9100 AUTOSCALER_STATE_DIR=/var/lib/autoscaler autoscaler run -f /etc/autoscaler/";

/// Arguments of `autoscaler run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
    /// Per-policy metrics scrape and reconcile interval.
    #[arg(long, env = "AUTOSCALER_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Full resync period.
    #[arg(long, env = "AUTOSCALER_RESYNC", default_value = "30s", value_parser = humantime::parse_duration)]
    pub resync: Duration,
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/status`); loopback by default.
    #[arg(long, env = "AUTOSCALER_LISTEN", default_value = "127.0.0.1:9100")]
    pub listen: SocketAddr,
    /// Allow `--listen` on a non-loopback address: the endpoint has no authentication and
    /// shows policy names, replica addresses and events to whoever reaches it.
    #[arg(long)]
    pub allow_remote_api: bool,
    /// Loopback address of the activator, which holds the requests of scale-to-zero
    /// policies at zero replicas (nginx proxies to it). Port 0 picks a free port at each
    /// start; a fixed port keeps nginx's config unchanged across restarts.
    #[arg(
        long,
        env = "AUTOSCALER_ACTIVATOR_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub activator_listen: SocketAddr,
    /// Where nginx reports every request (the load-balancer signal): `auto` (a free
    /// loopback UDP port), `IP:PORT` (UDP), `unix:/abs/path` (a socket file the nginx
    /// workers can write; `unix:` alone is `signal.sock` in the managed nginx prefix), or
    /// `off`.
    #[arg(long, env = "AUTOSCALER_LB_SIGNAL", default_value = "auto")]
    pub lb_signal: String,
}

/// Runs until SIGINT/SIGTERM (graceful), a second signal exits at once. What cannot
/// work (lock held, listen address taken, nginx missing) ends it before the first pass
/// with exit 3.
pub fn run(args: Args) -> ExitCode {
    // Before anything is loaded or touched: a refused address changes nothing.
    if let Err(e) = api::check_listen(args.listen, args.allow_remote_api) {
        eprintln!("autoscaler run: {e}");
        return Exit::Invalid.into();
    }
    if !args.activator_listen.ip().to_canonical().is_loopback() {
        eprintln!(
            "autoscaler run: --activator-listen {} is not a loopback address: only the local nginx may reach the activator",
            args.activator_listen
        );
        return Exit::Invalid.into();
    }
    let initial = match common::load_policies(&args.policies) {
        Ok(p) => p,
        Err(code) => return code,
    };
    if let Err(errors) = refuse_api_listen(&initial, args.listen) {
        eprintln!("{errors}");
        eprintln!("nothing was changed");
        return Exit::Invalid.into();
    }
    let files = common::source_files(&initial, &args.policies);
    let runtime = match super::tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autoscaler run: cannot start the async runtime: {e}");
            return Exit::Unavailable.into();
        }
    };
    let lock = match args.operator.state().lock("run") {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("autoscaler run: {e}");
            return Exit::Unavailable.into();
        }
    };
    if let Err(e) = args.operator.check_nginx() {
        eprintln!("autoscaler run: {e}");
        return Exit::Unavailable.into();
    }
    let listener = match runtime.block_on(preflight::bind_listen(args.listen)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("autoscaler run: {e}");
            return Exit::Unavailable.into();
        }
    };
    let activator = match runtime.block_on(preflight::bind_listen(args.activator_listen)) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("autoscaler run: activator: {e}");
            return Exit::Unavailable.into();
        }
    };
    let code = runtime.block_on(daemon(args, listener, activator, (initial, files)));
    drop(lock);
    code
}

async fn daemon(
    args: Args,
    listener: tokio::net::TcpListener,
    activator: tokio::net::TcpListener,
    initial: (Vec<crate::policy_files::LoadedPolicy>, Vec<PathBuf>),
) -> ExitCode {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    let telemetry = Arc::new(Telemetry::new());
    let api_task = {
        let telemetry = telemetry.clone();
        let shutdown = shutdown.clone();
        tracing::info!(addr = %args.listen, "HTTP endpoint listening (/metrics, /healthz, /status)");
        tokio::spawn(async move { api::serve_on(listener, telemetry, shutdown).await })
    };
    let registry = crate::activator::Registry::new(telemetry.clone());
    let activator_addr = match activator.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("autoscaler run: activator: {e}");
            return Exit::Unavailable.into();
        }
    };
    tracing::info!(addr = %activator_addr, "activator listening (scale-to-zero policies at zero)");
    // Shutdown: held requests get 503 at once; forwarded ones may finish for 5 s.
    let activator_task = tokio::spawn(crate::activator::serve(
        activator,
        registry.clone(),
        shutdown.clone(),
        Duration::from_secs(5),
    ));
    // The engine may be down at start: keep retrying, serving /healthz meanwhile.
    let runtime =
        match connect_with_retry(args.operator.runtime, &args.operator.instance, &shutdown).await {
            Ok(Some(runtime)) => runtime,
            Ok(None) => return Exit::Ok.into(),
            Err(e) => {
                eprintln!("autoscaler run: {e}");
                return Exit::Unavailable.into();
            }
        };
    let lb = match args.operator.load_balancer() {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("autoscaler run: {}", super::exit::describe_anyhow(&e));
            return Exit::Invalid.into();
        }
    };
    // The signal receiver is bound before nginx is started or reloaded, so the first
    // config already reports to it; `signal_hub` is what the readers get.
    let signal_hub = crate::signal::SignalHub::new();
    let lb = match start_signal(&args.lb_signal, lb, &signal_hub, &shutdown) {
        Ok(lb) => lb,
        Err(e) => {
            eprintln!("autoscaler run: {e}");
            return Exit::Unavailable.into();
        }
    };
    let op = match crate::reconcile::Operator::new(
        runtime,
        lb,
        args.operator.state(),
        crate::reconcile::OperatorSettings {
            signal: signal_hub.clone(),
            ..args.operator.settings()
        },
    ) {
        // Scale to zero reads idle time from the signal hub.
        Ok(op) => Arc::new(op.with_activator(registry, activator_addr, signal_hub.clone())),
        Err(e) => {
            eprintln!("autoscaler run: {}", super::exit::describe(&e));
            return Exit::Unavailable.into();
        }
    };
    let paths = args.policies.clone();
    let api = args.listen;
    let load: Loader = Arc::new(move || {
        let policies = crate::policy_files::load_paths(&paths.files)?;
        refuse_api_listen(&policies, api)?;
        let files = common::source_files(&policies, &paths);
        Ok((policies, files))
    });
    let config = DaemonConfig {
        paths: args.policies.files.clone(),
        interval: args.interval,
        resync: args.resync,
        debounce: Duration::from_millis(250),
    };
    controller::run(op, config, initial, load, telemetry, shutdown.clone()).await;
    shutdown.cancel();
    let _ = activator_task.await;
    match api_task.await {
        Ok(Err(e)) => {
            eprintln!("autoscaler run: {}", super::exit::describe(&e));
            Exit::Unavailable.into()
        }
        _ => Exit::Ok.into(),
    }
}

/// Binds the signal receiver `setting` names, spawns it into `hub` until `shutdown`, and
/// returns `lb` rendering the matching `access_log` (unchanged for `off`).
fn start_signal(
    setting: &str,
    lb: common::AnyLb,
    hub: &crate::signal::SignalHub,
    shutdown: &CancellationToken,
) -> Result<common::AnyLb, String> {
    use crate::signal::{Endpoint, SignalReceiver};
    let endpoint = match (setting, &lb) {
        ("off", _) => return Ok(lb),
        ("auto", _) => Endpoint::Udp(SocketAddr::from(([127, 0, 0, 1], 0))),
        ("unix:", common::AnyLb::Managed(m)) => {
            std::fs::create_dir_all(m.prefix())
                .map_err(|e| format!("creating {}: {e}", m.prefix().display()))?;
            Endpoint::Unix(m.default_signal_socket())
        }
        ("unix:", common::AnyLb::External(_)) => {
            return Err(
                "--lb-signal unix: needs a path in external mode (one the nginx workers can write)"
                    .to_owned(),
            );
        }
        (other, _) => other.parse().map_err(|e| format!("--lb-signal {e}"))?,
    };
    let receiver = SignalReceiver::bind(&endpoint).map_err(|e| e.to_string())?;
    let bound = receiver.endpoint().clone();
    receiver.spawn(hub.clone(), shutdown.clone());
    Ok(match lb {
        common::AnyLb::Managed(m) => common::AnyLb::Managed(m.with_signal(bound)),
        common::AnyLb::External(e) => common::AnyLb::External(e.with_signal(bound)),
    })
}

/// Refuses a policy whose listen address is the operator's own endpoint: nginx could
/// never bind it, so validation says so before anything starts.
fn refuse_api_listen(
    policies: &[crate::policy_files::LoadedPolicy],
    api: SocketAddr,
) -> Result<(), crate::policy_files::LoadErrors> {
    let errors: Vec<crate::policy::PolicyError> = policies
        .iter()
        .filter(|p| {
            p.policy
                .spec
                .load_balancer
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|listen| same_socket(listen, api))
        })
        .map(|p| crate::policy::PolicyError {
            file: p.file.display().to_string(),
            line: p.line,
            column: 1,
            path: "spec.loadBalancer.listen".to_owned(),
            message: format!(
                "{} is the operator's own endpoint (--listen {api}); choose another address",
                p.policy.spec.load_balancer.listen
            ),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::policy_files::LoadErrors { errors })
    }
}

/// Whether two listeners would fight over one socket (same port, and the same or a
/// wildcard address).
fn same_socket(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// Connects, retrying while the engine is unreachable; `Ok(None)` on shutdown. An engine
/// that answers but is no swarm manager (with `--runtime swarm`) ends it at once: waiting
/// would not change that.
async fn connect_with_retry(
    kind: RuntimeKind,
    instance: &str,
    shutdown: &CancellationToken,
) -> Result<Option<AnyRuntime>, RuntimeError> {
    let mut backoff = crate::controller::backoff::Backoff::new(
        Duration::from_millis(250),
        Duration::from_secs(10),
    );
    loop {
        match AnyRuntime::connect(kind, instance).await {
            Ok(rt) => return Ok(Some(rt)),
            Err(e @ RuntimeError::NotSwarmManager { .. }) => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::error!(error = %e, ?delay, "docker engine unreachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// First SIGINT/SIGTERM: graceful shutdown. Second: exit at once.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!("signal received: graceful shutdown (send again to exit at once)");
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_on_the_operator_endpoint_is_refused() {
        let cases = [
            ("127.0.0.1:9100", "127.0.0.1:9100", true),
            ("127.0.0.1:9100", "0.0.0.0:9100", true),
            ("0.0.0.0:9100", "127.0.0.1:9100", true),
            ("127.0.0.2:9100", "127.0.0.1:9100", false),
            ("127.0.0.1:9101", "127.0.0.1:9100", false),
        ];
        for (listen, api, clash) in cases {
            let a: SocketAddr = listen.parse().expect("listen");
            let b: SocketAddr = api.parse().expect("api");
            assert_eq!(same_socket(a, b), clash, "{listen} vs {api}");
        }
    }
}
