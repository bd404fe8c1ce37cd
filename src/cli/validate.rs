//! `autoscaler validate`: schema and semantic checks, every error with file:line:column.

use std::path::PathBuf;
use std::process::ExitCode;

/// `validate --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler validate -f policy.yaml
  autoscaler validate -f policies/ -f extra.yaml   # checked together: names and ports must not clash
  autoscaler validate --once -f policy.yaml        # also what `reconcile --once` refuses (replicas.min: 0)";

/// Arguments of `autoscaler validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file or directory of `*.yaml`/`*.yml` (repeatable; all are checked together).
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Check for `reconcile --once` too: it refuses scale-to-zero policies (`min: 0`),
    /// since only `autoscaler run` has the activator that holds requests at zero.
    #[arg(long)]
    pub once: bool,
}

/// Refuses scale-to-zero policies for `reconcile --once`: a one-shot pass has no
/// activator, so at zero replicas nothing would hold (or answer) a request. They run
/// under `autoscaler run` only.
///
/// # Errors
/// One error per such policy, at its `spec.replicas.min`.
pub fn refuse_scale_to_zero_once(
    policies: &[crate::policy_files::LoadedPolicy],
) -> Result<(), crate::policy_files::LoadErrors> {
    let errors: Vec<crate::policy::PolicyError> = policies
        .iter()
        .filter(|p| p.policy.spec.replicas.min == 0)
        .map(|p| crate::policy::PolicyError {
            file: p.file.display().to_string(),
            line: p.line,
            column: 1,
            path: "spec.replicas.min".to_owned(),
            message: format!(
                "policy {:?} scales to zero (min: 0), which needs the activator of `autoscaler run` to hold requests at zero; `reconcile --once` cannot hold them: run it under `autoscaler run`, or set min >= 1 for cron use",
                p.policy.metadata.name
            ),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(crate::policy_files::LoadErrors { errors })
    }
}

/// Prints one `OK` line per valid policy (exit 0), or every error on stderr (exit 2).
pub fn run(args: Args) -> ExitCode {
    let loaded = crate::policy_files::load_paths(&args.files).and_then(|policies| {
        if args.once {
            refuse_scale_to_zero_once(&policies)?;
        }
        Ok(policies)
    });
    match loaded {
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
