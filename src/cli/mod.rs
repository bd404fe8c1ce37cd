//! The command line: one module per subcommand, each thin over the library.
//!
//! Exit codes follow `kubectl`: 0 success / converged / no changes, 1 a step failed or
//! changes are pending (`diff`), 2 invalid input or usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod common;
pub mod diff;
pub mod down;
pub mod load;
pub mod reconcile;
pub mod run;
pub mod schema;
pub mod simulate;
pub mod status;
pub mod validate;

/// Exit code for invalid input (bad policy, bad flags).
pub const EXIT_INVALID: u8 = 2;

/// A Kubernetes-style autoscaling operator for plain Docker hosts behind NGINX.
#[derive(Debug, Parser)]
#[command(name = "autoscaler", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `autoscaler=debug`.
    #[arg(long, global = true, env = "AUTOSCALER_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon: watch policy files, scrape metrics and reconcile until stopped.
    Run(run::Args),
    /// One reconcile pass (for cron): observe, decide, plan, execute, record.
    Reconcile(reconcile::Args),
    /// Show what a pass would change, changing nothing (exit 1 when changes are pending).
    Diff(diff::Args),
    /// Drain and remove a policy's replicas and upstream (the opposite of a pass).
    Down(down::Args),
    /// Check policy files: schema and semantic rules, errors with file:line:column.
    Validate(validate::Args),
    /// Print the JSON Schema of `ScalingPolicy`.
    Schema(schema::Args),
    /// Show per-policy desired/current/ready replicas, metrics and the last event.
    Status(status::Args),
    /// Traffic generator: open-loop rate profiles or closed-loop concurrency.
    Load(load::Args),
    /// Replay a request-rate trace through the scaling algorithm (what-if analysis).
    Simulate(simulate::Args),
}

/// Entry point of the `autoscaler` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(EXIT_INVALID)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(&cli.log, cli.log_json);
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Down(args) => down::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Status(args) => status::run(args),
        Command::Load(args) => load::run(args),
        Command::Simulate(args) => simulate::run(args),
    }
}

/// Logs go to stderr so stdout stays for the command's own output (tables, JSON, diffs).
fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Builds a multi-threaded tokio runtime for a subcommand; an error here is fatal.
pub fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
