//! Desired vs observed state → an ordered, deterministic list of steps (pure).
//!
//! The plan never talks to Docker or nginx; it takes what the shell observed and
//! returns data that `diff` prints and the executor applies in order.
//!
//! ```text
//!  observed replicas ──┐
//!  live upstream ──────┼─► plan() ─► [remove dead] ─► [scale down: upstream −, drain, stop, remove]
//!  policy + desired ───┘              ─► [scale up: create…, wait ready…, upstream +]
//!                                      ─► [roll: create 1, ready, upstream ±, drain old, stop, remove]…
//! ```
//!
//! # Guarantees
//! - Idempotent: planning against the state a plan produces yields an empty plan.
//! - Availability: a replica leaves the upstream before it is drained and stopped, and a
//!   rolling update surges one new replica before each old one goes (never below the
//!   current ready count).
//! - Victims on scale-down: not-ready first, then newest.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::policy::ScalingPolicy;

/// A replica as the shell observed it, reduced to what planning needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedReplica {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Host port it publishes.
    pub host_port: u16,
    /// Template hash label it was created with.
    pub template_hash: String,
    /// The container is running.
    pub running: bool,
    /// Its readiness probe answered 2xx in this observation.
    pub ready: bool,
    /// Seconds since it was created (decides when a never-ready replica is given up on).
    pub age_seconds: u64,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
pub enum Step {
    /// Create and start a replica publishing `host_port`.
    Create {
        /// Container name.
        name: String,
        /// Host port to publish (the executor may move to the next free one).
        host_port: u16,
    },
    /// Wait until the replica on `host_port` answers its readiness probe.
    WaitReady {
        /// Container name.
        name: String,
        /// Host port it publishes.
        host_port: u16,
    },
    /// Make the policy's upstream exactly these host ports, then reload nginx.
    SetUpstream {
        /// Host ports in the upstream after the step, sorted.
        ports: Vec<u16>,
        /// Ports added by this step.
        added: Vec<u16>,
        /// Ports removed by this step.
        removed: Vec<u16>,
    },
    /// Wait for the replica's in-flight requests to finish (or the drain timeout).
    Drain {
        /// Container id.
        id: String,
        /// Container name.
        name: String,
        /// Host port it publishes.
        host_port: u16,
    },
    /// Stop the replica with the drain grace period.
    Stop {
        /// Container id.
        id: String,
        /// Container name.
        name: String,
    },
    /// Remove the replica's container.
    Remove {
        /// Container id.
        id: String,
        /// Container name.
        name: String,
        /// Why it goes, in words.
        reason: String,
    },
}

/// The ordered steps for one policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Policy the plan is for.
    pub policy: String,
    /// Steps in execution order.
    pub steps: Vec<Step>,
}

impl Plan {
    /// True when nothing needs to change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

/// What the plan aims at for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired<'a> {
    /// Policy name (names containers).
    pub policy: &'a str,
    /// Operator instance (part of container names, so instances never collide).
    pub instance: &'a str,
    /// Template hash every replica should carry (empty when the policy is being removed).
    pub template_hash: &'a str,
    /// Replica count to converge on.
    pub replicas: u32,
    /// Inclusive host port range.
    pub port_range: (u16, u16),
    /// Ports of the range that cannot be used: held by other containers or processes.
    pub unavailable_ports: &'a [u16],
    /// Seconds after creation a replica may stay unready before it is replaced.
    pub readiness_timeout_seconds: u64,
}

/// Plans one policy: `observed` are its containers, `live_upstream` the ports nginx has now.
pub fn plan(desired: &Desired, observed: &[ObservedReplica], live_upstream: &[u16]) -> Plan {
    let mut builder = Builder::new(desired.policy, live_upstream);

    let mut sorted: Vec<&ObservedReplica> = observed.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));

    let is_dead = |r: &ObservedReplica| {
        !r.running || (!r.ready && r.age_seconds > desired.readiness_timeout_seconds)
    };
    let (dead, alive): (Vec<&ObservedReplica>, Vec<&ObservedReplica>) =
        sorted.into_iter().partition(|r| is_dead(r));
    let (mut current, mut outdated): (Vec<&ObservedReplica>, Vec<&ObservedReplica>) = alive
        .into_iter()
        .partition(|r| r.template_hash == desired.template_hash);

    // Victims among up-to-date replicas: not-ready first, then newest.
    current.sort_by(|a, b| {
        b.ready
            .cmp(&a.ready)
            .then(a.age_seconds.cmp(&b.age_seconds).reverse())
            .then(a.name.cmp(&b.name))
    });
    let wanted = desired.replicas as usize;
    let mut victims: Vec<&ObservedReplica> = Vec::new();
    if current.len() > wanted {
        victims.extend(current.split_off(wanted));
    }
    // Outdated replicas: not-ready ones go first, then oldest are replaced first.
    outdated.sort_by(|a, b| {
        a.ready
            .cmp(&b.ready)
            .then(b.age_seconds.cmp(&a.age_seconds))
            .then(a.name.cmp(&b.name))
    });
    let creations = wanted.saturating_sub(current.len());
    let (to_replace, leftover): (Vec<&ObservedReplica>, Vec<&ObservedReplica>) =
        if creations >= outdated.len() {
            (outdated, Vec::new())
        } else {
            // Outdated beyond what new replicas will replace: keep the ready ones to roll,
            // drop the rest now (a scale-down happening during an update).
            let rest = outdated.split_off(outdated.len() - creations);
            (rest, outdated)
        };
    victims.extend(leftover);
    // Not-ready outdated replicas serve nobody: remove them now, create their successors.
    let (to_replace, unready_outdated): (Vec<&ObservedReplica>, Vec<&ObservedReplica>) =
        to_replace.into_iter().partition(|r| r.ready);
    victims.extend(unready_outdated);

    // Phase 1: take dead replicas and victims out of the upstream; keep every ready survivor in.
    let victim_ids: BTreeSet<&str> = victims.iter().map(|r| r.id.as_str()).collect();
    let ready_survivors: BTreeSet<u16> = current
        .iter()
        .chain(to_replace.iter())
        .filter(|r| r.ready && !victim_ids.contains(r.id.as_str()))
        .map(|r| r.host_port)
        .collect();
    builder.set_upstream(ready_survivors);
    // Grouped by kind (all drains, then stops, then removes) so the executor can run
    // each group concurrently.
    victims.sort_by(|a, b| a.name.cmp(&b.name));
    let mut removals: Vec<(&ObservedReplica, String)> = dead
        .iter()
        .map(|r| {
            let reason = if r.running {
                format!(
                    "never became ready in {}s",
                    desired.readiness_timeout_seconds
                )
            } else {
                "not running".to_owned()
            };
            (*r, reason)
        })
        .collect();
    let why = if desired.template_hash.is_empty() && desired.replicas == 0 {
        "policy removed"
    } else {
        "scale down"
    };
    builder.retire_all(&victims, why, &mut removals);

    // Phase 2: new replicas beyond those that replace outdated ones, plus unready survivors.
    let mut used: BTreeSet<u16> = observed
        .iter()
        .map(|r| r.host_port)
        .chain(desired.unavailable_ports.iter().copied())
        .collect();
    let mut free_ports =
        (desired.port_range.0..=desired.port_range.1).filter(move |p| used.insert(*p));
    let batch = creations - to_replace.len();
    let mut waiting: Vec<(String, u16)> = current
        .iter()
        .filter(|r| !r.ready)
        .map(|r| (r.name.clone(), r.host_port))
        .collect();
    let mut new_names = Vec::new();
    for _ in 0..batch {
        let Some(port) = free_ports.next() else { break };
        let name = replica_name(desired.policy, port, desired.instance);
        builder.push(Step::Create {
            name: name.clone(),
            host_port: port,
        });
        new_names.push((name, port));
    }
    waiting.extend(new_names);
    waiting.sort();
    for (name, port) in &waiting {
        builder.push(Step::WaitReady {
            name: name.clone(),
            host_port: *port,
        });
    }
    let mut upstream = builder.upstream.clone();
    upstream.extend(waiting.iter().map(|(_, p)| *p));
    builder.set_upstream(upstream);

    // Phase 3: rolling replacement, surge one at a time.
    for old in &to_replace {
        let Some(port) = free_ports.next() else { break };
        let name = replica_name(desired.policy, port, desired.instance);
        builder.push(Step::Create {
            name: name.clone(),
            host_port: port,
        });
        builder.push(Step::WaitReady {
            name,
            host_port: port,
        });
        let mut upstream = builder.upstream.clone();
        upstream.insert(port);
        upstream.remove(&old.host_port);
        builder.set_upstream(upstream);
        builder.retire(old, "template changed");
    }
    builder.finish()
}

/// Accumulates steps while tracking the upstream as it will be after each one.
struct Builder {
    plan: Plan,
    upstream: BTreeSet<u16>,
}

impl Builder {
    fn new(policy: &str, live: &[u16]) -> Self {
        Self {
            plan: Plan {
                policy: policy.to_owned(),
                steps: Vec::new(),
            },
            upstream: live.iter().copied().collect(),
        }
    }

    fn push(&mut self, step: Step) {
        self.plan.steps.push(step);
    }

    /// Adds a `SetUpstream` step only when the set actually changes.
    fn set_upstream(&mut self, ports: BTreeSet<u16>) {
        if ports == self.upstream {
            return;
        }
        let added = ports.difference(&self.upstream).copied().collect();
        let removed = self.upstream.difference(&ports).copied().collect();
        self.push(Step::SetUpstream {
            ports: ports.iter().copied().collect(),
            added,
            removed,
        });
        self.upstream = ports;
    }

    /// Drain (when it may hold traffic), stop and remove a replica already out of the upstream.
    fn retire(&mut self, r: &ObservedReplica, reason: &str) {
        self.retire_all(&[r], reason, &mut Vec::new());
    }

    /// Retires several replicas: every drain, then every stop, then every removal
    /// (`removals` first: replicas that only need removing, e.g. dead ones).
    fn retire_all<'a>(
        &mut self,
        victims: &[&'a ObservedReplica],
        reason: &str,
        removals: &mut Vec<(&'a ObservedReplica, String)>,
    ) {
        for r in victims.iter().filter(|r| r.ready) {
            self.push(Step::Drain {
                id: r.id.clone(),
                name: r.name.clone(),
                host_port: r.host_port,
            });
        }
        for r in victims {
            self.push(Step::Stop {
                id: r.id.clone(),
                name: r.name.clone(),
            });
        }
        removals.extend(victims.iter().map(|r| (*r, reason.to_owned())));
        for (r, reason) in removals.drain(..) {
            self.push(Step::Remove {
                id: r.id.clone(),
                name: r.name.clone(),
                reason,
            });
        }
    }

    fn finish(self) -> Plan {
        self.plan
    }
}

/// Container name of the replica of `policy` on `port` for operator `instance`, e.g.
/// `web-8001.default`: the instance keeps two operators' names apart, and one that Docker
/// would refuse in a name is replaced by a short hash of it.
pub fn replica_name(policy: &str, port: u16, instance: &str) -> String {
    let fits = !instance.is_empty()
        && instance.len() <= 63
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if fits {
        format!("{policy}-{port}.{instance}")
    } else {
        let digest = Sha256::digest(instance.as_bytes());
        let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        format!("{policy}-{port}.{short}")
    }
}

/// Short stable hash of everything that requires replacing a replica when it changes.
pub fn template_hash(policy: &ScalingPolicy) -> String {
    #[derive(Serialize)]
    struct Identity<'a> {
        template: &'a crate::policy::Template,
        host_ip: &'a str,
    }
    let identity = Identity {
        template: &policy.spec.template,
        host_ip: &policy.spec.ports.host_ip,
    };
    // Serializing plain data with BTreeMaps cannot fail; fall back to Debug just in case.
    let bytes = serde_json::to_vec(&identity)
        .unwrap_or_else(|_| format!("{:?}", policy.spec.template).into_bytes());
    let digest = Sha256::digest(&bytes);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Create { name, host_port } => write!(f, "create   {name} on port {host_port}"),
            Step::WaitReady { name, host_port } => {
                write!(f, "wait     {name} ready on port {host_port}")
            }
            Step::SetUpstream {
                ports,
                added,
                removed,
            } => {
                write!(f, "upstream {}", join_ports(ports))?;
                if !added.is_empty() {
                    write!(f, " (+{})", join_ports(added))?;
                }
                if !removed.is_empty() {
                    write!(f, " (-{})", join_ports(removed))?;
                }
                write!(f, ", reload nginx")
            }
            Step::Drain {
                name, host_port, ..
            } => write!(f, "drain    {name} on port {host_port}"),
            Step::Stop { name, .. } => write!(f, "stop     {name}"),
            Step::Remove { name, reason, .. } => write!(f, "remove   {name} ({reason})"),
        }
    }
}

fn join_ports(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "(empty)".to_owned();
    }
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return writeln!(f, "{}: no changes", self.policy);
        }
        for step in &self.steps {
            writeln!(f, "{}: {step}", self.policy)?;
        }
        Ok(())
    }
}

/// The observation a plan leaves when every step succeeds (for idempotence tests). New
/// replicas get ids `new-<port>` and are ready. (Not to be confused with
/// [`crate::simulate`], the what-if replay of a load trace.)
pub fn outcome(
    desired: &Desired,
    observed: &[ObservedReplica],
    live_upstream: &[u16],
    plan: &Plan,
) -> (Vec<ObservedReplica>, Vec<u16>) {
    let mut replicas: BTreeMap<String, ObservedReplica> =
        observed.iter().map(|r| (r.id.clone(), r.clone())).collect();
    let mut upstream: Vec<u16> = live_upstream.to_vec();
    for step in &plan.steps {
        match step {
            Step::Create { name, host_port } => {
                replicas.insert(
                    format!("new-{host_port}"),
                    ObservedReplica {
                        id: format!("new-{host_port}"),
                        name: name.clone(),
                        host_port: *host_port,
                        template_hash: desired.template_hash.to_owned(),
                        running: true,
                        ready: false,
                        age_seconds: 0,
                    },
                );
            }
            Step::WaitReady { host_port, .. } => {
                for r in replicas.values_mut() {
                    if r.host_port == *host_port && r.running {
                        r.ready = true;
                    }
                }
            }
            Step::SetUpstream { ports, .. } => upstream = ports.clone(),
            Step::Drain { .. } => {}
            Step::Stop { id, .. } => {
                if let Some(r) = replicas.get_mut(id) {
                    r.running = false;
                    r.ready = false;
                }
            }
            Step::Remove { id, .. } => {
                replicas.remove(id);
            }
        }
    }
    (replicas.into_values().collect(), upstream)
}

#[cfg(test)]
mod tests;
