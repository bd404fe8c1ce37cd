//! The crate error: gathers every module's error and knows whether retrying can help.
//!
//! Modules return their own `thiserror` enums (named after the operation that failed and
//! carrying the path, name or id a person needs); callers that handle several kinds at
//! once (the CLI edge, embedding programs) use this one.

use crate::{
    api::ApiError, controller::watcher::WatchError, lb::LbError, loadgen::LoadError,
    metrics::MetricsError, policy_files::LoadErrors, reconcile::ReconcileError,
    runtime::RuntimeError, simulate::SimulateError, state::StateError,
};

/// Any error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Policy files are invalid (every error listed, with file:line:column).
    #[error(transparent)]
    Policy(#[from] LoadErrors),
    /// A reconcile pass failed.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// The container runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// nginx could not be written, validated or reloaded.
    #[error(transparent)]
    LoadBalancer(#[from] LbError),
    /// The state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A scrape or query failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// The HTTP endpoint failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The policy file watcher failed.
    #[error(transparent)]
    Watch(#[from] WatchError),
    /// The load generator could not start.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The simulator failed.
    #[error(transparent)]
    Simulate(#[from] SimulateError),
}

impl Error {
    /// True when the same operation may succeed later without anyone changing input
    /// (engine restarting, nginx busy, a replica still starting); false for bad input.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Policy(_) | Error::Simulate(_) => false,
            Error::Reconcile(e) => e.is_transient(),
            Error::Runtime(e) => e.is_transient(),
            Error::Api(_) | Error::Watch(_) | Error::Load(_) => false,
            Error::LoadBalancer(_) | Error::State(_) | Error::Metrics(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_not_transient_and_a_busy_engine_is() {
        let policy: Error = LoadErrors { errors: vec![] }.into();
        assert!(!policy.is_transient());
        let port: Error = ReconcileError::PortTaken {
            policy: "web".into(),
            port: 8001,
        }
        .into();
        assert!(port.is_transient(), "the next pass picks another port");
        let refused: Error = ReconcileError::Runtime(RuntimeError::NotOwned {
            id: "x".into(),
            name: "y".into(),
            instance: "i".into(),
        })
        .into();
        assert!(!refused.is_transient());
    }
}
