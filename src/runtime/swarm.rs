//! [`SwarmRuntime`]: the [`Runtime`] on a Docker Swarm manager, one service per replica.
//!
//! The mapping and why are in [`super::swarm_model`], which also holds the pure
//! conversions; this file only talks to the engine. Ownership is checked as in the plain
//! runtime: label filters on the engine side, then again on every service that comes back,
//! and an inspect before any stop or removal.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{EventMessage, EventMessageTypeEnum, LocalNodeState, Service, Task};
use bollard::query_parameters::{
    EventsOptions, ListContainersOptions, ListNodesOptions, ListServicesOptions, ListTasksOptions,
    UpdateServiceOptions,
};
use futures::StreamExt;
use futures::stream::BoxStream;

use super::swarm_model::{
    LABEL_SWARM_INSTANCE, LocalImage, NodeView, awaiting_reaper, first_task, pinned_image,
    replica_from_service, service_spec, task_ended, task_running, task_words,
};
use super::template::{LABEL_TEMPLATE, TemplateSummary};
use super::{
    LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_POLICY, MANAGED_BY_VALUE, Replica, ReplicaSpec,
    Runtime, RuntimeError, RuntimeEvent, is_owned,
};

/// The stop grace written into each service (SIGTERM, then SIGKILL after it).
const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a created service's task may take to run (placement, image on the node, start).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Slack beyond the grace period for a stop or removal to finish.
const STOP_SLACK: Duration = Duration::from_secs(30);
/// Longest wait for Swarm's task reaper before a service scaled to zero is deleted anyway
/// (it deletes a shut-down task about 250 ms after the task's last change).
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a start, stop or removal is polled.
const POLL: Duration = Duration::from_millis(100);
/// Container actions of owned tasks that [`Runtime::events`] reports.
const REPORTED_ACTIONS: &[&str] = &["start", "die", "stop", "destroy", "kill", "oom"];
/// Engine label Swarm puts on a task's container: the id of its service.
const LABEL_SWARM_SERVICE_ID: &str = "com.docker.swarm.service.id";

/// A [`Runtime`] backed by a Docker Swarm manager.
#[derive(Debug, Clone)]
pub struct SwarmRuntime {
    /// The client, version-negotiated with the manager.
    docker: Docker,
    /// Operator instance id: the value of [`LABEL_INSTANCE`] on every owned service.
    instance: String,
    /// Written into new services' stop grace period.
    stop_grace: Duration,
}

impl SwarmRuntime {
    /// Connects to the engine named by `DOCKER_HOST` and checks that it manages a swarm.
    ///
    /// # Errors
    /// [`RuntimeError::Connect`] when the engine does not answer (the caller retries);
    /// [`RuntimeError::NotSwarmManager`] when it answers but is no swarm manager.
    pub async fn connect(instance: &str) -> Result<Self, RuntimeError> {
        let (docker, host) = super::docker::connect_engine(instance).await?;
        let info = docker
            .info()
            .await
            .map_err(|source| RuntimeError::Connect {
                host: host.clone(),
                source,
            })?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
        if state != LocalNodeState::ACTIVE || swarm.control_available != Some(true) {
            return Err(RuntimeError::NotSwarmManager {
                host,
                state: format!(
                    "swarm state {:?}, manager {}",
                    state.to_string(),
                    swarm.control_available.unwrap_or(false)
                ),
            });
        }
        tracing::debug!(%host, instance, "connected to a Docker Swarm manager");
        Ok(Self {
            docker,
            instance: instance.to_string(),
            stop_grace: DEFAULT_STOP_GRACE,
        })
    }

    /// Sets the stop grace period written into new services (default 10 s).
    pub fn with_stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The operator instance id this runtime acts for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// What each owned replica of `policy` runs, by replica name (see
    /// [`super::DockerRuntime::templates`]).
    pub async fn templates(
        &self,
        policy: &str,
    ) -> Result<BTreeMap<String, Option<TemplateSummary>>, RuntimeError> {
        let services = self.owned_services(Some(policy)).await?;
        let empty = HashMap::new();
        Ok(services
            .iter()
            .filter_map(|s| {
                let replica = replica_from_service(&self.instance, s, &[], &empty)?;
                let label = s
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.labels.as_ref())
                    .and_then(|l| l.get(LABEL_TEMPLATE))
                    .map(String::as_str);
                (replica.policy == policy)
                    .then(|| (replica.name, TemplateSummary::from_label(label)))
            })
            .collect())
    }

    fn swarm_err(&self, what: String) -> impl FnOnce(DockerError) -> RuntimeError {
        move |source| RuntimeError::Swarm { what, source }
    }

    /// The owned services, optionally of one policy (filtered by the engine, checked by us).
    async fn owned_services(&self, policy: Option<&str>) -> Result<Vec<Service>, RuntimeError> {
        let mut labels = vec![
            format!("{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"),
            format!("{LABEL_INSTANCE}={}", self.instance),
        ];
        if let Some(policy) = policy {
            labels.push(format!("{LABEL_POLICY}={policy}"));
        }
        let options = ListServicesOptions {
            filters: Some(HashMap::from([("label".to_string(), labels)])),
            ..Default::default()
        };
        self.docker
            .list_services(Some(options))
            .await
            .map_err(self.swarm_err(format!("listing services of instance {}", self.instance)))
    }

    /// Every task of the services with these ids.
    async fn tasks_of(&self, service_ids: &[String]) -> Result<Vec<Task>, RuntimeError> {
        if service_ids.is_empty() {
            return Ok(Vec::new());
        }
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                service_ids.to_vec(),
            )])),
        };
        let what = || format!("listing tasks of instance {}", self.instance);
        match self.docker.list_tasks(Some(options)).await {
            Ok(tasks) => Ok(tasks),
            // The engine resolves each service of the filter and fails on one that was
            // just removed: list every task and keep ours instead.
            Err(e) if is_not_found(&e) => {
                let all = self
                    .docker
                    .list_tasks(None::<ListTasksOptions>)
                    .await
                    .map_err(self.swarm_err(what()))?;
                Ok(all
                    .into_iter()
                    .filter(|t| {
                        t.service_id
                            .as_ref()
                            .is_some_and(|sid| service_ids.contains(sid))
                    })
                    .collect())
            }
            Err(source) => Err(RuntimeError::Swarm {
                what: what(),
                source,
            }),
        }
    }

    /// Polls until no container of service `id` runs on this engine's node (a removed
    /// service's task stops asynchronously), or `limit` passes.
    async fn until_containers_gone(&self, id: &str, limit: Duration) -> Result<(), RuntimeError> {
        let options = &ListContainersOptions {
            all: false,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{LABEL_SWARM_SERVICE_ID}={id}")],
            )])),
            ..Default::default()
        };
        let done = move || async move {
            let running = self
                .docker
                .list_containers(Some(options.clone()))
                .await
                .map_err(self.swarm_err(format!("listing the containers of service {id}")))?;
            Ok(running.is_empty())
        };
        poll_until(
            id,
            "a container of the removed service still runs",
            limit,
            done,
        )
        .await?;
        Ok(())
    }

    /// The swarm's nodes by id.
    async fn nodes(&self) -> Result<HashMap<String, NodeView>, RuntimeError> {
        let nodes = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(self.swarm_err("listing swarm nodes".to_owned()))?;
        Ok(nodes.iter().filter_map(NodeView::of).collect())
    }

    /// Owned replicas, optionally of one policy or only the service `id`.
    async fn list_owned(
        &self,
        policy: Option<&str>,
        id: Option<&str>,
    ) -> Result<Vec<Replica>, RuntimeError> {
        let services: Vec<Service> = self
            .owned_services(policy)
            .await?
            .into_iter()
            .filter(|s| id.is_none() || s.id.as_deref() == id)
            .collect();
        let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
        let tasks = self.tasks_of(&ids).await?;
        let nodes = if tasks.is_empty() {
            HashMap::new()
        } else {
            self.nodes().await?
        };
        let mut by_service: HashMap<&str, Vec<&Task>> = HashMap::new();
        for task in &tasks {
            if let Some(sid) = task.service_id.as_deref() {
                by_service.entry(sid).or_default().push(task);
            }
        }
        let mut replicas: Vec<Replica> = services
            .iter()
            .filter_map(|s| {
                let own =
                    s.id.as_deref()
                        .and_then(|sid| by_service.get(sid))
                        .map(Vec::as_slice)
                        .unwrap_or(&[]);
                replica_from_service(&self.instance, s, own, &nodes)
            })
            .collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(replicas)
    }

    /// Resolves `id` to an owned service: `Ok(None)` when it does not exist,
    /// [`RuntimeError::NotOwned`] when it exists but is not this instance's.
    async fn owned_target(&self, id: &str) -> Result<Option<Service>, RuntimeError> {
        let service = match self.docker.inspect_service(id, None).await {
            Ok(service) => service,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(source) => {
                return Err(RuntimeError::Inspect {
                    id: id.to_string(),
                    source,
                });
            }
        };
        let spec = service.spec.as_ref();
        let labels = spec.and_then(|s| s.labels.as_ref());
        if !is_owned(&self.instance, |k| {
            labels.and_then(|l| l.get(k)).map(String::as_str)
        }) {
            let name = spec.and_then(|s| s.name.clone()).unwrap_or_default();
            tracing::warn!(id, %name, instance = %self.instance, "refusing to touch a service this operator does not own");
            return Err(RuntimeError::NotOwned {
                id: id.to_string(),
                name,
                instance: self.instance.clone(),
            });
        }
        Ok(Some(service))
    }

    /// Polls until no task of service `id` runs, or `limit` passes (then logs and returns).
    async fn until_stopped(&self, id: &str, limit: Duration) -> Result<(), RuntimeError> {
        let ids = &[id.to_owned()];
        let done = move || async move { Ok(!self.tasks_of(ids).await?.iter().any(task_running)) };
        poll_until(id, "a task of the service still runs", limit, done).await?;
        Ok(())
    }

    /// Polls until Swarm's task reaper has deleted every task of service `id` marked for
    /// removal ([`awaiting_reaper`]), or `limit` passes. `false` on the timeout.
    async fn until_reaped(&self, id: &str, limit: Duration) -> Result<bool, RuntimeError> {
        let ids = &[id.to_owned()];
        let done = move || async move { Ok(!awaiting_reaper(&self.tasks_of(ids).await?)) };
        poll_until(
            id,
            "tasks of the service still await the reaper",
            limit,
            done,
        )
        .await
    }

    /// Polls until the first task of new service `id` runs; on a task that ended or a
    /// timeout the service is removed again and the error says why.
    async fn until_started(&self, id: &str, spec: &ReplicaSpec) -> Result<(), RuntimeError> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let tasks = self.tasks_of(&[id.to_owned()]).await?;
            let refs: Vec<&Task> = tasks.iter().collect();
            let first = first_task(&refs);
            if first.is_some_and(task_running) {
                return Ok(());
            }
            let ended = first.filter(|t| task_ended(t));
            let timed_out = tokio::time::Instant::now() >= deadline;
            if ended.is_some() || timed_out {
                let (state, message) = first
                    .map(task_words)
                    .unwrap_or_else(|| ("not scheduled".to_owned(), String::new()));
                self.remove_quietly(id, &spec.name).await;
                if message.contains("No such image") {
                    return Err(RuntimeError::ImageMissingOnNode {
                        name: spec.name.clone(),
                        image: spec.image.clone(),
                        message,
                    });
                }
                return Err(RuntimeError::TaskNotStarted {
                    name: spec.name.clone(),
                    host_port: spec.host_port,
                    state,
                    message: if timed_out && ended.is_none() {
                        format!("not running after {}s {message}", START_TIMEOUT.as_secs())
                    } else {
                        message
                    },
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `image` pinned to what the manager holds under that name ([`pinned_image`]); as
    /// written when the manager has no such image or cannot say.
    async fn pinned(&self, image: &str) -> String {
        match self.docker.inspect_image(image).await {
            Ok(local) => {
                let digests = local.repo_digests.unwrap_or_default();
                let id = local.id.unwrap_or_default();
                let local = LocalImage {
                    repo_digests: &digests,
                    id: &id,
                };
                let pinned = pinned_image(image, Some(local));
                tracing::debug!(image, %pinned, "image pinned for the service");
                pinned
            }
            Err(e) => {
                if !is_not_found(&e) {
                    tracing::warn!(image, error = %e, "could not inspect the image on the manager; the nodes resolve the tag");
                }
                pinned_image(image, None)
            }
        }
    }

    /// Removes a service we just created; failures are logged (the list will show it).
    async fn remove_quietly(&self, id: &str, name: &str) {
        if let Err(e) = self.docker.delete_service(id).await
            && !is_not_found(&e)
        {
            tracing::warn!(id, name, error = %e, "could not remove a service whose task did not start");
        }
    }
}

impl Runtime for SwarmRuntime {
    async fn list(&self) -> Result<Vec<Replica>, RuntimeError> {
        self.list_owned(None, None).await
    }

    async fn list_policy(&self, policy: &str) -> Result<Vec<Replica>, RuntimeError> {
        let replicas = self.list_owned(Some(policy), None).await?;
        Ok(replicas
            .into_iter()
            .filter(|r| r.policy == policy)
            .collect())
    }

    async fn create(&self, spec: &ReplicaSpec) -> Result<Replica, RuntimeError> {
        let image = self.pinned(&spec.image).await;
        let body = service_spec(&self.instance, spec, &image, self.stop_grace);
        let created = self
            .docker
            .create_service(body, None)
            .await
            .map_err(|source| RuntimeError::Create {
                name: spec.name.clone(),
                source,
            })?;
        let Some(id) = created.id.filter(|id| !id.is_empty()) else {
            return Err(RuntimeError::Vanished {
                name: spec.name.clone(),
                id: String::new(),
            });
        };
        if let Some(warnings) = created.warnings {
            for warning in warnings {
                tracing::warn!(name = %spec.name, %warning, "engine warning on service create");
            }
        }
        self.until_started(&id, spec).await?;
        tracing::info!(%id, name = %spec.name, policy = %spec.policy, port = spec.host_port, "replica service running");
        self.list_owned(Some(&spec.policy), Some(&id))
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Vanished {
                name: spec.name.clone(),
                id,
            })
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let Some(service) = self.owned_target(id).await? else {
            return Ok(());
        };
        let full_id = service.id.clone().unwrap_or_else(|| id.to_owned());
        let mut spec = service.spec.unwrap_or_default();
        // Scale to zero, nothing else: a changed task template would roll the task first.
        if let Some(replicated) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
            replicated.replicas = Some(0);
        }
        let version = service
            .version
            .and_then(|v| v.index)
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or(0);
        let options = UpdateServiceOptions {
            version,
            ..Default::default()
        };
        match self
            .docker
            .update_service(&full_id, spec, options, None)
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(source) => {
                return Err(RuntimeError::Stop {
                    id: full_id,
                    source,
                });
            }
        }
        self.until_stopped(&full_id, grace.max(self.stop_grace) + STOP_SLACK)
            .await?;
        tracing::info!(id = %full_id, "replica service scaled to 0");
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(service) = self.owned_target(id).await? else {
            return Ok(());
        };
        let full_id = service.id.unwrap_or_else(|| id.to_owned());
        // A service scaled to zero keeps its tasks until the reaper deletes them; deleting
        // the service in that window can crash the engine (see `awaiting_reaper`).
        if !self.until_reaped(&full_id, REAP_TIMEOUT).await? {
            tracing::warn!(id = %full_id, "removing the service before the swarm reaped its tasks");
        }
        match self.docker.delete_service(&full_id).await {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(source) => {
                return Err(RuntimeError::Remove {
                    id: full_id,
                    source,
                });
            }
        }
        // The task stops asynchronously: wait, so its host port is free for the next create.
        self.until_containers_gone(&full_id, self.stop_grace + STOP_SLACK)
            .await?;
        tracing::info!(id = %full_id, "replica service removed");
        Ok(())
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        // Replay from a second ago: nothing between subscribing and the resync is lost.
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs().saturating_sub(1))
            .unwrap_or(0)
            .to_string();
        let containers = EventsOptions {
            since: Some(since.clone()),
            until: None,
            filters: Some(HashMap::from([
                ("type".to_string(), vec!["container".to_string()]),
                (
                    "label".to_string(),
                    vec![format!("{LABEL_SWARM_INSTANCE}={}", self.instance)],
                ),
            ])),
        };
        // A node that changes (down, drained, back) changes every replica on it: resync.
        let nodes = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(HashMap::from([(
                "type".to_string(),
                vec!["node".to_string()],
            )])),
        };
        let instance = self.instance.clone();
        let merged = futures::stream::select(
            self.docker.events(Some(containers)),
            self.docker.events(Some(nodes)),
        );
        let events = merged.filter_map(move |item| {
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

/// Polls `done` every [`POLL`] until it holds (`true`) or `limit` passes (`false`, after a
/// warning that says `what` about service `id`).
async fn poll_until<F, Fut>(
    id: &str,
    what: &str,
    limit: Duration,
    mut done: F,
) -> Result<bool, RuntimeError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, RuntimeError>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done().await? {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(id, ?limit, "{what}");
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Turns an engine event into a [`RuntimeEvent`]: a lifecycle action of an owned task's
/// container, or any node event (a resync).
fn runtime_event(instance: &str, message: EventMessage) -> Option<RuntimeEvent> {
    match message.typ {
        Some(EventMessageTypeEnum::NODE) => Some(RuntimeEvent::Resync),
        Some(EventMessageTypeEnum::CONTAINER) => {
            let action = message.action?;
            if !REPORTED_ACTIONS.contains(&action.as_str()) && !action.starts_with("health_status")
            {
                return None;
            }
            let attributes = message.actor?.attributes.unwrap_or_default();
            if attributes.get(LABEL_SWARM_INSTANCE).map(String::as_str) != Some(instance) {
                return None;
            }
            let id = attributes.get(LABEL_SWARM_SERVICE_ID).cloned()?;
            Some(RuntimeEvent::Container {
                id,
                policy: attributes.get(LABEL_POLICY).cloned().unwrap_or_default(),
                action,
            })
        }
        _ => None,
    }
}

/// Whether the engine answered 404 (no such service).
fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use bollard::models::EventActor;

    use super::*;

    fn event(typ: EventMessageTypeEnum, action: &str, attrs: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            typ: Some(typ),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("container1".into()),
                attributes: Some(
                    attrs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn events_report_owned_task_containers_by_service_and_nodes_as_resync() {
        let owned = [
            (LABEL_SWARM_INSTANCE, "inst"),
            (LABEL_POLICY, "web"),
            (LABEL_SWARM_SERVICE_ID, "svc1"),
        ];
        let want_die = Some(RuntimeEvent::Container {
            id: "svc1".into(),
            policy: "web".into(),
            action: "die".into(),
        });
        let cases: Vec<(EventMessage, Option<RuntimeEvent>)> = vec![
            (
                event(EventMessageTypeEnum::CONTAINER, "die", &owned),
                want_die,
            ),
            (
                event(EventMessageTypeEnum::CONTAINER, "attach", &owned),
                None,
            ),
            (
                event(
                    EventMessageTypeEnum::CONTAINER,
                    "die",
                    &[
                        (LABEL_SWARM_INSTANCE, "other"),
                        (LABEL_SWARM_SERVICE_ID, "s"),
                    ],
                ),
                None,
            ),
            (
                event(
                    EventMessageTypeEnum::CONTAINER,
                    "die",
                    &[(LABEL_SWARM_INSTANCE, "inst")],
                ),
                None,
            ),
            (
                event(EventMessageTypeEnum::NODE, "update", &[]),
                Some(RuntimeEvent::Resync),
            ),
            (event(EventMessageTypeEnum::NETWORK, "create", &owned), None),
        ];
        for (message, want) in cases {
            let what = format!("{:?} {:?}", message.typ, message.action);
            assert_eq!(runtime_event("inst", message), want, "{what}");
        }
    }
}
