//! Integration tests of `runtime::DockerRuntime` on the real Docker engine.
//!
//! Each test has its own instance label, name prefix and loopback ports (18600-18799).
//! The test image `autoscaler-test-runtime:latest` is built here `FROM scratch` from
//! `examples/tiny_http.rs` (std only, static, ~1 s), so nothing is pulled. A drop guard
//! removes every container carrying the test's instance label, even on failure.
//! Without a Docker engine the tests skip, unless `CI=true` (then they fail).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoscaler::runtime::ports::first_free_port;
use autoscaler::runtime::probe::{probe_once, wait_ready};
use autoscaler::runtime::{
    DockerRuntime, LABEL_HOST_IP, LABEL_HOST_PORT, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_POLICY,
    LABEL_TEMPLATE_HASH, ReplicaSpec, Runtime, RuntimeError, RuntimeEvent,
};
use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;

const IMAGE: &str = "autoscaler-test-runtime:latest";
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Label on containers a test makes by hand (decoys), so the guard removes them too.
const LABEL_TEST_OWNER: &str = "autoscaler-test/owner";

/// Builds the test image once per test process; `Err` says why it could not.
fn test_image() -> Result<(), String> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT.get_or_init(build_test_image).clone()
}

fn build_test_image() -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/tiny_http.rs");
    let binary = dir.path().join("tiny_http");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let out = Command::new(rustc)
        .args(["--edition", "2024", "-O", "-C", "strip=symbols"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["--target", "x86_64-unknown-linux-gnu"])
        .arg(&source)
        .arg("-o")
        .arg(&binary)
        .output()
        .map_err(|e| format!("running rustc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "rustc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY tiny_http /tiny_http\nENTRYPOINT [\"/tiny_http\"]\n",
    )
    .map_err(|e| e.to_string())?;
    let out = Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(dir.path())
        .output()
        .map_err(|e| format!("running docker build: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "docker build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A test's runtime, raw client and unique identity; removes its containers on drop.
struct Fixture {
    rt: DockerRuntime,
    docker: Docker,
    instance: String,
    extra_instances: Vec<String>,
}

impl Fixture {
    /// Connects and builds the image; `None` (skip) without an engine unless `CI=true`.
    async fn new(test: &str) -> Option<Fixture> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let instance = format!("rtest-{test}-{}-{nanos}", std::process::id());
        let rt = match DockerRuntime::connect(&instance).await {
            Ok(rt) => rt,
            Err(e) => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("Docker engine required in CI: {e}");
                }
                eprintln!("SKIP {test}: no Docker engine: {e}");
                return None;
            }
        };
        test_image().expect("building the test image");
        let docker = Docker::connect_with_defaults()
            .unwrap()
            .negotiate_version()
            .await
            .unwrap();
        Some(Fixture {
            rt,
            docker,
            instance,
            extra_instances: Vec::new(),
        })
    }

    /// A spec of policy `policy` on `port`, named `<instance>-<port>`.
    fn spec(&self, policy: &str, port: u16) -> ReplicaSpec {
        ReplicaSpec {
            policy: policy.to_string(),
            name: format!("{}-{port}", self.instance),
            template_hash: "hash-1".to_string(),
            image: IMAGE.to_string(),
            args: vec!["--port".into(), "8000".into()],
            env: BTreeMap::from([("GREETING".into(), "hi".into())]),
            container_port: 8000,
            host_ip: "127.0.0.1".to_string(),
            host_port: port,
            nano_cpus: Some(250_000_000),
            memory_bytes: Some(64 * 1024 * 1024),
        }
    }

    /// A free port of `range`.
    fn port(&self, range: (u16, u16)) -> u16 {
        first_free_port(LOOPBACK, range, &BTreeSet::new()).expect("a free port in the test block")
    }

    /// Creates and starts a container by hand with `labels` (plus the test-owner label).
    async fn create_raw(&self, name: &str, port: u16, labels: &[(&str, &str)]) -> String {
        let mut all: HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert(LABEL_TEST_OWNER.into(), self.instance.clone());
        let body = ContainerCreateBody {
            image: Some(IMAGE.into()),
            cmd: Some(vec!["--port".into(), "8000".into()]),
            exposed_ports: Some(vec!["8000/tcp".into()]),
            labels: Some(all),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    "8000/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(port.to_string()),
                    }]),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(name.to_string()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(Some(options), body)
            .await
            .unwrap();
        self.docker
            .start_container(&created.id, None)
            .await
            .unwrap();
        created.id
    }

    /// Whether a container (any owner) exists and runs.
    async fn is_running(&self, id: &str) -> Option<bool> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Some(c.state.and_then(|s| s.running).unwrap_or(false)),
            Err(_) => None,
        }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut filters = vec![
            format!("{LABEL_INSTANCE}={}", self.instance),
            format!("{LABEL_TEST_OWNER}={}", self.instance),
        ];
        filters.extend(
            self.extra_instances
                .iter()
                .map(|i| format!("{LABEL_INSTANCE}={i}")),
        );
        let docker = self.docker.clone();
        // Drop may run inside the test's runtime: clean up on a thread with its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                for filter in filters {
                    let options = ListContainersOptions {
                        all: true,
                        filters: Some(HashMap::from([("label".to_string(), vec![filter])])),
                        ..Default::default()
                    };
                    let Ok(list) = docker.list_containers(Some(options)).await else {
                        continue;
                    };
                    for id in list.into_iter().filter_map(|c| c.id) {
                        let force = RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        };
                        let _ = docker.remove_container(&id, Some(force)).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new(LOOPBACK, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_replica_is_listed_labelled_and_serves_on_its_port() {
    let Some(fx) = Fixture::new("create").await else {
        return;
    };
    let port = fx.port((18600, 18619));
    let spec = fx.spec("web", port);
    let created = fx.rt.create(&spec).await.unwrap();

    assert_eq!(created.name, spec.name);
    assert_eq!(created.policy, "web");
    assert_eq!(created.template_hash, "hash-1");
    assert_eq!(
        (created.host_ip.as_str(), created.host_port),
        ("127.0.0.1", port)
    );
    assert!(created.running);
    let age = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - created.created_unix;
    assert!(
        (0..60).contains(&age),
        "created_unix {} is {age} s old",
        created.created_unix
    );

    wait_ready(
        addr(port),
        "/healthz",
        Duration::from_millis(50),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(fx.rt.list().await.unwrap(), vec![created.clone()]);

    let inspected = fx
        .docker
        .inspect_container(&created.id, None)
        .await
        .unwrap();
    let config = inspected.config.unwrap();
    let labels = config.labels.unwrap();
    let want = [
        (LABEL_MANAGED_BY, "autoscaler"),
        (LABEL_INSTANCE, fx.instance.as_str()),
        (LABEL_POLICY, "web"),
        (LABEL_TEMPLATE_HASH, "hash-1"),
        (LABEL_HOST_PORT, &port.to_string()),
        (LABEL_HOST_IP, "127.0.0.1"),
    ];
    for (k, v) in want {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    assert_eq!(config.stop_signal.as_deref(), Some("SIGTERM"));
    assert!(
        config
            .env
            .unwrap_or_default()
            .contains(&"GREETING=hi".to_string())
    );
    let host = inspected.host_config.unwrap();
    assert_eq!(
        host.restart_policy
            .and_then(|r| r.name)
            .map(|n| n.to_string()),
        Some("no".to_string())
    );
    assert_eq!(host.nano_cpus, Some(250_000_000));
    assert_eq!(host.memory, Some(64 * 1024 * 1024));

    // The port is now taken: the allocator must skip it.
    let next = first_free_port(LOOPBACK, (port, 18619), &BTreeSet::new());
    assert_ne!(next, Some(port));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmanaged_lookalike_is_invisible_and_never_touched() {
    let Some(fx) = Fixture::new("lookalike").await else {
        return;
    };
    let port = fx.port((18620, 18639));
    // Same image, a name like a replica's, even this instance's label: but no managed-by.
    let decoy = fx
        .create_raw(
            &format!("{}-{port}", fx.instance),
            port,
            &[(LABEL_INSTANCE, &fx.instance), (LABEL_POLICY, "web")],
        )
        .await;
    // A second decoy claims managed-by with the wrong value.
    let port2 = fx.port((port + 1, 18639));
    let decoy2 = fx
        .create_raw(
            &format!("{}-web-{port2}", fx.instance),
            port2,
            &[
                (LABEL_MANAGED_BY, "someone-else"),
                (LABEL_INSTANCE, &fx.instance),
                (LABEL_POLICY, "web"),
            ],
        )
        .await;

    assert_eq!(fx.rt.list().await.unwrap(), vec![]);
    for id in [&decoy, &decoy2] {
        let stop = fx.rt.stop(id, Duration::ZERO).await;
        assert!(
            matches!(stop, Err(RuntimeError::NotOwned { .. })),
            "stop: {stop:?}"
        );
        let remove = fx.rt.remove(id).await;
        assert!(
            matches!(remove, Err(RuntimeError::NotOwned { .. })),
            "remove: {remove:?}"
        );
        assert_eq!(
            fx.is_running(id).await,
            Some(true),
            "decoy {id} must survive"
        );
    }
    // By name too.
    let by_name = fx.rt.remove(&format!("{}-{port}", fx.instance)).await;
    assert!(
        matches!(by_name, Err(RuntimeError::NotOwned { .. })),
        "{by_name:?}"
    );
    assert_eq!(fx.is_running(&decoy).await, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_sees_and_touches_nothing_of_ours() {
    let Some(mut fx) = Fixture::new("instance").await else {
        return;
    };
    let other_id = format!("{}-other", fx.instance);
    fx.extra_instances.push(other_id.clone());
    let other = DockerRuntime::connect(&other_id).await.unwrap();
    let port = fx.port((18640, 18659));
    let ours = fx.rt.create(&fx.spec("web", port)).await.unwrap();

    assert_eq!(other.list().await.unwrap(), vec![]);
    let stop = other.stop(&ours.id, Duration::ZERO).await;
    assert!(
        matches!(stop, Err(RuntimeError::NotOwned { .. })),
        "{stop:?}"
    );
    let remove = other.remove(&ours.id).await;
    assert!(
        matches!(remove, Err(RuntimeError::NotOwned { .. })),
        "{remove:?}"
    );
    assert_eq!(fx.rt.list().await.unwrap().len(), 1);
    assert!(
        DockerRuntime::connect("  ").await.is_err(),
        "an empty instance id is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_kills_after_grace() {
    let Some(fx) = Fixture::new("stop").await else {
        return;
    };
    let polite_port = fx.port((18660, 18679));
    let polite = fx.rt.create(&fx.spec("web", polite_port)).await.unwrap();
    let stubborn_port = fx.port((polite_port + 1, 18679));
    let mut spec = fx.spec("web", stubborn_port);
    spec.args.push("--ignore-term".into());
    let stubborn = fx.rt.create(&spec).await.unwrap();
    for port in [polite_port, stubborn_port] {
        wait_ready(
            addr(port),
            "/",
            Duration::from_millis(50),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }

    // A process that exits on SIGTERM stops long before a generous grace.
    let start = Instant::now();
    fx.rt
        .stop(&polite.id, Duration::from_secs(20))
        .await
        .unwrap();
    let polite_took = start.elapsed();
    assert!(
        polite_took < Duration::from_secs(5),
        "polite stop took {polite_took:?}"
    );

    // One that ignores SIGTERM is killed once the grace runs out.
    let start = Instant::now();
    fx.rt
        .stop(&stubborn.id, Duration::from_secs(2))
        .await
        .unwrap();
    let stubborn_took = start.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_secs(8)).contains(&stubborn_took),
        "stubborn stop took {stubborn_took:?}"
    );
    println!("stop: polite {polite_took:?}, stubborn (grace 2s) {stubborn_took:?}");

    let listed = fx.rt.list().await.unwrap();
    assert_eq!(
        listed.len(),
        2,
        "stopped replicas are still listed: {listed:?}"
    );
    assert!(listed.iter().all(|r| !r.running), "{listed:?}");
    assert!(!probe_once(addr(polite_port), "/", Duration::from_millis(500)).await);
    // Stopping again is fine.
    fx.rt
        .stop(&polite.id, Duration::from_secs(1))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_is_idempotent_and_frees_the_port() {
    let Some(fx) = Fixture::new("remove").await else {
        return;
    };
    let port = fx.port((18680, 18699));
    let replica = fx.rt.create(&fx.spec("web", port)).await.unwrap();
    fx.rt.remove(&replica.id).await.unwrap();
    fx.rt.remove(&replica.id).await.unwrap();
    fx.rt
        .stop(&replica.id, Duration::from_secs(1))
        .await
        .unwrap();
    fx.rt.remove("rtest-no-such-container").await.unwrap();
    assert_eq!(fx.rt.list().await.unwrap(), vec![]);
    assert_eq!(fx.is_running(&replica.id).await, None);
    // The port is bindable again (the engine's proxy let go of it).
    let deadline = Instant::now() + Duration::from_secs(3);
    while TcpListener::bind(addr(port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "port {port} still held after remove"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_die_of_a_replica_killed_from_outside() {
    let Some(fx) = Fixture::new("events").await else {
        return;
    };
    let port = fx.port((18700, 18719));
    let replica = fx.rt.create(&fx.spec("web", port)).await.unwrap();
    let mut events = fx.rt.events();
    let first = tokio::time::timeout(Duration::from_secs(2), events.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(RuntimeEvent::Resync)))),
        "{first:?}"
    );

    // A foreign container's death must not show up.
    let decoy_port = fx.port((port + 1, 18719));
    let decoy = fx
        .create_raw(
            &format!("{}-decoy", fx.instance),
            decoy_port,
            &[(LABEL_POLICY, "web")],
        )
        .await;
    fx.docker
        .kill_container(&decoy, None::<KillContainerOptions>)
        .await
        .unwrap();

    let killed_at = Instant::now();
    fx.docker
        .kill_container(&replica.id, None::<KillContainerOptions>)
        .await
        .unwrap();
    let deadline = Duration::from_secs(3);
    let mut seen = Vec::new();
    let latency = loop {
        let remaining = deadline.saturating_sub(killed_at.elapsed());
        match tokio::time::timeout(remaining, events.next()).await {
            Ok(Some(Ok(RuntimeEvent::Container { id, policy, action }))) => {
                assert_ne!(id, decoy, "a foreign container's event leaked: {action}");
                if id == replica.id && action == "die" {
                    assert_eq!(policy, "web");
                    break killed_at.elapsed();
                }
                seen.push(action);
            }
            other => panic!("no die event within {deadline:?}: got {other:?} after {seen:?}"),
        }
    };
    println!("events: die reported {latency:?} after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_start_leaves_no_container_behind() {
    let Some(fx) = Fixture::new("busyport").await else {
        return;
    };
    let port = fx.port((18740, 18759));
    let _held = TcpListener::bind(addr(port)).unwrap();
    let got = fx.rt.create(&fx.spec("web", port)).await;
    assert!(
        matches!(got, Err(RuntimeError::Start { host_port, .. }) if host_port == port),
        "{got:?}"
    );
    assert_eq!(fx.rt.list().await.unwrap(), vec![]);

    let mut spec = fx.spec("web", port + 1);
    spec.image = "autoscaler-test-no-such-image:never".into();
    let got = fx.rt.create(&spec).await;
    assert!(
        matches!(got, Err(RuntimeError::ImageMissing { .. })),
        "{got:?}"
    );
    assert!(!got.unwrap_err().is_transient());
    assert_eq!(fx.rt.list().await.unwrap(), vec![]);
}

#[test]
fn first_free_port_skips_a_port_held_by_a_listener() {
    let range = (18720, 18739);
    let Some(low) = first_free_port(LOOPBACK, range, &BTreeSet::new()) else {
        panic!("no free port in {range:?}");
    };
    let _held = TcpListener::bind(addr(low)).unwrap();
    let next = first_free_port(LOOPBACK, range, &BTreeSet::new());
    assert!(next.is_some_and(|p| p > low), "held {low}, got {next:?}");
    let used: BTreeSet<u16> = next.into_iter().collect();
    let after = first_free_port(LOOPBACK, range, &used);
    assert!(
        after.is_some_and(|p| Some(p) > next),
        "used {used:?}, got {after:?}"
    );
    assert_eq!(
        first_free_port(LOOPBACK, (low, low), &BTreeSet::new()),
        None
    );
}
