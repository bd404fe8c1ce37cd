//! The error of a policy: where (file, line, column, field path) and what.

use super::locate::Pos;

/// One problem in a policy file, printed as `file:line:col: path: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{file}:{line}:{column}: {}: {message}", display_path(path))]
pub struct PolicyError {
    /// File name as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path such as `spec.replicas.max`; empty for the whole document or file.
    pub path: String,
    /// What is wrong, one line.
    pub message: String,
}

impl PolicyError {
    /// An error at `pos` of `file` about the field at `path`.
    pub fn new(file: &str, pos: Pos, path: &str, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self {
            file: file.to_owned(),
            line: pos.line,
            column: pos.column,
            path: path.to_owned(),
            // Messages never span lines: one error, one line.
            message: message.replace(['\n', '\r'], " "),
        }
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(document)" } else { path }
}
