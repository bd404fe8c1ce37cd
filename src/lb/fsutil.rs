//! File and command helpers shared by both modes: optional reads, atomic writes, `nginx -t`.
//!
//! Every file is written as a fresh inode (`O_CREAT | O_EXCL | O_NOFOLLOW`), never through
//! whatever already sits at its name, and private directories are checked to be ours.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::LbError;

/// How long `nginx -t` or a reload command may take.
pub(crate) const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The file's text, or `None` when it does not exist.
pub(crate) async fn read_optional(path: &Path) -> Result<Option<String>, LbError> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LbError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes `bytes` to a new file at `path` (mode `0o666` less the umask) and flushes them
/// to disk (not atomic by itself).
///
/// Whatever is at `path` (a stale temp file, or a symlink someone planted) is unlinked
/// first, never followed; if something reappears before the file is created, creation
/// fails instead of following it.
pub(crate) async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LbError> {
    write_new(path, bytes, 0o666).await
}

/// [`write_synced`] with the file's permission bits.
pub(crate) async fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LbError> {
    let wrap = |source| LbError::Write {
        path: path.to_owned(),
        source,
    };
    match tokio::fs::remove_file(path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(wrap(source)),
    }
    let mut options = tokio::fs::OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(nix::libc::O_NOFOLLOW);
    let mut file = options.open(path).await.map_err(wrap)?;
    file.write_all(bytes).await.map_err(wrap)?;
    file.sync_all().await.map_err(wrap)
}

/// Makes sure `dir` is a private directory of ours: creates it with mode `0o700` (and
/// its missing parents) when absent; refuses a symlink, a non-directory, one owned by
/// another user, or one that group or others may access.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), LbError> {
    let unsafe_dir = |reason: String| LbError::UnsafeDir {
        path: dir.to_owned(),
        reason,
    };
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| LbError::Write {
            path: parent.to_owned(),
            source,
        })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(LbError::Write {
                path: dir.to_owned(),
                source,
            });
        }
    }
    // lstat: a symlink is judged as itself, never by what it points at.
    let meta = std::fs::symlink_metadata(dir).map_err(|source| LbError::Read {
        path: dir.to_owned(),
        source,
    })?;
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("it is a symlink".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("it is not a directory".into()));
    }
    let me = effective_uid().ok_or_else(|| unsafe_dir("our own uid is unknown".into()))?;
    if meta.uid() != me {
        return Err(unsafe_dir(format!(
            "it is owned by uid {}, not by us (uid {me})",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(unsafe_dir(format!(
            "its mode {mode:04o} lets group or others in (want 0700)"
        )));
    }
    Ok(())
}

/// This process's effective uid, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Creates the fresh directory `dir` with mode `0o700` inside a private directory,
/// replacing a leftover of the same name (removed without following symlinks).
pub(crate) fn create_fresh_dir(dir: &Path) -> Result<(), LbError> {
    let wrap = |source| LbError::Write {
        path: dir.to_owned(),
        source,
    };
    if std::fs::symlink_metadata(dir).is_ok() {
        std::fs::remove_dir_all(dir)
            .or_else(|_| std::fs::remove_file(dir))
            .map_err(wrap)?;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(wrap)
}

/// Renames `from` over `to` and flushes the directory entry.
pub(crate) async fn rename_synced(from: &Path, to: &Path) -> Result<(), LbError> {
    tokio::fs::rename(from, to)
        .await
        .map_err(|source| LbError::Write {
            path: to.to_owned(),
            source,
        })?;
    if let Some(dir) = to.parent() {
        // Best effort: some filesystems refuse fsync on a directory handle.
        if let Ok(handle) = tokio::fs::File::open(dir).await {
            let _ = handle.sync_all().await;
        }
    }
    Ok(())
}

/// The sibling temp path used while writing `path`.
pub(crate) fn temp_sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{tag}.{}", std::process::id()))
}

/// Atomically replaces `path` with `bytes` (temp file + fsync + rename).
pub(crate) async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), LbError> {
    let temp = temp_sibling(path, "tmp");
    write_synced(&temp, bytes).await?;
    rename_synced(&temp, path).await
}

/// Puts `previous` back at `path` (removing the file when there was none).
pub(crate) async fn restore(path: &Path, previous: Option<&str>) -> Result<(), LbError> {
    match previous {
        Some(text) => write_atomic(path, text.as_bytes()).await,
        None => match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(LbError::Write {
                path: path.to_owned(),
                source,
            }),
        },
    }
}

/// Removes a file, ignoring "not found".
pub(crate) async fn remove_quietly(path: &Path) {
    let _ = tokio::fs::remove_file(path).await;
}

/// A command line for messages.
pub(crate) fn display_command(program: &Path, args: &[&std::ffi::OsStr]) -> String {
    let mut out = program.display().to_string();
    for arg in args {
        out.push(' ');
        out.push_str(&arg.to_string_lossy());
    }
    out
}

/// Runs `command` to completion with a timeout, capturing its output.
pub(crate) async fn run_captured(mut command: Command, shown: String) -> Result<Output, LbError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| LbError::Spawn {
        command: shown.clone(),
        detail: e.to_string(),
    })?;
    match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(LbError::Spawn {
            command: shown,
            detail: e.to_string(),
        }),
        Err(_) => Err(LbError::Spawn {
            command: shown,
            detail: format!("no exit within {COMMAND_TIMEOUT:?}"),
        }),
    }
}

/// Runs `nginx -t` on `config` with `prefix`; `Err(Validate)` carries nginx's stderr.
pub(crate) async fn nginx_test(
    nginx_bin: &Path,
    prefix: &Path,
    config: &Path,
    error_log: &Path,
) -> Result<(), LbError> {
    let args = [
        "-t".as_ref(),
        "-q".as_ref(),
        "-p".as_ref(),
        prefix.as_os_str(),
        "-c".as_ref(),
        config.as_os_str(),
        "-e".as_ref(),
        error_log.as_os_str(),
    ];
    let shown = display_command(nginx_bin, &args);
    let mut command = Command::new(nginx_bin);
    command.args(args);
    let output = run_captured(command, shown).await?;
    if output.status.success() {
        Ok(())
    } else {
        let mut text = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if text.is_empty() {
            text = format!("exit status {}", output.status);
        }
        Err(LbError::Validate {
            path: config.to_owned(),
            output: text,
        })
    }
}
