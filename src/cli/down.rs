//! `autoscaler down`: drain and remove a policy's replicas and upstream (as `kubectl delete -f`).

use std::process::ExitCode;
use std::time::Duration;

use super::common;
use crate::lb::LoadBalancer;
use crate::reconcile::PassMode;

/// `down --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler down -f policy.yaml
  autoscaler down -f policies/ --state-dir /var/lib/autoscaler";

/// Arguments of `autoscaler down`: the policies and how to reach the host.
pub type Args = common::HostArgs;

/// Exit 0 when everything of the policies is gone, 1 when a step failed, 2 invalid input.
pub fn run(args: Args) -> ExitCode {
    let args = &args;
    common::drive(
        "down",
        &args.policies,
        &args.operator,
        Some("down"),
        super::Exit::Failed,
        |policies, _files| async move { Ok(common::exit_if(down(args, &policies).await?)) },
    )
}

async fn down(args: &Args, policies: &[crate::policy_files::LoadedPolicy]) -> anyhow::Result<bool> {
    let op = args.operator.operator().await?;
    // The files' own settings complete what the state knows (it may have lost them).
    let refs: Vec<_> = policies.iter().map(|p| &p.policy).collect();
    op.prepare(&refs, PassMode::DryRun).await?;
    let mut ok = true;
    for loaded in policies {
        let policy = &loaded.policy;
        let drain = Duration::from_secs(policy.spec.drain.timeout_seconds);
        let report = op
            .remove_policy(&policy.metadata.name, drain, PassMode::Apply, None)
            .await?;
        ok &= super::reconcile::print_report(&report);
        if report.converged() {
            crate::outln!("{}: down", policy.metadata.name);
        }
    }
    if ok && op.upstream_count().await == 0 {
        op.lb().stop().await?;
        crate::outln!("no policy left: nginx stopped");
    }
    Ok(ok)
}
