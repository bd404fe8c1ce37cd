//! The activator: holds the requests of a scale-to-zero policy while it has no ready
//! replica, asks for one at once, and forwards the held requests to the first ready one.
//!
//! ```text
//!  client ──► nginx server of policy P
//!               │ P has ready replicas ──► upstream (warm path: the activator is not in it)
//!               │ P at zero ──► proxy_pass to the activator, X-Autoscaler-Policy: P
//!               ▼                      (set by nginx, never the client's)
//!            activator ── admit (≤ maxPending, else 503 + Retry-After)
//!               │         └─ no replica ready: wake P's worker now (Trigger::Activation)
//!               │ wait ≤ timeoutSeconds for the pass to publish a ready replica
//!               │   (else 503 + Retry-After, with the pass's error if it had one)
//!               ▼
//!            forward (body intact, proxy headers) ──► first ready replica
//! ```
//!
//! One listener serves every policy. On shutdown it stops accepting (nginx then answers
//! its own fast 503 through `error_page`, see [`crate::nginx`]) and answers every held
//! request 503 at once: a dying operator never leaves a request hanging.
//!
//! # Layout
//! - [`registry`]: per-policy queue bounds, held counts, the published ready replicas,
//!   cold-start timing; shared with the operator.
//! - [`server`]: the listener and the hold-then-forward handler.
//! - [`forward`]: one forwarded exchange and the headers it carries.

pub mod forward;
pub mod registry;
pub mod server;

#[cfg(test)]
mod tests;

pub use registry::{EventSink, HoldSettings, Ready, Refusal, Registry};
pub use server::serve;
