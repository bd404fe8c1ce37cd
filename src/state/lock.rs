//! Exclusive locks: one per operator instance (in a fixed directory) and one per state directory.
//!
//! The instance lock is what makes two operators meet: the instance label is global on a
//! host (it selects the containers), so two processes of one instance must exclude each
//! other whatever state directories they were given. The state-directory lock keeps two
//! instances from sharing one directory. Both are `flock`s, released by the kernel when
//! the process dies.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{StateError, encode_name, location};

/// State directories whose lock this process holds: only the holder moves unreadable
/// files aside; any other reader (`status`, `diff`) leaves the directory as it is.
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// An exclusive hold on a state directory (and on its instance), released on drop.
#[derive(Debug)]
pub struct StateLock {
    _files: Vec<File>,
    root: PathBuf,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        if let Ok(mut held) = HELD.lock() {
            held.remove(&self.root);
        }
    }
}

/// Whether this process holds the lock of the state directory `root`.
pub(super) fn holds(root: &Path) -> bool {
    HELD.lock().map(|h| h.contains(&key(root))).unwrap_or(false)
}

fn key(root: &Path) -> PathBuf {
    std::path::absolute(root).unwrap_or_else(|_| root.to_owned())
}

/// Which instance to lock, and where its lock file lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InstanceLock {
    /// The operator instance (`--instance`).
    pub instance: String,
    /// `--lock-dir`, or `None` for [`location::default_lock_dir`].
    pub dir: Option<PathBuf>,
}

impl InstanceLock {
    fn path(&self) -> Result<PathBuf, StateError> {
        let dir = match &self.dir {
            Some(dir) => {
                // A directory the user named: create it if missing, trust its permissions.
                fs::create_dir_all(dir).map_err(|source| StateError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                dir.clone()
            }
            None => {
                let dir = location::default_lock_dir();
                location::ensure_private_dir(&dir)?;
                dir
            }
        };
        Ok(dir.join(format!("{}.lock", encode_name(&self.instance))))
    }
}

/// Takes the instance lock (when given), then the lock of `root`, without waiting.
pub(super) fn acquire(
    root: &Path,
    instance: Option<&InstanceLock>,
    command: &str,
) -> Result<StateLock, StateError> {
    let pid = std::process::id();
    let mut files = Vec::with_capacity(2);
    if let Some(instance) = instance {
        let path = instance.path()?;
        let note = format!("pid {pid} ({command}, state dir {})", key(root).display());
        let file = try_lock(&path, &note).map_err(|e| match e {
            StateError::Locked { path, holder } => StateError::InstanceLocked {
                instance: instance.instance.clone(),
                path,
                holder,
            },
            other => other,
        })?;
        files.push(file);
    }
    let path = root.join("lock");
    let note = match instance {
        Some(i) => format!("pid {pid} ({command}, instance {})", i.instance),
        None => format!("pid {pid} ({command})"),
    };
    files.push(try_lock(&path, &note)?);
    let root = key(root);
    if let Ok(mut held) = HELD.lock() {
        held.insert(root.clone());
    }
    Ok(StateLock {
        _files: files,
        root,
    })
}

/// Opens `path` (never through a symlink) and locks it; on success writes `note` into it
/// for whoever is refused next.
fn try_lock(path: &Path, note: &str) -> Result<File, StateError> {
    let write_err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
        .open(path)
        .map_err(write_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            return Err(StateError::Locked {
                path: path.to_owned(),
                holder: holder.trim().to_owned(),
            });
        }
        Err(fs::TryLockError::Error(source)) => return Err(write_err(source)),
    }
    file.set_len(0).map_err(write_err)?;
    writeln!(file, "{note}").map_err(write_err)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::super::StateDir;

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

    /// Item 15: operators of one instance meet whatever their state directories.
    #[test]
    fn one_instance_is_locked_across_state_dirs_and_two_instances_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = tmp.path().join("locks");
        let sd = |dir: &str, instance: &str| {
            StateDir::new(tmp.path().join(dir)).with_instance(instance, Some(locks.clone()))
        };
        let daemon = sd("a", "web").lock("run").unwrap();
        let err = sd("b", "web").lock("down").unwrap_err().to_string();
        assert!(err.contains("instance `web`"), "{err}");
        assert!(err.contains("(run, state dir "), "{err}");
        assert!(
            err.contains(&tmp.path().join("a").display().to_string()),
            "{err}"
        );
        // Another instance in another directory, and the same directory's lock after release.
        let other = sd("c", "api").lock("reconcile --once").unwrap();
        drop(daemon);
        let again = sd("b", "web").lock("down").unwrap();
        drop((other, again));
    }

    #[test]
    fn instance_lock_file_is_never_opened_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let locks = tmp.path().join("locks");
        std::fs::create_dir(&locks).unwrap();
        let victim = tmp.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, locks.join("web.lock")).unwrap();
        let sd = StateDir::new(tmp.path().join("s")).with_instance("web", Some(locks));
        assert!(sd.lock("run").is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
