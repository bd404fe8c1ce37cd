//! Linux process inspection for the managed master: liveness, identity, worker pids, signals.

use std::collections::BTreeSet;
use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::LbError;

/// The `(state, ppid)` fields of `/proc/PID/stat`, `None` when the process is gone.
fn stat(pid: i32) -> Option<(char, i32)> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The `(state, ppid)` fields of a `/proc/PID/stat` line.
fn parse_stat(text: &str) -> Option<(char, i32)> {
    // The command name is in parentheses and may contain spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// The process title (`/proc/PID/cmdline` with NULs as spaces).
fn cmdline(pid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
    Some(text.trim().to_owned())
}

/// True while `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: i32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// True when `pid` is a live nginx master started with `-c config` (guards against pid reuse
/// and against another operator's master).
pub(crate) fn is_master_of(pid: i32, config: &Path) -> bool {
    let Some(title) = cmdline(pid) else {
        return false;
    };
    let config = config.to_string_lossy();
    let words: Vec<&str> = title.split(' ').collect();
    is_alive(pid)
        && title.starts_with("nginx: master process")
        && words.windows(2).any(|w| w[0] == "-c" && w[1] == config)
}

/// Pids of the master's children whose title starts with `title` (e.g. `nginx: worker process`).
pub(crate) fn children_titled(master: i32, title: &str) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(stat(*pid), Some((s, ppid)) if ppid == master && s != 'Z'))
        .filter(|pid| cmdline(*pid).is_some_and(|t| t.starts_with(title)))
        .collect()
}

/// Workers serving the current config (not the ones shutting down after a reload).
pub(crate) fn active_workers(master: i32) -> BTreeSet<i32> {
    let all = children_titled(master, "nginx: worker process");
    all.into_iter()
        .filter(|pid| cmdline(*pid).is_some_and(|t| !t.contains("is shutting down")))
        .collect()
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
pub(crate) fn send(pid: i32, signal: Signal) -> Result<(), LbError> {
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(LbError::Signal { pid, source }),
    }
}

/// nginx processes without a master that hold a file under `prefix` open.
///
/// When a master is killed with SIGKILL its workers live on, still holding the listen
/// sockets (and the prefix's error log, which is how they are recognised): a new master
/// could not bind until they are gone.
pub(crate) fn orphans_in(prefix: &Path) -> BTreeSet<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            is_alive(*pid)
                && cmdline(*pid).is_some_and(|t| t.starts_with("nginx:") && !t.contains("master"))
                && holds_file_under(*pid, prefix)
        })
        .collect()
}

/// True when one of `pid`'s open file descriptors points under `prefix`.
fn holds_file_under(pid: i32, prefix: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .any(|target| target.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::parse_stat;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let cases = [
            ("123 (nginx) S 1 123 123 0 -1", Some(('S', 1))),
            ("9 (a) b) (c) Z 42 9 9", Some(('Z', 42))),
            ("9 (name with spaces) R 7 9", Some(('R', 7))),
            ("9 (truncated", None),
            ("9 (x) S notanumber", None),
            ("", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line), want, "{line:?}");
        }
    }
}
