//! One reconcile pass per policy: observe → decide → plan → execute → record.
//!
//! # Layout
//! - this file: [`Operator`] and the pass itself, readable top to bottom;
//! - [`observe`]: containers, readiness, host ports and metrics into plain values;
//! - [`lb_signal`]: the load balancer's signal as metric readings, burst check and status;
//! - [`execute`]: runs a plan's steps in order, same-kind steps concurrently;
//! - [`retire`]: drain, stop and remove of a replica, in the background;
//! - `remove.rs`: tearing a whole policy down (`down`, a policy gone from its file);
//! - `what_if.rs`: the nginx config a dry run would leave (`diff`);
//! - [`upstreams`]: the nginx upstream table every policy shares;
//! - [`status`]: conditions, decision records and prune bookkeeping;
//! - [`events`]: the event log;
//! - [`seams`]: the boundaries besides runtime and load balancer (metrics, probe, ports, clock);
//! - [`error`]: [`ReconcileError`] and the [`ErrorKind`]s `/metrics` counts;
//! - [`zero`]: scale to zero in a pass (idle inputs, the activator's view, its condition);
//! - `testing` (tests only): in-process fakes of every boundary.
//!
//! The plan is the single truth: `diff` prints it and `reconcile` executes exactly it,
//! host ports included. A port taken between planning and execution fails its step; the
//! next pass plans again from what it observes.

pub mod error;
pub mod events;
pub mod execute;
pub mod lb_signal;
pub mod observe;
mod remove;
pub mod retire;
pub mod seams;
pub mod status;
pub mod upstreams;
mod what_if;
pub mod zero;

#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod zero_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

pub use error::{ErrorKind, ReconcileError};
use events::EventLog;
use execute::{ExecContext, Execution, Hands, Retirements};
use observe::Observation;
pub use seams::Seams;
use upstreams::UpstreamTable;

use crate::lb::LoadBalancer;
use crate::nginx::Upstream;
use crate::plan::{self, Desired, Plan, Step};
use crate::policy::ScalingPolicy;
use crate::policy_files::LoadErrors;
use crate::runtime::Runtime;
use crate::scaling::windows::SampleWindows;
use crate::scaling::{self, Decision, DecisionInput};
use crate::state::{Event, State, StateDir, UpstreamSettings};

/// Gauge the demo backend (and any replica that wants graceful drains) exposes.
pub const IN_FLIGHT_GAUGE: &str = "http_requests_in_flight";

/// How long the teardown of a renamed policy waits for its successor to be ready.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(120);

/// Drain grace for a policy removed from its file, whose own setting is no longer known.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a pass changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassMode {
    /// Execute the plan and record state.
    Apply,
    /// Observe, decide and plan only (`diff`).
    DryRun,
}

/// What a pass did (or, in dry-run, would do) for one policy.
#[derive(Debug)]
pub struct PolicyReport {
    /// Policy name.
    pub policy: String,
    /// The scaling decision (None when the policy is being removed).
    pub decision: Option<Decision>,
    /// The plan.
    pub plan: Plan,
    /// Steps that completed, in order (retirements: handed to the background).
    pub done: Vec<Step>,
    /// The first failed step and its error.
    pub error: Option<(Step, ReconcileError)>,
    /// Background retirements that failed (known only when the pass waited for them).
    pub retire_failures: Vec<String>,
}

impl PolicyReport {
    fn planned(policy: &str, decision: Option<Decision>, plan: Plan) -> Self {
        Self {
            policy: policy.to_owned(),
            decision,
            plan,
            done: Vec::new(),
            error: None,
            retire_failures: Vec::new(),
        }
    }

    /// True when every planned step succeeded.
    pub fn converged(&self) -> bool {
        self.error.is_none() && self.retire_failures.is_empty()
    }
}

/// Settings of the operator that are not part of any policy.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// Timeout of one readiness probe during observation.
    pub probe_timeout: Duration,
    /// Timeout of one metrics scrape.
    pub scrape_timeout: Duration,
    /// The operator instance (part of every container name).
    pub instance: String,
    /// The load balancer's signal (`run` hands in the hub its receiver fills; empty
    /// otherwise, so `loadBalancer` metrics read as unavailable).
    pub signal: crate::signal::SignalHub,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_millis(1000),
            scrape_timeout: Duration::from_millis(1000),
            instance: "default".to_owned(),
            signal: crate::signal::SignalHub::new(),
        }
    }
}

/// The operator's hands: runtime, load balancer, seams and state, shared by passes.
pub struct Operator<R, L> {
    runtime: Arc<R>,
    lb: L,
    seams: Seams,
    settings: OperatorSettings,
    state_dir: StateDir,
    state: Mutex<State>,
    table: UpstreamTable,
    events: Arc<EventLog>,
    retirements: Retirements,
    /// Each policy's announced request count over its burst window (the burst reading).
    activity: std::sync::Mutex<BTreeMap<String, ActivityTrack>>,
    /// Counter samples of every policy over its stable window (rates over the window).
    sample_windows: std::sync::Mutex<BTreeMap<String, SampleWindows>>,
    /// One pass or teardown per policy at a time.
    policy_locks: std::sync::Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Cancelled on graceful shutdown: the executor stops between steps.
    shutdown: CancellationToken,
    /// Scale to zero: the activator and the idle rule's inputs.
    zero: zero::ZeroHooks,
}

impl<R: Runtime + 'static, L: LoadBalancer> Operator<R, L> {
    /// Builds an operator with the real seams and loads the state directory.
    pub fn new(
        runtime: R,
        lb: L,
        state_dir: StateDir,
        settings: OperatorSettings,
    ) -> Result<Self, crate::error::Error> {
        let seams = Seams::real(settings.scrape_timeout, settings.signal.clone())?;
        Ok(Self::with_seams(runtime, lb, state_dir, settings, seams)?)
    }

    /// Builds an operator on the given seams (tests pass fakes) and loads the state.
    pub fn with_seams(
        runtime: R,
        lb: L,
        state_dir: StateDir,
        settings: OperatorSettings,
        seams: Seams,
    ) -> Result<Self, ReconcileError> {
        let state = state_dir.load()?;
        let recent = state_dir.recent_events(events::RECENT_EVENTS)?;
        let events = Arc::new(EventLog::new(
            state_dir.clone(),
            seams.clock.clone(),
            recent,
        ));
        Ok(Self {
            runtime: Arc::new(runtime),
            lb,
            seams,
            settings,
            state_dir,
            state: Mutex::new(state),
            table: UpstreamTable::default(),
            events,
            retirements: Retirements::default(),
            sample_windows: std::sync::Mutex::new(BTreeMap::new()),
            activity: std::sync::Mutex::new(BTreeMap::new()),
            policy_locks: std::sync::Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            zero: zero::ZeroHooks::default(),
        })
    }

    /// Gives the operator the activator (its registry and listen address) and the signal
    /// hub: scale-to-zero policies then hold requests at zero (`autoscaler run` only).
    pub fn with_activator(
        mut self,
        registry: crate::activator::Registry,
        addr: SocketAddr,
        signal: crate::signal::SignalHub,
    ) -> Self {
        let events = self.events.clone();
        registry.set_event_sink(Arc::new(
            move |policy: &str, kind: &str, message: String| {
                events.record(policy, kind, message);
            },
        ));
        self.zero = zero::ZeroHooks::new(registry, addr, signal);
        self
    }

    /// Observes, decides, plans and (in apply mode) executes one policy.
    ///
    /// # Errors
    /// Observation failed (engine down), or nginx cannot serve the policy; a failed step
    /// is not an error but the report's `error`.
    pub async fn reconcile(
        &self,
        policy: &ScalingPolicy,
        mode: PassMode,
    ) -> Result<PolicyReport, ReconcileError> {
        let name = policy.metadata.name.as_str();
        let lock = self.policy_lock(name);
        let _held = lock.lock().await;
        let mut obs = self.observe(policy).await?;
        let (decision, samples, warnings) = self.decide(policy, &obs).await;
        let plan = self.plan(policy, decision.desired, &mut obs).await?;
        let mut report = PolicyReport::planned(name, Some(decision), plan);
        if mode == PassMode::DryRun {
            return Ok(report);
        }
        // A master killed since `prepare` would otherwise never come back.
        self.lb.ensure_running().await?;
        self.table
            .sync_settings(
                &self.lb,
                self.seams.ports.as_ref(),
                self.upstream_of(policy),
            )
            .await?;
        self.record_decision(policy, &report, samples, &obs, warnings)
            .await;
        let mut ctx = ExecContext::for_policy(policy, obs.addrs.clone(), self.shutdown.clone());
        let execution = self.execute(&mut ctx, &report.plan.steps).await;
        self.record_outcome(policy, &mut report, execution, &obs)
            .await?;
        let error = report
            .error
            .as_ref()
            .map(|(step, e)| format!("{step}: {e}"));
        self.zero
            .after_pass(name, self.table.servers(name).await, error);
        Ok(report)
    }

    async fn observe(&self, policy: &ScalingPolicy) -> Result<Observation, ReconcileError> {
        let hidden = self.retirements.active(&policy.metadata.name);
        Ok(observe::replicas(
            self.runtime.as_ref(),
            &self.seams,
            policy,
            &hidden,
            self.settings.probe_timeout,
        )
        .await?)
    }

    /// The scaling decision on what was observed, with the samples to remember.
    async fn decide(
        &self,
        policy: &ScalingPolicy,
        obs: &Observation,
    ) -> (
        Decision,
        BTreeMap<String, crate::state::CounterSample>,
        Vec<String>,
    ) {
        let (history, previous) = {
            let state = self.state.lock().await;
            let ps = state.policies.get(&policy.metadata.name);
            (
                ps.map(|p| p.history.clone()).unwrap_or_default(),
                ps.map(|p| p.samples.clone()).unwrap_or_default(),
            )
        };
        let alive = obs.alive(readiness_timeout(policy));
        let window_ms = policy.spec.behavior.windows.stable_ms();
        let previous = self.with_windows(&policy.metadata.name, |w| {
            w.previous(self.seams.clock.now_ms(), window_ms, &previous)
        });
        let counted = self.counted_rate(policy, false);
        let metrics =
            observe::metrics(&self.seams, policy, &alive, &obs.addrs, &previous, counted).await;
        let now_ms = self.seams.clock.now_ms();
        let ids: BTreeSet<&str> = obs.replicas.iter().map(|r| r.id.as_str()).collect();
        self.with_windows(&policy.metadata.name, |w| {
            w.retain(|key| ids.contains(crate::metrics::aggregate::sample_owner(key)));
            w.record(metrics.samples.clone(), now_ms, window_ms);
        });
        let zero = self.zero.input(policy, &metrics.inputs, now_ms);
        let decision = scaling::idle::decide_with_zero(
            &DecisionInput {
                behavior: &policy.spec.behavior,
                replicas: &policy.spec.replicas,
                current: alive.len() as u32,
                metrics: &metrics.inputs,
                history: &history,
                now_ms,
            },
            zero.as_ref(),
        );
        (decision, metrics.samples, metrics.warnings)
    }

    /// Plans the pass. Only a plan that creates needs to know which host ports are free,
    /// so the range is checked (every owned container listed, ports bound) only then, and
    /// the plan made again on what that found.
    async fn plan(
        &self,
        policy: &ScalingPolicy,
        replicas: u32,
        obs: &mut Observation,
    ) -> Result<Plan, ReconcileError> {
        let hash = plan::template_hash(policy);
        let live: Vec<u16> = ports_of(&self.table.servers(&policy.metadata.name).await);
        let plan_on = |obs: &Observation| {
            let desired = Desired {
                policy: &policy.metadata.name,
                instance: &self.settings.instance,
                template_hash: &hash,
                replicas,
                port_range: policy.parsed.port_range,
                unavailable_ports: &obs.unavailable_ports,
                readiness_timeout_seconds: readiness_timeout(policy),
            };
            plan::plan(&desired, &obs.replicas, &live)
        };
        let first = plan_on(obs);
        if !first.steps.iter().any(|s| matches!(s, Step::Create { .. })) {
            return Ok(first);
        }
        observe::host_ports(self.runtime.as_ref(), &self.seams, policy, obs).await?;
        Ok(plan_on(obs))
    }

    async fn execute(&self, ctx: &mut ExecContext, steps: &[Step]) -> Execution {
        let hands = Hands {
            runtime: &self.runtime,
            lb: &self.lb,
            table: &self.table,
            seams: &self.seams,
            events: &self.events,
            retirements: &self.retirements,
        };
        execute::run(&hands, ctx, steps).await
    }

    async fn record_decision(
        &self,
        policy: &ScalingPolicy,
        report: &PolicyReport,
        samples: BTreeMap<String, crate::state::CounterSample>,
        obs: &Observation,
        warnings: Vec<String>,
    ) {
        let Some(decision) = &report.decision else {
            return;
        };
        let ids: BTreeSet<&str> = obs.replicas.iter().map(|r| r.id.as_str()).collect();
        let mut state = self.state.lock().await;
        let ps = state
            .policies
            .entry(policy.metadata.name.clone())
            .or_default();
        ps.upstream = settings_of(policy);
        ps.status.load_balancer = lb_signal::status(self.seams.signal.as_ref(), policy);
        status::record_decision(
            ps,
            decision,
            &policy.spec.behavior,
            samples,
            &ids,
            self.seams.clock.now_ms(),
        );
        drop(state);
        for warning in warnings {
            self.events
                .record(&policy.metadata.name, "MetricDropped", warning);
        }
    }

    /// Records what the execution did: its baselines, the scale event it earned, the
    /// counts and `AbleToScale`; saves the state once.
    async fn record_outcome(
        &self,
        policy: &ScalingPolicy,
        report: &mut PolicyReport,
        execution: Execution,
        obs: &Observation,
    ) -> Result<(), ReconcileError> {
        let name = policy.metadata.name.as_str();
        report.done = execution.done;
        report.error = execution.error;
        let running = if report.plan.is_empty() {
            obs.running()
        } else {
            // Replicas retiring in the background no longer count.
            let retiring = self.retirements.active(name);
            let list = self.runtime.list_policy(name).await?;
            list.iter()
                .filter(|r| r.running && !retiring.contains(&r.id))
                .count() as u32
        };
        let ready = self.table.servers(name).await.len() as u32;
        let current = obs.alive(readiness_timeout(policy)).len() as u32;
        let mut state = self.state.lock().await;
        let ps = state.policies.entry(name.to_owned()).or_default();
        let window_ms = policy.spec.behavior.windows.stable_ms();
        self.with_windows(name, |w| {
            w.record(
                execution.baselines.clone(),
                self.seams.clock.now_ms(),
                window_ms,
            );
        });
        ps.samples.extend(execution.baselines);
        let event = report.decision.as_ref().and_then(|d| {
            status::scale_event(ps, d, current, report.error.is_some(), self.events.now_ms())
                .map(|e| zero::rename_event(d, e))
        });
        status::record_outcome(
            ps,
            running,
            ready,
            report.error.as_ref(),
            self.events.now_ms(),
        );
        zero::record_condition(
            ps,
            policy,
            running,
            ready,
            self.zero.held(name),
            self.events.now_ms(),
        );
        // Only this policy's file, and only when its bytes changed.
        self.state_dir.save_policy(name, ps)?;
        drop(state);
        if let Some((kind, message)) = event {
            self.events.record(name, kind, message);
        }
        Ok(())
    }

    /// Builds the upstream table from the live config, the state and `policies`, and (in
    /// apply mode) makes nginx serve it. Call once before a round of per-policy passes.
    ///
    /// When nginx refuses the whole table, the policies that are new to it are added one
    /// at a time, so one policy nginx cannot serve does not keep the others out.
    pub async fn prepare(
        &self,
        policies: &[&ScalingPolicy],
        mode: PassMode,
    ) -> Result<(), ReconcileError> {
        let live = self.lb.current().await?;
        self.zero.configure(policies);
        self.zero.observe_live(live.as_deref());
        let loaded: Vec<Upstream> = policies.iter().map(|p| self.upstream_of(p)).collect();
        let remembered: Vec<(String, UpstreamSettings)> = {
            let state = self.state.lock().await;
            state
                .policies
                .iter()
                .map(|(n, ps)| (n.clone(), ps.upstream.clone()))
                .collect()
        };
        self.table
            .reset(live.as_deref(), &remembered, &loaded)
            .await;
        if mode == PassMode::DryRun {
            return Ok(());
        }
        if let Err(e) = self.table.apply_all(&self.lb).await {
            tracing::warn!(error = %e, "nginx refused the whole table; adding policies one at a time");
            let live_names = live
                .as_deref()
                .map(crate::nginx::parse_upstreams)
                .unwrap_or_default();
            let serving: Vec<(String, UpstreamSettings)> = remembered
                .iter()
                .filter(|(n, _)| live_names.contains_key(n))
                .cloned()
                .collect();
            self.table.reset(live.as_deref(), &serving, &[]).await;
            self.table.apply_all(&self.lb).await?;
            for upstream in &loaded {
                let name = upstream.policy.clone();
                if let Err(e) = self
                    .table
                    .sync_settings(&self.lb, self.seams.ports.as_ref(), upstream.clone())
                    .await
                {
                    tracing::error!(policy = %name, error = %e, "nginx cannot serve this policy");
                }
            }
        }
        self.lb.ensure_running().await?;
        let mut state = self.state.lock().await;
        for p in policies {
            state
                .policies
                .entry(p.metadata.name.clone())
                .or_default()
                .upstream = settings_of(p);
        }
        self.state_dir.save(&state)?;
        Ok(())
    }

    /// Registers newly loaded policies in the upstream table before any pass runs (see
    /// [`UpstreamTable::claim`]); the daemon calls it on every reload.
    pub async fn claim(&self, policies: &[&ScalingPolicy]) {
        self.zero.configure(policies);
        for p in policies {
            self.table.claim(self.upstream_of(p)).await;
        }
    }

    /// A policy's upstream entry, without servers; at zero, a scale-to-zero policy's
    /// requests go to the activator when the operator has one.
    fn upstream_of(&self, policy: &ScalingPolicy) -> Upstream {
        Upstream {
            hold: self.zero.hold_target(policy),
            ..upstream_of(policy)
        }
    }

    /// Sets `PolicyValid` after a load: `Ok` clears it (and records that a bad edit was
    /// fixed), `Err` marks the policies of the files the errors name.
    pub async fn set_policy_valid(&self, load: Result<(), &LoadErrors>) {
        let now = self.events.now_ms();
        let mut state = self.state.lock().await;
        let events: Vec<(String, &str, String)> = match load {
            Ok(()) => status::mark_valid(&mut state, now)
                .into_iter()
                .map(|n| {
                    let msg = format!("{n}: policy file is valid again");
                    (n, "PolicyValid", msg)
                })
                .collect(),
            Err(errors) => status::mark_invalid(&mut state, errors, now)
                .into_iter()
                .map(|(n, first)| (n, "PolicyInvalid", first))
                .collect(),
        };
        if let Err(e) = self.state_dir.save(&state) {
            tracing::warn!(error = %e, "cannot save state");
        }
        drop(state);
        for (policy, kind, message) in events {
            self.events.record(&policy, kind, message);
        }
    }

    /// Records a pass that failed before its steps on the policy's `AbleToScale`.
    pub async fn note_error(&self, name: &str, error: &ReconcileError) {
        let now = self.events.now_ms();
        let mut state = self.state.lock().await;
        if let Some(ps) = state.policies.get_mut(name) {
            status::record_error(ps, error, now);
        }
        if let Err(e) = self.state_dir.save(&state) {
            tracing::warn!(error = %e, "cannot save state");
        }
    }

    /// Records which file each policy came from (prune bookkeeping).
    pub async fn record_sources(
        &self,
        sources: &[(String, PathBuf)],
    ) -> Result<(), ReconcileError> {
        let mut state = self.state.lock().await;
        for (name, file) in sources {
            state.policies.entry(name.clone()).or_default().source_file = file.clone();
        }
        self.state_dir.save(&state)?;
        Ok(())
    }

    /// Names of policies recorded as coming from one of `files` but absent from `present`.
    pub async fn prunable(&self, files: &[PathBuf], present: &BTreeSet<String>) -> Vec<String> {
        let state = self.state.lock().await;
        state
            .policies
            .iter()
            .filter(|(name, ps)| !present.contains(*name) && files.contains(&ps.source_file))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Number of policies whose upstream nginx still serves.
    pub async fn upstream_count(&self) -> usize {
        self.table.len().await
    }

    /// Names of scale-to-zero policies whose worker must reconcile at once (requests
    /// held at zero); `None` without an activator.
    pub fn activation_wakes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.zero.subscribe_wakes()
    }

    /// Cancel it to make passes stop after the step in flight.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// nginx reloads this process has done.
    pub fn reload_count(&self) -> u64 {
        self.table.reloads()
    }

    /// The most recent events (newest last), without reading the log.
    pub fn recent_events(&self) -> Vec<Event> {
        self.events.recent()
    }

    /// The runtime (the daemon subscribes to its events).
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// The load balancer.
    pub fn lb(&self) -> &L {
        &self.lb
    }

    /// The state directory.
    pub fn state_dir(&self) -> &StateDir {
        &self.state_dir
    }

    /// A copy of the in-memory state.
    pub async fn state(&self) -> State {
        self.state.lock().await.clone()
    }

    /// Runs `f` on the policy's sample windows.
    fn with_windows<T>(&self, policy: &str, f: impl FnOnce(&mut SampleWindows) -> T) -> T {
        match self.sample_windows.lock() {
            Ok(mut all) => f(all.entry(policy.to_owned()).or_default()),
            // A poisoned lock loses the window, never the pass: rates fall back to the
            // last stored sample.
            Err(_) => f(&mut SampleWindows::default()),
        }
    }

    /// The burst trigger's cheap check (no container listing, no scrape): the burst count
    /// when the load balancer's signal calls for burst mode at the policy's last known
    /// count. The daemon's worker runs it on every batch of requests and passes at once.
    pub async fn burst_check(&self, policy: &ScalingPolicy) -> Option<u32> {
        let current = {
            let state = self.state.lock().await;
            state
                .policies
                .get(&policy.metadata.name)
                .map_or(0, |ps| ps.status.desired.max(ps.status.ready))
        };
        let counted = self.counted_rate(policy, true);
        lb_signal::burst_check(self.seams.signal.as_ref(), policy, current, counted)
    }

    /// The burst request rate from the policy's announced request counts (exact counts at
    /// the times they were announced). `sample`: take the count now (call it right after an
    /// announcement, as the burst trigger does; between announcements the count is stale).
    /// `None` when no announcement came within the burst window (then the signal's windows
    /// are read instead); `Some(None)` when the counts hold no trusted reading.
    fn counted_rate(&self, policy: &ScalingPolicy, sample: bool) -> Option<Option<f64>> {
        let w = &policy.spec.behavior.windows;
        if !w.burst_enabled() {
            return None;
        }
        let burst_ms = u64::from(w.burst_millis);
        let now = self.seams.clock.now_ms();
        let mut all = self.activity.lock().ok()?;
        let track = all
            .entry(policy.metadata.name.clone())
            .or_insert_with(|| ActivityTrack {
                rx: self.seams.signal.activity(&policy.metadata.name),
                samples: Default::default(),
            });
        if sample {
            let count = *track.rx.borrow_and_update();
            track.samples.push(now, count, burst_ms.saturating_mul(2));
        }
        let fresh = track
            .samples
            .newest_ms()
            .is_some_and(|t| now.saturating_sub(t) <= burst_ms);
        fresh.then(|| track.samples.burst_rate(burst_ms).map(|r| r.value))
    }

    /// The load balancer's signal (the daemon's burst trigger waits on its activity).
    pub fn signal(&self) -> &Arc<dyn seams::LoadSignal> {
        &self.seams.signal
    }

    fn policy_lock(&self, name: &str) -> Arc<Mutex<()>> {
        match self.policy_locks.lock() {
            Ok(mut locks) => locks.entry(name.to_owned()).or_default().clone(),
            // A poisoned map only loses the serialization, never correctness of one pass.
            Err(_) => Arc::new(Mutex::new(())),
        }
    }
}

/// A policy's announced request count and its samples (see [`Operator::burst_check`]).
struct ActivityTrack {
    rx: tokio::sync::watch::Receiver<u64>,
    samples: scaling::windows::CountSamples,
}

/// A policy's upstream entry, without servers, from its typed values.
fn upstream_of(policy: &ScalingPolicy) -> Upstream {
    Upstream {
        policy: policy.metadata.name.clone(),
        algorithm: policy.spec.load_balancer.algorithm,
        keepalive: policy.spec.load_balancer.keepalive,
        listen: policy.parsed.listen,
        servers: Vec::new(),
        drain_timeout_seconds: policy.spec.drain.timeout_seconds,
        hold: None,
    }
}

/// How a policy's server block renders, as remembered in the state file.
fn settings_of(policy: &ScalingPolicy) -> UpstreamSettings {
    UpstreamSettings {
        listen: policy.spec.load_balancer.listen.clone(),
        algorithm: policy.spec.load_balancer.algorithm,
        keepalive: policy.spec.load_balancer.keepalive,
        host_ip: policy.spec.ports.host_ip.clone(),
    }
}

fn ports_of(servers: &[SocketAddr]) -> Vec<u16> {
    servers.iter().map(SocketAddr::port).collect()
}

fn readiness_timeout(policy: &ScalingPolicy) -> u64 {
    policy.spec.template.readiness.timeout_seconds
}
