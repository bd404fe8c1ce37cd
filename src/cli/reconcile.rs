//! `autoscaler reconcile` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `autoscaler reconcile`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("autoscaler reconcile: not implemented yet");
    ExitCode::from(super::EXIT_INVALID)
}
