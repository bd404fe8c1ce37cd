//! External mode: write the includable snippet where told and run the configured reload command.
//!
//! The candidate is validated with `nginx -t` by wrapping it in a minimal throw-away
//! `nginx.conf` (`events {} http { include CANDIDATE; }`) in a temp prefix, so the check
//! needs neither the real nginx.conf nor root. After a failed reload command the previous
//! bytes are put back and the command is run once more (best effort), so the file and the
//! running nginx agree again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::process::Command;
use tokio::sync::Mutex;

use super::fsutil::{
    display_command, nginx_test, read_optional, remove_quietly, rename_synced, restore,
    run_captured, temp_sibling, write_synced,
};
use super::{ApplyOutcome, LbError, LoadBalancer, quoted_path};
use crate::nginx::{Upstream, render_snippet};

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
    /// Serializes apply of this instance.
    lock: Mutex<()>,
}

impl ExternalNginx {
    /// A writer for `config_path` that reloads with `reload_command` (argv, e.g.
    /// `["systemctl", "reload", "nginx"]`) and validates with `nginx_bin -t`.
    pub fn new(config_path: PathBuf, reload_command: Vec<String>, nginx_bin: PathBuf) -> Self {
        Self {
            config_path,
            reload_command,
            nginx_bin,
            lock: Mutex::new(()),
        }
    }

    /// The snippet file this instance owns.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// `nginx -t` on `candidate`, wrapped in a minimal config in a fresh temp prefix.
    async fn validate(&self, candidate: &Path) -> Result<(), LbError> {
        let prefix = std::env::temp_dir().join(format!(
            "autoscaler-nginx-t-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::fs::create_dir_all(&prefix)
            .await
            .map_err(|source| LbError::Write {
                path: prefix.clone(),
                source,
            })?;
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
            write_synced(&conf, wrapper.as_bytes()).await?;
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
        Ok(render_snippet(upstreams)?)
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
        let detail = match self.run_reload().await {
            Ok(()) => return Ok(ApplyOutcome::Reloaded),
            Err(detail) => detail,
        };
        tracing::warn!(%detail, path = %config.display(), "reload command failed, restoring the previous config");
        restore(config, previous.as_deref()).await?;
        if let Err(again) = self.run_reload().await {
            tracing::warn!(detail = %again, "reload after restoring the previous config failed too");
        }
        Err(LbError::ReloadCommand {
            command: self.reload_command.join(" "),
            detail,
        })
    }

    async fn ensure_running(&self) -> Result<(), LbError> {
        Ok(())
    }

    async fn stop(&self) -> Result<(), LbError> {
        Ok(())
    }
}
