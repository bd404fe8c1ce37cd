//! `autoscaler down` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `autoscaler down`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("autoscaler down: not implemented yet");
    ExitCode::from(super::EXIT_INVALID)
}
