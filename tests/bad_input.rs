//! Bad input changes nothing: the real binary, Docker engine and nginx on hostile policies and upstream sets.
//!
//! - Every fixture in `tests/fixtures/invalid/` (exactly [`FIXTURES`], no more, no less)
//!   makes `validate`, `diff` and `reconcile --once` exit 2 with exactly its expected
//!   errors (line, field path, message fragment), before any state file, container or
//!   nginx exists. The YAML-budget fixtures are type-correct policies that only a budget
//!   can refuse; a smaller twin of each is accepted.
//! - A 50 MB policy file is refused quickly.
//! - On a running system (a valid policy reconciled), overwriting the policy with one
//!   fixture of every [`Class`] leaves the containers (ids and states), the nginx master,
//!   the state dir and the live `nginx.conf` byte for byte untouched.
//! - Seeded random upstream sets, hostile names included: every render the renderer
//!   accepts passes the real `nginx -t`; every set with a hostile value is refused.
//!
//! Loopback ports 18900-18999 are this file's. Docker and nginx are required when
//! `CI=true`; otherwise a missing tool skips the test with a notice.

mod support;

use std::collections::{BTreeMap, BTreeSet};
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

/// The errors `file:LINE:COL: PATH: MESSAGE` that `stderr` reports for `file`, in order,
/// as (line, path, message). The path may hold quoted keys with `: ` inside.
fn reported_errors(stderr: &str, file: &str) -> Vec<(usize, String, String)> {
    let prefix = format!("{file}:");
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let _column = parts.next();
            let rest = parts.next().unwrap_or_default().trim_start();
            let mut quoted = false;
            let split = rest.char_indices().find_map(|(i, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                (!quoted && rest[i..].starts_with(": ")).then_some(i)
            });
            match split {
                Some(i) => (line, rest[..i].to_owned(), rest[i + 2..].to_owned()),
                None => (line, String::new(), rest.to_owned()),
            }
        })
        .collect()
}

/// Asserts exit 2, nothing on stdout, and exactly the `expected` errors for `file`.
fn assert_expected_errors(out: &Output, file: &str, expected: &[Expected], what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{what} {file}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{what} {file}: printed {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let got = reported_errors(&stderr, file);
    assert_eq!(
        got.len(),
        expected.len(),
        "{what} {file}: expected {expected:?}, got {got:?}"
    );
    for ((line, path, message), (want_line, want_path, fragment)) in got.iter().zip(expected) {
        assert!(
            line == want_line && path == want_path && message.contains(fragment),
            "{what} {file}: expected {want_line}: {want_path}: …{fragment}…, got {line}: {path}: {message}"
        );
    }
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

/// What kind of bad input a fixture is; the running-system test tries one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    /// Type-correct YAML that only a serde-saphyr budget (aliases, replay, depth, merge keys) refuses.
    Budget,
    /// Not YAML: indentation, tabs, unclosed flow, quotes, duplicate keys.
    Syntax,
    /// No policy document, or a document that is not a mapping.
    Shape,
    /// Not UTF-8.
    Encoding,
    /// A value of the wrong type.
    Type,
    UnknownField,
    MissingField,
    /// Well-typed, but the validator refuses the value.
    Semantic,
    /// A value that would inject into the nginx config or a container spec.
    Injection,
    /// A request for privilege, host namespaces or mounts.
    Security,
    /// Each document is fine alone; together they conflict.
    CrossDocument,
}
use Class::*;

/// One expected error of a fixture: (line, field path as printed, message fragment).
type Expected = (usize, &'static str, &'static str);

/// How many files `tests/fixtures/invalid/` holds: adding or losing a fixture must
/// change [`FIXTURES`] and this count together.
const FIXTURE_COUNT: usize = 88;

/// Every fixture of `tests/fixtures/invalid/`, its class and all the errors it must
/// produce, in the order they are printed (no other error may appear).
#[rustfmt::skip]
const FIXTURES: &[(&str, Class, &[Expected])] = &[
    ("alias-bomb-wide.yaml", Budget, &[(12, r#"spec.template.env."<<"[200]"#, "alias expansion limit exceeded for anchor id 1: 201 > 200")]),
    ("alias-bomb.yaml", Budget, &[(15, "spec.metrics[0].requestRate.targetPerReplica", "alias replay limit exceeded: total_replayed_events=20001 > 20000")]),
    ("cpus-zero.yaml", Semantic, &[(12, "spec.template.resources.cpus", "must be > 0 and <= 1024 cores, got 0")]),
    ("deep-nesting-block.yaml", Budget, &[(41, r#"spec.template.env."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<""#, "budget breached: Depth { depth: 33 }")]),
    ("deep-nesting-flow.yaml", Budget, &[(11, r#"spec.template.env."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<"."<<""#, "budget breached: Depth { depth: 33 }")]),
    ("drain-too-long.yaml", Semantic, &[(17, "spec.drain.timeoutSeconds", "must be <= 3600, got 86400")]),
    ("empty-file.yaml", Shape, &[(1, "(document)", "no ScalingPolicy document in file")]),
    ("env-bad-key.yaml", Semantic, &[(11, r#"spec.template.env."MODE=1; rm""#, r#""MODE=1; rm" is not a POSIX variable name ([A-Za-z_][A-Za-z0-9_]*)"#)]),
    ("good-then-bad-document.yaml", Type, &[(28, "spec.replicas.max", "expected a whole number from 0 to 4294967295")]),
    ("host-ip-invalid.yaml", Semantic, &[(13, "spec.ports.hostIp", r#""127.0.0.300" is not an IP address"#)]),
    ("image-bad-digest.yaml", Semantic, &[(8, "spec.template.image", r#""autoscaler-demo@sha256:beef" is not a valid image reference: digest must be ALGORITHM:HEX with at least 32 hex digits"#)]),
    ("image-uppercase.yaml", Semantic, &[(8, "spec.template.image", r#""Autoscaler-Demo:latest" is not a valid image reference: path component "Autoscaler-Demo" must be lowercase letters and digits joined by '.', '_', '__' or '-'"#)]),
    ("inject-arg-nul.yaml", Injection, &[(9, "spec.template.args[1]", r#"must not contain control characters (found '\0'): newlines and NUL are not allowed"#)]),
    ("inject-counter-name.yaml", Injection, &[(16, "spec.metrics[0].requestRate.counter", r#""x} or vector(1e9) #" is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"#)]),
    ("inject-env-value-newline.yaml", Injection, &[(11, "spec.template.env.MODE", r#"must not contain control characters (found '\n'): newlines and NUL are not allowed"#)]),
    ("inject-host-ip.yaml", Injection, &[(13, "spec.ports.hostIp", r#""0.0.0.0 -v /:/host" is not an IP address"#)]),
    ("inject-image-newline.yaml", Injection, &[(8, "spec.template.image", r#""autoscaler-demo:latest\nevil" is not a valid image reference: tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"#)]),
    ("inject-image-space.yaml", Injection, &[(8, "spec.template.image", r#""autoscaler-demo:latest --privileged" is not a valid image reference: tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"#)]),
    ("inject-listen-directive.yaml", Injection, &[(14, "spec.loadBalancer.listen", r#""127.0.0.1:8080; proxy_pass http://evil" is not IP:PORT (e.g. 127.0.0.1:8080)"#)]),
    ("inject-listen-newline.yaml", Injection, &[(14, "spec.loadBalancer.listen", r#""127.0.0.1:8080\n}" is not IP:PORT (e.g. 127.0.0.1:8080)"#)]),
    ("inject-metrics-path-brace.yaml", Injection, &[(16, "spec.metrics[0].requestRate.path", r#""/metrics{}" is not an absolute path of [A-Za-z0-9._~/%-] characters"#)]),
    ("inject-name-brace.yaml", Injection, &[(5, "metadata.name", r#""web{}" is not a DNS label: only a-z, 0-9 and '-' are allowed"#)]),
    ("inject-name-newline.yaml", Injection, &[(5, "metadata.name", r#""web\nserver { listen 80; }" is not a DNS label: only a-z, 0-9 and '-' are allowed"#)]),
    ("inject-name-quote.yaml", Injection, &[(5, "metadata.name", r#""we\"b" is not a DNS label: only a-z, 0-9 and '-' are allowed"#)]),
    ("inject-name-semicolon.yaml", Injection, &[(5, "metadata.name", r#""web; include /etc/passwd" is not a DNS label: only a-z, 0-9 and '-' are allowed"#)]),
    ("inject-readiness-path.yaml", Injection, &[(12, "spec.template.readiness.httpGet.path", r#""/healthz; return 200" is not an absolute path of [A-Za-z0-9._~/%-] characters"#)]),
    ("listen-inside-range.yaml", Semantic, &[(14, "spec.loadBalancer.listen", "port 8050 is inside this policy's replica port range 8001-8079")]),
    ("listen-not-an-address.yaml", Semantic, &[(14, "spec.loadBalancer.listen", r#""localhost:8080" is not IP:PORT (e.g. 127.0.0.1:8080)"#)]),
    ("many-errors-at-once.yaml", Semantic, &[(5, "metadata.name", r#""Web_Site" is not a DNS label: only a-z, 0-9 and '-' are allowed"#), (12, "spec.replicas.max", "must be >= spec.replicas.min (5)"), (13, "spec.ports.range", "first port 9 is above last port 1")]),
    ("max-exceeds-port-range.yaml", Semantic, &[(12, "spec.replicas.max", "10 replicas plus one rolling-update surge do not fit spec.ports.range 8001-8005 (5 ports)")]),
    ("memory-bad-quantity.yaml", Semantic, &[(12, "spec.template.resources.memory", r#""128MB" is not a quantity such as 128Mi, 1Gi, 500M or 1048576"#)]),
    ("merge-key-abuse.yaml", Budget, &[(21, r#"spec.metrics[6].requestRate."<<"[1]"#, "budget breached: MergeKeys { merge_keys: 101 }")]),
    ("min-greater-than-max.yaml", Semantic, &[(12, "spec.replicas.max", "must be >= spec.replicas.min (5)")]),
    ("min-zero.yaml", Semantic, &[(12, "spec.replicas.min", "0 needs spec.scaleToZero (e.g. scaleToZero: {idleSeconds: 300}): without an idle rule and the activator nothing would serve requests; use >= 1 otherwise")]),
    ("missing-image.yaml", MissingField, &[(10, "spec.template", "missing field `image`")]),
    ("missing-metadata.yaml", MissingField, &[(4, "(document)", "missing field `metadata`")]),
    ("no-metrics.yaml", Semantic, &[(7, "spec.metrics", "at least one metric is required")]),
    ("non-utf8.yaml", Encoding, &[(5, "(document)", "not UTF-8: invalid byte 0xff")]),
    ("not-a-mapping.yaml", Shape, &[(1, "(document)", "expected a mapping of `key: value` fields here")]),
    ("only-comments.yaml", Shape, &[(1, "(document)", "no ScalingPolicy document in file")]),
    ("port-range-reversed.yaml", Semantic, &[(13, "spec.ports.range", "first port 8079 is above last port 8001")]),
    ("port-range-zero.yaml", Semantic, &[(13, "spec.ports.range", r#""0-70" is not FIRST-LAST with ports in 1..=65535"#)]),
    ("prometheus-bad-url.yaml", Semantic, &[(17, "spec.metrics[1].prometheus.url", r#""file:///etc/passwd" is not an http(s)://HOST[:PORT][/PATH] URL"#)]),
    ("prometheus-files-missing.yaml", Semantic, &[(21, "spec.metrics[1].prometheus.tls.caFile", "cannot read /nonexistent/autoscaler-fixture/ca.pem: No such file or directory"), (22, "spec.metrics[1].prometheus.auth.bearerTokenFile", "cannot read /nonexistent/autoscaler-fixture/token: No such file or directory")]),
    ("prometheus-inline-password.yaml", UnknownField, &[(21, "spec.metrics[1].prometheus.auth.basic.password", "unknown field `password`, expected one of username, passwordFile")]),
    ("prometheus-multiline-query.yaml", Semantic, &[(19, "spec.metrics[1].prometheus.query", r#"must not contain control characters (found '\n'): newlines and NUL are not allowed"#)]),
    ("prometheus-tls-over-http.yaml", Semantic, &[(21, "spec.metrics[1].prometheus.tls", r#"applies only to an https:// url, and the url is "http://prometheus.example:9090""#), (21, "spec.metrics[1].prometheus.tls.caFile", r#""certs/ca.pem" must be an absolute path (starting with /)"#), (22, "spec.metrics[1].prometheus.auth", "would send credentials in clear text: use an https:// url (plain http:// is allowed only to a loopback address)")]),
    ("rate-policies-empty-not-disabled.yaml", Semantic, &[(17, "spec.behavior.scaleUp.policies", "must not be empty unless selectPolicy is Disabled")]),
    ("rate-policy-zero-period.yaml", Semantic, &[(19, "spec.behavior.scaleUp.policies[0].periodSeconds", "must be in 1..=1800, got 0")]),
    ("scalar-document.yaml", Shape, &[(1, "(document)", "expected a mapping of `key: value` fields here")]),
    ("security-cap-add.yaml", Security, &[(12, "spec.template.capAdd", "unknown field `capAdd`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-host-config-passthrough.yaml", Security, &[(12, "spec.template.hostConfig", "unknown field `hostConfig`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-network-mode-host.yaml", Security, &[(12, "spec.template.networkMode", "unknown field `networkMode`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-pid-mode-host.yaml", Security, &[(12, "spec.template.pidMode", "unknown field `pidMode`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-privileged-under-spec.yaml", Security, &[(8, "spec.privileged", "unknown field `privileged`, expected one of template, replicas, ports, loadBalancer, metrics, behavior, drain")]),
    ("security-privileged.yaml", Security, &[(12, "spec.template.privileged", "unknown field `privileged`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-user-root.yaml", Security, &[(12, "spec.template.user", "unknown field `user`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("security-volumes-bind-mount.yaml", Security, &[(12, "spec.template.volumes", "unknown field `volumes`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("syntax-bad-indent.yaml", Syntax, &[(11, "spec.template.args[1]", "while parsing a block mapping, did not find expected key")]),
    ("syntax-duplicate-key.yaml", Syntax, &[(13, "spec.replicas", "duplicate mapping key: replicas, set DuplicateKeyPolicy in Options if acceptable")]),
    ("syntax-tab-indent.yaml", Syntax, &[(12, "spec.template.env.MODE", "tabs cannot indent YAML; use spaces")]),
    ("syntax-unclosed-flow.yaml", Syntax, &[(16, "spec.metrics[0].requestRate", "unclosed bracket '{'")]),
    ("syntax-unterminated-quote.yaml", Syntax, &[(9, "spec.template.args", "invalid trailing content after double-quoted scalar")]),
    ("target-infinite.yaml", Semantic, &[(16, "spec.metrics[0].requestRate.targetPerReplica", "must be a positive finite number, got inf")]),
    ("target-nan.yaml", Semantic, &[(16, "spec.metrics[0].requestRate.targetPerReplica", "must be a positive finite number, got NaN")]),
    ("target-zero.yaml", Semantic, &[(16, "spec.metrics[0].requestRate.targetPerReplica", "must be a positive finite number, got 0")]),
    ("threshold-upper-below-lower.yaml", Semantic, &[(19, "spec.behavior.threshold.upperPerReplica", "must be a finite number above lowerPerReplica (5), got 3")]),
    ("tolerance-one.yaml", Semantic, &[(17, "spec.behavior.tolerance", "must be in [0, 1), got 1")]),
    ("two-docs-duplicate-name.yaml", CrossDocument, &[(21, "metadata.name", r#"name "web" is already used by policy #1 of this load"#)]),
    ("two-docs-listen-in-other-range.yaml", CrossDocument, &[(30, "spec.loadBalancer.listen", r#"port 8040 is inside the replica port range 8001-8079 of policy "web""#)]),
    ("two-docs-overlapping-ports.yaml", CrossDocument, &[(29, "spec.ports.range", r#"overlaps the port range 8001-8079 of policy "web""#)]),
    ("two-docs-same-listen.yaml", CrossDocument, &[(30, "spec.loadBalancer.listen", r#"127.0.0.1:8080 is also the listen address of policy "web" (127.0.0.1:8080)"#)]),
    ("type-args-not-list.yaml", Type, &[(9, "spec.template.args", "expected sequence start")]),
    ("type-bad-algorithm.yaml", Type, &[(14, "spec.loadBalancer.algorithm", "unknown variant `fastest`, expected one of least_conn, round_robin, ip_hash, random_two_least_conn")]),
    ("type-metric-unknown-kind.yaml", Type, &[(16, "spec.metrics[0].cpu", "unknown variant `cpu`, expected one of requestRate, prometheus")]),
    ("type-min-string.yaml", Type, &[(12, "spec.replicas.min", "expected a whole number from 0 to 4294967295")]),
    ("type-negative-min.yaml", Type, &[(12, "spec.replicas.min", "expected a whole number from 0 to 4294967295")]),
    ("type-port-too-big.yaml", Type, &[(10, "spec.template.containerPort", "expected a whole number from 0 to 65535")]),
    ("type-spec-null.yaml", Type, &[(6, "spec", "expected a mapping of `key: value` fields here")]),
    ("type-target-string.yaml", Type, &[(16, "spec.metrics[0].requestRate.targetPerReplica", "invalid floating point")]),
    ("type-yes-boolean-as-number.yaml", Type, &[(12, "spec.replicas.max", "expected a whole number from 0 to 4294967295")]),
    ("unknown-field-in-behavior.yaml", UnknownField, &[(17, "spec.behavior.scaleUp.stabilisationWindowSeconds", "unknown field `stabilisationWindowSeconds`, expected one of stabilizationWindowSeconds, selectPolicy, policies")]),
    ("unknown-field-typo.yaml", UnknownField, &[(10, "spec.template.containerport", "unknown field `containerport`, expected one of image, args, containerPort, env, resources, readiness")]),
    ("unknown-top-level-field.yaml", UnknownField, &[(17, "status", "unknown field `status`, expected one of apiVersion, kind, metadata, spec")]),
    ("utf16-bom.yaml", Encoding, &[(1, "(document)", "not UTF-8: invalid byte 0xff")]),
    ("window-too-long.yaml", Semantic, &[(17, "spec.behavior.scaleDown.stabilizationWindowSeconds", "must be in 0..=3600, got 7200")]),
    ("wrong-api-version.yaml", Semantic, &[(2, "apiVersion", r#"must be "autoscaler.dev/v1alpha1", got "autoscaling/v2""#)]),
    ("wrong-kind.yaml", Semantic, &[(3, "kind", r#"must be "ScalingPolicy", got "HorizontalPodAutoscaler""#)]),
];

/// The expected row of `file` (a path under the crate root or a bare name).
fn fixture_row(file: &Path) -> &'static (&'static str, Class, &'static [Expected]) {
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    FIXTURES
        .iter()
        .find(|(f, _, _)| *f == name)
        .unwrap_or_else(|| panic!("{name} is not in FIXTURES: give it its expected errors"))
}

#[test]
fn the_fixture_table_lists_every_fixture_file_exactly_once() {
    let files = invalid_fixtures();
    let on_disk: Vec<&str> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str())
        .collect();
    let listed: Vec<&str> = FIXTURES.iter().map(|(f, _, _)| *f).collect();
    assert_eq!(on_disk.len(), FIXTURE_COUNT, "fixture files: {on_disk:?}");
    assert_eq!(
        listed, on_disk,
        "FIXTURES (sorted by name) must match the files"
    );
    for (file, _, expected) in FIXTURES {
        assert!(!expected.is_empty(), "{file}: no expected error");
    }
}

#[test]
fn every_invalid_fixture_is_refused_with_its_expected_errors_before_touching_anything() {
    let docker = docker_ready();
    let sandbox = Sandbox::new("badinput-fixtures");
    let state = sandbox.state_dir();
    let files = invalid_fixtures();
    assert_eq!(files.len(), FIXTURE_COUNT);
    for file in &files {
        let name = rel(file);
        let (_, _, expected) = fixture_row(file);
        for cmd in [
            &["validate", "-f"][..],
            &["diff", "-f"][..],
            &["reconcile", "--once", "-f"][..],
        ] {
            let mut args = cmd.to_vec();
            args.push(&name);
            let out = autoscaler(&args, &state, &sandbox.instance);
            assert_expected_errors(&out, &name, expected, cmd[0]);
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

/// A policy with `body` as its `env:` value and `metrics` as its metric list.
fn budget_twin(env: &str, metrics: &str) -> String {
    format!(
        "apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: web
spec:
  template:
    image: autoscaler-demo:latest
    containerPort: 8000
    env: {env}
  replicas: {{min: 1, max: 10}}
  ports: {{hostIp: 127.0.0.1, range: 8001-8079}}
  loadBalancer: {{listen: 127.0.0.1:8080}}
  metrics:
{metrics}"
    )
}

/// `levels` metrics, each merging `fan` aliases of the one before (the bomb shape).
fn merge_chain(levels: usize, fan: usize) -> String {
    let mut text = String::from("    - requestRate: &r0 {path: /metrics, targetPerReplica: 10}\n");
    for l in 1..levels {
        let aliases = vec![format!("*r{}", l - 1); fan].join(", ");
        text.push_str(&format!("    - requestRate: &r{l} {{<<: [{aliases}]}}\n"));
    }
    text
}

#[test]
fn budget_fixtures_are_type_correct_and_refused_only_by_the_budget_they_name() {
    // Each budget fixture's shape, one size below its budget, is a valid policy: so the
    // fixture is refused by the budget alone, and the message names that budget.
    let metric = "    - requestRate: {path: /metrics, targetPerReplica: 10}\n";
    let nested = |depth: usize| {
        format!(
            "{}{{MODE: fast}}{}",
            "{<<: ".repeat(depth),
            "}".repeat(depth)
        )
    };
    let nested_block = |depth: usize| {
        let mut env = String::new();
        for d in 0..depth {
            env.push_str(&format!("\n{}<<:", " ".repeat(6 + 2 * d)));
        }
        format!("{env}\n{}MODE: fast", " ".repeat(6 + 2 * depth))
    };
    // `metadata` anchored, merged `aliases` times into env; 30 anchored args.
    let wide = |aliases: usize| {
        let args: Vec<String> = (0..30).map(|i| format!("&a{i} v{i}")).collect();
        let merged = vec!["*md"; aliases].join(", ");
        budget_twin(&format!("{{<<: [{merged}]}}"), metric)
            .replacen("metadata:\n  name: web", "metadata: &md {name: web}", 1)
            .replacen(
                "    env:",
                &format!("    args: [{}]\n    env:", args.join(", ")),
                1,
            )
    };
    let twins = [
        (
            "alias-bomb.yaml",
            "alias replay limit",
            budget_twin("{}", &merge_chain(2, 60)),
        ),
        (
            "alias-bomb-wide.yaml",
            "alias expansion limit exceeded",
            wide(190),
        ),
        (
            "deep-nesting-flow.yaml",
            "budget breached: Depth",
            budget_twin(&nested(25), metric),
        ),
        (
            "deep-nesting-block.yaml",
            "budget breached: Depth",
            budget_twin(&nested_block(25), metric),
        ),
        (
            "merge-key-abuse.yaml",
            "budget breached: MergeKeys",
            budget_twin("{}", &merge_chain(6, 2)),
        ),
    ];
    let budget_rows: Vec<&str> = FIXTURES
        .iter()
        .filter(|(_, class, _)| *class == Budget)
        .map(|(f, _, _)| *f)
        .collect();
    assert_eq!(budget_rows.len(), twins.len(), "{budget_rows:?}");
    for (fixture, budget, twin) in twins {
        let (_, class, expected) = fixture_row(Path::new(fixture));
        assert_eq!(*class, Budget, "{fixture}");
        assert!(
            expected.iter().all(|(_, _, m)| m.contains(budget)),
            "{fixture}: the table expects {expected:?}, not the {budget} budget"
        );
        match autoscaler::policy::parse_str(&twin, "twin.yaml") {
            Ok(policies) => assert_eq!(policies.len(), 1, "{fixture}"),
            Err(errors) => {
                panic!("{fixture}: the twin below the budget is refused: {errors:?}\n{twin}")
            }
        }
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

    // One fixture of every class, plus the ones most likely to reach Docker or nginx.
    let mut bad: Vec<&str> = Vec::new();
    for (file, class, _) in FIXTURES {
        if !FIXTURES
            .iter()
            .take_while(|(f, _, _)| f != file)
            .any(|(_, c, _)| c == class)
        {
            bad.push(file);
        }
    }
    let classes: BTreeSet<Class> = FIXTURES.iter().map(|(_, c, _)| *c).collect();
    assert_eq!(bad.len(), classes.len(), "one fixture per class: {bad:?}");
    for extra in [
        "inject-name-brace.yaml",
        "inject-listen-directive.yaml",
        "security-privileged.yaml",
        "security-volumes-bind-mount.yaml",
        "alias-bomb.yaml",
        "deep-nesting-flow.yaml",
        "syntax-duplicate-key.yaml",
        "two-docs-same-listen.yaml",
        "non-utf8.yaml",
        "empty-file.yaml",
    ] {
        if !bad.contains(&extra) {
            bad.push(extra);
        }
    }
    let engine = container_states(&ids);
    let master = fs::read_to_string(state.join("nginx/nginx.pid")).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    for fixture in bad {
        let (_, class, expected) = fixture_row(Path::new(fixture));
        fs::write(&policy, fs::read(dir.join(fixture)).unwrap()).unwrap();
        for cmd in [&["reconcile", "--once", "-f"][..], &["diff", "-f"][..]] {
            let mut args = cmd.to_vec();
            args.push(&policy_name);
            let out = autoscaler(&args, &state, &sandbox.instance);
            let what = format!("{} ({class:?} {fixture})", cmd[0]);
            assert_expected_errors(&out, &policy_name, expected, &what);
            assert_eq!(
                containers(&sandbox.instance),
                ids,
                "{what}: containers changed"
            );
            assert_eq!(
                container_states(&ids),
                engine,
                "{what}: container states changed"
            );
            assert_eq!(
                fs::read(&conf_path).unwrap(),
                conf,
                "{what}: nginx.conf changed"
            );
            assert_eq!(tree(&state), files, "{what}: state dir changed");
            let pid = master.trim().parse::<i32>().unwrap();
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "{what}: the nginx master {pid} is gone"
            );
        }
    }
}

/// `id status started-at restart-count` of each container: any stop, start or restart
/// changes it.
fn container_states(ids: &[String]) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "inspect",
            "--format",
            "{{.Id}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}",
        ])
        .args(ids)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
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
            hold: None,
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
