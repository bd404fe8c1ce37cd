//! Helpers shared by the reliability suite (issue 6): scenario figures, convergence
//! checks against the real engine and nginx, and an upstream sampler.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::{self, Env, http_get};

/// Prints the figures the closing note collects, in one fixed format.
pub fn print_scenario(name: &str, report: &serde_json::Value, converged: Duration) {
    eprintln!(
        "{name}: sent {} failed {} retried {} converged in {:.2} s",
        report["sent"],
        report["failed"],
        report["retried"],
        converged.as_secs_f64()
    );
}

/// The worst per-second p99 latency a transition may show, in ms. Steady state on this
/// 2-core machine is a few ms (5 ms replicas); a transition that stalls clients for a
/// good part of the 2 s client timeout fails.
pub const TRANSITION_P99_MS: f64 = 500.0;

/// The most requests one scenario may resend (a reused keep-alive connection closed
/// before any response byte, as an nginx reload does to idle connections).
pub const MAX_RETRIED: u64 = 50;

/// Worst per-second p99 (ms) of the load timeline over the seconds that overlap
/// `[from, to]`, with `load_started` the moment the load process was spawned.
pub fn p99_during(
    report: &serde_json::Value,
    load_started: Instant,
    from: Instant,
    to: Instant,
) -> f64 {
    let first = from.saturating_duration_since(load_started).as_secs();
    let last = to.saturating_duration_since(load_started).as_secs();
    let rows = report["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("the load report has no timeline: {report}"));
    // Every row must carry its p99 (the report's keys are camelCase): a renamed key
    // must fail here, not read as 0 ms and let every transition pass.
    rows.iter()
        .filter(|r| r["t"].as_u64().is_some_and(|t| t >= first && t <= last))
        .map(|r| {
            r["p99Ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("timeline row without p99Ms: {r}"))
        })
        .fold(0.0, f64::max)
}

/// Asserts the transition `[from, to]` kept its p99 under [`TRANSITION_P99_MS`] and the
/// run resent at most [`MAX_RETRIED`] requests; prints both.
pub fn assert_transition(
    what: &str,
    report: &serde_json::Value,
    load_started: Instant,
    from: Instant,
    to: Instant,
) {
    let p99 = p99_during(report, load_started, from, to);
    let retried = report["retried"].as_u64().unwrap_or(u64::MAX);
    eprintln!(
        "{what}: transition p99 {p99:.1} ms over {:.1} s, retried {retried}",
        (to - from).as_secs_f64()
    );
    assert!(
        p99 <= TRANSITION_P99_MS,
        "{what}: p99 {p99:.1} ms during the transition > {TRANSITION_P99_MS} ms: {report}"
    );
    assert!(
        retried <= MAX_RETRIED,
        "{what}: {retried} requests retried > {MAX_RETRIED}: {report}"
    );
}

/// One owned container as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub id: String,
    pub name: String,
    pub running: bool,
    pub port: u16,
    pub hash: String,
}

/// Every container of the test's instance, with the labels the operator wrote.
pub fn owned(env: &Env) -> Vec<Owned> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            &format!("label=autoscaler.dev/instance={}", env.instance),
            "--format",
            "{{.ID}} {{.Names}} {{.State}} {{.Label \"autoscaler.dev/host-port\"}} {{.Label \"autoscaler.dev/template-hash\"}}",
        ])
        .output()
        .expect("docker ps");
    let mut rows: Vec<Owned> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Owned {
                id: f.first()?.to_string(),
                name: f.get(1)?.to_string(),
                running: *f.get(2)? == "running",
                port: f.get(3)?.parse().unwrap_or(0),
                hash: f.get(4).unwrap_or(&"").to_string(),
            })
        })
        .collect();
    rows.sort_by_key(|o| o.port);
    rows
}

/// `nginx -t` on the live config of the managed prefix: Ok or nginx's stderr.
pub fn nginx_t(env: &Env) -> Result<(), String> {
    let prefix = env.nginx_prefix();
    crate::support::nginx_test(&prefix, &prefix.join("nginx.conf"))
}

/// True when `GET /healthz` on the replica port answers 200.
pub fn port_ready(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    matches!(http_get(addr, "/healthz"), Ok((200, _)))
}

/// True when something accepts TCP connections on the loopback port.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Everything that must hold after a converged pass; returns what does not.
///
/// - every container of the instance runs, has the expected template hash (when given)
///   and sits in the upstream (no orphan); their number is `desired`;
/// - the upstream holds exactly those ports and each answers its readiness probe;
/// - no port of `range` outside the upstream accepts connections (no leaked port);
/// - the live config passes `nginx -t`, and an nginx master runs it.
pub fn convergence_problems(
    env: &Env,
    policy: &str,
    desired: usize,
    hash: Option<&str>,
    range: (u16, u16),
) -> Vec<String> {
    let mut problems = Vec::new();
    let containers = owned(env);
    let mut upstream = env.upstream_ports(policy);
    upstream.sort();
    for c in &containers {
        if !c.running {
            problems.push(format!("container {} is not running (orphan)", c.name));
        }
        if !upstream.contains(&c.port) {
            problems.push(format!(
                "container {} on port {} is not in the upstream {upstream:?} (orphan)",
                c.name, c.port
            ));
        }
        if let Some(h) = hash
            && c.hash != h
        {
            problems.push(format!("container {} has template hash {}", c.name, c.hash));
        }
    }
    if containers.len() != desired {
        problems.push(format!(
            "{} containers, desired {desired}: {containers:?}",
            containers.len()
        ));
    }
    let ports: Vec<u16> = containers.iter().map(|c| c.port).collect();
    if upstream != ports {
        problems.push(format!(
            "upstream {upstream:?} != container ports {ports:?}"
        ));
    }
    for p in &upstream {
        if !port_ready(*p) {
            problems.push(format!("upstream port {p} is not ready"));
        }
    }
    for p in range.0..=range.1 {
        if !upstream.contains(&p) && port_open(p) {
            problems.push(format!("port {p} is open but not in the upstream (leaked)"));
        }
    }
    if let Err(e) = nginx_t(env) {
        problems.push(format!("nginx -t fails: {e}"));
    }
    if env.nginx_master_pid().is_none() {
        problems.push("no nginx master runs".to_owned());
    }
    problems
}

/// Samples the live upstream of one policy every few milliseconds in a thread.
pub struct UpstreamSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(usize, usize, usize)>>,
}

impl UpstreamSampler {
    /// Starts sampling `<prefix>/nginx.conf`; each sample also probes the ports' readiness.
    pub fn start(env: &Env, policy: &str) -> Self {
        let conf: PathBuf = env.nginx_prefix().join("nginx.conf");
        let policy = policy.to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let (mut samples, mut min_listed, mut min_ready) = (0, usize::MAX, usize::MAX);
            while !flag.load(Ordering::Relaxed) {
                let text = std::fs::read_to_string(&conf).unwrap_or_default();
                let ports: Vec<u16> = autoscaler::nginx::parse_upstreams(&text)
                    .get(&policy)
                    .map(|s| s.iter().map(|a| a.port()).collect())
                    .unwrap_or_default();
                let ready = ports.iter().filter(|p| port_ready(**p)).count();
                samples += 1;
                min_listed = min_listed.min(ports.len());
                min_ready = min_ready.min(ready);
                std::thread::sleep(Duration::from_millis(10));
            }
            (samples, min_listed, min_ready)
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns (samples, fewest upstream servers, fewest ready upstream servers).
    pub fn finish(mut self) -> (usize, usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .map(|h| h.join().expect("sampler thread"))
            .unwrap_or((0, 0, 0))
    }
}

impl Drop for UpstreamSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A sample value of the daemon's own `/metrics` (text format), summed over label sets.
pub fn daemon_metric(api: SocketAddr, family: &str) -> Option<f64> {
    let (code, body) = http_get(api, "/metrics").ok()?;
    if code != 200 {
        return None;
    }
    let values: Vec<f64> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// `GET /healthz` status code of the daemon (0 when it does not answer).
pub fn healthz(api: SocketAddr) -> u16 {
    http_get(api, "/healthz").map(|(c, _)| c).unwrap_or(0)
}

/// Polls until `check` holds, returning how long it took, or None after `timeout`.
pub fn time_until(timeout: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Upstream has exactly `n` servers and each answers its readiness probe.
pub fn upstream_ready(env: &Env, policy: &str, n: usize) -> bool {
    let ports = env.upstream_ports(policy);
    ports.len() == n && ports.iter().all(|p| port_ready(*p))
}

/// Waits until the listen address answers 200 ten times in a row: the config on disk can
/// be ahead of the workers while a reload is still in progress.
pub fn wait_lb_serving(env: &Env) -> bool {
    time_until(Duration::from_secs(10), || {
        (0..10).all(|_| matches!(http_get(env.lb_addr(), "/"), Ok((200, _))))
    })
    .is_some()
}

/// Like `Env::spawn_daemon`, with extra environment variables (e.g. `DOCKER_HOST`).
pub fn spawn_daemon_with(
    env: &Env,
    api_port: u16,
    vars: &[(&str, &str)],
) -> crate::support::Daemon {
    env.spawn_daemon_env(api_port, &[], vars)
}

/// Kills nginx workers that hold files under the test's nginx prefix but whose master is
/// gone (a `kill -9`ed master leaves them serving; the shared fixture only stops masters).
pub struct OrphanReaper(pub PathBuf);

impl Drop for OrphanReaper {
    fn drop(&mut self) {
        crate::support::reap_orphan_workers(&self.0);
    }
}

/// A policy whose replicas answer after 5 ms and whose target is far above the load, so
/// only `min` drives the count.
pub fn steady_opts(env: &Env, min: u32, max: u32) -> support::PolicyOpts {
    let mut o = env.opts();
    o.min = min;
    o.max = max;
    o.target = 100_000.0;
    o.args = vec!["--latency-ms".into(), "5".into()];
    o.drain_timeout = 5;
    o
}

/// The load balancer's URL.
pub fn url(env: &Env) -> String {
    format!("http://{}/", env.lb_addr())
}

/// Asserts a load run was big enough and failed nothing; shows nginx's newest error lines.
pub fn assert_no_failure(env: &Env, what: &str, report: &serde_json::Value) {
    assert!(
        report["sent"].as_u64().unwrap_or(0) > 1000,
        "{what}: load too small: {report}"
    );
    let log = std::fs::read_to_string(env.nginx_prefix().join("error.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert_eq!(
        report["failed"],
        0,
        "{what}: failed requests: {report}\nnginx error.log (last lines, newest first):\n{}",
        tail.join("\n")
    );
}
