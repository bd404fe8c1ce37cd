//! Reads policy files: a file, a multi-document file, or a directory of `*.yaml`/`*.yml`.
//!
//! The effectful half of [`crate::policy`]: it reads bytes (never more than
//! [`MAX_FILE_BYTES`] + 1 per file), rejects non-UTF-8 text with a position, then hands
//! the text to the pure parser and validates every policy of the load together.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::policy::{self, MAX_FILE_BYTES, ParsedPolicy, PolicyError, Pos, ScalingPolicy};

/// A valid policy and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    /// The policy, defaults filled in.
    pub policy: ScalingPolicy,
    /// The file it came from.
    pub file: PathBuf,
    /// Line where its document starts.
    pub line: usize,
}

/// Every error of a load; `Display` prints one `file:line:col: path: message` per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    /// The errors, sorted by file and position.
    pub errors: Vec<PolicyError>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Loads one path (file or directory) and validates its policies together.
///
/// # Errors
/// Every unreadable file, syntax, shape and semantic error of every file.
pub fn load_path(path: &Path) -> Result<Vec<LoadedPolicy>, LoadErrors> {
    load_paths(&[path.to_path_buf()])
}

/// Loads several paths (e.g. repeated `-f`) as one set: names, port ranges and listen
/// addresses must be distinct across all of them.
///
/// # Errors
/// Every error of every file; nothing is returned unless all policies are valid.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<LoadedPolicy>, LoadErrors> {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for path in paths {
        match expand(path) {
            Ok(found) => files.extend(found),
            Err(e) => errors.push(e),
        }
    }
    let mut parsed: Vec<ParsedPolicy> = Vec::new();
    for file in &files {
        let name = file.display().to_string();
        match read_text(file) {
            Ok(text) => {
                let (ok, errs) = policy::parse_documents(&text, &name);
                parsed.extend(ok);
                errors.extend(errs);
            }
            Err(e) => errors.push(e),
        }
    }
    errors.extend(policy::validate_all(&parsed));
    // The CA and secret files Prometheus sources name must be readable now, not at the
    // first query.
    errors.extend(crate::metrics::files::check_policy_files(&parsed));
    if !errors.is_empty() {
        errors.sort();
        errors.dedup();
        return Err(LoadErrors { errors });
    }
    Ok(parsed
        .into_iter()
        .map(|p| LoadedPolicy {
            file: PathBuf::from(&p.file),
            line: p.line,
            policy: policy::with_parsed(p.policy),
        })
        .collect())
}

fn file_error(path: &Path, message: impl Into<String>) -> PolicyError {
    PolicyError::new(&path.display().to_string(), Pos::START, "", message)
}

/// The one rule for which files of a directory are policies (loader, CLI and watcher):
/// `*.yaml` or `*.yml`, not hidden (editors' swap and backup files start with a dot).
pub fn is_policy_file(path: &Path) -> bool {
    let is_yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'));
    is_yaml && !hidden
}

/// The files a path names: itself, or the sorted `*.yaml`/`*.yml` directly inside it.
fn expand(path: &Path) -> Result<Vec<PathBuf>, PolicyError> {
    let meta =
        std::fs::metadata(path).map_err(|e| file_error(path, io_in_words("cannot read", &e)))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path)
        .map_err(|e| file_error(path, format!("cannot list directory: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| file_error(path, format!("cannot list directory: {e}")))?;
        let p = entry.path();
        if is_policy_file(&p) && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(file_error(path, "directory holds no *.yaml or *.yml file"));
    }
    Ok(files)
}

/// An I/O error said plainly: "file not found", "permission denied", else `what: error`.
fn io_in_words(what: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "file not found".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => format!("{what}: {e}"),
    }
}

/// Reads at most `MAX_FILE_BYTES + 1` bytes and decodes them as UTF-8.
fn read_text(path: &Path) -> Result<String, PolicyError> {
    let file = File::open(path).map_err(|e| file_error(path, io_in_words("cannot open", &e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(file_error(
            path,
            format!("file is larger than the limit of {MAX_FILE_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let prefix = String::from_utf8_lossy(good);
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        PolicyError::new(
            &path.display().to_string(),
            Pos { line, column },
            "",
            format!("not UTF-8: invalid byte 0x{:02x}", e.as_bytes()[good.len()]),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {name: NAME}
spec:
  template: {image: demo:latest, containerPort: 8000}
  replicas: {min: 1, max: 10}
  ports: {range: RANGE}
  loadBalancer: {listen: 127.0.0.1:LISTEN}
  metrics: [{requestRate: {targetPerReplica: 10}}]
";

    fn policy(name: &str, range: &str, listen: u16) -> String {
        POLICY
            .replace("NAME", name)
            .replace("RANGE", range)
            .replace("LISTEN", &listen.to_string())
    }

    #[test]
    fn directory_loads_sorted_yaml_files_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.yml"), policy("b", "9001-9011", 9000)).unwrap();
        std::fs::write(dir.path().join("a.yaml"), policy("a", "8001-8011", 8000)).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml").unwrap();
        std::fs::write(dir.path().join(".x.yaml"), "garbage: [").unwrap();
        let loaded = load_path(dir.path()).unwrap();
        let names: Vec<_> = loaded
            .iter()
            .map(|p| p.policy.metadata.name.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        assert!(loaded[0].file.ends_with("a.yaml"));
    }

    #[test]
    fn conflicts_across_files_are_reported_with_both_places() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, policy("web", "8001-8011", 8000)).unwrap();
        std::fs::write(&b, policy("web", "8005-8020", 8000)).unwrap();
        let err = load_paths(&[a, b.clone()]).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.errors.len(), 3, "{text}");
        for line in text.lines() {
            assert!(line.starts_with(&b.display().to_string()), "{text}");
            assert!(line.contains("a.yaml:1"), "{text}");
        }
    }

    #[test]
    fn non_utf8_and_oversized_files_are_rejected_with_positions() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, b"a: 1\nbb: \xff\xfe\n").unwrap();
        let err = load_path(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.yaml:2:5: (document): not UTF-8"), "{err}");
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES + 10]).unwrap();
        let err = load_path(&big).unwrap_err().to_string();
        assert!(
            err.contains("big.yaml:1:1: (document): file is larger"),
            "{err}"
        );
    }

    #[test]
    fn missing_path_and_empty_directory_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_path(&dir.path().join("nope.yaml")).is_err());
        assert!(load_path(dir.path()).is_err());
    }
}
