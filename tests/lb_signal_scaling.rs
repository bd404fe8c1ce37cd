//! Issue 14's done-when: an image that exposes no metrics at all (the demo backend with
//! `--no-metrics`: `/metrics` is a 404) scales up under load and back down on the load
//! balancer's signal alone, with zero failed requests, against the real engine and nginx.
//!
//! `AUTOSCALER_TEST_IMAGE` picks another demo image tag (default `autoscaler-demo:latest`,
//! built by `scripts/build-image.sh`).

mod support;

use std::time::{Duration, Instant};

use support::{Daemon, Env, IMAGE, http_get, spawn_load, wait_for};

/// Port block 28500..28599 (replicas +1..=+20, the daemon's API at +99).
const PORT_BASE: u16 = 28500;

fn policy_status(d: &Daemon, policy: &str) -> Option<serde_json::Value> {
    let status = d.status()?;
    let s = status["policies"][policy]["status"].clone();
    (!s.is_null()).then_some(s)
}

/// Waits until `n` replicas are ready, in the upstream and answering `/healthz`.
fn wait_ready(env: &Env, d: &mut Daemon, policy: &str, n: usize, timeout: Duration) {
    let ok = wait_for(timeout, || {
        if let Some(child) = d.child.as_mut() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "daemon exited early:\n{}",
                d.log_text()
            );
        }
        let ready = policy_status(d, policy)?["ready"].as_u64()? as usize;
        let ports = env.upstream_ports(policy);
        let live = ports.iter().all(|p| {
            http_get(([127, 0, 0, 1], *p).into(), "/healthz").is_ok_and(|(c, _)| c == 200)
        });
        (ready == n && ports.len() == n && env.running_ids().len() == n && live).then_some(())
    });
    assert!(
        ok.is_some(),
        "{policy} did not converge to {n}: upstream {:?}, containers {:?}, status {:?}\n{}",
        env.upstream_ports(policy),
        env.containers(),
        policy_status(d, policy),
        d.log_text()
    );
}

#[test]
fn an_image_without_metrics_scales_up_and_down_on_the_load_balancer_signal() {
    let Some(env) = Env::new("as_lbs_scaling", PORT_BASE) else {
        return;
    };
    let image = std::env::var("AUTOSCALER_TEST_IMAGE").unwrap_or_else(|_| IMAGE.to_owned());
    let mut o = env.opts();
    o.max = 8;
    o.scale_down_window = 3;
    o.drain_timeout = 5;
    o.args = vec!["--no-metrics".into()];
    let yaml = env
        .policy_yaml(&o)
        .replace(&format!("image: {IMAGE}"), &format!("image: {image}"))
        .replace(
            "- requestRate: {targetPerReplica: 10}",
            "- loadBalancer: {signal: requestRate, targetPerReplica: 10}",
        )
        .replace(
            "  drain:",
            "    windows: {stableSeconds: 2, burstMillis: 1000, burstThreshold: 2}\n  drain:",
        );
    assert!(
        yaml.contains("loadBalancer: {signal: requestRate"),
        "{yaml}"
    );
    env.write_policy_text(&yaml);
    let mut d = env.spawn_daemon(PORT_BASE + 99, &[]);
    wait_ready(&env, &mut d, &o.name, 1, Duration::from_secs(30));

    // The image really exposes nothing to scrape.
    let replica = env.upstream_ports(&o.name)[0];
    let (code, _) = http_get(([127, 0, 0, 1], replica).into(), "/metrics").expect("GET /metrics");
    assert_eq!(code, 404, "the replica must not expose /metrics");

    let url = format!("http://{}/", env.lb_addr());
    let started = Instant::now();
    let load = spawn_load(&env, &url, &["--profile", "5@3s,50@15s"]);
    let step = started + Duration::from_secs(3);
    // 50 req/s at 10 per replica: at least 5 ready, on the signal alone.
    let reached = wait_for(Duration::from_secs(18), || {
        let ready = policy_status(&d, &o.name)?["ready"].as_u64()?;
        (ready >= 5 && env.upstream_ports(&o.name).len() >= 5).then(Instant::now)
    });
    let Some(reached) = reached else {
        panic!(
            "never 5 ready: upstream {:?}, status {:?}\n{}",
            env.upstream_ports(&o.name),
            policy_status(&d, &o.name),
            d.log_text()
        );
    };
    let lb = policy_status(&d, &o.name)
        .map(|s| s["loadBalancer"].clone())
        .unwrap_or_default();
    let report = load.join().unwrap();
    let stopped = Instant::now();
    wait_ready(&env, &mut d, &o.name, 1, Duration::from_secs(30));
    eprintln!(
        "no-metrics image, 5→50 req/s: 5 ready {:.2} s after the step; back to 1 {:.1} s after the load stopped; signal at the peak {lb}; load {report}",
        reached.saturating_duration_since(step).as_secs_f64(),
        stopped.elapsed().as_secs_f64(),
    );
    assert!(report["sent"].as_u64().unwrap_or(0) > 500, "{report}");
    assert_eq!(report["failed"], 0, "no failed request: {report}");
    assert!(
        // Recorded by the pass that scaled up, early in the step: above the 5/s before it.
        lb["rate"].as_f64().unwrap_or(0.0) > 5.0,
        "the signal saw the load: {lb}"
    );
    let events = d.status().unwrap()["events"].to_string();
    assert!(
        events.contains("ScaledUp") && events.contains("ScaledDown"),
        "{events}"
    );
    assert!(events.contains("loadBalancer(requestRate)"), "{events}");
    // The operator's /metrics exports the signal.
    let (_, metrics) = http_get(d.api, "/metrics").expect("GET /metrics");
    assert!(
        metrics.contains("autoscaler_lb_signal_received_total"),
        "{metrics}"
    );
}
