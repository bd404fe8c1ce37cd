//! `autoscaler schema`: prints the JSON Schema of `ScalingPolicy`.

use std::process::ExitCode;

/// `schema --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler schema > scalingpolicy.schema.json
  autoscaler schema | check-jsonschema --check-metaschema -";

/// Arguments of `autoscaler schema`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Writes the schema (as committed in `manifests/scalingpolicy.schema.json`) to stdout.
pub fn run(_args: Args) -> ExitCode {
    super::output::write_stdout(&crate::policy::schema_json());
    super::Exit::Ok.into()
}
