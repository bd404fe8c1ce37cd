//! `reconcile --once`, `diff` and `down` against the real Docker engine and nginx
//! (issue 4's acceptance criteria).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use support::{Env, assert_exit, http_get, spawn_load, wait_each_served, wait_for};

#[test]
fn from_nothing_brings_up_min_replicas_behind_nginx_and_a_second_pass_changes_nothing() {
    let Some(env) = Env::new("once_up", 20000) else {
        return;
    };
    let mut o = env.opts();
    o.min = 2;
    o.target = 1000.0;
    env.write_policy(&o);

    let out = env.reconcile();
    assert_exit(&out, 0, "first pass");
    let ids = env.running_ids();
    assert_eq!(ids.len(), 2, "min replicas running: {:?}", env.containers());
    assert_eq!(env.upstream_ports(&o.name).len(), 2);

    // Every replica answers through the listen address (least_conn spreads sequential requests).
    let mut seen = BTreeSet::new();
    for _ in 0..40 {
        let (code, body) = http_get(env.lb_addr(), "/").expect("GET through nginx");
        assert_eq!(code, 200, "{body}");
        seen.insert(body);
    }
    assert_eq!(seen.len(), 2, "both replicas served: {seen:?}");

    // Second pass: no container change, no config write, no reload. Every write of the
    // config is a new file renamed over the old one, so the inode tells whether it was
    // written (no sleep for mtime granularity needed).
    let conf_path = env.nginx_prefix().join("nginx.conf");
    let identity = |path: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (
            meta.ino(),
            meta.mtime(),
            meta.mtime_nsec(),
            std::fs::read(path).unwrap(),
        )
    };
    let before = identity(&conf_path);
    let workers = env.nginx_worker_pids();
    assert!(!workers.is_empty());
    let out = env.reconcile();
    assert_exit(&out, 0, "second pass");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("nothing to do"), "{stdout}");
    assert_eq!(env.running_ids(), ids);
    assert!(identity(&conf_path) == before, "nginx.conf was written");
    assert_eq!(env.nginx_worker_pids(), workers, "no reload happened");
}

#[test]
fn raising_then_lowering_min_converges_both_ways_without_a_failed_request() {
    let Some(env) = Env::new("once_minmax", 20100) else {
        return;
    };
    let mut o = env.opts();
    o.target = 1000.0;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "initial pass");
    assert_eq!(env.running_ids().len(), 1);

    let url = format!("http://{}/", env.lb_addr());
    let load = spawn_load(&env, &url, &["--rps", "100", "--duration", "8s"]);
    // The load flows before the change (the one replica serves it).
    let first = env.upstream_ports(&o.name);
    assert!(
        wait_each_served(&first, 20.0, Duration::from_secs(5)),
        "load reaches the replica"
    );
    o.min = 4;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "raise min");
    assert_eq!(env.running_ids().len(), 4);
    let four = env.upstream_ports(&o.name);
    assert_eq!(four.len(), 4);
    // Every new replica takes part of the load before the scale-down.
    assert!(
        wait_each_served(&four, 5.0, Duration::from_secs(5)),
        "load reaches all 4 replicas"
    );
    o.min = 1;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "lower min");
    assert_eq!(env.running_ids().len(), 1, "{:?}", env.containers());
    assert_eq!(env.upstream_ports(&o.name).len(), 1);
    let report = load.join().unwrap();
    eprintln!(
        "raise/lower under load: sent {} failed {} retried {}",
        report["sent"], report["failed"], report["retried"]
    );
    assert!(report["sent"].as_u64().unwrap() > 500);
    assert_eq!(report["failed"], 0, "no failed request: {report}");
}

#[test]
fn strangers_survive_and_a_replica_removed_by_hand_is_recreated() {
    let Some(env) = Env::new("once_stranger", 20200) else {
        return;
    };
    let mut o = env.opts();
    o.target = 1000.0;
    env.write_policy(&o);
    // Same image, a name like ours, no managed-by label.
    let stranger = format!("{}-{}", o.name, o.range.0 + 5);
    let run = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &stranger,
            "--label",
            &format!("autoscaler.dev/instance={}", env.instance),
            support::IMAGE,
            "--port",
            "8000",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stranger_id = String::from_utf8_lossy(&run.stdout).trim().to_owned();

    assert_exit(&env.reconcile(), 0, "first pass");
    let ours: Vec<String> = env
        .containers()
        .into_iter()
        .filter(|c| c.0 != stranger_id)
        .map(|c| c.0)
        .collect();
    assert_eq!(ours.len(), 1);
    let rm = std::process::Command::new("docker")
        .args(["rm", "-f", &ours[0]])
        .output()
        .unwrap();
    assert!(rm.status.success());
    assert_exit(&env.reconcile(), 0, "pass after removal by hand");
    let after: Vec<(String, String, bool)> = env.containers();
    assert!(
        after.iter().any(|c| c.0 == stranger_id && c.2),
        "stranger still running: {after:?}"
    );
    assert_eq!(
        after.iter().filter(|c| c.0 != stranger_id && c.2).count(),
        1,
        "replica recreated: {after:?}"
    );
    assert_exit(
        &env.run(&["down", "-f", env.policy_path().to_str().unwrap()]),
        0,
        "down",
    );
    assert!(
        env.containers().iter().any(|c| c.0 == stranger_id && c.2),
        "down leaves the stranger alone"
    );
}

#[test]
fn diff_changes_nothing_and_its_exit_code_tells_whether_changes_are_pending() {
    let Some(env) = Env::new("once_diff", 20300) else {
        return;
    };
    let mut o = env.opts();
    o.target = 1000.0;
    env.write_policy(&o);
    let policy = env.policy_path();
    let policy = policy.to_str().unwrap();
    let out = env.run(&["diff", "-f", policy]);
    assert_exit(&out, 1, "diff before anything exists");
    assert!(String::from_utf8_lossy(&out.stdout).contains("create"));
    assert!(env.containers().is_empty(), "diff created nothing");
    assert!(env.nginx_conf().is_none(), "diff wrote no config");

    assert_exit(&env.reconcile(), 0, "pass");
    let ids = env.running_ids();
    let conf = env.nginx_conf().unwrap();
    assert_exit(&env.run(&["diff", "-f", policy]), 0, "diff when converged");

    o.min = 3;
    env.write_policy(&o);
    let out = env.run(&["diff", "-f", policy]);
    assert_exit(&out, 1, "diff with min raised");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("create") && stdout.contains("+++"),
        "{stdout}"
    );
    assert_eq!(env.running_ids(), ids, "container list unchanged");
    assert_eq!(env.nginx_conf().unwrap(), conf, "config bytes unchanged");
}

#[test]
fn injection_is_rejected_before_any_file_is_written_and_down_leaves_nothing() {
    let Some(env) = Env::new("once_inject", 20400) else {
        return;
    };
    let o = env.opts();
    let bad = env
        .policy_yaml(&o)
        .replace("path: /healthz", "path: \"/healthz; } server { listen 80\"");
    env.write_policy_text(&bad);
    let out = env.reconcile();
    assert_exit(&out, 2, "injection attempt");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("policy.yaml:"), "{stderr}");
    assert!(
        !env.state_dir.join("nginx").exists(),
        "no nginx prefix written"
    );
    assert!(env.containers().is_empty());

    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "valid pass");
    assert!(env.nginx_master_pid().is_some());
    let out = env.run(&["down", "-f", env.policy_path().to_str().unwrap()]);
    assert_exit(&out, 0, "down");
    assert!(env.containers().is_empty(), "{:?}", env.containers());
    assert!(env.nginx_master_pid().is_none(), "managed nginx stopped");
    let conf = env.nginx_conf().unwrap_or_default();
    assert!(!conf.contains(&o.name), "upstream dropped:\n{conf}");
    // Its workers are gone too: the listen address stops accepting connections.
    let closed = wait_for(Duration::from_secs(5), || {
        std::net::TcpStream::connect_timeout(&env.lb_addr(), Duration::from_millis(200))
            .is_err()
            .then_some(())
    });
    assert!(
        closed.is_some(),
        "{} still accepts after down",
        env.lb_addr()
    );
}

/// The release binary `scripts/build-image.sh` builds (default features).
fn default_release_binary() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/static/x86_64-unknown-linux-gnu/release/autoscaler")
}

#[test]
fn a_default_release_build_ignores_autoscaler_fault() {
    let Some(env) = Env::new("fault_off", 27000) else {
        return;
    };
    let binary = default_release_binary();
    if !binary.exists() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{} is missing: scripts/build-image.sh builds it",
            binary.display()
        );
        eprintln!(
            "SKIP: {} is missing (run scripts/build-image.sh)",
            binary.display()
        );
        return;
    }
    let o = env.opts();
    env.write_policy(&o);
    let policy = env.policy_path();
    // Armed at the very first step: a build with fault points would abort (SIGABRT).
    let out = std::process::Command::new(&binary)
        .args(["reconcile", "--once", "-f", policy.to_str().unwrap()])
        .env("AUTOSCALER_STATE_DIR", &env.state_dir)
        .env("AUTOSCALER_INSTANCE", &env.instance)
        .env("AUTOSCALER_LOG", "warn")
        .env("AUTOSCALER_FAULT", "before:create")
        .output()
        .expect("run the release binary");
    assert_exit(&out, 0, "release pass with AUTOSCALER_FAULT set");
    assert_eq!(env.running_ids().len(), 1, "the create ran");
}
