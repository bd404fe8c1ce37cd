//! Execution of a plan: its steps in order, same-kind steps concurrently, stopping at the
//! first failed batch. Retiring a replica (drain, stop, remove) is handed to
//! [`super::retire`], which runs it in the background.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::ReconcileError;
use super::events::EventLog;
use super::observe::{self, route_addr};
pub use super::retire::Retirements;
use super::retire::{is_backgrounded, retiring_ids, start_retirement};
use super::seams::Seams;
use super::upstreams::UpstreamTable;
use crate::lb::LoadBalancer;
use crate::plan::{self, Step};
use crate::policy::{MetricSpec, ScalingPolicy};
use crate::runtime::{self, ReplicaSpec, Runtime};
use crate::state::CounterSample;

/// What the executor needs to know about the policy whose plan it runs.
pub struct ExecContext {
    /// Policy name.
    pub policy: String,
    /// The policy, or None when it is being removed (no creations then).
    pub spec: Option<ScalingPolicy>,
    /// Grace for drains and stops.
    pub drain_timeout: Duration,
    /// Path of the exposition holding the in-flight gauge.
    pub metrics_path: String,
    /// Address of every replica by host port, as observed (creations add theirs).
    pub addrs: BTreeMap<u16, SocketAddr>,
    /// Cancelled to stop between steps (shutdown, or a removed policy coming back).
    pub cancel: CancellationToken,
}

impl ExecContext {
    /// The context of an ordinary pass of `policy`.
    pub fn for_policy(
        policy: &ScalingPolicy,
        addrs: BTreeMap<u16, SocketAddr>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            policy: policy.metadata.name.clone(),
            drain_timeout: Duration::from_secs(policy.spec.drain.timeout_seconds),
            metrics_path: metrics_path(policy),
            spec: Some(policy.clone()),
            addrs,
            cancel,
        }
    }
}

/// The exposition path of the policy's first request-rate metric (where the in-flight
/// gauge lives), else `/metrics`.
fn metrics_path(policy: &ScalingPolicy) -> String {
    policy
        .spec
        .metrics
        .iter()
        .find_map(|m| match m {
            MetricSpec::RequestRate(r) => Some(r.path.clone()),
            MetricSpec::Prometheus(_) | MetricSpec::LoadBalancer(_) => None,
        })
        .unwrap_or_else(|| "/metrics".to_owned())
}

/// What executing a plan did.
#[derive(Debug, Default)]
pub struct Execution {
    /// Steps that completed (or, for retirements, were handed to the background).
    pub done: Vec<Step>,
    /// The first failed step and its error.
    pub error: Option<(Step, ReconcileError)>,
    /// Counter samples of replicas that just became ready.
    pub baselines: Vec<(String, CounterSample)>,
    /// Whether the executor stopped early because it was cancelled.
    pub cancelled: bool,
}

/// The hands the executor works with.
pub struct Hands<'a, R, L> {
    /// Containers.
    pub runtime: &'a Arc<R>,
    /// nginx.
    pub lb: &'a L,
    /// The shared upstream table.
    pub table: &'a UpstreamTable,
    /// Probes, scrapes, ports, clock.
    pub seams: &'a Seams,
    /// Where events go.
    pub events: &'a Arc<EventLog>,
    /// Background retirements.
    pub retirements: &'a Retirements,
}

/// Runs `steps` in order; see the module docs.
pub async fn run<R, L>(hands: &Hands<'_, R, L>, ctx: &mut ExecContext, steps: &[Step]) -> Execution
where
    R: Runtime + 'static,
    L: LoadBalancer,
{
    let mut out = Execution::default();
    let retiring = &retiring_ids(steps);
    for batch in batches(steps) {
        if ctx.cancel.is_cancelled() {
            tracing::info!(policy = %ctx.policy, "stopping between steps; the next pass resumes");
            out.cancelled = true;
            break;
        }
        let ctx_ref = &*ctx;
        let results = join_all(batch.iter().map(|step| async move {
            if is_backgrounded(step, retiring) {
                return Ok(StepOutcome::default());
            }
            crate::fault::point("before", step);
            let result = if let Step::Drain { .. } = step {
                start_retirement(hands, ctx_ref, step, steps)
            } else {
                execute_step(hands, ctx_ref, step).await
            };
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
                    out.done.push(step.clone());
                    out.baselines.extend(outcome.baselines);
                    if let Some((port, addr)) = outcome.created {
                        ctx.addrs.insert(port, addr);
                    }
                }
                Err(e) => {
                    tracing::error!(policy = %ctx.policy, error = %e, "step failed: {step}");
                    hands
                        .events
                        .record(&ctx.policy, "StepFailed", format!("{step}: {e}"));
                    if out.error.is_none() {
                        out.error = Some((step.clone(), e));
                    }
                }
            }
        }
        if out.error.is_some() {
            break;
        }
    }
    out
}

/// What one executed step leaves behind.
#[derive(Debug, Default)]
pub(super) struct StepOutcome {
    /// A created replica: its port and address.
    created: Option<(u16, SocketAddr)>,
    /// A replica that just became ready: its counter samples.
    baselines: Vec<(String, CounterSample)>,
}

async fn execute_step<R, L>(
    hands: &Hands<'_, R, L>,
    ctx: &ExecContext,
    step: &Step,
) -> Result<StepOutcome, ReconcileError>
where
    R: Runtime + 'static,
    L: LoadBalancer,
{
    match step {
        Step::Create { name, host_port } => create(hands, ctx, name, *host_port).await,
        Step::WaitReady { name, host_port } => wait_ready(hands, ctx, name, *host_port).await,
        Step::SetUpstream { ports, .. } => {
            let servers = ports.iter().filter_map(|p| address_of(ctx, *p)).collect();
            hands
                .table
                .set_servers(hands.lb, &ctx.policy, servers)
                .await?;
            hands.events.record(
                &ctx.policy,
                "UpstreamChanged",
                format!("upstream of {} now {}", ctx.policy, step_ports(step)),
            );
            Ok(StepOutcome::default())
        }
        Step::Drain { .. } => Ok(StepOutcome::default()),
        Step::Stop { id, .. } => {
            hands.runtime.stop(id, ctx.drain_timeout).await?;
            Ok(StepOutcome::default())
        }
        Step::Remove { id, name, reason } => {
            hands.runtime.remove(id).await?;
            hands.events.record(
                &ctx.policy,
                "ReplicaRemoved",
                format!("{name} removed ({reason})"),
            );
            Ok(StepOutcome::default())
        }
    }
}

async fn create<R: Runtime, L>(
    hands: &Hands<'_, R, L>,
    ctx: &ExecContext,
    name: &str,
    port: u16,
) -> Result<StepOutcome, ReconcileError> {
    let Some(policy) = &ctx.spec else {
        return Ok(StepOutcome::default());
    };
    let addr = route_addr(policy.parsed.host_ip, port);
    if !hands
        .seams
        .ports
        .is_free(SocketAddr::new(policy.parsed.host_ip, port))
    {
        return Err(ReconcileError::PortTaken {
            policy: ctx.policy.clone(),
            port,
        });
    }
    let replica = hands
        .runtime
        .create(&replica_spec(policy, name, port))
        .await?;
    hands.events.record(
        &ctx.policy,
        "ReplicaCreated",
        format!(
            "{} created on {}:{}",
            replica.name, replica.host_ip, replica.host_port
        ),
    );
    // Where the runtime says it runs (a Swarm node's address), else the policy's host IP.
    let addr = observe::replica_addr(&replica.host_ip, port).unwrap_or(addr);
    Ok(StepOutcome {
        created: Some((port, addr)),
        baselines: Vec::new(),
    })
}

async fn wait_ready<R: Runtime, L>(
    hands: &Hands<'_, R, L>,
    ctx: &ExecContext,
    name: &str,
    port: u16,
) -> Result<StepOutcome, ReconcileError> {
    let Some(policy) = &ctx.spec else {
        return Ok(StepOutcome::default());
    };
    let Some(addr) = address_of(ctx, port) else {
        return Err(ReconcileError::PortTaken {
            policy: ctx.policy.clone(),
            port,
        });
    };
    let readiness = &policy.spec.template.readiness;
    let started = tokio::time::Instant::now();
    let probe = hands.seams.probe.wait_ready(
        addr,
        &readiness.http_get.path,
        Duration::from_millis(readiness.period_millis.max(10)),
        Duration::from_secs(readiness.timeout_seconds),
    );
    // A replica that exits while we wait will never be ready: fail the step now so the
    // next pass replaces it, not at the timeout.
    let result = tokio::select! {
        result = probe => result,
        () = until_not_running(hands.runtime.as_ref(), &ctx.policy, name) => {
            Err(runtime::probe::ProbeError::NotReady {
                addr,
                path: readiness.http_get.path.clone(),
                waited: started.elapsed(),
                attempts: 0,
                last: "the container is no longer running".to_owned(),
            })
        }
    };
    result.map_err(|source| ReconcileError::NotReady {
        name: name.to_owned(),
        port,
        source: Box::new(source),
    })?;
    Ok(StepOutcome {
        created: None,
        baselines: baselines(hands, policy, name, addr).await,
    })
}

/// Counter samples of a replica that just became ready, so the next pass already has a
/// rate for it (otherwise its first pass counts it as missing data and holds).
async fn baselines<R: Runtime, L>(
    hands: &Hands<'_, R, L>,
    policy: &ScalingPolicy,
    name: &str,
    addr: SocketAddr,
) -> Vec<(String, CounterSample)> {
    let Ok(replicas) = hands.runtime.list_policy(&policy.metadata.name).await else {
        return Vec::new();
    };
    let Some(id) = replicas.into_iter().find(|r| r.name == name).map(|r| r.id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for spec in &policy.spec.metrics {
        if let MetricSpec::RequestRate(m) = spec {
            let scrape = observe::scrape_one(hands.seams, addr, &m.path, &m.counter).await;
            let now = hands.seams.clock.now_ms();
            out.extend(crate::metrics::aggregate::baseline_samples(
                &id, &m.path, &m.counter, &scrape, now,
            ));
        }
    }
    out
}

/// Returns once container `name` of `policy` is gone or not running (list errors: keep
/// waiting).
async fn until_not_running<R: Runtime>(runtime: &R, policy: &str, name: &str) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(list) = runtime.list_policy(policy).await
            && !list.iter().any(|r| r.name == name && r.running)
        {
            return;
        }
    }
}

/// The address of the replica on `port`: as observed or created, else at the policy's
/// host IP.
pub(super) fn address_of(ctx: &ExecContext, port: u16) -> Option<SocketAddr> {
    ctx.addrs.get(&port).copied().or_else(|| {
        let policy = ctx.spec.as_ref()?;
        Some(route_addr(policy.parsed.host_ip, port))
    })
}

fn step_ports(step: &Step) -> String {
    match step {
        Step::SetUpstream { ports, .. } if ports.is_empty() => "(empty)".to_owned(),
        Step::SetUpstream { ports, .. } => ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// The container spec of replica `name` of `policy` on `port`.
pub fn replica_spec(policy: &ScalingPolicy, name: &str, port: u16) -> ReplicaSpec {
    let template = &policy.spec.template;
    ReplicaSpec {
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
        memory_bytes: policy
            .parsed
            .memory_bytes
            .and_then(|b| i64::try_from(b).ok()),
    }
}

/// Splits a plan into runs of steps that may execute concurrently: consecutive steps of
/// the same kind, except upstream changes, which always run alone and in order.
pub fn batches(steps: &[Step]) -> Vec<&[Step]> {
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
