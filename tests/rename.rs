//! Renaming a policy (new `metadata.name`, same listen address) against the real engine
//! and nginx: "remove the old, add the new" converges, for `reconcile --once` in one pass
//! and for the daemon, with zero failed requests under load (issue 11, item 1).

mod support;

use std::time::Duration;

use support::{Env, assert_exit, http_get, spawn_load, wait_for};

/// Names of the running containers of this test, by the policy part of their name.
fn running_of(env: &Env, policy: &str) -> usize {
    env.containers()
        .iter()
        .filter(|c| c.2 && c.1.starts_with(&format!("{policy}-")))
        .count()
}

fn assert_no_failures(report: &serde_json::Value) {
    eprintln!(
        "load: sent {} failed {} retried {} p99 {}",
        report["sent"], report["failed"], report["retried"], report["p99_ms"]
    );
    assert!(report["sent"].as_u64().unwrap_or(0) > 300, "{report}");
    assert_eq!(report["failed"], 0, "no failed request: {report}");
}

#[test]
fn a_rename_converges_in_one_reconcile_once_without_a_failed_request() {
    let Some(env) = Env::new("rename_once", 27100) else {
        return;
    };
    let mut o = env.opts();
    o.name = "old".into();
    o.min = 2;
    o.target = 1000.0;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "first pass");
    assert_eq!(running_of(&env, "old"), 2);

    let url = format!("http://{}/", env.lb_addr());
    let load = spawn_load(
        &env,
        &url,
        &["--rps", "100", "--duration", "6s", "--timeout", "2s"],
    );
    std::thread::sleep(Duration::from_millis(700));
    o.name = "new".into();
    env.write_policy(&o);
    let out = env.reconcile();
    assert_exit(&out, 0, "rename pass");
    assert_eq!(running_of(&env, "old"), 0, "{:?}", env.containers());
    assert_eq!(running_of(&env, "new"), 2, "{:?}", env.containers());
    assert_eq!(env.upstream_ports("new").len(), 2);
    assert!(env.upstream_ports("old").is_empty());
    assert_no_failures(&load.join().expect("load thread"));
    let again = env.reconcile();
    assert_exit(&again, 0, "pass after the rename");
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
}

#[test]
fn a_rename_under_the_daemon_hands_the_listen_over_without_a_failed_request() {
    let Some(env) = Env::new("rename_daemon", 27200) else {
        return;
    };
    let mut o = env.opts();
    o.name = "before".into();
    o.min = 2;
    o.target = 1000.0;
    env.write_policy(&o);
    let mut daemon = env.spawn_daemon(27299, &[]);
    // Serving means answering through nginx (the config file is written before the reload).
    wait_for(Duration::from_secs(30), || {
        let written = env.upstream_ports("before").len() == 2;
        let answers =
            (0..5).all(|_| http_get(env.lb_addr(), "/").is_ok_and(|(code, _)| code == 200));
        (written && answers).then_some(())
    })
    .expect("the first policy serves");

    let url = format!("http://{}/", env.lb_addr());
    let load = spawn_load(
        &env,
        &url,
        &["--rps", "100", "--duration", "8s", "--timeout", "2s"],
    );
    std::thread::sleep(Duration::from_millis(700));
    o.name = "after".into();
    env.write_policy(&o);
    let converged = wait_for(Duration::from_secs(30), || {
        let done = running_of(&env, "before") == 0
            && running_of(&env, "after") == 2
            && env.upstream_ports("after").len() == 2;
        done.then_some(())
    });
    assert!(
        converged.is_some(),
        "not converged: {:?}\n{}",
        env.containers(),
        daemon.log_text()
    );
    let report = load.join().expect("load thread");
    if report["failed"] != 0 {
        eprintln!("daemon log:\n{}", daemon.log_text());
        let err = std::fs::read_to_string(env.nginx_prefix().join("error.log")).unwrap_or_default();
        eprintln!("nginx error.log:\n{err}");
    }
    assert_no_failures(&report);
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(10));
}
