//! Watches policy files: parent directories via notify, debounced, plus a periodic re-check.
//!
//! Editors save by writing a temp file and renaming it over the original; a watch on the
//! file itself would follow the old inode and go silent, so the parent directory is
//! watched and events are filtered by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Errors of the watcher.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// notify could not start watching.
    #[error("cannot watch {path}: {source}")]
    Watch {
        /// Directory.
        path: PathBuf,
        /// Cause.
        source: notify::Error,
    },
}

/// Sends `()` on `changes` (debounced by `debounce`) whenever a watched policy path may have
/// changed, and every `recheck` regardless (the caller compares content, so extra signals
/// cost one read). Runs until `shutdown`.
pub async fn watch(
    paths: Vec<PathBuf>,
    debounce: Duration,
    recheck: Duration,
    changes: mpsc::Sender<()>,
    shutdown: CancellationToken,
) -> Result<(), WatchError> {
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let interesting: Vec<PathBuf> = paths.iter().map(|p| absolute(p)).collect();
    let filter = interesting.clone();
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                // Our own reads of the file raise access events: reacting to them would
                // reload in a loop.
                if !matches!(event.kind, notify::EventKind::Access(_))
                    && event.paths.iter().any(|p| concerns(&filter, p))
                {
                    let _ = raw_tx.send(());
                }
            }
            Err(e) => tracing::warn!(error = %e, "policy watcher error"),
        })
        .map_err(|source| WatchError::Watch {
            path: PathBuf::new(),
            source,
        })?;
    let dirs: BTreeSet<PathBuf> = interesting.iter().map(|p| watch_dir(p)).collect();
    for dir in &dirs {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|source| WatchError::Watch {
                path: dir.clone(),
                source,
            })?;
    }
    let mut tick = tokio::time::interval(recheck);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
            got = raw_rx.recv() => {
                if got.is_none() {
                    return Ok(());
                }
                // Debounce: an editor's save is several events; wait for quiet.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(debounce) => break,
                        more = raw_rx.recv() => if more.is_none() { break },
                    }
                }
            }
        }
        if changes.send(()).await.is_err() {
            return Ok(());
        }
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// A directory argument is watched itself; a file argument through its parent.
fn watch_dir(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_owned()
    } else {
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// Whether an event on `changed` concerns one of the watched policy paths.
fn concerns(watched: &[PathBuf], changed: &Path) -> bool {
    watched.iter().any(|w| {
        changed == w
            || (w.is_dir()
                && changed.parent() == Some(w.as_path())
                && crate::policy_files::is_policy_file(changed))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_filtered_by_watched_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.yaml");
        std::fs::write(&file, "x").unwrap();
        let watched = vec![file.clone()];
        assert!(concerns(&watched, &file));
        assert!(!concerns(&watched, &dir.path().join(".policy.yaml.swp")));
        assert!(!concerns(&watched, &dir.path().join("other.yaml")));
        let watched_dir = vec![dir.path().to_owned()];
        assert!(concerns(&watched_dir, &dir.path().join("other.yaml")));
        assert!(!concerns(&watched_dir, &dir.path().join("notes.txt")));
        assert_eq!(watch_dir(&file), dir.path());
        assert_eq!(watch_dir(dir.path()), dir.path());
    }
}
