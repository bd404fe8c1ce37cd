//! `autoscaler run` against the real Docker engine and nginx (issue 5's acceptance
//! criteria): scaling on a load step, live policy edits, replacement of a killed replica
//! through Docker events, the state-dir lock and a serving data plane after SIGTERM, and
//! a `/metrics` that `promtool` accepts and the example Grafana dashboard can use.

mod support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Daemon, Env, http_get, spawn_load, wait_for};

/// The daemon's API port of a test: the last port of its block (replicas use +1..=+20).
fn api_port(env: &Env) -> u16 {
    env.port_base + 99
}

/// Like `Env::spawn_daemon`, with a chosen `--interval` (that one fixes 500 ms) and `--resync`.
fn spawn_daemon_slow(env: &Env, api_port: u16, interval: &str, resync: &str) -> Daemon {
    let policy = env.policy_path();
    let listen = format!("127.0.0.1:{api_port}");
    let log = env.dir.path().join(format!("daemon-{api_port}.log"));
    let child = env
        .command(&[
            "run",
            "-f",
            policy.to_str().unwrap(),
            "--listen",
            &listen,
            "--interval",
            interval,
            "--resync",
            resync,
        ])
        .env("AUTOSCALER_LOG", "info,autoscaler::controller=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Daemon {
        child: Some(child),
        api: listen.parse().unwrap(),
        log,
    }
}

/// `policies.<name>.status` of the daemon's `/status`.
fn policy_status(d: &Daemon, policy: &str) -> Option<serde_json::Value> {
    let status = d.status()?;
    let s = status["policies"][policy]["status"].clone();
    (!s.is_null()).then_some(s)
}

/// The `status` field of condition `kind` in `/status`, when the condition is set.
fn condition(d: &Daemon, policy: &str, kind: &str) -> Option<(bool, String)> {
    let s = policy_status(d, policy)?;
    s["conditions"].as_array()?.iter().find_map(|c| {
        (c["type"] == kind).then(|| {
            (
                c["status"].as_bool().unwrap_or(false),
                c["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
    })
}

/// Upstream ports of `policy` when there are exactly `n` and each answers `/healthz`.
fn live_upstream(env: &Env, policy: &str, n: usize) -> Option<Vec<u16>> {
    let ports = env.upstream_ports(policy);
    let live = ports.len() == n
        && ports.iter().all(|p| {
            http_get(([127, 0, 0, 1], *p).into(), "/healthz").is_ok_and(|(code, _)| code == 200)
        });
    live.then_some(ports)
}

/// Waits until the daemon serves `/status` and the upstream holds `n` live replicas.
fn wait_converged(env: &Env, d: &mut Daemon, policy: &str, n: usize, timeout: Duration) {
    let ok = wait_for(timeout, || {
        if let Some(child) = d.child.as_mut() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "daemon exited early:\n{}",
                d.log_text()
            );
        }
        let ready = policy_status(d, policy)?["ready"].as_u64()? as usize;
        (ready == n && env.running_ids().len() == n)
            .then(|| live_upstream(env, policy, n))
            .flatten()
    });
    assert!(
        ok.is_some(),
        "{policy} did not converge to {n} replicas: upstream {:?}, containers {:?}, status {:?}\n{}",
        env.upstream_ports(policy),
        env.containers(),
        policy_status(d, policy),
        d.log_text()
    );
}

/// GET /metrics (no Accept header: text format 0.0.4).
fn metrics_text(d: &Daemon) -> String {
    let (code, body) = http_get(d.api, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "{body}");
    body
}

/// Series names a scrape of `text` can return: sample names, plus the names declared by
/// `# TYPE` (families with no child yet), with a histogram's `_bucket`/`_sum`/`_count`.
fn exposed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                names.insert(name.to_owned());
                if kind == "histogram" || kind == "summary" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Every `autoscaler_*` identifier in a PromQL expression.
fn referenced_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("autoscaler_") {
        let before_ok = rest[..i]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if before_ok {
            out.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    out
}

/// Every query of a Grafana dashboard: panel targets' `expr` (rows nest panels) and
/// template variables' `definition`.
fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for key in ["expr", "definition"] {
                if let Some(serde_json::Value::String(e)) = map.get(key) {
                    out.push(e.clone());
                }
            }
            map.values().for_each(|v| dashboard_exprs(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn a_load_step_scales_out_to_six_and_back_to_min_without_a_failed_request() {
    let Some(env) = Env::new("daemon_step", 21000) else {
        return;
    };
    let mut o = env.opts();
    o.max = 10;
    o.scale_down_window = 3;
    o.drain_timeout = 5;
    env.write_policy(&o);
    let mut d = env.spawn_daemon(api_port(&env), &[]);
    wait_converged(&env, &mut d, &o.name, 1, Duration::from_secs(20));

    let url = format!("http://{}/", env.lb_addr());
    let started = Instant::now();
    let load = spawn_load(&env, &url, &["--profile", "5@3s,60@20s"]);
    let step = started + Duration::from_secs(3);
    // Six ready replicas in the upstream, within the 20 s of the high step.
    let reached = wait_for(Duration::from_secs(23), || {
        let ready = policy_status(&d, &o.name)?["ready"].as_u64()?;
        (ready >= 6 && env.upstream_ports(&o.name).len() >= 6).then(Instant::now)
    });
    let Some(reached) = reached else {
        panic!(
            "never 6 ready: upstream {:?}, status {:?}\n{}",
            env.upstream_ports(&o.name),
            policy_status(&d, &o.name),
            d.log_text()
        );
    };
    // The most replicas in the upstream while the load runs (bounded: the profile is 23 s).
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(25);
    while !load.is_finished() && Instant::now() < deadline {
        peak = peak.max(env.upstream_ports(&o.name).len());
        std::thread::sleep(Duration::from_millis(200));
    }
    let report = load.join().unwrap();
    let stopped = Instant::now();
    wait_converged(&env, &mut d, &o.name, 1, Duration::from_secs(20));
    let back = stopped.elapsed();
    eprintln!(
        "load step 5→60 req/s at 10/replica: 6 ready {:.1} s after the step; at most {} in the upstream; back to min 1 {:.1} s after load stopped (down window 3 s); load sent {} ok {} failed {} retried {}",
        reached.saturating_duration_since(step).as_secs_f64(),
        peak,
        back.as_secs_f64(),
        report["sent"],
        report["ok"],
        report["failed"],
        report["retried"],
    );
    assert!(report["sent"].as_u64().unwrap() > 1000, "{report}");
    assert_eq!(report["failed"], 0, "no failed request: {report}");
    let events = d.status().unwrap()["events"].to_string();
    assert!(
        events.contains("ScaledUp") && events.contains("ScaledDown"),
        "{events}"
    );
}

#[test]
fn live_edits_converge_and_invalid_yaml_keeps_replicas_and_sets_a_condition() {
    let Some(env) = Env::new("daemon_edit", 21100) else {
        return;
    };
    let mut o = env.opts();
    o.target = 1000.0;
    env.write_policy(&o);
    let mut d = env.spawn_daemon(api_port(&env), &[]);
    wait_converged(&env, &mut d, &o.name, 1, Duration::from_secs(20));
    let pid = d.pid();

    o.min = 3;
    let edited = Instant::now();
    env.write_policy(&o);
    wait_converged(&env, &mut d, &o.name, 3, Duration::from_secs(20));
    eprintln!(
        "live edit min 1→3: 3 ready in the upstream {:.1} s after the save",
        edited.elapsed().as_secs_f64()
    );
    assert_eq!(d.pid(), pid, "same daemon process");
    let ids = env.running_ids();
    let ports = env.upstream_ports(&o.name);

    // Invalid YAML over the file: nothing removed, a false PolicyValid condition.
    env.write_policy_text(
        "apiVersion: autoscaler.dev/v1alpha1\nkind: ScalingPolicy\nspec: [unclosed\n",
    );
    let invalid_at = Instant::now();
    let cond = wait_for(Duration::from_secs(10), || {
        condition(&d, &o.name, "PolicyValid").filter(|c| !c.0)
    });
    let Some((_, message)) = cond else {
        panic!(
            "no PolicyValid=false: {:?}\n{}",
            policy_status(&d, &o.name),
            d.log_text()
        );
    };
    eprintln!(
        "invalid YAML: PolicyValid=false after {:.1} s: {message}",
        invalid_at.elapsed().as_secs_f64()
    );
    assert!(message.contains("policy.yaml"), "names the file: {message}");
    // Give the workers a few ticks to (wrongly) act on it.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(env.running_ids(), ids, "all replicas still running");
    assert_eq!(env.upstream_ports(&o.name), ports, "upstream unchanged");
    assert!(
        d.log_text().contains("policy.yaml:"),
        "error logged with file:line:\n{}",
        d.log_text()
    );

    // Fixing it clears the condition.
    env.write_policy(&o);
    let cleared = wait_for(Duration::from_secs(10), || {
        condition(&d, &o.name, "PolicyValid").filter(|c| c.0)
    });
    assert!(
        cleared.is_some(),
        "PolicyValid not true again: {:?}",
        policy_status(&d, &o.name)
    );
    assert_eq!(env.running_ids(), ids);
    assert_eq!(d.pid(), pid);
}

/// Sum of the `family` samples of the daemon's `/metrics` whose labels contain every
/// `label="value"` of `labels` (0 when there is none).
fn metric_sum(d: &Daemon, family: &str, labels: &[(&str, &str)]) -> f64 {
    let (code, body) = http_get(d.api, "/metrics").unwrap_or((0, String::new()));
    assert_eq!(code, 200, "GET /metrics: {body}");
    body.lines()
        .filter(|l| {
            l.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{'))
                && labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Passes of `policy` started with `trigger` (all triggers when None).
fn passes(d: &Daemon, policy: &str, trigger: Option<&str>) -> f64 {
    let mut labels = vec![("policy", policy)];
    labels.extend(trigger.map(|t| ("trigger", t)));
    metric_sum(d, "autoscaler_reconcile_triggers_total", &labels)
}

/// True when every pass of `policy` that started has finished.
fn no_pass_in_flight(d: &Daemon, policy: &str) -> bool {
    passes(d, policy, None) == metric_sum(d, "autoscaler_reconciles_total", &[("policy", policy)])
}

#[test]
fn a_killed_replica_is_replaced_through_docker_events_and_an_idle_daemon_stays_quiet() {
    let Some(env) = Env::new("daemon_kill", 21200) else {
        return;
    };
    let mut o = env.opts();
    o.min = 2;
    o.target = 1000.0;
    env.write_policy(&o);
    // A 20 s tick and a resync that does not fire during the test (its first tick is at start).
    let mut d = spawn_daemon_slow(&env, api_port(&env), "20s", "600s");
    wait_converged(&env, &mut d, &o.name, 2, Duration::from_secs(20));

    // Idle guard: between two 20 s ticks the daemon runs no other pass. (An idle daemon
    // once reconciled every 250 ms.)
    let ticks = |d: &Daemon| passes(d, &o.name, Some("tick"));
    let tick0 = ticks(&d);
    let first_tick = wait_for(Duration::from_secs(30), || {
        (ticks(&d) > tick0).then(Instant::now)
    });
    assert!(first_tick.is_some(), "no tick in 30 s:\n{}", d.log_text());
    let after_first = passes(&d, &o.name, None);
    let second_tick = wait_for(Duration::from_secs(30), || {
        (ticks(&d) > tick0 + 1.0 && no_pass_in_flight(&d, &o.name)).then(Instant::now)
    });
    let (first_tick, second_tick) = (
        first_tick.unwrap(),
        second_tick.unwrap_or_else(|| panic!("no second tick in 30 s:\n{}", d.log_text())),
    );
    let between = passes(&d, &o.name, None) - after_first;
    let gap = second_tick - first_tick;
    eprintln!(
        "idle: {between} pass(es) in {:.1} s between two ticks",
        gap.as_secs_f64()
    );
    assert_eq!(
        between,
        1.0,
        "passes other than the tick while idle:\n{}",
        d.log_text()
    );
    assert!(
        gap >= Duration::from_secs(18),
        "ticks {gap:?} apart with a 20 s interval"
    );

    // Right after that tick the next one is ~20 s away: only a Docker event can start
    // the passes that replace a killed replica now.
    let before = |trigger| passes(&d, &o.name, Some(trigger));
    let (tick1, resync1, events1) = (before("tick"), before("resync"), before("docker_event"));
    let victim = env.running_ids()[0].clone();
    let killed = Instant::now();
    let out = Command::new("docker")
        .args(["kill", &victim])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = wait_for(Duration::from_secs(15), || {
        let running = env.running_ids();
        (running.len() == 2 && !running.contains(&victim))
            .then(|| live_upstream(&env, &o.name, 2))
            .flatten()
    });
    let took = killed.elapsed();
    assert!(
        back.is_some(),
        "not replaced: {:?} upstream {:?}\n{}",
        env.containers(),
        env.upstream_ports(&o.name),
        d.log_text()
    );
    let events = passes(&d, &o.name, Some("docker_event")) - events1;
    eprintln!(
        "docker kill: replacement ready and in the upstream {:.2} s later, {events} pass(es) started by Docker events (tick 20 s)",
        took.as_secs_f64()
    );
    assert!(
        events >= 1.0,
        "no pass started by a Docker event:\n{}",
        d.log_text()
    );
    assert_eq!(
        (
            passes(&d, &o.name, Some("tick")),
            passes(&d, &o.name, Some("resync"))
        ),
        (tick1, resync1),
        "a tick or resync pass ran during the replacement:\n{}",
        d.log_text()
    );
}

#[test]
fn a_second_daemon_is_refused_and_sigterm_leaves_the_data_plane_serving() {
    let Some(env) = Env::new("daemon_lock", 21300) else {
        return;
    };
    let mut o = env.opts();
    o.min = 2;
    o.target = 1000.0;
    env.write_policy(&o);
    let mut first = env.spawn_daemon(api_port(&env), &[]);
    wait_converged(&env, &mut first, &o.name, 2, Duration::from_secs(20));

    let mut second = env.spawn_daemon(api_port(&env) - 1, &[]);
    let status = second.wait_exit(Duration::from_secs(10));
    let log = second.log_text();
    eprintln!("second daemon: {status:?}: {}", log.trim());
    assert!(
        status.is_some_and(|s| !s.success()),
        "second daemon must exit non-zero: {status:?}\n{log}"
    );
    assert!(log.contains("lock"), "mentions the lock: {log}");
    let once = env.reconcile();
    let once_err = String::from_utf8_lossy(&once.stderr);
    assert!(!once.status.success(), "reconcile --once refused too");
    assert!(once_err.contains("lock"), "{once_err}");

    // SIGTERM under load: exits 0, every replica and nginx keep serving.
    let ids = env.running_ids();
    let master = env.nginx_master_pid();
    assert!(master.is_some());
    let url = format!("http://{}/", env.lb_addr());
    let load = spawn_load(&env, &url, &["--rps", "50", "--duration", "4s"]);
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    first.signal("TERM");
    let status = first.wait_exit(Duration::from_secs(15));
    eprintln!(
        "SIGTERM: daemon exited {status:?} after {:.2} s",
        signalled.elapsed().as_secs_f64()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "graceful exit 0: {status:?}\n{}",
        first.log_text()
    );
    let report = load.join().unwrap();
    eprintln!(
        "load across SIGTERM: sent {} failed {}",
        report["sent"], report["failed"]
    );
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(env.running_ids(), ids, "every replica still running");
    assert_eq!(env.nginx_master_pid(), master, "same nginx master");
    let (code, body) = http_get(env.lb_addr(), "/").expect("GET through nginx");
    assert_eq!(code, 200, "{body}");
    assert_eq!(env.upstream_ports(&o.name).len(), 2);
}

#[test]
fn promtool_accepts_metrics_and_the_grafana_dashboard_uses_only_exposed_names() {
    let promtool = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !promtool {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "promtool is missing (CI=true: this test must not be skipped)"
        );
        eprintln!("SKIP promtool is not installed");
        return;
    }
    let Some(env) = Env::new("daemon_metrics", 21400) else {
        return;
    };
    let o = env.opts();
    env.write_policy(&o);
    let mut d = env.spawn_daemon(api_port(&env), &[]);
    wait_converged(&env, &mut d, &o.name, 1, Duration::from_secs(20));
    // Every family has children once a pass has scraped a ready replica, and (the
    // load-balancer families) once nginx has reported requests of the policy.
    let lb = env.lb_addr();
    let text = wait_for(Duration::from_secs(10), || {
        let _ = http_get(lb, "/");
        let t = metrics_text(&d);
        (t.contains("autoscaler_metric_value{")
            && t.contains("autoscaler_reconcile_duration_seconds_bucket{")
            && t.contains("autoscaler_lb_requests_per_second{"))
        .then_some(t)
    })
    .unwrap_or_else(|| metrics_text(&d));
    // `autoscaler_errors_total` has no series until an error happens: make one (an invalid
    // file is counted as `policy_invalid`), then put the file back.
    env.write_policy_text("spec: [unclosed\n");
    let text = wait_for(Duration::from_secs(10), || {
        let t = metrics_text(&d);
        t.contains("autoscaler_errors_total{kind=\"policy_invalid\"}")
            .then_some(t)
    })
    .unwrap_or_else(|| panic!("no policy_invalid error counted:\n{text}\n{}", d.log_text()));
    env.write_policy(&o);

    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    eprintln!(
        "promtool check metrics: {} ({} lines scraped) {}{}",
        out.status,
        text.lines().count(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}\n{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The example dashboard only queries series this daemon exposes.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ops/grafana-dashboard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    // Every panel query is valid PromQL: promtool checks them as recording rules (with
    // Grafana's variables substituted).
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .filter(|e| !e.starts_with("label_values("))
        .enumerate()
        .map(|(i, e)| {
            let e = e.replace("$__rate_interval", "1m").replace("$policy", ".*");
            serde_json::json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let rules_path = env.dir.path().join("dashboard-rules.yml");
    let rules_doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&rules_path, rules_doc.to_string()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dashboard queries are not valid PromQL:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let exposed = exposed_names(&text);
    let referenced: BTreeSet<String> = exprs.iter().flat_map(|e| referenced_names(e)).collect();
    eprintln!(
        "dashboard: {} queries reference {} metric names",
        exprs.len(),
        referenced.len()
    );
    let missing: Vec<&String> = referenced.difference(&exposed).collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}\n{text}");
    for required in [
        "autoscaler_replicas_desired",
        "autoscaler_replicas_current",
        "autoscaler_replicas_ready",
        "autoscaler_metric_value",
        "autoscaler_metric_target",
        "autoscaler_reconcile_duration_seconds_bucket",
        "autoscaler_errors_total",
        "autoscaler_nginx_reloads",
        "autoscaler_scale_events_total",
    ] {
        assert!(
            referenced.contains(required),
            "dashboard lacks {required}: {referenced:?}"
        );
    }
}

#[test]
fn metric_names_are_found_in_promql_and_exposition_text() {
    assert_eq!(
        referenced_names(
            "histogram_quantile(0.9, sum by (le) (rate(autoscaler_reconcile_duration_seconds_bucket{policy=~\"$policy\"}[5m]))) / my_autoscaler_x"
        ),
        vec!["autoscaler_reconcile_duration_seconds_bucket"]
    );
    let names = exposed_names(
        "# HELP autoscaler_errors_total Errors.\n# TYPE autoscaler_errors_total counter\n# TYPE autoscaler_d histogram\nautoscaler_d_bucket{le=\"1\"} 1\nautoscaler_nginx_reloads 3\n",
    );
    for n in [
        "autoscaler_errors_total",
        "autoscaler_d_bucket",
        "autoscaler_d_count",
        "autoscaler_nginx_reloads",
    ] {
        assert!(names.contains(n), "{n}: {names:?}");
    }
    assert!(!names.contains("Errors."));
}
