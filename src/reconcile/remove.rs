//! Tearing a whole policy down (`down`, or a policy removed from its file): planned from
//! what is observed, whatever the state file says.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::execute::ExecContext;
use super::{HANDOVER_WAIT, Operator, PassMode, PolicyReport, ReconcileError, observe, ports_of};
use crate::lb::LoadBalancer;
use crate::plan::{self, Desired, ObservedReplica};
use crate::runtime::Runtime;

impl<R: Runtime + 'static, L: LoadBalancer> Operator<R, L> {
    /// Plans the removal of a policy (`down`, or a policy removed from its file) from what
    /// is observed, whatever the state says, and in apply mode executes it and forgets the
    /// policy. `cancel` stops it between steps (the policy came back); the daemon passes
    /// one and then also waits for a renamed successor to take over the listen address.
    ///
    /// # Errors
    /// [`ReconcileError::HandoverPending`] while a successor is not ready yet (at once
    /// without `cancel`, after [`HANDOVER_WAIT`] with it).
    pub async fn remove_policy(
        &self,
        name: &str,
        drain_timeout: Duration,
        mode: PassMode,
        cancel: Option<CancellationToken>,
    ) -> Result<PolicyReport, ReconcileError> {
        if mode == PassMode::Apply {
            self.await_handover(name, cancel.as_ref()).await?;
        }
        let lock = self.policy_lock(name);
        let _held = lock.lock().await;
        let hidden = self.retirements.active(name);
        let all = self.runtime.list_policy(name).await?;
        let mut addrs = BTreeMap::new();
        let observed: Vec<ObservedReplica> = all
            .iter()
            .filter(|r| !hidden.contains(&r.id))
            .map(|r| {
                if let Some(addr) = observe::replica_addr(&r.host_ip, r.host_port) {
                    addrs.insert(r.host_port, addr);
                }
                ObservedReplica {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    host_port: r.host_port,
                    template_hash: r.template_hash.clone(),
                    running: r.running,
                    // Whatever its probe says, a replica may hold traffic: drain it.
                    ready: r.running,
                    age_seconds: 0,
                }
            })
            .collect();
        let live = ports_of(&self.table.servers(name).await);
        let desired = Desired {
            policy: name,
            instance: &self.settings.instance,
            template_hash: "",
            replicas: 0,
            port_range: (1, 0),
            unavailable_ports: &[],
            readiness_timeout_seconds: u64::MAX,
        };
        let plan = plan::plan(&desired, &observed, &live);
        let mut report = PolicyReport::planned(name, None, plan);
        if mode == PassMode::DryRun {
            return Ok(report);
        }
        let cancel = cancel.unwrap_or_else(|| self.shutdown.child_token());
        let mut ctx = ExecContext {
            policy: name.to_owned(),
            spec: None,
            drain_timeout,
            metrics_path: "/metrics".to_owned(),
            addrs,
            cancel: cancel.clone(),
        };
        let execution = self.execute(&mut ctx, &report.plan.steps).await;
        report.done = execution.done;
        report.error = execution.error;
        report.retire_failures = self.retirements.settle(name).await;
        if !report.converged() || execution.cancelled || cancel.is_cancelled() {
            return Ok(report);
        }
        self.table.remove(&self.lb, name).await?;
        let mut state = self.state.lock().await;
        state.policies.remove(name);
        self.state_dir.save(&state)?;
        drop(state);
        self.events.record(
            name,
            "PolicyRemoved",
            format!("{name}: replicas drained and removed, upstream dropped"),
        );
        Ok(report)
    }

    /// Returns once `name` no longer serves a listen address a successor claims; with no
    /// `cancel` (a one-shot pass), at once with an error.
    async fn await_handover(
        &self,
        name: &str,
        cancel: Option<&CancellationToken>,
    ) -> Result<(), ReconcileError> {
        let deadline = tokio::time::Instant::now() + HANDOVER_WAIT;
        while let Some(listen) = self.table.pending_handover(name).await {
            let give_up = cancel.is_none_or(CancellationToken::is_cancelled)
                || tokio::time::Instant::now() >= deadline;
            if give_up {
                return Err(ReconcileError::HandoverPending {
                    policy: name.to_owned(),
                    listen,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Waits for the background retirements of `policy` (`reconcile --once` before exit);
    /// their failures join the report.
    pub async fn settle(&self, report: &mut PolicyReport) {
        report.retire_failures = self.retirements.settle(&report.policy).await;
    }
}
