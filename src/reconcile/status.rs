//! What a pass records about a policy: the decision and its conditions, the outcome of its
//! steps, the `PolicyValid` condition after a load, and which file each policy came from.
//!
//! Plain functions over [`PolicyState`]: the pass calls them with what it observed and did.

use std::collections::BTreeSet;
use std::path::Path;

use crate::plan::Step;
use crate::policy::Behavior;
use crate::policy_files::LoadErrors;
use crate::scaling::{Decision, Limit};
use crate::state::{CounterSample, MetricValue, PolicyState, State};

use super::ReconcileError;

/// Records a decision: its history (windows, rate policies), the samples of the replicas
/// that still exist, the status fields and the `ScalingActive`/`ScalingLimited` conditions.
pub fn record_decision(
    ps: &mut PolicyState,
    decision: &Decision,
    behavior: &Behavior,
    samples: impl IntoIterator<Item = (String, CounterSample)>,
    replica_ids: &BTreeSet<&str>,
    now_ms: u64,
) {
    ps.history.record(decision, now_ms, behavior);
    // Keep samples only for replicas that still exist (no unbounded growth).
    ps.samples
        .retain(|key, _| replica_ids.contains(crate::metrics::aggregate::sample_owner(key)));
    ps.samples.extend(samples);
    let status = &mut ps.status;
    status.desired = decision.desired;
    status.reason = decision.to_string();
    status.metrics = decision
        .metrics
        .iter()
        .map(|m| MetricValue {
            name: m.name.clone(),
            value: m.per_replica,
            target: m.target,
        })
        .collect();
    let (active_reason, active) = if decision.metrics_available {
        ("ValidMetricFound", true)
    } else {
        ("FailedGetMetrics", false)
    };
    status.set_condition(
        "ScalingActive",
        active,
        active_reason,
        &decision.reason,
        now_ms,
    );
    // As HPA: "limited" means bounded by min/max or a rate policy; windows and the
    // tolerance band are how the algorithm decides, not limits.
    let (limited, reason) = match &decision.limit {
        Some(Limit::Min(_)) => (true, "TooFewReplicas"),
        Some(Limit::Max(_)) => (true, "TooManyReplicas"),
        Some(Limit::Rate { .. }) => (true, "RateLimited"),
        Some(Limit::Disabled(_)) => (true, "ScalingDisabled"),
        _ => (false, "DesiredWithinRange"),
    };
    let message = if limited {
        decision.reason.clone()
    } else {
        "the desired count is within the allowed range".to_owned()
    };
    status.set_condition("ScalingLimited", limited, reason, &message, now_ms);
}

/// The scale event a pass earned, recorded only once its steps succeeded: kind and sentence.
pub fn scale_event(
    ps: &mut PolicyState,
    decision: &Decision,
    current: u32,
    failed: bool,
    now_ms: u64,
) -> Option<(&'static str, String)> {
    if failed || decision.desired == current {
        return None;
    }
    let kind = if decision.desired > current {
        "ScaledUp"
    } else {
        "ScaledDown"
    };
    ps.status.last_scale_ms = Some(now_ms);
    ps.status.last_scale_reason = Some(decision.reason.clone());
    Some((
        kind,
        format!("{kind} {current}→{}: {}", decision.desired, decision.reason),
    ))
}

/// Records the outcome of a pass: counts and the `AbleToScale` condition.
pub fn record_outcome(
    ps: &mut PolicyState,
    running: u32,
    ready: u32,
    error: Option<&(Step, ReconcileError)>,
    now_ms: u64,
) {
    ps.status.current = running;
    ps.status.ready = ready;
    ps.status.last_reconcile_ms = now_ms;
    match error {
        None => ps.status.set_condition(
            "AbleToScale",
            true,
            "Converged",
            "every planned step succeeded",
            now_ms,
        ),
        Some((step, e)) => ps.status.set_condition(
            "AbleToScale",
            false,
            "StepFailed",
            &format!("{step}: {e}"),
            now_ms,
        ),
    }
}

/// Records a pass that failed before planning on the `AbleToScale` condition.
pub fn record_error(ps: &mut PolicyState, error: &ReconcileError, now_ms: u64) {
    let reason = match error {
        ReconcileError::ListenUnavailable { .. } => "ListenUnavailable",
        ReconcileError::Runtime(_) => "RuntimeUnavailable",
        _ => "ReconcileFailed",
    };
    ps.status
        .set_condition("AbleToScale", false, reason, &error.to_string(), now_ms);
}

/// Sets `PolicyValid` on every policy after a successful load. Returns the policies whose
/// condition went from false to true (each earns a `PolicyValid` event).
pub fn mark_valid(state: &mut State, now_ms: u64) -> Vec<String> {
    let mut fixed = Vec::new();
    for (name, ps) in state.policies.iter_mut() {
        if ps
            .status
            .condition("PolicyValid")
            .is_some_and(|c| !c.status)
        {
            fixed.push(name.clone());
        }
        ps.status.set_condition(
            "PolicyValid",
            true,
            "Loaded",
            "policy files are valid",
            now_ms,
        );
    }
    fixed
}

/// Sets `PolicyValid=false` on the policies loaded from a file that `errors` names (all
/// of them when no error names a known file). Returns those policies with the first error
/// of their file.
pub fn mark_invalid(state: &mut State, errors: &LoadErrors, now_ms: u64) -> Vec<(String, String)> {
    let first_for = |file: &Path| {
        errors
            .errors
            .iter()
            .find(|e| Path::new(&e.file) == file)
            .map(|e| e.to_string())
    };
    let named: Vec<(String, String)> = state
        .policies
        .iter()
        .filter_map(|(name, ps)| first_for(&ps.source_file).map(|e| (name.clone(), e)))
        .collect();
    let affected = if named.is_empty() {
        let first = errors
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_default();
        state
            .policies
            .keys()
            .map(|n| (n.clone(), first.clone()))
            .collect()
    } else {
        named
    };
    for (name, first) in &affected {
        if let Some(ps) = state.policies.get_mut(name) {
            ps.status.set_condition(
                "PolicyValid",
                false,
                "InvalidPolicyFile",
                &format!("last good policy stays in force: {first}"),
                now_ms,
            );
        }
    }
    affected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyError;
    use std::path::PathBuf;

    fn state_with(files: &[(&str, &str)]) -> State {
        let mut state = State::default();
        for (name, file) in files {
            state.policies.insert(
                (*name).to_owned(),
                PolicyState {
                    source_file: PathBuf::from(file),
                    ..PolicyState::default()
                },
            );
        }
        state
    }

    fn error(file: &str) -> PolicyError {
        PolicyError {
            file: file.to_owned(),
            line: 3,
            column: 5,
            path: "spec.replicas.max".to_owned(),
            message: "expected a whole number".to_owned(),
        }
    }

    #[test]
    fn an_invalid_file_marks_only_its_own_policies() {
        let mut state = state_with(&[("a", "dir/a.yaml"), ("b", "dir/b.yaml")]);
        let errors = LoadErrors {
            errors: vec![error("dir/b.yaml")],
        };
        let affected = mark_invalid(&mut state, &errors, 10);
        assert_eq!(affected.len(), 1);
        assert_eq!(affected[0].0, "b");
        assert!(
            affected[0]
                .1
                .starts_with("dir/b.yaml:3:5: spec.replicas.max")
        );
        let valid = |n: &str| {
            state.policies[n]
                .status
                .condition("PolicyValid")
                .map(|c| c.status)
        };
        assert_eq!(valid("a"), None);
        assert_eq!(valid("b"), Some(false));
        // A file named only inside another file's message does not count.
        let mut state = state_with(&[("a", "a.yaml"), ("b", "b.yaml")]);
        let mut tricky = error("b.yaml");
        tricky.message = "see a.yaml".into();
        let affected = mark_invalid(
            &mut state,
            &LoadErrors {
                errors: vec![tricky],
            },
            10,
        );
        assert_eq!(
            affected.iter().map(|a| a.0.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }

    #[test]
    fn an_error_naming_no_known_file_marks_every_policy() {
        let mut state = state_with(&[("a", "a.yaml"), ("b", "b.yaml")]);
        let errors = LoadErrors {
            errors: vec![error("new.yaml")],
        };
        assert_eq!(mark_invalid(&mut state, &errors, 10).len(), 2);
    }

    #[test]
    fn fixing_a_file_reports_the_policies_it_fixed() {
        let mut state = state_with(&[("a", "a.yaml"), ("b", "b.yaml")]);
        mark_invalid(
            &mut state,
            &LoadErrors {
                errors: vec![error("a.yaml")],
            },
            10,
        );
        assert_eq!(mark_valid(&mut state, 20), vec!["a".to_owned()]);
        assert!(mark_valid(&mut state, 30).is_empty());
    }
}
