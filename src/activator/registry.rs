//! The activator's shared state: per policy, the hold settings, the held-request count,
//! the ready replicas the operator published, and the cold-start episode being timed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::policy::ScaleToZero;
use crate::telemetry::{PolicyLabels, Telemetry};

/// Records an event `(policy, kind, message)` in the operator's event log.
pub type EventSink = Arc<dyn Fn(&str, &str, String) + Send + Sync>;

/// What the operator last published for a policy: where held requests may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ready {
    /// Replicas ready and in the upstream (forward to the first that answers).
    pub addrs: Vec<SocketAddr>,
    /// Why the last pass could not produce a replica (shown in the 503 of a timeout).
    pub error: Option<String>,
}

/// How the activator holds one policy's requests (from `spec.scaleToZero`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldSettings {
    /// Requests held at once; more are refused.
    pub max_pending: u32,
    /// Longest wait of one held request.
    pub timeout: Duration,
}

impl From<&ScaleToZero> for HoldSettings {
    fn from(z: &ScaleToZero) -> Self {
        Self {
            max_pending: z.max_pending,
            timeout: Duration::from_secs(z.timeout_seconds),
        }
    }
}

struct Entry {
    settings: HoldSettings,
    ready: watch::Sender<Ready>,
    held: u32,
    /// Set when a request is held while no replica is ready; ends at the first byte.
    episode: Option<Episode>,
}

struct Episode {
    started: Instant,
    requests: u32,
}

/// Why a request was not admitted to the hold queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No loaded policy of that name scales to zero (or the header is missing).
    #[error("no scale-to-zero policy named {0:?} is loaded")]
    UnknownPolicy(String),
    /// `maxPending` requests are held already.
    #[error("policy {policy:?} already holds {max_pending} requests (scaleToZero.maxPending)")]
    QueueFull {
        /// Policy name.
        policy: String,
        /// Its limit.
        max_pending: u32,
    },
}

/// A held request: counted until dropped.
pub struct Admitted {
    /// Policy name.
    pub policy: String,
    /// The ready replicas as the operator publishes them.
    pub ready: watch::Receiver<Ready>,
    /// Longest wait.
    pub timeout: Duration,
    registry: Registry,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let held = {
            let mut policies = self.registry.lock();
            policies.get_mut(&self.policy).map(|e| {
                e.held = e.held.saturating_sub(1);
                e.held
            })
        };
        self.registry
            .set_held_gauge(&self.policy, held.unwrap_or(0));
    }
}

/// The activator's state, shared by its server and the operator (cheap to clone).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    policies: Mutex<BTreeMap<String, Entry>>,
    wakes: Mutex<Option<mpsc::UnboundedSender<String>>>,
    events: Mutex<Option<EventSink>>,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("held", &self.held_all())
            .finish()
    }
}

impl Registry {
    /// An empty registry exporting into `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            inner: Arc::new(Inner {
                policies: Mutex::new(BTreeMap::new()),
                wakes: Mutex::new(None),
                events: Mutex::new(None),
                telemetry,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A panic while holding the lock leaves plain counters: still usable.
        self.inner
            .policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The telemetry the activator exports into.
    pub fn telemetry(&self) -> &Telemetry {
        &self.inner.telemetry
    }

    /// Makes the set of scale-to-zero policies exactly `policies` (settings updated in
    /// place). Requests held for a policy that left the set are answered 503 at once.
    pub fn configure<'a>(&self, policies: impl IntoIterator<Item = (&'a str, &'a ScaleToZero)>) {
        let wanted: BTreeMap<&str, HoldSettings> = policies
            .into_iter()
            .map(|(n, z)| (n, HoldSettings::from(z)))
            .collect();
        let mut map = self.lock();
        // Dropping an entry drops its sender: waiters see the channel closed.
        map.retain(|name, _| wanted.contains_key(name.as_str()));
        for (name, settings) in wanted {
            match map.get_mut(name) {
                Some(e) => e.settings = settings,
                None => {
                    map.insert(
                        name.to_owned(),
                        Entry {
                            settings,
                            ready: watch::channel(Ready::default()).0,
                            held: 0,
                            episode: None,
                        },
                    );
                }
            }
        }
    }

    /// Publishes what a pass left for `policy`: its ready replicas, and the error of a
    /// pass that could not produce one. Held requests go to the first address at once.
    pub fn publish(&self, policy: &str, addrs: Vec<SocketAddr>, error: Option<String>) {
        let map = self.lock();
        if let Some(e) = map.get(policy) {
            let ready = Ready { addrs, error };
            e.ready.send_if_modified(|old| {
                let changed = *old != ready;
                *old = ready;
                changed
            });
        }
    }

    /// Requests held for `policy` now.
    pub fn held(&self, policy: &str) -> u32 {
        self.lock().get(policy).map_or(0, |e| e.held)
    }

    /// Held requests of every scale-to-zero policy.
    pub fn held_all(&self) -> BTreeMap<String, u32> {
        self.lock()
            .iter()
            .map(|(n, e)| (n.clone(), e.held))
            .collect()
    }

    /// A receiver of policy names whose worker must reconcile now (the controller's).
    /// A second call replaces the first receiver.
    pub fn subscribe_wakes(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Ok(mut w) = self.inner.wakes.lock() {
            *w = Some(tx);
        }
        rx
    }

    /// Where "Activated" events go.
    pub fn set_event_sink(&self, sink: EventSink) {
        if let Ok(mut e) = self.inner.events.lock() {
            *e = Some(sink);
        }
    }

    /// Admits a request of `policy` to its hold queue and asks for a replica at once
    /// when none is ready.
    ///
    /// # Errors
    /// [`Refusal`] when the policy is unknown or its queue is full.
    pub fn admit(&self, policy: &str) -> Result<Admitted, Refusal> {
        let (admitted, wake, held) = {
            let mut map = self.lock();
            let Some(e) = map.get_mut(policy) else {
                return Err(Refusal::UnknownPolicy(policy.to_owned()));
            };
            let max_pending = e.settings.max_pending;
            if e.held >= max_pending {
                drop(map);
                self.count(policy, |t| &t.activator_rejections);
                return Err(Refusal::QueueFull {
                    policy: policy.to_owned(),
                    max_pending,
                });
            }
            e.held += 1;
            let cold = e.ready.borrow().addrs.is_empty();
            if cold {
                let ep = e.episode.get_or_insert_with(|| Episode {
                    started: Instant::now(),
                    requests: 0,
                });
                ep.requests += 1;
            }
            let admitted = Admitted {
                policy: policy.to_owned(),
                ready: e.ready.subscribe(),
                timeout: e.settings.timeout,
                registry: self.clone(),
            };
            (admitted, cold, e.held)
        };
        self.set_held_gauge(policy, held);
        if wake
            && let Ok(w) = self.inner.wakes.lock()
            && let Some(tx) = w.as_ref()
        {
            // The controller gone (shutdown): held requests time out or get 503.
            let _ = tx.send(policy.to_owned());
        }
        Ok(admitted)
    }

    /// A held request of `policy` got its first byte from a replica: ends the cold-start
    /// episode (histogram + "Activated" event) if this was its first.
    pub fn first_byte(&self, policy: &str) {
        let episode = self.lock().get_mut(policy).and_then(|e| e.episode.take());
        let Some(ep) = episode else {
            return;
        };
        let secs = ep.started.elapsed().as_secs_f64();
        self.inner
            .telemetry
            .activator_cold_start
            .get_or_create(&labels(policy))
            .observe(secs);
        let message = format!(
            "Activated: {} request{} held {secs:.2} s",
            ep.requests,
            if ep.requests == 1 { "" } else { "s" }
        );
        tracing::info!(%policy, "{message}");
        let sink = self.inner.events.lock().ok().and_then(|s| s.clone());
        if let Some(sink) = sink {
            sink(policy, "Activated", message);
        }
    }

    /// Counts a held request that timed out.
    pub fn timed_out(&self, policy: &str) {
        self.count(policy, |t| &t.activator_timeouts);
    }

    /// Counts a request forwarded to a replica.
    pub fn forwarded(&self, policy: &str) {
        self.count(policy, |t| &t.activator_forwarded);
    }

    fn count(
        &self,
        policy: &str,
        family: impl Fn(
            &Telemetry,
        ) -> &prometheus_client::metrics::family::Family<
            PolicyLabels,
            prometheus_client::metrics::counter::Counter,
        >,
    ) {
        family(&self.inner.telemetry)
            .get_or_create(&labels(policy))
            .inc();
    }

    fn set_held_gauge(&self, policy: &str, held: u32) {
        self.inner
            .telemetry
            .activator_held
            .get_or_create(&labels(policy))
            .set(i64::from(held));
        if let Ok(mut now) = self.inner.telemetry.held_now.lock() {
            now.insert(policy.to_owned(), held);
        }
    }
}

fn labels(policy: &str) -> PolicyLabels {
    PolicyLabels {
        policy: policy.to_owned(),
    }
}
