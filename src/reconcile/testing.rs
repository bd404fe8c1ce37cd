//! In-process fakes of every boundary of a pass, sharing one [`World`] so they agree with
//! each other: a container the fake runtime starts is what the fake probe finds ready and
//! what the fake ports see as taken. Every call is recorded for assertions.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};

use super::seams::{Clock, HostPorts, MetricSource, Probe, Seams};
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
    next_id: u64,
}

/// A handle on the shared world.
#[derive(Debug, Clone, Default)]
pub struct Fakes {
    world: Arc<Mutex<World>>,
    clock: Arc<FakeClock>,
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
            clock: self.clock.clone(),
        }
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
