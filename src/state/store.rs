//! Per-policy state files: loading (legacy migration, unreadable files set aside) and
//! saving only the policies whose bytes changed.
//!
//! `<state-dir>/policies/<name>.json` holds one [`PolicyState`]. A save serializes each
//! policy, compares a hash of the bytes with what this process last read or wrote, and
//! rewrites (temp file, fsync, rename) only the files that differ; a policy gone from
//! the [`State`] loses its file. A file that cannot be parsed is renamed to
//! `<file>.corrupt-<unix-seconds>` by the lock holder and its policy continues with an
//! empty history (see [`StateReset`]).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    PolicyState, State, StateError, UpstreamSettings, decode_name, encode_name, write_atomic,
};

/// Directory of the per-policy files.
pub const POLICIES_DIR: &str = "policies";
/// The single file of earlier versions, migrated on load.
pub const LEGACY_FILE: &str = "state.json";

/// A state file that could not be read: set aside, its policy's history lost.
#[derive(Debug)]
pub struct StateReset {
    /// The policy it belonged to; `None` for a legacy `state.json` that was not JSON at all.
    pub policy: Option<String>,
    /// The file that could not be read.
    pub path: PathBuf,
    /// Where it was moved; `None` when this process does not hold the lock and left it.
    pub moved_to: Option<PathBuf>,
    /// Why it could not be read ([`StateError::Corrupt`]).
    pub error: StateError,
}

impl StateReset {
    /// One sentence for logs and the `StateReset` event.
    pub fn message(&self) -> String {
        let whose = match &self.policy {
            Some(name) => format!("the history of policy {name} starts empty"),
            None => "every policy's history starts empty".to_owned(),
        };
        let moved = match &self.moved_to {
            Some(to) => format!("moved to {}", to.display()),
            None => "left in place (this process does not hold the lock)".to_owned(),
        };
        format!(
            "{}; {moved}; {whose} and counts as missing data (nothing scales down on its account)",
            self.error
        )
    }
}

/// What a load found.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    pub state: State,
    pub resets: Vec<StateReset>,
    /// Hash of each policy file's bytes as read (unchanged policies are not rewritten).
    pub hashes: HashMap<String, u64>,
}

fn policies_dir(root: &Path) -> PathBuf {
    root.join(POLICIES_DIR)
}

fn policy_path(root: &Path, name: &str) -> PathBuf {
    policies_dir(root).join(format!("{}.json", encode_name(name)))
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Loads every policy file, then migrates a legacy `state.json`. With `mutate` (the lock
/// holder), unreadable files are moved aside and the legacy file is split and renamed;
/// without, the directory is left as it is.
pub(super) fn load(root: &Path, mutate: bool, now_secs: u64) -> Result<Loaded, StateError> {
    let mut loaded = Loaded::default();
    let dir = policies_dir(root);
    for (name, path) in policy_files(&dir)? {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(StateError::Read { path, source }),
        };
        match serde_json::from_slice::<PolicyState>(&bytes) {
            Ok(ps) => {
                loaded.hashes.insert(name.clone(), hash(&bytes));
                loaded.state.policies.insert(name, ps);
            }
            Err(source) => {
                let salvaged = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| salvage(&v, now_secs));
                let moved_to = if mutate {
                    Some(set_aside(&path, now_secs)?)
                } else {
                    None
                };
                loaded.resets.push(StateReset {
                    policy: Some(name.clone()),
                    error: StateError::Corrupt {
                        path: path.clone(),
                        source,
                    },
                    path,
                    moved_to,
                });
                if let Some(ps) = salvaged {
                    loaded.state.policies.insert(name, ps);
                }
            }
        }
    }
    migrate_legacy(root, mutate, now_secs, &mut loaded)?;
    Ok(loaded)
}

/// `(policy name, path)` of every `*.json` in `dir` (temp and set-aside files excluded).
fn policy_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, StateError> {
    let read_err = |source| StateError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(read_err(source)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_err)?;
        let file_name = entry.file_name();
        let Some(stem) = file_name
            .to_str()
            .filter(|n| !n.starts_with('.'))
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        if let Some(name) = decode_name(stem) {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Splits a legacy `state.json` into per-policy files. A policy that already has its own
/// file keeps it (the per-policy file is newer: a crash between the split and the rename).
fn migrate_legacy(
    root: &Path,
    mutate: bool,
    now_secs: u64,
    loaded: &mut Loaded,
) -> Result<(), StateError> {
    let path = root.join(LEGACY_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    let mut resets = Vec::new();
    let mut migrated = Vec::new();
    let policies = serde_json::from_slice::<Value>(&bytes).and_then(|v| {
        serde_json::from_value::<BTreeMap<String, Value>>(
            v.get("policies")
                .cloned()
                .unwrap_or(Value::Object(Default::default())),
        )
    });
    match policies {
        Err(source) => resets.push((
            None,
            StateError::Corrupt {
                path: path.clone(),
                source,
            },
        )),
        Ok(policies) => {
            for (name, value) in policies {
                let known = loaded.state.policies.contains_key(&name)
                    || loaded
                        .resets
                        .iter()
                        .any(|r| r.policy.as_ref() == Some(&name));
                if known {
                    continue;
                }
                match serde_json::from_value::<PolicyState>(value.clone()) {
                    Ok(ps) => {
                        migrated.push(name.clone());
                        loaded.state.policies.insert(name, ps);
                    }
                    Err(source) => {
                        if let Some(ps) = salvage(&value, now_secs) {
                            migrated.push(name.clone());
                            loaded.state.policies.insert(name.clone(), ps);
                        }
                        resets.push((
                            Some(name),
                            StateError::Corrupt {
                                path: path.clone(),
                                source,
                            },
                        ));
                    }
                }
            }
        }
    }
    let moved_to = if mutate {
        // Write the split first: a crash before the rename finds both, and the per-policy files win.
        ensure_dir(&policies_dir(root))?;
        for name in &migrated {
            if let Some(ps) = loaded.state.policies.get(name) {
                let bytes = to_bytes(name, ps)?;
                write_atomic(&policy_path(root, name), &bytes)?;
                loaded.hashes.insert(name.clone(), hash(&bytes));
            }
        }
        Some(if resets.is_empty() {
            let to = root.join(format!("{LEGACY_FILE}.migrated"));
            fs::rename(&path, &to).map_err(|source| StateError::Write {
                path: path.clone(),
                source,
            })?;
            to
        } else {
            set_aside(&path, now_secs)?
        })
    } else {
        None
    };
    loaded
        .resets
        .extend(resets.into_iter().map(|(policy, error)| StateReset {
            policy,
            path: path.clone(),
            moved_to: moved_to.clone(),
            error,
        }));
    Ok(())
}

/// What survives of a policy whose file does not parse: where it came from and how its
/// upstream renders (so `down` and pruning still find it); history, samples and status
/// start empty. `None` when even those are unreadable.
fn salvage(value: &Value, now_secs: u64) -> Option<PolicyState> {
    let source_file: PathBuf = serde_json::from_value(value.get("sourceFile")?.clone()).ok()?;
    let upstream: UpstreamSettings = serde_json::from_value(value.get("upstream")?.clone()).ok()?;
    Some(PolicyState {
        source_file,
        upstream,
        history_reset_ms: Some(now_secs.saturating_mul(1000)),
        ..PolicyState::default()
    })
}

/// Renames `path` to `<path>.corrupt-<now>` (with a counter if that exists) and returns the new name.
fn set_aside(path: &Path, now_secs: u64) -> Result<PathBuf, StateError> {
    let base = path.as_os_str().to_owned();
    let mut n = 0;
    loop {
        let mut name = base.clone();
        name.push(format!(".corrupt-{now_secs}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let to = PathBuf::from(name);
        if !to.exists() {
            fs::rename(path, &to).map_err(|source| StateError::Write {
                path: path.to_owned(),
                source,
            })?;
            return Ok(to);
        }
        n += 1;
    }
}

fn ensure_dir(dir: &Path) -> Result<(), StateError> {
    fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

fn to_bytes(name: &str, ps: &PolicyState) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(ps).map_err(|source| StateError::Serialize {
        policy: name.to_owned(),
        source,
    })
}

/// Writes the policies of `state` whose bytes differ from `hashes` (updated), and removes
/// the files of policies that are gone. `hashes` is `None` when this process has not
/// loaded the directory: then every policy is written and every other file removed.
/// Returns how many files were written.
pub(super) fn save(
    root: &Path,
    state: &State,
    hashes: &mut Option<HashMap<String, u64>>,
) -> Result<usize, StateError> {
    let dir = policies_dir(root);
    ensure_dir(&dir)?;
    let known = match hashes {
        Some(known) => known,
        None => {
            // Unknown directory: anything on disk not in `state` goes.
            for (name, path) in policy_files(&dir)? {
                if !state.policies.contains_key(&name) {
                    remove(&path)?;
                }
            }
            hashes.insert(HashMap::new())
        }
    };
    let mut written = 0;
    for (name, ps) in &state.policies {
        let bytes = to_bytes(name, ps)?;
        let h = hash(&bytes);
        if known.get(name) == Some(&h) {
            continue;
        }
        write_atomic(&policy_path(root, name), &bytes)?;
        known.insert(name.clone(), h);
        written += 1;
    }
    let gone: Vec<String> = known
        .keys()
        .filter(|name| !state.policies.contains_key(*name))
        .cloned()
        .collect();
    for name in gone {
        remove(&policy_path(root, &name))?;
        known.remove(&name);
    }
    Ok(written)
}

/// Writes one policy's file when its bytes differ from `hashes`; returns whether it wrote.
pub(super) fn save_one(
    root: &Path,
    name: &str,
    ps: &PolicyState,
    hashes: &mut Option<HashMap<String, u64>>,
) -> Result<bool, StateError> {
    ensure_dir(&policies_dir(root))?;
    let bytes = to_bytes(name, ps)?;
    let h = hash(&bytes);
    if let Some(known) = hashes.as_ref()
        && known.get(name) == Some(&h)
    {
        return Ok(false);
    }
    write_atomic(&policy_path(root, name), &bytes)?;
    if let Some(known) = hashes.as_mut() {
        known.insert(name.to_owned(), h);
    }
    Ok(true)
}

fn remove(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Write {
            path: path.to_owned(),
            source,
        }),
    }
}
