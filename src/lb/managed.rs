//! Managed mode: the operator runs its own nginx master in a prefix directory.
//!
//! ```text
//!  prefix/
//!    nginx.conf     live config (rendered by `nginx::render_managed`)
//!    nginx.pid      written by the master; how a restarted operator finds and adopts it
//!    error.log      master + workers; reload failures are read from here
//!    error.log.1    the previous error log: past a size limit error.log is renamed here
//!                   and the master reopens its logs (SIGUSR1), so the two stay bounded
//!    start.log      stderr of the last `nginx` start command
//!    signal.sock    the load-signal socket, when `--lb-signal unix:` chose it (bound and
//!                   removed by the operator, not nginx)
//!    *_temp/        nginx's temp paths
//! ```
//!
//! The master daemonizes (its own session, stdio detached) so it outlives the operator.
//! A reload is SIGHUP followed by a wait until the new workers exist and the old ones are
//! shutting down (success) or the error log shows an `[emerg]` line (failure: the master
//! keeps the old config, and the file is put back); then every listen address must answer
//! the new config's hash (see `live`). All operations of one instance serialize on a
//! mutex, so at most one reload is in flight.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio::sync::Mutex;

use super::fsutil::{
    COMMAND_TIMEOUT, display_command, nginx_test, read_optional, remove_quietly, rename_synced,
    restore, temp_sibling, write_atomic, write_synced,
};
use super::live::{LIVE_TIMEOUT, confirm_live};
use super::{ApplyOutcome, LbError, LoadBalancer, process};
use crate::nginx::{ManagedSettings, Upstream, render_managed_with};
use crate::signal::Endpoint;

/// How often state is polled while waiting for nginx.
const POLL: Duration = Duration::from_millis(10);
/// After an `[emerg]`, the log must stay quiet this long before the reload counts as over
/// (nginx retries a failed bind 5 times, 500 ms apart).
const EMERG_SETTLE: Duration = Duration::from_millis(700);

/// Default size past which the error log is rotated.
const ERROR_LOG_LIMIT: u64 = 16 * 1024 * 1024;

/// An nginx master the operator starts, adopts, reloads and stops, in its own prefix.
#[derive(Debug)]
pub struct ManagedNginx {
    /// Absolute prefix directory.
    prefix: PathBuf,
    /// The nginx binary.
    nginx_bin: PathBuf,
    /// `worker_processes` of the rendered config.
    worker_processes: u32,
    /// Serializes apply/start/stop of this instance.
    lock: Mutex<()>,
    /// Longest wait for a reload to take effect.
    reload_timeout: Duration,
    /// Longest wait for a graceful stop before SIGTERM/SIGKILL.
    stop_timeout: Duration,
    /// Size in bytes past which `error.log` is rotated (checked on every
    /// `ensure_running` and `apply`).
    error_log_limit: u64,
    /// Where nginx reports every request (the load signal); `None`: not reported.
    signal: Option<Endpoint>,
}

impl ManagedNginx {
    /// A manager for the nginx master in `prefix` (made absolute against the current directory).
    pub fn new(prefix: PathBuf, nginx_bin: PathBuf, worker_processes: u32) -> Self {
        let prefix = std::path::absolute(&prefix).unwrap_or(prefix);
        Self {
            prefix,
            nginx_bin,
            worker_processes,
            lock: Mutex::new(()),
            reload_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(35),
            error_log_limit: ERROR_LOG_LIMIT,
            signal: None,
        }
    }

    /// Reports every request to the signal receiver bound at `endpoint` (see
    /// [`crate::signal`]); the default is not to.
    pub fn with_signal(mut self, endpoint: Endpoint) -> Self {
        self.signal = Some(endpoint);
        self
    }

    /// Where a unix signal socket goes by default: inside the prefix, next to the pid file.
    pub fn default_signal_socket(&self) -> PathBuf {
        self.prefix.join("signal.sock")
    }

    /// Overrides how long [`LoadBalancer::stop`] waits for in-flight requests (default 35 s).
    pub fn with_stop_timeout(mut self, timeout: Duration) -> Self {
        self.stop_timeout = timeout;
        self
    }

    /// Overrides the size past which the error log is rotated (default 16 MiB).
    pub fn with_error_log_limit(mut self, bytes: u64) -> Self {
        self.error_log_limit = bytes;
        self
    }

    /// The prefix directory.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// The live config file.
    pub fn config_path(&self) -> PathBuf {
        self.prefix.join("nginx.conf")
    }

    /// The master's pid file.
    pub fn pid_path(&self) -> PathBuf {
        self.prefix.join("nginx.pid")
    }

    /// The error log.
    pub fn error_log_path(&self) -> PathBuf {
        self.prefix.join("error.log")
    }

    /// Where the error log goes when rotated (one previous file is kept).
    pub fn rotated_error_log_path(&self) -> PathBuf {
        self.prefix.join("error.log.1")
    }

    /// [`Self::rotate_error_log_locked`], where a failure is only logged (housekeeping
    /// never fails an apply).
    async fn rotate_error_log(&self, pid: Option<i32>) {
        if let Err(error) = self.rotate_error_log_locked(pid).await {
            tracing::warn!(%error, "rotating the nginx error log failed");
        }
    }

    /// Rotates the error log once it passes the limit: renames it over the previous one
    /// and has the master `pid` (if any) reopen its logs. The caller holds the lock.
    ///
    /// The master handles a reload before a reopen when both are pending, so this waits
    /// (briefly) for the fresh file: a reload that follows then logs into it, where
    /// `reload_locked` looks for failures.
    async fn rotate_error_log_locked(&self, pid: Option<i32>) -> Result<(), LbError> {
        let log = self.error_log_path();
        let size = std::fs::metadata(&log).map_or(0, |m| m.len());
        if size <= self.error_log_limit {
            return Ok(());
        }
        let rotated = self.rotated_error_log_path();
        std::fs::rename(&log, &rotated).map_err(|source| LbError::Write {
            path: rotated.clone(),
            source,
        })?;
        tracing::info!(size, limit = self.error_log_limit, path = %log.display(), "rotated the nginx error log");
        let Some(pid) = pid else {
            return Ok(());
        };
        process::send(pid, Signal::SIGUSR1)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        while !log.exists() {
            if Instant::now() > deadline {
                tracing::warn!(pid, "nginx did not reopen its error log within 2 s");
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    /// The pid of the live master of this prefix, `None` when none runs (stale pid files count as none).
    ///
    /// # Errors
    ///
    /// [`LbError::Read`] when the pid file exists but cannot be read.
    pub async fn master_pid(&self) -> Result<Option<i32>, LbError> {
        let Some(text) = read_optional(&self.pid_path()).await? else {
            return Ok(None);
        };
        let pid = text.trim().parse::<i32>().ok();
        Ok(pid.filter(|pid| process::is_master_of(*pid, &self.config_path())))
    }

    /// Settings for rendering.
    fn settings(&self) -> Result<ManagedSettings, LbError> {
        let prefix = self.prefix.to_str().ok_or_else(|| LbError::UnsafePath {
            path: self.prefix.clone(),
        })?;
        Ok(ManagedSettings {
            prefix: prefix.to_owned(),
            worker_processes: self.worker_processes,
        })
    }

    /// Creates the prefix directory.
    async fn create_prefix(&self) -> Result<(), LbError> {
        tokio::fs::create_dir_all(&self.prefix)
            .await
            .map_err(|source| LbError::Write {
                path: self.prefix.clone(),
                source,
            })
    }

    /// Starts a master on the config in place; the caller holds the lock.
    async fn start_locked(&self) -> Result<i32, LbError> {
        let start_error = |detail: String| LbError::Start {
            prefix: self.prefix.clone(),
            detail,
        };
        remove_quietly(&self.pid_path()).await;
        self.reap_orphans().await?;
        let start_log = self.prefix.join("start.log");
        let stderr = std::fs::File::create(&start_log).map_err(|source| LbError::Write {
            path: start_log.clone(),
            source,
        })?;
        let (config, error_log) = (self.config_path(), self.error_log_path());
        let args = [
            "-p".as_ref(),
            self.prefix.as_os_str(),
            "-c".as_ref(),
            config.as_os_str(),
            "-e".as_ref(),
            error_log.as_os_str(),
        ];
        let shown = display_command(&self.nginx_bin, &args);
        tracing::info!(command = %shown, "starting nginx master");
        let mut command = Command::new(&self.nginx_bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            // Own process group from the start; nginx then daemonizes into its own session.
            .process_group(0);
        let mut child = command.spawn().map_err(|e| LbError::Spawn {
            command: shown.clone(),
            detail: e.to_string(),
        })?;
        let status = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => return Err(start_error(format!("waiting for {shown}: {e}"))),
            Err(_) => {
                let _ = child.kill().await;
                return Err(start_error(format!("{shown} did not daemonize in time")));
            }
        };
        if !status.success() {
            let output = std::fs::read_to_string(&start_log).unwrap_or_default();
            return Err(start_error(format!("{status}: {}", output.trim())));
        }
        // The daemon writes its pid file just after the launcher exits, then forks workers.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(pid) = self.master_pid().await?
                && process::active_workers(pid).len() >= self.worker_processes as usize
            {
                tracing::info!(pid, prefix = %self.prefix.display(), "nginx master started");
                return Ok(pid);
            }
            if Instant::now() > deadline {
                return Err(start_error(
                    "no live master with its workers 5 s after start".into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends workers left behind by a master that was killed (they hold the listen sockets).
    async fn reap_orphans(&self) -> Result<(), LbError> {
        let orphans = process::orphans_in(&self.prefix);
        if orphans.is_empty() {
            return Ok(());
        }
        tracing::warn!(?orphans, prefix = %self.prefix.display(), "ending nginx workers whose master is gone");
        for (signal, patience) in [
            (Signal::SIGQUIT, Duration::from_secs(5)),
            (Signal::SIGKILL, Duration::from_secs(2)),
        ] {
            for pid in &orphans {
                process::send(*pid, signal)?;
            }
            let mut all_gone = true;
            for pid in &orphans {
                all_gone &= wait_gone(*pid, patience).await;
            }
            if all_gone {
                break;
            }
        }
        Ok(())
    }

    /// SIGHUPs `pid` and waits until new workers run (Ok) or the reload failed (Err with why).
    async fn reload_locked(&self, pid: i32) -> Result<(), String> {
        let before = process::children_titled(pid, "nginx: worker process");
        let log = self.error_log_path();
        let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        process::send(pid, Signal::SIGHUP).map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut seen_len = offset;
        let mut last_growth = started;
        let mut emerg: Option<String> = None;
        loop {
            tokio::time::sleep(POLL).await;
            if !process::is_master_of(pid, &self.config_path()) {
                return Err("the master exited during the reload".into());
            }
            let len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
            if len != seen_len {
                seen_len = len;
                last_growth = Instant::now();
                if emerg.is_none() {
                    emerg = first_emerg(&log, offset);
                }
            }
            // nginx's last word on a failed bind; otherwise wait for the log to settle.
            let settled = last_growth.elapsed() >= EMERG_SETTLE
                || tail_contains(&log, offset, "still could not bind");
            match &emerg {
                Some(line) if settled => return Err(line.clone()),
                Some(_) => {}
                None => {
                    // Done when the new workers run and every old one has begun its
                    // graceful shutdown (no longer accepting, idle connections closed).
                    let active = process::active_workers(pid);
                    let fresh = active.difference(&before).count();
                    let old_left = active.intersection(&before).count();
                    if fresh >= self.worker_processes as usize && old_left == 0 {
                        tracing::info!(pid, elapsed = ?started.elapsed(), "nginx reloaded");
                        return Ok(());
                    }
                }
            }
            if started.elapsed() > self.reload_timeout {
                return Err(emerg.unwrap_or_else(|| {
                    format!("no new workers within {:?}", self.reload_timeout)
                }));
            }
        }
    }

    /// Stops the master `pid` and its workers; the caller holds the lock.
    async fn stop_locked(&self, pid: i32) -> Result<(), LbError> {
        let children = process::children_titled(pid, "nginx:");
        tracing::info!(pid, prefix = %self.prefix.display(), "stopping nginx master");
        let steps = [
            (Signal::SIGQUIT, self.stop_timeout),
            (Signal::SIGTERM, Duration::from_secs(2)),
            (Signal::SIGKILL, Duration::from_secs(2)),
        ];
        for (signal, patience) in steps {
            process::send(pid, signal)?;
            if wait_gone(pid, patience).await {
                break;
            }
            tracing::warn!(pid, ?signal, "nginx master still running");
        }
        for child in children {
            if process::is_alive(child) {
                process::send(child, Signal::SIGKILL)?;
            }
        }
        if process::is_alive(pid) {
            return Err(LbError::Stop {
                prefix: self.prefix.clone(),
                pid,
                detail: "still alive after SIGKILL".into(),
            });
        }
        remove_quietly(&self.pid_path()).await;
        Ok(())
    }
}

/// Polls until `pid` is gone or `patience` ran out; true when gone.
async fn wait_gone(pid: i32, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while process::is_alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
    true
}

/// What was written to `log` after `offset` (empty when unreadable).
fn log_since(log: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log)
        && file.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// The first `[emerg]` line written to `log` after `offset`.
fn first_emerg(log: &Path, offset: u64) -> Option<String> {
    log_since(log, offset)
        .lines()
        .find(|l| l.contains("[emerg]"))
        .map(str::to_owned)
}

/// True when `needle` was written to `log` after `offset`.
fn tail_contains(log: &Path, offset: u64, needle: &str) -> bool {
    log_since(log, offset).contains(needle)
}

impl LoadBalancer for ManagedNginx {
    fn render(&self, upstreams: &[Upstream]) -> Result<String, LbError> {
        Ok(render_managed_with(
            upstreams,
            &self.settings()?,
            self.signal.as_ref(),
        )?)
    }

    async fn current(&self) -> Result<Option<String>, LbError> {
        read_optional(&self.config_path()).await
    }

    async fn apply(&self, upstreams: &[Upstream]) -> Result<ApplyOutcome, LbError> {
        let text = self.render(upstreams)?;
        let _guard = self.lock.lock().await;
        let config = self.config_path();
        let previous = read_optional(&config).await?;
        if previous.as_deref() == Some(text.as_str()) {
            return Ok(ApplyOutcome::Unchanged);
        }
        self.create_prefix().await?;
        let candidate = temp_sibling(&config, "candidate");
        let staged = async {
            write_synced(&candidate, text.as_bytes()).await?;
            nginx_test(
                &self.nginx_bin,
                &self.prefix,
                &candidate,
                &self.error_log_path(),
            )
            .await?;
            rename_synced(&candidate, &config).await
        };
        if let Err(e) = staged.await {
            remove_quietly(&candidate).await;
            return Err(e);
        }
        let Some(pid) = self.master_pid().await? else {
            return Ok(ApplyOutcome::Written);
        };
        self.rotate_error_log(Some(pid)).await;
        let error = match self.reload_locked(pid).await {
            Ok(()) => match confirm_live(upstreams, &text, LIVE_TIMEOUT).await {
                Ok(()) => return Ok(ApplyOutcome::Reloaded),
                Err(e) => e,
            },
            Err(detail) => LbError::Reload {
                prefix: self.prefix.clone(),
                pid,
                detail,
            },
        };
        tracing::warn!(pid, %error, "nginx reload failed, restoring the previous config");
        restore(&config, previous.as_deref()).await?;
        match self.master_pid().await? {
            // The master may have taken the new file: make it read the previous one again.
            Some(pid) if matches!(error, LbError::NotLive { .. }) => {
                if let Err(detail) = self.reload_locked(pid).await {
                    tracing::error!(%detail, "reloading nginx on the previous config failed");
                }
            }
            Some(_) => {}
            None if previous.is_some() => {
                if let Err(e) = self.start_locked().await {
                    tracing::error!(error = %e, "restarting nginx on the previous config failed");
                }
            }
            None => {}
        }
        Err(error)
    }

    async fn ensure_running(&self) -> Result<(), LbError> {
        let _guard = self.lock.lock().await;
        let pid = self.master_pid().await?;
        self.rotate_error_log(pid).await;
        if let Some(pid) = pid {
            tracing::debug!(pid, prefix = %self.prefix.display(), "adopted running nginx master");
            return Ok(());
        }
        self.create_prefix().await?;
        let config = self.config_path();
        if read_optional(&config).await?.is_none() {
            write_atomic(&config, self.render(&[])?.as_bytes()).await?;
        }
        self.start_locked().await.map(|_| ())
    }

    async fn stop(&self) -> Result<(), LbError> {
        let _guard = self.lock.lock().await;
        match self.master_pid().await? {
            Some(pid) => self.stop_locked(pid).await,
            None => {
                remove_quietly(&self.pid_path()).await;
                Ok(())
            }
        }
    }
}
