//! A Swarm node that leaves, in-process: what the Swarm runtime reports for its replicas
//! (not running, see [`super::swarm_model::replica_from_service`]) fed to a real pass over
//! the fakes. A real multi-node run is not possible on the test machine; the README has
//! the manual procedure.

use std::time::Duration;

use crate::reconcile::testing::{Call, Fakes};
use crate::reconcile::{Operator, OperatorSettings, PassMode};
use crate::state::StateDir;

const INSTANCE: &str = "t";

fn policy(min: u32) -> crate::policy::ScalingPolicy {
    let yaml = format!(
        "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {{name: web}}
spec:
  template:
    image: demo:latest
    containerPort: 8000
    readiness: {{httpGet: {{path: /healthz}}, periodMillis: 100, timeoutSeconds: 5}}
  replicas: {{min: {min}, max: 10}}
  ports: {{hostIp: 127.0.0.1, range: 8001-8020}}
  loadBalancer: {{listen: 127.0.0.1:8080}}
  metrics: [{{requestRate: {{targetPerReplica: 10}}}}]
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
  drain: {{timeoutSeconds: 30}}
"
    );
    let mut parsed = crate::policy::parse_str(&yaml, "test.yaml")
        .unwrap_or_else(|e| panic!("test policy does not parse: {e:?}"));
    parsed.remove(0).0
}

#[tokio::test(start_paused = true)]
async fn replicas_of_a_lost_node_leave_the_upstream_first_then_are_replaced() {
    let fakes = Fakes::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let settings = OperatorSettings {
        instance: INSTANCE.to_owned(),
        ..OperatorSettings::default()
    };
    let op = Operator::with_seams(
        fakes.runtime(INSTANCE),
        fakes.lb(),
        StateDir::new(dir.path()),
        settings,
        fakes.seams(),
    )
    .expect("operator");
    let web = policy(4);
    op.prepare(&[&web], PassMode::Apply).await.expect("prepare");
    let mut first = op.reconcile(&web, PassMode::Apply).await.expect("pass");
    op.settle(&mut first).await;
    assert_eq!(
        fakes.upstream_ports("web"),
        Some(vec![8001, 8002, 8003, 8004])
    );
    fakes.take_calls();

    // The node holding two of the four replicas goes down.
    fakes.lose_node(&[8002, 8004]);
    let mut report = op.reconcile(&web, PassMode::Apply).await.expect("pass");
    op.settle(&mut report).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(report.converged(), "{:?}", report.error);

    let calls = fakes.take_calls();
    // First change of the pass: an upstream without the lost replicas.
    let first_change = calls.first().cloned();
    let Some(Call::Apply(set)) = first_change else {
        panic!("the first change is not an upstream apply: {calls:?}");
    };
    let ports: Vec<u16> = set
        .get("web")
        .map(|s| s.iter().map(|a| a.port()).collect())
        .unwrap_or_default();
    assert_eq!(ports, vec![8001, 8003], "{calls:?}");
    // Then the lost services are removed (not drained: they answer nothing) and two
    // replacements are created through the runtime, which Swarm places on a live node.
    let removed = calls
        .iter()
        .filter(|c| matches!(c, Call::Remove(_)))
        .count();
    let stopped = calls.iter().filter(|c| matches!(c, Call::Stop(_))).count();
    let created = calls
        .iter()
        .filter(|c| matches!(c, Call::Create(..)))
        .count();
    assert_eq!((removed, stopped, created), (2, 0, 2), "{calls:?}");
    assert_eq!(fakes.running("web").len(), 4);
    assert_eq!(fakes.upstream_ports("web").map(|p| p.len()), Some(4));
}
