//! The container runtime trait, the plain values it trades in, and its implementations (plain Docker, Swarm).
//!
//! # Layout
//!
//! - this file: [`Runtime`], [`Replica`], [`ReplicaSpec`], [`RuntimeEvent`], the ownership
//!   labels and [`RuntimeError`].
//! - [`docker`]: [`DockerRuntime`], the Docker Engine implementation (bollard).
//! - [`swarm`]: [`SwarmRuntime`], the Docker Swarm implementation: one service per replica
//!   ([`swarm_model`] holds its pure conversions and explains the mapping).
//! - [`any`]: [`AnyRuntime`], either of the two, chosen at run time (`--runtime`).
//! - [`ports`]: picks the lowest free host port of a policy's range.
//! - [`template`]: what a replica runs, recorded in a label so `diff` can name changes.
//! - [`probe`]: HTTP readiness probing through the published port.
//!
//! # Ownership
//!
//! Every container the operator creates carries [`LABEL_MANAGED_BY`] = [`MANAGED_BY_VALUE`]
//! and [`LABEL_INSTANCE`] = the operator instance id. A runtime lists, stops and removes
//! only containers that carry both; everything else on the host is invisible to it, and a
//! request to stop or remove anything else is refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

pub mod any;
pub mod docker;
pub mod ports;
pub mod probe;
pub mod swarm;
pub mod swarm_model;
#[cfg(test)]
mod swarm_node_loss;
pub mod template;

pub use any::{AnyRuntime, RuntimeKind};
pub use docker::DockerRuntime;
pub use swarm::SwarmRuntime;

/// Label marking a container as created by this operator; its value is [`MANAGED_BY_VALUE`].
pub const LABEL_MANAGED_BY: &str = "autoscaler.dev/managed-by";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "autoscaler";
/// Label carrying the operator instance id, so two operators (or tests) never see each other's containers.
pub const LABEL_INSTANCE: &str = "autoscaler.dev/instance";
/// Label carrying the name of the policy a replica belongs to.
pub const LABEL_POLICY: &str = "autoscaler.dev/policy";
/// Label carrying the hash of the template a replica was created from (a change means a rolling replacement).
pub const LABEL_TEMPLATE_HASH: &str = "autoscaler.dev/template-hash";
/// Label carrying the host port a replica publishes (survives a stopped container, unlike the live port map).
pub const LABEL_HOST_PORT: &str = "autoscaler.dev/host-port";
/// Label carrying the host IP the replica's port is published on.
pub const LABEL_HOST_IP: &str = "autoscaler.dev/host-ip";

/// One container the operator owns, as observed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replica {
    /// Engine id (full length); the handle for [`Runtime::stop`] and [`Runtime::remove`].
    pub id: String,
    /// Container name, without Docker's leading `/`.
    pub name: String,
    /// Policy the replica belongs to (empty if the label is missing: treat as unknown).
    pub policy: String,
    /// Template hash the replica was created from.
    pub template_hash: String,
    /// Host IP the port is published on.
    pub host_ip: String,
    /// Published host port; 0 when the labels and the port map both fail to say (never route to it).
    pub host_port: u16,
    /// Whether the container's process is running right now.
    pub running: bool,
    /// Creation time, Unix seconds (victim selection prefers the newest).
    pub created_unix: i64,
}

/// What to create: one replica of a policy's template, bound to one host port.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSpec {
    /// Policy the replica belongs to (becomes [`LABEL_POLICY`]).
    pub policy: String,
    /// Container name, used as is (e.g. `<policy>-<port>`).
    pub name: String,
    /// Template hash (becomes [`LABEL_TEMPLATE_HASH`]).
    pub template_hash: String,
    /// Image reference; must already exist locally (nothing is pulled).
    pub image: String,
    /// Arguments passed to the image's entrypoint.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: BTreeMap<String, String>,
    /// TCP port the process listens on inside the container.
    pub container_port: u16,
    /// Host IP to publish on.
    pub host_ip: String,
    /// Host port to publish on.
    pub host_port: u16,
    /// CPU limit in units of 1e-9 CPUs.
    pub nano_cpus: Option<i64>,
    /// Memory limit in bytes.
    pub memory_bytes: Option<i64>,
}

/// Something happened to the runtime's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    /// An owned container started, died, stopped, was destroyed or changed health.
    Container {
        /// Engine id of the container.
        id: String,
        /// Its policy label (empty if missing).
        policy: String,
        /// The engine's action, e.g. `start`, `die`, `stop`, `destroy`, `health_status: healthy`.
        action: String,
    },
    /// The stream (re)connected: events may have been missed, callers should list again.
    Resync,
}

/// A container runtime the operator drives: list, create, stop, remove, watch.
///
/// Implementations only ever see and touch containers that carry
/// [`LABEL_MANAGED_BY`] and their own [`LABEL_INSTANCE`].
pub trait Runtime: Send + Sync {
    /// Every container carrying `managed-by=autoscaler` AND `instance=<this instance>` (running or not).
    fn list(&self) -> impl Future<Output = Result<Vec<Replica>, RuntimeError>> + Send;

    /// The owned containers of one policy (the engine filters when it can).
    fn list_policy(
        &self,
        policy: &str,
    ) -> impl Future<Output = Result<Vec<Replica>, RuntimeError>> + Send {
        async move {
            let all = self.list().await?;
            Ok(all.into_iter().filter(|r| r.policy == policy).collect())
        }
    }

    /// Create and start a replica with all labels and the host port binding.
    ///
    /// # Errors
    /// Any failure; when the start fails the created container is removed again.
    fn create(
        &self,
        spec: &ReplicaSpec,
    ) -> impl Future<Output = Result<Replica, RuntimeError>> + Send;

    /// Stop with a grace period (SIGTERM, then SIGKILL after `grace`). Not-found is `Ok`.
    ///
    /// # Errors
    /// [`RuntimeError::NotOwned`] for a container this instance does not own.
    fn stop(
        &self,
        id: &str,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Remove (force). Not-found is `Ok`.
    ///
    /// # Errors
    /// [`RuntimeError::NotOwned`] for a container this instance does not own.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Events for owned containers of this instance, starting with [`RuntimeEvent::Resync`].
    ///
    /// The stream ends or yields an error when the engine goes away; the caller re-subscribes
    /// (with backoff) and resyncs.
    fn events(&self) -> futures::stream::BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;
}

/// Why a runtime operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The operator instance id is empty: it would not separate this operator's containers.
    #[error("operator instance id {instance:?} is empty")]
    InvalidInstance {
        /// The id given.
        instance: String,
    },
    /// The engine could not be reached at all (socket missing, refused, version handshake failed).
    #[error("cannot connect to the Docker engine at {host}: {source}")]
    Connect {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Listing containers failed.
    #[error("listing containers of instance {instance} failed: {source}")]
    List {
        /// Operator instance id.
        instance: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The image of a replica does not exist locally (nothing is ever pulled).
    #[error(
        "image {image} for container {name} does not exist locally (nothing is pulled): {source}"
    )]
    ImageMissing {
        /// Container name.
        name: String,
        /// Image reference.
        image: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Creating a container failed.
    #[error("creating container {name} failed: {source}")]
    Create {
        /// Container name.
        name: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Starting a freshly created container failed (it was removed again).
    #[error("starting container {name} on {host_ip}:{host_port} failed: {source}")]
    Start {
        /// Container name.
        name: String,
        /// Host IP of the binding.
        host_ip: String,
        /// Host port of the binding.
        host_port: u16,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A created container did not show up in the owned list (it vanished right away).
    #[error("container {name} ({id}) vanished right after it was started")]
    Vanished {
        /// Container name.
        name: String,
        /// Engine id.
        id: String,
    },
    /// Inspecting a container failed.
    #[error("inspecting container {id} failed: {source}")]
    Inspect {
        /// Id or name asked for.
        id: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The container exists but is not owned by this operator instance: refused.
    #[error(
        "refusing to touch container {id} ({name}): it does not carry {LABEL_MANAGED_BY}={MANAGED_BY_VALUE} and {LABEL_INSTANCE}={instance}"
    )]
    NotOwned {
        /// Id or name asked for.
        id: String,
        /// Its container name.
        name: String,
        /// This operator's instance id.
        instance: String,
    },
    /// Stopping a container failed.
    #[error("stopping container {id} failed: {source}")]
    Stop {
        /// Engine id.
        id: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// Removing a container failed.
    #[error("removing container {id} failed: {source}")]
    Remove {
        /// Engine id.
        id: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The engine answers but is no swarm manager, so the Swarm runtime cannot work.
    #[error(
        "this engine ({host}) is not a swarm manager ({state}): run `docker swarm init` or point DOCKER_HOST at a manager"
    )]
    NotSwarmManager {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// What the engine said about its swarm membership.
        state: String,
    },
    /// A Swarm call (listing services, tasks or nodes) failed.
    #[error("{what} failed: {source}")]
    Swarm {
        /// The operation, in words (e.g. `listing services of instance default`).
        what: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// A replica service's task was rejected because its node lacks the image.
    #[error(
        "image {image} for replica {name} is not on the node Swarm chose and could not be pulled there (load it on every node that may run the policy, or constrain placement): {message}"
    )]
    ImageMissingOnNode {
        /// Replica name.
        name: String,
        /// Image reference.
        image: String,
        /// The task's error.
        message: String,
    },
    /// A replica service's task ended or never ran (the service was removed again).
    #[error("the task of replica {name} (host port {host_port}) did not start: {state} {message}")]
    TaskNotStarted {
        /// Replica name.
        name: String,
        /// Host port it was to publish.
        host_port: u16,
        /// The task's last state.
        state: String,
        /// The task's error or message.
        message: String,
    },
    /// The event stream failed.
    #[error("Docker event stream of instance {instance} failed: {source}")]
    Events {
        /// Operator instance id.
        instance: String,
        /// The client's error.
        #[source]
        source: bollard::errors::Error,
    },
}

impl RuntimeError {
    /// Whether retrying the same call later may succeed (engine down, timeouts, conflicts).
    ///
    /// Refusals and missing images are not transient: retrying changes nothing.
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            RuntimeError::NotOwned { .. }
                | RuntimeError::ImageMissing { .. }
                | RuntimeError::ImageMissingOnNode { .. }
                | RuntimeError::NotSwarmManager { .. }
                | RuntimeError::InvalidInstance { .. }
        )
    }
}

/// The labels a replica created from `spec` by operator `instance` carries.
pub fn replica_labels(instance: &str, spec: &ReplicaSpec) -> BTreeMap<String, String> {
    [
        (LABEL_MANAGED_BY, MANAGED_BY_VALUE.to_string()),
        (LABEL_INSTANCE, instance.to_string()),
        (LABEL_POLICY, spec.policy.clone()),
        (LABEL_TEMPLATE_HASH, spec.template_hash.clone()),
        (LABEL_HOST_PORT, spec.host_port.to_string()),
        (LABEL_HOST_IP, spec.host_ip.clone()),
        (
            template::LABEL_TEMPLATE,
            template::TemplateSummary::of(spec).to_label(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether a container's labels say operator `instance` owns it.
pub fn is_owned<'a>(instance: &str, mut label: impl FnMut(&str) -> Option<&'a str>) -> bool {
    label(LABEL_MANAGED_BY) == Some(MANAGED_BY_VALUE) && label(LABEL_INSTANCE) == Some(instance)
}

/// Reads a host port label defensively: `None` unless it is a decimal port in 1..=65535.
pub fn parse_host_port(value: Option<&str>) -> Option<u16> {
    let value = value?.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u16>().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ReplicaSpec {
        ReplicaSpec {
            policy: "web".into(),
            name: "web-8001".into(),
            template_hash: "abc123".into(),
            image: "img:latest".into(),
            args: vec![],
            env: BTreeMap::new(),
            container_port: 8000,
            host_ip: "127.0.0.1".into(),
            host_port: 8001,
            nano_cpus: None,
            memory_bytes: None,
        }
    }

    #[test]
    fn host_port_label_parses_only_valid_ports() {
        let cases: &[(Option<&str>, Option<u16>)] = &[
            (Some("8001"), Some(8001)),
            (Some(" 8001 "), Some(8001)),
            (Some("65535"), Some(65535)),
            (Some("65536"), None),
            (Some("0"), None),
            (Some("-1"), None),
            (Some("+80"), None),
            (Some("80a"), None),
            (Some(""), None),
            (Some("99999999999999999999"), None),
            (None, None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_host_port(*input), *want, "input {input:?}");
        }
    }

    #[test]
    fn replica_labels_carry_ownership_and_identity() {
        let labels = replica_labels("inst-1", &spec());
        let owned = is_owned("inst-1", |k| labels.get(k).map(String::as_str));
        assert!(owned);
        assert_eq!(labels[LABEL_POLICY], "web");
        assert_eq!(labels[LABEL_TEMPLATE_HASH], "abc123");
        assert_eq!(
            parse_host_port(labels.get(LABEL_HOST_PORT).map(String::as_str)),
            Some(8001)
        );
        assert_eq!(labels[LABEL_HOST_IP], "127.0.0.1");
        assert_eq!(
            template::TemplateSummary::from_label(
                labels.get(template::LABEL_TEMPLATE).map(String::as_str)
            ),
            Some(template::TemplateSummary::of(&spec()))
        );
    }

    #[test]
    fn ownership_needs_both_managed_by_and_same_instance() {
        let cases: &[(&[(&str, &str)], bool)] = &[
            (
                &[(LABEL_MANAGED_BY, "autoscaler"), (LABEL_INSTANCE, "a")],
                true,
            ),
            (
                &[(LABEL_MANAGED_BY, "autoscaler"), (LABEL_INSTANCE, "b")],
                false,
            ),
            (&[(LABEL_MANAGED_BY, "autoscaler")], false),
            (&[(LABEL_INSTANCE, "a")], false),
            (
                &[(LABEL_MANAGED_BY, "someone-else"), (LABEL_INSTANCE, "a")],
                false,
            ),
            (
                &[(LABEL_MANAGED_BY, "Autoscaler"), (LABEL_INSTANCE, "a")],
                false,
            ),
            (&[], false),
        ];
        for (labels, want) in cases {
            let got = is_owned("a", |k| {
                labels.iter().find(|(lk, _)| *lk == k).map(|(_, v)| *v)
            });
            assert_eq!(got, *want, "labels {labels:?}");
        }
    }

    #[test]
    fn refusals_are_not_transient() {
        let not_owned = RuntimeError::NotOwned {
            id: "x".into(),
            name: "y".into(),
            instance: "i".into(),
        };
        assert!(!not_owned.is_transient());
        let vanished = RuntimeError::Vanished {
            id: "x".into(),
            name: "y".into(),
        };
        assert!(vanished.is_transient());
    }
}
