//! Bad input changes nothing: the real binary, Docker engine and nginx on hostile policies and upstream sets.
//!
//! - Every fixture in `tests/fixtures/invalid/` makes `diff` and `reconcile --once` exit 2
//!   with `file:line` on stderr, before any state file, container or nginx exists.
//! - A 50 MB policy file is refused quickly.
//! - On a running system (a valid policy reconciled), overwriting the policy with bad
//!   input leaves the containers, the state dir and the live `nginx.conf` untouched.
//! - Seeded random upstream sets, hostile names included: every render the renderer
//!   accepts passes the real `nginx -t`; every set with a hostile value is refused.
//!
//! Loopback ports 18900-18999 are this file's. Docker and nginx are required when
//! `CI=true`; otherwise a missing tool skips the test with a notice.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use autoscaler::nginx::{self, ManagedSettings, Upstream};
use autoscaler::policy::Algorithm;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{invalid_fixtures, nginx_test};

const LABEL_INSTANCE: &str = "autoscaler.dev/instance";
/// The listen port of the running-system test; its replicas use the next ports.
const LISTEN_PORT: u16 = 18900;
const REPLICA_RANGE: &str = "18901-18920";
/// Listen ports of the `nginx -t` test (`nginx -t` binds them briefly).
const NGINX_T_PORTS: std::ops::RangeInclusive<u16> = 18930..=18999;
/// Image of the running-system test (built by scripts/build-image.sh).
const DEMO_IMAGE: &str = "autoscaler-demo:latest";

// ---------------------------------------------------------------- helpers

/// True when `CI=true`: a missing tool is then a failure, not a skip.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether `program args` runs and succeeds; under CI a missing tool panics.
fn require(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "{what} is required when CI=true");
        eprintln!("SKIP: {what} is not available");
    }
    ok
}

fn docker_ready() -> bool {
    require("the Docker engine", "docker", &["version"])
}

fn nginx_ready() -> bool {
    require("nginx", "nginx", &["-v"])
}

/// A name no other run shares (pid + clock).
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Runs the real binary from the crate root with a private state dir and instance
/// (`validate` takes no state dir).
fn autoscaler(args: &[&str], state_dir: &Path, instance: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_autoscaler"));
    cmd.args(args);
    if args.first() != Some(&"validate") {
        cmd.arg("--state-dir").arg(state_dir);
    }
    cmd.env("AUTOSCALER_INSTANCE", instance)
        .env_remove("AUTOSCALER_STATE_DIR")
        .env_remove("AUTOSCALER_NGINX")
        .env("RUST_LOG", "warn")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// `path` relative to the crate root, as the binary prints it.
fn rel(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

/// Asserts exit 2 and a `FILE:LINE:` error on stderr.
fn assert_refused(out: &Output, file: &str, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what} {file}: {stderr}");
    let located = stderr.lines().any(|l| {
        l.strip_prefix(&format!("{file}:"))
            .and_then(|rest| rest.split(':').next())
            .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n >= 1))
    });
    assert!(located, "{what} {file}: no `{file}:LINE:` in {stderr}");
}

/// Ids of every container (any state) of `instance`, sorted.
fn containers(instance: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--no-trunc", "--filter"])
        .arg(format!("label={LABEL_INSTANCE}={instance}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    ids.sort();
    ids
}

/// Pids of processes whose command line mentions `needle` (e.g. a private state dir).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline"))
            && String::from_utf8_lossy(&cmdline).contains(needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Every file under `dir` with its bytes, except logs (nginx may append to them).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_none_or(|e| e != "log") {
                out.insert(path.clone(), fs::read(&path).unwrap_or_default());
            }
        }
    }
    out
}

/// Removes everything of one test run: containers by label, the nginx master, temp dir.
struct Sandbox {
    dir: tempfile::TempDir,
    instance: String,
    /// A valid policy to `autoscaler down` before the hard cleanup, if one was applied.
    down_policy: Option<PathBuf>,
}

impl Sandbox {
    fn new(prefix: &str) -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            instance: unique(prefix),
            down_policy: None,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(policy) = &self.down_policy {
            let policy = policy.to_string_lossy().into_owned();
            let _ = autoscaler(&["down", "-f", &policy], &self.state_dir(), &self.instance);
        }
        let ids = Command::new("docker")
            .args(["ps", "-a", "-q", "--filter"])
            .arg(format!("label={LABEL_INSTANCE}={}", self.instance))
            .output();
        if let Ok(out) = ids {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["rm", "-f"])
                    .args(&ids)
                    .output();
            }
        }
        let pid_file = self.state_dir().join("nginx/nginx.pid");
        if let Some(pid) = fs::read_to_string(pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

// ---------------------------------------------------------------- invalid fixtures

#[test]
fn every_invalid_fixture_is_refused_by_diff_and_reconcile_before_touching_anything() {
    let docker = docker_ready();
    let sandbox = Sandbox::new("badinput-fixtures");
    let state = sandbox.state_dir();
    let files = invalid_fixtures();
    assert!(files.len() >= 80, "only {} fixtures", files.len());
    for file in &files {
        let name = rel(file);
        for cmd in [&["diff", "-f"][..], &["reconcile", "--once", "-f"][..]] {
            let mut args = cmd.to_vec();
            args.push(&name);
            let out = autoscaler(&args, &state, &sandbox.instance);
            assert_refused(&out, &name, cmd[0]);
            assert!(
                out.stdout.is_empty(),
                "{} {name}: printed {:?}",
                cmd[0],
                out.stdout
            );
            assert!(!state.exists(), "{} {name}: created the state dir", cmd[0]);
        }
    }
    let sandbox_path = sandbox.dir.path().to_string_lossy().into_owned();
    assert_eq!(
        processes_mentioning(&sandbox_path),
        Vec::<u32>::new(),
        "nginx started"
    );
    if docker {
        assert_eq!(
            containers(&sandbox.instance),
            Vec::<String>::new(),
            "containers created"
        );
    }
}

#[test]
fn security_fixtures_cover_privilege_host_namespaces_and_mounts() {
    // The schema has no such fields and unknown fields are rejected: each request is
    // refused at its own line, naming the field.
    let cases = [
        ("security-privileged.yaml", "privileged"),
        ("security-privileged-under-spec.yaml", "privileged"),
        ("security-network-mode-host.yaml", "networkMode"),
        ("security-pid-mode-host.yaml", "pidMode"),
        ("security-volumes-bind-mount.yaml", "volumes"),
        ("security-cap-add.yaml", "capAdd"),
        ("security-host-config-passthrough.yaml", "hostConfig"),
        ("security-user-root.yaml", "user"),
    ];
    let sandbox = Sandbox::new("badinput-security");
    for (file, field) in cases {
        let name = format!("tests/fixtures/invalid/{file}");
        let text = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(&name)).unwrap();
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&format!("{field}:")))
            .unwrap()
            + 1;
        let out = autoscaler(
            &["validate", "-f", &name],
            &sandbox.state_dir(),
            &sandbox.instance,
        );
        assert_refused(&out, &name, "validate");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{name}:{line}:"))
                && stderr.contains(&format!("unknown field `{field}`")),
            "{name}: expected unknown field `{field}` at line {line}: {stderr}"
        );
    }
}

#[test]
fn a_50_megabyte_policy_is_refused_quickly_and_changes_nothing() {
    let sandbox = Sandbox::new("badinput-huge");
    let state = sandbox.state_dir();
    let file = sandbox.dir.path().join("huge.yaml");
    let head =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart.yaml"))
            .unwrap();
    let mut text = head.into_bytes();
    let filler = b"# padding padding padding padding padding padding padding padding\n";
    while text.len() < 50 << 20 {
        text.extend_from_slice(filler);
    }
    fs::write(&file, &text).unwrap();
    let name = file.to_string_lossy().into_owned();
    for cmd in [
        &["validate", "-f"][..],
        &["diff", "-f"][..],
        &["reconcile", "--once", "-f"][..],
    ] {
        let mut args = cmd.to_vec();
        args.push(&name);
        let start = Instant::now();
        let out = autoscaler(&args, &state, &sandbox.instance);
        let took = start.elapsed();
        assert_refused(&out, &name, cmd[0]);
        assert!(took < Duration::from_secs(5), "{} took {took:?}", cmd[0]);
        assert!(!state.exists(), "{}: created the state dir", cmd[0]);
    }
}

// ---------------------------------------------------------------- running system

/// A valid policy for the running-system test: one replica of the demo image.
fn running_policy(name: &str) -> String {
    format!(
        "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: {name}
spec:
  template:
    image: {DEMO_IMAGE}
    args: [\"--port\", \"8000\"]
    containerPort: 8000
  replicas: {{min: 1, max: 2}}
  ports: {{hostIp: 127.0.0.1, range: {REPLICA_RANGE}}}
  loadBalancer: {{listen: 127.0.0.1:{LISTEN_PORT}}}
  metrics:
    - requestRate: {{path: /metrics, targetPerReplica: 10}}
"
    )
}

#[test]
fn bad_input_on_a_running_system_changes_nothing() {
    if !docker_ready() || !nginx_ready() {
        return;
    }
    let image = Command::new("docker")
        .args(["image", "inspect", DEMO_IMAGE])
        .output()
        .is_ok_and(|o| o.status.success());
    if !image {
        assert!(
            !in_ci(),
            "{DEMO_IMAGE} is required when CI=true (scripts/build-image.sh)"
        );
        eprintln!("SKIP: {DEMO_IMAGE} is not built (scripts/build-image.sh)");
        return;
    }
    let mut sandbox = Sandbox::new("badinput-running");
    let state = sandbox.state_dir();
    let valid = running_policy("badinput");
    let good_copy = sandbox.dir.path().join("good.yaml");
    fs::write(&good_copy, &valid).unwrap();
    let policy = sandbox.dir.path().join("policy.yaml");
    fs::write(&policy, &valid).unwrap();
    let policy_name = policy.to_string_lossy().into_owned();
    sandbox.down_policy = Some(good_copy);

    let out = autoscaler(
        &["reconcile", "--once", "-f", &policy_name],
        &state,
        &sandbox.instance,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "first reconcile: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ids = containers(&sandbox.instance);
    assert_eq!(ids.len(), 1, "min 1 replica: {ids:?}");
    let conf_path = state.join("nginx/nginx.conf");
    let conf = fs::read(&conf_path).unwrap();
    let files = tree(&state);
    assert!(files.contains_key(&conf_path));

    // Security basics on what was actually created: no privilege, no host namespaces,
    // no mounts.
    let inspect = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.Privileged}} {{.HostConfig.NetworkMode}} {{.HostConfig.PidMode}} {{len .Mounts}} {{.HostConfig.CapAdd}}",
        ])
        .arg(&ids[0])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    let fields: Vec<&str> = inspect.split(' ').collect();
    assert_eq!(fields[0], "false", "privileged: {inspect}");
    assert!(!["host"].contains(&fields[1]), "network mode: {inspect}");
    assert_eq!(fields[2], "", "pid mode: {inspect}");
    assert_eq!(fields[3], "0", "mounts: {inspect}");

    let bad = [
        "inject-name-brace.yaml",
        "inject-listen-directive.yaml",
        "security-privileged.yaml",
        "security-volumes-bind-mount.yaml",
        "alias-bomb.yaml",
        "syntax-duplicate-key.yaml",
        "two-docs-same-listen.yaml",
        "non-utf8.yaml",
        "empty-file.yaml",
    ];
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    for fixture in bad {
        fs::write(&policy, fs::read(dir.join(fixture)).unwrap()).unwrap();
        for cmd in [&["reconcile", "--once", "-f"][..], &["diff", "-f"][..]] {
            let mut args = cmd.to_vec();
            args.push(&policy_name);
            let out = autoscaler(&args, &state, &sandbox.instance);
            assert_refused(&out, &policy_name, &format!("{} ({fixture})", cmd[0]));
            assert_eq!(
                containers(&sandbox.instance),
                ids,
                "{fixture}: containers changed"
            );
            assert_eq!(
                fs::read(&conf_path).unwrap(),
                conf,
                "{fixture}: nginx.conf changed"
            );
            assert_eq!(tree(&state), files, "{fixture}: state dir changed");
        }
    }
}

// ---------------------------------------------------------------- nginx -t on renders

/// Policy names: DNS labels, and values that would inject a directive if they got through.
const HOSTILE_NAMES: &[&str] = &[
    "",
    "a;b",
    "web{",
    "web}",
    "web\nserver 10.0.0.1:80;",
    "web include /etc/passwd",
    "web;include /etc/passwd;",
    "\"web\"",
    "'web'",
    "$host",
    "#web",
    "Web",
    "-web",
    "web-",
    "we b",
    "web\t",
    "w\u{e9}b",
    "web\\",
    "web\0",
    "../web",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

fn random_label(rng: &mut StdRng) -> String {
    const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let len = rng.random_range(1..=20);
    (0..len)
        .map(|i| {
            if i > 0 && i + 1 < len && rng.random_bool(0.2) {
                '-'
            } else {
                char::from(ALNUM[rng.random_range(0..ALNUM.len())])
            }
        })
        .collect()
}

/// A replica address: any port (0 now and then), loopback, IPv6 loopback or a 10/8 address.
fn random_server(rng: &mut StdRng) -> SocketAddr {
    let port = if rng.random_bool(0.03) {
        0
    } else {
        rng.random_range(1..=u16::MAX)
    };
    let ip = match rng.random_range(0..4) {
        0 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        1 => IpAddr::V4(Ipv4Addr::new(10, rng.random(), rng.random(), rng.random())),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    SocketAddr::new(ip, port)
}

/// A listen address: `nginx -t` binds it, so only loopback and this file's ports (port
/// 0 now and then, which rendering must refuse).
fn random_listen(rng: &mut StdRng) -> SocketAddr {
    let port = if rng.random_bool(0.03) {
        0
    } else {
        rng.random_range(NGINX_T_PORTS)
    };
    let ip = if rng.random_bool(0.25) {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    SocketAddr::new(ip, port)
}

/// One seeded upstream set: 0-4 upstreams, sometimes hostile, duplicated or out of range.
fn random_set(rng: &mut StdRng) -> Vec<Upstream> {
    let algorithms = [
        Algorithm::LeastConn,
        Algorithm::RoundRobin,
        Algorithm::IpHash,
        Algorithm::RandomTwoLeastConn,
    ];
    let count = rng.random_range(0..=4);
    let mut set = Vec::new();
    for _ in 0..count {
        let policy = if rng.random_bool(0.15) {
            HOSTILE_NAMES[rng.random_range(0..HOSTILE_NAMES.len())].to_owned()
        } else {
            random_label(rng)
        };
        let keepalive = match rng.random_range(0..10) {
            0 => 65_536,
            1 => u32::MAX,
            2 => 65_535,
            3..=5 => 0,
            _ => rng.random_range(1..=64),
        };
        let servers = (0..rng.random_range(0..=5))
            .map(|_| random_server(rng))
            .collect();
        set.push(Upstream {
            policy,
            algorithm: algorithms[rng.random_range(0..algorithms.len())],
            keepalive,
            listen: random_listen(rng),
            servers,
            drain_timeout_seconds: rng.random_range(0..=3600),
        });
    }
    if !set.is_empty() && rng.random_bool(0.05) {
        // The same policy twice.
        let first = set[0].clone();
        set.push(first);
    }
    set
}

/// True when every policy name is a DNS label (what the renderer must insist on).
fn names_ok(set: &[Upstream]) -> bool {
    set.iter().all(|u| {
        let b = u.policy.as_bytes();
        (1..=63).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    })
}

#[test]
fn every_accepted_render_of_random_upstream_sets_passes_nginx_t() {
    if !nginx_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_path_buf();
    let settings = ManagedSettings {
        prefix: prefix.to_string_lossy().into_owned(),
        worker_processes: 1,
    };
    let mut rng = StdRng::seed_from_u64(0x6ad1_4e57);
    let (mut accepted, mut refused, mut hostile_refused) = (0, 0, 0);
    let start = Instant::now();
    for i in 0..200 {
        let set = random_set(&mut rng);
        let managed = nginx::render_managed(&set, &settings);
        let snippet = nginx::render_snippet(&set);
        assert_eq!(managed.is_ok(), snippet.is_ok(), "set {i}: {set:?}");
        let Ok(conf) = managed else {
            refused += 1;
            if !names_ok(&set) {
                hostile_refused += 1;
            }
            continue;
        };
        assert!(names_ok(&set), "set {i}: accepted a hostile name: {set:?}");
        accepted += 1;
        // The full managed config as rendered.
        let managed_path = prefix.join(format!("managed-{i}.conf"));
        fs::write(&managed_path, &conf).unwrap();
        if let Err(log) = nginx_test(&prefix, &managed_path) {
            panic!("set {i}: nginx -t refused the managed config: {log}\n{conf}\n{set:?}");
        }
        // The snippet, included in a minimal http block as an operator's nginx would.
        let snippet_path = prefix.join(format!("snippet-{i}.conf"));
        fs::write(&snippet_path, snippet.unwrap()).unwrap();
        let wrapper = format!(
            "pid {p}/snippet.pid;\nevents {{}}\nhttp {{\n    include {s};\n}}\n",
            p = prefix.display(),
            s = snippet_path.display()
        );
        let wrapper_path = prefix.join(format!("wrapper-{i}.conf"));
        fs::write(&wrapper_path, wrapper).unwrap();
        if let Err(log) = nginx_test(&prefix, &wrapper_path) {
            panic!("set {i}: nginx -t refused the snippet: {log}\n{set:?}");
        }
    }
    eprintln!(
        "{accepted} accepted sets passed nginx -t (twice each), {refused} refused ({hostile_refused} for hostile names) in {:?}",
        start.elapsed()
    );
    // The sample must exercise both sides, or the test proves nothing.
    assert!(accepted >= 80, "only {accepted} sets accepted");
    assert!(
        hostile_refused >= 10,
        "only {hostile_refused} hostile sets refused"
    );
}

// ---------------------------------------------------------------- fuzz regressions

/// Files of `tests/fixtures/<dir>` (missing directory: none).
fn fixture_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn fuzz_regressions_and_invalid_fixtures_parse_without_panic_with_errors_inside_the_text() {
    // scripts/fuzz.sh copies crashing inputs to tests/fixtures/fuzz/<target>/; this
    // replays the loader's and the exposition parser's without cargo-fuzz.
    let mut policy_inputs = fixture_files("fuzz/policy_loader");
    policy_inputs.extend(fixture_files("invalid"));
    for file in &policy_inputs {
        let bytes = fs::read(file).unwrap();
        let Ok(text) = std::str::from_utf8(&bytes) else {
            continue;
        };
        let lines = text.matches('\n').count() + text.matches('\r').count()
            - text.matches("\r\n").count()
            + 1;
        match autoscaler::policy::parse_str(text, "fuzz.yaml") {
            Ok(policies) => assert!(!policies.is_empty(), "{}", file.display()),
            Err(errors) => {
                for e in errors {
                    assert!(
                        e.line >= 1 && e.line <= lines + 1,
                        "{}: {e}",
                        file.display()
                    );
                }
            }
        }
    }
    for file in fixture_files("fuzz/exposition") {
        let bytes = fs::read(&file).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = autoscaler::exposition::parse(text);
        }
    }
}
