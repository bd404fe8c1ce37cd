//! Zero failed requests under steady load (issue 6 item 1): scale 1 → 10 → 1, a rolling
//! update, a reload storm, SIGKILL of the daemon mid-scale, and `docker kill` of a replica,
//! all through the real nginx to real demo containers, with `autoscaler load` as client.

mod reliability_support;
mod support;

use std::time::{Duration, Instant};

use reliability_support::{
    UpstreamSampler, assert_no_failure, assert_transition, convergence_problems, daemon_metric,
    owned, print_scenario, steady_opts, time_until, upstream_ready, url, wait_lb_serving,
};
use support::{Env, assert_exit, spawn_load};

/// Steady client rate of every scenario (the issue asks for at least 200 req/s).
const RPS: &str = "250";

/// The transition check reads the p99 the load client really writes: a report serialized
/// by `autoscaler load` itself, not a hand-written JSON that could drift from it (a renamed
/// key once made every transition read 0 ms).
#[test]
fn p99_during_reads_the_load_reports_own_keys() {
    use autoscaler::loadgen::{Failures, Latency, LoadReport, Second};
    let row = |t: u64, p99_ms: f64| Second {
        t,
        sent: 10,
        ok: 10,
        p99_ms,
        ..Second::default()
    };
    let report = LoadReport {
        mode: "open",
        elapsed_secs: 3.0,
        sent: 30,
        ok: 30,
        failed: 0,
        failures: Failures::default(),
        retried: 0,
        send_rate: 10.0,
        throughput: 10.0,
        latency: Latency::default(),
        timeline: vec![row(0, 900.0), row(1, 42.0), row(2, 7.0)],
    };
    let json = serde_json::to_value(&report).expect("serialize");
    let t0 = Instant::now();
    let p99 = reliability_support::p99_during(
        &json,
        t0,
        t0 + Duration::from_secs(1),
        t0 + Duration::from_secs(2),
    );
    assert_eq!(p99, 42.0, "worst p99 of seconds 1..=2 of {json}");
}

#[test]
fn scale_1_to_10_to_1_under_load_fails_no_request() {
    let Some(env) = Env::new("rl_scale", 22000) else {
        return;
    };
    let mut o = steady_opts(&env, 1, 10);
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "initial pass");
    let load_started = Instant::now();
    let load = spawn_load(&env, &url(&env), &["--rps", RPS, "--duration", "14s"]);
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    o.min = 10;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "scale to 10");
    let up = started.elapsed();
    let up_window = (started, Instant::now());
    assert!(upstream_ready(&env, &o.name, 10), "{:?}", owned(&env));
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    o.min = 1;
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "scale to 1");
    let down = started.elapsed();
    let down_window = (started, Instant::now());
    let problems = convergence_problems(&env, &o.name, 1, None, o.range);
    assert!(problems.is_empty(), "{problems:#?}");

    let report = load.join().unwrap();
    eprintln!(
        "scale 1→10 took {:.2} s, 10→1 took {:.2} s",
        up.as_secs_f64(),
        down.as_secs_f64()
    );
    print_scenario("scale 1→10→1", &report, up + down);
    assert_no_failure(&env, "scale 1→10→1", &report);
    assert_transition(
        "scale 1→10",
        &report,
        load_started,
        up_window.0,
        up_window.1,
    );
    assert_transition(
        "scale 10→1",
        &report,
        load_started,
        down_window.0,
        down_window.1,
    );
}

#[test]
fn rolling_update_under_load_never_drops_below_the_ready_count_and_fails_no_request() {
    let Some(env) = Env::new("rl_roll", 22100) else {
        return;
    };
    let mut o = steady_opts(&env, 3, 10);
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "initial pass");
    let before: Vec<String> = owned(&env).into_iter().map(|c| c.hash).collect();
    let load_started = Instant::now();
    let load = spawn_load(&env, &url(&env), &["--rps", RPS, "--duration", "12s"]);
    std::thread::sleep(Duration::from_millis(1000));

    let sampler = UpstreamSampler::start(&env, &o.name);
    let started = Instant::now();
    o.env = vec![("GENERATION".into(), "2".into())];
    env.write_policy(&o);
    assert_exit(&env.reconcile(), 0, "rolling pass");
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let (samples, min_listed, min_ready) = sampler.finish();

    let after = owned(&env);
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(
        after.iter().all(|c| !before.contains(&c.hash)),
        "every replica rolled: before {before:?}, after {after:?}"
    );
    let problems = convergence_problems(&env, &o.name, 3, Some(&after[0].hash), o.range);
    assert!(problems.is_empty(), "{problems:#?}");
    let report = load.join().unwrap();
    eprintln!(
        "rolling update: {samples} upstream samples, fewest servers {min_listed}, fewest ready {min_ready}"
    );
    print_scenario("rolling update (3 replicas)", &report, took);
    assert!(samples > 20, "sampler ran: {samples}");
    assert!(min_listed >= 3, "upstream dropped to {min_listed} servers");
    assert!(
        min_ready >= 3,
        "ready upstream servers dropped to {min_ready}"
    );
    assert_no_failure(&env, "rolling update", &report);
    assert_transition(
        "rolling update",
        &report,
        load_started,
        started,
        started + took,
    );
}

/// The daemon's nginx reload count once it is quiet: no pass in flight (as many passes
/// finished as started) and the figures unchanged over three polls 100 ms apart.
fn settled_reloads(api: std::net::SocketAddr) -> f64 {
    let read = || {
        let metric = |name| daemon_metric(api, name).unwrap_or(-1.0);
        (
            metric("autoscaler_nginx_reloads"),
            metric("autoscaler_reconcile_triggers_total"),
            metric("autoscaler_reconciles_total"),
        )
    };
    let mut last = read();
    let mut same = 0;
    let settled = time_until(Duration::from_secs(20), || {
        let now = read();
        same = if now == last && now.1 == now.2 {
            same + 1
        } else {
            0
        };
        last = now;
        same >= 3
    });
    assert!(settled.is_some(), "the daemon never went quiet: {last:?}");
    last.0
}

#[test]
fn twenty_edits_in_ten_seconds_reload_once_per_change_a_burst_coalesces_and_no_request_fails() {
    let Some(env) = Env::new("rl_storm", 22200) else {
        return;
    };
    let mut o = steady_opts(&env, 2, 10);
    env.write_policy(&o);
    let daemon = env.spawn_daemon(22290, &[]);
    assert!(
        time_until(Duration::from_secs(20), || upstream_ready(&env, &o.name, 2)).is_some(),
        "daemon brought up 2 replicas: {}",
        daemon.log_text()
    );
    assert!(wait_lb_serving(&env), "nginx serves the replicas");
    let reloads_before = daemon_metric(daemon.api, "autoscaler_nginx_reloads").unwrap_or(0.0);
    let load_started = Instant::now();
    let load = spawn_load(&env, &url(&env), &["--rps", RPS, "--duration", "18s"]);
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    let mut edits = 0;
    for i in 0..20u32 {
        // Every edit changes the rendered config (algorithm); every fifth also the count.
        if i % 5 == 4 {
            o.min = if o.min == 2 { 3 } else { 2 };
        }
        let algorithm = if i % 2 == 0 {
            "round_robin"
        } else {
            "least_conn"
        };
        env.write_policy_text(
            &env.policy_yaml(&o)
                .replace("algorithm: least_conn", &format!("algorithm: {algorithm}")),
        );
        edits += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    let edit_secs = started.elapsed();
    // The last edit (i = 19) leaves least_conn and min 2 (toggled 4 times).
    let converged = time_until(Duration::from_secs(20), || {
        upstream_ready(&env, &o.name, o.min as usize)
            && env.nginx_conf().is_some_and(|c| c.contains("least_conn;"))
            && owned(&env).len() == o.min as usize
    });
    let reloads_after = settled_reloads(daemon.api);
    let converged = converged.unwrap_or_else(|| panic!("not converged: {}", daemon.log_text()));

    // A burst: 20 edits 50 ms apart (inside the 250 ms debounce), ending on round_robin.
    // Coalescing must turn it into a few passes; without it every edit is a reload.
    for i in 0..20u32 {
        let algorithm = if i % 2 == 0 {
            "least_conn"
        } else {
            "round_robin"
        };
        env.write_policy_text(
            &env.policy_yaml(&o)
                .replace("algorithm: least_conn", &format!("algorithm: {algorithm}")),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let burst_converged = time_until(Duration::from_secs(10), || {
        env.nginx_conf().is_some_and(|c| !c.contains("least_conn;"))
            && upstream_ready(&env, &o.name, o.min as usize)
    });
    let burst_end = Instant::now();
    let burst_reloads = settled_reloads(daemon.api) - reloads_after;
    let report = load.join().unwrap();
    let reloads = reloads_after - reloads_before;
    eprintln!("reload storm: burst of 20 edits in 1 s: {burst_reloads} nginx reloads");
    assert!(
        burst_converged.is_some(),
        "burst not applied: {}",
        daemon.log_text()
    );
    eprintln!(
        "reload storm: {edits} edits in {:.1} s, {reloads} nginx reloads",
        edit_secs.as_secs_f64()
    );
    print_scenario("reload storm (20 edits/10 s)", &report, converged);
    let problems = convergence_problems(&env, &o.name, o.min as usize, None, o.range);
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(reloads >= 1.0, "the edits reached nginx");
    // Edits 500 ms apart are 20 distinct desired states, each more than the 250 ms
    // debounce apart: the daemon applies each, one reload per rendered change. Each edit
    // changes the algorithm (one reload) and each of the 4 count changes adds one (the new
    // or removed server after the settings): 24 at most, the figure measured. Any
    // redundant reload (a pass that reloads without a change) goes above it.
    const MOST_RELOADS: f64 = 20.0 + 4.0;
    assert!(
        reloads <= MOST_RELOADS,
        "redundant reloads: {reloads} > {MOST_RELOADS}"
    );
    // The burst is coalesced: the debounce waits for 250 ms of quiet and a pass in
    // flight folds further triggers into one. Uncoalesced, it is 20 reloads.
    assert!(
        (1.0..=4.0).contains(&burst_reloads),
        "burst of 20 edits not coalesced: {burst_reloads} reloads"
    );
    assert_no_failure(&env, "reload storm", &report);
    assert_transition("reload storm", &report, load_started, started, burst_end);
}

#[test]
fn sigkill_of_the_daemon_mid_scale_is_not_seen_by_clients_and_a_restart_converges() {
    let Some(env) = Env::new("rl_sigkill", 22300) else {
        return;
    };
    let mut o = steady_opts(&env, 1, 10);
    env.write_policy(&o);
    let mut first = env.spawn_daemon(22390, &[]);
    assert!(
        time_until(Duration::from_secs(20), || upstream_ready(&env, &o.name, 1)).is_some(),
        "{}",
        first.log_text()
    );
    assert!(wait_lb_serving(&env), "nginx serves the replica");
    let load_started = Instant::now();
    let load = spawn_load(&env, &url(&env), &["--rps", RPS, "--duration", "16s"]);
    std::thread::sleep(Duration::from_millis(1000));

    let started = Instant::now();
    o.min = 6;
    env.write_policy(&o);
    // Mid-scale: some new containers exist, the upstream does not hold them all yet.
    let mid = time_until(Duration::from_secs(15), || owned(&env).len() >= 3);
    first.kill9();
    assert!(mid.is_some(), "scale-up started: {}", first.log_text());
    // Read after the kill: nothing changes the upstream any more, so this is what the
    // daemon left at the moment it died.
    let containers_at_kill = owned(&env).len();
    let upstream_at_kill = env.upstream_ports(&o.name).len();
    assert!(
        upstream_at_kill < 6,
        "the kill came after the scale-up was done ({upstream_at_kill} servers in the upstream, {containers_at_kill} containers): {}",
        first.log_text()
    );
    let second = env.spawn_daemon(22391, &[]);
    let converged = time_until(Duration::from_secs(30), || {
        upstream_ready(&env, &o.name, 6) && owned(&env).len() == 6
    });
    let converged = converged.unwrap_or_else(|| panic!("not converged: {}", second.log_text()));
    let total = started.elapsed();
    let problems = convergence_problems(&env, &o.name, 6, None, o.range);
    assert!(problems.is_empty(), "{problems:#?}");
    let report = load.join().unwrap();
    eprintln!(
        "daemon SIGKILLed with {containers_at_kill} containers / {upstream_at_kill} in the upstream; restart converged in {:.2} s",
        converged.as_secs_f64()
    );
    print_scenario("SIGKILL daemon mid-scale 1→6 + restart", &report, total);
    assert_no_failure(&env, "SIGKILL of the daemon", &report);
    assert_transition(
        "SIGKILL of the daemon",
        &report,
        load_started,
        started,
        started + total,
    );
}

#[test]
fn docker_kill_of_one_replica_is_replaced_and_clients_see_no_failure() {
    let Some(env) = Env::new("rl_dkill", 22400) else {
        return;
    };
    let o = steady_opts(&env, 3, 10);
    env.write_policy(&o);
    let daemon = env.spawn_daemon(22490, &[]);
    assert!(
        time_until(Duration::from_secs(20), || upstream_ready(&env, &o.name, 3)).is_some(),
        "{}",
        daemon.log_text()
    );
    assert!(wait_lb_serving(&env), "nginx serves the replicas");
    let load_started = Instant::now();
    let load = spawn_load(&env, &url(&env), &["--rps", RPS, "--duration", "10s"]);
    std::thread::sleep(Duration::from_millis(2000));
    let victim = owned(&env)[0].clone();
    let started = Instant::now();
    let kill = std::process::Command::new("docker")
        .args(["kill", &victim.id])
        .output()
        .unwrap();
    assert!(kill.status.success());
    let replaced = time_until(Duration::from_secs(20), || {
        let now = owned(&env);
        now.len() == 3
            && now.iter().all(|c| c.running && c.id != victim.id)
            && upstream_ready(&env, &o.name, 3)
    });
    let replaced = replaced.unwrap_or_else(|| panic!("not replaced: {}", daemon.log_text()));
    let report = load.join().unwrap();
    eprintln!(
        "docker kill {}: replaced and back in the upstream in {:.2} s",
        victim.name,
        replaced.as_secs_f64()
    );
    print_scenario(
        "docker kill of 1 of 3 replicas",
        &report,
        started.elapsed().min(replaced),
    );
    let problems = convergence_problems(&env, &o.name, 3, None, o.range);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_no_failure(&env, "docker kill", &report);
    assert_transition(
        "docker kill",
        &report,
        load_started,
        started,
        started + replaced,
    );
}
