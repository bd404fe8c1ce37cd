//! `autoscaler schema`: prints the JSON Schema of `ScalingPolicy`.

use std::io::Write;
use std::process::ExitCode;

/// Arguments of `autoscaler schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Writes the schema (as committed in `manifests/scalingpolicy.schema.json`) to stdout.
pub fn run(_args: Args) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(crate::policy::schema_json().as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autoscaler schema: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}
