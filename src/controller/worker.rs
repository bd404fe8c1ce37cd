//! One policy's worker: reconcile on trigger or tick, back off on error, tear down on removal.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::PolicySet;
use super::backoff::Backoff;
use crate::api::{DirectionLabels, PolicyLabels, ResultLabels, Telemetry};
use crate::lb::LoadBalancer;
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, Operator, PassMode, ReconcileError};
use crate::runtime::Runtime;

/// What a worker needs.
pub(super) struct WorkerContext<R, L> {
    pub op: Arc<Operator<R, L>>,
    pub name: String,
    pub interval: Duration,
    pub notify: Arc<Notify>,
    pub policies: watch::Receiver<PolicySet>,
    pub telemetry: Arc<Telemetry>,
    pub shutdown: CancellationToken,
    /// Set when the worker has exited (its policy torn down): a new one may start.
    pub done: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs until shutdown, or until the policy leaves a valid policy set (then tears it down).
pub(super) async fn run<R: Runtime + 'static, L: LoadBalancer>(ctx: WorkerContext<R, L>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut delay = Duration::ZERO;
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = ctx.notify.notified() => {}
            _ = tokio::time::sleep(delay) => {}
        }
        let policy = {
            let set = ctx.policies.borrow();
            set.policies.get(&ctx.name).map(|p| p.policy.clone())
        };
        let Some(policy) = policy else {
            // Torn down, or abandoned because the policy came back: then keep working.
            if tear_down(
                &ctx.op,
                &ctx.name,
                DEFAULT_DRAIN_TIMEOUT,
                &ctx.telemetry,
                Some(&ctx.policies),
            )
            .await
            {
                ctx.done.store(true, Ordering::SeqCst);
                return;
            }
            delay = Duration::ZERO;
            continue;
        };
        let started = Instant::now();
        let result = ctx.op.reconcile(&policy, PassMode::Apply).await;
        let labels = PolicyLabels {
            policy: ctx.name.clone(),
        };
        ctx.telemetry
            .reconcile_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(report) if report.converged() => "converged",
            Ok(_) => "step_failed",
            Err(_) => "error",
        };
        ctx.telemetry
            .reconciles
            .get_or_create(&ResultLabels {
                policy: ctx.name.clone(),
                result: outcome.to_owned(),
            })
            .inc();
        match result {
            Ok(report) => {
                ctx.telemetry.docker_ok.store(true, Ordering::Relaxed);
                if let Some(d) = &report.decision
                    && d.desired != d.current
                {
                    let direction = if d.desired > d.current { "up" } else { "down" };
                    ctx.telemetry
                        .scale_events
                        .get_or_create(&DirectionLabels {
                            policy: ctx.name.clone(),
                            direction: direction.to_owned(),
                        })
                        .inc();
                }
                if let Some((step, e)) = &report.error {
                    tracing::warn!(policy = %ctx.name, error = %e, "step failed: {step}; retrying with backoff");
                    count_error(&ctx.telemetry, e);
                    delay = backoff.next_delay();
                } else {
                    backoff.reset();
                    // A pass that changed something is followed at once by a check pass.
                    delay = if report.plan.is_empty() {
                        ctx.interval
                    } else {
                        Duration::ZERO
                    };
                }
            }
            Err(e) => {
                count_error(&ctx.telemetry, &e);
                if matches!(e, ReconcileError::Runtime(_)) {
                    ctx.telemetry.docker_ok.store(false, Ordering::Relaxed);
                }
                delay = backoff.next_delay();
                tracing::warn!(policy = %ctx.name, error = %e, ?delay, "reconcile failed; retrying");
                ctx.op.note_error(&ctx.name, &e).await;
            }
        }
        publish(&ctx.op, &ctx.telemetry).await;
    }
}

/// Drains and removes a policy that left its file, and drops its upstream. Returns true
/// when done (or given up); false when the policy came back into `policies` meanwhile
/// (the teardown stops between steps and the worker goes on reconciling it).
pub(super) async fn tear_down<R: Runtime + 'static, L: LoadBalancer>(
    op: &Operator<R, L>,
    name: &str,
    drain: Duration,
    telemetry: &Telemetry,
    policies: Option<&watch::Receiver<PolicySet>>,
) -> bool {
    tracing::info!(policy = %name, "policy removed from its file: draining and removing its replicas");
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    for _ in 0..10 {
        let came_back = CancellationToken::new();
        let watcher = policies.map(|rx| {
            let mut rx = rx.clone();
            let token = came_back.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                loop {
                    if rx.borrow_and_update().policies.contains_key(&name) {
                        token.cancel();
                        return;
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        let result = op
            .remove_policy(name, drain, PassMode::Apply, Some(came_back.clone()))
            .await;
        if let Some(w) = watcher {
            w.abort();
        }
        if came_back.is_cancelled() {
            tracing::info!(policy = %name, "policy is back: teardown abandoned, reconciling it again");
            return false;
        }
        match result {
            Ok(report) if report.converged() => {
                publish(op, telemetry).await;
                return true;
            }
            Ok(report) => {
                if let Some((step, e)) = &report.error {
                    tracing::warn!(policy = %name, error = %e, "tear-down step failed: {step}");
                }
            }
            Err(e) => tracing::warn!(policy = %name, error = %e, "tear-down failed"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    tracing::error!(policy = %name, "tear-down gave up after 10 attempts; the next start retries");
    true
}

fn count_error(telemetry: &Telemetry, e: &ReconcileError) {
    telemetry.count_error(e.kind());
}

pub(super) async fn publish<R: Runtime + 'static, L: LoadBalancer>(
    op: &Operator<R, L>,
    telemetry: &Telemetry,
) {
    let state = op.state().await;
    let events = op.recent_events();
    telemetry.reloads.set(op.reload_count() as i64);
    telemetry.observe_state(&state, events).await;
}
