//! The load balancer shell: writes, validates and reloads the nginx config (managed or external).
//!
//! Both modes follow the same path, and one `apply` runs at a time per instance:
//!
//! ```text
//! render ──► same bytes as on disk? ──yes──► Unchanged
//!               │ no
//!               ▼
//!        write candidate (temp file, fsync) ──► nginx -t on the candidate ──fail──► error, nothing live
//!               │ ok
//!               ▼
//!        rename over the config (atomic) ──► reload ──ok──► every listen address answers
//!                                              │             the new hash? ──yes──► Reloaded
//!                                              │ fail                  │ no (5 s)
//!                                              ▼                       ▼
//!                                     restore the previous bytes, reload again, error
//!
//! (Written instead of Reloaded when nothing runs to reload.) The hash check is what
//! makes a success mean "nginx serves this": a reload command may exit 0 while the
//! master rejects the file (a port it cannot bind), and the caller must not drain
//! replicas that the old configuration still routes to.
//! ```
//!
//! - [`ManagedNginx`]: the operator runs its own nginx master in a prefix directory; the
//!   master lives in its own session and outlives the operator, which adopts it on start.
//! - [`ExternalNginx`]: someone else runs nginx; we write the includable snippet and run
//!   their reload command.

mod external;
mod fsutil;
mod live;
mod managed;
mod process;

use std::future::Future;
use std::path::PathBuf;

pub use external::ExternalNginx;
pub use managed::ManagedNginx;

use crate::nginx::{RenderError, Upstream};

/// A load balancer the operator can render for, inspect, apply to, start and stop.
pub trait LoadBalancer: Send + Sync {
    /// Config text that would be written for `upstreams` (what `diff` compares).
    fn render(&self, upstreams: &[Upstream]) -> Result<String, LbError>;
    /// The config currently in place, None when nothing was written yet.
    fn current(&self) -> impl Future<Output = Result<Option<String>, LbError>> + Send;
    /// Write atomically (temp + rename), validate with `nginx -t` first, reload only if bytes changed, roll back on failed reload.
    fn apply(
        &self,
        upstreams: &[Upstream],
    ) -> impl Future<Output = Result<ApplyOutcome, LbError>> + Send;
    /// Managed: start (or adopt) the master. External: no-op.
    fn ensure_running(&self) -> impl Future<Output = Result<(), LbError>> + Send;
    /// Managed: stop the master (used by `down` when no policy is left). External: no-op.
    fn stop(&self) -> impl Future<Output = Result<(), LbError>> + Send;
}

/// What [`LoadBalancer::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The rendered bytes equal the config in place: nothing written, no reload.
    Unchanged,
    /// The config was written, but no nginx is running to reload (managed mode before
    /// `ensure_running`, or external mode without a reload command).
    Written,
    /// The config was written and nginx reloaded it.
    Reloaded,
}

/// Why a load balancer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    /// Rendering rejected a value.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// A path cannot be written into an nginx config.
    #[error(
        "path {path} cannot be used in an nginx config (not UTF-8, or contains quotes, backslashes or control characters)"
    )]
    UnsafePath {
        /// The rejected path.
        path: PathBuf,
    },
    /// Reading a config, pid or log file failed.
    #[error("reading {path}: {source}")]
    Read {
        /// File read.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing, renaming or removing a file or directory failed.
    #[error("writing {path}: {source}")]
    Write {
        /// File or directory written.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory that must be private to the operator is not.
    #[error("refusing to use directory {path}: {reason}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// Why it is not safe (symlink, owner, permissions).
        reason: String,
    },
    /// A command could not be started or did not finish in time.
    #[error("running {command}: {detail}")]
    Spawn {
        /// The command line.
        command: String,
        /// What went wrong.
        detail: String,
    },
    /// `nginx -t` rejected the candidate config; nothing went live.
    #[error("nginx -t rejected {path}: {output}")]
    Validate {
        /// The candidate file.
        path: PathBuf,
        /// nginx's stderr.
        output: String,
    },
    /// The managed master did not start.
    #[error("starting nginx in {prefix}: {detail}")]
    Start {
        /// Prefix directory.
        prefix: PathBuf,
        /// What went wrong (nginx's stderr when it had any).
        detail: String,
    },
    /// The managed master did not take the new config; the previous bytes are back.
    #[error("reloading nginx (pid {pid}) in {prefix}: {detail}; previous config restored")]
    Reload {
        /// Prefix directory.
        prefix: PathBuf,
        /// Master pid.
        pid: i32,
        /// What went wrong (the error log line when there was one).
        detail: String,
    },
    /// The external reload command failed; the previous bytes are back.
    #[error("reload command {command} failed: {detail}; previous config restored")]
    ReloadCommand {
        /// The command line.
        command: String,
        /// Exit status and output.
        detail: String,
    },
    /// nginx reported a successful reload, but a listen address does not serve the new
    /// configuration; the previous bytes are back.
    #[error(
        "the new nginx configuration is not live at {listen} after {waited:?}: it answers {got}, \
         want hash {expected}; previous config restored"
    )]
    NotLive {
        /// The listen address that did not confirm.
        listen: std::net::SocketAddr,
        /// Hash of the configuration that should be serving.
        expected: String,
        /// What the address answered last (another hash, a status, a connection error).
        got: String,
        /// How long it was polled.
        waited: std::time::Duration,
    },
    /// Sending a signal to the master failed.
    #[error("signalling nginx pid {pid}: {source}")]
    Signal {
        /// Target pid.
        pid: i32,
        /// Cause.
        #[source]
        source: nix::Error,
    },
    /// The managed master did not exit.
    #[error("stopping nginx (pid {pid}) in {prefix}: {detail}")]
    Stop {
        /// Prefix directory.
        prefix: PathBuf,
        /// Master pid.
        pid: i32,
        /// What went wrong.
        detail: String,
    },
}

/// Quotes `path` for an nginx directive, refusing anything that could break out.
fn quoted_path(path: &std::path::Path) -> Result<String, LbError> {
    let unsafe_path = || LbError::UnsafePath {
        path: path.to_owned(),
    };
    let text = path.to_str().ok_or_else(unsafe_path)?;
    if text
        .chars()
        .any(|c| c.is_control() || matches!(c, '"' | '\'' | '\\'))
    {
        return Err(unsafe_path());
    }
    Ok(format!("\"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn quoted_path_refuses_breakouts() {
        let cases = [
            ("/etc/nginx/conf.d/autoscaler.conf", true),
            ("/srv/with space/x.conf", true),
            ("/srv/x\";\nevents{}", false),
            ("/srv/x'y", false),
            ("/srv/x\\y", false),
            ("/srv/x\ty", false),
        ];
        for (path, ok) in cases {
            let got = quoted_path(Path::new(path));
            assert_eq!(got.is_ok(), ok, "{path:?}: {got:?}");
            if ok {
                assert_eq!(got.unwrap(), format!("\"{path}\""));
            }
        }
    }
}
