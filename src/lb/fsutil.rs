//! File and command helpers shared by both modes: optional reads, atomic writes, `nginx -t`.

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

/// Writes `bytes` to `path` and flushes them to disk (not atomic by itself).
pub(crate) async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LbError> {
    let wrap = |source| LbError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::create(path).await.map_err(wrap)?;
    file.write_all(bytes).await.map_err(wrap)?;
    file.sync_all().await.map_err(wrap)
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
