//! In-process scenarios of the pass against the fakes of [`super::testing`]: every
//! lifecycle shape in milliseconds of (paused) time. The real engine and nginx are tested
//! in `tests/`.

use std::collections::BTreeSet;
use std::time::Duration;

use super::testing::{self, Call, FakeLb, FakeRuntime, Fakes};
use super::*;
use crate::metrics::SeriesValue;

const INSTANCE: &str = "t";

/// A policy with fast readiness, no scale-down window and a 1 s stable window (each
/// pass's rate is the last second's), so scenarios stay short.
fn policy_yaml(name: &str, min: u32, max: u32, listen: u16, range: &str, extra: &str) -> String {
    format!(
        "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {{name: {name}}}
spec:
  template:
    image: demo:latest
    containerPort: 8000
    readiness: {{httpGet: {{path: /healthz}}, periodMillis: 100, timeoutSeconds: 5}}
{extra}  replicas: {{min: {min}, max: {max}}}
  ports: {{hostIp: 127.0.0.1, range: {range}}}
  loadBalancer: {{listen: 127.0.0.1:{listen}}}
  metrics: [{{requestRate: {{targetPerReplica: 10}}}}]
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
    windows: {{stableSeconds: 1}}
  drain: {{timeoutSeconds: 30}}
"
    )
}

fn parse(yaml: &str) -> ScalingPolicy {
    let mut parsed = crate::policy::parse_str(yaml, "test.yaml")
        .unwrap_or_else(|e| panic!("test policy does not parse: {e:?}"));
    parsed.remove(0).0
}

fn web(min: u32, max: u32) -> ScalingPolicy {
    parse(&policy_yaml("web", min, max, 8080, "8001-8020", ""))
}

/// A world, a state directory and an operator over them; `restart` builds a new operator
/// on the same world and state (what a crash and a restart leave).
struct Harness {
    fakes: Fakes,
    dir: tempfile::TempDir,
    op: Operator<FakeRuntime, FakeLb>,
}

impl Harness {
    fn new() -> Self {
        let fakes = Fakes::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let op = Self::operator(&fakes, &dir);
        Self { fakes, dir, op }
    }

    fn operator(fakes: &Fakes, dir: &tempfile::TempDir) -> Operator<FakeRuntime, FakeLb> {
        fakes.operator(INSTANCE, dir.path())
    }

    fn restart(&mut self) {
        self.op = Self::operator(&self.fakes, &self.dir);
    }

    /// A `reconcile --once` of `policies`: prepare, one pass each, wait for retirements,
    /// then prune what `pruned` names.
    async fn once(&self, policies: &[&ScalingPolicy], pruned: &[&str]) -> Vec<PolicyReport> {
        self.op
            .prepare(policies, PassMode::Apply)
            .await
            .expect("prepare");
        let mut reports = Vec::new();
        for p in policies {
            let mut report = self.op.reconcile(p, PassMode::Apply).await.expect("pass");
            self.op.settle(&mut report).await;
            reports.push(report);
        }
        for name in pruned {
            let report = self
                .op
                .remove_policy(name, Duration::from_secs(1), PassMode::Apply, None)
                .await
                .expect("remove");
            reports.push(report);
        }
        reports
    }

    /// One daemon-style pass (no prepare, no waiting for retirements).
    async fn pass(&self, policy: &ScalingPolicy) -> PolicyReport {
        self.op
            .reconcile(policy, PassMode::Apply)
            .await
            .expect("pass")
    }

    async fn dry(&self, policy: &ScalingPolicy) -> PolicyReport {
        self.op
            .reconcile(policy, PassMode::DryRun)
            .await
            .expect("dry run")
    }

    fn ports(&self, policy: &str) -> Vec<u16> {
        self.fakes
            .running(policy)
            .into_iter()
            .map(|(_, p, _)| p)
            .collect()
    }

    /// One second of traffic at `per_replica` requests per replica, then a pass.
    async fn load_pass(&self, policy: &ScalingPolicy, per_replica: f64) -> PolicyReport {
        tokio::time::advance(Duration::from_secs(1)).await;
        self.fakes.add_requests(&policy.metadata.name, per_replica);
        self.pass(policy).await
    }

    async fn events_of(&self, kind: &str) -> Vec<String> {
        self.op
            .recent_events()
            .into_iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.message)
            .collect()
    }
}

fn creates(calls: &[Call]) -> Vec<(String, u16)> {
    calls
        .iter()
        .filter_map(|c| match c {
            Call::Create(n, p) => Some((n.clone(), *p)),
            _ => None,
        })
        .collect()
}

fn planned_creates(plan: &Plan) -> Vec<(String, u16)> {
    plan.steps
        .iter()
        .filter_map(|s| match s {
            Step::Create { name, host_port } => Some((name.clone(), *host_port)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn first_pass_from_nothing_creates_min_replicas_and_serves_them() {
    let h = Harness::new();
    let web = web(2, 5);
    let reports = h.once(&[&web], &[]).await;
    assert!(reports[0].converged(), "{:?}", reports[0].error);
    assert_eq!(h.ports("web"), vec![8001, 8002]);
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001, 8002]));
    let names: Vec<String> = h.fakes.running("web").into_iter().map(|r| r.0).collect();
    assert_eq!(names, vec!["web-8001.t", "web-8002.t"]);
}

#[tokio::test(start_paused = true)]
async fn a_pass_on_a_converged_policy_changes_nothing() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    h.fakes.take_calls();
    let reports = h.once(&[&web], &[]).await;
    assert!(reports[0].plan.is_empty(), "{}", reports[0].plan);
    let changes: Vec<Call> = h
        .fakes
        .take_calls()
        .into_iter()
        .filter(|c| !matches!(c, Call::Apply(_)))
        .collect();
    assert!(changes.is_empty(), "{changes:?}");
}

#[tokio::test(start_paused = true)]
async fn the_runtime_sees_exactly_the_steps_diff_printed() {
    let h = Harness::new();
    let web = web(3, 5);
    h.op.prepare(&[&web], PassMode::DryRun)
        .await
        .expect("prepare");
    let dry = h.dry(&web).await;
    h.fakes.take_calls();
    let reports = h.once(&[&web], &[]).await;
    assert_eq!(reports[0].plan, dry.plan, "apply planned what diff printed");
    assert_eq!(creates(&h.fakes.take_calls()), planned_creates(&dry.plan));
    assert_eq!(reports[0].done, dry.plan.steps);
}

#[tokio::test(start_paused = true)]
async fn load_scales_up_and_its_end_scales_back_down() {
    let h = Harness::new();
    let web = web(1, 6);
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 0.0).await;
    // 35 req/s on one replica, target 10: 4 replicas.
    let up = h.load_pass(&web, 35.0).await;
    assert!(up.converged());
    assert_eq!(up.decision.as_ref().map(|d| d.desired), Some(4));
    assert_eq!(h.ports("web"), vec![8001, 8002, 8003, 8004]);
    assert_eq!(
        h.fakes.upstream_ports("web"),
        Some(vec![8001, 8002, 8003, 8004])
    );
    let ups = h.events_of("ScaledUp").await;
    assert_eq!(ups.len(), 2, "0→1 and 1→4: {ups:?}");
    assert!(ups[1].starts_with("ScaledUp 1→4"), "{ups:?}");
    // Idle: back to min; the newest go first.
    h.load_pass(&web, 0.0).await;
    let down = h.load_pass(&web, 0.0).await;
    assert_eq!(down.decision.as_ref().map(|d| d.desired), Some(1));
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001]));
    h.op.settle(&mut PolicyReport::planned("web", None, Plan::default()))
        .await;
    assert_eq!(h.ports("web"), vec![8001]);
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_replaces_every_replica_and_never_serves_fewer() {
    let h = Harness::new();
    let v1 = web(3, 5);
    h.once(&[&v1], &[]).await;
    let v2 = parse(&policy_yaml(
        "web",
        3,
        5,
        8080,
        "8001-8020",
        "    env: {VERSION: \"2\"}\n",
    ));
    h.fakes.take_calls();
    let reports = h.once(&[&v2], &[]).await;
    assert!(reports[0].converged(), "{:?}", reports[0].error);
    let new_hash = crate::plan::template_hash(&v2);
    let running = h.fakes.running("web");
    assert_eq!(running.len(), 3);
    assert!(running.iter().all(|r| r.2 == new_hash), "{running:?}");
    // Every upstream the roll applied kept at least 3 servers.
    for call in h.fakes.take_calls() {
        if let Call::Apply(set) = call {
            let n = set.get("web").map_or(0, Vec::len);
            assert!(n >= 3, "an apply served only {n}: {set:?}");
        }
    }
    assert!(h.once(&[&v2], &[]).await[0].plan.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_renamed_policy_takes_over_its_listen_only_when_its_replicas_are_ready() {
    let h = Harness::new();
    let old = parse(&policy_yaml("old", 2, 5, 8080, "8001-8020", ""));
    h.once(&[&old], &[]).await;
    h.op.record_sources(&[("old".into(), "p.yaml".into())])
        .await
        .expect("sources");
    let new = parse(&policy_yaml("new", 2, 5, 8080, "8001-8020", ""));
    h.fakes.take_calls();
    let reports = h.once(&[&new], &["old"]).await;
    assert!(reports.iter().all(PolicyReport::converged));
    // Converged in one pass: the new replicas serve, the old ones are gone.
    assert_eq!(h.ports("old"), Vec::<u16>::new());
    assert_eq!(h.ports("new").len(), 2);
    assert_eq!(h.fakes.upstream_ports("old"), None);
    // The listen was never served by an empty upstream.
    for call in h.fakes.take_calls() {
        if let Call::Apply(set) = call {
            assert_eq!(set.len(), 1, "exactly one policy serves 8080: {set:?}");
            assert!(
                set.values().all(|s| !s.is_empty()),
                "empty upstream: {set:?}"
            );
        }
    }
    assert!(h.once(&[&new], &[]).await[0].plan.is_empty());
}

#[tokio::test(start_paused = true)]
async fn down_removes_what_it_observes_even_without_any_state() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    // The state directory is lost; the containers and nginx are not.
    std::fs::remove_dir_all(h.dir.path()).expect("rm state");
    let mut h = h;
    h.restart();
    h.op.prepare(&[&web], PassMode::DryRun)
        .await
        .expect("prepare");
    let report =
        h.op.remove_policy("web", Duration::from_secs(1), PassMode::Apply, None)
            .await
            .expect("down");
    assert!(report.converged(), "{:?}", report.error);
    assert!(h.fakes.ids("web").is_empty());
    assert_eq!(h.fakes.upstream_ports("web"), None);
}

#[tokio::test(start_paused = true)]
async fn a_teardown_abandoned_because_the_policy_came_back_keeps_its_replicas() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    // Long drains: the teardown is still draining when the policy comes back.
    for port in [8001, 8002] {
        h.fakes.world().in_flight.insert(port, 3.0);
    }
    let came_back = tokio_util::sync::CancellationToken::new();
    let teardown = h.op.remove_policy(
        "web",
        Duration::from_secs(30),
        PassMode::Apply,
        Some(came_back.clone()),
    );
    let readd = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        came_back.cancel();
    };
    let (report, ()) = tokio::join!(teardown, readd);
    let report = report.expect("teardown");
    // The drains were in flight; the re-added policy's next pass must not start cold.
    let state = h.op.state().await;
    assert!(
        state.policies.contains_key("web"),
        "state was wiped: {report:?}"
    );
    h.fakes.world().in_flight.clear();
    let again = h.pass(&web).await;
    assert!(again.converged());
    assert_eq!(h.fakes.upstream_ports("web").map(|p| p.len()), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_create_failing_in_the_middle_of_a_batch_stops_the_pass_and_the_next_converges() {
    let h = Harness::new();
    let web = web(1, 6);
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 0.0).await;
    h.fakes.world().fail_creates = 1;
    let failed = h.load_pass(&web, 45.0).await;
    let (step, _) = failed.error.as_ref().expect("a create failed");
    assert!(matches!(step, Step::Create { .. }), "{step}");
    let ups = h.events_of("ScaledUp").await;
    assert_eq!(ups.len(), 1, "no scale event for a failed step: {ups:?}");
    assert_eq!(h.events_of("StepFailed").await.len(), 1);
    // Nothing half-made is served; the next pass creates what is missing.
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001]));
    let next = h.load_pass(&web, 45.0).await;
    assert!(next.converged(), "{:?}", next.error);
    // Every replica the failed pass started is now served: none is left orphaned.
    assert_eq!(h.fakes.upstream_ports("web"), Some(h.ports("web")));
    assert!(h.ports("web").len() >= 4, "{:?}", h.ports("web"));
}

#[tokio::test(start_paused = true)]
async fn ports_held_by_other_processes_are_planned_around() {
    let h = Harness::new();
    h.fakes.world().foreign_ports.insert(8001);
    let web = web(2, 5);
    h.op.prepare(&[&web], PassMode::DryRun)
        .await
        .expect("prepare");
    let dry = h.dry(&web).await;
    assert_eq!(
        planned_creates(&dry.plan),
        vec![("web-8002.t".into(), 8002), ("web-8003.t".into(), 8003)]
    );
    let reports = h.once(&[&web], &[]).await;
    assert_eq!(
        reports[0].done, dry.plan.steps,
        "output names what was done"
    );
    assert_eq!(h.ports("web"), vec![8002, 8003]);
}

#[tokio::test(start_paused = true)]
async fn a_port_taken_after_planning_fails_its_step_and_the_next_pass_moves() {
    let h = Harness::new();
    let web = web(1, 5);
    h.op.prepare(&[&web], PassMode::Apply)
        .await
        .expect("prepare");
    // Free when the pass observes it, taken by the time the create runs.
    h.fakes.world().taken_after_checks.insert(8001, 1);
    let report = h.pass(&web).await;
    assert_eq!(
        planned_creates(&report.plan),
        vec![("web-8001.t".into(), 8001)]
    );
    let (step, e) = report.error.as_ref().expect("the create failed");
    assert!(
        matches!(
            step,
            Step::Create {
                host_port: 8001,
                ..
            }
        ),
        "{step}"
    );
    assert!(
        matches!(e, ReconcileError::PortTaken { port: 8001, .. }),
        "{e}"
    );
    assert!(
        h.fakes.ids("web").is_empty(),
        "nothing was created on another port"
    );
    let next = h.pass(&web).await;
    assert_eq!(
        planned_creates(&next.plan),
        vec![("web-8002.t".into(), 8002)]
    );
    assert!(next.converged());
    assert_eq!(h.ports("web"), vec![8002]);
}

#[tokio::test(start_paused = true)]
async fn a_container_of_another_instance_named_like_ours_does_not_block_creates() {
    let h = Harness::new();
    // Another operator instance (or anyone) already has `web-8001` and `web-8002`,
    // stopped or not: the engine refuses a second container of either name.
    h.fakes
        .world()
        .foreign_names
        .extend(["web-8001".to_owned(), "web-8002".to_owned()]);
    let web = web(2, 5);
    let reports = h.once(&[&web], &[]).await;
    assert!(reports[0].converged(), "{:?}", reports[0].error);
    assert_eq!(h.ports("web"), vec![8001, 8002]);
}

#[tokio::test(start_paused = true)]
async fn a_replica_killed_from_outside_is_replaced() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    h.fakes.kill_port(8001);
    let report = h.pass(&web).await;
    assert!(report.converged());
    h.op.settle(&mut PolicyReport::planned("web", None, Plan::default()))
        .await;
    assert_eq!(h.fakes.running("web").len(), 2);
    assert_eq!(
        h.fakes.ids("web").len(),
        2,
        "the dead container was removed"
    );
    let served = h.fakes.upstream_ports("web").unwrap_or_default();
    assert_eq!(served.len(), 2);
    assert!(!served.contains(&8001) || h.ports("web").contains(&8001));
}

#[tokio::test(start_paused = true)]
async fn a_non_finite_counter_is_missing_data_never_stored() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 1.0).await;
    for c in h.fakes.world().containers.values_mut() {
        c.counter = Some(f64::NAN);
    }
    let report = h.load_pass(&web, 0.0).await;
    assert!(report.converged());
    assert_eq!(
        report.decision.as_ref().map(|d| d.desired),
        Some(2),
        "no scale-down"
    );
    let state = h.op.state().await;
    assert!(
        state.policies["web"]
            .samples
            .values()
            .all(|s| s.value.is_finite()),
        "a non-finite sample was stored"
    );
    // Whatever its layout, no sample on disk is anything but a number.
    for (path, bytes) in snapshot(h.dir.path()) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let mut stack = vec![&json];
        while let Some(v) = stack.pop() {
            if let Some(samples) = v.get("samples").and_then(|s| s.as_object()) {
                for (key, sample) in samples {
                    assert!(
                        sample
                            .get("value")
                            .is_some_and(serde_json::Value::is_number),
                        "{}: sample {key} is {sample}",
                        path.display()
                    );
                }
            }
            match v {
                serde_json::Value::Object(m) => stack.extend(m.values()),
                serde_json::Value::Array(a) => stack.extend(a.iter()),
                _ => {}
            }
        }
    }
    assert!(!h.events_of("MetricDropped").await.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_listen_nginx_cannot_bind_fails_only_its_own_policy() {
    let h = Harness::new();
    let a = parse(&policy_yaml("a", 1, 3, 8080, "8001-8010", ""));
    let b = parse(&policy_yaml("b", 1, 3, 9090, "9001-9010", ""));
    h.fakes.world().unbindable_listens.insert(9090);
    h.op.prepare(&[&a, &b], PassMode::Apply)
        .await
        .expect("prepare");
    let ra = h.pass(&a).await;
    assert!(ra.converged(), "{:?}", ra.error);
    let rb = h.op.reconcile(&b, PassMode::Apply).await;
    assert!(
        matches!(rb, Err(ReconcileError::ListenUnavailable { .. })),
        "{rb:?}"
    );
    assert_eq!(h.fakes.upstream_ports("a"), Some(vec![8001]));
    // A dead replica of `a` is still replaced while `b` is broken.
    h.fakes.kill_port(8001);
    let again = h.pass(&a).await;
    assert!(again.converged(), "{:?}", again.error);
    assert_eq!(h.fakes.upstream_ports("a").map(|p| p.len()), Some(1));
    let e = ReconcileError::ListenUnavailable {
        policy: "b".into(),
        listen: "127.0.0.1:9090".parse().expect("addr"),
        reason: "bind".into(),
    };
    h.op.note_error("b", &e).await;
    let state = h.op.state().await;
    let cond = state.policies["b"].status.condition("AbleToScale").cloned();
    assert_eq!(
        cond.map(|c| (c.status, c.reason)),
        Some((false, "ListenUnavailable".into()))
    );
}

#[tokio::test(start_paused = true)]
async fn a_listen_held_by_another_process_is_refused_before_nginx_sees_it() {
    let h = Harness::new();
    let b = parse(&policy_yaml("b", 1, 3, 9090, "9001-9010", ""));
    h.fakes.world().foreign_ports.insert(9090);
    h.op.prepare(&[], PassMode::Apply).await.expect("prepare");
    h.fakes.take_calls();
    let result = h.op.reconcile(&b, PassMode::Apply).await;
    assert!(
        matches!(result, Err(ReconcileError::ListenUnavailable { .. })),
        "{result:?}"
    );
    assert!(h.fakes.take_calls().is_empty(), "nothing was tried");
}

#[tokio::test(start_paused = true)]
async fn changing_host_ip_serves_each_replica_at_its_own_address_during_the_roll() {
    let h = Harness::new();
    let v1 = web(2, 5);
    h.once(&[&v1], &[]).await;
    let v2_yaml = policy_yaml("web", 2, 5, 8080, "8001-8020", "")
        .replace("hostIp: 127.0.0.1", "hostIp: 127.0.0.2");
    let v2 = parse(&v2_yaml);
    h.fakes.take_calls();
    h.once(&[&v2], &[]).await;
    // Every upstream applied during the roll names the old replicas at their old address.
    for call in h.fakes.take_calls() {
        if let Call::Apply(set) = call {
            for server in set.get("web").into_iter().flatten() {
                let old = [8001, 8002].contains(&server.port());
                let want = if old { "127.0.0.1" } else { "127.0.0.2" };
                assert_eq!(server.ip().to_string(), want, "{set:?}");
            }
        }
    }
    let config = h.fakes.world().nginx_config.clone().unwrap_or_default();
    let servers = crate::nginx::parse_upstreams(&config);
    let addrs: Vec<String> = servers["web"].iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs.len(), 2);
    assert!(
        addrs.iter().all(|a| a.starts_with("127.0.0.2:")),
        "{addrs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_image_records_a_failure_not_a_scale_event() {
    let h = Harness::new();
    h.fakes.world().missing_images.insert("demo:latest".into());
    let web = web(1, 3);
    let reports = h.once(&[&web], &[]).await;
    assert!(!reports[0].converged());
    assert!(h.events_of("ScaledUp").await.is_empty());
    assert!(h.events_of("ReplicaCreated").await.is_empty());
    assert_eq!(h.events_of("StepFailed").await.len(), 1);
    let state = h.op.state().await;
    let cond = state.policies["web"]
        .status
        .condition("AbleToScale")
        .cloned();
    assert_eq!(cond.map(|c| c.status), Some(false));
}

#[tokio::test(start_paused = true)]
async fn a_wall_clock_jump_neither_freezes_nor_unleashes_scaling() {
    let h = Harness::new();
    let yaml = policy_yaml("web", 1, 6, 8080, "8001-8020", "").replace(
        "stabilizationWindowSeconds: 0",
        "stabilizationWindowSeconds: 60",
    );
    let web = parse(&yaml);
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 0.0).await;
    h.load_pass(&web, 35.0).await;
    assert_eq!(h.ports("web").len(), 4);
    // The wall clock jumps an hour forward: the 60 s window must still hold the count.
    h.fakes.clock().jump_wall(3_600_000);
    let r = h.load_pass(&web, 0.0).await;
    assert_eq!(
        r.decision.as_ref().map(|d| d.desired),
        Some(4),
        "window unleashed"
    );
    // And a jump back does not freeze it: after 60 s of monotonic time it scales down.
    h.fakes.clock().jump_wall(-7_200_000);
    for _ in 0..61 {
        h.load_pass(&web, 0.0).await;
    }
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001]));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_fails_the_pass_and_changes_nothing() {
    let h = Harness::new();
    let web = web(2, 5);
    h.once(&[&web], &[]).await;
    h.fakes.world().engine_down = true;
    h.fakes.take_calls();
    let result = h.op.reconcile(&web, PassMode::Apply).await;
    assert!(
        matches!(result, Err(ReconcileError::Runtime(_))),
        "{result:?}"
    );
    assert!(h.fakes.take_calls().is_empty());
    assert_eq!(h.fakes.upstream_ports("web"), Some(vec![8001, 8002]));
}

#[tokio::test(start_paused = true)]
async fn drains_run_in_the_background_and_do_not_hold_up_a_scale_up() {
    let h = Harness::new();
    let web = web(1, 6);
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 0.0).await;
    h.load_pass(&web, 25.0).await;
    assert_eq!(h.ports("web").len(), 3);
    // The newest replica has slow requests in flight: its drain takes the full 30 s.
    h.fakes.world().in_flight.insert(8003, 2.0);
    h.load_pass(&web, 6.5).await;
    assert_eq!(h.fakes.upstream_ports("web").map(|p| p.len()), Some(2));
    assert_eq!(h.op.retirements.active("web").len(), 1, "drain in flight");
    // Load comes back at once: the scale-up goes ahead on other ports.
    let up = h.load_pass(&web, 25.0).await;
    assert!(up.converged(), "{:?}", up.error);
    let served = h.fakes.upstream_ports("web").unwrap_or_default();
    assert!(served.len() >= 4, "{served:?}");
    assert!(
        !served.contains(&8003),
        "a draining replica came back: {served:?}"
    );
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(h.op.retirements.active("web").is_empty());
    assert!(!h.ports("web").contains(&8003), "drained replica removed");
}

#[tokio::test(start_paused = true)]
async fn vanished_counter_series_are_not_taken_for_a_reset() {
    let h = Harness::new();
    let web = web(1, 6);
    let series = |a: f64, b: Option<f64>| {
        let mut v = vec![SeriesValue {
            labels: "worker=\"1\"".into(),
            value: a,
        }];
        if let Some(b) = b {
            v.push(SeriesValue {
                labels: "worker=\"2\"".into(),
                value: b,
            });
        }
        v
    };
    // One replica of a multi-process app: one counter series per worker process.
    h.fakes
        .world()
        .series
        .insert(8001, series(1000.0, Some(5000.0)));
    h.once(&[&web], &[]).await;
    h.load_pass(&web, 0.0).await;
    h.fakes
        .world()
        .series
        .insert(8001, series(1005.0, Some(5005.0)));
    let steady = h.load_pass(&web, 0.0).await;
    assert_eq!(steady.decision.as_ref().map(|d| d.desired), Some(1));
    // Worker 2's series vanishes: the sum drops, but that is not a reset.
    h.fakes.world().series.insert(8001, series(1010.0, None));
    let r = h.load_pass(&web, 0.0).await;
    assert_eq!(r.decision.as_ref().map(|d| d.desired), Some(1), "{r:?}");
    assert_eq!(h.ports("web"), vec![8001]);
}

/// Crash (the operator dies) after each change of a pass, restart on the state it left,
/// and check that one more pass converges, the next plans nothing, nothing is orphaned and
/// nginx serves exactly the ready replicas.
#[tokio::test(start_paused = true)]
async fn a_crash_at_every_point_of_a_pass_converges_after_a_restart() {
    struct Shape {
        name: &'static str,
        before: ScalingPolicy,
        after: ScalingPolicy,
    }
    let v2 = |min| {
        parse(&policy_yaml(
            "web",
            min,
            6,
            8080,
            "8001-8020",
            "    env: {VERSION: \"2\"}\n",
        ))
    };
    let shapes = [
        Shape {
            name: "scale up 1 → 3",
            before: web(1, 6),
            after: web(3, 6),
        },
        Shape {
            name: "scale down 3 → 1",
            before: web(3, 6),
            after: web(1, 1),
        },
        Shape {
            name: "rolling update of 2",
            before: web(2, 6),
            after: v2(2),
        },
    ];
    for shape in shapes {
        // A clean run counts the changes the transition makes.
        let clean = Harness::new();
        clean.once(&[&shape.before], &[]).await;
        let start = clean.fakes.world().changes;
        clean.once(&[&shape.after], &[]).await;
        let total = clean.fakes.world().changes - start;
        assert!(total > 0, "{}: nothing to crash in", shape.name);
        for k in 0..total {
            let mut h = Harness::new();
            h.once(&[&shape.before], &[]).await;
            let saved = snapshot(h.dir.path());
            let start = h.fakes.world().changes;
            h.fakes.world().crash_at = Some(start + k);
            h.op.prepare(&[&shape.after], PassMode::Apply).await.ok();
            let _ = h.op.reconcile(&shape.after, PassMode::Apply).await;
            // What `kill -9` leaves: the world as changed so far, the state as last saved.
            tokio::time::sleep(Duration::from_millis(10)).await;
            restore(h.dir.path(), &saved);
            h.fakes.world().crash_at = None;
            h.restart();
            let converge = h.once(&[&shape.after], &[]).await;
            let at = format!("{} crashed after change {k} of {total}", shape.name);
            assert!(converge[0].converged(), "{at}: {:?}", converge[0].error);
            let check = h.once(&[&shape.after], &[]).await;
            assert!(
                check[0].plan.is_empty(),
                "{at}: still to do:\n{}",
                check[0].plan
            );
            let hash = crate::plan::template_hash(&shape.after);
            let running = h.fakes.running("web");
            assert!(
                running.iter().all(|r| r.2 == hash),
                "{at}: old hash left {running:?}"
            );
            assert_eq!(
                h.fakes.ids("web").len(),
                running.len(),
                "{at}: orphan container"
            );
            let mut ports: Vec<u16> = running.iter().map(|r| r.1).collect();
            ports.sort_unstable();
            assert_eq!(h.fakes.upstream_ports("web"), Some(ports), "{at}: upstream");
        }
    }
}

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    walk(dir)
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

fn restore(dir: &std::path::Path, saved: &[(std::path::PathBuf, Vec<u8>)]) {
    let keep: BTreeSet<&std::path::Path> = saved.iter().map(|(p, _)| p.as_path()).collect();
    for p in walk(dir) {
        if !keep.contains(p.as_path()) {
            let _ = std::fs::remove_file(&p);
        }
    }
    for (p, bytes) in saved {
        std::fs::write(p, bytes).expect("restore state file");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(Result::ok) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A policy scaled on the load balancer's request rate (10 per replica), with a 2 s
/// stable window, the default burst settings and no scale-down window.
fn lb_web(min: u32, max: u32) -> ScalingPolicy {
    let yaml = policy_yaml("web", min, max, 8080, "8001-8020", "")
        .replace(
            "[{requestRate: {targetPerReplica: 10}}]",
            "[{loadBalancer: {signal: requestRate, targetPerReplica: 10}}]",
        )
        .replace(
            "windows: {stableSeconds: 1}",
            "windows: {stableSeconds: 2, burstMillis: 1000}",
        );
    parse(&yaml)
}

#[tokio::test(start_paused = true)]
async fn the_load_balancer_signal_scales_up_on_its_stable_window() {
    let h = Harness::new();
    let web = lb_web(1, 10);
    h.once(&[&web], &[]).await;
    // 35 req/s for 2 s: below the burst threshold of 2× 1 only while it ramps; the
    // stable window reads 35 and asks for 4.
    h.fakes.lb_load("web", 15.0, 2_000, 20).await;
    let r = h.pass(&web).await;
    assert_eq!(
        r.decision.as_ref().map(|d| d.desired),
        Some(2),
        "{:?}",
        r.decision
    );
    h.fakes.lb_load("web", 35.0, 2_000, 20).await;
    let r = h.pass(&web).await;
    let d = r.decision.expect("decision");
    assert_eq!(d.desired, 4, "{d}");
    assert!(d.reason.contains("loadBalancer(requestRate) "), "{d}");
    let state = h.op.state().await;
    let lb = state.policies["web"]
        .status
        .load_balancer
        .clone()
        .expect("lb status");
    assert!((lb.rate - 35.0).abs() < 1.0, "{lb:?}");
    assert!((lb.concurrency - 0.7).abs() < 0.05, "35/s × 20 ms: {lb:?}");
    assert_eq!(lb.p50_ms, Some(20.0));
}

#[tokio::test(start_paused = true)]
async fn a_burst_scales_up_at_once_without_waiting_for_a_tick() {
    let h = Harness::new();
    let web = lb_web(1, 10);
    h.once(&[&web], &[]).await;
    h.fakes.lb_load("web", 5.0, 3_000, 10).await;
    assert_eq!(h.op.burst_check(&web).await, None, "steady 5/s is no burst");
    let mut activity = h.op.signal().activity("web");
    activity.borrow_and_update();
    // The step: 90 req/s. Within a couple hundred ms the burst check fires.
    let mut fired_after = None;
    for step in 1..=10 {
        h.fakes.lb_load("web", 90.0, 50, 10).await;
        assert!(
            activity.has_changed().unwrap_or(false),
            "each batch is activity"
        );
        activity.borrow_and_update();
        if let Some(n) = h.op.burst_check(&web).await {
            fired_after = Some((step * 50, n));
            break;
        }
    }
    let (ms, wanted) = fired_after.expect("the burst check fires");
    assert!(ms <= 200, "fired {ms} ms after the step");
    // ~90/s from the announced counts, not a mixed window's 20/s.
    assert_eq!(wanted, 9, "fired {ms} ms after the step");
    // The pass it triggers goes straight to the burst count, past the +4 Pods per 15 s
    // rate policy.
    let d = h.pass(&web).await.decision.expect("decision");
    assert_eq!(d.desired, wanted.min(10), "{d}");
    assert!(matches!(d.limit, Some(scaling::Limit::Burst { .. })), "{d}");
    assert_eq!(h.ports("web").len() as u32, wanted.min(10));
    let ups = h.events_of("ScaledUp").await;
    assert!(
        ups.iter()
            .any(|e| e.starts_with(&format!("ScaledUp 1→{wanted}: "))
                && e.contains("loadBalancer(requestRate) ")
                && e.contains("burst asks for")),
        "{ups:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn no_scale_down_while_a_burst_lasts() {
    let h = Harness::new();
    let web = lb_web(1, 10);
    h.once(&[&web], &[]).await;
    h.fakes.lb_load("web", 5.0, 2_000, 10).await;
    h.fakes.lb_load("web", 90.0, 300, 10).await;
    let peak = h.pass(&web).await.decision.expect("decision").desired;
    assert!(peak >= 7, "burst to {peak}");
    // The load falls away at once; for the 2 s stable window the count holds.
    h.fakes.lb_load("web", 5.0, 1_500, 10).await;
    let d = h.pass(&web).await.decision.expect("decision");
    assert_eq!(d.desired, peak, "{d}");
    assert!(d.burst.is_some(), "{d}");
    // A whole quiet window later burst mode has ended and the count follows the load.
    h.fakes.lb_load("web", 5.0, 2_000, 10).await;
    let d = h.pass(&web).await.decision.expect("decision");
    assert_eq!(d.desired, 1, "{d}");
    assert!(d.burst.is_none());
}

#[tokio::test(start_paused = true)]
async fn no_signal_is_missing_data_never_zero_load() {
    let h = Harness::new();
    let web = lb_web(3, 10);
    h.once(&[&web], &[]).await;
    // `reconcile --once` has no receiver: the hub never saw the policy.
    let lower = lb_web(1, 10);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let d = h.pass(&lower).await.decision.expect("decision");
        assert_eq!(d.desired, 3, "{d}");
        assert!(!d.metrics_available);
        assert!(d.reason.contains("no load-balancer signal"), "{d}");
    }
    assert_eq!(h.op.burst_check(&lower).await, None);
    let state = h.op.state().await;
    let active = state.policies["web"]
        .status
        .condition("ScalingActive")
        .cloned();
    assert_eq!(active.map(|c| c.status), Some(false));
    assert_eq!(state.policies["web"].status.load_balancer, None);
}

#[tokio::test(start_paused = true)]
async fn requests_nginx_answered_itself_are_demand_at_the_floor() {
    let h = Harness::new();
    let web = lb_web(1, 10);
    h.once(&[&web], &[]).await;
    // Nothing routable (the only replica left the upstream): nginx answers 503 itself.
    for _ in 0..40 {
        tokio::time::advance(Duration::from_millis(50)).await;
        {
            let now = seams::Clock::now_ms(h.fakes.clock().as_ref());
            let mut w = h.fakes.world();
            let list = w.lb_requests.entry("web".to_owned()).or_default();
            list.push(testing::FakeRequest {
                at_ms: now,
                duration_ms: 0,
                replica: None,
                status: 503,
            });
        }
    }
    // 20 req/s unrouted over the 2 s window: 2 replicas (no burst: 2 s of ramp).
    let d = h.pass(&web).await.decision.expect("decision");
    assert_eq!(d.desired, 2, "{d}");
    let state = h.op.state().await;
    let lb = state.policies["web"]
        .status
        .load_balancer
        .clone()
        .expect("lb status");
    assert!((lb.unrouted_rate - 20.0).abs() < 1.0, "{lb:?}");
    assert!((lb.error_ratio() - 1.0).abs() < 1e-9, "{lb:?}");
}

#[tokio::test(start_paused = true)]
async fn a_replica_vanishing_from_the_per_replica_map_keeps_the_total() {
    let h = Harness::new();
    let web = lb_web(3, 10);
    h.once(&[&web], &[]).await;
    h.fakes.lb_load("web", 30.0, 2_000, 10).await;
    let d = h.pass(&web).await.decision.expect("decision");
    assert_eq!(d.desired, 3, "{d}");
    // One replica dies: its row leaves the per-replica map, its requests go to the others.
    let port = h.ports("web")[0];
    h.fakes.kill_port(port);
    h.fakes.lb_load("web", 30.0, 2_000, 10).await;
    let r = h.pass(&web).await;
    let d = r.decision.expect("decision");
    // Two alive replicas carry 30 req/s: the total still asks for 3.
    assert_eq!(d.desired, 3, "{d}");
    assert_eq!(h.ports("web").len(), 3, "the dead replica is replaced");
}
