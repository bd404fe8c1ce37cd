//! The event log: `events.jsonl`, appended, rotated past a size bound, read from its tail.
//!
//! Past [`EVENTS_MAX_BYTES`] the log is renamed to `events.jsonl.1` (replacing the older
//! one) before the next append, so the two files together stay under about twice the
//! bound. Readers seek from the end and parse only the lines they return.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{Event, StateError};

/// Name of the live log in the state directory.
pub const EVENTS_FILE: &str = "events.jsonl";
/// Name of the rotated log.
pub const EVENTS_ROTATED: &str = "events.jsonl.1";
/// Size past which the live log is rotated.
pub const EVENTS_MAX_BYTES: u64 = 1 << 20;
/// How much a backward read takes at a time.
const CHUNK: u64 = 64 * 1024;

/// Appends `events` to `root/events.jsonl`, rotating it first when the append would take
/// it past `max_bytes`.
pub(super) fn append(root: &Path, events: &[Event], max_bytes: u64) -> Result<(), StateError> {
    if events.is_empty() {
        return Ok(());
    }
    let path = root.join(EVENTS_FILE);
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
    let len = match fs::metadata(&path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(source) => return Err(StateError::Read { path, source }),
    };
    if len > 0 && len + buf.len() as u64 > max_bytes {
        fs::rename(&path, root.join(EVENTS_ROTATED)).map_err(write_err)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(write_err)?;
    file.write_all(&buf).map_err(write_err)
}

/// The last `limit` events of the live log, then of the rotated one when the live log
/// holds fewer; oldest first. Unparsable lines (a torn last line, a foreign line) are
/// skipped.
pub(super) fn recent(root: &Path, limit: usize) -> Result<Vec<Event>, StateError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut events = parse(tail_lines(&root.join(EVENTS_FILE), limit)?);
    if events.len() < limit {
        let mut older = parse(tail_lines(
            &root.join(EVENTS_ROTATED),
            limit - events.len(),
        )?);
        older.append(&mut events);
        events = older;
    }
    Ok(events)
}

fn parse(lines: Vec<Vec<u8>>) -> Vec<Event> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

/// The last `n` complete lines of `path` (a missing file has none), read backwards in
/// chunks: the cost follows `n`, not the size of the file.
pub(super) fn tail_lines(path: &Path, n: usize) -> Result<Vec<Vec<u8>>, StateError> {
    let read_err = |source| StateError::Read {
        path: PathBuf::from(path),
        source,
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(read_err(source)),
    };
    let len = file.seek(SeekFrom::End(0)).map_err(read_err)?;
    let mut pos = len;
    let mut tail: Vec<u8> = Vec::new();
    // More than `n` newlines guarantee `n` complete lines after the first (maybe partial) one.
    while pos > 0 && bytecount(&tail) <= n {
        let start = pos.saturating_sub(CHUNK);
        let mut chunk = vec![0; (pos - start) as usize];
        file.seek(SeekFrom::Start(start)).map_err(read_err)?;
        file.read_exact(&mut chunk).map_err(read_err)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        pos = start;
    }
    let mut lines: Vec<&[u8]> = tail.split(|b| *b == b'\n').collect();
    // The piece after the last newline is empty, or a line still being written.
    lines.pop();
    if pos > 0 && !lines.is_empty() {
        // Starts mid-line.
        lines.remove(0);
    }
    let skip = lines.len().saturating_sub(n);
    Ok(lines[skip..]
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| l.to_vec())
        .collect())
}

fn bytecount(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(i: u64) -> Event {
        Event::new(i, "web", "ScaledUp", format!("n{i}"))
    }

    #[test]
    fn events_append_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), &[ev(1), ev(2)], EVENTS_MAX_BYTES).unwrap();
        append(dir.path(), &[ev(3)], EVENTS_MAX_BYTES).unwrap();
        assert_eq!(recent(dir.path(), 2).unwrap(), vec![ev(2), ev(3)]);
        assert_eq!(recent(dir.path(), 10).unwrap(), vec![ev(1), ev(2), ev(3)]);
        assert!(recent(dir.path(), 0).unwrap().is_empty());
    }

    #[test]
    fn log_rotates_past_its_bound_and_keeps_one_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let line = serde_json::to_string(&ev(0)).unwrap().len() as u64 + 1;
        let bound = 10 * line;
        for i in 0..35 {
            append(dir.path(), &[ev(i)], bound).unwrap();
        }
        let size = |f: &str| {
            fs::metadata(dir.path().join(f))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        assert!(size(EVENTS_FILE) <= bound, "{}", size(EVENTS_FILE));
        assert!(size(EVENTS_ROTATED) <= bound, "{}", size(EVENTS_ROTATED));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // Reading across the two files, oldest first.
        let got: Vec<u64> = recent(dir.path(), 12)
            .unwrap()
            .iter()
            .map(|e| e.at_ms)
            .collect();
        assert_eq!(got, (23..35).collect::<Vec<_>>());
    }

    #[test]
    fn tail_of_a_large_log_skips_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(EVENTS_FILE);
        // 8 MiB of lines, then a torn last line that a concurrent writer has not finished.
        let mut text = Vec::new();
        let mut i = 0u64;
        while text.len() < 8 << 20 {
            text.extend_from_slice(serde_json::to_string(&ev(i)).unwrap().as_bytes());
            text.push(b'\n');
            i += 1;
        }
        text.extend_from_slice(b"{\"atMs\":");
        fs::write(&path, &text).unwrap();
        let got = recent(dir.path(), 3).unwrap();
        assert_eq!(got, vec![ev(i - 3), ev(i - 2), ev(i - 1)]);
    }

    #[test]
    fn tail_of_lines_longer_than_a_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let long = vec![b'a'; 200_000];
        let mut text = Vec::new();
        for _ in 0..3 {
            text.extend_from_slice(&long);
            text.push(b'\n');
        }
        fs::write(&path, &text).unwrap();
        let lines = tail_lines(&path, 2).unwrap();
        assert_eq!(lines, vec![long.clone(), long.clone()]);
        assert_eq!(tail_lines(&path, 5).unwrap().len(), 3);
    }
}
