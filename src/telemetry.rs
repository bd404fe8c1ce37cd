//! The operator's own metrics and latest status: written by the controller, read by the
//! HTTP endpoint ([`crate::api`]); neither imports the other.

use std::sync::atomic::AtomicBool;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::RwLock;

use crate::reconcile::ErrorKind;
use crate::state::{Event, State};

/// Label set `{policy}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    /// Policy name.
    pub policy: String,
}

/// Labels of a load-balancer latency percentile. Not `quantile`: that label belongs to
/// summaries, and these are gauges (promtool rejects the mix).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QuantileLabels {
    /// Policy name.
    pub policy: String,
    /// `50` or `99`.
    pub percentile: String,
}

/// Labels of a load-balancer error rate.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorClassLabels {
    /// Policy name.
    pub policy: String,
    /// `5xx` (every 5xx) or `gateway` (502 and 504: a replica unreachable or too slow).
    pub class: String,
}

type GaugeF64 = Gauge<f64, std::sync::atomic::AtomicU64>;

/// The load balancer's view of each policy over its stable window, and the stream's
/// own counters.
#[derive(Default)]
pub struct LbTelemetry {
    /// `autoscaler_lb_requests_per_second`.
    pub rate: Family<PolicyLabels, GaugeF64>,
    /// `autoscaler_lb_concurrency`.
    pub concurrency: Family<PolicyLabels, GaugeF64>,
    /// `autoscaler_lb_latency_seconds{percentile}`.
    pub latency: Family<QuantileLabels, GaugeF64>,
    /// `autoscaler_lb_errors_per_second{class}`.
    pub errors: Family<ErrorClassLabels, GaugeF64>,
    /// `autoscaler_lb_unrouted_requests_per_second`.
    pub unrouted: Family<PolicyLabels, GaugeF64>,
    /// `autoscaler_lb_signal_received_total`.
    pub received: Counter,
    /// `autoscaler_lb_signal_dropped_total`.
    pub dropped: Counter,
    exported: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl LbTelemetry {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "lb_requests_per_second",
            "Requests nginx finished per second over the stable window (its own answers included)",
            self.rate.clone(),
        );
        registry.register(
            "lb_concurrency",
            "Time-average of requests in flight over the stable window (Little's law)",
            self.concurrency.clone(),
        );
        registry.register(
            "lb_latency_seconds",
            "Request time percentiles over the stable window, as nginx measured them",
            self.latency.clone(),
        );
        registry.register(
            "lb_errors_per_second",
            "5xx (class=5xx) and 502/504 (class=gateway) answers per second over the stable window",
            self.errors.clone(),
        );
        registry.register(
            "lb_unrouted_requests_per_second",
            "Requests nginx answered itself (no replica routable) per second",
            self.unrouted.clone(),
        );
        // prometheus-client appends `_total`.
        registry.register(
            "lb_signal_received",
            "Request records of the load-balancer signal received",
            self.received.clone(),
        );
        registry.register(
            "lb_signal_dropped",
            "Request records of the load-balancer signal lost (receiver full, unparsable, dropped by the transport)",
            self.dropped.clone(),
        );
    }

    /// Sets the gauges from the policies' [`crate::state::LbStatus`]; a policy without one
    /// leaves the exposition.
    fn observe(&self, state: &State) {
        let mut now = std::collections::BTreeSet::new();
        for (name, ps) in &state.policies {
            let Some(lb) = &ps.status.load_balancer else {
                continue;
            };
            now.insert(name.clone());
            let policy = PolicyLabels {
                policy: name.clone(),
            };
            self.rate.get_or_create(&policy).set(lb.rate);
            self.concurrency.get_or_create(&policy).set(lb.concurrency);
            self.unrouted.get_or_create(&policy).set(lb.unrouted_rate);
            for (q, v) in [("50", lb.p50_ms), ("99", lb.p99_ms)] {
                let labels = QuantileLabels {
                    policy: name.clone(),
                    percentile: q.to_owned(),
                };
                match v {
                    Some(ms) => {
                        self.latency.get_or_create(&labels).set(ms / 1000.0);
                    }
                    None => {
                        self.latency.remove(&labels);
                    }
                }
            }
            for (class, v) in [
                ("5xx", lb.errors_5xx_rate),
                ("gateway", lb.gateway_errors_rate),
            ] {
                let labels = ErrorClassLabels {
                    policy: name.clone(),
                    class: class.to_owned(),
                };
                self.errors.get_or_create(&labels).set(v);
            }
        }
        if let Ok(mut exported) = self.exported.lock() {
            for gone in exported.difference(&now) {
                let policy = PolicyLabels {
                    policy: gone.clone(),
                };
                self.rate.remove(&policy);
                self.concurrency.remove(&policy);
                self.unrouted.remove(&policy);
                for q in ["50", "99"] {
                    self.latency.remove(&QuantileLabels {
                        policy: gone.clone(),
                        percentile: q.to_owned(),
                    });
                }
                for class in ["5xx", "gateway"] {
                    self.errors.remove(&ErrorClassLabels {
                        policy: gone.clone(),
                        class: class.to_owned(),
                    });
                }
            }
            *exported = now;
        }
    }

    /// Brings the stream counters up to the hub's totals (they only ever grow).
    pub fn observe_stream(&self, stats: &crate::signal::StreamStats) {
        let received = self.received.get();
        if stats.received_total > received {
            self.received.inc_by(stats.received_total - received);
        }
        let dropped = self.dropped.get();
        if stats.dropped_total > dropped {
            self.dropped.inc_by(stats.dropped_total - dropped);
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    /// Policy name.
    pub policy: String,
    /// Metric display name.
    pub metric: String,
}

/// Label set `{policy, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Policy name.
    pub policy: String,
    /// `converged`, `step_failed` or `error`.
    pub result: String,
}

/// Label set `{kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Error kind.
    pub kind: String,
}

/// Label set `{policy, direction}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// Policy name.
    pub policy: String,
    /// `up` or `down`.
    pub direction: String,
}

/// Label set `{policy, trigger}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// Policy name.
    pub policy: String,
    /// What started the pass: `start`, `tick`, `follow_up`, `retry`, `docker_event`,
    /// `resync` or `policy_change`.
    pub trigger: String,
}

/// The operator's own metrics and the latest status, shared by the controller and the endpoint.
pub struct Telemetry {
    registry: Registry,
    /// Replicas the decision asks for.
    pub desired: Family<PolicyLabels, Gauge>,
    /// Replicas running.
    pub current: Family<PolicyLabels, Gauge>,
    /// Replicas ready and in the upstream.
    pub ready: Family<PolicyLabels, Gauge>,
    /// Metric value per replica.
    pub metric_value: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Metric target per replica.
    pub metric_target: Family<MetricLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Reconcile passes by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Reconcile passes by the trigger that started them.
    pub reconcile_triggers: Family<TriggerLabels, Counter>,
    /// Reconcile pass duration.
    pub reconcile_duration: Family<PolicyLabels, Histogram>,
    /// Errors by kind.
    pub errors: Family<KindLabels, Counter>,
    /// nginx reloads (mirrors the operator's count).
    pub reloads: Gauge,
    /// Scale events by direction.
    pub scale_events: Family<DirectionLabels, Counter>,
    /// Requests the activator holds now (scale-to-zero policies at zero).
    pub activator_held: Family<PolicyLabels, Gauge>,
    /// Held requests answered 503 because no replica was ready within `timeoutSeconds`.
    pub activator_timeouts: Family<PolicyLabels, Counter>,
    /// Requests refused 503 because `maxPending` were held already.
    pub activator_rejections: Family<PolicyLabels, Counter>,
    /// Requests the activator forwarded to a replica.
    pub activator_forwarded: Family<PolicyLabels, Counter>,
    /// Cold start: first request held at zero → first byte from a replica.
    pub activator_cold_start: Family<PolicyLabels, Histogram>,
    /// Requests held per scale-to-zero policy right now, for `/status` (`heldRequests`).
    pub held_now: std::sync::Mutex<std::collections::BTreeMap<String, u32>>,
    /// Latest state and events for `/status`.
    pub snapshot: RwLock<(State, Vec<Event>)>,
    /// The load balancer's signal per policy, and the stream's counters.
    pub lb: LbTelemetry,
    /// False while the Docker engine is unreachable (for `/healthz`).
    pub docker_ok: AtomicBool,
    /// Label sets of the per-policy gauges set so far (removed with their policy).
    exported: std::sync::Mutex<std::collections::BTreeSet<(String, Option<String>)>>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// Registers every metric under the `autoscaler_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("autoscaler");
        let desired = Family::<PolicyLabels, Gauge>::default();
        let current = Family::<PolicyLabels, Gauge>::default();
        let ready = Family::<PolicyLabels, Gauge>::default();
        let metric_value = Family::default();
        let metric_target = Family::default();
        let reconciles = Family::<ResultLabels, Counter>::default();
        let reconcile_triggers = Family::<TriggerLabels, Counter>::default();
        let reconcile_duration = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        let errors = Family::<KindLabels, Counter>::default();
        // Every known kind exists from the start, so `increase()` panels show 0, not nothing.
        for kind in ErrorKind::ALL {
            let _ = errors.get_or_create(&KindLabels {
                kind: kind.label().to_owned(),
            });
        }
        let reloads = Gauge::default();
        let scale_events = Family::<DirectionLabels, Counter>::default();
        registry.register(
            "replicas_desired",
            "Replicas the scaling decision asks for",
            desired.clone(),
        );
        registry.register("replicas_current", "Replicas running", current.clone());
        registry.register(
            "replicas_ready",
            "Replicas ready and in the nginx upstream",
            ready.clone(),
        );
        registry.register(
            "metric_value",
            "Metric value per replica",
            metric_value.clone(),
        );
        registry.register(
            "metric_target",
            "Metric target per replica",
            metric_target.clone(),
        );
        registry.register(
            "reconciles",
            "Reconcile passes by result",
            reconciles.clone(),
        );
        // prometheus-client appends `_total`: `autoscaler_reconcile_triggers_total`.
        registry.register(
            "reconcile_triggers",
            "Reconcile passes by the trigger that started them",
            reconcile_triggers.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile pass",
            reconcile_duration.clone(),
        );
        registry.register("errors", "Errors by kind", errors.clone());
        registry.register(
            "nginx_reloads",
            "nginx reloads done by this process",
            reloads.clone(),
        );
        registry.register(
            "scale_events",
            "Scale changes by direction",
            scale_events.clone(),
        );
        let activator_held = Family::<PolicyLabels, Gauge>::default();
        let activator_timeouts = Family::<PolicyLabels, Counter>::default();
        let activator_rejections = Family::<PolicyLabels, Counter>::default();
        let activator_forwarded = Family::<PolicyLabels, Counter>::default();
        let activator_cold_start = Family::<PolicyLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0])
        });
        registry.register(
            "activator_held_requests",
            "Requests the activator holds while a scale-to-zero policy has no ready replica",
            activator_held.clone(),
        );
        registry.register(
            "activator_timeouts",
            "Held requests answered 503 after scaleToZero.timeoutSeconds without a ready replica",
            activator_timeouts.clone(),
        );
        registry.register(
            "activator_rejections",
            "Requests answered 503 because scaleToZero.maxPending requests were held already",
            activator_rejections.clone(),
        );
        registry.register(
            "activator_forwarded",
            "Requests the activator forwarded to a replica",
            activator_forwarded.clone(),
        );
        registry.register(
            "activator_cold_start_seconds",
            "Cold start: first request held at zero replicas to first byte from a replica",
            activator_cold_start.clone(),
        );
        let lb = LbTelemetry::default();
        lb.register(&mut registry);
        Self {
            registry,
            lb,
            activator_held,
            activator_timeouts,
            activator_rejections,
            activator_forwarded,
            activator_cold_start,
            held_now: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            desired,
            current,
            ready,
            metric_value,
            metric_target,
            reconciles,
            reconcile_triggers,
            reconcile_duration,
            errors,
            reloads,
            scale_events,
            snapshot: RwLock::new((State::default(), Vec::new())),
            docker_ok: AtomicBool::new(false),
            exported: std::sync::Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// The exposition text (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts one error of `kind`.
    pub fn count_error(&self, kind: ErrorKind) {
        self.errors
            .get_or_create(&KindLabels {
                kind: kind.label().to_owned(),
            })
            .inc();
    }

    /// Mirrors a saved state into the gauges and the `/status` snapshot; the gauges of
    /// policies (and metrics) no longer in the state are removed.
    pub async fn observe_state(&self, state: &State, events: Vec<Event>) {
        let mut now: std::collections::BTreeSet<(String, Option<String>)> =
            std::collections::BTreeSet::new();
        for (name, ps) in &state.policies {
            now.insert((name.clone(), None));
            for m in &ps.status.metrics {
                now.insert((name.clone(), Some(m.name.clone())));
            }
        }
        if let Ok(mut exported) = self.exported.lock() {
            for (policy, metric) in exported.difference(&now) {
                match metric {
                    None => {
                        let labels = PolicyLabels {
                            policy: policy.clone(),
                        };
                        self.desired.remove(&labels);
                        self.current.remove(&labels);
                        self.ready.remove(&labels);
                    }
                    Some(metric) => {
                        let labels = MetricLabels {
                            policy: policy.clone(),
                            metric: metric.clone(),
                        };
                        self.metric_value.remove(&labels);
                        self.metric_target.remove(&labels);
                    }
                }
            }
            *exported = now;
        }
        for (name, ps) in &state.policies {
            let labels = PolicyLabels {
                policy: name.clone(),
            };
            self.desired
                .get_or_create(&labels)
                .set(i64::from(ps.status.desired));
            self.current
                .get_or_create(&labels)
                .set(i64::from(ps.status.current));
            self.ready
                .get_or_create(&labels)
                .set(i64::from(ps.status.ready));
            for m in &ps.status.metrics {
                let labels = MetricLabels {
                    policy: name.clone(),
                    metric: m.name.clone(),
                };
                if let Some(v) = m.value {
                    self.metric_value.get_or_create(&labels).set(v);
                }
                self.metric_target.get_or_create(&labels).set(m.target);
            }
        }
        self.lb.observe(state);
        *self.snapshot.write().await = (state.clone(), events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_load_balancer_signal_is_exported_with_units_and_leaves_with_its_policy() {
        use crate::state::{LbStatus, PolicyState};
        let t = Telemetry::new();
        let mut state = State::default();
        let mut ps = PolicyState::default();
        ps.status.load_balancer = Some(LbStatus {
            window_ms: 6000,
            rate: 88.25,
            concurrency: 4.5,
            p50_ms: Some(12.0),
            p99_ms: None,
            errors_5xx_rate: 0.5,
            gateway_errors_rate: 0.25,
            unrouted_rate: 0.0,
        });
        state.policies.insert("shop".into(), ps);
        t.observe_state(&state, Vec::new()).await;
        t.lb.observe_stream(&crate::signal::StreamStats {
            received_total: 100,
            dropped_total: 3,
            ..crate::signal::StreamStats::default()
        });
        t.lb.observe_stream(&crate::signal::StreamStats {
            received_total: 90,
            dropped_total: 4,
            ..crate::signal::StreamStats::default()
        });
        let text = t.encode();
        for line in [
            "autoscaler_lb_requests_per_second{policy=\"shop\"} 88.25",
            "autoscaler_lb_concurrency{policy=\"shop\"} 4.5",
            "autoscaler_lb_latency_seconds{policy=\"shop\",percentile=\"50\"} 0.012",
            "autoscaler_lb_errors_per_second{policy=\"shop\",class=\"gateway\"} 0.25",
            "autoscaler_lb_signal_received_total 100",
            "autoscaler_lb_signal_dropped_total 4",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("percentile=\"99\""), "no p99 without data");
        state.policies.clear();
        t.observe_state(&state, Vec::new()).await;
        assert!(!t.encode().contains("shop"), "{}", t.encode());
    }

    #[tokio::test]
    async fn gauges_of_a_removed_policy_leave_the_exposition() {
        use crate::state::{MetricValue, PolicyState};
        let t = Telemetry::new();
        let mut state = State::default();
        for name in ["kept", "gone"] {
            let mut ps = PolicyState::default();
            ps.status.desired = 2;
            ps.status.metrics = vec![MetricValue {
                name: "requestRate(x)".into(),
                value: Some(1.0),
                target: 10.0,
            }];
            state.policies.insert(name.into(), ps);
        }
        t.observe_state(&state, Vec::new()).await;
        assert!(t.encode().contains("policy=\"gone\""));
        state.policies.remove("gone");
        t.observe_state(&state, Vec::new()).await;
        let text = t.encode();
        assert!(!text.contains("policy=\"gone\""), "{text}");
        assert!(
            text.contains("autoscaler_replicas_desired{policy=\"kept\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("autoscaler_metric_target{policy=\"kept\""),
            "{text}"
        );
    }
}
