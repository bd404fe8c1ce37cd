//! `autoscaler`: a Kubernetes-style operator that keeps a Docker service and the NGINX
//! load balancer in front of it converged on a declarative `ScalingPolicy`.
//!
//! # Layout
//!
//! Pure core (no I/O, no clock, no randomness):
//! - [`policy`]: the `ScalingPolicy` resource, parsing with positions, semantic validation.
//! - [`scaling`]: metric samples + history + `now` → desired replica count with a reason.
//! - [`exposition`]: Prometheus text 0.0.4 / OpenMetrics parser.
//! - [`nginx`]: upstream set → nginx config text, deterministic and injection-proof.
//! - [`plan`]: desired vs observed state → an ordered list of steps.
//! - [`simulate`]: replays a request-rate trace through [`scaling`] (what-if analysis).
//!
//! Effectful shell:
//! - [`policy_files`]: reads policy files, multi-document files and directories.
//! - [`runtime`]: the container runtime trait and its implementations (plain Docker, Swarm).
//! - [`lb`]: writes, validates and reloads the nginx config (managed or external).
//! - [`metrics`]: scrapes replicas and queries Prometheus; computes rates.
//! - [`signal`]: the load-balancer signal stream: every request nginx proxies, aggregated.
//! - [`state`]: the state directory (history, status, events) and its lock.
//! - [`reconcile`]: one pass: observe, decide, plan, execute, record (a folder: one job
//!   per file, with fakes of its boundaries for in-process tests).
//! - [`controller`]: the daemon's trigger streams, work queue and shutdown.
//! - [`telemetry`]: the operator's own metrics and latest status (controller writes, api reads).
//! - [`activator`]: holds a scale-to-zero policy's requests at zero, wakes it, forwards them.
//! - [`api`]: the daemon's HTTP endpoint (`/metrics`, `/healthz`, `/status`).
//! - [`loadgen`]: the `autoscaler load` traffic generator.
//! - [`demo`]: the demo backend that the image runs.
//! - [`cli`]: one module per subcommand, thin over the library.
//! - [`error`]: the crate error that gathers each module's error.
//! - [`fault`]: fault-injection points for crash tests (`AUTOSCALER_FAULT`).

pub mod activator;
pub mod api;
pub mod cli;
pub mod controller;
pub mod demo;
pub mod error;
pub mod exposition;
pub mod fault;
pub mod lb;
pub mod loadgen;
pub mod metrics;
pub mod nginx;
pub mod plan;
pub mod policy;
pub mod policy_files;
pub mod reconcile;
pub mod runtime;
pub mod scaling;
pub mod signal;
pub mod simulate;
pub mod state;
pub mod telemetry;
