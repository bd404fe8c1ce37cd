//! `autoscaler diff`: what a pass would change, changing nothing (exit codes as `kubectl diff`).

use std::collections::BTreeSet;
use std::process::ExitCode;

use super::{Exit, common};
use crate::outln;
use crate::plan::{Plan, Step};
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, PassMode};
use crate::runtime::template::TemplateSummary;

/// `diff --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler diff -f policy.yaml
  autoscaler diff -f policies/ && echo 'nothing to do'   # exit 0: converged, 1: changes pending";

/// Arguments of `autoscaler diff`: the policies and how to reach the host.
pub type Args = common::HostArgs;

/// Exit 0 no changes, 1 changes pending, 3 the host cannot be reached or another error
/// (never 1, which means "changes pending"), 2 invalid input.
pub fn run(args: Args) -> ExitCode {
    let args = &args;
    common::drive(
        "diff",
        &args.policies,
        &args.operator,
        None,
        Exit::Unavailable,
        |policies, files| async move {
            let pending = diff(args, &policies, &files).await?;
            Ok(super::exit::ok_or_failed(!pending))
        },
    )
}

/// Prints the pending changes and a one-line summary; returns whether there are any.
async fn diff(
    args: &Args,
    policies: &[crate::policy_files::LoadedPolicy],
    files: &[std::path::PathBuf],
) -> anyhow::Result<bool> {
    let op = args.operator.operator().await?;
    let refs: Vec<_> = policies.iter().map(|p| &p.policy).collect();
    let present: BTreeSet<String> = refs.iter().map(|p| p.metadata.name.clone()).collect();
    op.prepare(&refs, PassMode::DryRun).await?;
    let mut summary = Summary::default();
    let mut reports = Vec::new();
    for policy in &refs {
        let report = op.reconcile(policy, PassMode::DryRun).await?;
        if let Some(decision) = &report.decision {
            outln!("{}: {decision}", policy.metadata.name);
        }
        crate::out!("{}", report.plan);
        if replaces_template(&report.plan) {
            outln!("{}", template_detail(&op, policy).await);
        }
        summary.add(&report.plan);
        reports.push((report, Some(*policy)));
    }
    for name in op.prunable(files, &present).await {
        let report = op
            .remove_policy(&name, DEFAULT_DRAIN_TIMEOUT, PassMode::DryRun, None)
            .await?;
        outln!("{name}: removed from its file: would be torn down");
        crate::out!("{}", report.plan);
        summary.add(&report.plan);
        summary.torn_down += 1;
        reports.push((report, None));
    }
    let (before, after) = op.config_diff(&reports).await?;
    // Every server block carries the config's hash: mask it so only real changes show.
    let (before, after) = (
        crate::nginx::mask_config_hash(&before),
        crate::nginx::mask_config_hash(&after),
    );
    if before != after {
        summary.nginx = true;
        let diff = similar::TextDiff::from_lines(&before, &after);
        crate::out!(
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header("nginx.conf (live)", "nginx.conf (after)")
        );
    }
    outln!("{summary}");
    Ok(summary.pending())
}

/// Whether a plan rolls replicas because their template changed.
fn replaces_template(plan: &Plan) -> bool {
    plan.steps
        .iter()
        .any(|s| matches!(s, Step::Remove { reason, .. } if reason == TEMPLATE_CHANGED))
}

/// The reason the planner gives a replica that is rolled for a new template.
const TEMPLATE_CHANGED: &str = "template changed";

/// `web: template: image demo:1 → demo:2; env MODE added`, from the template label the
/// running replicas carry, compared with what the policy would create now.
async fn template_detail(
    op: &common::HostOperator,
    policy: &crate::policy::types::ScalingPolicy,
) -> String {
    let name = &policy.metadata.name;
    let new = TemplateSummary::of(&crate::reconcile::execute::replica_spec(policy, "", 0));
    let running = match op.runtime().templates(name).await {
        Ok(running) => running,
        Err(e) => return format!("{name}: template changed (cannot read the running one: {e})"),
    };
    let mut changes: BTreeSet<String> = BTreeSet::new();
    let mut unknown = 0;
    for old in running.values() {
        match old {
            Some(old) if old != &new => changes.extend(old.changes_to(&new)),
            Some(_) => {}
            None => unknown += 1,
        }
    }
    let mut text = format!("{name}: template: ");
    if changes.is_empty() {
        text.push_str("changed");
    } else {
        text.push_str(&changes.into_iter().collect::<Vec<_>>().join("; "));
    }
    if unknown > 0 {
        text.push_str(&format!(
            " ({unknown} replica(s) predate the template label: no detail for them)"
        ));
    }
    text
}

/// The counts behind `diff`'s last line ("2 to create, 1 to remove, nginx changes").
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Replicas a pass would create.
    pub create: usize,
    /// Replicas a pass would remove.
    pub remove: usize,
    /// Policies a pass would tear down (removed from their files).
    pub torn_down: usize,
    /// Plans with other steps (waits, upstream changes).
    pub other_steps: usize,
    /// The rendered nginx config would change.
    pub nginx: bool,
}

impl Summary {
    /// Counts one plan's steps.
    pub fn add(&mut self, plan: &Plan) {
        for step in &plan.steps {
            match step {
                Step::Create { .. } => self.create += 1,
                Step::Remove { .. } => self.remove += 1,
                _ => self.other_steps += 1,
            }
        }
    }

    /// Whether a pass would change anything.
    pub fn pending(&self) -> bool {
        self.create + self.remove + self.torn_down + self.other_steps > 0 || self.nginx
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.pending() {
            return f.write_str("no changes");
        }
        let mut parts = vec![
            format!("{} to create", self.create),
            format!("{} to remove", self.remove),
        ];
        if self.torn_down > 0 {
            parts.push(format!("{} policies to tear down", self.torn_down));
        }
        parts.push(
            if self.nginx {
                "nginx changes"
            } else {
                "nginx unchanged"
            }
            .to_owned(),
        );
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_counts_creates_removes_and_nginx() {
        let plan = Plan {
            policy: "web".into(),
            steps: vec![
                Step::Create {
                    name: "web-8001".into(),
                    host_port: 8001,
                },
                Step::Create {
                    name: "web-8002".into(),
                    host_port: 8002,
                },
                Step::WaitReady {
                    name: "web-8001".into(),
                    host_port: 8001,
                },
            ],
        };
        let mut summary = Summary::default();
        assert_eq!(summary.to_string(), "no changes");
        summary.add(&plan);
        summary.nginx = true;
        assert_eq!(
            summary.to_string(),
            "2 to create, 0 to remove, nginx changes"
        );
        assert!(summary.pending());
    }
}
