//! Scale to zero against the real Docker engine and nginx (issue 15's acceptance
//! criteria): idle → zero replicas; requests at zero answered 200 once a replica is
//! ready; a burst of 200 at zero with none failed; a replica that cannot start gives the
//! activator's 503 within the hold timeout; the warm path does not pass the activator;
//! an operator stopping while requests are held answers them 503, and nginx answers a
//! fast 503 while the activator is down.
//!
//! Ports: 29000-29499 (one block of 100 per test). Run with
//! `flock /tmp/autoscaler-itest.lock cargo test --test scale_to_zero`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{Daemon, Env, PolicyOpts, wait_for};

/// A daemon for `env` with its API on the block's last port and the activator on the
/// one before.
fn daemon(env: &Env) -> Daemon {
    let activator = format!("127.0.0.1:{}", env.port_base + 98);
    env.spawn_daemon(env.port_base + 99, &["--activator-listen", &activator])
}

/// The test's policy with `min: 0` and the given idle rule.
fn write_zero_policy(env: &Env, o: &PolicyOpts, rule: &str) {
    let yaml = env
        .policy_yaml(o)
        .replace("  ports:", &format!("  scaleToZero: {rule}\n  ports:"));
    env.write_policy_text(&yaml);
}

fn zero_opts(env: &Env) -> PolicyOpts {
    PolicyOpts {
        min: 0,
        max: 3,
        ..env.opts()
    }
}

/// One HTTP/1.1 request (Connection: close): status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn request(addr: SocketAddr, path: &str, read_timeout: Duration) -> std::io::Result<Answer> {
    let text = support::http_get_text(addr, path, read_timeout)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The value of a sample of the daemon's `/metrics` (0 when absent).
fn metric(d: &Daemon, sample: &str) -> f64 {
    support::http_get(d.api, "/metrics")
        .ok()
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with(sample) && l[sample.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Running containers of the test.
fn running(env: &Env) -> usize {
    env.containers().iter().filter(|c| c.2).count()
}

/// nginx sends the policy's requests to the activator (no replica in the upstream).
fn routes_to_activator(env: &Env) -> bool {
    let activator = format!("proxy_pass http://127.0.0.1:{};", env.port_base + 98);
    env.nginx_conf().is_some_and(|c| c.contains(&activator))
}

fn events(d: &Daemon, kind: &str) -> Vec<String> {
    d.status()
        .and_then(|s| s["events"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

/// Writes a scale-to-zero policy whose image does not exist, so no replica can ever start
/// and requests wait at the activator until `timeout_seconds`.
fn write_unstartable_policy(env: &Env, o: &PolicyOpts, timeout_seconds: u64) {
    let yaml = env
        .policy_yaml(o)
        .replace(support::IMAGE, "as-zero-missing:never-built")
        .replace(
            "  ports:",
            &format!(
                "  scaleToZero: {{idleSeconds: 60, timeoutSeconds: {timeout_seconds}}}\n  ports:"
            ),
        );
    env.write_policy_text(&yaml);
}

/// Starts the daemon on the policy written and waits until nginx routes it (a new `min: 0`
/// policy starts at zero) to the activator, with no replica running.
fn daemon_at_zero(env: &Env) -> Daemon {
    let d = daemon(env);
    assert!(
        wait_for(Duration::from_secs(20), || routes_to_activator(env)
            .then_some(()))
        .is_some(),
        "nginx never routed to the activator:\n{}",
        d.log_text()
    );
    assert_eq!(running(env), 0, "a new min: 0 policy starts at zero");
    d
}

#[test]
fn idle_goes_to_zero_and_requests_at_zero_are_answered_once_a_replica_is_ready() {
    let Some(env) = Env::new("zero_idle", 29000) else {
        return;
    };
    let o = zero_opts(&env);
    write_zero_policy(
        &env,
        &o,
        "{idleSeconds: 3, maxPending: 50, timeoutSeconds: 20}",
    );
    let d = daemon_at_zero(&env);

    // First request at zero: held, one replica starts, answered 200.
    let a = request(env.lb_addr(), "/", Duration::from_secs(25)).expect("request at zero");
    assert_eq!(a.status, 200, "{}\n{}", a.body, d.log_text());
    assert_eq!(running(&env), 1);
    assert!(
        wait_for(Duration::from_secs(10), || (!events(&d, "Activated")
            .is_empty())
        .then_some(()))
        .is_some(),
        "no Activated event"
    );
    let activated = events(&d, "Activated");
    assert!(
        activated[0].starts_with("Activated: 1 request held "),
        "{activated:?}"
    );
    assert_eq!(
        metric(
            &d,
            "autoscaler_activator_cold_start_seconds_count{policy=\"zero-idle\"}"
        ),
        1.0
    );

    // Idle for 3 s: back to zero through the drain; nginx points at the activator again.
    assert!(
        wait_for(Duration::from_secs(30), || (running(&env) == 0
            && routes_to_activator(&env))
        .then_some(()))
        .is_some(),
        "never scaled to zero:\n{}",
        d.log_text()
    );
    assert!(
        wait_for(Duration::from_secs(5), || (!events(&d, "ScaledToZero")
            .is_empty())
        .then_some(()))
        .is_some()
    );
    let scaled = events(&d, "ScaledToZero");
    assert!(scaled[0].starts_with("ScaledToZero after "), "{scaled:?}");
    let status = d.status().expect("status");
    let cond = status["policies"]["zero-idle"]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "ScaledToZero").cloned())
        .expect("ScaledToZero condition");
    assert_eq!(cond["status"], true, "{cond}");

    // And again from zero: 5 sequential requests, none failed.
    for i in 0..5 {
        let a = request(env.lb_addr(), "/", Duration::from_secs(25)).expect("request");
        assert_eq!(a.status, 200, "request {i}: {}", a.body);
    }
    assert_eq!(
        metric(
            &d,
            "autoscaler_activator_timeouts_total{policy=\"zero-idle\"}"
        ),
        0.0
    );
}

#[test]
fn a_burst_of_200_at_zero_is_answered_without_a_failure() {
    let Some(env) = Env::new("zero_burst", 29100) else {
        return;
    };
    let o = zero_opts(&env);
    write_zero_policy(
        &env,
        &o,
        "{idleSeconds: 60, maxPending: 500, timeoutSeconds: 30}",
    );
    let d = daemon_at_zero(&env);
    let lb = env.lb_addr();
    let started = Instant::now();
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let t = Instant::now();
                let a = request(lb, "/", Duration::from_secs(40));
                (a.map(|a| a.status).unwrap_or(0), t.elapsed())
            })
        })
        .collect();
    let results: Vec<(u16, Duration)> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let failed: Vec<u16> = results.iter().map(|r| r.0).filter(|s| *s != 200).collect();
    let slowest = results.iter().map(|r| r.1).max().unwrap_or_default();
    eprintln!(
        "burst of 200 at zero: {} failed, slowest {slowest:?}, all done in {:?}",
        failed.len(),
        started.elapsed()
    );
    let nginx_errors =
        std::fs::read_to_string(env.nginx_prefix().join("error.log")).unwrap_or_default();
    assert!(
        failed.is_empty(),
        "failed: {failed:?}\n{}\nnginx error.log:\n{nginx_errors}",
        d.log_text()
    );
    assert_eq!(
        metric(
            &d,
            "autoscaler_activator_rejections_total{policy=\"zero-burst\"}"
        ),
        0.0
    );
}

#[test]
fn a_replica_that_cannot_start_gives_the_activators_503_within_the_timeout() {
    let Some(env) = Env::new("zero_broken", 29200) else {
        return;
    };
    let o = zero_opts(&env);
    write_unstartable_policy(&env, &o, 3);
    let d = daemon_at_zero(&env);
    let t = Instant::now();
    // nginx waits timeout + 5 s for the activator: the activator's own 503 comes first.
    let a = request(env.lb_addr(), "/", Duration::from_secs(20)).expect("request");
    let took = t.elapsed();
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(
        a.body.contains("within 3 s (scaleToZero.timeoutSeconds)")
            && a.body.contains("as-zero-missing:never-built"),
        "the 503 says why: {}",
        a.body
    );
    assert!(took < Duration::from_secs(8), "answered after {took:?}");
    assert_eq!(
        metric(
            &d,
            "autoscaler_activator_timeouts_total{policy=\"zero-broken\"}"
        ),
        1.0
    );
    let status = d.status().expect("status");
    let able = status["policies"]["zero-broken"]["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "AbleToScale").cloned())
        .expect("AbleToScale");
    assert_eq!(able["status"], false, "{able}");
    assert!(
        able["message"]
            .as_str()
            .is_some_and(|m| m.contains("as-zero-missing:never-built")),
        "{able}"
    );
}

#[test]
fn the_warm_path_does_not_pass_through_the_activator() {
    let Some(env) = Env::new("zero_warm", 29300) else {
        return;
    };
    let o = zero_opts(&env);
    write_zero_policy(&env, &o, "{idleSeconds: 600}");
    let d = daemon_at_zero(&env);
    let a = request(env.lb_addr(), "/", Duration::from_secs(25)).expect("cold request");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        wait_for(Duration::from_secs(10), || (!routes_to_activator(&env))
            .then_some(()))
        .is_some(),
        "nginx still routes to the activator with a replica ready"
    );
    let forwarded = "autoscaler_activator_forwarded_total{policy=\"zero-warm\"}";
    let before = metric(&d, forwarded);
    assert_eq!(before, 1.0, "the cold request went through the activator");
    let port = env.upstream_ports("zero-warm")[0];
    let served_before = support::requests_served(port).expect("replica metrics");
    for _ in 0..50 {
        let a = request(env.lb_addr(), "/", Duration::from_secs(5)).expect("warm request");
        assert_eq!(a.status, 200);
    }
    assert_eq!(
        metric(&d, forwarded),
        before,
        "warm requests passed the activator"
    );
    let served = support::requests_served(port).expect("replica metrics");
    assert!(served >= served_before + 50.0, "{served_before} → {served}");
}

#[test]
fn an_operator_stopping_answers_held_requests_503_and_nginx_never_hangs_on_it() {
    let Some(env) = Env::new("zero_stop", 29400) else {
        return;
    };
    let o = zero_opts(&env);
    // A replica that can never start keeps requests held until the timeout (120 s).
    write_unstartable_policy(&env, &o, 120);
    let mut d = daemon_at_zero(&env);
    let lb = env.lb_addr();
    let held = std::thread::spawn(move || request(lb, "/", Duration::from_secs(60)));
    assert!(
        wait_for(Duration::from_secs(10), || (metric(
            &d,
            "autoscaler_activator_held_requests{policy=\"zero-stop\"}"
        ) == 1.0)
            .then_some(()))
        .is_some(),
        "request never held"
    );
    let t = Instant::now();
    d.signal("TERM");
    let a = held.join().expect("client").expect("answer");
    assert_eq!(a.status, 503, "{}", a.body);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(a.body.contains("shutting down"), "{}", a.body);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "held for {:?}",
        t.elapsed()
    );
    assert!(
        d.wait_exit(Duration::from_secs(20)).is_some(),
        "daemon did not exit"
    );

    // Operator gone, nginx still up: its own fast 503 with Retry-After, not a hang.
    let a = request(lb, "/", Duration::from_secs(10)).expect("request with the activator down");
    assert_eq!(a.status, 503);
    assert_eq!(a.header("retry-after"), Some("1"));
}
