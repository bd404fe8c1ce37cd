//! External mode: write the includable snippet where told and run the configured reload command.
//!
//! The candidate is validated with `nginx -t` by wrapping it in a minimal throw-away
//! `nginx.conf` (`events {} http { include CANDIDATE; }`) in a fresh prefix, so the check
//! needs neither the real nginx.conf nor root. That prefix lives in a private directory
//! of the operator's (mode 0700, under the state directory, checked to be ours and not a
//! symlink before each use), never under a guessable name in a shared one like `/tmp`.
//!
//! A reload command's exit status proves little (`nginx -s reload` only sends a signal),
//! so after it the new configuration must answer its hash on every listen address (see
//! `live`). After a failed reload the previous bytes are put back and the command is run
//! once more (best effort), so the file and the running nginx agree again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::Mutex;

use super::fsutil::{
    create_fresh_dir, display_command, ensure_private_dir, nginx_test, read_optional,
    remove_quietly, rename_synced, restore, run_captured, temp_sibling, write_new, write_synced,
};
use super::live::{LIVE_TIMEOUT, confirm_live};
use super::{ApplyOutcome, LbError, LoadBalancer, quoted_path};
use crate::nginx::{Upstream, render_snippet_with};
use crate::signal::Endpoint;

/// Makes temp prefix names unique within the process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// An nginx someone else runs: we own one included file and know how to reload it.
#[derive(Debug)]
pub struct ExternalNginx {
    /// Where the snippet goes (included from the user's `http {}` block).
    config_path: PathBuf,
    /// argv of the reload command; empty means "do not reload".
    reload_command: Vec<String>,
    /// nginx binary used for `nginx -t`.
    nginx_bin: PathBuf,
    /// Private directory (mode 0700) holding the throw-away prefixes of `nginx -t`.
    check_dir: PathBuf,
    /// Longest wait for every listen address to serve the new configuration.
    live_timeout: Duration,
    /// Serializes apply of this instance.
    lock: Mutex<()>,
    /// Where the user's nginx reports every request (the load signal); `None`: not reported.
    signal: Option<Endpoint>,
}

impl ExternalNginx {
    /// A writer for `config_path` that reloads with `reload_command` (argv, e.g.
    /// `["systemctl", "reload", "nginx"]`) and validates with `nginx_bin -t` in
    /// `check_dir` (made absolute; created with mode 0700 when absent, refused when it
    /// is a symlink, not ours, or open to group or others).
    pub fn new(
        config_path: PathBuf,
        reload_command: Vec<String>,
        nginx_bin: PathBuf,
        check_dir: PathBuf,
    ) -> Self {
        let check_dir = std::path::absolute(&check_dir).unwrap_or(check_dir);
        Self {
            config_path,
            reload_command,
            nginx_bin,
            check_dir,
            live_timeout: LIVE_TIMEOUT,
            lock: Mutex::new(()),
            signal: None,
        }
    }

    /// Has the snippet report every request to the signal receiver at `endpoint`. A unix
    /// socket must be a path the user's nginx workers can reach and write (their user
    /// needs search permission on every directory above it); a loopback UDP address
    /// needs no permissions.
    pub fn with_signal(mut self, endpoint: Endpoint) -> Self {
        self.signal = Some(endpoint);
        self
    }

    /// Overrides how long `apply` waits for the new configuration to serve (default 5 s).
    pub fn with_live_timeout(mut self, timeout: Duration) -> Self {
        self.live_timeout = timeout;
        self
    }

    /// The snippet file this instance owns.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `nginx -t` on `candidate`, wrapped in a minimal config in a fresh prefix inside
    /// the private check directory.
    async fn validate(&self, candidate: &Path) -> Result<(), LbError> {
        ensure_private_dir(&self.check_dir)?;
        let prefix = self.check_dir.join(format!(
            "t-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        create_fresh_dir(&prefix)?;
        let result = async {
            let q = |name: &str| quoted_path(&prefix.join(name));
            let wrapper = format!(
                "pid {pid};\nerror_log {log};\nevents {{}}\nhttp {{\n    \
                 client_body_temp_path {cb};\n    proxy_temp_path {pr};\n    \
                 fastcgi_temp_path {fc};\n    uwsgi_temp_path {uw};\n    scgi_temp_path {sc};\n    \
                 include {include};\n}}\n",
                pid = q("nginx.pid")?,
                log = q("error.log")?,
                cb = q("client_body_temp")?,
                pr = q("proxy_temp")?,
                fc = q("fastcgi_temp")?,
                uw = q("uwsgi_temp")?,
                sc = q("scgi_temp")?,
                include =
                    quoted_path(&std::path::absolute(candidate).unwrap_or(candidate.to_owned()))?,
            );
            let conf = prefix.join("nginx.conf");
            write_new(&conf, wrapper.as_bytes(), 0o600).await?;
            nginx_test(&self.nginx_bin, &prefix, &conf, &prefix.join("error.log")).await
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&prefix).await;
        result.map_err(|e| match e {
            LbError::Validate { output, .. } => LbError::Validate {
                path: candidate.to_owned(),
                output,
            },
            other => other,
        })
    }

    /// Runs the reload command; `Err` carries its status and output.
    async fn run_reload(&self) -> Result<(), String> {
        let Some((program, args)) = self.reload_command.split_first() else {
            return Ok(());
        };
        let os_args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let shown = display_command(Path::new(program), &os_args);
        let mut command = Command::new(program);
        command.args(args);
        let output = run_captured(command, shown)
            .await
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("{}: {}", output.status, stderr.trim()))
        }
    }
}

impl LoadBalancer for ExternalNginx {
    fn render(&self, upstreams: &[Upstream]) -> Result<String, LbError> {
        Ok(render_snippet_with(upstreams, self.signal.as_ref())?)
    }

    async fn current(&self) -> Result<Option<String>, LbError> {
        read_optional(&self.config_path).await
    }

    async fn apply(&self, upstreams: &[Upstream]) -> Result<ApplyOutcome, LbError> {
        let text = self.render(upstreams)?;
        let _guard = self.lock.lock().await;
        let config = &self.config_path;
        let previous = read_optional(config).await?;
        if previous.as_deref() == Some(text.as_str()) {
            return Ok(ApplyOutcome::Unchanged);
        }
        let candidate = temp_sibling(config, "candidate");
        let staged = async {
            write_synced(&candidate, text.as_bytes()).await?;
            self.validate(&candidate).await?;
            rename_synced(&candidate, config).await
        };
        if let Err(e) = staged.await {
            remove_quietly(&candidate).await;
            return Err(e);
        }
        if self.reload_command.is_empty() {
            return Ok(ApplyOutcome::Written);
        }
        let error = match self.run_reload().await {
            Ok(()) => match confirm_live(upstreams, &text, self.live_timeout).await {
                Ok(()) => return Ok(ApplyOutcome::Reloaded),
                Err(e) => e,
            },
            Err(detail) => LbError::ReloadCommand {
                command: self.reload_command.join(" "),
                detail,
            },
        };
        tracing::warn!(%error, path = %config.display(), "reload failed, restoring the previous config");
        restore(config, previous.as_deref()).await?;
        if let Err(again) = self.run_reload().await {
            tracing::warn!(detail = %again, "reload after restoring the previous config failed too");
        }
        Err(error)
    }

    async fn ensure_running(&self) -> Result<(), LbError> {
        Ok(())
    }

    async fn stop(&self) -> Result<(), LbError> {
        Ok(())
    }
}
