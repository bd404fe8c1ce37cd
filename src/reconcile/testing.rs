//! In-process fakes of every boundary of a pass, sharing one [`World`] so they agree with
//! each other: a container the fake runtime starts is what the fake probe finds ready and
//! what the fake ports see as taken. Every call is recorded for assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};

use super::seams::{Clock, HostPorts, LoadSignal, MetricSource, Probe, Seams};
use crate::lb::{ApplyOutcome, LbError, LoadBalancer};
use crate::metrics::{MetricsError, SeriesValue};
use crate::nginx::{self, Upstream};
use crate::runtime::probe::ProbeError;
use crate::runtime::{Replica, ReplicaSpec, Runtime, RuntimeError, RuntimeEvent};

/// One call a fake saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `create` of a container name on a port.
    Create(String, u16),
    /// `stop` of a container id.
    Stop(String),
    /// `remove` of a container id.
    Remove(String),
    /// `apply` of an upstream set: policy → its sorted server addresses.
    Apply(BTreeMap<String, Vec<SocketAddr>>),
}

/// What a fake container is.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    /// As the runtime lists it.
    pub replica: Replica,
    /// Whether its readiness probe answers 2xx.
    pub healthy: bool,
    /// Counter value it exposes (`None`: no such family).
    pub counter: Option<f64>,
}

/// The shared world of the fakes.
#[derive(Debug, Default)]
pub struct World {
    /// Containers by id.
    pub containers: BTreeMap<String, FakeContainer>,
    /// Host ports held by processes outside the engine.
    pub foreign_ports: BTreeSet<u16>,
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// Names of containers outside this operator (other instances, strangers): a create
    /// with one of these names conflicts, as Docker's does.
    pub foreign_names: BTreeSet<String>,
    /// Creates of these images fail (image missing).
    pub missing_images: BTreeSet<String>,
    /// The next creates fail with a conflict (count).
    pub fail_creates: u32,
    /// `list` fails (engine down).
    pub engine_down: bool,
    /// Applies that include these listen ports fail (nginx cannot bind them).
    pub unbindable_listens: BTreeSet<u16>,
    /// The config text nginx has.
    pub nginx_config: Option<String>,
    /// Counter value new containers start with.
    pub initial_counter: f64,
    /// Containers created start unhealthy (never ready).
    pub start_unhealthy: bool,
    /// Prometheus query answers by query text.
    pub queries: BTreeMap<String, f64>,
    /// Series served instead of the single counter, by port.
    pub series: BTreeMap<u16, Vec<SeriesValue>>,
    /// In-flight gauge by port (drains wait for 0); absent means 0.
    pub in_flight: BTreeMap<u16, f64>,
    /// Simulated crash: from this many changes on (create, stop, remove, apply), every
    /// change fails and nothing happens, as if the operator died at that point.
    pub crash_at: Option<usize>,
    /// Changes made so far (counted for `crash_at`).
    pub changes: usize,
    /// Ports another process takes after this many more free-checks of them (a race
    /// between planning and execution).
    pub taken_after_checks: BTreeMap<u16, u32>,
    /// Requests nginx reported per policy (the load-balancer signal), oldest first.
    pub lb_requests: BTreeMap<String, Vec<FakeRequest>>,
    /// Fractions of a request `lb_load` still owes per policy (rates stay exact across calls).
    pub lb_owed: BTreeMap<String, f64>,
    /// Per policy: when requests were last announced, and how many wait to be (the hub
    /// announces at most every 100 ms).
    pub lb_announce: BTreeMap<String, (Option<u64>, u64)>,
    next_id: u64,
}

/// One request as nginx reports it to the fake signal.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRequest {
    /// When it finished (the fake clock's `now_ms`).
    pub at_ms: u64,
    /// How long it took, milliseconds.
    pub duration_ms: u64,
    /// The replica's host port; `None` when nginx answered itself (no replica routable).
    pub replica: Option<u16>,
    /// HTTP status.
    pub status: u16,
}

/// A handle on the shared world.
#[derive(Debug, Clone, Default)]
pub struct Fakes {
    world: Arc<Mutex<World>>,
    clock: Arc<FakeClock>,
    activity: Arc<Mutex<BTreeMap<String, tokio::sync::watch::Sender<u64>>>>,
}

impl World {
    /// Counts one change; false when the simulated crash refuses it.
    fn change(&mut self) -> bool {
        if self.crash_at.is_some_and(|k| self.changes >= k) {
            return false;
        }
        self.changes += 1;
        true
    }
}

impl Fakes {
    /// A fresh world.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the world for inspection or change.
    pub fn world(&self) -> MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The fake runtime.
    pub fn runtime(&self, instance: &str) -> FakeRuntime {
        FakeRuntime {
            world: self.world.clone(),
            instance: instance.to_owned(),
            clock: self.clock.clone(),
        }
    }

    /// The fake load balancer.
    pub fn lb(&self) -> FakeLb {
        FakeLb {
            world: self.world.clone(),
        }
    }

    /// The fake clock.
    pub fn clock(&self) -> Arc<FakeClock> {
        self.clock.clone()
    }

    /// An operator of `instance` over this world, its state in `state_dir`.
    pub fn operator(
        &self,
        instance: &str,
        state_dir: &std::path::Path,
    ) -> super::Operator<FakeRuntime, FakeLb> {
        let settings = super::OperatorSettings {
            instance: instance.to_owned(),
            ..super::OperatorSettings::default()
        };
        super::Operator::with_seams(
            self.runtime(instance),
            self.lb(),
            crate::state::StateDir::new(state_dir),
            settings,
            self.seams(),
        )
        .expect("operator")
    }

    /// Seams over this world.
    pub fn seams(&self) -> Seams {
        Seams {
            metrics: Arc::new(FakeMetrics {
                world: self.world.clone(),
            }),
            probe: Arc::new(FakeProbe {
                world: self.world.clone(),
            }),
            ports: Arc::new(FakePorts {
                world: self.world.clone(),
            }),
            signal: Arc::new(self.signal()),
            clock: self.clock.clone(),
        }
    }

    /// The fake load-balancer signal over this world.
    pub fn signal(&self) -> FakeSignal {
        FakeSignal {
            world: self.world.clone(),
            clock: self.clock.clone(),
            activity: self.activity.clone(),
        }
    }

    /// nginx reports `n` requests of `policy` finishing now, spread round-robin over the
    /// servers its upstream has (503s answered by nginx itself when it has none).
    pub fn lb_requests(&self, policy: &str, n: u64, duration_ms: u64) {
        let servers = self.upstream_ports(policy).unwrap_or_default();
        let at_ms = self.clock.now_ms();
        {
            let mut w = self.world();
            let list = w.lb_requests.entry(policy.to_owned()).or_default();
            for i in 0..n {
                let replica = (!servers.is_empty())
                    .then(|| servers[usize::try_from(i).unwrap_or(0) % servers.len()]);
                list.push(FakeRequest {
                    at_ms,
                    duration_ms,
                    replica,
                    status: if replica.is_some() { 200 } else { 503 },
                });
            }
        }
        let due = {
            let mut w = self.world();
            let (last, pending) = w.lb_announce.entry(policy.to_owned()).or_default();
            *pending += n;
            let due = last.is_none_or(|t| at_ms.saturating_sub(t) >= ANNOUNCE_MS);
            if due {
                *last = Some(at_ms);
            }
            due.then(|| std::mem::take(pending))
        };
        if let Some(n) = due {
            self.signal().bump(policy, n);
        }
    }

    /// Announces requests still waiting (the hub's timer does this for the last ones).
    pub fn lb_flush(&self, policy: &str) {
        let at_ms = self.clock.now_ms();
        let n = {
            let mut w = self.world();
            let (last, pending) = w.lb_announce.entry(policy.to_owned()).or_default();
            *last = Some(at_ms);
            std::mem::take(pending)
        };
        if n > 0 {
            self.signal().bump(policy, n);
        }
    }

    /// `rate` requests per second of `policy` for `ms` milliseconds of paused time, in
    /// 10 ms steps, each request taking `duration_ms`.
    pub async fn lb_load(&self, policy: &str, rate: f64, ms: u64, duration_ms: u64) {
        for _ in 0..ms / 10 {
            tokio::time::advance(Duration::from_millis(10)).await;
            let whole = {
                let mut w = self.world();
                let owed = w.lb_owed.entry(policy.to_owned()).or_default();
                *owed += rate / 100.0;
                let whole = (*owed + 1e-9).floor();
                *owed -= whole;
                whole
            };
            if whole >= 1.0 {
                self.lb_requests(policy, whole as u64, duration_ms);
            }
        }
        self.lb_flush(policy);
    }

    /// Calls recorded so far, then forgets them.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.world().calls)
    }

    /// Running containers of a policy, as (name, port, template hash), sorted.
    pub fn running(&self, policy: &str) -> Vec<(String, u16, String)> {
        let mut out: Vec<_> = self
            .world()
            .containers
            .values()
            .filter(|c| c.replica.policy == policy && c.replica.running)
            .map(|c| {
                (
                    c.replica.name.clone(),
                    c.replica.host_port,
                    c.replica.template_hash.clone(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Every container id of a policy, running or not.
    pub fn ids(&self, policy: &str) -> Vec<String> {
        self.world()
            .containers
            .values()
            .filter(|c| c.replica.policy == policy)
            .map(|c| c.replica.id.clone())
            .collect()
    }

    /// The servers nginx has for a policy (ports), as the live config says.
    pub fn upstream_ports(&self, policy: &str) -> Option<Vec<u16>> {
        let config = self.world().nginx_config.clone()?;
        nginx::parse_upstreams(&config)
            .get(policy)
            .map(|s| s.iter().map(SocketAddr::port).collect())
    }

    /// Sets the counter every container of `policy` exposes to `value`.
    pub fn set_counter(&self, policy: &str, value: f64) {
        for c in self.world().containers.values_mut() {
            if c.replica.policy == policy {
                c.counter = Some(value);
            }
        }
    }

    /// Adds `delta` to the counter of every running container of `policy`.
    pub fn add_requests(&self, policy: &str, delta: f64) {
        for c in self.world().containers.values_mut() {
            if c.replica.policy == policy && c.replica.running {
                c.counter = Some(c.counter.unwrap_or(0.0) + delta);
            }
        }
    }

    /// Kills the container on `port` from outside (it stays listed, not running).
    pub fn kill_port(&self, port: u16) {
        for c in self.world().containers.values_mut() {
            if c.replica.host_port == port {
                c.replica.running = false;
            }
        }
    }

    /// A Swarm node that held the replicas on `ports` leaves (down or drained): they stay
    /// listed, as their services do, but their tasks no longer run and answer nothing.
    pub fn lose_node(&self, ports: &[u16]) {
        for c in self.world().containers.values_mut() {
            if ports.contains(&c.replica.host_port) {
                c.replica.running = false;
                c.healthy = false;
            }
        }
    }

    /// Adds a container of this instance for `policy` directly (as a previous run left it).
    pub fn adopt(&self, instance: &str, policy: &str, port: u16, hash: &str) -> String {
        let created = i64::try_from(self.clock.wall_ms() / 1000).unwrap_or(0);
        let mut w = self.world();
        w.next_id += 1;
        let id = format!("c{:04}", w.next_id);
        let counter = Some(w.initial_counter);
        w.containers.insert(
            id.clone(),
            FakeContainer {
                replica: Replica {
                    id: id.clone(),
                    name: crate::plan::replica_name(policy, port, instance),
                    policy: policy.to_owned(),
                    template_hash: hash.to_owned(),
                    host_ip: "127.0.0.1".to_owned(),
                    host_port: port,
                    running: true,
                    created_unix: created,
                },
                healthy: true,
                counter,
            },
        );
        id
    }
}

/// A runtime over the fake world.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    world: Arc<Mutex<World>>,
    instance: String,
    clock: Arc<FakeClock>,
}

impl FakeRuntime {
    fn world(&self) -> MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn engine_error(what: &str) -> bollard::errors::Error {
    bollard::errors::Error::IOError {
        err: std::io::Error::other(what.to_owned()),
    }
}

impl Runtime for FakeRuntime {
    async fn list(&self) -> Result<Vec<Replica>, RuntimeError> {
        let w = self.world();
        if w.engine_down {
            return Err(RuntimeError::List {
                instance: self.instance.clone(),
                source: engine_error("engine down"),
            });
        }
        Ok(w.containers.values().map(|c| c.replica.clone()).collect())
    }

    async fn create(&self, spec: &ReplicaSpec) -> Result<Replica, RuntimeError> {
        let mut w = self.world();
        w.calls
            .push(Call::Create(spec.name.clone(), spec.host_port));
        if w.engine_down || !w.change() {
            return Err(RuntimeError::Create {
                name: spec.name.clone(),
                source: engine_error("engine down"),
            });
        }
        if w.missing_images.contains(&spec.image) {
            return Err(RuntimeError::ImageMissing {
                name: spec.name.clone(),
                image: spec.image.clone(),
                source: engine_error("no such image"),
            });
        }
        let clash = w.foreign_names.contains(&spec.name)
            || w.containers.values().any(|c| {
                c.replica.name == spec.name
                    || (c.replica.host_port == spec.host_port && c.replica.running)
            });
        if w.fail_creates > 0 || clash || w.foreign_ports.contains(&spec.host_port) {
            w.fail_creates = w.fail_creates.saturating_sub(1);
            return Err(RuntimeError::Create {
                name: spec.name.clone(),
                source: engine_error("conflict: name or port in use"),
            });
        }
        w.next_id += 1;
        let id = format!("c{:04}", w.next_id);
        let replica = Replica {
            id: id.clone(),
            name: spec.name.clone(),
            policy: spec.policy.clone(),
            template_hash: spec.template_hash.clone(),
            host_ip: spec.host_ip.clone(),
            host_port: spec.host_port,
            running: true,
            created_unix: i64::try_from(self.clock.wall_ms() / 1000).unwrap_or(0),
        };
        let healthy = !w.start_unhealthy;
        let counter = Some(w.initial_counter);
        w.containers.insert(
            id,
            FakeContainer {
                replica: replica.clone(),
                healthy,
                counter,
            },
        );
        Ok(replica)
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(Call::Stop(id.to_owned()));
        if !w.change() {
            return Err(RuntimeError::Stop {
                id: id.to_owned(),
                source: engine_error("crashed"),
            });
        }
        if let Some(c) = w.containers.get_mut(id) {
            c.replica.running = false;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let mut w = self.world();
        w.calls.push(Call::Remove(id.to_owned()));
        if !w.change() {
            return Err(RuntimeError::Remove {
                id: id.to_owned(),
                source: engine_error("crashed"),
            });
        }
        w.containers.remove(id);
        Ok(())
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        Box::pin(stream::iter(vec![Ok(RuntimeEvent::Resync)]).chain(stream::pending()))
    }
}

use futures::StreamExt;

/// A load balancer that keeps its config in the fake world.
#[derive(Debug, Clone)]
pub struct FakeLb {
    world: Arc<Mutex<World>>,
}

impl FakeLb {
    fn world(&self) -> MutexGuard<'_, World> {
        match self.world.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl LoadBalancer for FakeLb {
    fn render(&self, upstreams: &[Upstream]) -> Result<String, LbError> {
        Ok(nginx::render_snippet(upstreams)?)
    }

    async fn current(&self) -> Result<Option<String>, LbError> {
        Ok(self.world().nginx_config.clone())
    }

    async fn apply(&self, upstreams: &[Upstream]) -> Result<ApplyOutcome, LbError> {
        let text = self.render(upstreams)?;
        let mut w = self.world();
        let set = upstreams
            .iter()
            .map(|u| {
                let mut servers = u.servers.clone();
                servers.sort_unstable();
                (u.policy.clone(), servers)
            })
            .collect();
        w.calls.push(Call::Apply(set));
        if let Some(bad) = upstreams
            .iter()
            .find(|u| w.unbindable_listens.contains(&u.listen.port()))
        {
            return Err(LbError::Validate {
                path: "fake.conf".into(),
                output: format!(
                    "bind() to {} failed (98: Address already in use)",
                    bad.listen
                ),
            });
        }
        if w.nginx_config.as_deref() == Some(text.as_str()) {
            return Ok(ApplyOutcome::Unchanged);
        }
        if !w.change() {
            return Err(LbError::Validate {
                path: "fake.conf".into(),
                output: "crashed".to_owned(),
            });
        }
        w.nginx_config = Some(text);
        Ok(ApplyOutcome::Reloaded)
    }

    async fn ensure_running(&self) -> Result<(), LbError> {
        Ok(())
    }

    async fn stop(&self) -> Result<(), LbError> {
        Ok(())
    }
}

/// Scrapes that read the fake containers' counters.
struct FakeMetrics {
    world: Arc<Mutex<World>>,
}

impl FakeMetrics {
    fn container_on(&self, port: u16) -> Option<FakeContainer> {
        let w = self.world.lock().ok()?;
        w.containers
            .values()
            .find(|c| c.replica.host_port == port && c.replica.running)
            .cloned()
    }
}

impl MetricSource for FakeMetrics {
    fn series<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        family: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SeriesValue>, MetricsError>> {
        Box::pin(async move {
            let url = format!("http://{addr}{path}");
            if let Some(series) = self
                .world
                .lock()
                .ok()
                .and_then(|w| w.series.get(&addr.port()).cloned())
            {
                return Ok(series);
            }
            match self.container_on(addr.port()) {
                None => Err(MetricsError::Status { url, status: 502 }),
                Some(c) => match c.counter {
                    Some(value) => Ok(vec![SeriesValue {
                        labels: String::new(),
                        value,
                    }]),
                    None => Err(MetricsError::MissingFamily {
                        url,
                        family: family.to_owned(),
                    }),
                },
            }
        })
    }

    fn gauge<'a>(
        &'a self,
        addr: SocketAddr,
        _path: &'a str,
        _family: &'a str,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(async move {
            let w = self.world.lock().ok();
            Ok(w.and_then(|w| w.in_flight.get(&addr.port()).copied())
                .unwrap_or(0.0))
        })
    }

    fn query<'a>(
        &'a self,
        source: &'a crate::policy::PrometheusMetric,
    ) -> BoxFuture<'a, Result<f64, MetricsError>> {
        Box::pin(async move {
            let value = self
                .world
                .lock()
                .ok()
                .and_then(|w| w.queries.get(&source.query).copied());
            value.ok_or_else(|| MetricsError::Query {
                url: source.url.clone(),
                query: source.query.clone(),
                message: "no such series".to_owned(),
            })
        })
    }
}

/// A probe that finds a running, healthy container on the port ready.
struct FakeProbe {
    world: Arc<Mutex<World>>,
}

impl FakeProbe {
    fn ready(&self, port: u16) -> bool {
        self.world.lock().is_ok_and(|w| {
            w.containers
                .values()
                .any(|c| c.replica.host_port == port && c.replica.running && c.healthy)
        })
    }
}

impl Probe for FakeProbe {
    fn check<'a>(
        &'a self,
        addr: SocketAddr,
        _path: &'a str,
        _timeout: Duration,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move { self.ready(addr.port()) })
    }

    fn wait_ready<'a>(
        &'a self,
        addr: SocketAddr,
        path: &'a str,
        period: Duration,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), ProbeError>> {
        Box::pin(async move {
            let start = tokio::time::Instant::now();
            let mut attempts = 0;
            loop {
                attempts += 1;
                if self.ready(addr.port()) {
                    return Ok(());
                }
                if start.elapsed() >= timeout {
                    return Err(ProbeError::NotReady {
                        addr,
                        path: path.to_owned(),
                        waited: start.elapsed(),
                        attempts,
                        last: "status 503".to_owned(),
                    });
                }
                tokio::time::sleep(period).await;
            }
        })
    }
}

/// Host ports: taken by foreign processes or by a running container.
struct FakePorts {
    world: Arc<Mutex<World>>,
}

impl HostPorts for FakePorts {
    fn is_free(&self, addr: SocketAddr) -> bool {
        self.world.lock().is_ok_and(|mut w| {
            let port = addr.port();
            if let Some(left) = w.taken_after_checks.get_mut(&port) {
                if *left == 0 {
                    w.taken_after_checks.remove(&port);
                    w.foreign_ports.insert(port);
                } else {
                    *left -= 1;
                }
            }
            !w.foreign_ports.contains(&port)
                && !w
                    .containers
                    .values()
                    .any(|c| c.replica.host_port == port && c.replica.running)
        })
    }
}

/// A clock whose monotonic part follows tokio's (paused) clock and whose wall part can
/// jump on request.
#[derive(Debug)]
pub struct FakeClock {
    start: tokio::time::Instant,
    wall_offset_ms: Mutex<i64>,
}

/// The hub announces new requests of a policy at most this often.
const ANNOUNCE_MS: u64 = 100;

/// The load-balancer signal over the fake world's reported requests.
#[derive(Debug, Clone)]
pub struct FakeSignal {
    world: Arc<Mutex<World>>,
    clock: Arc<FakeClock>,
    activity: Arc<Mutex<BTreeMap<String, tokio::sync::watch::Sender<u64>>>>,
}

impl FakeSignal {
    fn sender(&self, policy: &str) -> tokio::sync::watch::Sender<u64> {
        let mut all = match self.activity.lock() {
            Ok(a) => a,
            Err(poisoned) => poisoned.into_inner(),
        };
        all.entry(policy.to_owned())
            .or_insert_with(|| tokio::sync::watch::channel(0).0)
            .clone()
    }

    /// Announces `n` more requests (the watch value is the running count, as the hub's).
    fn bump(&self, policy: &str, n: u64) {
        self.sender(policy).send_modify(|count| *count += n);
    }
}

impl LoadSignal for FakeSignal {
    fn snapshot(&self, policy: &str, window: Duration) -> Option<crate::signal::SignalSnapshot> {
        use crate::signal::SignalSnapshot;
        let w = match self.world.lock() {
            Ok(w) => w,
            Err(poisoned) => poisoned.into_inner(),
        };
        let all = w.lb_requests.get(policy)?;
        let now = self.clock.now_ms();
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        // As the hub: whole 100 ms buckets, from the one `window` ago up to the current
        // (partial) one, divided by `window`.
        let bucket = crate::signal::window::BUCKET_MS;
        let from = now.saturating_sub(window_ms) / bucket * bucket;
        let secs = window_ms as f64 / 1000.0;
        let inside: Vec<&FakeRequest> = all
            .iter()
            .filter(|r| r.at_ms >= from && r.at_ms <= now)
            .collect();
        let mut snap = SignalSnapshot {
            window,
            requests: inside.len() as u64,
            rate: inside.len() as f64 / secs,
            ..SignalSnapshot::default()
        };
        let mut durations: Vec<u64> = Vec::new();
        for r in &inside {
            let busy = r.duration_ms.min(window_ms) as f64 / 1000.0 / secs;
            snap.concurrency += busy;
            durations.push(r.duration_ms);
            if r.status >= 500 {
                snap.errors_5xx_rate += 1.0 / secs;
            }
            match r.replica {
                Some(port) => {
                    let e = snap
                        .per_replica
                        .entry(format!("127.0.0.1:{port}"))
                        .or_default();
                    e.rate += 1.0 / secs;
                    e.concurrency += busy;
                }
                None => snap.unrouted_rate += 1.0 / secs,
            }
        }
        durations.sort_unstable();
        let at = |q: f64| {
            let i = ((durations.len() as f64 - 1.0) * q).round() as usize;
            durations.get(i).map(|d| *d as f64)
        };
        snap.p50_ms = at(0.5);
        snap.p99_ms = at(0.99);
        Some(snap)
    }

    fn activity(&self, policy: &str) -> tokio::sync::watch::Receiver<u64> {
        self.sender(policy).subscribe()
    }
}

/// Wall time the fake clock starts at: 2026-12-01T00:00:00Z.
pub const FAKE_EPOCH_MS: u64 = 1_796_083_200_000;

impl Default for FakeClock {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            wall_offset_ms: Mutex::new(0),
        }
    }
}

impl FakeClock {
    /// Moves the wall clock by `delta_ms` (negative: backwards); the monotonic part stays.
    pub fn jump_wall(&self, delta_ms: i64) {
        if let Ok(mut offset) = self.wall_offset_ms.lock() {
            *offset += delta_ms;
        }
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        FAKE_EPOCH_MS + self.elapsed_ms()
    }

    fn wall_ms(&self) -> u64 {
        let offset = self.wall_offset_ms.lock().map(|o| *o).unwrap_or(0);
        (FAKE_EPOCH_MS + self.elapsed_ms()).saturating_add_signed(offset)
    }
}
