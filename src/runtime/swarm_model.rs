//! Pure conversions for [`super::swarm`]: a [`ReplicaSpec`] into a Swarm service spec, and
//! a service with its tasks and nodes back into a [`Replica`].
//!
//! # The mapping: one service per replica
//!
//! Each replica is its own replicated service with `replicas: 1`, restart condition
//! `none`, and the planned host port published in `host` mode. So the operator, not
//! Swarm, picks the victim of a scale-down and drains it before it stops; the plan's host
//! port stays the single truth; and a replica lives exactly as long as its first task: a
//! task Swarm replaced (a restart, a reschedule off a drained node) would answer on
//! another node's address behind nginx's back, so such a service reports not running and
//! the operator replaces it through Swarm, taking it out of the upstream first.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, Limit, NodeSpecAvailabilityEnum, NodeState, Service,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};

use super::{
    LABEL_HOST_IP, LABEL_HOST_PORT, LABEL_POLICY, LABEL_TEMPLATE_HASH, Replica, ReplicaSpec,
    is_owned, parse_host_port, replica_labels,
};

/// Service label carrying the replica's name as the plan spells it (service names may
/// not contain the `.` the plan puts in replica names).
pub const LABEL_REPLICA_NAME: &str = "autoscaler.dev/replica-name";
/// Container label on a replica's task containers: the operator instance. Deliberately not
/// [`super::LABEL_INSTANCE`]: the plain runtime of the same instance must not adopt them.
pub const LABEL_SWARM_INSTANCE: &str = "autoscaler.dev/swarm-instance";

/// What the runtime needs to know of a node: where its published ports are reached and
/// whether replicas on it count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    /// The node's address (`Status.Addr`), where its host-mode ports answer.
    pub addr: String,
    /// Ready and not drained: a task there may serve.
    pub usable: bool,
}

impl NodeView {
    /// The view of an engine node: `None` without an id.
    pub fn of(node: &bollard::models::Node) -> Option<(String, NodeView)> {
        let id = node.id.clone().filter(|id| !id.is_empty())?;
        let status = node.status.as_ref();
        let ready = status.and_then(|s| s.state) == Some(NodeState::READY);
        let drained = node.spec.as_ref().and_then(|s| s.availability)
            == Some(NodeSpecAvailabilityEnum::DRAIN);
        let addr = status.and_then(|s| s.addr.clone()).unwrap_or_default();
        Some((
            id,
            NodeView {
                addr,
                usable: ready && !drained,
            },
        ))
    }
}

/// The Swarm service name of replica `name`: DNS-label characters only (`.` and others
/// become `-`), starting and ending alphanumeric, at most 63 characters.
pub fn service_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    let trimmed = out.trim_matches('-');
    if trimmed.is_empty() {
        "replica".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Nanoseconds for Swarm durations, saturating.
pub fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// The service that runs replica `spec` of operator `instance`; its tasks run `image`, the
/// template's image as [`pinned_image`] resolved it (labels keep the template's own words).
pub fn service_spec(
    instance: &str,
    spec: &ReplicaSpec,
    image: &str,
    stop_grace: Duration,
) -> ServiceSpec {
    let mut labels: HashMap<String, String> = replica_labels(instance, spec).into_iter().collect();
    labels.insert(LABEL_REPLICA_NAME.to_owned(), spec.name.clone());
    let container_labels = HashMap::from([
        (LABEL_SWARM_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_POLICY.to_owned(), spec.policy.clone()),
    ]);
    let limits = (spec.nano_cpus.is_some() || spec.memory_bytes.is_some()).then_some(Limit {
        nano_cpus: spec.nano_cpus,
        memory_bytes: spec.memory_bytes,
        pids: None,
    });
    ServiceSpec {
        name: Some(service_name(&spec.name)),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_owned()),
                labels: Some(container_labels),
                args: (!spec.args.is_empty()).then(|| spec.args.clone()),
                env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                stop_signal: Some("SIGTERM".to_owned()),
                stop_grace_period: Some(nanos(stop_grace)),
                ..Default::default()
            }),
            resources: limits.map(|limits| TaskSpecResources {
                limits: Some(limits),
                ..Default::default()
            }),
            // The operator replaces a dead replica itself (see the module docs).
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            // No virtual IP: nginx reaches each task on its node's published port.
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ports: Some(vec![EndpointPortConfig {
                name: None,
                protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                target_port: Some(i64::from(spec.container_port)),
                published_port: Some(i64::from(spec.host_port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
            }]),
        }),
        ..Default::default()
    }
}

/// The image reference a new service's tasks run: the template's `image` pinned to what the
/// manager's engine holds under that name, as `docker service create` pins a tag to its
/// digest. Without it every node's agent asks a registry for the tag at every task start
/// (and runs whatever the tag means there and then). `local` is the manager's image;
/// `None` when the manager holds none (kept as written: the nodes pull it).
/// - pulled from a registry (a digest of the same repository): `repository@sha256:…`, which
///   a node pulls only when it lacks it;
/// - built or loaded without a registry: the image id `sha256:…`, which a node never pulls
///   (each node must hold that image, as without a registry it must anyway);
/// - already pinned (`…@sha256:…`, an id): unchanged.
pub fn pinned_image(image: &str, local: Option<LocalImage<'_>>) -> String {
    let Some(LocalImage { repo_digests, id }) = local else {
        return image.to_owned();
    };
    if image.contains('@') || image.starts_with("sha256:") || id.is_empty() {
        return image.to_owned();
    }
    let repository = familiar(without_tag(image));
    repo_digests
        .iter()
        .find(|d| {
            d.split_once('@')
                .is_some_and(|(r, _)| familiar(r) == repository)
        })
        .cloned()
        .unwrap_or_else(|| id.to_owned())
}

/// What the manager's engine holds under an image name.
#[derive(Debug, Clone, Copy)]
pub struct LocalImage<'a> {
    /// `repository@sha256:…` for each registry it was pulled from or pushed to.
    pub repo_digests: &'a [String],
    /// The image id, `sha256:…`.
    pub id: &'a str,
}

/// `name:tag` → `name` (a `:` before the last `/` is a registry's port, not a tag).
fn without_tag(image: &str) -> &str {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// A repository name in the short form the engine reports digests in (`docker.io/library/x`
/// → `x`, `docker.io/u/x` → `u/x`).
fn familiar(repository: &str) -> &str {
    let r = repository
        .strip_prefix("docker.io/")
        .or_else(|| repository.strip_prefix("index.docker.io/"))
        .unwrap_or(repository);
    r.strip_prefix("library/").unwrap_or(r)
}

/// Unix seconds of an engine timestamp (RFC 3339); `None` when absent or unreadable.
pub fn unix_seconds(stamp: Option<&str>) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(stamp?).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_secs()).ok()
}

/// Nanosecond-precise creation order key of a task (absent stamps sort first).
fn created_key(task: &Task) -> (u128, String) {
    let nanos = task
        .created_at
        .as_deref()
        .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (nanos, task.id.clone().unwrap_or_default())
}

/// The replica's task: the first one Swarm created for the service.
pub fn first_task<'a>(tasks: &[&'a Task]) -> Option<&'a Task> {
    tasks.iter().copied().min_by_key(|t| created_key(t))
}

/// Whether a task's container runs right now.
pub fn task_running(task: &Task) -> bool {
    task.status.as_ref().and_then(|s| s.state) == Some(TaskState::RUNNING)
}

/// Whether Swarm's task reaper may still delete one of these tasks: one marked for removal
/// (desired state `remove`, which a scale to zero sets) that is still in the store.
///
/// Deleting the service meanwhile can crash the engine: swarmkit as shipped in Docker
/// 20.10 (`SetServiceTasksRemove`) lists the service's tasks, then updates each in a second
/// transaction without checking it still exists, so a task the reaper deleted in between
/// is a nil dereference that takes the whole daemon down (seen on the test machine).
pub fn awaiting_reaper(tasks: &[Task]) -> bool {
    tasks
        .iter()
        .any(|t| t.desired_state == Some(TaskState::REMOVE))
}

/// Whether a task ended without running (rejected, failed, shut down before start).
pub fn task_ended(task: &Task) -> bool {
    matches!(
        task.status.as_ref().and_then(|s| s.state),
        Some(
            TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::SHUTDOWN
                | TaskState::COMPLETE
                | TaskState::ORPHANED
                | TaskState::REMOVE
        )
    )
}

/// The task's state and error in words, for errors.
pub fn task_words(task: &Task) -> (String, String) {
    let status = task.status.as_ref();
    let state = status
        .and_then(|s| s.state)
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    let message = status
        .and_then(|s| {
            s.err
                .clone()
                .filter(|e| !e.is_empty())
                .or(s.message.clone())
        })
        .unwrap_or_default();
    (state, message)
}

/// Turns an owned service, its tasks and the nodes into a [`Replica`]; `None` for a
/// service that is not owned by `instance` or has no id.
///
/// `running` holds only while the service's first task runs on a usable node: a node
/// that is down or drained, or a task Swarm replaced, makes the replica dead to the plan.
pub fn replica_from_service(
    instance: &str,
    service: &Service,
    tasks: &[&Task],
    nodes: &HashMap<String, NodeView>,
) -> Option<Replica> {
    let id = service.id.clone().filter(|id| !id.is_empty())?;
    let spec = service.spec.as_ref();
    let labels = spec.and_then(|s| s.labels.as_ref());
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    if !is_owned(instance, label) {
        return None;
    }
    let name = label(LABEL_REPLICA_NAME)
        .map(str::to_owned)
        .or_else(|| spec.and_then(|s| s.name.clone()))
        .unwrap_or_default();
    let task = first_task(tasks);
    let node = task
        .and_then(|t| t.node_id.as_deref())
        .and_then(|n| nodes.get(n));
    let published = task
        .and_then(|t| t.status.as_ref())
        .and_then(|s| s.port_status.as_ref())
        .and_then(|p| p.ports.as_ref())
        .and_then(|ports| ports.iter().find_map(|p| p.published_port))
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0);
    let host_port = match parse_host_port(label(LABEL_HOST_PORT)) {
        Some(port) => port,
        None => {
            tracing::warn!(%id, %name, label = ?label(LABEL_HOST_PORT), fallback = ?published, "owned service has a bad {LABEL_HOST_PORT} label");
            published.unwrap_or(0)
        }
    };
    // Host-mode ports answer on the task's node; before placement, the policy's host IP.
    let host_ip = node
        .map(|n| n.addr.clone())
        .filter(|a| !a.is_empty())
        .or_else(|| label(LABEL_HOST_IP).map(str::to_owned))
        .unwrap_or_default();
    let running = task.is_some_and(task_running) && node.is_some_and(|n| n.usable);
    Some(Replica {
        id,
        name,
        policy: label(LABEL_POLICY).unwrap_or_default().to_owned(),
        template_hash: label(LABEL_TEMPLATE_HASH).unwrap_or_default().to_owned(),
        host_ip,
        host_port,
        running,
        created_unix: unix_seconds(service.created_at.as_deref()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bollard::models::{PortStatus, TaskStatus};

    use super::*;
    use crate::runtime::{LABEL_INSTANCE, LABEL_MANAGED_BY, template::LABEL_TEMPLATE};

    fn spec() -> ReplicaSpec {
        ReplicaSpec {
            policy: "web".into(),
            name: "web-29501.inst".into(),
            template_hash: "h1".into(),
            image: "img:latest".into(),
            args: vec!["--port".into(), "8000".into()],
            env: BTreeMap::from([("A".into(), "1".into())]),
            container_port: 8000,
            host_ip: "127.0.0.1".into(),
            host_port: 29501,
            nano_cpus: Some(500_000_000),
            memory_bytes: None,
        }
    }

    fn service() -> Service {
        Service {
            id: Some("svc1".into()),
            created_at: Some("2026-12-01T21:00:00.123456789Z".into()),
            spec: Some(service_spec(
                "inst",
                &spec(),
                "img:latest",
                Duration::from_secs(10),
            )),
            ..Default::default()
        }
    }

    fn task(id: &str, created: &str, state: TaskState, node: &str) -> Task {
        Task {
            id: Some(id.into()),
            created_at: Some(created.into()),
            node_id: Some(node.into()),
            status: Some(TaskStatus {
                state: Some(state),
                port_status: Some(PortStatus {
                    ports: Some(vec![EndpointPortConfig {
                        published_port: Some(29501),
                        ..Default::default()
                    }]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn nodes(usable: bool) -> HashMap<String, NodeView> {
        HashMap::from([(
            "n1".to_owned(),
            NodeView {
                addr: "10.0.0.5".into(),
                usable,
            },
        )])
    }

    #[test]
    fn service_names_are_dns_labels() {
        let cases = [
            ("web-29501.inst", "web-29501-inst"),
            ("web-1.t-swarm_x-42", "web-1-t-swarm-x-42"),
            ("...", "replica"),
            ("", "replica"),
            ("a.", "a"),
            (&"x".repeat(100), &"x".repeat(63)),
            ("web-1.ünïcode", "web-1--n-code"),
        ];
        for (input, want) in cases {
            assert_eq!(service_name(input), want, "input {input:?}");
        }
    }

    #[test]
    fn service_spec_carries_labels_host_port_and_no_restart() {
        let s = service_spec("inst", &spec(), "sha256:0123", Duration::from_millis(2500));
        let labels = s.labels.clone().unwrap_or_default();
        assert!(is_owned("inst", |k| labels.get(k).map(String::as_str)));
        assert_eq!(labels[LABEL_REPLICA_NAME], "web-29501.inst");
        assert_eq!(labels[LABEL_HOST_PORT], "29501");
        assert!(labels.contains_key(LABEL_TEMPLATE));
        assert_eq!(s.name.as_deref(), Some("web-29501-inst"));
        let task = s.task_template.unwrap_or_default();
        let c = task.container_spec.unwrap_or_default();
        let clabels = c.labels.unwrap_or_default();
        assert_eq!(clabels[LABEL_SWARM_INSTANCE], "inst");
        // The plain runtime must never adopt a task container.
        assert!(!clabels.contains_key(LABEL_MANAGED_BY));
        assert!(!clabels.contains_key(LABEL_INSTANCE));
        assert_eq!(c.stop_grace_period, Some(2_500_000_000));
        assert_eq!(c.args, Some(vec!["--port".into(), "8000".into()]));
        assert_eq!(c.env, Some(vec!["A=1".into()]));
        assert_eq!(
            task.restart_policy.and_then(|r| r.condition),
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        assert_eq!(
            task.resources
                .and_then(|r| r.limits)
                .and_then(|l| l.nano_cpus),
            Some(500_000_000)
        );
        let replicas = s.mode.and_then(|m| m.replicated).and_then(|r| r.replicas);
        assert_eq!(replicas, Some(1));
        let ports = s.endpoint_spec.and_then(|e| e.ports).unwrap_or_default();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].published_port, Some(29501));
        assert_eq!(ports[0].target_port, Some(8000));
        assert_eq!(
            ports[0].publish_mode,
            Some(EndpointPortConfigPublishModeEnum::HOST)
        );
    }

    #[test]
    fn images_are_pinned_to_the_digest_or_id_the_manager_holds() {
        let id = "sha256:1d";
        let none: &[String] = &[];
        let app = ["registry.example:5000/team/app@sha256:d1".to_owned()];
        let hub = [
            "nginx@sha256:d2".to_owned(),
            "mirror/nginx@sha256:d3".to_owned(),
        ];
        let held = |repo_digests| Some(LocalImage { repo_digests, id });
        let cases = [
            ("demo:latest", held(none), id),
            ("demo", held(none), id),
            ("registry.example:5000/team/app:1.2", held(&app), &app[0]),
            ("registry.example:5000/team/app", held(&app), &app[0]),
            (
                "docker.io/library/nginx:1.27",
                held(&hub),
                "nginx@sha256:d2",
            ),
            ("mirror/nginx:1", held(&hub), "mirror/nginx@sha256:d3"),
            // A digest of another repository is not this tag's: the local id instead.
            ("other/app:1", held(&app), id),
            ("app@sha256:ab", held(&app), "app@sha256:ab"),
            ("sha256:ab", held(none), "sha256:ab"),
            ("absent:1", None, "absent:1"),
            (
                "odd:1",
                Some(LocalImage {
                    repo_digests: none,
                    id: "",
                }),
                "odd:1",
            ),
        ];
        for (image, local, want) in cases {
            assert_eq!(pinned_image(image, local), want, "{image} {local:?}");
        }
    }

    #[test]
    fn a_service_is_safe_to_delete_only_when_no_task_awaits_the_reaper() {
        let t0 = "2026-12-01T21:00:01.5Z";
        let with_desired = |state: TaskState, desired: TaskState| Task {
            desired_state: Some(desired),
            ..task("a", t0, state, "n1")
        };
        let cases: Vec<(&str, Vec<Task>, bool)> = vec![
            ("no task left (reaped)", vec![], false),
            (
                "scaled to zero, container still stopping",
                vec![with_desired(TaskState::RUNNING, TaskState::REMOVE)],
                true,
            ),
            (
                "scaled to zero, shut down, not yet reaped",
                vec![with_desired(TaskState::SHUTDOWN, TaskState::REMOVE)],
                true,
            ),
            (
                "running replica (the reaper leaves it alone)",
                vec![with_desired(TaskState::RUNNING, TaskState::RUNNING)],
                false,
            ),
            (
                "failed task of a replica never restarted",
                vec![with_desired(TaskState::FAILED, TaskState::RUNNING)],
                false,
            ),
            (
                "one of two tasks marked for removal",
                vec![
                    with_desired(TaskState::FAILED, TaskState::SHUTDOWN),
                    with_desired(TaskState::COMPLETE, TaskState::REMOVE),
                ],
                true,
            ),
            (
                "desired state unknown",
                vec![task("a", t0, TaskState::SHUTDOWN, "n1")],
                false,
            ),
        ];
        for (what, tasks, want) in cases {
            assert_eq!(awaiting_reaper(&tasks), want, "{what}");
        }
    }

    #[test]
    fn replica_runs_only_while_its_first_task_runs_on_a_usable_node() {
        let t0 = "2026-12-01T21:00:01.5Z";
        let t1 = "2026-12-01T21:00:09.25Z";
        let cases: Vec<(&str, Vec<Task>, bool, bool)> = vec![
            (
                "running on a ready node",
                vec![task("a", t0, TaskState::RUNNING, "n1")],
                true,
                true,
            ),
            (
                "node down or drained",
                vec![task("a", t0, TaskState::RUNNING, "n1")],
                false,
                false,
            ),
            (
                "still starting",
                vec![task("a", t0, TaskState::STARTING, "n1")],
                true,
                false,
            ),
            ("no task yet", vec![], true, false),
            (
                "Swarm replaced the first task",
                vec![
                    task("b", t1, TaskState::RUNNING, "n1"),
                    task("a", t0, TaskState::SHUTDOWN, "n1"),
                ],
                true,
                false,
            ),
            (
                "task on an unknown node",
                vec![task("a", t0, TaskState::RUNNING, "gone")],
                true,
                false,
            ),
            (
                "failed",
                vec![task("a", t0, TaskState::FAILED, "n1")],
                true,
                false,
            ),
        ];
        for (what, tasks, usable, want) in cases {
            let refs: Vec<&Task> = tasks.iter().collect();
            let r = replica_from_service("inst", &service(), &refs, &nodes(usable));
            assert_eq!(r.map(|r| r.running), Some(want), "{what}");
        }
    }

    #[test]
    fn replica_maps_name_address_port_and_age() {
        let tasks = [task("a", "2026-12-01T21:00:01Z", TaskState::RUNNING, "n1")];
        let refs: Vec<&Task> = tasks.iter().collect();
        let got = replica_from_service("inst", &service(), &refs, &nodes(true));
        let want = Replica {
            id: "svc1".into(),
            name: "web-29501.inst".into(),
            policy: "web".into(),
            template_hash: "h1".into(),
            host_ip: "10.0.0.5".into(),
            host_port: 29501,
            running: true,
            created_unix: unix_seconds(Some("2026-12-01T21:00:00Z")).unwrap_or(-1),
        };
        assert_eq!(got, Some(want));
        // Not placed yet: the policy's host IP from the label.
        let unplaced = replica_from_service("inst", &service(), &[], &nodes(true));
        assert_eq!(unplaced.map(|r| r.host_ip), Some("127.0.0.1".to_owned()));
    }

    #[test]
    fn foreign_idless_or_unlabelled_services_are_skipped() {
        assert_eq!(
            replica_from_service("other", &service(), &[], &nodes(true)),
            None
        );
        let mut idless = service();
        idless.id = None;
        assert_eq!(
            replica_from_service("inst", &idless, &[], &nodes(true)),
            None
        );
        let mut bare = service();
        if let Some(s) = bare.spec.as_mut() {
            s.labels = None;
        }
        assert_eq!(replica_from_service("inst", &bare, &[], &nodes(true)), None);
    }

    #[test]
    fn bad_port_label_falls_back_to_the_task_port_status() {
        let mut svc = service();
        if let Some(labels) = svc.spec.as_mut().and_then(|s| s.labels.as_mut()) {
            labels.insert(LABEL_HOST_PORT.into(), "banana".into());
        }
        let tasks = [task("a", "2026-12-01T21:00:01Z", TaskState::RUNNING, "n1")];
        let refs: Vec<&Task> = tasks.iter().collect();
        let got = replica_from_service("inst", &svc, &refs, &nodes(true));
        assert_eq!(got.map(|r| r.host_port), Some(29501));
        let none = replica_from_service("inst", &svc, &[], &nodes(true));
        assert_eq!(none.map(|r| r.host_port), Some(0));
    }

    #[test]
    fn timestamps_parse_or_give_none() {
        let cases = [
            (Some("1970-01-01T00:00:10Z"), Some(10)),
            (Some("2026-12-01T21:00:00.123456789Z"), Some(1_796_158_800)),
            (Some("0001-01-01T00:00:00Z"), None),
            (Some("yesterday"), None),
            (Some(""), None),
            (None, None),
        ];
        for (input, want) in cases {
            assert_eq!(unix_seconds(input), want, "input {input:?}");
        }
    }

    #[test]
    fn nanos_saturate() {
        assert_eq!(nanos(Duration::from_secs(1)), 1_000_000_000);
        assert_eq!(nanos(Duration::MAX), i64::MAX);
    }
}
