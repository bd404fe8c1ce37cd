//! Scale to zero inside a pass: the idle rule's inputs, where nginx sends a policy at
//! zero, what the activator learns after a pass, and the `ScaledToZero` condition.
//!
//! Idle is measured from the latest of: the load-balancer signal's last request, the
//! last pass whose metrics showed load, the last pass that found requests held. When
//! none of them ever saw a request, from when this process started watching the policy
//! (see [`crate::scaling::idle`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use crate::activator::Registry;
use crate::nginx::HoldTarget;
use crate::policy::ScalingPolicy;
use crate::scaling::Decision;
use crate::scaling::MetricInput;
use crate::scaling::idle::{ZeroInput, metrics_show_requests};
use crate::signal::SignalHub;
use crate::state::PolicyState;

/// The operator's scale-to-zero hands: the activator's registry and address, the signal.
#[derive(Debug, Default)]
pub struct ZeroHooks {
    activator: Option<(Registry, SocketAddr)>,
    signal: Option<SignalHub>,
    seen: Mutex<BTreeMap<String, Seen>>,
    /// Without an activator of its own (`diff`): the one the live config names, so a dry
    /// run renders a running daemon's config unchanged.
    live_activator: Mutex<Option<SocketAddr>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    watching_since_ms: u64,
    last_busy_ms: Option<u64>,
}

impl ZeroHooks {
    /// Hooks with the activator listening on `addr` and the signal hub to read idle from.
    pub fn new(registry: Registry, addr: SocketAddr, signal: SignalHub) -> Self {
        Self {
            activator: Some((registry, addr)),
            signal: Some(signal),
            seen: Mutex::new(BTreeMap::new()),
            live_activator: Mutex::new(None),
        }
    }

    /// Where nginx sends `policy`'s requests at zero: the activator, when there is one
    /// and the policy scales to zero.
    pub fn hold_target(&self, policy: &ScalingPolicy) -> Option<HoldTarget> {
        let rule = policy.spec.scale_to_zero.as_ref()?;
        let addr = match &self.activator {
            Some((_, addr)) => *addr,
            None => {
                (*self
                    .live_activator
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner))?
            }
        };
        Some(HoldTarget {
            addr,
            timeout_seconds: rule.timeout_seconds,
        })
    }

    /// Remembers the activator the live config names (used only without one's own).
    pub fn observe_live(&self, live: Option<&str>) {
        if self.activator.is_none() {
            *self
                .live_activator
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                live.and_then(crate::nginx::activator_addr);
        }
    }

    /// Makes the activator hold requests for exactly these policies' scale-to-zero rules.
    pub fn configure(&self, policies: &[&ScalingPolicy]) {
        if let Some((registry, _)) = &self.activator {
            registry.configure(policies.iter().filter_map(|p| {
                p.spec
                    .scale_to_zero
                    .as_ref()
                    .map(|z| (p.metadata.name.as_str(), z))
            }));
        }
    }

    /// Policy names whose worker must reconcile at once (a request held at zero).
    pub fn subscribe_wakes(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<String>> {
        self.activator.as_ref().map(|(r, _)| r.subscribe_wakes())
    }

    /// Requests the activator holds for `name`.
    pub fn held(&self, name: &str) -> u32 {
        self.activator.as_ref().map_or(0, |(r, _)| r.held(name))
    }

    /// The idle rule's inputs for this pass (`None` for a policy without `scaleToZero`);
    /// records the activity this pass sees.
    pub fn input<'a>(
        &self,
        policy: &'a ScalingPolicy,
        metrics: &[MetricInput],
        now_ms: u64,
    ) -> Option<ZeroInput<'a>> {
        let rule = policy.spec.scale_to_zero.as_ref()?;
        let name = policy.metadata.name.as_str();
        let held = self.held(name);
        let seen = {
            let mut map = self
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = map.entry(name.to_owned()).or_insert(Seen {
                watching_since_ms: now_ms,
                last_busy_ms: None,
            });
            if held > 0 || metrics_show_requests(metrics) {
                entry.last_busy_ms = Some(now_ms);
            }
            *entry
        };
        let from_signal = self
            .signal
            .as_ref()
            .and_then(|s| s.idle_for(name))
            .map(|idle| now_ms.saturating_sub(u64::try_from(idle.as_millis()).unwrap_or(u64::MAX)));
        Some(ZeroInput {
            rule,
            held,
            last_request_ms: seen.last_busy_ms.max(from_signal),
            watching_since_ms: seen.watching_since_ms,
        })
    }

    /// Tells the activator what the pass left: the ready replicas in the upstream, and
    /// the pass's error when it left none.
    pub fn after_pass(&self, name: &str, servers: Vec<SocketAddr>, error: Option<String>) {
        if let Some((registry, _)) = &self.activator {
            let error = if servers.is_empty() { error } else { None };
            registry.publish(name, servers, error);
        }
    }
}

/// Sets `ScaledToZero` on a scale-to-zero policy: true at zero (reason `Idle`, or
/// `Activating` with requests held), false while replicas serve.
pub fn record_condition(
    ps: &mut PolicyState,
    policy: &ScalingPolicy,
    running: u32,
    ready: u32,
    held: u32,
    now_ms: u64,
) {
    let Some(rule) = &policy.spec.scale_to_zero else {
        ps.status.conditions.retain(|c| c.kind != "ScaledToZero");
        return;
    };
    let status = &mut ps.status;
    match (running.max(ready), held) {
        (0, 0) => status.set_condition(
            "ScaledToZero",
            true,
            "Idle",
            &format!(
                "0 replicas: no request for {} s; the next one is held while a replica starts",
                rule.idle_seconds
            ),
            now_ms,
        ),
        (n, held) if held > 0 => status.set_condition(
            "ScaledToZero",
            true,
            "Activating",
            &format!(
                "{held} request{} held while a replica starts ({n} running)",
                if held == 1 { "" } else { "s" }
            ),
            now_ms,
        ),
        (n, _) => status.set_condition(
            "ScaledToZero",
            false,
            "Serving",
            &format!(
                "{n} replica(s); scales to zero after {} s idle",
                rule.idle_seconds
            ),
            now_ms,
        ),
    }
}

/// The event of a pass that scaled a policy to zero is `ScaledToZero`, not `ScaledDown`.
pub fn rename_event(decision: &Decision, event: (&'static str, String)) -> (&'static str, String) {
    if decision.desired == 0 && decision.reason.starts_with("ScaledToZero") {
        ("ScaledToZero", decision.reason.clone())
    } else {
        event
    }
}
