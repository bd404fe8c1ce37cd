//! `autoscaler validate` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `autoscaler validate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> ExitCode {
    eprintln!("autoscaler validate: not implemented yet");
    ExitCode::from(super::EXIT_INVALID)
}
