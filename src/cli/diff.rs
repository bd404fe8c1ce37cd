//! `autoscaler diff`: what a pass would change, changing nothing (exit codes as `kubectl diff`).

use std::collections::BTreeSet;
use std::process::ExitCode;

use super::common;
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, PassMode};

/// Arguments of `autoscaler diff`: the policies and how to reach the host.
pub type Args = common::HostArgs;

/// Exit 0 no changes, 1 changes pending, 2 error.
pub fn run(args: Args) -> ExitCode {
    let args = &args;
    common::drive(
        "diff",
        &args.policies,
        &args.operator,
        None,
        ExitCode::from(super::EXIT_INVALID),
        |policies, files| async move {
            let pending = diff(args, &policies, &files).await?;
            Ok(if pending {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        },
    )
}

/// Prints the pending changes; returns whether there are any.
async fn diff(
    args: &Args,
    policies: &[crate::loader::LoadedPolicy],
    files: &[std::path::PathBuf],
) -> anyhow::Result<bool> {
    let op = args.operator.operator().await?;
    let refs: Vec<_> = policies.iter().map(|p| &p.policy).collect();
    let present: BTreeSet<String> = refs.iter().map(|p| p.metadata.name.clone()).collect();
    op.prepare(&refs, PassMode::DryRun).await?;
    let mut pending = false;
    let mut reports = Vec::new();
    for policy in &refs {
        let report = op.reconcile(policy, PassMode::DryRun).await?;
        if let Some(decision) = &report.decision {
            println!("{}: {decision}", policy.metadata.name);
        }
        print!("{}", report.plan);
        pending |= !report.plan.is_empty();
        reports.push((report, Some(*policy)));
    }
    for name in op.prunable(files, &present).await {
        let report = op
            .remove_policy(&name, DEFAULT_DRAIN_TIMEOUT, PassMode::DryRun, None)
            .await?;
        println!("{name}: removed from its file: would be torn down");
        print!("{}", report.plan);
        pending = true;
        reports.push((report, None));
    }
    let (before, after) = op.config_diff(&reports).await?;
    // Every server block carries the config's hash: mask it so only real changes show.
    let (before, after) = (
        crate::nginx::mask_config_hash(&before),
        crate::nginx::mask_config_hash(&after),
    );
    if before != after {
        pending = true;
        let diff = similar::TextDiff::from_lines(&before, &after);
        print!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header("nginx.conf (live)", "nginx.conf (after)")
        );
    }
    Ok(pending)
}
