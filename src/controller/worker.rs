//! One policy's worker: reconcile on trigger or tick, back off on error, tear down on removal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::PolicySet;
use super::backoff::Backoff;
use crate::lb::LoadBalancer;
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, Operator, PassMode, ReconcileError};
use crate::runtime::Runtime;
use crate::telemetry::{DirectionLabels, PolicyLabels, ResultLabels, Telemetry, TriggerLabels};

/// What started a worker's pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The worker's first pass.
    Start,
    /// The metrics tick after a pass with nothing to do.
    Tick,
    /// The check pass right after a pass that changed something.
    FollowUp,
    /// A retry after a failed pass (backoff).
    Retry,
    /// A Docker event about one of the policy's containers.
    DockerEvent,
    /// The periodic full resync, or a re-subscribed Docker event stream.
    Resync,
    /// The policy files changed.
    PolicyChange,
    /// The activator holds a request of a scale-to-zero policy at zero: a replica, now.
    Activation,
    /// The load balancer's signal called for burst mode between ticks.
    Burst,
}

impl Trigger {
    /// Wake-up triggers, most telling first: the one a pass is recorded under when several collapse.
    const WAKES: [Trigger; 5] = [
        Trigger::Activation,
        Trigger::Burst,
        Trigger::PolicyChange,
        Trigger::DockerEvent,
        Trigger::Resync,
    ];

    /// The `trigger` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Tick => "tick",
            Trigger::FollowUp => "follow_up",
            Trigger::Retry => "retry",
            Trigger::DockerEvent => "docker_event",
            Trigger::Resync => "resync",
            Trigger::PolicyChange => "policy_change",
            Trigger::Activation => "activation",
            Trigger::Burst => "burst",
        }
    }

    // `Wake::pending` holds one bit per trigger; the last variant must still fit.
    const FITS: () = assert!((Trigger::Burst as u32) < u16::BITS);

    fn bit(self) -> u16 {
        let () = Self::FITS;
        1 << (self as u16)
    }
}

/// Wakes one worker and remembers why; wake-ups before the next pass collapse into it.
#[derive(Debug, Default)]
pub struct Wake {
    notify: Notify,
    pending: AtomicU16,
}

impl Wake {
    /// Asks for a pass because of `why`.
    pub fn wake(&self, why: Trigger) {
        self.pending.fetch_or(why.bit(), Ordering::SeqCst);
        self.notify.notify_one();
    }

    /// Clears the pending wake-ups; the most telling one, if any.
    fn take(&self) -> Option<Trigger> {
        let bits = self.pending.swap(0, Ordering::SeqCst);
        Trigger::WAKES.into_iter().find(|t| bits & t.bit() != 0)
    }
}

/// What a worker needs.
pub(super) struct WorkerContext<R, L> {
    pub op: Arc<Operator<R, L>>,
    pub name: String,
    pub interval: Duration,
    pub wake: Arc<Wake>,
    pub policies: watch::Receiver<PolicySet>,
    pub telemetry: Arc<Telemetry>,
    pub shutdown: CancellationToken,
    /// Set when the worker has exited (its policy torn down): a new one may start.
    pub done: Arc<std::sync::atomic::AtomicBool>,
}

/// Runs until shutdown, or until the policy leaves a valid policy set (then tears it down).
pub(super) async fn run<R: Runtime + 'static, L: LoadBalancer>(ctx: WorkerContext<R, L>) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let mut delay;
    // A deadline, not a sleep per wait: burst checks between ticks must not push it back.
    let mut deadline = tokio::time::Instant::now();
    let mut timer = Trigger::Start;
    // New requests of the policy reported by nginx: each batch runs the burst check.
    let mut activity = Some(ctx.op.signal().activity(&ctx.name));
    loop {
        let woke = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = ctx.wake.notify.notified() => Woke::Notified,
            _ = tokio::time::sleep_until(deadline) => Woke::Timer,
            ok = next_activity(&mut activity) => Woke::Activity(ok),
        };
        let timed_out = match woke {
            Woke::Notified => false,
            Woke::Timer => true,
            Woke::Activity(false) => {
                // No sender any more (no receiver in this process): stop listening.
                activity = None;
                continue;
            }
            Woke::Activity(true) => {
                if burst_due(&ctx).await {
                    ctx.wake.wake(Trigger::Burst);
                }
                continue;
            }
        };
        let trigger = match (ctx.wake.take(), timed_out) {
            (Some(woken), _) => woken,
            (None, true) => timer,
            // A permit left by a wake-up whose reason an earlier pass already took: that
            // pass started after the wake-up, so there is nothing new to look at.
            (None, false) => continue,
        };
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
            deadline = tokio::time::Instant::now();
            continue;
        };
        tracing::debug!(policy = %ctx.name, trigger = trigger.as_str(), "reconcile pass");
        ctx.telemetry
            .reconcile_triggers
            .get_or_create(&TriggerLabels {
                policy: ctx.name.clone(),
                trigger: trigger.as_str().to_owned(),
            })
            .inc();
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
                    timer = Trigger::Retry;
                } else {
                    backoff.reset();
                    // A pass that changed something is followed at once by a check pass.
                    (delay, timer) = if report.plan.is_empty() {
                        (ctx.interval, Trigger::Tick)
                    } else {
                        (Duration::ZERO, Trigger::FollowUp)
                    };
                }
            }
            Err(e) => {
                count_error(&ctx.telemetry, &e);
                if matches!(e, ReconcileError::Runtime(_)) {
                    ctx.telemetry.docker_ok.store(false, Ordering::Relaxed);
                }
                delay = backoff.next_delay();
                timer = Trigger::Retry;
                tracing::warn!(policy = %ctx.name, error = %e, ?delay, "reconcile failed; retrying");
                ctx.op.note_error(&ctx.name, &e).await;
            }
        }
        deadline = tokio::time::Instant::now() + delay;
        publish(&ctx.op, &ctx.telemetry).await;
    }
}

/// Why a worker's wait ended.
enum Woke {
    Notified,
    Timer,
    /// The signal's activity changed (`true`) or its sender is gone (`false`).
    Activity(bool),
}

/// The next change of `activity`; never, without one.
async fn next_activity(activity: &mut Option<watch::Receiver<u64>>) -> bool {
    match activity {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Whether the policy's load-balancer signal calls for burst mode now (a cheap check:
/// a few window reads, no engine call).
async fn burst_due<R: Runtime + 'static, L: LoadBalancer>(ctx: &WorkerContext<R, L>) -> bool {
    let policy = {
        let set = ctx.policies.borrow();
        set.policies.get(&ctx.name).map(|p| p.policy.clone())
    };
    let Some(policy) = policy else {
        return false;
    };
    match ctx.op.burst_check(&policy).await {
        Some(wanted) => {
            tracing::info!(policy = %ctx.name, wanted, "burst: the load balancer's signal asks for a pass now");
            true
        }
        None => false,
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
    telemetry.lb.observe_stream(&op.signal().stats());
    telemetry.observe_state(&state, events).await;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::policy_files::LoadedPolicy;
    use crate::reconcile::OperatorSettings;
    use crate::reconcile::testing::Fakes;
    use crate::state::StateDir;

    const POLICY: &str = "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: web}
spec:
  template:
    image: demo:latest
    containerPort: 8000
    readiness: {httpGet: {path: /healthz}, periodMillis: 50, timeoutSeconds: 5}
  replicas: {min: 1, max: 10}
  ports: {hostIp: 127.0.0.1, range: 8001-8020}
  loadBalancer: {listen: 127.0.0.1:8080}
  metrics: [{loadBalancer: {signal: requestRate, targetPerReplica: 10}}]
  behavior:
    windows: {stableSeconds: 2}
";

    #[tokio::test(start_paused = true)]
    async fn a_burst_runs_a_pass_between_ticks() {
        let fakes = Fakes::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = OperatorSettings {
            instance: "t".to_owned(),
            ..OperatorSettings::default()
        };
        let op = Arc::new(
            crate::reconcile::Operator::with_seams(
                fakes.runtime("t"),
                fakes.lb(),
                StateDir::new(dir.path()),
                settings,
                fakes.seams(),
            )
            .expect("operator"),
        );
        let policy = crate::policy::parse_str(POLICY, "web.yaml")
            .expect("policy")
            .remove(0)
            .0;
        op.prepare(&[&policy], PassMode::Apply)
            .await
            .expect("prepare");
        let set = PolicySet {
            policies: BTreeMap::from([(
                "web".to_owned(),
                LoadedPolicy {
                    policy,
                    file: "web.yaml".into(),
                    line: 1,
                },
            )]),
            files: Vec::new(),
            invalid: None,
        };
        let (_keep, policies) = watch::channel(set);
        let telemetry = Arc::new(Telemetry::new());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(WorkerContext {
            op: op.clone(),
            name: "web".to_owned(),
            // An hour between ticks: only the burst trigger can scale within the test.
            interval: Duration::from_secs(3600),
            wake: Arc::new(Wake::default()),
            policies,
            telemetry: telemetry.clone(),
            shutdown: shutdown.clone(),
            done: Arc::new(AtomicBool::new(false)),
        }));
        for _ in 0..100 {
            if fakes.running("web").len() == 1 && fakes.upstream_ports("web").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(fakes.running("web").len(), 1, "the start pass");
        fakes.lb_load("web", 5.0, 2_000, 10).await;
        assert_eq!(fakes.running("web").len(), 1, "5/s is one replica's load");
        fakes.lb_load("web", 90.0, 400, 10).await;
        for _ in 0..200 {
            if fakes.running("web").len() >= 9 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let bursts = telemetry
            .reconcile_triggers
            .get_or_create(&TriggerLabels {
                policy: "web".to_owned(),
                trigger: "burst".to_owned(),
            })
            .get();
        assert!(bursts >= 1, "a pass ran on the burst trigger");
        assert_eq!(fakes.running("web").len(), 9, "1 → 9 without a tick");
        shutdown.cancel();
        task.await.expect("worker ends on shutdown");
    }
}
