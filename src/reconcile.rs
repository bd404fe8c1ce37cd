//! One reconcile pass per policy: observe, decide, plan, execute, record.
//!
//! The [`Operator`] owns the shell (runtime, load balancer, scraper, state) and is shared
//! by `reconcile --once`, `diff`, `down` and the daemon's workers. Policies are passed
//! one at a time so the daemon can run independent policies in parallel; the nginx
//! upstream table and the state file are shared and guarded by mutexes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::join_all;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::lb::{ApplyOutcome, LoadBalancer};
use crate::metrics::{self, MetricsError, Scraper};
use crate::nginx::{self, Upstream};
use crate::plan::{self, Desired, ObservedReplica, Plan, Step};
use crate::policy::{MetricSpec, ScalingPolicy};
use crate::runtime::{self, Replica, ReplicaSpec, Runtime};
use crate::scaling::{self, Decision, DecisionInput, Limit, MetricInput, MetricReading};
use crate::state::{
    CounterSample, Event, MetricValue, PolicyState, State, StateDir, StateError, UpstreamSettings,
};

/// Gauge the demo backend (and any replica that wants graceful drains) exposes.
pub const IN_FLIGHT_GAUGE: &str = "http_requests_in_flight";

/// Errors of a pass.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Listing or changing containers failed.
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    /// Writing or reloading nginx failed.
    #[error(transparent)]
    LoadBalancer(#[from] crate::lb::LbError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A replica never became ready.
    #[error("replica {name} on port {port} did not become ready: {source}")]
    NotReady {
        /// Container name.
        name: String,
        /// Host port.
        port: u16,
        /// Probe failure (boxed: it is large and rare).
        source: Box<runtime::probe::ProbeError>,
    },
    /// No free host port is left in the policy's range.
    #[error("policy {policy}: no free host port left in {range} on {host_ip}")]
    NoFreePort {
        /// Policy.
        policy: String,
        /// Range as written.
        range: String,
        /// Host IP.
        host_ip: String,
    },
    /// The policy has a value the shell cannot use (validation should have caught it).
    #[error("policy {policy}: {message}")]
    InvalidPolicy {
        /// Policy.
        policy: String,
        /// What is wrong.
        message: String,
    },
    /// An injected fault fired (crash tests only).
    #[error("injected fault at {0}")]
    InjectedFault(String),
}

impl ReconcileError {
    /// True when a later pass may succeed without anyone changing the policy.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Runtime(e) => e.is_transient(),
            ReconcileError::InvalidPolicy { .. } => false,
            ReconcileError::LoadBalancer(_)
            | ReconcileError::State(_)
            | ReconcileError::NotReady { .. }
            | ReconcileError::NoFreePort { .. }
            | ReconcileError::InjectedFault(_) => true,
        }
    }
}

/// Whether a pass changes anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
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
    /// Steps that completed.
    pub done: usize,
    /// The first failed step and its error.
    pub error: Option<(Step, ReconcileError)>,
}

impl PolicyReport {
    /// True when every planned step succeeded.
    pub fn converged(&self) -> bool {
        self.error.is_none()
    }
}

/// Settings of the operator that are not part of any policy.
#[derive(Debug, Clone)]
pub struct OperatorSettings {
    /// Timeout of one readiness probe during observation.
    pub probe_timeout: Duration,
    /// Timeout of one metrics scrape.
    pub scrape_timeout: Duration,
}

impl Default for OperatorSettings {
    fn default() -> Self {
        Self {
            probe_timeout: Duration::from_millis(1000),
            scrape_timeout: Duration::from_millis(1000),
        }
    }
}

/// The operator's hands: runtime, load balancer, scraper and state, shared by passes.
pub struct Operator<R, L> {
    runtime: R,
    lb: L,
    state_dir: StateDir,
    scraper: Scraper,
    settings: OperatorSettings,
    state: Mutex<State>,
    upstreams: Mutex<BTreeMap<String, Upstream>>,
    /// Cancelled on graceful shutdown: the executor stops between steps.
    shutdown: CancellationToken,
    /// nginx reloads done by this process (for `/metrics`).
    reloads: AtomicU64,
    /// The last events written, so `/status` never re-reads the event log.
    recent: std::sync::Mutex<VecDeque<Event>>,
}

/// How many recent events the operator keeps in memory.
const RECENT_EVENTS: usize = 100;

/// Milliseconds since the epoch (the shell's clock; the core takes it as an argument).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<R: Runtime, L: LoadBalancer> Operator<R, L> {
    /// Builds an operator and loads the state directory.
    pub fn new(
        runtime: R,
        lb: L,
        state_dir: StateDir,
        settings: OperatorSettings,
    ) -> Result<Self, ReconcileError> {
        let state = state_dir.load()?;
        let recent = state_dir.recent_events(RECENT_EVENTS)?;
        let scraper =
            Scraper::new(settings.scrape_timeout).map_err(|e| ReconcileError::InvalidPolicy {
                policy: String::new(),
                message: e.to_string(),
            })?;
        Ok(Self {
            runtime,
            lb,
            state_dir,
            scraper,
            settings,
            state: Mutex::new(state),
            upstreams: Mutex::new(BTreeMap::new()),
            shutdown: CancellationToken::new(),
            reloads: AtomicU64::new(0),
            recent: std::sync::Mutex::new(recent.into()),
        })
    }

    /// Appends events to the log and to the in-memory window of recent ones.
    fn record_events(&self, events: &[Event]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        if let Ok(mut recent) = self.recent.lock() {
            recent.extend(events.iter().cloned());
            while recent.len() > RECENT_EVENTS {
                recent.pop_front();
            }
        }
        self.state_dir.append_events(events)
    }

    /// The most recent events (newest last), without reading the log.
    pub fn recent_events(&self) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Cancel it to make passes stop after the step in flight.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// nginx reloads this process has done.
    pub fn reload_count(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    async fn apply_table(&self, table: &BTreeMap<String, Upstream>) -> Result<(), ReconcileError> {
        let all: Vec<Upstream> = table.values().cloned().collect();
        if self.lb.apply(&all).await? == ApplyOutcome::Reloaded {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Makes the policy's upstream entry match its listen/algorithm/keepalive, keeping servers.
    async fn sync_upstream_settings(&self, policy: &ScalingPolicy) -> Result<(), ReconcileError> {
        let name = &policy.metadata.name;
        let settings = settings_of(policy);
        let mut table = self.upstreams.lock().await;
        let servers = table
            .get(name)
            .map(|u| u.servers.clone())
            .unwrap_or_default();
        let Some(mut wanted) = upstream_from_settings(name, &settings, &BTreeMap::new()) else {
            return Err(ReconcileError::InvalidPolicy {
                policy: name.clone(),
                message: format!("listen {:?} is not IP:PORT", settings.listen),
            });
        };
        wanted.servers = servers;
        if table.get(name) == Some(&wanted) {
            return Ok(());
        }
        table.insert(name.clone(), wanted);
        self.apply_table(&table).await?;
        drop(table);
        let mut state = self.state.lock().await;
        state.policies.entry(name.clone()).or_default().upstream = settings;
        self.state_dir.save(&state)?;
        Ok(())
    }

    /// Sets the `PolicyValid` condition: `Some(errors)` after a failed load (on the policies
    /// of the files named in the errors, or all when none is named), `None` once valid.
    pub async fn set_policy_valid(&self, errors: Option<&str>) {
        let now = now_ms();
        let mut state = self.state.lock().await;
        let mut events = Vec::new();
        match errors {
            None => {
                for ps in state.policies.values_mut() {
                    ps.status.set_condition(
                        "PolicyValid",
                        true,
                        "Loaded",
                        "policy files are valid",
                        now,
                    );
                }
            }
            Some(message) => {
                let named = |ps: &PolicyState| {
                    let file = ps.source_file.to_string_lossy();
                    !file.is_empty() && message.contains(file.as_ref())
                };
                let any_named = state.policies.values().any(named);
                for (name, ps) in state.policies.iter_mut() {
                    if any_named && !named(ps) {
                        continue;
                    }
                    ps.status.set_condition(
                        "PolicyValid",
                        false,
                        "InvalidPolicyFile",
                        &format!("last good policy stays in force: {message}"),
                        now,
                    );
                    events.push(Event {
                        at_ms: now,
                        policy: name.clone(),
                        kind: "PolicyInvalid".to_owned(),
                        message: message.lines().next().unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        if let Err(e) = self.state_dir.save(&state) {
            tracing::warn!(error = %e, "cannot save state");
        }
        drop(state);
        if let Err(e) = self.record_events(&events) {
            tracing::warn!(error = %e, "cannot record events");
        }
    }

    /// Records a failed pass on the policy's `AbleToScale` condition.
    pub async fn note_error(&self, name: &str, error: &ReconcileError) {
        let now = now_ms();
        let mut state = self.state.lock().await;
        if let Some(ps) = state.policies.get_mut(name) {
            ps.status.set_condition(
                "AbleToScale",
                false,
                "ReconcileFailed",
                &error.to_string(),
                now,
            );
        }
        if let Err(e) = self.state_dir.save(&state) {
            tracing::warn!(error = %e, "cannot save state");
        }
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

    /// Builds the upstream table from the live config, the state and `policies`, and (in
    /// apply mode) makes nginx serve it. Call once before a round of per-policy passes.
    pub async fn prepare(
        &self,
        policies: &[&ScalingPolicy],
        mode: Mode,
    ) -> Result<(), ReconcileError> {
        let live = self.live_upstreams().await?;
        let mut state = self.state.lock().await;
        let mut table = self.upstreams.lock().await;
        table.clear();
        for (name, ps) in &state.policies {
            if let Some(upstream) = upstream_from_settings(name, &ps.upstream, &live) {
                table.insert(name.clone(), upstream);
            }
        }
        for policy in policies {
            let settings = settings_of(policy);
            let name = &policy.metadata.name;
            if let Some(upstream) = upstream_from_settings(name, &settings, &live) {
                table.insert(name.clone(), upstream);
            }
            if mode == Mode::Apply {
                let entry = state.policies.entry(name.clone()).or_default();
                entry.upstream = settings;
            }
        }
        if mode == Mode::Apply {
            self.apply_table(&table).await?;
            self.lb.ensure_running().await?;
            self.state_dir.save(&state)?;
        }
        Ok(())
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

    async fn live_upstreams(&self) -> Result<BTreeMap<String, Vec<SocketAddr>>, ReconcileError> {
        let text = self.lb.current().await?;
        Ok(text.map(|t| nginx::parse_upstreams(&t)).unwrap_or_default())
    }

    /// Observes, decides, plans and (in apply mode) executes one policy.
    pub async fn reconcile(
        &self,
        policy: &ScalingPolicy,
        mode: Mode,
    ) -> Result<PolicyReport, ReconcileError> {
        let name = policy.metadata.name.clone();
        let now = now_ms();
        let observed = self.observe(policy).await?;
        let alive: Vec<&(Replica, bool)> = observed
            .iter()
            .filter(|(r, ready)| {
                r.running && (*ready || age_seconds(r, now) <= readiness_timeout(policy))
            })
            .collect();
        let (history, previous) = {
            let state = self.state.lock().await;
            let ps = state.policies.get(&name);
            (
                ps.map(|p| p.history.clone()).unwrap_or_default(),
                ps.map(|p| p.samples.clone()).unwrap_or_default(),
            )
        };
        let (inputs, samples) = self.collect_metrics(policy, &alive, &previous, now).await;
        let current = alive.len() as u32;
        let decision = scaling::decide(&DecisionInput {
            behavior: &policy.spec.behavior,
            replicas: &policy.spec.replicas,
            current,
            metrics: &inputs,
            history: &history,
            now_ms: now,
        });
        let plan = self
            .plan_for(policy, decision.desired, &observed, now)
            .await;
        let mut report = PolicyReport {
            policy: name.clone(),
            decision: Some(decision),
            plan,
            done: 0,
            error: None,
        };
        if mode == Mode::DryRun {
            return Ok(report);
        }
        // A master killed since `prepare` would otherwise never come back (applies only
        // write the file when no master runs): restart it on the config in place.
        self.lb.ensure_running().await?;
        self.sync_upstream_settings(policy).await?;
        self.record_decision(policy, &report, samples, current, &observed, now)
            .await?;
        self.execute(policy, &mut report).await;
        let running = observed.iter().filter(|(r, _)| r.running).count() as u32;
        self.finish_status(&name, &report, running).await?;
        Ok(report)
    }

    /// Plans the removal of a policy (`down`, or a policy removed from its file) and, in
    /// apply mode, executes it and forgets the policy.
    pub async fn remove_policy(
        &self,
        name: &str,
        drain_timeout: Duration,
        mode: Mode,
    ) -> Result<PolicyReport, ReconcileError> {
        let all = self.runtime.list_policy(name).await?;
        let live = self.live_upstreams().await?;
        let observed: Vec<ObservedReplica> = all
            .iter()
            .map(|r| ObservedReplica {
                id: r.id.clone(),
                name: r.name.clone(),
                host_port: r.host_port,
                template_hash: r.template_hash.clone(),
                running: r.running,
                // Whatever its probe says, a replica may hold traffic: drain it.
                ready: r.running,
                age_seconds: 0,
            })
            .collect();
        let live_ports = ports_of(live.get(name));
        let desired = Desired {
            policy: name,
            template_hash: "",
            replicas: 0,
            port_range: (1, 0),
            readiness_timeout_seconds: u64::MAX,
        };
        let plan = plan::plan(&desired, &observed, &live_ports);
        let mut report = PolicyReport {
            policy: name.to_owned(),
            decision: None,
            plan,
            done: 0,
            error: None,
        };
        if mode == Mode::DryRun {
            return Ok(report);
        }
        let host_ip = {
            let state = self.state.lock().await;
            state
                .policies
                .get(name)
                .map(|p| p.upstream.host_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".to_owned())
        };
        let ctx = ExecContext {
            policy: name.to_owned(),
            host_ip,
            drain_timeout,
            metrics_path: "/metrics".to_owned(),
            spec: None,
        };
        self.execute_steps(&ctx, &mut report).await;
        if report.converged() {
            let mut table = self.upstreams.lock().await;
            table.remove(name);
            self.apply_table(&table).await?;
            let mut state = self.state.lock().await;
            state.policies.remove(name);
            self.state_dir.save(&state)?;
            self.record_events(&[Event {
                at_ms: now_ms(),
                policy: name.to_owned(),
                kind: "PolicyRemoved".to_owned(),
                message: format!("{name}: replicas drained and removed, upstream dropped"),
            }])?;
        }
        Ok(report)
    }

    /// Number of policies whose upstream nginx still serves.
    pub async fn upstream_count(&self) -> usize {
        self.upstreams.lock().await.len()
    }

    /// The nginx config now in place and the one the table renders after dry-run plans.
    /// `after` holds, per policy, its host IP and the upstream ports a plan leaves.
    pub async fn config_diff_inputs(
        &self,
        after: &[(String, String, Vec<u16>)],
    ) -> Result<(String, String), ReconcileError> {
        let before = self.lb.current().await?.unwrap_or_default();
        let mut table = self.upstreams.lock().await.clone();
        for (policy, host_ip, ports) in after {
            if let Some(u) = table.get_mut(policy) {
                u.servers = servers_of(host_ip, ports);
            }
        }
        let all: Vec<Upstream> = table.values().cloned().collect();
        let after = self.lb.render(&all)?;
        Ok((before, after))
    }

    /// The upstream ports a dry-run plan would leave for its policy.
    pub async fn ports_after(&self, policy: &ScalingPolicy, report: &PolicyReport) -> Vec<u16> {
        let table = self.upstreams.lock().await;
        let mut ports: Vec<u16> = table
            .get(&policy.metadata.name)
            .map(|u| u.servers.iter().map(|s| s.port()).collect())
            .unwrap_or_default();
        for step in &report.plan.steps {
            if let Step::SetUpstream { ports: p, .. } = step {
                ports = p.clone();
            }
        }
        ports
    }

    async fn observe(
        &self,
        policy: &ScalingPolicy,
    ) -> Result<Vec<(Replica, bool)>, ReconcileError> {
        let replicas: Vec<Replica> = self.runtime.list_policy(&policy.metadata.name).await?;
        let path = &policy.spec.template.readiness.http_get.path;
        let probes = replicas.iter().map(|r| async {
            if !r.running {
                return false;
            }
            match replica_addr(&r.host_ip, r.host_port) {
                Some(addr) => {
                    runtime::probe::probe_once(addr, path, self.settings.probe_timeout).await
                }
                None => false,
            }
        });
        let ready = join_all(probes).await;
        Ok(replicas.into_iter().zip(ready).collect())
    }

    async fn collect_metrics(
        &self,
        policy: &ScalingPolicy,
        alive: &[&(Replica, bool)],
        previous: &BTreeMap<String, CounterSample>,
        now: u64,
    ) -> (Vec<MetricInput>, BTreeMap<String, CounterSample>) {
        let mut inputs = Vec::new();
        let mut samples = BTreeMap::new();
        for spec in &policy.spec.metrics {
            let reading = match spec {
                MetricSpec::RequestRate(m) => {
                    let scrapes = alive.iter().map(|(r, ready)| async move {
                        if !*ready {
                            return None;
                        }
                        let addr = replica_addr(&r.host_ip, r.host_port)?;
                        Some(self.scraper.family_sum(addr, &m.path, &m.counter).await)
                    });
                    let results = join_all(scrapes).await;
                    let mut values = Vec::new();
                    let mut errors: Vec<MetricsError> = Vec::new();
                    let mut attempted = 0;
                    let mut without_family = 0;
                    for ((r, _), result) in alive.iter().zip(results) {
                        // A replica that has served nothing yet may not expose the family at
                        // all (lazily created label sets): it counts as 0, unless no replica
                        // exposes it (then the name is probably wrong: no data, no scale-down).
                        let result = match result {
                            Some(Err(MetricsError::MissingFamily { .. })) => {
                                without_family += 1;
                                Some(Ok(0.0))
                            }
                            other => other,
                        };
                        match result {
                            Some(Ok(value)) => {
                                attempted += 1;
                                let sample = CounterSample { at_ms: now, value };
                                let key = sample_key(&r.id, &m.path, &m.counter);
                                values.push(metrics::rate(previous.get(&key).copied(), sample));
                                samples.insert(key, sample);
                            }
                            Some(Err(e)) => {
                                attempted += 1;
                                tracing::warn!(policy = %policy.metadata.name, replica = %r.name, error = %e, "scrape failed");
                                errors.push(e);
                                values.push(None);
                            }
                            None => values.push(None),
                        }
                    }
                    if attempted > 0 && without_family == attempted {
                        MetricReading::Unavailable(format!(
                            "no replica exposes the counter {}",
                            m.counter
                        ))
                    } else if attempted > 0 && errors.len() == attempted {
                        MetricReading::Unavailable(format!(
                            "every scrape failed, e.g. {}",
                            errors[0]
                        ))
                    } else {
                        MetricReading::PerReplica(values)
                    }
                }
                MetricSpec::Prometheus(m) => {
                    match self.scraper.prometheus_query(&m.url, &m.query).await {
                        Ok(total) => MetricReading::Total(total),
                        Err(e) => {
                            tracing::warn!(policy = %policy.metadata.name, error = %e, "prometheus query failed");
                            MetricReading::Unavailable(e.to_string())
                        }
                    }
                }
            };
            inputs.push(MetricInput {
                name: spec.display_name(),
                target_per_replica: spec.target_per_replica(),
                reading,
            });
        }
        (inputs, samples)
    }

    async fn plan_for(
        &self,
        policy: &ScalingPolicy,
        desired: u32,
        observed: &[(Replica, bool)],
        now: u64,
    ) -> Plan {
        let hash = plan::template_hash(policy);
        let observed: Vec<ObservedReplica> = observed
            .iter()
            .map(|(r, ready)| ObservedReplica {
                id: r.id.clone(),
                name: r.name.clone(),
                host_port: r.host_port,
                template_hash: r.template_hash.clone(),
                // A replica whose port cannot be read is unroutable: replace it.
                running: r.running && r.host_port != 0,
                ready: *ready,
                age_seconds: age_seconds(r, now),
            })
            .collect();
        let live_ports: Vec<u16> = {
            let table = self.upstreams.lock().await;
            table
                .get(&policy.metadata.name)
                .map(|u| u.servers.iter().map(|s| s.port()).collect())
                .unwrap_or_default()
        };
        let desired = Desired {
            policy: &policy.metadata.name,
            template_hash: &hash,
            replicas: desired,
            port_range: policy.spec.ports.parsed_range().unwrap_or((1, 0)),
            readiness_timeout_seconds: readiness_timeout(policy),
        };
        plan::plan(&desired, &observed, &live_ports)
    }

    async fn record_decision(
        &self,
        policy: &ScalingPolicy,
        report: &PolicyReport,
        samples: BTreeMap<String, CounterSample>,
        current: u32,
        observed: &[(Replica, bool)],
        now: u64,
    ) -> Result<(), ReconcileError> {
        let Some(decision) = &report.decision else {
            return Ok(());
        };
        let name = &policy.metadata.name;
        let mut events = Vec::new();
        {
            let mut state = self.state.lock().await;
            let ps: &mut PolicyState = state.policies.entry(name.clone()).or_default();
            ps.history.record(decision, now, &policy.spec.behavior);
            // Keep samples only for replicas that still exist (no unbounded growth).
            ps.samples
                .retain(|key, _| observed.iter().any(|(r, _)| sample_owner(key) == r.id));
            ps.samples.extend(samples);
            let status = &mut ps.status;
            status.desired = decision.desired;
            status.current = current;
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
            status.set_condition(
                "ScalingActive",
                decision.metrics_available,
                if decision.metrics_available {
                    "ValidMetricFound"
                } else {
                    "FailedGetMetrics"
                },
                &decision.reason,
                now,
            );
            // As HPA: "limited" means bounded by min/max or a rate policy; windows and
            // the tolerance band are how the algorithm decides, not limits.
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
            status.set_condition("ScalingLimited", limited, reason, &message, now);
            if decision.desired != current {
                let kind = if decision.desired > current {
                    "ScaledUp"
                } else {
                    "ScaledDown"
                };
                status.last_scale_ms = Some(now);
                status.last_scale_reason = Some(decision.reason.clone());
                events.push(Event {
                    at_ms: now,
                    policy: name.clone(),
                    kind: kind.to_owned(),
                    message: format!("{kind} {current}→{}: {}", decision.desired, decision.reason),
                });
            }
        }
        for e in &events {
            tracing::info!(policy = %e.policy, "{}", e.message);
        }
        self.record_events(&events)?;
        Ok(())
    }

    /// Records the outcome of a pass and saves the state (once per pass). `observed_running`
    /// is reused when the plan was empty: nothing changed since the observation.
    async fn finish_status(
        &self,
        name: &str,
        report: &PolicyReport,
        observed_running: u32,
    ) -> Result<(), ReconcileError> {
        let running = if report.plan.is_empty() {
            observed_running
        } else {
            let replicas = self.runtime.list_policy(name).await?;
            replicas.iter().filter(|r| r.running).count() as u32
        };
        let in_upstream = {
            let table = self.upstreams.lock().await;
            table.get(name).map(|u| u.servers.len()).unwrap_or(0)
        };
        let now = now_ms();
        let mut state = self.state.lock().await;
        if let Some(ps) = state.policies.get_mut(name) {
            ps.status.current = running;
            ps.status.ready = in_upstream as u32;
            ps.status.last_reconcile_ms = now;
            match &report.error {
                None => ps.status.set_condition(
                    "AbleToScale",
                    true,
                    "Converged",
                    "every planned step succeeded",
                    now,
                ),
                Some((step, e)) => ps.status.set_condition(
                    "AbleToScale",
                    false,
                    "StepFailed",
                    &format!("{step}: {e}"),
                    now,
                ),
            }
        }
        // Only this policy's file, and only when its bytes changed.
        match state.policies.get(name) {
            Some(ps) => self.state_dir.save_policy(name, ps).map(|_| ())?,
            None => self.state_dir.save(&state)?,
        }
        Ok(())
    }

    async fn execute(&self, policy: &ScalingPolicy, report: &mut PolicyReport) {
        let ctx = ExecContext {
            policy: policy.metadata.name.clone(),
            host_ip: policy.spec.ports.host_ip.clone(),
            drain_timeout: Duration::from_secs(policy.spec.drain.timeout_seconds),
            metrics_path: policy
                .spec
                .metrics
                .iter()
                .find_map(|m| match m {
                    MetricSpec::RequestRate(r) => Some(r.path.clone()),
                    MetricSpec::Prometheus(_) => None,
                })
                .unwrap_or_else(|| "/metrics".to_owned()),
            spec: Some(policy.clone()),
        };
        self.execute_steps(&ctx, report).await;
    }

    /// Runs the plan in order. Consecutive steps of the same kind (creates, readiness waits,
    /// drains, stops, removes) touch different replicas and run concurrently; upstream
    /// changes always run alone. Stops at the first failed batch.
    async fn execute_steps(&self, ctx: &ExecContext, report: &mut PolicyReport) {
        // Planned port → actual (port, name) when a planned port turned out to be taken.
        let mut moved: BTreeMap<u16, (u16, String)> = BTreeMap::new();
        let mut events = Vec::new();
        let mut baselines = Vec::new();
        for batch in batches(&report.plan.steps) {
            if self.shutdown.is_cancelled() {
                tracing::info!(policy = %ctx.policy, "shutting down: remaining steps left to the next pass");
                break;
            }
            let moved_now = &moved;
            let results = join_all(batch.iter().map(|step| async move {
                crate::fault::point("before", step);
                let result = self.execute_step(ctx, step, moved_now).await;
                if result.is_ok() {
                    crate::fault::point("after", step);
                }
                result
            }))
            .await;
            for (step, result) in batch.iter().zip(results) {
                match result {
                    Ok(outcome) => {
                        tracing::info!(policy = %ctx.policy, "{step}");
                        report.done += 1;
                        if let Some((planned, actual)) = outcome.moved {
                            moved.insert(planned, actual);
                        }
                        baselines.extend(outcome.baseline);
                        if let Some((kind, message)) = outcome.event {
                            events.push(Event {
                                at_ms: now_ms(),
                                policy: ctx.policy.clone(),
                                kind: kind.to_owned(),
                                message,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(policy = %ctx.policy, error = %e, "step failed: {step}");
                        events.push(Event {
                            at_ms: now_ms(),
                            policy: ctx.policy.clone(),
                            kind: "StepFailed".to_owned(),
                            message: format!("{step}: {e}"),
                        });
                        if report.error.is_none() {
                            report.error = Some((step.clone(), e));
                        }
                    }
                }
            }
            if report.error.is_some() {
                break;
            }
        }
        if let Err(e) = self.record_events(&events) {
            tracing::warn!(error = %e, "cannot record events");
        }
        if !baselines.is_empty() {
            let mut state = self.state.lock().await;
            if let Some(ps) = state.policies.get_mut(&ctx.policy) {
                ps.samples.extend(baselines);
            }
        }
    }

    /// Returns once the container `name` of `policy` is gone or not running (list errors:
    /// keep waiting).
    async fn until_not_running(&self, policy: &str, name: &str) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(list) = self.runtime.list_policy(policy).await
                && !list.iter().any(|r| r.name == name && r.running)
            {
                return;
            }
        }
    }

    /// Counter samples of a replica that just became ready, so the next pass already has
    /// a rate for it (otherwise its first pass counts it as missing data and holds).
    async fn baseline_samples(
        &self,
        policy: &ScalingPolicy,
        addr: SocketAddr,
    ) -> Vec<(String, CounterSample)> {
        let Some(id) = self.replica_id_at(&policy.metadata.name, addr.port()).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for spec in &policy.spec.metrics {
            if let MetricSpec::RequestRate(m) = spec {
                let value = match self.scraper.family_sum(addr, &m.path, &m.counter).await {
                    Ok(v) => v,
                    Err(MetricsError::MissingFamily { .. }) => 0.0,
                    Err(_) => continue,
                };
                out.push((
                    sample_key(&id, &m.path, &m.counter),
                    CounterSample {
                        at_ms: now_ms(),
                        value,
                    },
                ));
            }
        }
        out
    }

    async fn replica_id_at(&self, policy: &str, port: u16) -> Option<String> {
        let replicas = self.runtime.list_policy(policy).await.ok()?;
        replicas
            .into_iter()
            .find(|r| r.host_port == port && r.running)
            .map(|r| r.id)
    }

    async fn execute_step(
        &self,
        ctx: &ExecContext,
        step: &Step,
        moved: &BTreeMap<u16, (u16, String)>,
    ) -> Result<StepOutcome, ReconcileError> {
        let actual = |port: u16| moved.get(&port).map(|(p, _)| *p).unwrap_or(port);
        match step {
            Step::Create { name, host_port } => {
                let Some(policy) = &ctx.spec else {
                    return Ok(StepOutcome::default());
                };
                let (port, name) = self.pick_port(policy, *host_port, name).await?;
                let spec = replica_spec(policy, &name, port)?;
                let replica = self.runtime.create(&spec).await?;
                Ok(StepOutcome {
                    event: Some((
                        "ReplicaCreated",
                        format!(
                            "{} created on {}:{}",
                            replica.name, replica.host_ip, replica.host_port
                        ),
                    )),
                    moved: (port != *host_port).then_some((*host_port, (port, name))),
                    baseline: Vec::new(),
                })
            }
            Step::WaitReady { name, host_port } => {
                let Some(policy) = &ctx.spec else {
                    return Ok(StepOutcome::default());
                };
                let port = actual(*host_port);
                let container = moved.get(host_port).map_or(name, |(_, n)| n);
                let addr = addr_or_invalid(&ctx.policy, &ctx.host_ip, port)?;
                let readiness = &policy.spec.template.readiness;
                let started = std::time::Instant::now();
                let probe = runtime::probe::wait_ready(
                    addr,
                    &readiness.http_get.path,
                    Duration::from_millis(readiness.period_millis.max(10)),
                    Duration::from_secs(readiness.timeout_seconds),
                );
                // A replica that exits while we wait (killed, crashed) will never be ready:
                // fail the step now so the next pass replaces it, not at the timeout.
                let result = tokio::select! {
                    result = probe => result,
                    () = self.until_not_running(&ctx.policy, container) => Err(runtime::probe::ProbeError::NotReady {
                        addr,
                        path: readiness.http_get.path.clone(),
                        waited: started.elapsed(),
                        attempts: 0,
                        last: "the container is no longer running".to_owned(),
                    }),
                };
                result.map_err(|source| ReconcileError::NotReady {
                    name: name.clone(),
                    port,
                    source: Box::new(source),
                })?;
                Ok(StepOutcome {
                    baseline: self.baseline_samples(policy, addr).await,
                    ..StepOutcome::default()
                })
            }
            Step::SetUpstream { ports, .. } => {
                let ports: Vec<u16> = ports.iter().map(|p| actual(*p)).collect();
                let mut table = self.upstreams.lock().await;
                let Some(upstream) = table.get_mut(&ctx.policy) else {
                    return Err(ReconcileError::InvalidPolicy {
                        policy: ctx.policy.clone(),
                        message: "no upstream settings known for this policy".to_owned(),
                    });
                };
                let previous = upstream.servers.clone();
                upstream.servers = servers_of(&ctx.host_ip, &ports);
                match self.apply_table(&table).await {
                    Ok(()) => Ok(StepOutcome::event(
                        "UpstreamChanged",
                        format!("upstream of {} now {:?}", ctx.policy, ports),
                    )),
                    Err(e) => {
                        if let Some(u) = table.get_mut(&ctx.policy) {
                            u.servers = previous;
                        }
                        Err(e)
                    }
                }
            }
            Step::Drain {
                name, host_port, ..
            } => {
                let addr = addr_or_invalid(&ctx.policy, &ctx.host_ip, *host_port)?;
                let waited = self.drain(addr, &ctx.metrics_path, ctx.drain_timeout).await;
                tracing::debug!(replica = %name, ?waited, "drained");
                Ok(StepOutcome::default())
            }
            Step::Stop { id, .. } => {
                self.runtime.stop(id, ctx.drain_timeout).await?;
                Ok(StepOutcome::default())
            }
            Step::Remove { id, name, reason } => {
                self.runtime.remove(id).await?;
                Ok(StepOutcome::event(
                    "ReplicaRemoved",
                    format!("{name} removed ({reason})"),
                ))
            }
        }
    }

    /// Waits until the replica's in-flight gauge reads 0 twice in a row, or the timeout.
    async fn drain(&self, addr: SocketAddr, path: &str, timeout: Duration) -> Duration {
        let start = tokio::time::Instant::now();
        let mut zeros = 0;
        while start.elapsed() < timeout {
            match self.scraper.family_sum(addr, path, IN_FLIGHT_GAUGE).await {
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

    async fn pick_port(
        &self,
        policy: &ScalingPolicy,
        planned: u16,
        planned_name: &str,
    ) -> Result<(u16, String), ReconcileError> {
        let host_ip: IpAddr =
            policy
                .spec
                .ports
                .host_ip
                .parse()
                .map_err(|_| ReconcileError::InvalidPolicy {
                    policy: policy.metadata.name.clone(),
                    message: format!(
                        "hostIp {:?} is not an IP address",
                        policy.spec.ports.host_ip
                    ),
                })?;
        let (first, last) = policy.spec.ports.parsed_range().unwrap_or((1, 0));
        let used: BTreeSet<u16> = self
            .runtime
            .list()
            .await?
            .iter()
            .filter(|r| r.host_ip == policy.spec.ports.host_ip || r.policy == policy.metadata.name)
            .map(|r| r.host_port)
            .collect();
        if !used.contains(&planned)
            && runtime::ports::first_free_port(host_ip, (planned, planned), &used) == Some(planned)
        {
            return Ok((planned, planned_name.to_owned()));
        }
        let port =
            runtime::ports::first_free_port(host_ip, (first, last), &used).ok_or_else(|| {
                ReconcileError::NoFreePort {
                    policy: policy.metadata.name.clone(),
                    range: policy.spec.ports.range.clone(),
                    host_ip: policy.spec.ports.host_ip.clone(),
                }
            })?;
        Ok((port, plan::replica_name(&policy.metadata.name, port)))
    }
}

/// What one executed step leaves behind.
#[derive(Debug, Default)]
struct StepOutcome {
    /// Event to record: kind and sentence.
    event: Option<(&'static str, String)>,
    /// A create that had to move: planned port → (actual port, actual name).
    moved: Option<(u16, (u16, String))>,
    /// A replica that just became ready: (container id, its counter samples).
    baseline: Vec<(String, CounterSample)>,
}

impl StepOutcome {
    fn event(kind: &'static str, message: String) -> Self {
        Self {
            event: Some((kind, message)),
            ..Self::default()
        }
    }
}

/// Splits a plan into runs of steps that may execute concurrently: consecutive steps of
/// the same kind, except upstream changes, which always run alone and in order.
fn batches(steps: &[Step]) -> Vec<&[Step]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=steps.len() {
        let boundary = i == steps.len()
            || matches!(steps[i], Step::SetUpstream { .. })
            || matches!(steps[i - 1], Step::SetUpstream { .. })
            || std::mem::discriminant(&steps[i]) != std::mem::discriminant(&steps[i - 1]);
        if boundary {
            out.push(&steps[start..i]);
            start = i;
        }
    }
    out
}

/// What the executor needs to know about the policy whose plan it runs.
struct ExecContext {
    policy: String,
    host_ip: String,
    drain_timeout: Duration,
    metrics_path: String,
    /// None when the policy is being removed (no creations then).
    spec: Option<ScalingPolicy>,
}

/// Key of a replica's counter sample in the state: one per container and counter.
fn sample_key(container_id: &str, path: &str, counter: &str) -> String {
    format!("{container_id} {path} {counter}")
}

/// The container id a sample key belongs to.
fn sample_owner(key: &str) -> &str {
    key.split(' ').next().unwrap_or(key)
}

fn replica_spec(
    policy: &ScalingPolicy,
    name: &str,
    port: u16,
) -> Result<ReplicaSpec, ReconcileError> {
    let template = &policy.spec.template;
    let memory_bytes = match &template.resources.memory {
        Some(text) => Some(
            crate::policy::memory_bytes(text)
                .and_then(|b| i64::try_from(b).ok())
                .ok_or_else(|| ReconcileError::InvalidPolicy {
                    policy: policy.metadata.name.clone(),
                    message: format!("memory {text:?} is not a quantity"),
                })?,
        ),
        None => None,
    };
    Ok(ReplicaSpec {
        policy: policy.metadata.name.clone(),
        name: name.to_owned(),
        template_hash: plan::template_hash(policy),
        image: template.image.clone(),
        args: template.args.clone(),
        env: template.env.clone(),
        container_port: template.container_port,
        host_ip: policy.spec.ports.host_ip.clone(),
        host_port: port,
        nano_cpus: template.resources.cpus.map(|c| (c * 1e9).round() as i64),
        memory_bytes,
    })
}

fn settings_of(policy: &ScalingPolicy) -> UpstreamSettings {
    UpstreamSettings {
        listen: policy.spec.load_balancer.listen.clone(),
        algorithm: policy.spec.load_balancer.algorithm,
        keepalive: policy.spec.load_balancer.keepalive,
        host_ip: policy.spec.ports.host_ip.clone(),
    }
}

fn upstream_from_settings(
    name: &str,
    settings: &UpstreamSettings,
    live: &BTreeMap<String, Vec<SocketAddr>>,
) -> Option<Upstream> {
    let listen: SocketAddr = settings.listen.parse().ok()?;
    Some(Upstream {
        policy: name.to_owned(),
        algorithm: settings.algorithm,
        keepalive: settings.keepalive,
        listen,
        servers: live.get(name).cloned().unwrap_or_default(),
    })
}

fn servers_of(host_ip: &str, ports: &[u16]) -> Vec<SocketAddr> {
    ports
        .iter()
        .filter_map(|p| replica_addr(host_ip, *p))
        .collect()
}

fn ports_of(servers: Option<&Vec<SocketAddr>>) -> Vec<u16> {
    servers
        .map(|s| s.iter().map(|a| a.port()).collect())
        .unwrap_or_default()
}

fn replica_addr(host_ip: &str, port: u16) -> Option<SocketAddr> {
    let ip: IpAddr = host_ip.parse().ok()?;
    // A replica published on 0.0.0.0 is reached on loopback.
    let ip = if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    Some(SocketAddr::new(ip, port))
}

fn addr_or_invalid(policy: &str, host_ip: &str, port: u16) -> Result<SocketAddr, ReconcileError> {
    replica_addr(host_ip, port).ok_or_else(|| ReconcileError::InvalidPolicy {
        policy: policy.to_owned(),
        message: format!("hostIp {host_ip:?} is not an IP address"),
    })
}

fn age_seconds(r: &Replica, now_ms: u64) -> u64 {
    let created_ms = u64::try_from(r.created_unix)
        .unwrap_or(0)
        .saturating_mul(1000);
    now_ms.saturating_sub(created_ms) / 1000
}

fn readiness_timeout(policy: &ScalingPolicy) -> u64 {
    policy.spec.template.readiness.timeout_seconds
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(port: u16) -> Step {
        Step::Create {
            name: format!("w-{port}"),
            host_port: port,
        }
    }

    fn wait(port: u16) -> Step {
        Step::WaitReady {
            name: format!("w-{port}"),
            host_port: port,
        }
    }

    fn upstream(ports: Vec<u16>) -> Step {
        Step::SetUpstream {
            ports,
            added: vec![],
            removed: vec![],
        }
    }

    #[test]
    fn batches_group_same_kind_steps_and_isolate_upstream_changes() {
        let steps = vec![
            create(1),
            create(2),
            wait(1),
            wait(2),
            upstream(vec![1, 2]),
            upstream(vec![2]),
            create(3),
        ];
        let sizes: Vec<usize> = batches(&steps).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1, 1, 1]);
        assert!(batches(&[]).is_empty());
    }
}
