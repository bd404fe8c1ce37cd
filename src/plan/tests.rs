//! Table-driven tests of the planner, plus idempotence over many shapes of observed state.

use super::*;

const HASH: &str = "h1";
const OLD: &str = "h0";

fn desired(replicas: u32) -> Desired<'static> {
    Desired {
        policy: "web",
        instance: "i",
        template_hash: HASH,
        replicas,
        port_range: (8001, 8010),
        unavailable_ports: &[],
        readiness_timeout_seconds: 10,
    }
}

/// `r(port, hash, running, ready, age)`
fn r(port: u16, hash: &str, running: bool, ready: bool, age: u64) -> ObservedReplica {
    ObservedReplica {
        id: format!("id{port}"),
        name: replica_name("web", port, "i"),
        host_port: port,
        template_hash: hash.to_owned(),
        running,
        ready,
        age_seconds: age,
    }
}

fn ready(port: u16, age: u64) -> ObservedReplica {
    r(port, HASH, true, true, age)
}

fn render(plan: &Plan) -> Vec<String> {
    plan.steps.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plans_match_expected_steps() {
    struct Case {
        name: &'static str,
        replicas: u32,
        observed: Vec<ObservedReplica>,
        upstream: Vec<u16>,
        expected: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "from nothing creates min replicas then adds them in one reload",
            replicas: 2,
            observed: vec![],
            upstream: vec![],
            expected: vec![
                "create   web-8001.i on port 8001",
                "create   web-8002.i on port 8002",
                "wait     web-8001.i ready on port 8001",
                "wait     web-8002.i ready on port 8002",
                "upstream 8001,8002 (+8001,8002), reload nginx",
            ],
        },
        Case {
            name: "converged state plans nothing",
            replicas: 2,
            observed: vec![ready(8001, 50), ready(8002, 40)],
            upstream: vec![8001, 8002],
            expected: vec![],
        },
        Case {
            name: "scale down removes newest from upstream before draining it",
            replicas: 1,
            observed: vec![ready(8001, 50), ready(8002, 40)],
            upstream: vec![8001, 8002],
            expected: vec![
                "upstream 8001 (-8002), reload nginx",
                "drain    web-8002.i on port 8002",
                "stop     web-8002.i",
                "remove   web-8002.i (scale down)",
            ],
        },
        Case {
            name: "scale down by two groups drains, then stops, then removes",
            replicas: 1,
            observed: vec![ready(8001, 50), ready(8002, 40), ready(8003, 30)],
            upstream: vec![8001, 8002, 8003],
            expected: vec![
                "upstream 8001 (-8002,8003), reload nginx",
                "drain    web-8002.i on port 8002",
                "drain    web-8003.i on port 8003",
                "stop     web-8002.i",
                "stop     web-8003.i",
                "remove   web-8002.i (scale down)",
                "remove   web-8003.i (scale down)",
            ],
        },
        Case {
            name: "scale down prefers not-ready victims over newest",
            replicas: 2,
            observed: vec![
                ready(8001, 50),
                r(8002, HASH, true, false, 5),
                ready(8003, 1),
            ],
            upstream: vec![8001, 8003],
            expected: vec!["stop     web-8002.i", "remove   web-8002.i (scale down)"],
        },
        Case {
            name: "dead replica is removed and replaced, its port is not reused at once",
            replicas: 2,
            observed: vec![ready(8001, 50), r(8002, HASH, false, false, 50)],
            upstream: vec![8001, 8002],
            expected: vec![
                "upstream 8001 (-8002), reload nginx",
                "remove   web-8002.i (not running)",
                "create   web-8003.i on port 8003",
                "wait     web-8003.i ready on port 8003",
                "upstream 8001,8003 (+8003), reload nginx",
            ],
        },
        Case {
            name: "replica that never became ready within the timeout is replaced",
            replicas: 1,
            observed: vec![r(8001, HASH, true, false, 11)],
            upstream: vec![],
            expected: vec![
                "remove   web-8001.i (never became ready in 10s)",
                "create   web-8002.i on port 8002",
                "wait     web-8002.i ready on port 8002",
                "upstream 8002 (+8002), reload nginx",
            ],
        },
        Case {
            name: "young unready replica is waited for, not replaced",
            replicas: 1,
            observed: vec![r(8001, HASH, true, false, 3)],
            upstream: vec![],
            expected: vec![
                "wait     web-8001.i ready on port 8001",
                "upstream 8001 (+8001), reload nginx",
            ],
        },
        Case {
            name: "ready replica missing from the upstream is added back",
            replicas: 2,
            observed: vec![ready(8001, 50), ready(8002, 40)],
            upstream: vec![8001],
            expected: vec!["upstream 8001,8002 (+8002), reload nginx"],
        },
        Case {
            name: "stranger in the upstream is dropped",
            replicas: 1,
            observed: vec![ready(8001, 50)],
            upstream: vec![8001, 8099],
            expected: vec!["upstream 8001 (-8099), reload nginx"],
        },
        Case {
            name: "rolling update surges one before each old replica goes",
            replicas: 2,
            observed: vec![r(8001, OLD, true, true, 90), r(8002, OLD, true, true, 80)],
            upstream: vec![8001, 8002],
            expected: vec![
                "create   web-8003.i on port 8003",
                "wait     web-8003.i ready on port 8003",
                "upstream 8002,8003 (+8003) (-8001), reload nginx",
                "drain    web-8001.i on port 8001",
                "stop     web-8001.i",
                "remove   web-8001.i (template changed)",
                "create   web-8004.i on port 8004",
                "wait     web-8004.i ready on port 8004",
                "upstream 8003,8004 (+8004) (-8002), reload nginx",
                "drain    web-8002.i on port 8002",
                "stop     web-8002.i",
                "remove   web-8002.i (template changed)",
            ],
        },
        Case {
            name: "rolling update during a scale down drops the surplus old replica first",
            replicas: 1,
            observed: vec![r(8001, OLD, true, true, 90), r(8002, OLD, true, true, 80)],
            upstream: vec![8001, 8002],
            expected: vec![
                "upstream 8002 (-8001), reload nginx",
                "drain    web-8001.i on port 8001",
                "stop     web-8001.i",
                "remove   web-8001.i (scale down)",
                "create   web-8003.i on port 8003",
                "wait     web-8003.i ready on port 8003",
                "upstream 8003 (+8003) (-8002), reload nginx",
                "drain    web-8002.i on port 8002",
                "stop     web-8002.i",
                "remove   web-8002.i (template changed)",
            ],
        },
        Case {
            name: "port range exhausted creates what fits",
            replicas: 12,
            observed: (8001..=8009).map(|p| ready(p, 10)).collect(),
            upstream: (8001..=8009).collect(),
            expected: vec![
                "create   web-8010.i on port 8010",
                "wait     web-8010.i ready on port 8010",
                "upstream 8001,8002,8003,8004,8005,8006,8007,8008,8009,8010 (+8010), reload nginx",
            ],
        },
        Case {
            name: "scale to zero empties the upstream first",
            replicas: 0,
            observed: vec![ready(8001, 10)],
            upstream: vec![8001],
            expected: vec![
                "upstream (empty) (-8001), reload nginx",
                "drain    web-8001.i on port 8001",
                "stop     web-8001.i",
                "remove   web-8001.i (scale down)",
            ],
        },
    ];
    for case in cases {
        let got = plan(&desired(case.replicas), &case.observed, &case.upstream);
        assert_eq!(render(&got), case.expected, "case: {}", case.name);
    }
}

/// Every combination of a few replica shapes: planning against the simulated result of
/// a plan yields an empty plan.
#[test]
fn planning_the_result_of_a_plan_is_empty() {
    let shapes = [
        |p| ready(p, 50),
        |p| r(p, HASH, true, false, 2),
        |p| r(p, HASH, true, false, 20),
        |p| r(p, HASH, false, false, 50),
        |p| r(p, OLD, true, true, 50),
        |p| r(p, OLD, true, false, 1),
    ];
    let mut checked = 0;
    for replicas in 0..5u32 {
        for mask in 0..(shapes.len().pow(3)) {
            let mut observed = Vec::new();
            let mut m = mask;
            for (i, port) in (8001..=8003).enumerate() {
                let shape = m % shapes.len();
                m /= shapes.len();
                if i < 3 && (mask >> i) % 2 == 0 && i > 0 {
                    continue;
                }
                observed.push(shapes[shape](port));
            }
            for upstream in [vec![], vec![8001], vec![8001, 8002, 8003]] {
                let d = desired(replicas);
                let first = plan(&d, &observed, &upstream);
                let (after, after_upstream) = outcome(&d, &observed, &upstream, &first);
                let second = plan(&d, &after, &after_upstream);
                assert!(
                    second.is_empty(),
                    "not idempotent for replicas={replicas} observed={observed:?} upstream={upstream:?}\nfirst:\n{first}\nsecond:\n{second}"
                );
                let ready_in_upstream = after.iter().filter(|r| r.ready).count();
                assert_eq!(ready_in_upstream, replicas as usize);
                assert_eq!(after_upstream.len(), replicas as usize);
                checked += 1;
            }
        }
    }
    assert!(checked > 500);
}

#[test]
fn template_hash_changes_with_template_and_is_stable() {
    let text = r#"{"apiVersion":"autoscaler.dev/v1alpha1","kind":"ScalingPolicy","metadata":{"name":"web"},
      "spec":{"template":{"image":"a:1","containerPort":8000},"ports":{"range":"8001-8010"},
      "loadBalancer":{"listen":"127.0.0.1:8080"}}}"#;
    let a: ScalingPolicy = serde_json::from_str(text).unwrap();
    let mut b = a.clone();
    assert_eq!(template_hash(&a), template_hash(&b));
    b.spec.template.image = "a:2".into();
    assert_ne!(template_hash(&a), template_hash(&b));
    let mut c = a.clone();
    c.spec.replicas.max = 7;
    assert_eq!(
        template_hash(&a),
        template_hash(&c),
        "replica bounds do not roll replicas"
    );
    assert_eq!(template_hash(&a).len(), 10);
}

#[test]
fn removing_a_policy_says_so_in_every_removal() {
    let gone = Desired {
        template_hash: "",
        replicas: 0,
        ..desired(0)
    };
    let plan = plan(&gone, &[ready(8001, 50), ready(8002, 40)], &[8001, 8002]);
    let removals: Vec<String> = render(&plan)
        .into_iter()
        .filter(|s| s.starts_with("remove"))
        .collect();
    assert_eq!(removals.len(), 2);
    assert!(
        removals.iter().all(|r| r.ends_with("(policy removed)")),
        "{removals:?}"
    );
}
