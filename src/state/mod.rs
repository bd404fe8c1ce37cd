//! The state directory: per-policy history and status, the event log, and the locks.
//!
//! Layout of `<state-dir>/` (default: [`default_state_dir`], absolute):
//! - `policies/<name>.json`: one [`PolicyState`] per policy, rewritten (temp file, fsync,
//!   rename) only when its bytes changed ([`store`]); a file that does not parse is set
//!   aside as `<file>.corrupt-<unix-seconds>` and its policy starts with empty history;
//! - `state.json`: the single file of earlier versions, split into `policies/` on load
//!   and kept as `state.json.migrated`;
//! - `events.jsonl` (+ `events.jsonl.1`): one [`Event`] per line, rotated past 1 MiB,
//!   read from the tail ([`events`]);
//! - `lock`: held by the one process driving this directory; a second lock per operator
//!   instance lives in a fixed directory ([`lock`], [`location`]);
//! - `nginx/`: the managed nginx prefix.
//!
//! # Layout of this module
//! [`types`] the remembered values · [`store`] per-policy files · [`events`] the event
//! log · [`lock`] the locks · [`location`] default directories.

pub mod events;
pub mod location;
pub mod lock;
pub mod store;
pub mod types;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub use events::{EVENTS_FILE, EVENTS_MAX_BYTES, EVENTS_ROTATED};
pub use location::{default_lock_dir, default_state_dir};
pub use lock::StateLock;
pub use store::StateReset;
pub use types::{
    Condition, CounterSample, Event, LbStatus, MetricValue, PolicyState, PolicyStatus, State,
    UpstreamSettings, rfc3339,
};

/// Errors of the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be created.
    #[error("cannot create state directory {path}: {source}")]
    CreateDir {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Another process holds the lock of this state directory.
    #[error(
        "another autoscaler holds the lock on {path} ({holder}); only one `run` or `reconcile` may drive a state directory at a time"
    )]
    Locked {
        /// Lock file.
        path: PathBuf,
        /// What the holder wrote into the lock file (pid and command).
        holder: String,
    },
    /// Another process of the same operator instance holds its lock.
    #[error(
        "another autoscaler of instance `{instance}` holds the lock on {path} ({holder}); two operators of one instance would drive the same containers, whatever their state directories"
    )]
    InstanceLocked {
        /// The `--instance`.
        instance: String,
        /// Lock file.
        path: PathBuf,
        /// What the holder wrote into the lock file (pid, command, state directory).
        holder: String,
    },
    /// The default lock directory is not safe to use.
    #[error(
        "refusing the lock directory {path}: {reason}; remove it, or set --lock-dir (AUTOSCALER_LOCK_DIR) to a directory only you can write"
    )]
    UnsafeLockDir {
        /// Directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a file failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// A state file does not parse (a [`StateReset`] carries it: loading sets the file aside).
    #[error("corrupt state file {path}: {source}")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// A policy's state could not be serialized.
    #[error("cannot serialize the state of policy {policy}: {source}")]
    Serialize {
        /// Policy name.
        policy: String,
        /// Cause.
        source: serde_json::Error,
    },
}

/// What [`StateDir::load_checked`] found: the state and the files it had to set aside.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The state (policies of unreadable files keep only their source file and upstream).
    pub state: State,
    /// Unreadable files, set aside (by the lock holder) or ignored (by anyone else).
    pub resets: Vec<StateReset>,
}

/// What a `StateDir` remembers between calls, shared by its clones.
#[derive(Debug, Default)]
struct Cache {
    /// Hash of each policy file as last read or written; `None` until loaded or saved.
    hashes: Option<HashMap<String, u64>>,
    /// The resets of the last load.
    resets: Vec<StateReset>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    instance: Option<lock::InstanceLock>,
    events_max_bytes: u64,
    cache: Arc<Mutex<Cache>>,
}

impl StateDir {
    /// A state directory rooted at `root` (not created until needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            instance: None,
            events_max_bytes: EVENTS_MAX_BYTES,
            cache: Arc::default(),
        }
    }

    /// Also lock operator `instance` in `lock_dir` (default [`default_lock_dir`]) when
    /// [`lock`](Self::lock) is called, so that operators of one instance meet whatever
    /// their state directories.
    pub fn with_instance(mut self, instance: &str, lock_dir: Option<PathBuf>) -> Self {
        self.instance = Some(lock::InstanceLock {
            instance: instance.to_owned(),
            dir: lock_dir,
        });
        self
    }

    /// Rotates the event log past `bytes` instead of [`EVENTS_MAX_BYTES`].
    pub fn with_events_max_bytes(mut self, bytes: u64) -> Self {
        self.events_max_bytes = bytes;
        self
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the managed nginx keeps its prefix.
    pub fn nginx_prefix(&self) -> PathBuf {
        self.root.join("nginx")
    }

    /// Creates the directory if missing.
    pub fn ensure(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(|source| StateError::CreateDir {
            path: self.root.clone(),
            source,
        })
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        // The cache holds no invariant a panic could break half-way: recover it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the exclusive locks without waiting: the instance's (when
    /// [`with_instance`](Self::with_instance) named one), then the directory's.
    /// `command` is recorded for the error others see.
    pub fn lock(&self, command: &str) -> Result<StateLock, StateError> {
        self.ensure()?;
        lock::acquire(&self.root, self.instance.as_ref(), command)
    }

    /// Loads the state: see [`load_checked`](Self::load_checked); the resets stay
    /// available from [`take_resets`](Self::take_resets).
    pub fn load(&self) -> Result<State, StateError> {
        let report = self.load_checked()?;
        self.cache().resets = report.resets;
        Ok(report.state)
    }

    /// Loads the state. A missing directory is an empty state. A file that does not parse
    /// never fails the load: when this process holds the lock it is moved aside
    /// (`<file>.corrupt-<unix-seconds>`), logged as an error and recorded as a
    /// `StateReset` event; otherwise (`status`, `diff`) it is only skipped. Its policy
    /// keeps its source file and upstream when those are readable, with an empty history
    /// ([`PolicyState::history_reset_ms`] set). A legacy `state.json` is split into
    /// per-policy files by the lock holder.
    ///
    /// # Errors
    /// Only when a file or directory cannot be read or written at all.
    pub fn load_checked(&self) -> Result<LoadReport, StateError> {
        let now = now_ms();
        let mutate = lock::holds(&self.root);
        let loaded = store::load(&self.root, mutate, now / 1000)?;
        for reset in &loaded.resets {
            let message = reset.message();
            if mutate {
                tracing::error!(file = %reset.path.display(), "state file set aside: {message}");
            } else {
                tracing::warn!(file = %reset.path.display(), "state file ignored: {message}");
            }
        }
        if mutate && !loaded.resets.is_empty() {
            let events: Vec<Event> = loaded
                .resets
                .iter()
                .map(|r| {
                    let policy = r.policy.clone().unwrap_or_default();
                    Event::new(now, &policy, "StateReset", r.message())
                })
                .collect();
            self.ensure()?;
            events::append(&self.root, &events, self.events_max_bytes)?;
        }
        self.cache().hashes = Some(loaded.hashes);
        Ok(LoadReport {
            state: loaded.state,
            resets: loaded.resets,
        })
    }

    /// The files the last [`load`](Self::load) set aside (emptied by the call).
    pub fn take_resets(&self) -> Vec<StateReset> {
        std::mem::take(&mut self.cache().resets)
    }

    /// Saves the state: rewrites (atomically) the file of every policy whose bytes
    /// changed since this directory was last loaded or saved, and removes the files of
    /// policies no longer in `state`.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.save_counted(state).map(|_| ())
    }

    /// [`save`](Self::save), returning how many policy files were written.
    pub fn save_counted(&self, state: &State) -> Result<usize, StateError> {
        self.ensure()?;
        let mut cache = self.cache();
        store::save(&self.root, state, &mut cache.hashes)
    }

    /// Saves one policy (what one pass of it changed) when its bytes changed: the cost
    /// of a pass no longer grows with the number of policies. Returns whether it wrote.
    /// Removal of a policy goes through [`save`](Self::save).
    pub fn save_policy(&self, name: &str, policy: &PolicyState) -> Result<bool, StateError> {
        self.ensure()?;
        let mut cache = self.cache();
        store::save_one(&self.root, name, policy, &mut cache.hashes)
    }

    /// Appends events to the log (rotating it past its bound).
    pub fn append_events(&self, events: &[Event]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ensure()?;
        events::append(&self.root, events, self.events_max_bytes)
    }

    /// The last `limit` events, oldest first, read from the end of the log (unparsable
    /// lines are skipped).
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        events::recent(&self.root, limit)
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A name as a file name: policy names are DNS labels and pass unchanged; any other byte
/// (and a leading dot) is written `%XX`, so no name can climb out of its directory.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_name`]; `None` for a file name it cannot have made.
pub(crate) fn decode_name(file_stem: &str) -> Option<String> {
    let bytes = file_stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = file_stem.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.is_empty())
}

/// Writes `bytes` to `path` via a temp file in the same directory, fsync and rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    let mut file = File::create(&tmp).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests;
