//! `autoscaler reconcile --once`: one pass for cron; the exit code says what happened.

use super::common::{self, OperatorArgs, PolicyArgs};
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, PassMode, PolicyReport};
use std::collections::BTreeSet;
use std::process::ExitCode;

/// `reconcile --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler reconcile --once -f policy.yaml
  autoscaler reconcile --once -f policies/ --state-dir /var/lib/autoscaler   # from cron
  * * * * * cd /srv/app && autoscaler reconcile --once -f policies/ >> reconcile.log 2>&1";

/// Arguments of `autoscaler reconcile`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run one pass and exit (the only mode; the daemon is `autoscaler run`).
    #[arg(long, required = true)]
    pub once: bool,
    #[command(flatten)]
    pub policies: PolicyArgs,
    #[command(flatten)]
    pub operator: OperatorArgs,
}

/// Runs one pass: exit 0 converged, 1 a step failed (the next run resumes), 2 invalid input.
pub fn run(args: Args) -> ExitCode {
    // Scale-to-zero policies need `run`'s activator: refused before anything is touched.
    if let Ok(policies) = crate::policy_files::load_paths(&args.policies.files)
        && let Err(errors) = super::validate::refuse_scale_to_zero_once(&policies)
    {
        eprintln!("{errors}");
        eprintln!("nothing was changed");
        return super::Exit::Invalid.into();
    }
    let args = &args;
    common::drive(
        "reconcile",
        &args.policies,
        &args.operator,
        Some("reconcile --once"),
        super::Exit::Failed,
        |policies, files| async move { Ok(common::exit_if(pass(args, &policies, &files).await?)) },
    )
}

async fn pass(
    args: &Args,
    policies: &[crate::policy_files::LoadedPolicy],
    files: &[std::path::PathBuf],
) -> anyhow::Result<bool> {
    args.operator.check_nginx()?;
    let op = args.operator.operator().await?;
    let sources: Vec<_> = policies
        .iter()
        .map(|p| (p.policy.metadata.name.clone(), p.file.clone()))
        .collect();
    let refs: Vec<_> = policies.iter().map(|p| &p.policy).collect();
    let present: BTreeSet<String> = sources.iter().map(|(n, _)| n.clone()).collect();
    let prune = op.prunable(files, &present).await;
    op.prepare(&refs, PassMode::Apply).await?;
    op.record_sources(&sources).await?;
    let mut converged = true;
    // Policies are independent (the daemon reconciles them concurrently too): one slow
    // policy (image start, readiness) must not serialize the whole pass. Drains run in
    // the background; the process waits for them before it exits.
    let reports = futures::future::join_all(refs.iter().map(|p| async {
        let mut report = op.reconcile(p, PassMode::Apply).await?;
        op.settle(&mut report).await;
        Ok::<_, crate::reconcile::ReconcileError>(report)
    }))
    .await;
    for report in reports {
        match report {
            Ok(report) => converged &= print_report(&report),
            Err(e) => {
                converged = false;
                eprintln!("autoscaler reconcile: {}", super::exit::describe(&e));
            }
        }
    }
    for name in prune {
        let report = op
            .remove_policy(&name, DEFAULT_DRAIN_TIMEOUT, PassMode::Apply, None)
            .await?;
        crate::outln!("{name}: removed from its file, tearing down");
        converged &= print_report(&report);
    }
    Ok(converged)
}

/// Prints what a pass did; returns whether it converged.
pub fn print_report(report: &PolicyReport) -> bool {
    if let Some(decision) = &report.decision {
        crate::outln!("{}: {decision}", report.policy);
    }
    for step in &report.done {
        crate::outln!("{}: {step}", report.policy);
    }
    if let Some((step, e)) = &report.error {
        crate::outln!("{}: FAILED {step}: {e}", report.policy);
        crate::outln!(
            "{}: the next pass resumes from what it observes",
            report.policy
        );
        return false;
    }
    for failure in &report.retire_failures {
        crate::outln!("{}: FAILED {failure}", report.policy);
    }
    if !report.retire_failures.is_empty() {
        return false;
    }
    if report.plan.is_empty() {
        crate::outln!("{}: converged, nothing to do", report.policy);
    }
    true
}
