//! Semantic rules: what serde's shape checks cannot say about one policy or a set.
//!
//! [`check_policy`] and [`check_conflicts`] are pure and return every violation with
//! its field path; [`validate_all`] attaches file positions to them.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::error::PolicyError;
use super::grammar;
use super::locate::join_key;
use super::parse::ParsedPolicy;
use super::types::{
    API_VERSION, KIND, MetricSpec, PrometheusAuth, PrometheusMetric, RatePolicyKind, ScalingPolicy,
    ScalingRules, SelectPolicy, Windows,
};

/// Longest stabilization window accepted, in seconds (HPA's limit).
pub const MAX_WINDOW_SECONDS: u32 = 3600;
/// Longest rate-policy period accepted, in seconds (HPA's limit).
pub const MAX_PERIOD_SECONDS: u32 = 1800;
/// Longest drain timeout accepted, in seconds.
pub const MAX_DRAIN_SECONDS: u64 = 3600;
/// Longest `scaleToZero.idleSeconds` accepted (a day).
pub const MAX_IDLE_SECONDS: u64 = 86_400;
/// Largest `scaleToZero.maxPending` accepted.
pub const MAX_PENDING: u32 = 10_000;
/// Longest `scaleToZero.timeoutSeconds` accepted.
pub const MAX_ACTIVATION_SECONDS: u64 = 600;
/// Longest stable window accepted, in seconds (the signal keeps 60 s of windows).
pub const MAX_STABLE_SECONDS: u32 = 60;
/// Shortest burst window accepted, in milliseconds (below it a window holds too few requests).
pub const MIN_BURST_MILLIS: u64 = 100;
/// Longest burst window accepted, in milliseconds.
pub const MAX_BURST_MILLIS: u64 = 60_000;
/// Smallest memory limit Docker accepts (6 MiB).
pub const MIN_MEMORY_BYTES: u64 = 6 << 20;

/// One broken rule: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Field path, e.g. `spec.replicas.max`.
    pub path: String,
    /// What is wrong, one line.
    pub message: String,
}

fn v(path: impl Into<String>, message: impl Into<String>) -> Violation {
    Violation {
        path: path.into(),
        message: message.into(),
    }
}

/// Collects violations, turning a grammar `Result` into one at `path`.
#[derive(Default)]
struct Checks(Vec<Violation>);

impl Checks {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(v(path, message));
    }
    fn grammar<T>(&mut self, path: impl Into<String>, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(t) => Some(t),
            Err(why) => {
                self.push(path, why);
                None
            }
        }
    }
    fn positive_finite(&mut self, path: &str, x: f64) {
        if !(x.is_finite() && x > 0.0) {
            self.push(path, format!("must be a positive finite number, got {x}"));
        }
    }
}

/// Every rule that concerns one policy alone.
///
/// Replicas: `min >= 1` as HPA's `minReplicas`, or `min: 0` together with
/// `spec.scaleToZero` (then `max >= 1`); `max >= min`, and `max + 1` (one surge replica
/// during a rolling update) no larger than the number of ports in `spec.ports.range`.
pub fn check_policy(p: &ScalingPolicy) -> Vec<Violation> {
    let mut c = Checks::default();
    if p.api_version != API_VERSION {
        c.push(
            "apiVersion",
            format!("must be {API_VERSION:?}, got {:?}", p.api_version),
        );
    }
    if p.kind != KIND {
        c.push("kind", format!("must be {KIND:?}, got {:?}", p.kind));
    }
    c.grammar("metadata.name", grammar::dns_label(&p.metadata.name));

    let s = &p.spec;
    let t = &s.template;
    c.grammar("spec.template.image", grammar::image_reference(&t.image));
    if t.args.len() > 256 {
        c.push("spec.template.args", "at most 256 arguments");
    }
    for (i, arg) in t.args.iter().enumerate() {
        c.grammar(
            format!("spec.template.args[{i}]"),
            grammar::single_line_value(arg),
        );
    }
    if t.container_port == 0 {
        c.push("spec.template.containerPort", "must be in 1..=65535");
    }
    if t.env.len() > 256 {
        c.push("spec.template.env", "at most 256 variables");
    }
    for (key, value) in &t.env {
        let path = join_key("spec.template.env", key);
        if c.grammar(path.clone(), grammar::env_name(key)).is_some() {
            c.grammar(path, grammar::single_line_value(value));
        }
    }
    if let Some(cpus) = t.resources.cpus
        && !(cpus.is_finite() && cpus > 0.0 && cpus <= 1024.0)
    {
        c.push(
            "spec.template.resources.cpus",
            format!("must be > 0 and <= 1024 cores, got {cpus}"),
        );
    }
    if let Some(mem) = &t.resources.memory {
        match grammar::memory_bytes(mem) {
            None => c.push(
                "spec.template.resources.memory",
                format!("{mem:?} is not a quantity such as 128Mi, 1Gi, 500M or 1048576"),
            ),
            Some(b) if b < MIN_MEMORY_BYTES => c.push(
                "spec.template.resources.memory",
                format!("{mem} is below Docker's minimum of 6Mi"),
            ),
            Some(_) => {}
        }
    }
    let r = &t.readiness;
    c.grammar(
        "spec.template.readiness.httpGet.path",
        grammar::http_path(&r.http_get.path),
    );
    if !(10..=60_000).contains(&r.period_millis) {
        c.push(
            "spec.template.readiness.periodMillis",
            format!("must be in 10..=60000, got {}", r.period_millis),
        );
    }
    if !(1..=3600).contains(&r.timeout_seconds) {
        c.push(
            "spec.template.readiness.timeoutSeconds",
            format!("must be in 1..=3600, got {}", r.timeout_seconds),
        );
    }

    // Replicas and ports.
    check_scale_to_zero(&mut c, s);
    if s.replicas.max < s.replicas.min {
        c.push(
            "spec.replicas.max",
            format!("must be >= spec.replicas.min ({})", s.replicas.min),
        );
    }
    let host_ip = c.grammar("spec.ports.hostIp", grammar::ip_address(&s.ports.host_ip));
    let range = c.grammar("spec.ports.range", grammar::port_range(&s.ports.range));
    if let Some((first, last)) = range {
        let size = u32::from(last) - u32::from(first) + 1;
        // One spare port: a rolling update surges one replica above the count.
        if u64::from(s.replicas.max) + 1 > u64::from(size) {
            c.push(
                "spec.replicas.max",
                format!(
                    "{} replicas plus one rolling-update surge do not fit spec.ports.range {} ({size} ports)",
                    s.replicas.max, s.ports.range
                ),
            );
        }
    }
    let listen = c.grammar(
        "spec.loadBalancer.listen",
        grammar::listen_address(&s.load_balancer.listen),
    );
    if let (Some(listen), Some(ip), Some(range)) = (listen, host_ip, range)
        && clashes(listen, ip, range)
    {
        c.push(
            "spec.loadBalancer.listen",
            format!(
                "port {} is inside this policy's replica port range {}",
                listen.port(),
                s.ports.range
            ),
        );
    }
    if s.load_balancer.keepalive > 10_000 {
        c.push("spec.loadBalancer.keepalive", "must be <= 10000");
    }

    // Metrics.
    if s.metrics.is_empty() {
        c.push("spec.metrics", "at least one metric is required");
    }
    if s.metrics.len() > 16 {
        c.push("spec.metrics", "at most 16 metrics");
    }
    for (i, m) in s.metrics.iter().enumerate() {
        match m {
            MetricSpec::RequestRate(rr) => {
                let base = format!("spec.metrics[{i}].requestRate");
                c.grammar(format!("{base}.path"), grammar::http_path(&rr.path));
                c.grammar(format!("{base}.counter"), grammar::metric_name(&rr.counter));
                c.positive_finite(&format!("{base}.targetPerReplica"), rr.target_per_replica);
            }
            MetricSpec::Prometheus(pm) => {
                let base = format!("spec.metrics[{i}].prometheus");
                c.grammar(format!("{base}.url"), grammar::http_url(&pm.url));
                if pm.query.trim().is_empty() {
                    c.push(format!("{base}.query"), "must not be empty");
                } else {
                    c.grammar(
                        format!("{base}.query"),
                        grammar::single_line_value(&pm.query),
                    );
                }
                c.positive_finite(&format!("{base}.targetPerReplica"), pm.target_per_replica);
                check_prometheus_access(&mut c, &base, pm);
            }
            MetricSpec::LoadBalancer(lb) => {
                let base = format!("spec.metrics[{i}].loadBalancer");
                c.positive_finite(&format!("{base}.targetPerReplica"), lb.target_per_replica);
            }
        }
    }

    // Behavior.
    let b = &s.behavior;
    if !(b.tolerance.is_finite() && (0.0..1.0).contains(&b.tolerance)) {
        c.push(
            "spec.behavior.tolerance",
            format!("must be in [0, 1), got {}", b.tolerance),
        );
    }
    check_windows(&mut c, &b.windows);
    check_rules(&mut c, "spec.behavior.scaleUp", &b.scale_up);
    check_rules(&mut c, "spec.behavior.scaleDown", &b.scale_down);
    let th = &b.threshold;
    if !(th.lower_per_replica.is_finite() && th.lower_per_replica >= 0.0) {
        c.push(
            "spec.behavior.threshold.lowerPerReplica",
            format!("must be a finite number >= 0, got {}", th.lower_per_replica),
        );
    }
    if !(th.upper_per_replica.is_finite() && th.upper_per_replica > th.lower_per_replica) {
        c.push(
            "spec.behavior.threshold.upperPerReplica",
            format!(
                "must be a finite number above lowerPerReplica ({}), got {}",
                th.lower_per_replica, th.upper_per_replica
            ),
        );
    }
    if s.drain.timeout_seconds > MAX_DRAIN_SECONDS {
        c.push(
            "spec.drain.timeoutSeconds",
            format!(
                "must be <= {MAX_DRAIN_SECONDS}, got {}",
                s.drain.timeout_seconds
            ),
        );
    }
    c.0
}

/// TLS and credentials of a Prometheus source: TLS only for `https://`, credentials in
/// clear text only to a loopback address, every file path absolute (the daemon's working
/// directory is no place to resolve them from). Whether the files can be read is checked
/// by the loader, which may touch the filesystem (`metrics::files::check_policy_files`).
fn check_prometheus_access(c: &mut Checks, base: &str, pm: &PrometheusMetric) {
    let https = pm.url.starts_with("https://");
    if let Some(tls) = &pm.tls {
        if !https {
            c.push(
                format!("{base}.tls"),
                format!(
                    "applies only to an https:// url, and the url is {:?}",
                    pm.url
                ),
            );
        }
        if let Some(ca) = &tls.ca_file {
            c.grammar(format!("{base}.tls.caFile"), absolute_file(ca));
        }
        if let Some(name) = &tls.server_name {
            c.grammar(format!("{base}.tls.serverName"), server_name(name));
        }
    }
    match &pm.auth {
        None => {}
        Some(auth) => {
            if !https && !url_host_is_loopback(&pm.url) {
                c.push(
                    format!("{base}.auth"),
                    "would send credentials in clear text: use an https:// url \
                     (plain http:// is allowed only to a loopback address)",
                );
            }
            match auth {
                PrometheusAuth::BearerTokenFile(path) => {
                    c.grammar(format!("{base}.auth.bearerTokenFile"), absolute_file(path));
                }
                PrometheusAuth::Basic(basic) => {
                    let user = &basic.username;
                    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                        c.push(
                            format!("{base}.auth.basic.username"),
                            format!(
                                "{user:?} must be non-empty, without ':' or control characters"
                            ),
                        );
                    }
                    c.grammar(
                        format!("{base}.auth.basic.passwordFile"),
                        absolute_file(&basic.password_file),
                    );
                }
            }
        }
    }
}

/// An absolute file path on one line.
fn absolute_file(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!(
            "{path:?} must be an absolute path (starting with /)"
        ));
    }
    if path.len() > 4096 || path.chars().any(char::is_control) {
        return Err(format!(
            "{path:?} must be at most 4096 bytes, without control characters"
        ));
    }
    Ok(())
}

/// A DNS name (labels of letters, digits and `-`) or an IP address, as a certificate
/// names its server.
fn server_name(name: &str) -> Result<(), String> {
    let dns = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if dns || name.parse::<IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("{name:?} is not a DNS name or an IP address"))
    }
}

/// Whether the host of an `http(s)://` url is `localhost` or a loopback IP.
fn url_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `min: 0` needs an idle rule (and a replica to wake to); an idle rule needs `min: 0`.
fn check_scale_to_zero(c: &mut Checks, s: &super::types::PolicySpec) {
    match (&s.scale_to_zero, s.replicas.min) {
        (None, 0) => c.push(
            "spec.replicas.min",
            "0 needs spec.scaleToZero (e.g. scaleToZero: {idleSeconds: 300}): without an idle rule and the activator nothing would serve requests; use >= 1 otherwise",
        ),
        (Some(_), min) if min > 0 => c.push(
            "spec.scaleToZero",
            format!("only allowed with spec.replicas.min: 0 (min is {min}, so the policy never reaches zero)"),
        ),
        (Some(z), _) => {
            if s.replicas.max < 1 {
                c.push(
                    "spec.replicas.max",
                    "must be >= 1 with scaleToZero (a request at zero wakes one replica)",
                );
            }
            if !(1..=MAX_IDLE_SECONDS).contains(&z.idle_seconds) {
                c.push(
                    "spec.scaleToZero.idleSeconds",
                    format!("must be in 1..={MAX_IDLE_SECONDS}, got {}", z.idle_seconds),
                );
            }
            if !(1..=MAX_PENDING).contains(&z.max_pending) {
                c.push(
                    "spec.scaleToZero.maxPending",
                    format!("must be in 1..={MAX_PENDING}, got {}", z.max_pending),
                );
            }
            if !(1..=MAX_ACTIVATION_SECONDS).contains(&z.timeout_seconds) {
                c.push(
                    "spec.scaleToZero.timeoutSeconds",
                    format!(
                        "must be in 1..={MAX_ACTIVATION_SECONDS}, got {}",
                        z.timeout_seconds
                    ),
                );
            }
        }
        (None, _) => {}
    }
}

fn check_windows(c: &mut Checks, w: &Windows) {
    let base = "spec.behavior.windows";
    if !(1..=MAX_STABLE_SECONDS).contains(&w.stable_seconds) {
        c.push(
            format!("{base}.stableSeconds"),
            format!(
                "must be in 1..={MAX_STABLE_SECONDS}, got {}",
                w.stable_seconds
            ),
        );
    }
    let burst_max = MAX_BURST_MILLIS.min(u64::from(w.stable_seconds) * 1000);
    if !(MIN_BURST_MILLIS..=burst_max).contains(&u64::from(w.burst_millis)) {
        c.push(
            format!("{base}.burstMillis"),
            format!(
                "must be in {MIN_BURST_MILLIS}..={burst_max} (at most the stable window), got {}",
                w.burst_millis
            ),
        );
    }
    let t = w.burst_threshold;
    if !(t.is_finite() && (t == 0.0 || (t > 1.0 && t <= 100.0))) {
        c.push(
            format!("{base}.burstThreshold"),
            format!("must be above 1 and at most 100 (or 0: no burst mode), got {t}"),
        );
    }
}

fn check_rules(c: &mut Checks, base: &str, rules: &ScalingRules) {
    if let Some(w) = rules.stabilization_window_seconds
        && w > MAX_WINDOW_SECONDS
    {
        c.push(
            format!("{base}.stabilizationWindowSeconds"),
            format!("must be in 0..={MAX_WINDOW_SECONDS}, got {w}"),
        );
    }
    if let Some(policies) = &rules.policies {
        if policies.is_empty() && rules.select_policy != Some(SelectPolicy::Disabled) {
            c.push(
                format!("{base}.policies"),
                "must not be empty unless selectPolicy is Disabled",
            );
        }
        for (i, p) in policies.iter().enumerate() {
            let path = format!("{base}.policies[{i}]");
            if p.value == 0 {
                c.push(format!("{path}.value"), "must be > 0");
            }
            if p.kind == RatePolicyKind::Percent && p.value > 10_000 {
                c.push(format!("{path}.value"), "a Percent policy must be <= 10000");
            }
            if !(1..=MAX_PERIOD_SECONDS).contains(&p.period_seconds) {
                c.push(
                    format!("{path}.periodSeconds"),
                    format!(
                        "must be in 1..={MAX_PERIOD_SECONDS}, got {}",
                        p.period_seconds
                    ),
                );
            }
        }
    }
}

/// Whether two IPs can collide on one host (equal, or one is a wildcard).
fn ips_overlap(a: IpAddr, b: IpAddr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

fn clashes(listen: SocketAddr, ip: IpAddr, (first, last): (u16, u16)) -> bool {
    ips_overlap(listen.ip(), ip) && (first..=last).contains(&listen.port())
}

/// Rules across a set of policies loaded together, as `(index of the offending
/// policy, violation)`: unique names, disjoint port ranges, distinct listen addresses,
/// and no listen port inside another policy's replica range. The later policy is
/// blamed; the message names the earlier one.
pub fn check_conflicts(policies: &[&ScalingPolicy]) -> Vec<(usize, Violation)> {
    let mut out = Vec::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in policies.iter().enumerate() {
        let name = p.metadata.name.as_str();
        match names.get(name) {
            Some(&j) => out.push((
                i,
                v(
                    "metadata.name",
                    format!(
                        "name {name:?} is already used by policy #{} of this load",
                        j + 1
                    ),
                ),
            )),
            None => {
                names.insert(name, i);
            }
        }
    }
    let parsed: Vec<_> = policies
        .iter()
        .map(|p| {
            (
                grammar::ip_address(&p.spec.ports.host_ip).ok(),
                grammar::port_range(&p.spec.ports.range).ok(),
                grammar::listen_address(&p.spec.load_balancer.listen).ok(),
            )
        })
        .collect();
    for (i, (_, range_i, listen_i)) in parsed.iter().enumerate() {
        for (j, (ip_j, range_j, listen_j)) in parsed.iter().enumerate() {
            if i == j {
                continue;
            }
            let other = &policies[j].metadata.name;
            if j < i
                && let (Some((a1, a2)), Some((b1, b2))) = (range_i, range_j)
                && a1 <= b2
                && b1 <= a2
            {
                out.push((
                    i,
                    v(
                        "spec.ports.range",
                        format!("overlaps the port range {b1}-{b2} of policy {other:?}"),
                    ),
                ));
            }
            if j < i
                && let (Some(li), Some(lj)) = (listen_i, listen_j)
                && li.port() == lj.port()
                && ips_overlap(li.ip(), lj.ip())
            {
                out.push((
                    i,
                    v(
                        "spec.loadBalancer.listen",
                        format!("{li} is also the listen address of policy {other:?} ({lj})"),
                    ),
                ));
            }
            if let (Some(li), Some(ip), Some(range)) = (listen_i, ip_j, range_j)
                && clashes(*li, *ip, *range)
            {
                out.push((
                    i,
                    v(
                        "spec.loadBalancer.listen",
                        format!(
                            "port {} is inside the replica port range {}-{} of policy {other:?}",
                            li.port(),
                            range.0,
                            range.1
                        ),
                    ),
                ));
            }
        }
    }
    out
}

/// Every semantic rule over policies loaded together, positioned in their files,
/// sorted by file, line and column.
pub fn validate_all(policies: &[ParsedPolicy]) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    for p in policies {
        for violation in check_policy(&p.policy) {
            errors.push(p.error_at(&violation.path, violation.message));
        }
    }
    let refs: Vec<&ScalingPolicy> = policies.iter().map(|p| &p.policy).collect();
    for (i, mut violation) in check_conflicts(&refs) {
        // Name the other policy's file and line too: it may be another file.
        if let Some(other) = violation
            .message
            .split('"')
            .nth(1)
            .and_then(|name| policies.iter().find(|q| q.policy.metadata.name == name))
            && !std::ptr::eq(other, &policies[i])
        {
            violation.message = format!(
                "{} (defined at {}:{})",
                violation.message, other.file, other.line
            );
        }
        errors.push(policies[i].error_at(&violation.path, violation.message));
    }
    errors.sort();
    errors.dedup();
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_documents;

    const BASE: &str = "\
apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: web}
spec:
  template:
    image: demo:latest
    containerPort: 8000
    env: {MODE: fast}
    resources: {cpus: 0.5, memory: 128Mi}
  replicas: {min: 1, max: 10}
  ports: {hostIp: 127.0.0.1, range: 8001-8079}
  loadBalancer: {listen: 127.0.0.1:8080}
  metrics: [{requestRate: {targetPerReplica: 10}}]
  behavior: {}
  drain: {timeoutSeconds: 30}
";

    fn policy(edit: &str) -> ScalingPolicy {
        let (from, to) = edit.split_once(" => ").unwrap_or((edit, edit));
        assert!(BASE.contains(from), "{from}");
        let (mut ok, errs) = parse_documents(&BASE.replace(from, to), "t.yaml");
        assert!(errs.is_empty(), "{edit}: {errs:?}");
        ok.remove(0).policy
    }

    #[test]
    fn base_policy_is_valid() {
        assert_eq!(check_policy(&policy("kind")), vec![]);
    }

    #[test]
    fn each_rule_reports_its_field() {
        let cases = [
            ("autoscaler.dev/v1alpha1 => v1", "apiVersion"),
            ("kind: ScalingPolicy => kind: Pod", "kind"),
            ("name: web => name: Web", "metadata.name"),
            ("name: web => name: 'web;'", "metadata.name"),
            ("demo:latest => 'demo:latest;'", "spec.template.image"),
            (
                "containerPort: 8000 => containerPort: 0",
                "spec.template.containerPort",
            ),
            ("MODE: fast => 1MODE: fast", "spec.template.env.1MODE"),
            ("MODE: fast => MODE: \"a\\nb\"", "spec.template.env.MODE"),
            ("cpus: 0.5 => cpus: 2000", "spec.template.resources.cpus"),
            ("cpus: 0.5 => cpus: -1", "spec.template.resources.cpus"),
            ("128Mi => 1Mi", "spec.template.resources.memory"),
            ("128Mi => lots", "spec.template.resources.memory"),
            ("min: 1 => min: 0", "spec.replicas.min"),
            (
                "drain: {timeoutSeconds: 30} => scaleToZero: {idleSeconds: 60}",
                "spec.scaleToZero",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 0}\n  scaleToZero: {idleSeconds: 60}",
                "spec.replicas.max",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 0}",
                "spec.scaleToZero.idleSeconds",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 86401}",
                "spec.scaleToZero.idleSeconds",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 9, maxPending: 0}",
                "spec.scaleToZero.maxPending",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 9, maxPending: 10001}",
                "spec.scaleToZero.maxPending",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 9, timeoutSeconds: 0}",
                "spec.scaleToZero.timeoutSeconds",
            ),
            (
                "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 9, timeoutSeconds: 601}",
                "spec.scaleToZero.timeoutSeconds",
            ),
            ("min: 1, max: 10 => min: 4, max: 3", "spec.replicas.max"),
            ("8001-8079 => 8001-8010", "spec.replicas.max"),
            ("8001-8079 => 8079-8001", "spec.ports.range"),
            ("8001-8079 => 0-100", "spec.ports.range"),
            (
                "hostIp: 127.0.0.1 => hostIp: localhost",
                "spec.ports.hostIp",
            ),
            (
                "127.0.0.1:8080 => 127.0.0.1:8005",
                "spec.loadBalancer.listen",
            ),
            ("127.0.0.1:8080 => 0.0.0.0:8005", "spec.loadBalancer.listen"),
            ("127.0.0.1:8080 => 127.0.0.1", "spec.loadBalancer.listen"),
            (
                "targetPerReplica: 10 => targetPerReplica: -1",
                "spec.metrics[0].requestRate.targetPerReplica",
            ),
            (
                "targetPerReplica: 10 => targetPerReplica: .inf",
                "spec.metrics[0].requestRate.targetPerReplica",
            ),
            (
                "{targetPerReplica: 10} => {path: metrics, targetPerReplica: 10}",
                "spec.metrics[0].requestRate.path",
            ),
            (
                "{targetPerReplica: 10} => {counter: a-b, targetPerReplica: 10}",
                "spec.metrics[0].requestRate.counter",
            ),
            (
                "[{requestRate: {targetPerReplica: 10}}] => []",
                "spec.metrics",
            ),
            (
                "[{requestRate: {targetPerReplica: 10}}] => [{prometheus: {url: 'http://p:9090', query: ' ', targetPerReplica: 1}}]",
                "spec.metrics[0].prometheus.query",
            ),
            (
                "[{requestRate: {targetPerReplica: 10}}] => [{prometheus: {url: 'p:9090', query: up, targetPerReplica: 1}}]",
                "spec.metrics[0].prometheus.url",
            ),
            (
                "behavior: {} => behavior: {tolerance: 1}",
                "spec.behavior.tolerance",
            ),
            (
                "behavior: {} => behavior: {tolerance: -0.1}",
                "spec.behavior.tolerance",
            ),
            (
                "behavior: {} => behavior: {scaleUp: {stabilizationWindowSeconds: 3601}}",
                "spec.behavior.scaleUp.stabilizationWindowSeconds",
            ),
            (
                "behavior: {} => behavior: {scaleDown: {policies: []}}",
                "spec.behavior.scaleDown.policies",
            ),
            (
                "behavior: {} => behavior: {scaleDown: {policies: [{type: Pods, value: 0, periodSeconds: 15}]}}",
                "spec.behavior.scaleDown.policies[0].value",
            ),
            (
                "behavior: {} => behavior: {scaleDown: {policies: [{type: Pods, value: 1, periodSeconds: 1801}]}}",
                "spec.behavior.scaleDown.policies[0].periodSeconds",
            ),
            (
                "behavior: {} => behavior: {threshold: {upperPerReplica: 5, lowerPerReplica: 5}}",
                "spec.behavior.threshold.upperPerReplica",
            ),
            (
                "behavior: {} => behavior: {threshold: {upperPerReplica: 5, lowerPerReplica: -1}}",
                "spec.behavior.threshold.lowerPerReplica",
            ),
            (
                "timeoutSeconds: 30 => timeoutSeconds: 3601",
                "spec.drain.timeoutSeconds",
            ),
            (
                "[{requestRate: {targetPerReplica: 10}}] => [{loadBalancer: {signal: concurrency, targetPerReplica: 0}}]",
                "spec.metrics[0].loadBalancer.targetPerReplica",
            ),
            (
                "[{requestRate: {targetPerReplica: 10}}] => [{loadBalancer: {signal: requestRate, targetPerReplica: .nan}}]",
                "spec.metrics[0].loadBalancer.targetPerReplica",
            ),
            (
                "behavior: {} => behavior: {windows: {stableSeconds: 0}}",
                "spec.behavior.windows.stableSeconds",
            ),
            (
                "behavior: {} => behavior: {windows: {stableSeconds: 61}}",
                "spec.behavior.windows.stableSeconds",
            ),
            (
                "behavior: {} => behavior: {windows: {burstMillis: 50}}",
                "spec.behavior.windows.burstMillis",
            ),
            (
                "behavior: {} => behavior: {windows: {stableSeconds: 2, burstMillis: 3000}}",
                "spec.behavior.windows.burstMillis",
            ),
            (
                "behavior: {} => behavior: {windows: {burstThreshold: 1}}",
                "spec.behavior.windows.burstThreshold",
            ),
            (
                "behavior: {} => behavior: {windows: {burstThreshold: -2}}",
                "spec.behavior.windows.burstThreshold",
            ),
            (
                "behavior: {} => behavior: {windows: {burstThreshold: .inf}}",
                "spec.behavior.windows.burstThreshold",
            ),
        ];
        for (edit, path) in cases {
            let found = check_policy(&policy(edit));
            assert!(
                found.iter().any(|v| v.path == path),
                "{edit}: expected an error at {path}, got {found:?}"
            );
        }
    }

    #[test]
    fn edges_that_are_allowed() {
        for edit in [
            "min: 1, max: 10 => min: 3, max: 3",
            "8001-8079 => 8001-8011",
            "behavior: {} => behavior: {tolerance: 0}",
            "behavior: {} => behavior: {scaleUp: {stabilizationWindowSeconds: 3600}}",
            "behavior: {} => behavior: {scaleDown: {selectPolicy: Disabled, policies: []}}",
            "behavior: {} => behavior: {scaleUp: {policies: [{type: Percent, value: 1, periodSeconds: 1800}]}}",
            "timeoutSeconds: 30 => timeoutSeconds: 0",
            "cpus: 0.5 => cpus: 1024",
            "128Mi => 6Mi",
            "127.0.0.1:8080 => 127.0.0.2:8005",
            "MODE: fast => MODE: 'two words; \"quoted\"'",
            "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 300}",
            "min: 1, max: 10} => min: 0, max: 1}\n  scaleToZero: {idleSeconds: 1, maxPending: 1, timeoutSeconds: 1}",
            "min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 86400, maxPending: 10000, timeoutSeconds: 600}",
            "[{requestRate: {targetPerReplica: 10}}] => [{loadBalancer: {signal: requestRate, targetPerReplica: 10}}, {loadBalancer: {signal: concurrency, targetPerReplica: 4}}]",
            "behavior: {} => behavior: {windows: {stableSeconds: 1, burstMillis: 1000, burstThreshold: 0}}",
            "behavior: {} => behavior: {windows: {stableSeconds: 60, burstMillis: 100, burstThreshold: 1.01}}",
        ] {
            assert_eq!(check_policy(&policy(edit)), vec![], "{edit}");
        }
    }

    /// `check_policy` of BASE with its metric replaced by `prometheus: {<fields>}`.
    fn prometheus(fields: &str) -> Vec<Violation> {
        let edit = format!(
            "[{{requestRate: {{targetPerReplica: 10}}}}] => [{{prometheus: {{query: up, targetPerReplica: 1, {fields}}}}}]"
        );
        check_policy(&policy(&edit))
    }

    #[test]
    fn prometheus_tls_and_auth_rules() {
        const P: &str = "spec.metrics[0].prometheus";
        // (fields, paths expected in error; empty = valid)
        let cases: &[(&str, &[&str])] = &[
            ("url: 'https://prom:9090'", &[]),
            ("url: 'https://prom:9090', tls: {}", &[]),
            (
                "url: 'https://10.0.0.5:9090', tls: {caFile: /etc/prom/ca.pem, serverName: prom.internal}",
                &[],
            ),
            ("url: 'https://prom', tls: {serverName: 10.0.0.5}", &[]),
            ("url: 'https://prom', tls: {serverName: '::1'}", &[]),
            (
                "url: 'https://prom', auth: {bearerTokenFile: /run/token}",
                &[],
            ),
            (
                "url: 'https://prom', auth: {basic: {username: ops, passwordFile: /run/pw}}",
                &[],
            ),
            // Clear-text credentials only to loopback.
            (
                "url: 'http://127.0.0.1:9090', auth: {bearerTokenFile: /t}",
                &[],
            ),
            (
                "url: 'http://localhost:9090', auth: {bearerTokenFile: /t}",
                &[],
            ),
            ("url: 'http://[::1]:9090', auth: {bearerTokenFile: /t}", &[]),
            (
                "url: 'http://prom:9090', auth: {bearerTokenFile: /t}",
                &["auth"],
            ),
            (
                "url: 'http://10.0.0.1', auth: {basic: {username: u, passwordFile: /p}}",
                &["auth"],
            ),
            // TLS settings need https.
            ("url: 'http://prom', tls: {caFile: /ca.pem}", &["tls"]),
            ("url: 'http://127.0.0.1', tls: {}", &["tls"]),
            // Paths are absolute, one line.
            (
                "url: 'https://prom', tls: {caFile: ca.pem}",
                &["tls.caFile"],
            ),
            ("url: 'https://prom', tls: {caFile: ''}", &["tls.caFile"]),
            (
                "url: 'https://prom', tls: {caFile: \"/a\\nb\"}",
                &["tls.caFile"],
            ),
            (
                "url: 'https://prom', auth: {bearerTokenFile: ./token}",
                &["auth.bearerTokenFile"],
            ),
            (
                "url: 'https://prom', auth: {basic: {username: u, passwordFile: pw}}",
                &["auth.basic.passwordFile"],
            ),
            // Names.
            (
                "url: 'https://prom', tls: {serverName: ''}",
                &["tls.serverName"],
            ),
            (
                "url: 'https://prom', tls: {serverName: 'a b'}",
                &["tls.serverName"],
            ),
            (
                "url: 'https://prom', tls: {serverName: -a.b}",
                &["tls.serverName"],
            ),
            (
                "url: 'https://prom', tls: {serverName: a..b}",
                &["tls.serverName"],
            ),
            (
                "url: 'https://prom', auth: {basic: {username: 'a:b', passwordFile: /p}}",
                &["auth.basic.username"],
            ),
            (
                "url: 'https://prom', auth: {basic: {username: '', passwordFile: /p}}",
                &["auth.basic.username"],
            ),
            // Several at once are all reported.
            (
                "url: 'http://prom', tls: {caFile: x}, auth: {bearerTokenFile: y}",
                &["tls", "tls.caFile", "auth", "auth.bearerTokenFile"],
            ),
        ];
        for (fields, expected) in cases {
            let found = prometheus(fields);
            let paths: Vec<String> = found.iter().map(|v| v.path.clone()).collect();
            let want: Vec<String> = expected.iter().map(|p| format!("{P}.{p}")).collect();
            assert_eq!(paths, want, "{fields}: {found:?}");
        }
    }

    #[test]
    fn prometheus_auth_shapes_are_exclusive_and_typos_are_errors() {
        for fields in [
            "url: 'https://p', auth: {}",
            "url: 'https://p', auth: {bearerTokenFile: /t, basic: {username: u, passwordFile: /p}}",
            "url: 'https://p', auth: {bearerToken: abc}",
            "url: 'https://p', auth: {basic: {username: u, password: inline}}",
            "url: 'https://p', tls: {cafile: /ca.pem}",
            "url: 'https://p', tls: {insecureSkipVerify: true}",
        ] {
            let text = BASE.replace(
                "[{requestRate: {targetPerReplica: 10}}]",
                &format!("[{{prometheus: {{query: up, targetPerReplica: 1, {fields}}}}}]"),
            );
            let (ok, errs) = parse_documents(&text, "t.yaml");
            assert!(ok.is_empty() && !errs.is_empty(), "{fields}: accepted");
        }
    }

    fn with(name: &str, range: &str, listen: &str) -> ScalingPolicy {
        let mut p = policy("kind");
        p.metadata.name = name.to_owned();
        p.spec.ports.range = range.to_owned();
        p.spec.load_balancer.listen = listen.to_owned();
        p
    }

    #[test]
    fn conflicts_between_policies() {
        let a = with("a", "8001-8079", "127.0.0.1:8080");
        let cases = [
            (
                with("a", "9001-9079", "127.0.0.1:9080"),
                vec!["metadata.name"],
            ),
            (
                with("b", "8070-8079", "127.0.0.1:9080"),
                vec!["spec.ports.range"],
            ),
            (
                with("b", "9001-9079", "127.0.0.1:8080"),
                vec!["spec.loadBalancer.listen"],
            ),
            (
                with("b", "9001-9079", "0.0.0.0:8080"),
                vec!["spec.loadBalancer.listen"],
            ),
            (
                with("b", "9001-9079", "127.0.0.1:8002"),
                vec!["spec.loadBalancer.listen"],
            ),
            (with("b", "9001-9079", "127.0.0.2:8080"), vec![]),
            (with("b", "8081-8090", "127.0.0.1:9080"), vec![]),
        ];
        for (b, expected) in cases {
            let found = check_conflicts(&[&a, &b]);
            let paths: Vec<&str> = found.iter().map(|(_, v)| v.path.as_str()).collect();
            assert_eq!(
                paths, expected,
                "{}/{}",
                b.spec.ports.range, b.spec.load_balancer.listen
            );
            assert!(found.iter().all(|(i, _)| *i == 1));
        }
        // The earlier policy is blamed when its listen port falls in a later range.
        let c = with("c", "8075-8085", "127.0.0.1:9999");
        let mut a2 = a.clone();
        a2.spec.ports.range = "8001-8070".to_owned();
        let found = check_conflicts(&[&a2, &c]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].0, found[0].1.path.as_str()),
            (0, "spec.loadBalancer.listen")
        );
    }

    #[test]
    fn scale_to_zero_defaults_and_position() {
        let p = policy("min: 1, max: 10} => min: 0, max: 10}\n  scaleToZero: {idleSeconds: 300}");
        let z = p.spec.scale_to_zero.expect("scaleToZero");
        assert_eq!(
            (z.idle_seconds, z.max_pending, z.timeout_seconds),
            (300, 100, 30)
        );
        let text = BASE.replace("min: 1, max: 10", "min: 0, max: 10");
        let (ok, _) = parse_documents(&text, "z.yaml");
        let errs: Vec<String> = validate_all(&ok).iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("z.yaml:10:")
                && errs[0].contains("spec.replicas.min: 0 needs spec.scaleToZero"),
            "{errs:?}"
        );
    }

    #[test]
    fn validate_all_positions_errors_in_the_source() {
        let text = BASE.replace("min: 1, max: 10", "min: 4, max: 3");
        let (ok, _) = parse_documents(&text, "t.yaml");
        let errs: Vec<String> = validate_all(&ok).iter().map(ToString::to_string).collect();
        assert_eq!(
            errs,
            ["t.yaml:10:27: spec.replicas.max: must be >= spec.replicas.min (4)"]
        );
    }
}
