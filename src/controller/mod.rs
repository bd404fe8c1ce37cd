//! The daemon: trigger streams feeding one worker per policy.
//!
//! ```text
//!  activator (request held at zero) ─► notify worker(p) at once
//!  policy files ──notify, debounce──► reload ──► policy set (watch channel)
//!                                                   │ new policy → spawn worker
//!  docker events ──────────────► notify worker(p)  │ removed    → worker tears down, exits
//!  metrics tick (per worker) ──► reconcile(p)       ▼
//!  resync (periodic) ──────────► notify every worker
//! ```
//!
//! Each worker runs one reconcile at a time for its policy; triggers that arrive while
//! it runs collapse into one (a [`Wake`] holds at most one permit) and the pass records
//! which trigger started it (`autoscaler_reconcile_triggers_total{policy,trigger}`).
//! Errors requeue with capped exponential backoff and jitter; success resets it. On
//! shutdown workers stop after the step in flight and the data plane (containers,
//! nginx) keeps serving.

pub mod backoff;
pub mod watcher;
mod worker;

pub use worker::{Trigger, Wake};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::lb::LoadBalancer;
use crate::policy_files::LoadErrors;
use crate::policy_files::LoadedPolicy;
use crate::reconcile::{DEFAULT_DRAIN_TIMEOUT, ErrorKind, Operator, PassMode};
use crate::runtime::{Runtime, RuntimeEvent};
use crate::telemetry::Telemetry;
use backoff::Backoff;

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The `-f` paths, watched and reloaded.
    pub paths: Vec<PathBuf>,
    /// Per-policy metrics tick / reconcile interval.
    pub interval: Duration,
    /// Full resync period (every worker is triggered).
    pub resync: Duration,
    /// Debounce of file events.
    pub debounce: Duration,
}

/// The policy set every worker reads: the last valid load, and the last load error.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// Last good policies by name.
    pub policies: BTreeMap<String, LoadedPolicy>,
    /// Files the last good load read (prune scope).
    pub files: Vec<PathBuf>,
    /// The errors of the latest load attempt, when it failed (the last good set stays).
    pub invalid: Option<LoadErrors>,
}

/// Loads policies (blocking I/O) and the file list they came from.
pub type Loader =
    Arc<dyn Fn() -> Result<(Vec<LoadedPolicy>, Vec<PathBuf>), LoadErrors> + Send + Sync>;

/// Runs the daemon until `shutdown` is cancelled. The initial load must have succeeded.
pub async fn run<R, L>(
    op: Arc<Operator<R, L>>,
    config: DaemonConfig,
    initial: (Vec<LoadedPolicy>, Vec<PathBuf>),
    load: Loader,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) where
    R: Runtime + 'static,
    L: LoadBalancer + 'static,
{
    let (set_tx, set_rx) = watch::channel(to_set(initial));
    let mut workers: BTreeMap<String, WorkerHandle> = BTreeMap::new();
    let mut tasks = JoinSet::new();

    // Prepare the upstream table with every policy and start nginx.
    prepare(&op, &set_rx.borrow().clone(), &telemetry).await;
    prune_removed(&op, &set_rx.borrow().clone(), &mut tasks, &telemetry).await;

    let (change_tx, mut change_rx) = mpsc::channel(4);
    tasks.spawn(watch_files(config.clone(), change_tx, shutdown.clone()));
    let (event_tx, mut event_rx) = mpsc::channel::<Option<String>>(256);
    tasks.spawn(watch_docker(
        op.clone(),
        event_tx,
        telemetry.clone(),
        shutdown.clone(),
    ));

    // Requests held at zero wake their policy's worker directly: no waiting for a tick.
    let mut activations = op.activation_wakes();
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        spawn_missing_workers(
            &op,
            &config,
            &set_rx,
            &telemetry,
            &shutdown,
            &mut workers,
            &mut tasks,
        );
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => workers.values().for_each(|w| w.wake.wake(Trigger::Resync)),
            Some(()) = change_rx.recv() => {
                if !reload(&op, &load, &set_tx, &telemetry).await {
                    continue;
                }
                // Removed policies: their workers see it and tear down (and exit, marking
                // themselves done); a policy back before that finds its worker still there.
                workers.retain(|_, w| !w.done.load(Ordering::SeqCst));
                workers.values().for_each(|w| w.wake.wake(Trigger::PolicyChange));
            }
            Some(event) = event_rx.recv() => match event {
                Some(policy) => if let Some(w) = workers.get(&policy) { w.wake.wake(Trigger::DockerEvent) },
                None => workers.values().for_each(|w| w.wake.wake(Trigger::Resync)),
            },
            Some(policy) = next_activation(&mut activations) => {
                if let Some(w) = workers.get(&policy) {
                    w.wake.wake(Trigger::Activation);
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tracing::info!("shutting down: finishing steps in flight; containers and nginx keep serving");
    op.shutdown_token().cancel();
    while tasks.join_next().await.is_some() {}
}

/// The next policy the activator wants a replica for; never ready without an activator.
async fn next_activation(rx: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn to_set((policies, files): (Vec<LoadedPolicy>, Vec<PathBuf>)) -> PolicySet {
    PolicySet {
        policies: policies
            .into_iter()
            .map(|p| (p.policy.metadata.name.clone(), p))
            .collect(),
        files,
        invalid: None,
    }
}

async fn prepare<R: Runtime + 'static, L: LoadBalancer>(
    op: &Operator<R, L>,
    set: &PolicySet,
    telemetry: &Telemetry,
) {
    let refs: Vec<_> = set.policies.values().map(|p| &p.policy).collect();
    record_sources(op, set).await;
    // Until this succeeds workers retry on their own (their pass syncs their upstream).
    if let Err(e) = op.prepare(&refs, PassMode::Apply).await {
        telemetry.count_error(ErrorKind::Prepare);
        tracing::error!(error = %e, "initial nginx/state preparation failed; workers will retry");
    }
}

/// Tears down policies recorded from a watched file but no longer in it.
async fn prune_removed<R, L>(
    op: &Arc<Operator<R, L>>,
    set: &PolicySet,
    tasks: &mut JoinSet<()>,
    telemetry: &Arc<Telemetry>,
) where
    R: Runtime + 'static,
    L: LoadBalancer + 'static,
{
    let present: BTreeSet<String> = set.policies.keys().cloned().collect();
    for name in op.prunable(&set.files, &present).await {
        let op = op.clone();
        let telemetry = telemetry.clone();
        tasks.spawn(async move {
            worker::tear_down(&op, &name, DEFAULT_DRAIN_TIMEOUT, &telemetry, None).await;
        });
    }
}

fn spawn_missing_workers<R, L>(
    op: &Arc<Operator<R, L>>,
    config: &DaemonConfig,
    set_rx: &watch::Receiver<PolicySet>,
    telemetry: &Arc<Telemetry>,
    shutdown: &CancellationToken,
    workers: &mut BTreeMap<String, WorkerHandle>,
    tasks: &mut JoinSet<()>,
) where
    R: Runtime + 'static,
    L: LoadBalancer + 'static,
{
    let names: Vec<String> = set_rx.borrow().policies.keys().cloned().collect();
    for name in names {
        if workers
            .get(&name)
            .is_some_and(|w| !w.done.load(Ordering::SeqCst))
        {
            continue;
        }
        let wake = Arc::new(Wake::default());
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        workers.insert(
            name.clone(),
            WorkerHandle {
                wake: wake.clone(),
                done: done.clone(),
            },
        );
        tasks.spawn(worker::run(worker::WorkerContext {
            op: op.clone(),
            name,
            interval: config.interval,
            wake,
            policies: set_rx.clone(),
            telemetry: telemetry.clone(),
            shutdown: shutdown.clone(),
            done,
        }));
    }
}

/// The controller's handle on a worker.
struct WorkerHandle {
    /// Wakes the worker for a pass, with the reason.
    wake: Arc<Wake>,
    /// Set by the worker when it exits.
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// Remembers which file each policy of `set` came from (prune bookkeeping).
async fn record_sources<R: Runtime + 'static, L: LoadBalancer>(
    op: &Operator<R, L>,
    set: &PolicySet,
) {
    let sources: Vec<_> = set
        .policies
        .values()
        .map(|p| (p.policy.metadata.name.clone(), p.file.clone()))
        .collect();
    if let Err(e) = op.record_sources(&sources).await {
        tracing::error!(error = %e, "cannot record policy sources");
    }
}

/// Re-reads the policy files; returns whether the policy set changed (workers must look).
async fn reload<R: Runtime + 'static, L: LoadBalancer>(
    op: &Operator<R, L>,
    load: &Loader,
    set_tx: &watch::Sender<PolicySet>,
    telemetry: &Telemetry,
) -> bool {
    let load = load.clone();
    let result = tokio::task::spawn_blocking(move || load())
        .await
        .unwrap_or_else(|e| {
            Err(LoadErrors {
                errors: vec![crate::policy::PolicyError {
                    file: String::new(),
                    line: 0,
                    column: 0,
                    path: String::new(),
                    message: format!("policy loader task failed: {e}"),
                }],
            })
        });
    match result {
        Ok((policies, files)) => {
            let new = to_set((policies, files));
            let changed = {
                let old = set_tx.borrow();
                old.invalid.is_some()
                    || old.files != new.files
                    || old.policies.len() != new.policies.len()
                    || old
                        .policies
                        .iter()
                        .any(|(k, v)| new.policies.get(k).map(|n| &n.policy) != Some(&v.policy))
            };
            if changed {
                tracing::info!(policies = new.policies.len(), "policy files reloaded");
                record_sources(op, &new).await;
                // Before any worker runs: a renamed policy's claim on its listen address
                // must be visible to its predecessor's teardown.
                let refs: Vec<_> = new.policies.values().map(|p| &p.policy).collect();
                op.claim(&refs).await;
                op.set_policy_valid(Ok(())).await;
                set_tx.send_replace(new);
            }
            changed
        }
        Err(errors) => {
            let already = set_tx.borrow().invalid.as_ref() == Some(&errors);
            if !already {
                tracing::error!(
                    "policy files invalid, keeping the last good policies in force:\n{errors}"
                );
                telemetry.count_error(ErrorKind::PolicyInvalid);
                op.set_policy_valid(Err(&errors)).await;
                set_tx.send_modify(|set| set.invalid = Some(errors));
            }
            // The last good set stays: workers have nothing new to look at.
            false
        }
    }
}

async fn watch_files(config: DaemonConfig, changes: mpsc::Sender<()>, shutdown: CancellationToken) {
    let result = watcher::watch(
        config.paths.clone(),
        config.debounce,
        Duration::from_secs(5),
        changes,
        shutdown,
    )
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "policy file watcher stopped; edits will not be seen until restart");
    }
}

/// Forwards Docker events: `Some(policy)` for an owned container's change, `None` to resync.
async fn watch_docker<R: Runtime + 'static, L: LoadBalancer>(
    op: Arc<Operator<R, L>>,
    events: mpsc::Sender<Option<String>>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let mut stream = op.runtime().events();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(RuntimeEvent::Container { policy, action, .. })) => {
                    tracing::debug!(%policy, %action, "docker event");
                    backoff.reset();
                    telemetry.docker_ok.store(true, Ordering::Relaxed);
                    if events.send(Some(policy)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(RuntimeEvent::Resync)) => {
                    telemetry.docker_ok.store(true, Ordering::Relaxed);
                    if events.send(None).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream broke; re-subscribing");
                    break;
                }
                None => {
                    tracing::warn!("docker event stream ended; re-subscribing");
                    break;
                }
            }
        }
        telemetry.count_error(ErrorKind::DockerEvents);
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        // Whatever happened while the stream was down: resync everything.
        if events.send(None).await.is_err() {
            return;
        }
    }
}
