//! Arguments and wiring shared by the subcommands that drive the host.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::lb::{ApplyOutcome, ExternalNginx, LbError, LoadBalancer, ManagedNginx};
use crate::nginx::Upstream;
use crate::policy_files::{self, LoadedPolicy};
use crate::reconcile::{Operator, OperatorSettings};
use crate::runtime::{AnyRuntime, RuntimeKind};
use crate::state::StateDir;

use super::Exit;
use super::preflight::PreflightError;

/// `-f PATH...`: policy files or directories.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// Policy file, multi-document file or directory of `*.yaml`/`*.yml` (repeatable).
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
}

/// The arguments of a command that drives the host: which policies, and how.
#[derive(Debug, Clone, clap::Args)]
pub struct HostArgs {
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// How the operator reaches Docker and nginx, and where it keeps state.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// State directory (history, status, events, lock, managed nginx prefix, `nginx -t`
    /// scratch); default `/var/lib/autoscaler` for root, `$XDG_STATE_HOME/autoscaler` or
    /// `~/.local/state/autoscaler` otherwise.
    #[arg(long, env = "AUTOSCALER_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
    pub state_dir: PathBuf,
    /// Operator instance id, stored as a label: two instances never touch each other's containers.
    #[arg(long, env = "AUTOSCALER_INSTANCE", default_value = "default")]
    pub instance: String,
    /// Directory of the per-instance lock files, which two operators of one instance meet
    /// whatever their state directories [default: /run/lock/autoscaler for root,
    /// $XDG_RUNTIME_DIR/autoscaler or /tmp/autoscaler-UID otherwise].
    #[arg(long, env = "AUTOSCALER_LOCK_DIR")]
    pub lock_dir: Option<PathBuf>,
    /// `managed`: run our own nginx master under the state dir; `external`: write a file and run a reload command.
    #[arg(
        long,
        value_enum,
        env = "AUTOSCALER_NGINX_MODE",
        default_value = "managed"
    )]
    pub nginx_mode: NginxMode,
    /// The nginx binary (also used for `nginx -t` in external mode).
    #[arg(long, env = "AUTOSCALER_NGINX", default_value = "nginx")]
    pub nginx_bin: PathBuf,
    /// External mode: the file to write (included by your nginx's `http` block).
    #[arg(
        long,
        env = "AUTOSCALER_NGINX_CONFIG",
        required_if_eq("nginx_mode", "external")
    )]
    pub nginx_config: Option<PathBuf>,
    /// External mode: the reload command, e.g. `systemctl reload nginx` (split on spaces).
    #[arg(
        long,
        env = "AUTOSCALER_NGINX_RELOAD_COMMAND",
        required_if_eq("nginx_mode", "external")
    )]
    pub nginx_reload_command: Option<String>,
    /// Managed mode: nginx worker processes.
    #[arg(long, env = "AUTOSCALER_NGINX_WORKERS", default_value_t = 2)]
    pub nginx_workers: u32,
    /// Where replicas run: `docker`, plain containers on this engine; `swarm`, one Swarm
    /// service per replica through the swarm manager `DOCKER_HOST` names.
    #[arg(long, value_enum, env = "AUTOSCALER_RUNTIME", default_value = "docker")]
    pub runtime: RuntimeKind,
}

/// Where the nginx config lives and who reloads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NginxMode {
    /// The operator's own nginx master.
    Managed,
    /// Somebody else's nginx.
    External,
}

/// Either kind of load balancer, chosen at run time.
pub enum AnyLb {
    /// Managed mode.
    Managed(ManagedNginx),
    /// External mode.
    External(ExternalNginx),
}

impl LoadBalancer for AnyLb {
    fn render(&self, upstreams: &[Upstream]) -> Result<String, LbError> {
        match self {
            AnyLb::Managed(lb) => lb.render(upstreams),
            AnyLb::External(lb) => lb.render(upstreams),
        }
    }

    async fn current(&self) -> Result<Option<String>, LbError> {
        match self {
            AnyLb::Managed(lb) => lb.current().await,
            AnyLb::External(lb) => lb.current().await,
        }
    }

    async fn apply(&self, upstreams: &[Upstream]) -> Result<ApplyOutcome, LbError> {
        match self {
            AnyLb::Managed(lb) => lb.apply(upstreams).await,
            AnyLb::External(lb) => lb.apply(upstreams).await,
        }
    }

    async fn ensure_running(&self) -> Result<(), LbError> {
        match self {
            AnyLb::Managed(lb) => lb.ensure_running().await,
            AnyLb::External(lb) => lb.ensure_running().await,
        }
    }

    async fn stop(&self) -> Result<(), LbError> {
        match self {
            AnyLb::Managed(lb) => lb.stop().await,
            AnyLb::External(lb) => lb.stop().await,
        }
    }
}

/// The operator type every host-driving subcommand uses.
pub type HostOperator = Operator<AnyRuntime, AnyLb>;

impl OperatorArgs {
    /// The state directory, whose lock also locks the instance.
    pub fn state(&self) -> StateDir {
        StateDir::new(&self.state_dir).with_instance(&self.instance, self.lock_dir.clone())
    }

    /// Builds the load balancer these arguments describe.
    pub fn load_balancer(&self) -> anyhow::Result<AnyLb> {
        Ok(match self.nginx_mode {
            NginxMode::Managed => AnyLb::Managed(ManagedNginx::new(
                absolute(&self.state().nginx_prefix())?,
                self.nginx_bin.clone(),
                self.nginx_workers,
            )),
            NginxMode::External => {
                let config = self.nginx_config.clone().ok_or_else(|| {
                    anyhow::anyhow!("--nginx-config is required in external mode")
                })?;
                let command: Vec<String> = self
                    .nginx_reload_command
                    .as_deref()
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                AnyLb::External(ExternalNginx::new(
                    config,
                    command,
                    self.nginx_bin.clone(),
                    absolute(&self.state().root().join("nginx-check"))?,
                ))
            }
        })
    }

    /// Fails fast when the nginx binary cannot be found (`nginx -t` would say only
    /// "No such file or directory", which reads like a missing config).
    pub fn check_nginx(&self) -> Result<PathBuf, PreflightError> {
        super::preflight::find_nginx(&self.nginx_bin)
    }

    /// Connects to Docker (or the swarm manager) and builds the operator.
    pub async fn operator(&self) -> anyhow::Result<HostOperator> {
        let runtime = AnyRuntime::connect(self.runtime, &self.instance).await?;
        let lb = self.load_balancer()?;
        Ok(Operator::new(runtime, lb, self.state(), self.settings())?)
    }

    /// The operator settings these arguments give.
    pub fn settings(&self) -> OperatorSettings {
        OperatorSettings {
            instance: self.instance.clone(),
            ..OperatorSettings::default()
        }
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// Loads and validates every policy; on failure prints every error and returns exit 2.
pub fn load_policies(args: &PolicyArgs) -> Result<Vec<LoadedPolicy>, ExitCode> {
    policy_files::load_paths(&args.files).map_err(|errors| {
        eprintln!("{errors}");
        eprintln!("nothing was changed");
        Exit::Invalid.into()
    })
}

/// The policy files a load read, for prune bookkeeping (a directory stands for its files).
pub fn source_files(policies: &[LoadedPolicy], args: &PolicyArgs) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = policies.iter().map(|p| p.file.clone()).collect();
    for path in &args.files {
        if path.is_file() {
            files.push(path.clone());
        } else if let Ok(entries) = std::fs::read_dir(path) {
            files.extend(
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| policy_files::is_policy_file(p)),
            );
        }
    }
    files.sort();
    files.dedup();
    files
}

/// The frame every host-driving subcommand shares: load and validate the policies (exit 2
/// on bad input, before anything is touched), start the async runtime, take the state
/// lock when `lock` names the command, then run `body` with the policies and the files
/// they came from. An error prints as `autoscaler CMD: ...` and exits 3 when the host
/// cannot be used (see [`super::exit::classify`]), else with `error_code`.
pub fn drive<F, Fut>(
    cmd: &str,
    policies: &PolicyArgs,
    operator: &OperatorArgs,
    lock: Option<&str>,
    error_code: Exit,
    body: F,
) -> ExitCode
where
    F: FnOnce(Vec<LoadedPolicy>, Vec<PathBuf>) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let loaded = match load_policies(policies) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let files = source_files(&loaded, policies);
    let runtime = match super::tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autoscaler {cmd}: cannot start the async runtime: {e}");
            return Exit::Unavailable.into();
        }
    };
    let _lock = match lock.map(|what| operator.state().lock(what)).transpose() {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("autoscaler {cmd}: {e}");
            return Exit::Unavailable.into();
        }
    };
    runtime.block_on(async move {
        match body(loaded, files).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("autoscaler {cmd}: {}", super::exit::describe_anyhow(&e));
                super::exit::classify(&e, error_code).into()
            }
        }
    })
}

/// Exit 0 when `ok`, else 1.
pub fn exit_if(ok: bool) -> ExitCode {
    super::exit::ok_or_failed(ok)
}
