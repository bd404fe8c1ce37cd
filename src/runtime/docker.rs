//! [`DockerRuntime`]: the [`Runtime`] on a Docker Engine, through bollard.
//!
//! The bollard client lives here only; everything leaving this file is a plain value
//! ([`Replica`], [`RuntimeEvent`]). Ownership is checked twice: by label filters on the
//! engine side and again on every container and event that comes back.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, ContainerSummaryStateEnum, EventMessage,
    EventMessageTypeEnum, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, ListContainersOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::{
    LABEL_HOST_IP, LABEL_HOST_PORT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_POLICY,
    LABEL_TEMPLATE_HASH, MANAGED_BY_VALUE, Replica, ReplicaSpec, Runtime, RuntimeError,
    RuntimeEvent, is_owned, parse_host_port, replica_labels,
    template::{LABEL_TEMPLATE, TemplateSummary},
};

/// Where bollard connects when `DOCKER_HOST` is unset.
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The stop grace written into each container's `StopTimeout` (for stops not made by us).
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// Slack added to the client timeout of a stop call beyond its grace period.
const STOP_CALL_SLACK: Duration = Duration::from_secs(30);
/// Engine actions on owned containers that [`Runtime::events`] reports.
const REPORTED_ACTIONS: &[&str] = &[
    "start", "die", "stop", "destroy", "kill", "oom", "pause", "unpause",
];

/// A [`Runtime`] backed by a Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    /// The client, version-negotiated with the engine.
    docker: Docker,
    /// Operator instance id: the value of [`LABEL_INSTANCE`] on every owned container.
    instance: String,
    /// Written into new containers' `StopTimeout`, so a hand-made `docker stop` is graceful too.
    stop_grace: Duration,
}

/// Checks the instance id, then connects to the engine named by `DOCKER_HOST` (default:
/// the local socket) and negotiates the API version; returns the client and the host
/// name errors should mention. Shared by both runtimes.
pub(crate) async fn connect_engine(instance: &str) -> Result<(Docker, String), RuntimeError> {
    if instance.trim().is_empty() {
        return Err(RuntimeError::InvalidInstance {
            instance: instance.to_string(),
        });
    }
    let host = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string());
    let connect_err = |source| RuntimeError::Connect {
        host: host.clone(),
        source,
    };
    let docker = Docker::connect_with_defaults().map_err(connect_err)?;
    let docker = docker.negotiate_version().await.map_err(connect_err)?;
    Ok((docker, host))
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (default: the local socket) and negotiates the API version.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] at once when the socket is missing or the engine does not
    /// answer; the caller retries with backoff.
    pub async fn connect(instance: &str) -> Result<Self, RuntimeError> {
        let (docker, host) = connect_engine(instance).await?;
        tracing::debug!(%host, instance, version = ?docker.client_version(), "connected to Docker engine");
        Ok(Self {
            docker,
            instance: instance.to_string(),
            stop_grace: DEFAULT_STOP_GRACE,
        })
    }

    /// Sets the grace period written into new containers' `StopTimeout` (default 10 s).
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The operator instance id this runtime acts for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Label filters selecting this instance's containers on the engine side.
    fn owned_filters(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"),
                format!("{LABEL_INSTANCE}={}", self.instance),
            ],
        )])
    }

    /// What each owned replica of `policy` runs, by container name, as its
    /// [`LABEL_TEMPLATE`] label says (`None`: a replica made
    /// before the label existed). For `diff`'s template detail.
    pub async fn templates(
        &self,
        policy: &str,
    ) -> Result<BTreeMap<String, Option<TemplateSummary>>, RuntimeError> {
        let summaries = self.owned_summaries(None, Some(policy)).await?;
        Ok(summaries
            .iter()
            .filter_map(|s| {
                let replica = replica_from_summary(&self.instance, s)?;
                let label = s
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_TEMPLATE))
                    .map(String::as_str);
                (replica.policy == policy)
                    .then(|| (replica.name, TemplateSummary::from_label(label)))
            })
            .collect())
    }

    /// Lists owned containers, optionally only the one with engine id `id` or of `policy`.
    async fn list_owned(
        &self,
        id: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Vec<Replica>, RuntimeError> {
        let summaries = self.owned_summaries(id, policy).await?;
        let mut replicas: Vec<Replica> = summaries
            .iter()
            .filter_map(|s| replica_from_summary(&self.instance, s))
            .collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(replicas)
    }

    /// The engine's summaries of owned containers, filtered by the engine on `id` and
    /// `policy` when given.
    async fn owned_summaries(
        &self,
        id: Option<&str>,
        policy: Option<&str>,
    ) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let mut filters = self.owned_filters();
        if let Some(id) = id {
            filters.insert("id".to_string(), vec![id.to_string()]);
        }
        if let Some(policy) = policy
            && let Some(labels) = filters.get_mut("label")
        {
            labels.push(format!("{LABEL_POLICY}={policy}"));
        }
        let options = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|source| RuntimeError::List {
                instance: self.instance.clone(),
                source,
            })
    }

    /// Resolves `id` to an owned container's full id.
    ///
    /// `Ok(None)` when no such container exists; [`RuntimeError::NotOwned`] when it exists
    /// but lacks this instance's ownership labels.
    async fn owned_target(&self, id: &str) -> Result<Option<String>, RuntimeError> {
        let inspected = match self.docker.inspect_container(id, None).await {
            Ok(inspected) => inspected,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(source) => {
                return Err(RuntimeError::Inspect {
                    id: id.to_string(),
                    source,
                });
            }
        };
        let labels = inspected.config.as_ref().and_then(|c| c.labels.as_ref());
        let name = inspected
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let owned = is_owned(&self.instance, |k| {
            labels.and_then(|l| l.get(k)).map(String::as_str)
        });
        if !owned {
            tracing::warn!(id, %name, instance = %self.instance, "refusing to touch a container this operator does not own");
            return Err(RuntimeError::NotOwned {
                id: id.to_string(),
                name,
                instance: self.instance.clone(),
            });
        }
        Ok(Some(inspected.id.unwrap_or_else(|| id.to_string())))
    }

    /// Removes a container we just created; failures are logged, not returned (the list will show it).
    async fn remove_after_failed_start(&self, id: &str, name: &str) {
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        if let Err(e) = self.docker.remove_container(id, Some(options)).await
            && !is_not_found(&e)
        {
            tracing::warn!(id, name, error = %e, "could not remove a container whose start failed");
        }
    }
}

impl Runtime for DockerRuntime {
    async fn list(&self) -> Result<Vec<Replica>, RuntimeError> {
        self.list_owned(None, None).await
    }

    async fn list_policy(&self, policy: &str) -> Result<Vec<Replica>, RuntimeError> {
        let replicas = self.list_owned(None, Some(policy)).await?;
        // The label filter is the engine's; the policy check is ours.
        Ok(replicas
            .into_iter()
            .filter(|r| r.policy == policy)
            .collect())
    }

    async fn create(&self, spec: &ReplicaSpec) -> Result<Replica, RuntimeError> {
        let body = create_body(&self.instance, spec, self.stop_grace);
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        let created = match self.docker.create_container(Some(options), body).await {
            Ok(created) => created,
            Err(e) if is_not_found(&e) => {
                return Err(RuntimeError::ImageMissing {
                    name: spec.name.clone(),
                    image: spec.image.clone(),
                    source: e,
                });
            }
            Err(source) => {
                return Err(RuntimeError::Create {
                    name: spec.name.clone(),
                    source,
                });
            }
        };
        for warning in &created.warnings {
            tracing::warn!(name = %spec.name, %warning, "engine warning on create");
        }
        if let Err(source) = self.docker.start_container(&created.id, None).await {
            self.remove_after_failed_start(&created.id, &spec.name)
                .await;
            return Err(RuntimeError::Start {
                name: spec.name.clone(),
                host_ip: spec.host_ip.clone(),
                host_port: spec.host_port,
                source,
            });
        }
        tracing::info!(id = %created.id, name = %spec.name, policy = %spec.policy, host = %format!("{}:{}", spec.host_ip, spec.host_port), "replica started");
        self.list_owned(Some(&created.id), None)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Vanished {
                name: spec.name.clone(),
                id: created.id.clone(),
            })
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(full_id) = self.owned_target(id).await? else {
            return Ok(());
        };
        let options = StopContainerOptions {
            t: Some(grace_seconds(grace)),
            signal: None,
        };
        // The engine answers only once the container is down: allow the grace and some slack.
        let client = self
            .docker
            .clone()
            .with_timeout(self.docker.timeout().max(grace + STOP_CALL_SLACK));
        match client.stop_container(&full_id, Some(options)).await {
            Ok(()) => {
                tracing::info!(id = %full_id, grace_ms = grace.as_millis() as u64, "replica stopped");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(source) => Err(RuntimeError::Stop {
                id: full_id,
                source,
            }),
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(full_id) = self.owned_target(id).await? else {
            return Ok(());
        };
        let options = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self.docker.remove_container(&full_id, Some(options)).await {
            Ok(()) => {
                tracing::info!(id = %full_id, "replica removed");
                Ok(())
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) if is_removal_in_progress(&e) => {
                tracing::debug!(id = %full_id, "removal already in progress");
                Ok(())
            }
            Err(source) => Err(RuntimeError::Remove {
                id: full_id,
                source,
            }),
        }
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        let mut filters = self.owned_filters();
        filters.insert("type".to_string(), vec!["container".to_string()]);
        // Replay from a second ago: an event between this call and the caller's resync
        // list is never lost (a duplicate is harmless).
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0);
        let options = EventsOptions {
            since: Some(since.to_string()),
            until: None,
            filters: Some(filters),
        };
        let instance = self.instance.clone();
        let events = self.docker.events(Some(options)).filter_map(move |item| {
            let out = match item {
                Ok(message) => runtime_event(&instance, message).map(Ok),
                Err(source) => Some(Err(RuntimeError::Events {
                    instance: instance.clone(),
                    source,
                })),
            };
            futures::future::ready(out)
        });
        futures::stream::once(futures::future::ready(Ok(RuntimeEvent::Resync)))
            .chain(events)
            .boxed()
    }
}

/// The engine's create request for `spec`, owned by `instance`.
fn create_body(instance: &str, spec: &ReplicaSpec, stop_grace: Duration) -> ContainerCreateBody {
    let port_key = format!("{}/tcp", spec.container_port);
    let binding = PortBinding {
        host_ip: Some(spec.host_ip.clone()),
        host_port: Some(spec.host_port.to_string()),
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        exposed_ports: Some(vec![port_key.clone()]),
        labels: Some(replica_labels(instance, spec).into_iter().collect()),
        stop_signal: Some("SIGTERM".to_string()),
        stop_timeout: Some(i64::from(grace_seconds(stop_grace))),
        host_config: Some(HostConfig {
            port_bindings: Some(HashMap::from([(port_key, Some(vec![binding]))])),
            // The operator replaces dead replicas itself; the engine must not race it.
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            nano_cpus: spec.nano_cpus,
            memory: spec.memory_bytes,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Turns an engine container summary into a [`Replica`], or `None` (with a warning) if it is unusable.
fn replica_from_summary(instance: &str, summary: &ContainerSummary) -> Option<Replica> {
    let labels = summary.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    let Some(id) = summary.id.clone().filter(|id| !id.is_empty()) else {
        tracing::warn!("engine listed a container without an id; skipped");
        return None;
    };
    if !is_owned(instance, label) {
        // The engine filtered by these labels already; never trust that alone.
        return None;
    }
    let name = summary
        .names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    let published = summary
        .ports
        .as_ref()
        .and_then(|ports| ports.iter().find(|p| p.public_port.is_some_and(|p| p != 0)));
    let host_port = match parse_host_port(label(LABEL_HOST_PORT)) {
        Some(port) => port,
        None => {
            let fallback = published.and_then(|p| p.public_port).unwrap_or(0);
            tracing::warn!(%id, %name, label = ?label(LABEL_HOST_PORT), fallback, "owned container has a bad {LABEL_HOST_PORT} label");
            fallback
        }
    };
    let host_ip = label(LABEL_HOST_IP)
        .map(str::to_string)
        .or_else(|| published.and_then(|p| p.ip.clone()))
        .unwrap_or_default();
    let policy = label(LABEL_POLICY).unwrap_or_default().to_string();
    if policy.is_empty() {
        tracing::warn!(%id, %name, "owned container has no {LABEL_POLICY} label");
    }
    Some(Replica {
        id,
        name,
        policy,
        template_hash: label(LABEL_TEMPLATE_HASH).unwrap_or_default().to_string(),
        host_ip,
        host_port,
        running: summary.state == Some(ContainerSummaryStateEnum::RUNNING),
        created_unix: summary.created.unwrap_or(0),
    })
}

/// Turns an engine event into a [`RuntimeEvent`] if it concerns an owned container and matters.
fn runtime_event(instance: &str, message: EventMessage) -> Option<RuntimeEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = message.action?;
    let reported =
        REPORTED_ACTIONS.contains(&action.as_str()) || action.starts_with("health_status");
    if !reported {
        return None;
    }
    let actor = message.actor?;
    let attributes = actor.attributes.unwrap_or_default();
    let label = |k: &str| attributes.get(k).map(String::as_str);
    if !is_owned(instance, label) {
        return None;
    }
    let id = actor.id.filter(|id| !id.is_empty())?;
    Some(RuntimeEvent::Container {
        id,
        policy: label(LABEL_POLICY).unwrap_or_default().to_string(),
        action,
    })
}

/// Whole seconds for the engine's stop timeout: rounded up, clamped to `i32`.
fn grace_seconds(grace: Duration) -> i32 {
    let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Whether the engine answered 404 (no such container or image).
fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the engine answered 409 because another removal of the container is under way.
fn is_removal_in_progress(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError { status_code: 409, message }
            if message.contains("already in progress")
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bollard::models::{EventActor, PortSummary};

    use super::*;

    fn owned_labels(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = [
            (LABEL_MANAGED_BY, MANAGED_BY_VALUE),
            (LABEL_INSTANCE, "inst"),
            (LABEL_POLICY, "web"),
            (LABEL_TEMPLATE_HASH, "h1"),
            (LABEL_HOST_IP, "127.0.0.1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            labels.insert(k.to_string(), v.to_string());
        }
        labels
    }

    fn summary(labels: HashMap<String, String>, published: Option<u16>) -> ContainerSummary {
        ContainerSummary {
            id: Some("abc".into()),
            names: Some(vec!["/web-8001".into()]),
            labels: Some(labels),
            state: Some(ContainerSummaryStateEnum::RUNNING),
            created: Some(1_700_000_000),
            ports: published.map(|p| {
                vec![PortSummary {
                    ip: Some("127.0.0.1".into()),
                    private_port: 8000,
                    public_port: Some(p),
                    typ: None,
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn summary_host_port_comes_from_label_then_port_map_then_zero() {
        let cases: &[(Option<&str>, Option<u16>, Option<u16>)] = &[
            (Some("8001"), None, Some(8001)),
            (Some("8001"), Some(9000), Some(8001)),
            (Some("banana"), Some(8005), Some(8005)),
            (Some("70000"), None, Some(0)),
            (None, None, Some(0)),
            (None, Some(8002), Some(8002)),
        ];
        for (label, published, want) in cases {
            let extra: Vec<(&str, &str)> = label.iter().map(|l| (LABEL_HOST_PORT, *l)).collect();
            let got = replica_from_summary("inst", &summary(owned_labels(&extra), *published));
            assert_eq!(
                got.map(|r| r.host_port),
                *want,
                "label {label:?} published {published:?}"
            );
        }
    }

    #[test]
    fn summary_of_foreign_or_idless_container_is_skipped() {
        let mut foreign = owned_labels(&[(LABEL_HOST_PORT, "8001")]);
        foreign.insert(LABEL_INSTANCE.into(), "other".into());
        assert_eq!(replica_from_summary("inst", &summary(foreign, None)), None);

        let mut unmanaged = owned_labels(&[(LABEL_HOST_PORT, "8001")]);
        unmanaged.remove(LABEL_MANAGED_BY);
        assert_eq!(
            replica_from_summary("inst", &summary(unmanaged, None)),
            None
        );

        let mut idless = summary(owned_labels(&[(LABEL_HOST_PORT, "8001")]), None);
        idless.id = None;
        assert_eq!(replica_from_summary("inst", &idless), None);

        let mut no_labels = summary(HashMap::new(), None);
        no_labels.labels = None;
        assert_eq!(replica_from_summary("inst", &no_labels), None);
    }

    #[test]
    fn summary_maps_every_field() {
        let mut s = summary(owned_labels(&[(LABEL_HOST_PORT, "8001")]), Some(8001));
        s.state = Some(ContainerSummaryStateEnum::EXITED);
        let got = replica_from_summary("inst", &s);
        let want = Replica {
            id: "abc".into(),
            name: "web-8001".into(),
            policy: "web".into(),
            template_hash: "h1".into(),
            host_ip: "127.0.0.1".into(),
            host_port: 8001,
            running: false,
            created_unix: 1_700_000_000,
        };
        assert_eq!(got, Some(want));
    }

    fn event(action: &str, attributes: HashMap<String, String>) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(attributes),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_report_lifecycle_actions_of_owned_containers_only() {
        let cases: &[(&str, bool)] = &[
            ("die", true),
            ("start", true),
            ("stop", true),
            ("destroy", true),
            ("health_status: unhealthy", true),
            ("exec_start: sh", false),
            ("attach", false),
            ("create", false),
        ];
        for (action, want) in cases {
            let got = runtime_event("inst", event(action, owned_labels(&[])));
            let expected = want.then(|| RuntimeEvent::Container {
                id: "abc".into(),
                policy: "web".into(),
                action: action.to_string(),
            });
            assert_eq!(got, expected, "action {action}");
        }
        assert_eq!(
            runtime_event("other", event("die", owned_labels(&[]))),
            None
        );
        let mut network = event("die", owned_labels(&[]));
        network.typ = Some(EventMessageTypeEnum::NETWORK);
        assert_eq!(runtime_event("inst", network), None);
        let mut no_actor = event("die", owned_labels(&[]));
        no_actor.actor = None;
        assert_eq!(runtime_event("inst", no_actor), None);
    }

    #[test]
    fn grace_rounds_up_to_whole_seconds() {
        let cases = [
            (Duration::ZERO, 0),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(2), 2),
            (Duration::from_millis(2500), 3),
            (Duration::from_secs(u64::MAX), i32::MAX),
        ];
        for (grace, want) in cases {
            assert_eq!(grace_seconds(grace), want, "grace {grace:?}");
        }
    }

    #[test]
    fn create_body_carries_labels_binding_and_no_restart() {
        let spec = ReplicaSpec {
            policy: "web".into(),
            name: "web-8001".into(),
            template_hash: "h1".into(),
            image: "img:latest".into(),
            args: vec!["--port".into(), "8000".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            container_port: 8000,
            host_ip: "127.0.0.1".into(),
            host_port: 8001,
            nano_cpus: Some(500_000_000),
            memory_bytes: None,
        };
        let body = create_body("inst", &spec, Duration::from_secs(30));
        let labels = body.labels.unwrap_or_default();
        assert_eq!(
            labels.get(LABEL_HOST_PORT).map(String::as_str),
            Some("8001")
        );
        assert_eq!(labels.get(LABEL_INSTANCE).map(String::as_str), Some("inst"));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.stop_timeout, Some(30));
        assert_eq!(body.exposed_ports, Some(vec!["8000/tcp".to_string()]));
        let host = body.host_config.unwrap_or_default();
        let bindings = host.port_bindings.unwrap_or_default();
        let binding = bindings
            .get("8000/tcp")
            .cloned()
            .flatten()
            .unwrap_or_default();
        assert_eq!(binding.len(), 1);
        assert_eq!(binding[0].host_port.as_deref(), Some("8001"));
        assert_eq!(binding[0].host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            host.restart_policy.and_then(|r| r.name),
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(host.nano_cpus, Some(500_000_000));
    }
}
