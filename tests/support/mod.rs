//! Shared fixture for tests that drive the real binary against the real Docker engine and
//! a real nginx: a unique instance label, state dir, policy file and port block per test,
//! and a Drop guard that removes everything the test made, even when it fails.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The demo image every policy in these tests runs.
pub const IMAGE: &str = "autoscaler-demo:latest";

/// Whether the environment has Docker, nginx and the demo image. Under `CI=true` a
/// missing piece fails the test; elsewhere the test prints why and skips.
pub fn environment_ready(test: &str) -> bool {
    let problem = if !command_ok("docker", &["info", "--format", "{{.ServerVersion}}"]) {
        Some("the Docker engine is not reachable".to_owned())
    } else if !command_ok("nginx", &["-v"]) {
        Some("nginx is not installed".to_owned())
    } else if !command_ok("docker", &["image", "inspect", IMAGE]) {
        Some(format!(
            "image {IMAGE} is missing: run scripts/build-image.sh"
        ))
    } else {
        None
    };
    match problem {
        None => true,
        Some(p) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: {p} (CI=true: this test must not be skipped)")
        }
        Some(p) => {
            eprintln!("SKIP {test}: {p}");
            false
        }
    }
}

fn command_ok(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What a test policy looks like; `Env::policy_yaml` renders it.
#[derive(Debug, Clone)]
pub struct PolicyOpts {
    pub name: String,
    pub min: u32,
    pub max: u32,
    pub target: f64,
    pub listen_port: u16,
    pub range: (u16, u16),
    /// Extra demo-backend args (e.g. `--latency-ms`, `5`).
    pub args: Vec<String>,
    /// Env of the template (changing it rolls the replicas).
    pub env: Vec<(String, String)>,
    pub scale_down_window: u32,
    pub drain_timeout: u32,
}

/// One test's private world.
pub struct Env {
    pub test: String,
    pub instance: String,
    pub dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    pub port_base: u16,
}

impl Env {
    /// A fresh environment; `port_base` starts a block of 100 loopback ports owned by the test.
    pub fn new(test: &str, port_base: u16) -> Option<Env> {
        if !environment_ready(test) {
            return None;
        }
        let instance = format!("t-{test}-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("autoscaler-{test}-"))
            .tempdir()
            .expect("temp dir");
        let state_dir = dir.path().join("state");
        Some(Env {
            test: test.to_owned(),
            instance,
            dir,
            state_dir,
            port_base,
        })
    }

    /// Defaults: policy named after the test, min 1, max 5, target 10, listen on
    /// `port_base`, replicas on `port_base+1..=port_base+20`, scale-up fast.
    pub fn opts(&self) -> PolicyOpts {
        PolicyOpts {
            name: self.test.replace('_', "-"),
            min: 1,
            max: 5,
            target: 10.0,
            listen_port: self.port_base,
            range: (self.port_base + 1, self.port_base + 20),
            args: vec![],
            env: vec![],
            scale_down_window: 0,
            drain_timeout: 10,
        }
    }

    pub fn policy_yaml(&self, o: &PolicyOpts) -> String {
        let mut args = vec!["\"--port\"".to_owned(), "\"8000\"".to_owned()];
        args.extend(o.args.iter().map(|a| format!("{a:?}")));
        let env = if o.env.is_empty() {
            "{}".to_owned()
        } else {
            format!(
                "{{{}}}",
                o.env
                    .iter()
                    .map(|(k, v)| format!("{k}: {v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            r#"apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: {name}
spec:
  template:
    image: {IMAGE}
    args: [{args}]
    containerPort: 8000
    env: {env}
    readiness: {{httpGet: {{path: /healthz}}, periodMillis: 50, timeoutSeconds: 10}}
  replicas: {{min: {min}, max: {max}}}
  ports: {{hostIp: 127.0.0.1, range: {a}-{b}}}
  loadBalancer: {{listen: "127.0.0.1:{listen}", algorithm: least_conn}}
  metrics:
    - requestRate: {{targetPerReplica: {target}}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{{type: Percent, value: 900, periodSeconds: 1}}]
    scaleDown:
      stabilizationWindowSeconds: {window}
      policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
  drain: {{timeoutSeconds: {drain}}}
"#,
            name = o.name,
            args = args.join(", "),
            min = o.min,
            max = o.max,
            a = o.range.0,
            b = o.range.1,
            listen = o.listen_port,
            target = o.target,
            window = o.scale_down_window,
            drain = o.drain_timeout,
        )
    }

    /// The policy file every command of this test reads.
    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// Writes the policy file the way editors save: temp file, then rename over.
    pub fn write_policy_text(&self, text: &str) {
        let tmp = self.dir.path().join(".policy.yaml.swp");
        std::fs::write(&tmp, text).expect("write temp policy");
        std::fs::rename(&tmp, self.policy_path()).expect("rename policy");
    }

    pub fn write_policy(&self, o: &PolicyOpts) {
        self.write_policy_text(&self.policy_yaml(o));
    }

    /// `autoscaler ARGS` with this test's state dir and instance.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoscaler"));
        cmd.args(args)
            .env("AUTOSCALER_STATE_DIR", &self.state_dir)
            .env("AUTOSCALER_INSTANCE", &self.instance)
            .env("AUTOSCALER_LOG", "warn")
            .env_remove("AUTOSCALER_FAULT");
        cmd
    }

    /// Runs `autoscaler ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run autoscaler")
    }

    /// Runs `autoscaler reconcile --once -f <policy>`.
    pub fn reconcile(&self) -> Output {
        let policy = self.policy_path();
        self.run(&["reconcile", "--once", "-f", policy.to_str().unwrap()])
    }

    /// Starts `autoscaler run -f <policy>` with its endpoint on `api_port`.
    pub fn spawn_daemon(&self, api_port: u16, extra: &[&str]) -> Daemon {
        self.spawn_daemon_env(api_port, extra, &[])
    }

    /// Like `spawn_daemon`, with extra environment variables (e.g. `DOCKER_HOST`).
    pub fn spawn_daemon_env(&self, api_port: u16, extra: &[&str], vars: &[(&str, &str)]) -> Daemon {
        let policy = self.policy_path();
        let listen = format!("127.0.0.1:{api_port}");
        let log_path = self.dir.path().join(format!("daemon-{api_port}.log"));
        let log = std::fs::File::create(&log_path).expect("daemon log");
        let mut args = vec![
            "run",
            "-f",
            policy.to_str().unwrap(),
            "--listen",
            &listen,
            "--interval",
            "500ms",
        ];
        args.extend_from_slice(extra);
        let mut cmd = self.command(&args);
        cmd.env("AUTOSCALER_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        Daemon {
            child: Some(cmd.spawn().expect("spawn daemon")),
            api: listen.parse().unwrap(),
            log: log_path,
        }
    }

    /// Containers carrying this test's instance label: (id, name, running).
    pub fn containers(&self) -> Vec<(String, String, bool)> {
        let out = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &format!("label=autoscaler.dev/instance={}", self.instance),
                "--format",
                "{{.ID}} {{.Names}} {{.State}}",
            ])
            .output()
            .expect("docker ps");
        let mut rows: Vec<(String, String, bool)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                Some((
                    it.next()?.to_owned(),
                    it.next()?.to_owned(),
                    it.next()? == "running",
                ))
            })
            .collect();
        rows.sort();
        rows
    }

    pub fn running_ids(&self) -> Vec<String> {
        self.containers()
            .into_iter()
            .filter(|c| c.2)
            .map(|c| c.0)
            .collect()
    }

    pub fn nginx_prefix(&self) -> PathBuf {
        self.state_dir.join("nginx")
    }

    pub fn nginx_conf(&self) -> Option<String> {
        std::fs::read_to_string(self.nginx_prefix().join("nginx.conf")).ok()
    }

    /// Upstream server ports of the policy in the live nginx config.
    pub fn upstream_ports(&self, policy: &str) -> Vec<u16> {
        let conf = self.nginx_conf().unwrap_or_default();
        autoscaler::nginx::parse_upstreams(&conf)
            .get(policy)
            .map(|s| s.iter().map(|a| a.port()).collect())
            .unwrap_or_default()
    }

    pub fn nginx_master_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.nginx_prefix().join("nginx.pid")).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    /// Worker pids of the managed master (children in /proc).
    pub fn nginx_worker_pids(&self) -> Vec<i32> {
        let Some(master) = self.nginx_master_pid() else {
            return vec![];
        };
        let mut pids: Vec<i32> = std::fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|pid| {
                        std::fs::read_to_string(format!("/proc/{pid}/stat"))
                            .ok()
                            .and_then(|s| {
                                let after = s.rsplit_once(')')?.1.to_owned();
                                after.split_whitespace().nth(1)?.parse::<i32>().ok()
                            })
                            == Some(master)
                    })
                    .collect()
            })
            .unwrap_or_default();
        pids.sort();
        pids
    }

    /// The listen address of the default policy.
    pub fn lb_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port_base))
    }
}

impl Env {
    /// Removes this test's containers (by its own instance label); how many there were.
    fn sweep_containers(&self) -> usize {
        let ids = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=autoscaler.dev/instance={}", self.instance),
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        ids.len()
    }

    /// Whether a daemon ran in this environment (each one leaves its log in `dir`).
    fn ran_a_daemon(&self) -> bool {
        std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("daemon-"))
            })
            .unwrap_or(false)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.sweep_containers();
        // A daemon killed in the middle of a create leaves the engine finishing that create
        // after the kill, possibly after the sweep above (seen: a `Created` container of
        // scale_to_zero outlived its test): sweep again until one finds nothing.
        if self.ran_a_daemon() {
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(300));
                if self.sweep_containers() == 0 {
                    break;
                }
            }
        }
        // Its nginx master (and any orphaned workers), through the same code the operator uses.
        let prefix = self.nginx_prefix();
        if prefix.exists()
            && let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        {
            let lb = autoscaler::lb::ManagedNginx::new(prefix.clone(), PathBuf::from("nginx"), 1)
                .with_stop_timeout(Duration::from_secs(3));
            let _ = rt.block_on(autoscaler::lb::LoadBalancer::stop(&lb));
        }
        reap_orphan_workers(&prefix);
    }
}

/// Kills nginx workers orphaned by a `kill -9`ed master (reparented to pid 1) that still
/// hold a file under `prefix` open: they would keep this test's listen port.
pub fn reap_orphan_workers(prefix: &Path) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !cmd.starts_with("nginx: worker") {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
        let holds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten()
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .any(|t| t.starts_with(prefix))
            })
            .unwrap_or(false);
        if holds && ppid == Some(1) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A running daemon, SIGKILLed on drop if still alive.
pub struct Daemon {
    pub child: Option<Child>,
    pub api: SocketAddr,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends a signal (e.g. `libc`-free: via `kill -s`).
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args(["-s", sig, &self.pid().to_string()])
            .status();
    }

    /// Waits for exit up to `timeout`; returns the exit status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET /status as JSON.
    pub fn status(&self) -> Option<serde_json::Value> {
        let (code, body) = http_get(self.api, "/status").ok()?;
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Minimal blocking HTTP/1.1 GET (Connection: close): the whole response as text.
pub fn http_get_text(
    addr: SocketAddr,
    path: &str,
    read_timeout: Duration,
) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(read_timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(String::from_utf8_lossy(&raw).to_string())
}

/// Minimal blocking HTTP/1.1 GET (Connection: close): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let text = http_get_text(addr, path, Duration::from_secs(5))?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Polls `check` every 100 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests to `/` a demo replica on loopback `port` has served (its own
/// `http_requests_total{path="/"}`), or None when it does not answer.
pub fn requests_served(port: u16) -> Option<f64> {
    let (code, body) = http_get(SocketAddr::from(([127, 0, 0, 1], port)), "/metrics").ok()?;
    if code != 200 {
        return None;
    }
    let total = body
        .lines()
        .filter(|l| l.starts_with("http_requests_total{") && l.contains("path=\"/\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(total)
}

/// Waits until every replica in `ports` has served at least `more` requests beyond what
/// it had served when called: the load reaches each of them. False after `timeout`.
pub fn wait_each_served(ports: &[u16], more: f64, timeout: Duration) -> bool {
    let base: Vec<f64> = ports
        .iter()
        .map(|p| requests_served(*p).unwrap_or(0.0))
        .collect();
    wait_for(timeout, || {
        ports
            .iter()
            .zip(&base)
            .all(|(p, b)| requests_served(*p).is_some_and(|n| n >= b + more))
            .then_some(())
    })
    .is_some()
}

/// Runs `autoscaler load` in the background against `url`; join to get its JSON report.
pub fn spawn_load(
    env: &Env,
    url: &str,
    load_args: &[&str],
) -> std::thread::JoinHandle<serde_json::Value> {
    // The CLI's default per-request timeout (2 s) applies: a stall longer than that is a
    // failed request, as a real client would see it.
    let mut cmd = env.command(&["load", "--url", url, "--json"]);
    cmd.args(load_args);
    std::thread::spawn(move || {
        let out = cmd.output().expect("run load");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "load output is not JSON ({e}): stdout={} stderr={}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
    })
}

/// Asserts an `autoscaler` run exited with `code`, printing its output otherwise.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every malformed policy of the shared corpus (`tests/fixtures/invalid/*.yaml`), sorted.
pub fn invalid_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// Runs the real `nginx -t` on `conf` under `prefix`: Ok, or nginx's stderr.
pub fn nginx_test(prefix: &Path, conf: &Path) -> Result<(), String> {
    let out = Command::new("nginx")
        .arg("-t")
        .arg("-q")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(conf)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
