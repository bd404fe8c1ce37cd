//! Errors of a reconcile pass, and the one list of error kinds `/metrics` counts.

use std::fmt;

use crate::lb::LbError;
use crate::runtime::{self, RuntimeError};
use crate::state::StateError;

/// Errors of a pass.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Listing or changing containers failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Writing or reloading nginx failed.
    #[error(transparent)]
    LoadBalancer(#[from] LbError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A replica never became ready.
    #[error("replica {name} on port {port} did not become ready: {source}")]
    NotReady {
        /// Container name.
        name: String,
        /// Host port.
        port: u16,
        /// Probe failure (boxed: it is large and rare).
        source: Box<runtime::probe::ProbeError>,
    },
    /// The host port a create was planned on is no longer free (taken since the observation).
    #[error(
        "policy {policy}: host port {port} was taken after planning; the next pass picks another"
    )]
    PortTaken {
        /// Policy.
        policy: String,
        /// The planned port.
        port: u16,
    },
    /// nginx cannot serve this policy's listen address; other policies are unaffected.
    #[error("policy {policy}: nginx cannot serve listen {listen}: {reason}")]
    ListenUnavailable {
        /// Policy.
        policy: String,
        /// Its listen address.
        listen: std::net::SocketAddr,
        /// Why, in words.
        reason: String,
    },
    /// A removed policy still serves a listen address its successor (a renamed policy)
    /// will take over once ready; it is torn down after that.
    #[error("policy {policy} still serves {listen} until its successor has a ready replica")]
    HandoverPending {
        /// Policy.
        policy: String,
        /// The contested listen address.
        listen: std::net::SocketAddr,
    },
    /// The policy's upstream is not in the table (it was never prepared).
    #[error("policy {policy}: no upstream is prepared for it")]
    NoUpstream {
        /// Policy.
        policy: String,
    },
}

/// What kind of failure an error is: the `kind` label of `autoscaler_errors_total`.
///
/// This enum is the only list of kinds; `/metrics` exports every one at 0 from the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The Docker engine failed or is unreachable.
    Docker,
    /// The Docker event stream broke.
    DockerEvents,
    /// nginx could not be written, validated or reloaded.
    Nginx,
    /// The state directory failed.
    State,
    /// A replica never became ready.
    NotReady,
    /// A host port was not free.
    PortTaken,
    /// A policy's listen address cannot be served.
    ListenUnavailable,
    /// A policy file failed to load (the last good policy stays in force).
    PolicyInvalid,
    /// The first preparation of nginx and state failed.
    Prepare,
}

impl ErrorKind {
    /// Every kind, in label order.
    pub const ALL: &'static [ErrorKind] = &[
        ErrorKind::Docker,
        ErrorKind::DockerEvents,
        ErrorKind::Nginx,
        ErrorKind::State,
        ErrorKind::NotReady,
        ErrorKind::PortTaken,
        ErrorKind::ListenUnavailable,
        ErrorKind::PolicyInvalid,
        ErrorKind::Prepare,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Docker => "docker",
            ErrorKind::DockerEvents => "docker_events",
            ErrorKind::Nginx => "nginx",
            ErrorKind::State => "state",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::PortTaken => "port_taken",
            ErrorKind::ListenUnavailable => "listen_unavailable",
            ErrorKind::PolicyInvalid => "policy_invalid",
            ErrorKind::Prepare => "prepare",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl ReconcileError {
    /// True when a later pass may succeed without anyone changing the policy.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Runtime(e) => e.is_transient(),
            ReconcileError::LoadBalancer(_)
            | ReconcileError::State(_)
            | ReconcileError::NotReady { .. }
            | ReconcileError::PortTaken { .. }
            | ReconcileError::ListenUnavailable { .. }
            | ReconcileError::NoUpstream { .. }
            | ReconcileError::HandoverPending { .. } => true,
        }
    }

    /// The kind counted on `/metrics`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReconcileError::Runtime(_) => ErrorKind::Docker,
            ReconcileError::LoadBalancer(_)
            | ReconcileError::NoUpstream { .. }
            | ReconcileError::HandoverPending { .. } => ErrorKind::Nginx,
            ReconcileError::State(_) => ErrorKind::State,
            ReconcileError::NotReady { .. } => ErrorKind::NotReady,
            ReconcileError::PortTaken { .. } => ErrorKind::PortTaken,
            ReconcileError::ListenUnavailable { .. } => ErrorKind::ListenUnavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_label() {
        let mut labels: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), ErrorKind::ALL.len());
    }

    #[test]
    fn a_taken_port_is_transient() {
        let e = ReconcileError::PortTaken {
            policy: "web".into(),
            port: 8001,
        };
        assert!(e.is_transient());
        assert_eq!(e.kind(), ErrorKind::PortTaken);
    }
}
