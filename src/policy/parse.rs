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
    let mut numeric = NumericFields::default();
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    let mut reader = Cursor::new(text.as_bytes());
    for item in serde_saphyr::read_with_options::<_, Spanned<ScalingPolicy>>(&mut reader, options())
    {
        match item {
            Ok(spanned) => {
                let pos = location_pos(spanned.referenced);
                let positions = doc_for(&index, pos).cloned().unwrap_or_default();
                let quoted = quoted_numbers(&positions, file, &mut numeric);
                if !quoted.is_empty() {
                    errors.extend(quoted);
                    continue;
                }
                policies.push(ParsedPolicy {
                    policy: spanned.value,
                    file: file.to_owned(),
                    line: positions.root.unwrap_or(pos).line,
                    positions,
                });
            }
            Err(err) => {
                let pos = err.location().map(location_pos).unwrap_or(Pos::START);
                let message = in_words(&plain_message(&err));
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

/// Which field paths hold numbers, read from the resource's own JSON Schema (built once
/// per file, only when a quoted value needs checking).
#[derive(Default)]
struct NumericFields {
    schema: Option<serde_json::Value>,
}

impl NumericFields {
    fn is_numeric(&mut self, path: &str) -> bool {
        let schema = self.schema.get_or_insert_with(|| {
            serde_json::from_str(&super::schema_json()).unwrap_or(serde_json::Value::Null)
        });
        let mut nodes = vec![schema as &serde_json::Value];
        for segment in path_segments(path) {
            nodes = nodes
                .into_iter()
                .flat_map(|n| alternatives(schema, n))
                .filter_map(|n| match segment {
                    Segment::Key(k) => n.get("properties").and_then(|p| p.get(k)),
                    Segment::Index => n.get("items"),
                })
                .collect();
            if nodes.is_empty() {
                return false;
            }
        }
        nodes
            .into_iter()
            .flat_map(|n| alternatives(schema, n))
            .any(|n| has_type(n, "integer") || has_type(n, "number"))
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index,
}

/// `spec.metrics[0].requestRate` → `spec`, `metrics`, `[]`, `requestRate`.
fn path_segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        out.extend(
            rest.split('[')
                .filter(|r| !r.is_empty())
                .map(|_| Segment::Index),
        );
    }
    out
}

/// A schema node and what it stands for: `$ref` targets and `anyOf`/`oneOf`/`allOf` arms.
fn alternatives<'a>(
    root: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    let mut out = Vec::new();
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        if out.len() > 64 {
            break;
        }
        out.push(n);
        if let Some(target) = n
            .get("$ref")
            .and_then(|r| r.as_str())
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        {
            todo.push(target);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(arms) = n.get(key).and_then(|a| a.as_array()) {
                todo.extend(arms);
            }
        }
    }
    out
}

fn has_type(node: &serde_json::Value, ty: &str) -> bool {
    match node.get("type") {
        Some(serde_json::Value::String(t)) => t == ty,
        Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == ty),
        _ => false,
    }
}

/// A quoted value where the resource wants a number (`max: "10"`) is refused: serde
/// would read it as 10, but a quoted scalar is a string in YAML, and a policy that
/// type-checks only because of leniency breaks under stricter tools (kubectl, schemas).
fn quoted_numbers(
    positions: &DocPositions,
    file: &str,
    numeric: &mut NumericFields,
) -> Vec<PolicyError> {
    positions
        .quoted_values()
        .filter(|(path, _)| !path.is_empty() && numeric.is_numeric(path))
        .map(|(path, pos)| {
            PolicyError::new(
                file,
                pos,
                path,
                "expected a number, found a quoted string; remove the quotes",
            )
        })
        .collect()
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

/// serde-saphyr's terse messages said the way a person would; others pass unchanged.
pub fn in_words(message: &str) -> String {
    let whole = |bits: &str| match bits {
        "u8" => Some("0 to 255"),
        "u16" => Some("0 to 65535"),
        "u32" => Some("0 to 4294967295"),
        "u64" | "usize" => Some("0 to 18446744073709551615"),
        _ => None,
    };
    if let Some(rest) = message.strip_prefix("invalid ") {
        let ty = rest.split_whitespace().next().unwrap_or_default();
        if let Some(range) = whole(ty) {
            return format!("expected a whole number from {range}");
        }
        if matches!(ty, "i8" | "i16" | "i32" | "i64") {
            return "expected a whole number".to_owned();
        }
        if matches!(ty, "f32" | "f64") {
            return "expected a number".to_owned();
        }
    }
    if message.contains("tabs disallowed") {
        return "tabs cannot indent YAML; use spaces".to_owned();
    }
    if message == "expected mapping start" || message.starts_with("expected mapping start") {
        return "expected a mapping of `key: value` fields here".to_owned();
    }
    message.to_owned()
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
    fn a_quoted_number_is_refused_where_the_resource_wants_a_number() {
        for (from, to, path) in [
            (
                "containerPort: 8000",
                "containerPort: \"8000\"",
                "spec.template.containerPort",
            ),
            (
                "  ports: {range: 8001-8099}",
                "  ports: {range: 8001-8099}\n  replicas: {max: '10'}",
                "spec.replicas.max",
            ),
        ] {
            let e = errs(&GOOD.replace(from, to));
            assert_eq!(e.len(), 1, "{to}: {e:?}");
            assert!(
                e[0].contains(&format!(": {path}: expected a number")),
                "{e:?}"
            );
        }
        // Strings stay strings: a quoted image, env value or listen address is fine.
        let ok = GOOD
            .replace(
                "image: demo:latest",
                "image: \"demo:latest\"\n    env: {max: \"10\"}",
            )
            .replace("listen: 127.0.0.1:8080", "listen: \"127.0.0.1:8080\"");
        assert!(errs(&ok).is_empty(), "{:?}", errs(&ok));
    }

    #[test]
    fn terse_parser_messages_are_said_in_words() {
        for (terse, words) in [
            (
                "invalid u32",
                "expected a whole number from 0 to 4294967295",
            ),
            ("invalid u16", "expected a whole number from 0 to 65535"),
            ("invalid f64", "expected a number"),
            (
                "tabs disallowed within this context (block indentation uses spaces only)",
                "tabs cannot indent YAML; use spaces",
            ),
            (
                "expected mapping start",
                "expected a mapping of `key: value` fields here",
            ),
            ("unknown field `colour`", "unknown field `colour`"),
        ] {
            assert_eq!(in_words(terse), words, "{terse}");
        }
        let e = errs(&GOOD.replace("containerPort: 8000", "containerPort: 70000"));
        assert!(
            e[0].ends_with("expected a whole number from 0 to 65535"),
            "{e:?}"
        );
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
