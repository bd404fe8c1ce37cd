//! The state directory: per-policy history and status, the event log, and the lock.
//!
//! Layout of `<state-dir>/` (default `.autoscaler/`):
//! - `state.json`: [`State`], written atomically (temp file, fsync, rename);
//! - `events.jsonl`: one [`Event`] per line, appended;
//! - `lock`: held exclusively by the one process driving this host (`run` or `reconcile`);
//! - `nginx/`: the managed nginx prefix.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::policy::Algorithm;
use crate::scaling::History;

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
    /// Another process holds the lock.
    #[error(
        "another autoscaler holds the lock on {path} ({holder}); only one `run` or `reconcile` may drive a state directory at a time"
    )]
    Locked {
        /// Lock file.
        path: PathBuf,
        /// What the holder wrote into the lock file (pid and command).
        holder: String,
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
    /// `state.json` is not valid.
    #[error("corrupt state file {path}: {source} (move it away to start afresh)")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
}

/// Everything the operator remembers between passes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Per policy, by name.
    #[serde(default)]
    pub policies: BTreeMap<String, PolicyState>,
}

/// What is remembered of one policy.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyState {
    /// File the policy was last loaded from: a policy missing from a valid file it came
    /// from is pruned; policies of files not given in this run are left alone.
    pub source_file: PathBuf,
    /// How its upstream renders, so a run that did not load it keeps its nginx block.
    pub upstream: UpstreamSettings,
    /// Scaling recommendations and events (stabilization windows, rate policies).
    #[serde(default)]
    pub history: History,
    /// Last counter sample per replica container id (rates across cron runs).
    #[serde(default)]
    pub samples: BTreeMap<String, CounterSample>,
    /// Last observed status.
    #[serde(default)]
    pub status: PolicyStatus,
}

/// What renders a policy's nginx server block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamSettings {
    /// `IP:PORT`.
    pub listen: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Upstream keep-alive connections.
    pub keepalive: u32,
    /// Host IP replicas publish on.
    pub host_ip: String,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            listen: String::new(),
            algorithm: Algorithm::default(),
            keepalive: 32,
            host_ip: "127.0.0.1".to_owned(),
        }
    }
}

/// One scrape of a replica's counter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterSample {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// Counter value.
    pub value: f64,
}

/// Status of one policy, as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Replicas the last decision asked for.
    pub desired: u32,
    /// Replicas running.
    pub current: u32,
    /// Replicas ready and in the upstream.
    pub ready: u32,
    /// Each metric's value against its target.
    #[serde(default)]
    pub metrics: Vec<MetricValue>,
    /// HPA-style conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Last scale change, ms since epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_ms: Option<u64>,
    /// Why the last scale change happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_reason: Option<String>,
    /// End of the last pass, ms since epoch.
    #[serde(default)]
    pub last_reconcile_ms: u64,
    /// The last decision's reason.
    #[serde(default)]
    pub reason: String,
}

/// A metric's value next to its target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricValue {
    /// Display name, e.g. `requestRate(http_requests_total)`.
    pub name: String,
    /// Per-replica value, when known.
    pub value: Option<f64>,
    /// Target per replica.
    pub target: f64,
}

/// An HPA-style condition (`AbleToScale`, `ScalingActive`, `ScalingLimited`, `PolicyValid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub kind: String,
    /// True or false.
    pub status: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Sentence for people.
    pub message: String,
    /// When `status` last changed, ms since epoch.
    pub last_transition_ms: u64,
}

impl PolicyStatus {
    /// Sets a condition, keeping its transition time when the status did not change.
    pub fn set_condition(
        &mut self,
        kind: &str,
        status: bool,
        reason: &str,
        message: &str,
        now_ms: u64,
    ) {
        let entry = Condition {
            kind: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_ms: now_ms,
        };
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(existing) => {
                let since = if existing.status == status {
                    existing.last_transition_ms
                } else {
                    now_ms
                };
                *existing = Condition {
                    last_transition_ms: since,
                    ..entry
                };
            }
            None => self.conditions.push(entry),
        }
    }

    /// The condition of this type, if set.
    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// One line of `events.jsonl`, e.g. `ScaledUp 2→5: 23.1 req/s per replica > 10`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Milliseconds since the epoch.
    pub at_ms: u64,
    /// Policy name.
    pub policy: String,
    /// `ScaledUp`, `ScaledDown`, `ReplicaCreated`, `ReplicaRemoved`, `Reloaded`, `PolicyInvalid`, `StepFailed`, ...
    pub kind: String,
    /// Sentence for people.
    pub message: String,
}

/// An exclusive hold on a state directory, released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// A state directory rooted at `root` (not created until needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the managed nginx keeps its prefix.
    pub fn nginx_prefix(&self) -> PathBuf {
        self.root.join("nginx")
    }

    fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    fn events_path(&self) -> PathBuf {
        self.root.join("events.jsonl")
    }

    /// Creates the directory if missing.
    pub fn ensure(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.root).map_err(|source| StateError::CreateDir {
            path: self.root.clone(),
            source,
        })
    }

    /// Takes the exclusive lock without waiting; `command` is recorded for the error others see.
    pub fn lock(&self, command: &str) -> Result<StateLock, StateError> {
        self.ensure()?;
        let path = self.root.join("lock");
        let write_err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(write_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StateError::Locked {
                    path,
                    holder: holder.trim().to_owned(),
                });
            }
            Err(fs::TryLockError::Error(source)) => return Err(write_err(source)),
        }
        file.set_len(0).map_err(write_err)?;
        writeln!(file, "pid {} ({command})", std::process::id()).map_err(write_err)?;
        Ok(StateLock { _file: file })
    }

    /// Loads the state; a missing file is an empty state.
    pub fn load(&self) -> Result<State, StateError> {
        let path = self.state_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Saves the state atomically.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.ensure()?;
        let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
            path: self.state_path(),
            source,
        })?;
        write_atomic(&self.state_path(), &bytes)
    }

    /// Appends events to the log.
    pub fn append_events(&self, events: &[Event]) -> Result<(), StateError> {
        if events.is_empty() {
            return Ok(());
        }
        self.ensure()?;
        let path = self.events_path();
        let write_err = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut buf = Vec::new();
        for event in events {
            // Plain data always serializes.
            if let Ok(line) = serde_json::to_string(event) {
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(write_err)?;
        file.write_all(&buf).map_err(write_err)
    }

    /// The last `limit` events (unparsable lines are skipped).
    pub fn recent_events(&self, limit: usize) -> Result<Vec<Event>, StateError> {
        let path = self.events_path();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let mut events: Vec<Event> = io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect();
        let skip = events.len().saturating_sub(limit);
        Ok(events.split_off(skip))
    }
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
mod tests {
    use super::*;

    #[test]
    fn missing_state_loads_empty_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path().join("s"));
        assert!(sd.load().unwrap().policies.is_empty());
        let mut state = State::default();
        state.policies.insert(
            "web".into(),
            PolicyState {
                source_file: "p.yaml".into(),
                ..Default::default()
            },
        );
        sd.save(&state).unwrap();
        let json = |s: &State| serde_json::to_value(s).unwrap();
        assert_eq!(json(&sd.load().unwrap()), json(&state));
    }

    #[test]
    fn second_lock_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let first = sd.lock("run").unwrap();
        let err = sd.lock("reconcile --once").unwrap_err().to_string();
        assert!(err.contains("another autoscaler holds the lock"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        sd.lock("again").unwrap();
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        fs::write(dir.path().join("state.json"), b"{not json").unwrap();
        let err = sd.load().unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn events_append_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::new(dir.path());
        let ev = |i: u64| Event {
            at_ms: i,
            policy: "web".into(),
            kind: "ScaledUp".into(),
            message: format!("n{i}"),
        };
        sd.append_events(&[ev(1), ev(2)]).unwrap();
        sd.append_events(&[ev(3)]).unwrap();
        let got = sd.recent_events(2).unwrap();
        assert_eq!(got, vec![ev(2), ev(3)]);
    }

    #[test]
    fn condition_keeps_transition_time_while_status_holds() {
        let mut s = PolicyStatus::default();
        s.set_condition("ScalingActive", true, "ValidMetric", "ok", 10);
        s.set_condition("ScalingActive", true, "ValidMetric", "still ok", 20);
        assert_eq!(s.condition("ScalingActive").unwrap().last_transition_ms, 10);
        s.set_condition("ScalingActive", false, "FailedGetMetrics", "down", 30);
        assert_eq!(s.condition("ScalingActive").unwrap().last_transition_ms, 30);
    }
}
