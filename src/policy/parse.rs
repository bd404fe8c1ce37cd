//! YAML text → `ScalingPolicy` values with their source positions (serde-saphyr).
//!
//! Hardened for hostile input: a size cap, serde-saphyr budgets (events, nodes, depth,
//! aliases, alias replay) against alias bombs and deep nesting, strict booleans, and
//! duplicate keys rejected. Each document is deserialized on its own, so one bad
//! document does not hide the errors of the next.

use std::io::Cursor;

use serde_saphyr::{
    DefaultMessageFormatter, DuplicateKeyPolicy, Options, RenderOptions, SnippetMode, Spanned,
};

use super::error::PolicyError;
use super::locate::{DocPositions, Pos, index_documents, parent_path};
use super::types::ScalingPolicy;

/// Largest policy file accepted, in bytes (1 MiB): a policy is a few hundred bytes.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most documents accepted in one file.
pub const MAX_DOCUMENTS: usize = 256;
/// Deepest nesting of mappings and sequences accepted (a policy needs about 6).
pub const MAX_DEPTH: usize = 32;

/// One successfully deserialized policy with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedPolicy {
    /// The policy as written (defaults filled in by serde).
    pub policy: ScalingPolicy,
    /// File name used in messages.
    pub file: String,
    /// Line where the policy's document starts.
    pub line: usize,
    /// Positions of its fields, for semantic errors.
    pub positions: DocPositions,
}

impl ParsedPolicy {
    /// An error positioned at `path` of this policy (or its nearest written ancestor).
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> PolicyError {
        let pos = self.positions.value_pos(path);
        PolicyError::new(&self.file, pos, path, message)
    }
}

/// serde-saphyr options for policy files; built per call (they hold an `Rc`, so they
/// must not cross an `.await`).
fn options() -> Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_FILE_BYTES),
            max_events: 200_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
            max_nodes: 100_000,
            max_total_scalar_bytes: MAX_FILE_BYTES,
            max_merge_keys: 100,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 20_000,
            max_replay_stack_depth: 16,
            max_alias_expansions_per_anchor: 200,
        },
        duplicate_keys: DuplicateKeyPolicy::Error,
        strict_booleans: true,
    }
}

/// Parses every document of `text` (named `file` in messages).
///
/// Returns the documents that deserialized and the errors of the others: syntax and
/// budget errors end the file, a shape error (wrong type, unknown or missing field)
/// ends only its document. A file without any document is an error. Semantic rules
/// are not checked here (see [`super::validate_all`]).
pub fn parse_documents(text: &str, file: &str) -> (Vec<ParsedPolicy>, Vec<PolicyError>) {
    if text.len() > MAX_FILE_BYTES {
        let err = PolicyError::new(
            file,
            Pos::START,
            "",
            format!(
                "file is {} bytes, larger than the limit of {MAX_FILE_BYTES} bytes",
                text.len()
            ),
        );
        return (Vec::new(), vec![err]);
    }
    let index = index_documents(text);
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    let mut reader = Cursor::new(text.as_bytes());
    for item in serde_saphyr::read_with_options::<_, Spanned<ScalingPolicy>>(&mut reader, options())
    {
        match item {
            Ok(spanned) => {
                let pos = location_pos(spanned.referenced);
                let positions = doc_for(&index, pos).cloned().unwrap_or_default();
                policies.push(ParsedPolicy {
                    policy: spanned.value,
                    file: file.to_owned(),
                    line: positions.root.unwrap_or(pos).line,
                    positions,
                });
            }
            Err(err) => {
                let pos = err.location().map(location_pos).unwrap_or(Pos::START);
                let message = plain_message(&err);
                let mut path = doc_for(&index, pos)
                    .map(|d| d.path_at(pos))
                    .unwrap_or_default();
                // serde reports a missing field at the mapping's last key: blame the mapping.
                if message.starts_with("missing field") {
                    path = parent_path(&path).unwrap_or_default().to_owned();
                }
                errors.push(PolicyError::new(file, pos, &path, message));
            }
        }
    }
    if policies.is_empty() && errors.is_empty() {
        errors.push(PolicyError::new(
            file,
            Pos::START,
            "",
            "no ScalingPolicy document in file",
        ));
    }
    (policies, errors)
}

fn location_pos(loc: serde_saphyr::Location) -> Pos {
    Pos {
        line: usize::try_from(loc.line()).unwrap_or(usize::MAX).max(1),
        column: usize::try_from(loc.column()).unwrap_or(usize::MAX).max(1),
    }
}

/// The document whose root starts at or before `pos` (the last such one).
fn doc_for(index: &[DocPositions], pos: Pos) -> Option<&DocPositions> {
    index
        .iter()
        .rfind(|d| d.root.is_some_and(|r| r <= pos))
        .or_else(|| index.first())
}

/// serde-saphyr's message without snippet or the ` at line X, column Y` suffix (the
/// position is printed in front instead), on one line.
fn plain_message(err: &serde_saphyr::Error) -> String {
    let formatter = DefaultMessageFormatter;
    let mut opts = RenderOptions::new(&formatter);
    opts.snippets = SnippetMode::Off;
    let text = err.render_with_options(opts);
    let text = text.lines().next().unwrap_or_default();
    let text = match text.rfind(" at line ") {
        Some(i) if is_position_suffix(&text[i + " at line ".len()..]) => &text[..i],
        _ => text,
    };
    text.trim().to_owned()
}

/// Whether `s` is exactly `N, column M`.
fn is_position_suffix(s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    s.split_once(", column ")
        .is_some_and(|(line, col)| digits(line) && digits(col))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: web
spec:
  template:
    image: demo:latest
    containerPort: 8000
  ports: {range: 8001-8099}
  loadBalancer: {listen: 127.0.0.1:8080}
";

    fn errs(text: &str) -> Vec<String> {
        parse_documents(text, "t.yaml")
            .1
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_a_minimal_policy_with_defaults() {
        let (ok, errors) = parse_documents(GOOD, "t.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].line, 1);
        assert_eq!(ok[0].policy.spec.replicas.min, 1);
        assert_eq!(ok[0].policy.spec.behavior.tolerance, 0.1);
    }

    #[test]
    fn every_document_is_parsed_and_located() {
        let text = format!("{GOOD}---\n{GOOD}");
        let (ok, errors) = parse_documents(&text, "t.yaml");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(ok.iter().map(|p| p.line).collect::<Vec<_>>(), vec![1, 12]);
    }

    #[test]
    fn a_bad_document_does_not_hide_the_next_one() {
        let bad1 = GOOD.replace("containerPort: 8000", "containerPort: eighty");
        let bad2 = GOOD.replace("name: web", "name: web\n  colour: red");
        let text = format!("{bad1}---\n{GOOD}---\n{bad2}");
        let (ok, errors) = parse_documents(&text, "t.yaml");
        assert_eq!(ok.len(), 1);
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 2, "{lines:?}");
        assert!(
            lines[0].starts_with("t.yaml:8:20: spec.template.containerPort: "),
            "{lines:?}"
        );
        assert!(lines[1].contains("metadata.colour"), "{lines:?}");
        assert!(lines[1].starts_with("t.yaml:27:"), "{lines:?}");
    }

    #[test]
    fn shape_errors_name_file_line_column_and_path() {
        let cases = [
            (
                "replicas: {min: 1, max: 10}",
                "replicas: {min: one}",
                "spec.replicas.min",
            ),
            (
                "containerPort: 8000",
                "containerPort: 70000",
                "spec.template.containerPort",
            ),
            ("kind: ScalingPolicy", "kind: [a]", "kind"),
            (
                "  ports: {range: 8001-8099}",
                "  ports: {range: 8001-8099, hostIP: x}",
                "spec.ports",
            ),
        ];
        for (from, to, path) in cases {
            let text = if GOOD.contains(from) {
                GOOD.replace(from, to)
            } else {
                format!("{GOOD}  {to}\n")
            };
            let e = errs(&text);
            assert_eq!(e.len(), 1, "{to}: {e:?}");
            assert!(e[0].starts_with("t.yaml:"), "{e:?}");
            assert!(e[0].contains(&format!(": {path}")), "{to}: {e:?}");
        }
    }

    #[test]
    fn hostile_inputs_are_rejected_with_a_position() {
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n";
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let big = "#".repeat(MAX_FILE_BYTES + 1);
        for text in [
            bomb.to_owned(),
            deep,
            big,
            String::new(),
            "# only a comment\n".to_owned(),
            "a: [\n".to_owned(),
            "apiVersion: yes\n".to_owned(),
            "a: 1\na: 2\n".to_owned(),
        ] {
            let e = errs(&text);
            assert!(!e.is_empty(), "accepted {:?}", &text[..text.len().min(40)]);
            assert!(e[0].starts_with("t.yaml:"), "{e:?}");
        }
    }
}
