//! The `ScalingPolicy` resource: serde + schemars types, HPA-compatible defaults.
//!
//! These types only describe shape and defaults; semantic rules live in
//! [`super::validate`]. Every struct rejects unknown fields so a typo is an error,
//! not a silently ignored setting.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `apiVersion` this build understands.
pub const API_VERSION: &str = "autoscaler.dev/v1alpha1";
/// The only `kind` this build understands.
pub const KIND: &str = "ScalingPolicy";

/// One autoscaled service: what a replica runs, how many, and how to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "ScalingPolicy")]
pub struct ScalingPolicy {
    /// Must be `autoscaler.dev/v1alpha1`.
    pub api_version: String,
    /// Must be `ScalingPolicy`.
    pub kind: String,
    /// Identity of the policy.
    pub metadata: Metadata,
    /// Desired behaviour.
    pub spec: PolicySpec,
    /// The addresses, range and sizes above as typed values, parsed once when the policy
    /// is loaded and validated (see [`super::parse_str`]); the shell reads these, never
    /// the strings. Not part of the resource.
    #[serde(skip)]
    #[schemars(skip)]
    pub parsed: Parsed,
}

/// Typed values of a valid policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    /// `spec.ports.hostIp`.
    pub host_ip: std::net::IpAddr,
    /// `spec.ports.range`, inclusive.
    pub port_range: (u16, u16),
    /// `spec.loadBalancer.listen`.
    pub listen: std::net::SocketAddr,
    /// `spec.template.resources.memory` in bytes.
    pub memory_bytes: Option<u64>,
}

impl Default for Parsed {
    fn default() -> Self {
        Self {
            host_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            port_range: (1, 0),
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            memory_bytes: None,
        }
    }
}

/// Identity of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// DNS label (RFC 1123, at most 63 characters); names containers, the upstream and state.
    pub name: String,
}

/// The desired state of one policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// What one replica runs.
    pub template: Template,
    /// Bounds on the replica count.
    #[serde(default)]
    pub replicas: Replicas,
    /// Host ports the replicas publish on.
    pub ports: Ports,
    /// The NGINX upstream and server in front of the replicas.
    pub load_balancer: LoadBalancer,
    /// Metrics driving the decision; with several, the largest desired count wins (as HPA).
    #[serde(default)]
    pub metrics: Vec<MetricSpec>,
    /// How fast to scale in each direction (HPA v2 `behavior`).
    #[serde(default)]
    pub behavior: Behavior,
    /// How a removed replica finishes its in-flight work.
    #[serde(default)]
    pub drain: Drain,
    /// Scale to zero after an idle period; required by (and only allowed with)
    /// `replicas.min: 0`. At zero, the operator's activator holds requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<ScaleToZero>,
}

/// When a `min: 0` policy goes to zero replicas, and how requests are held at zero.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleToZero {
    /// Seconds without a request (as the load-balancer signal sees it) before the
    /// policy scales to zero; 1..=86400.
    pub idle_seconds: u64,
    /// Requests the activator holds at once at zero; more get `503` with `Retry-After`
    /// (default 100, 1..=10000).
    #[serde(default = "default_max_pending")]
    pub max_pending: u32,
    /// Longest a held request waits for a ready replica before it gets `503` with
    /// `Retry-After` (default 30, 1..=600).
    #[serde(default = "default_activation_timeout")]
    pub timeout_seconds: u64,
}

fn default_max_pending() -> u32 {
    100
}
fn default_activation_timeout() -> u64 {
    30
}

/// What one replica runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Image reference, e.g. `autoscaler-demo:latest`; must exist locally (nothing is pulled).
    pub image: String,
    /// Arguments passed to the image's entrypoint.
    #[serde(default)]
    pub args: Vec<String>,
    /// Port the replica listens on inside the container.
    pub container_port: u16,
    /// Environment variables of the replica.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// CPU and memory limits of one replica.
    #[serde(default)]
    pub resources: Resources,
    /// How the operator decides that a replica may receive traffic.
    #[serde(default)]
    pub readiness: Readiness,
}

/// CPU and memory limits of one replica.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPU limit in cores (e.g. `0.5`); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit as a Kubernetes quantity (`128Mi`, `1Gi`, `500M`); unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// Readiness probe of a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Readiness {
    /// HTTP GET probe through the published port.
    #[serde(default)]
    pub http_get: HttpGet,
    /// Delay between probes while waiting, in milliseconds.
    #[serde(default = "default_period_millis")]
    pub period_millis: u64,
    /// How long a new replica may take to become ready before the step fails.
    #[serde(default = "default_readiness_timeout")]
    pub timeout_seconds: u64,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            http_get: HttpGet::default(),
            period_millis: default_period_millis(),
            timeout_seconds: default_readiness_timeout(),
        }
    }
}

fn default_period_millis() -> u64 {
    200
}
fn default_readiness_timeout() -> u64 {
    10
}

/// An HTTP GET probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGet {
    /// Absolute path; a 2xx answer means ready.
    #[serde(default = "default_healthz")]
    pub path: String,
}

impl Default for HttpGet {
    fn default() -> Self {
        Self {
            path: default_healthz(),
        }
    }
}

fn default_healthz() -> String {
    "/healthz".to_owned()
}

/// Bounds on the replica count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replicas {
    /// Never fewer replicas than this (HPA's `minReplicas`, default 1); `0` only with
    /// `spec.scaleToZero`.
    #[serde(default = "default_min")]
    pub min: u32,
    /// Never more replicas than this (HPA's `maxReplicas`, default 10).
    #[serde(default = "default_max")]
    pub max: u32,
}

impl Default for Replicas {
    fn default() -> Self {
        Self {
            min: default_min(),
            max: default_max(),
        }
    }
}

fn default_min() -> u32 {
    1
}
fn default_max() -> u32 {
    10
}

/// Host ports the replicas publish on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ports {
    /// Host address the replica ports bind to (default loopback).
    #[serde(default = "default_host_ip")]
    pub host_ip: String,
    /// Inclusive range `FIRST-LAST`, e.g. `8001-8099`; one port per replica.
    #[schemars(regex(pattern = r"^[0-9]{1,5}-[0-9]{1,5}$"))]
    pub range: String,
}

fn default_host_ip() -> String {
    "127.0.0.1".to_owned()
}

/// The NGINX side of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `IP:PORT` the server block listens on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Upstream balancing algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Idle keep-alive connections nginx keeps to the upstream, per worker.
    #[serde(default = "default_keepalive")]
    pub keepalive: u32,
}

fn default_keepalive() -> u32 {
    32
}

/// Upstream balancing algorithm (nginx directive in brackets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// `least_conn`
    #[default]
    LeastConn,
    /// nginx's default weighted round robin.
    RoundRobin,
    /// `ip_hash`
    IpHash,
    /// `random two least_conn`
    RandomTwoLeastConn,
}

/// One metric source; externally tagged: `- requestRate: {...}` or `- prometheus: {...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum MetricSpec {
    /// Per-second rate of a counter scraped from every ready replica.
    RequestRate(RequestRateMetric),
    /// An instant query against a Prometheus server; its value is the total over replicas.
    Prometheus(PrometheusMetric),
    /// What nginx saw of the service's requests (rate or concurrency): no `/metrics` needed.
    LoadBalancer(LoadBalancerMetric),
}

impl MetricSpec {
    /// Desired value per replica.
    pub fn target_per_replica(&self) -> f64 {
        match self {
            MetricSpec::RequestRate(m) => m.target_per_replica,
            MetricSpec::Prometheus(m) => m.target_per_replica,
            MetricSpec::LoadBalancer(m) => m.target_per_replica,
        }
    }

    /// Short human name used in reasons and status, e.g. `requestRate(http_requests_total)`.
    pub fn display_name(&self) -> String {
        match self {
            MetricSpec::RequestRate(m) => format!("requestRate({})", m.counter),
            MetricSpec::Prometheus(m) => format!("prometheus({})", m.query),
            MetricSpec::LoadBalancer(m) => format!("loadBalancer({})", m.signal.as_str()),
        }
    }
}

/// Rate of a counter scraped from every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRateMetric {
    /// Path of the Prometheus exposition on each replica.
    #[serde(default = "default_metrics_path")]
    pub path: String,
    /// Counter family summed across its label sets (`_total` suffix optional).
    #[serde(default = "default_counter")]
    pub counter: String,
    /// Desired requests per second per replica.
    pub target_per_replica: f64,
}

fn default_metrics_path() -> String {
    "/metrics".to_owned()
}
fn default_counter() -> String {
    "http_requests_total".to_owned()
}

/// A query against a Prometheus server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusMetric {
    /// Base URL of the server, e.g. `http://127.0.0.1:9090` or `https://prom.example:9090`.
    pub url: String,
    /// PromQL returning one scalar or a one-element vector: the total across replicas.
    pub query: String,
    /// Desired value per replica.
    pub target_per_replica: f64,
    /// How to verify an `https://` server; only with an `https://` url. Without it the
    /// certificate must chain to the bundled Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<PrometheusTls>,
    /// Credentials sent with every query, read from files at each query (so a rotated
    /// token is picked up). Over plain `http://` only to a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PrometheusAuth>,
}

/// Server verification for an `https://` Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTls {
    /// PEM file of the CA certificate(s) that signed the server's certificate; replaces
    /// the bundled roots (a private CA trusts only itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Name the server's certificate must carry, when it differs from the url's host
    /// (e.g. the url is an IP address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

/// Credentials for a Prometheus server; externally tagged: `{bearerTokenFile: PATH}` or
/// `{basic: {username: U, passwordFile: PATH}}`. A trailing newline in a file is ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum PrometheusAuth {
    /// `Authorization: Bearer <token>`, the token read from this file.
    BearerTokenFile(String),
    /// HTTP basic authentication.
    Basic(BasicAuth),
}

/// HTTP basic authentication; the password is read from a file, never written inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// User name (no `:`).
    pub username: String,
    /// File holding the password.
    pub password_file: String,
}

/// The load balancer's own view of the service: every request nginx proxied or answered
/// (its 503s while no replica is routable included, so a policy at its floor sees its
/// demand). The reading is a service-wide total over `spec.behavior.windows`: desired =
/// ⌈total / targetPerReplica⌉.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerMetric {
    /// `requestRate` (requests per second) or `concurrency` (requests in flight).
    pub signal: LbSignal,
    /// Desired value per replica (requests per second, or requests in flight).
    pub target_per_replica: f64,
}

/// Which figure of the load-balancer signal a [`LoadBalancerMetric`] scales on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LbSignal {
    /// Requests finished per second, all statuses.
    RequestRate,
    /// Time-average of requests in flight (Little's law: summed request time / window).
    Concurrency,
}

impl LbSignal {
    /// The name as written in the resource.
    pub fn as_str(self) -> &'static str {
        match self {
            LbSignal::RequestRate => "requestRate",
            LbSignal::Concurrency => "concurrency",
        }
    }
}

/// Which decision rule turns metrics into a replica count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// HPA v2: proportional, with tolerance, stabilization windows and rate policies.
    #[default]
    Hpa,
    /// The original tool's rule: +1 when every replica is above `upperPerReplica`,
    /// −1 when every replica is below `lowerPerReplica`, one step per evaluation.
    Threshold,
}

/// HPA v2 `behavior`, plus the choice of strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Decision rule (default `hpa`).
    #[serde(default)]
    pub strategy: Strategy,
    /// Relative band around the target inside which nothing changes (HPA default 0.1).
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    /// Rules for growing (defaults: no window; max of 4 Pods and 100 % per 15 s).
    #[serde(default)]
    pub scale_up: ScalingRules,
    /// Rules for shrinking (defaults: 300 s window; 100 % per 15 s).
    #[serde(default)]
    pub scale_down: ScalingRules,
    /// Bounds of the `threshold` strategy.
    #[serde(default)]
    pub threshold: Threshold,
    /// Windows the metrics are read over, and the burst mode (defaults: 6 s stable
    /// window; 1 s burst window at 2× the current count).
    #[serde(default)]
    pub windows: Windows,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            strategy: Strategy::default(),
            tolerance: default_tolerance(),
            scale_up: ScalingRules::default(),
            scale_down: ScalingRules::default(),
            threshold: Threshold::default(),
            windows: Windows::default(),
        }
    }
}

/// Windows the metrics are read over, and the burst mode (Knative's panic mode).
///
/// The *stable* window smooths: `loadBalancer` metrics average over it, and `requestRate`
/// scrapes take their rate between the newest sample and the one about this long ago (a
/// 1 s tick's rate is noisy). The *burst* window reacts: a `loadBalancer` metric is also
/// read over the shortest part of it holding enough requests to be trusted (so a step is
/// seen in a few hundred milliseconds, from requests that all came after it); when that
/// asks for at least `burstThreshold` × the current count, the policy scales up at once
/// (without waiting for the tick, past the scale-up rate policies, up to `replicas.max`)
/// and does not scale down until the stable window has passed without a new burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Windows {
    /// Length of the stable window in seconds (default 6; 1..=60).
    #[serde(default = "default_stable_seconds")]
    pub stable_seconds: u32,
    /// Longest burst window in milliseconds (default 1000; 100..=60000, at most the
    /// stable window).
    #[serde(default = "default_burst_millis")]
    pub burst_millis: u32,
    /// Burst when the burst reading asks for at least this many times the current count
    /// (default 2.0, as Knative's panic threshold of 200 %; > 1, or 0 to turn burst off).
    #[serde(default = "default_burst_threshold")]
    pub burst_threshold: f64,
}

impl Default for Windows {
    fn default() -> Self {
        Self {
            stable_seconds: default_stable_seconds(),
            burst_millis: default_burst_millis(),
            burst_threshold: default_burst_threshold(),
        }
    }
}

impl Windows {
    /// The stable window in milliseconds.
    pub fn stable_ms(&self) -> u64 {
        u64::from(self.stable_seconds) * 1000
    }

    /// Whether burst mode is on.
    pub fn burst_enabled(&self) -> bool {
        self.burst_threshold > 0.0
    }
}

fn default_stable_seconds() -> u32 {
    6
}
fn default_burst_millis() -> u32 {
    1000
}
fn default_burst_threshold() -> f64 {
    2.0
}

fn default_tolerance() -> f64 {
    0.1
}

/// One direction's rules; every absent field takes HPA's default for that direction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Window over which recommendations are stabilized (up: 0, down: 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stabilization_window_seconds: Option<u32>,
    /// How several rate policies combine (default `Max`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Rate limits on the change within a period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<RatePolicy>>,
}

/// Direction of a scaling change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// Growing.
    Up,
    /// Shrinking.
    Down,
}

/// `ScalingRules` with every default filled in for one direction.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRules {
    /// Stabilization window.
    pub stabilization_window_seconds: u32,
    /// How policies combine.
    pub select_policy: SelectPolicy,
    /// Rate policies (may be empty only when `select_policy` is `Disabled`).
    pub policies: Vec<RatePolicy>,
}

impl ScalingRules {
    /// Fills in HPA v2's defaults for `direction`.
    pub fn resolve(&self, direction: Direction) -> ResolvedRules {
        let (window, policies) = match direction {
            Direction::Up => (
                0,
                vec![
                    RatePolicy {
                        kind: RatePolicyKind::Pods,
                        value: 4,
                        period_seconds: 15,
                    },
                    RatePolicy {
                        kind: RatePolicyKind::Percent,
                        value: 100,
                        period_seconds: 15,
                    },
                ],
            ),
            Direction::Down => (
                300,
                vec![RatePolicy {
                    kind: RatePolicyKind::Percent,
                    value: 100,
                    period_seconds: 15,
                }],
            ),
        };
        ResolvedRules {
            stabilization_window_seconds: self.stabilization_window_seconds.unwrap_or(window),
            select_policy: self.select_policy.unwrap_or_default(),
            policies: self.policies.clone().unwrap_or(policies),
        }
    }
}

/// How several rate policies combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No change in this direction.
    Disabled,
}

/// A limit on how much the count may change within `periodSeconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RatePolicy {
    /// `Pods` (absolute) or `Percent` (of the count at the start of the period).
    #[serde(rename = "type")]
    pub kind: RatePolicyKind,
    /// Amount of change allowed; positive.
    pub value: u32,
    /// Length of the sliding period in seconds; 1..=1800 as HPA.
    pub period_seconds: u32,
}

/// Unit of a [`RatePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RatePolicyKind {
    /// Absolute number of replicas.
    Pods,
    /// Percentage of the replicas at the start of the period.
    Percent,
}

/// Bounds of the `threshold` strategy (the original tool's rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Threshold {
    /// Add one replica when every replica is above this rate (default 10).
    #[serde(default = "default_upper")]
    pub upper_per_replica: f64,
    /// Remove one replica when every replica is below this rate (default 5).
    #[serde(default = "default_lower")]
    pub lower_per_replica: f64,
}

impl Default for Threshold {
    fn default() -> Self {
        Self {
            upper_per_replica: default_upper(),
            lower_per_replica: default_lower(),
        }
    }
}

fn default_upper() -> f64 {
    10.0
}
fn default_lower() -> f64 {
    5.0
}

/// How a removed replica finishes its in-flight work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drain {
    /// Longest wait for the in-flight gauge to reach zero before stopping, in seconds.
    #[serde(default = "default_drain_timeout")]
    pub timeout_seconds: u64,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            timeout_seconds: default_drain_timeout(),
        }
    }
}

fn default_drain_timeout() -> u64 {
    30
}
