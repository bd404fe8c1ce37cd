//! Observation: a policy's containers, their readiness, the host ports around them and its
//! metrics, turned into plain values the pure core plans and decides on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream;

use super::lb_signal;
use super::seams::Seams;
use crate::metrics::MetricsError;
use crate::metrics::aggregate::{ReplicaInput, ReplicaScrape, request_rate};
use crate::plan::ObservedReplica;
use crate::policy::{MetricSpec, ScalingPolicy};
use crate::runtime::{Replica, Runtime, RuntimeError};
use crate::scaling::{MetricInput, MetricReading};
use crate::state::CounterSample;

/// At most this many probes or scrapes of one pass run at once.
const CONCURRENCY: usize = 16;

/// What one observation of a policy found.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The policy's containers as the planner sees them.
    pub replicas: Vec<ObservedReplica>,
    /// Address of each observed replica by host port (its own host IP, not the policy's).
    pub addrs: BTreeMap<u16, SocketAddr>,
    /// Ports of the range the plan must not create on (other containers, other processes).
    pub unavailable_ports: Vec<u16>,
}

impl Observation {
    /// Containers whose process runs.
    pub fn running(&self) -> u32 {
        self.replicas.iter().filter(|r| r.running).count() as u32
    }

    /// Replicas that count for the decision: running, and ready or still within their
    /// readiness timeout.
    pub fn alive(&self, readiness_timeout_seconds: u64) -> Vec<&ObservedReplica> {
        self.replicas
            .iter()
            .filter(|r| r.running && (r.ready || r.age_seconds <= readiness_timeout_seconds))
            .collect()
    }
}

/// Lists a policy's containers (minus `hidden` ones, e.g. replicas draining in the
/// background) and probes the running ones. Hidden replicas' ports count as unavailable;
/// the rest of the range is only looked at when a plan wants to create ([`host_ports`]).
pub async fn replicas<R: Runtime>(
    runtime: &R,
    seams: &Seams,
    policy: &ScalingPolicy,
    hidden: &BTreeSet<String>,
    probe_timeout: Duration,
) -> Result<Observation, RuntimeError> {
    let mine = runtime.list_policy(&policy.metadata.name).await?;
    let path = policy.spec.template.readiness.http_get.path.as_str();
    let visible: Vec<Replica> = mine
        .iter()
        .filter(|r| !hidden.contains(&r.id))
        .cloned()
        .collect();
    let probes: Vec<BoxFuture<'_, bool>> = visible
        .iter()
        .map(|r| match replica_addr(&r.host_ip, r.host_port) {
            Some(addr) if r.running && r.host_port != 0 => {
                seams.probe.check(addr, path, probe_timeout)
            }
            _ => Box::pin(async { false }) as BoxFuture<'_, bool>,
        })
        .collect();
    let ready: Vec<bool> = stream::iter(probes).buffered(CONCURRENCY).collect().await;
    let now_ms = seams.clock.wall_ms();
    let mut obs = Observation::default();
    for (r, ready) in visible.iter().zip(ready) {
        if let Some(addr) = replica_addr(&r.host_ip, r.host_port) {
            obs.addrs.insert(r.host_port, addr);
        }
        obs.replicas.push(ObservedReplica {
            id: r.id.clone(),
            name: r.name.clone(),
            host_port: r.host_port,
            template_hash: r.template_hash.clone(),
            // A replica whose port cannot be read is unroutable: replace it.
            running: r.running && r.host_port != 0,
            ready,
            age_seconds: age_seconds(r, now_ms),
        });
    }
    obs.unavailable_ports = mine
        .iter()
        .filter(|r| hidden.contains(&r.id))
        .map(|r| r.host_port)
        .collect();
    Ok(obs)
}

/// Adds to `obs` every port of the policy's range that a create may not use: held by
/// other containers of this operator (a renamed policy's, say) or not bindable now. Found
/// in order until enough usable ones are known for the largest plan (max replicas plus the
/// update's surge). Lists every owned container, so a pass calls it only to create.
pub async fn host_ports<R: Runtime>(
    runtime: &R,
    seams: &Seams,
    policy: &ScalingPolicy,
    obs: &mut Observation,
) -> Result<(), RuntimeError> {
    let others = runtime.list().await?;
    let mut used: BTreeSet<u16> = obs.unavailable_ports.iter().copied().collect();
    used.extend(
        others
            .iter()
            .filter(|r| r.policy != policy.metadata.name)
            .map(|r| r.host_port),
    );
    obs.unavailable_ports = unavailable_ports(seams, policy, &used, &obs.replicas);
    Ok(())
}

/// See [`host_ports`].
fn unavailable_ports(
    seams: &Seams,
    policy: &ScalingPolicy,
    used: &BTreeSet<u16>,
    own: &[ObservedReplica],
) -> Vec<u16> {
    let (first, last) = policy.parsed.port_range;
    let ip = policy.parsed.host_ip;
    let own_ports: BTreeSet<u16> = own.iter().map(|r| r.host_port).collect();
    let wanted = policy.spec.replicas.max as usize + 1;
    let mut usable = 0;
    let mut out = Vec::new();
    for port in first.max(1)..=last {
        if usable >= wanted {
            break;
        }
        if own_ports.contains(&port) {
            continue;
        }
        if used.contains(&port) || !seams.ports.is_free(SocketAddr::new(ip, port)) {
            out.push(port);
        } else {
            usable += 1;
        }
    }
    out
}

/// What reading the policy's metrics produced.
#[derive(Debug, Default)]
pub struct MetricsObservation {
    /// One input per metric of the policy, in its order.
    pub inputs: Vec<MetricInput>,
    /// Counter samples to remember for the next rate.
    pub samples: BTreeMap<String, CounterSample>,
    /// Data that was dropped, in words (non-finite values, ...), for warning events.
    pub warnings: Vec<String>,
}

/// Reads every metric of the policy from the replicas in `alive` (only ready ones are
/// scraped), the Prometheus servers it names and the load balancer's signal. `previous`
/// holds, per counter series, the sample its rate is taken from (about a stable window
/// old: see [`crate::scaling::windows::SampleWindows`]); `counted` is the burst request
/// rate from the policy's announced request counts, when fresh.
pub async fn metrics(
    seams: &Seams,
    policy: &ScalingPolicy,
    alive: &[&ObservedReplica],
    addrs: &BTreeMap<u16, SocketAddr>,
    previous: &BTreeMap<String, CounterSample>,
    counted: Option<Option<f64>>,
) -> MetricsObservation {
    let now_ms = seams.clock.now_ms();
    let mut out = MetricsObservation::default();
    for spec in &policy.spec.metrics {
        let reading = match spec {
            MetricSpec::RequestRate(m) => {
                let scrapes = scrape_all(seams, alive, addrs, &m.path, &m.counter).await;
                let inputs: Vec<ReplicaInput> = alive
                    .iter()
                    .zip(scrapes)
                    .map(|(r, scrape)| ReplicaInput {
                        replica_id: &r.id,
                        scrape,
                    })
                    .collect();
                let outcome = request_rate(&m.path, &m.counter, &inputs, previous, now_ms);
                out.samples.extend(outcome.samples);
                out.warnings.extend(outcome.warnings);
                (outcome.reading, None)
            }
            MetricSpec::Prometheus(m) => match seams.metrics.query(m).await {
                Ok(total) => (MetricReading::Total(total), None),
                Err(e) => {
                    tracing::warn!(policy = %policy.metadata.name, error = %e, "prometheus query failed");
                    (MetricReading::Unavailable(e.to_string()), None)
                }
            },
            MetricSpec::LoadBalancer(m) => {
                let signal = seams.signal.as_ref();
                (
                    lb_signal::stable_reading(signal, policy, m.signal),
                    lb_signal::burst_reading(signal, policy, m.signal, counted),
                )
            }
        };
        let (reading, burst) = reading;
        out.inputs.push(MetricInput {
            name: spec.display_name(),
            target_per_replica: spec.target_per_replica(),
            reading,
            burst,
        });
    }
    out
}

/// Scrapes counter `family` from every ready replica of `alive`, at most
/// [`CONCURRENCY`] at a time; unready ones are skipped.
pub async fn scrape_all(
    seams: &Seams,
    alive: &[&ObservedReplica],
    addrs: &BTreeMap<u16, SocketAddr>,
    path: &str,
    family: &str,
) -> Vec<ReplicaScrape> {
    let scrapes: Vec<BoxFuture<'_, ReplicaScrape>> = alive
        .iter()
        .map(|r| match addrs.get(&r.host_port) {
            Some(addr) if r.ready => Box::pin(scrape_one(seams, *addr, path, family)),
            _ => Box::pin(async { ReplicaScrape::Skipped }) as BoxFuture<'_, ReplicaScrape>,
        })
        .collect();
    stream::iter(scrapes).buffered(CONCURRENCY).collect().await
}

/// One replica's scrape as the aggregation rules see it.
pub async fn scrape_one(
    seams: &Seams,
    addr: SocketAddr,
    path: &str,
    family: &str,
) -> ReplicaScrape {
    match seams.metrics.series(addr, path, family).await {
        Ok(series) => ReplicaScrape::Series(series),
        Err(MetricsError::MissingFamily { .. }) => ReplicaScrape::MissingFamily,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "scrape failed");
            ReplicaScrape::Failed(e.to_string())
        }
    }
}

/// The address a replica the runtime reported is reached on (see [`route_addr`]); None
/// when the engine's host IP label is not an address.
pub fn replica_addr(host_ip: &str, port: u16) -> Option<SocketAddr> {
    Some(route_addr(host_ip.parse().ok()?, port))
}

/// The address a replica published on `ip:port` is reached on: loopback for 0.0.0.0.
pub fn route_addr(ip: IpAddr, port: u16) -> SocketAddr {
    let ip = if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    SocketAddr::new(ip, port)
}

fn age_seconds(r: &Replica, now_ms: u64) -> u64 {
    let created_ms = u64::try_from(r.created_unix)
        .unwrap_or(0)
        .saturating_mul(1000);
    now_ms.saturating_sub(created_ms) / 1000
}
