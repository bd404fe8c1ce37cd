//! In-process scenarios of scale to zero against the fakes, under paused time: idle →
//! zero through the drain, a held request → one replica at once, a replica that cannot
//! start → the activator learns why.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::testing::{FakeLb, FakeRuntime, Fakes};
use super::*;
use crate::activator::Registry;
use crate::signal::SignalHub;
use crate::telemetry::Telemetry;

const INSTANCE: &str = "t";
const ACTIVATOR: &str = "127.0.0.1:29001";

fn policy(image: &str, idle_seconds: u64) -> ScalingPolicy {
    let yaml = format!(
        "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {{name: web}}
spec:
  template:
    image: {image}
    containerPort: 8000
    readiness: {{httpGet: {{path: /healthz}}, periodMillis: 100, timeoutSeconds: 5}}
  replicas: {{min: 0, max: 3}}
  scaleToZero: {{idleSeconds: {idle_seconds}, maxPending: 5, timeoutSeconds: 10}}
  ports: {{hostIp: 127.0.0.1, range: 8001-8020}}
  loadBalancer: {{listen: 127.0.0.1:8080}}
  metrics: [{{requestRate: {{targetPerReplica: 10}}}}]
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
    # A 1 s rate: the last pass that sees load is the last one with requests (a 6 s
    # window would see them one pass longer and move the idle start with it).
    windows: {{stableSeconds: 1}}
  drain: {{timeoutSeconds: 30}}
"
    );
    let mut parsed =
        crate::policy::parse_str(&yaml, "zero.yaml").unwrap_or_else(|e| panic!("{e:?}"));
    parsed.remove(0).0
}

struct Harness {
    fakes: Fakes,
    _dir: tempfile::TempDir,
    op: Operator<FakeRuntime, FakeLb>,
    registry: Registry,
}

impl Harness {
    fn new() -> Self {
        let fakes = Fakes::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = Registry::new(Arc::new(Telemetry::new()));
        let addr: SocketAddr = ACTIVATOR.parse().expect("addr");
        let op = fakes.operator(INSTANCE, dir.path()).with_activator(
            registry.clone(),
            addr,
            SignalHub::new(),
        );
        Self {
            fakes,
            _dir: dir,
            op,
            registry,
        }
    }

    async fn pass(&self, p: &ScalingPolicy) -> PolicyReport {
        let mut report = self.op.reconcile(p, PassMode::Apply).await.expect("pass");
        self.op.settle(&mut report).await;
        report
    }

    fn config(&self) -> String {
        self.fakes.world().nginx_config.clone().unwrap_or_default()
    }

    fn routes_to_activator(&self) -> bool {
        let c = self.config();
        c.contains(&format!("proxy_pass http://{ACTIVATOR};"))
            && c.contains("proxy_set_header X-Autoscaler-Policy \"web\";")
            && c.contains("error_page 502 504 = @activator_unavailable;")
    }

    async fn events(&self, kind: &str) -> Vec<String> {
        self.op
            .recent_events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.message)
            .collect()
    }

    async fn condition(&self) -> Option<(bool, String, String)> {
        let state = self.op.state().await;
        state.policies.get("web").and_then(|ps| {
            ps.status
                .conditions
                .iter()
                .find(|c| c.kind == "ScaledToZero")
                .map(|c| (c.status, c.reason.clone(), c.message.clone()))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_policy_starts_at_zero_with_nginx_pointing_at_the_activator() {
    let h = Harness::new();
    let web = policy("demo:latest", 30);
    h.op.prepare(&[&web], PassMode::Apply)
        .await
        .expect("prepare");
    let report = h.pass(&web).await;
    assert!(report.plan.is_empty(), "{}", report.plan);
    assert!(h.fakes.running("web").is_empty());
    assert!(h.routes_to_activator(), "{}", h.config());
    let (status, reason, _) = h.condition().await.expect("condition");
    assert!(status && reason == "Idle");
}

#[tokio::test(start_paused = true)]
async fn a_held_request_wakes_one_replica_then_idle_scales_to_zero_through_the_drain() {
    let h = Harness::new();
    let web = policy("demo:latest", 30);
    let mut wakes = h.op.activation_wakes().expect("activator");
    h.op.prepare(&[&web], PassMode::Apply)
        .await
        .expect("prepare");
    h.pass(&web).await;

    // A request reaches the activator: held, and the worker is asked at once.
    let held = h.registry.admit("web").expect("admitted");
    assert_eq!(wakes.recv().await.as_deref(), Some("web"));
    let report = h.pass(&web).await;
    let d = report.decision.as_ref().expect("decision");
    assert_eq!((d.current, d.desired), (0, 1), "{d}");
    assert!(d.reason.contains("1 request held at zero"), "{d}");
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001]));
    assert!(
        !h.routes_to_activator(),
        "warm: plain upstream\n{}",
        h.config()
    );
    // The activator learned where to send it.
    assert_eq!(
        held.ready.borrow().addrs,
        vec!["127.0.0.1:8001".parse::<SocketAddr>().expect("addr")]
    );
    drop(held);

    // Traffic keeps it up; each pass sees load.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(5)).await;
        h.fakes.add_requests("web", 20.0);
        let r = h.pass(&web).await;
        assert_eq!(r.decision.as_ref().map(|d| d.desired), Some(1));
    }
    // Quiet: not yet idle for 30 s...
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(5)).await;
        let r = h.pass(&web).await;
        assert_eq!(
            r.decision.as_ref().map(|d| d.desired),
            Some(1),
            "{:?}",
            r.decision
        );
    }
    // ... then it is: to zero, through the drain (upstream emptied first).
    tokio::time::advance(Duration::from_secs(6)).await;
    let r = h.pass(&web).await;
    let d = r.decision.as_ref().expect("decision");
    assert_eq!(d.desired, 0, "{d}");
    assert!(r.converged(), "{:?}", r.error);
    assert!(h.fakes.running("web").is_empty());
    assert!(h.routes_to_activator(), "{}", h.config());
    let events = h.events("ScaledToZero").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].starts_with("ScaledToZero after 3"), "{events:?}");
    assert!(h.events("ScaledDown").await.is_empty());
    assert!(h.registry.held("web") == 0);
    // At zero without held requests it stays there, however long.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(h.pass(&web).await.plan.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_cannot_start_tells_the_activator_and_the_condition_why() {
    let h = Harness::new();
    let web = policy("missing:latest", 30);
    h.fakes
        .world()
        .missing_images
        .insert("missing:latest".to_owned());
    h.op.prepare(&[&web], PassMode::Apply)
        .await
        .expect("prepare");
    let held = h.registry.admit("web").expect("admitted");
    let report = h.pass(&web).await;
    assert!(!report.converged());
    let ready = held.ready.borrow().clone();
    assert!(ready.addrs.is_empty());
    let why = ready.error.expect("error published");
    assert!(why.contains("missing:latest"), "{why}");
    let (status, reason, message) = h.condition().await.expect("condition");
    assert!(status && reason == "Activating", "{reason}: {message}");
    let state = h.op.state().await;
    let able = state.policies["web"]
        .status
        .conditions
        .iter()
        .find(|c| c.kind == "AbleToScale")
        .expect("AbleToScale");
    assert!(
        !able.status && able.message.contains("missing:latest"),
        "{able:?}"
    );
    assert!(h.routes_to_activator(), "{}", h.config());
}

#[tokio::test(start_paused = true)]
async fn without_an_activator_an_empty_scale_to_zero_upstream_answers_503_itself() {
    let fakes = Fakes::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let op = fakes.operator(INSTANCE, dir.path());
    let web = policy("demo:latest", 30);
    op.prepare(&[&web], PassMode::Apply).await.expect("prepare");
    let config = fakes.world().nginx_config.clone().unwrap_or_default();
    assert!(
        !config.contains("proxy_pass http://127.0.0.1:29001"),
        "{config}"
    );
    assert!(config.contains("return 503;"), "{config}");
    assert!(op.activation_wakes().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_without_an_activator_renders_the_live_one_unchanged() {
    let h = Harness::new();
    let web = policy("demo:latest", 30);
    h.op.prepare(&[&web], PassMode::Apply)
        .await
        .expect("prepare");
    let live = h.config();
    // `diff`: an operator without an activator, on the same world.
    let dir = tempfile::tempdir().expect("temp dir");
    let dry = h.fakes.operator(INSTANCE, dir.path());
    dry.prepare(&[&web], PassMode::DryRun)
        .await
        .expect("prepare");
    assert_eq!(
        dry.upstream_of(&web)
            .hold
            .map(|t| t.addr.to_string())
            .as_deref(),
        Some(ACTIVATOR),
        "{live}"
    );
}
