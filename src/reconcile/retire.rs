//! Retiring replicas in the background: drain, stop and remove of one replica run as a
//! task of their own, so a long drain never holds up the policy's next scale-up.
//! [`Retirements`] tracks them; observation hides replicas still retiring.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::events::EventLog;
use super::execute::{ExecContext, Hands, StepOutcome, address_of};
use super::seams::Seams;
use super::{IN_FLIGHT_GAUGE, ReconcileError};
use crate::plan::Step;
use crate::runtime::Runtime;

/// Ids of replicas whose plan drains them: their stop and remove run with the drain.
pub(super) fn retiring_ids(steps: &[Step]) -> BTreeSet<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Drain { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn is_backgrounded(step: &Step, retiring: &BTreeSet<String>) -> bool {
    matches!(step, Step::Stop { id, .. } | Step::Remove { id, .. } if retiring.contains(id))
}

/// Replicas being drained, stopped and removed in the background, by container id.
#[derive(Debug, Default)]
pub struct Retirements {
    tasks: std::sync::Mutex<BTreeMap<String, Retiring>>,
}

#[derive(Debug)]
struct Retiring {
    policy: String,
    task: JoinHandle<Result<(), String>>,
}

impl Retirements {
    /// Ids of the policy's replicas still retiring (observation hides them).
    pub fn active(&self, policy: &str) -> BTreeSet<String> {
        let Ok(mut tasks) = self.tasks.lock() else {
            return BTreeSet::new();
        };
        tasks.retain(|_, r| !r.task.is_finished());
        tasks
            .iter()
            .filter(|(_, r)| r.policy == policy)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Waits for every retirement of `policy`; returns the failures in words.
    pub async fn settle(&self, policy: &str) -> Vec<String> {
        let handles: Vec<JoinHandle<Result<(), String>>> = match self.tasks.lock() {
            Ok(mut tasks) => {
                let ids: Vec<String> = tasks
                    .iter()
                    .filter(|(_, r)| r.policy == policy)
                    .map(|(id, _)| id.clone())
                    .collect();
                ids.iter()
                    .filter_map(|id| tasks.remove(id))
                    .map(|r| r.task)
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        let mut failures = Vec::new();
        for handle in handles {
            match handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(format!("retirement task failed: {e}")),
            }
        }
        failures
    }

    fn track(&self, id: String, policy: String, task: JoinHandle<Result<(), String>>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(id, Retiring { policy, task });
        }
    }
}

/// Hands the drain step and the stop and remove of the same replica to a background task.
pub(super) fn start_retirement<R, L>(
    hands: &Hands<'_, R, L>,
    ctx: &ExecContext,
    drain: &Step,
    steps: &[Step],
) -> Result<StepOutcome, ReconcileError>
where
    R: Runtime + 'static,
{
    let Step::Drain { id, host_port, .. } = drain else {
        return Ok(StepOutcome::default());
    };
    let later: Vec<Step> = steps
        .iter()
        .filter(|s| matches!(s, Step::Stop { id: i, .. } | Step::Remove { id: i, .. } if i == id))
        .cloned()
        .collect();
    let job = RetireJob {
        runtime: hands.runtime.clone(),
        seams: hands.seams.clone(),
        events: hands.events.clone(),
        policy: ctx.policy.clone(),
        addr: address_of(ctx, *host_port),
        metrics_path: ctx.metrics_path.clone(),
        drain_timeout: ctx.drain_timeout,
        steps: later,
    };
    let task = tokio::spawn(job.run());
    hands
        .retirements
        .track(id.clone(), ctx.policy.clone(), task);
    Ok(StepOutcome::default())
}

/// Drain, stop and remove of one replica, owned so it can outlive the pass.
struct RetireJob<R> {
    runtime: Arc<R>,
    seams: Seams,
    events: Arc<EventLog>,
    policy: String,
    addr: Option<SocketAddr>,
    metrics_path: String,
    drain_timeout: Duration,
    steps: Vec<Step>,
}

impl<R: Runtime> RetireJob<R> {
    async fn run(self) -> Result<(), String> {
        if let Some(addr) = self.addr {
            let waited = drain(&self.seams, addr, &self.metrics_path, self.drain_timeout).await;
            tracing::debug!(policy = %self.policy, %addr, ?waited, "drained");
        }
        for step in &self.steps {
            crate::fault::point("before", step);
            let result = match step {
                Step::Stop { id, .. } => self.runtime.stop(id, self.drain_timeout).await,
                Step::Remove { id, .. } => self.runtime.remove(id).await,
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(policy = %self.policy, error = %e, "step failed: {step}");
                let message = format!("{step}: {e}");
                self.events
                    .record(&self.policy, "StepFailed", message.clone());
                return Err(message);
            }
            crate::fault::point("after", step);
            tracing::info!(policy = %self.policy, "{step}");
            if let Step::Remove { name, reason, .. } = step {
                self.events.record(
                    &self.policy,
                    "ReplicaRemoved",
                    format!("{name} removed ({reason})"),
                );
            }
        }
        Ok(())
    }
}

/// Waits until the replica's in-flight gauge reads 0 twice in a row, or the timeout.
async fn drain(seams: &Seams, addr: SocketAddr, path: &str, timeout: Duration) -> Duration {
    let start = tokio::time::Instant::now();
    let mut zeros = 0;
    while start.elapsed() < timeout {
        match seams.metrics.gauge(addr, path, IN_FLIGHT_GAUGE).await {
            Ok(v) if v <= 0.0 => zeros += 1,
            Ok(_) => zeros = 0,
            // No gauge or unreachable: give in-flight requests a short grace instead.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(500).min(timeout)).await;
                break;
            }
        }
        if zeros >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}
