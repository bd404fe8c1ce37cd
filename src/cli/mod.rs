//! The command line: one module per subcommand, each thin over the library.
//!
//! Exit codes follow one table for every command ([`exit`]): 0 success, 1 a step failed
//! or changes are pending, 2 invalid input or usage, 3 the host cannot be used.

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub mod common;
pub mod completions;
pub mod diff;
pub mod down;
pub mod events;
pub mod exit;
pub mod load;
pub mod output;
pub mod preflight;
pub mod reconcile;
pub mod run;
pub mod schema;
pub mod simulate;
pub mod status;
pub mod validate;

pub use exit::Exit;

/// A Kubernetes-style autoscaling operator for plain Docker hosts behind NGINX.
#[derive(Debug, Parser)]
#[command(
    name = "autoscaler",
    version,
    about,
    long_about = None,
    after_help = exit::HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `autoscaler=debug`.
    #[arg(long, global = true, env = "AUTOSCALER_LOG", default_value = "info")]
    pub log: String,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "AUTOSCALER_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon: watch policy files, scrape metrics and reconcile until stopped.
    #[command(after_help = run::EXAMPLES)]
    Run(run::Args),
    /// One reconcile pass (for cron): observe, decide, plan, execute, record.
    #[command(after_help = reconcile::EXAMPLES)]
    Reconcile(reconcile::Args),
    /// Show what a pass would change, changing nothing (exit 1 when changes are pending).
    #[command(after_help = diff::EXAMPLES)]
    Diff(diff::Args),
    /// Drain and remove a policy's replicas and upstream (the opposite of a pass).
    #[command(after_help = down::EXAMPLES)]
    Down(down::Args),
    /// Check policy files: schema and semantic rules, errors with file:line:column.
    #[command(after_help = validate::EXAMPLES)]
    Validate(validate::Args),
    /// Print the JSON Schema of `ScalingPolicy`.
    #[command(after_help = schema::EXAMPLES)]
    Schema(schema::Args),
    /// Show per-policy desired/current/ready replicas, metrics and the last event.
    #[command(after_help = status::EXAMPLES)]
    Status(status::Args),
    /// Show the event log: repeats aggregated with a count, first and last seen.
    #[command(after_help = events::EXAMPLES)]
    Events(events::Args),
    /// Traffic generator: open-loop rate profiles or closed-loop concurrency.
    #[command(after_help = load::EXAMPLES)]
    Load(load::Args),
    /// Replay a request-rate trace through the scaling algorithm (what-if analysis).
    #[command(after_help = simulate::EXAMPLES)]
    Simulate(simulate::Args),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = completions::COMPLETIONS_EXAMPLES)]
    Completions(completions::Args),
    /// Print the man page (roff) of `autoscaler`, or write one per subcommand to a directory.
    #[command(after_help = completions::MAN_EXAMPLES)]
    Man(completions::ManArgs),
}

/// The clap definition (for completions, man pages and tests).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Entry point of the `autoscaler` binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Invalid.into()
            } else {
                Exit::Ok.into()
            };
        }
    };
    init_logging(&cli.log, cli.log_json);
    // Any reqwest client of the process needs a rustls provider (see metrics::tls).
    crate::metrics::tls::install_crypto_provider();
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Reconcile(args) => reconcile::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Down(args) => down::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Status(args) => status::run(args),
        Command::Events(args) => events::run(args),
        Command::Load(args) => load::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => completions::man(args),
    }
}

/// Logs go to stderr so stdout stays for the command's own output (tables, JSON, diffs);
/// ANSI colour only when stderr is a terminal (a redirected `daemon.log` stays plain).
fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::stderr_colour());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_subcommand_help_has_an_example_and_the_top_help_the_exit_codes() {
        let mut cmd = command();
        let top = cmd.render_help().to_string();
        assert!(top.contains("Exit codes"), "{top}");
        for sub in command().get_subcommands_mut() {
            let name = sub.get_name().to_owned();
            if name == "help" {
                continue;
            }
            let help = sub.render_help().to_string();
            assert!(
                help.contains("Example"),
                "{name} --help has no example:\n{help}"
            );
            assert!(
                help.contains("autoscaler "),
                "{name}: example does not run the binary"
            );
        }
    }
}
