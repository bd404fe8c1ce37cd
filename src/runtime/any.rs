//! [`AnyRuntime`]: the plain Docker runtime or the Swarm runtime, chosen at run time.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::stream::BoxStream;

use super::template::TemplateSummary;
use super::{
    DockerRuntime, Replica, ReplicaSpec, Runtime, RuntimeError, RuntimeEvent, SwarmRuntime,
};

/// Which runtime places replicas (`--runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Plain containers on one Docker engine (the default).
    #[default]
    Docker,
    /// One Swarm service per replica, through a swarm manager.
    Swarm,
}

/// Either runtime; implements [`Runtime`] by delegation.
#[derive(Debug, Clone)]
pub enum AnyRuntime {
    /// Plain containers.
    Docker(DockerRuntime),
    /// Swarm services.
    Swarm(SwarmRuntime),
}

impl AnyRuntime {
    /// Connects the runtime of `kind` for operator `instance`.
    ///
    /// # Errors
    /// See [`DockerRuntime::connect`] and [`SwarmRuntime::connect`].
    pub async fn connect(kind: RuntimeKind, instance: &str) -> Result<Self, RuntimeError> {
        Ok(match kind {
            RuntimeKind::Docker => AnyRuntime::Docker(DockerRuntime::connect(instance).await?),
            RuntimeKind::Swarm => AnyRuntime::Swarm(SwarmRuntime::connect(instance).await?),
        })
    }

    /// What each owned replica of `policy` runs, by replica name (for `diff`).
    pub async fn templates(
        &self,
        policy: &str,
    ) -> Result<BTreeMap<String, Option<TemplateSummary>>, RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.templates(policy).await,
            AnyRuntime::Swarm(rt) => rt.templates(policy).await,
        }
    }
}

impl Runtime for AnyRuntime {
    async fn list(&self) -> Result<Vec<Replica>, RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.list().await,
            AnyRuntime::Swarm(rt) => rt.list().await,
        }
    }

    async fn list_policy(&self, policy: &str) -> Result<Vec<Replica>, RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.list_policy(policy).await,
            AnyRuntime::Swarm(rt) => rt.list_policy(policy).await,
        }
    }

    async fn create(&self, spec: &ReplicaSpec) -> Result<Replica, RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.create(spec).await,
            AnyRuntime::Swarm(rt) => rt.create(spec).await,
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.stop(id, grace).await,
            AnyRuntime::Swarm(rt) => rt.stop(id, grace).await,
        }
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        match self {
            AnyRuntime::Docker(rt) => rt.remove(id).await,
            AnyRuntime::Swarm(rt) => rt.remove(id).await,
        }
    }

    fn events(&self) -> BoxStream<'static, Result<RuntimeEvent, RuntimeError>> {
        match self {
            AnyRuntime::Docker(rt) => rt.events(),
            AnyRuntime::Swarm(rt) => rt.events(),
        }
    }
}
