//! What the operator remembers: per-policy state, its status, and the event record.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::Algorithm;
use crate::scaling::History;

/// Everything the operator remembers between passes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Per policy, by name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyState>,
}

/// What is remembered of one policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyState {
    /// File the policy was last loaded from: a policy missing from a valid file it came
    /// from is pruned; policies of files not given in this run are left alone.
    pub source_file: PathBuf,
    /// How its upstream renders, so a run that did not load it keeps its nginx block.
    pub upstream: UpstreamSettings,
    /// Scaling recommendations and events (stabilization windows, rate policies).
    #[serde(default)]
    pub history: History,
    /// Last counter sample per replica container id (rates across cron runs).
    #[serde(default)]
    pub samples: BTreeMap<String, CounterSample>,
    /// Last observed status.
    #[serde(default)]
    pub status: PolicyStatus,
    /// When this policy's history was lost (its state file could not be read and was set
    /// aside), ms since epoch: until a full stabilization window has passed since, the
    /// history is missing data, and nothing may scale down on its account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_reset_ms: Option<u64>,
}

/// What renders a policy's nginx server block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSettings {
    /// `IP:PORT`.
    pub listen: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Upstream keep-alive connections.
    pub keepalive: u32,
    /// Host IP replicas publish on.
    pub host_ip: String,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            listen: String::new(),
            algorithm: Algorithm::default(),
            keepalive: 32,
            host_ip: "127.0.0.1".to_owned(),
        }
    }
}

/// One scrape of a replica's counter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSample {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// Counter value.
    pub value: f64,
}

/// Status of one policy, as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Replicas the last decision asked for.
    pub desired: u32,
    /// Replicas running.
    pub current: u32,
    /// Replicas ready and in the upstream.
    pub ready: u32,
    /// Each metric's value against its target.
    #[serde(default)]
    pub metrics: Vec<MetricValue>,
    /// HPA-style conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Last scale change, ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_ms: Option<u64>,
    /// Why the last scale change happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// End of the last pass, ms since epoch.
    #[serde(default)]
    pub last_reconcile_ms: u64,
    /// The last decision's reason.
    #[serde(default)]
    pub reason: String,
    /// What nginx saw of the policy's requests at the last pass (policies with a
    /// `loadBalancer` metric and a signal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LbStatus>,
}

/// The load balancer's view of a policy over the stable window, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LbStatus {
    /// Window the figures cover, milliseconds.
    pub window_ms: u64,
    /// Requests per second (nginx's own answers included).
    pub rate: f64,
    /// Time-average of requests in flight.
    pub concurrency: f64,
    /// Median request time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile request time, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// 5xx answers per second.
    pub errors_5xx_rate: f64,
    /// 502/504 answers per second.
    pub gateway_errors_rate: f64,
    /// Requests nginx answered itself (no replica routable), per second.
    pub unrouted_rate: f64,
}

impl LbStatus {
    /// Share of requests answered with a 5xx, 0..=1 (0 without requests).
    pub fn error_ratio(&self) -> f64 {
        if self.rate > 0.0 && self.errors_5xx_rate.is_finite() {
            (self.errors_5xx_rate / self.rate).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

/// A metric's value next to its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValue {
    /// Display name, e.g. `requestRate(http_requests_total)`.
    pub name: String,
    /// Per-replica value, when known.
    pub value: Option<f64>,
    /// Target per replica.
    pub target: f64,
}

/// An HPA-style condition (`AbleToScale`, `ScalingActive`, `ScalingLimited`, `PolicyValid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub kind: String,
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Sentence for people.
    pub message: String,
    /// When `status` last changed, ms since epoch.
    pub last_transition_ms: u64,
}

impl PolicyStatus {
    /// Sets a condition, keeping its transition time when the status did not change.
    pub fn set_condition(
        &mut self,
        kind: &str,
        status: bool,
        reason: &str,
        message: &str,
        now_ms: u64,
    ) {
        let entry = Condition {
            kind: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_ms: now_ms,
        };
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(existing) => {
                let since = if existing.status == status {
                    existing.last_transition_ms
                } else {
                    now_ms
                };
                *existing = Condition {
                    last_transition_ms: since,
                    ..entry
                };
            }
            None => self.conditions.push(entry),
        }
    }

    /// The condition of this type, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// One line of `events.jsonl`, e.g. `ScaledUp 2→5: 23.1 req/s per replica > 10`.
///
/// Repeats of one event (same policy, kind and message) are folded into one line, as
/// Kubernetes' events are: `count` occurrences from `firstMs` to `atMs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// Policy name.
    pub policy: String,
    /// `ScaledUp`, `ScaledDown`, `ReplicaCreated`, `ReplicaRemoved`, `Reloaded`, `PolicyInvalid`, `StepFailed`, ...
    pub kind: String,
    /// Sentence for people.
    pub message: String,
    /// `atMs` as RFC 3339 (UTC), for people and tools reading the log.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub time: String,
    /// Occurrences this line stands for (1 when absent).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u32,
    /// First of those occurrences, ms since the epoch (absent: `atMs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_ms: u64,
}

impl Event {
    /// One occurrence of `kind` for `policy` at `at_ms`.
    pub fn new(at_ms: u64, policy: &str, kind: &str, message: String) -> Self {
        Self {
            at_ms,
            policy: policy.to_owned(),
            kind: kind.to_owned(),
            message,
            time: rfc3339(at_ms),
            count: 1,
            first_ms: 0,
        }
    }

    /// Occurrences this line stands for.
    pub fn occurrences(&self) -> u32 {
        self.count.max(1)
    }

    /// When the first of them happened.
    pub fn first_at_ms(&self) -> u64 {
        if self.first_ms == 0 {
            self.at_ms
        } else {
            self.first_ms
        }
    }
}

fn one() -> u32 {
    1
}

fn is_one(n: &u32) -> bool {
    *n <= 1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
