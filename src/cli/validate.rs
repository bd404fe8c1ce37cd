//! `autoscaler validate`: schema and semantic checks, every error with file:line:column.

use std::path::PathBuf;
use std::process::ExitCode;

/// `validate --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler validate -f policy.yaml
  autoscaler validate -f policies/ -f extra.yaml   # checked together: names and ports must not clash";

/// Arguments of `autoscaler validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file or directory of `*.yaml`/`*.yml` (repeatable; all are checked together).
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
}

/// Prints one `OK` line per valid policy (exit 0), or every error on stderr (exit 2).
pub fn run(args: Args) -> ExitCode {
    match crate::policy_files::load_paths(&args.files) {
        Ok(policies) => {
            for p in policies {
                crate::outln!(
                    "OK {}:{}: ScalingPolicy {}",
                    p.file.display(),
                    p.line,
                    p.policy.metadata.name
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s); nothing was changed", errors.errors.len());
            super::Exit::Invalid.into()
        }
    }
}
