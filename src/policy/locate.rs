//! Field path → source position index, built from the YAML parser's events.
//!
//! serde reports where a shape error is, but semantic rules run on plain values; to
//! point at `spec.replicas.max` on line 14 this module walks the parser events of the
//! same text once and records where every key and value starts. Aliases are recorded
//! where they appear and never expanded, so an alias bomb costs nothing here.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Pos {
    /// The first character of a file.
    pub const START: Pos = Pos { line: 1, column: 1 };
}

/// One recorded node: its dotted path and where its key and its value start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    path: String,
    key: Option<Pos>,
    value: Pos,
    /// The value is a single- or double-quoted scalar (a string, never a number).
    quoted: bool,
}

/// Positions of every field of one YAML document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocPositions {
    /// Where the document's root node starts.
    pub root: Option<Pos>,
    entries: Vec<Entry>,
}

impl DocPositions {
    /// Where the value at `path` starts, or the nearest recorded ancestor's value.
    pub fn value_pos(&self, path: &str) -> Pos {
        let mut probe = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == probe) {
                return e.value;
            }
            match parent_path(probe) {
                Some(parent) => probe = parent,
                None => return self.root.unwrap_or(Pos::START),
            }
        }
    }

    /// Every value written as a quoted scalar (`max: "10"`): its path and position.
    pub fn quoted_values(&self) -> impl Iterator<Item = (&str, Pos)> {
        self.entries
            .iter()
            .filter(|e| e.quoted)
            .map(|e| (e.path.as_str(), e.value))
    }

    /// Whether `path` itself (not an ancestor) appears in the source.
    pub fn contains(&self, path: &str) -> bool {
        self.entries.iter().any(|e| e.path == path)
    }

    /// The path of the key or value starting exactly at `pos`, else of the last node
    /// that starts before it (the nearest enclosing or preceding field).
    pub fn path_at(&self, pos: Pos) -> String {
        let mut best: Option<(Pos, &str)> = None;
        for e in &self.entries {
            for start in [e.key, Some(e.value)].into_iter().flatten() {
                if start <= pos && best.is_none_or(|(b, _)| start >= b) {
                    best = Some((start, &e.path));
                }
            }
        }
        best.map(|(_, p)| p.to_owned()).unwrap_or_default()
    }
}

/// The parent of a dotted/indexed path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → ``.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Appends a mapping key to a path, quoting keys that are not plain identifiers.
pub fn join_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if plain {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<(String, Pos)>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// A complex (non-scalar) mapping key: its contents are not indexed.
    Skip {
        depth: usize,
    },
}

/// Most events indexed per text; parsing stops there (the deserializer's own budget
/// reports the real error).
const MAX_EVENTS: usize = 2_000_000;

/// Indexes every document of `text`. Stops silently at a syntax error: the
/// deserializer reports it; the partial index still locates what came before.
pub fn index_documents(text: &str) -> Vec<DocPositions> {
    let mut docs: Vec<DocPositions> = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    for (count, item) in Parser::new_from_str(text).enumerate() {
        if count >= MAX_EVENTS {
            break;
        }
        let Ok((event, span)) = item else { break };
        let pos = Pos {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(..) => {
                docs.push(DocPositions::default());
                stack.clear();
            }
            Event::Scalar(value, style, ..) => {
                let quoted = matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted);
                if let Some(doc) = docs.last_mut() {
                    on_node(doc, &mut stack, pos, Some(&value), false, quoted);
                }
            }
            Event::Alias(_) => {
                if let Some(doc) = docs.last_mut() {
                    on_node(doc, &mut stack, pos, None, false, false);
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                if let Some(doc) = docs.last_mut()
                    && let Some(path) = on_node(doc, &mut stack, pos, None, true, false)
                {
                    stack.push(if is_map {
                        Frame::Map {
                            path,
                            pending_key: None,
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.last_mut() {
                Some(Frame::Skip { depth }) if *depth > 1 => *depth -= 1,
                _ => {
                    stack.pop();
                }
            },
            _ => {}
        }
    }
    docs
}

/// Records a node; for a collection returns the path its children hang under (or
/// `None` when it opened inside a skipped complex key).
fn on_node(
    doc: &mut DocPositions,
    stack: &mut Vec<Frame>,
    pos: Pos,
    scalar: Option<&str>,
    collection: bool,
    quoted: bool,
) -> Option<String> {
    let Some(top) = stack.last_mut() else {
        doc.root = Some(pos);
        doc.entries.push(Entry {
            path: String::new(),
            key: None,
            value: pos,
            quoted,
        });
        return Some(String::new());
    };
    match top {
        Frame::Skip { depth } => {
            if collection {
                *depth += 1;
            }
            None
        }
        Frame::Seq { path, next } => {
            let child = format!("{path}[{next}]");
            *next += 1;
            doc.entries.push(Entry {
                path: child.clone(),
                key: None,
                value: pos,
                quoted,
            });
            Some(child)
        }
        Frame::Map { path, pending_key } => match pending_key.take() {
            Some((key, key_pos)) => {
                let child = join_key(path, &key);
                doc.entries.push(Entry {
                    path: child.clone(),
                    key: Some(key_pos),
                    value: pos,
                    quoted,
                });
                Some(child)
            }
            None => match scalar {
                Some(key) => {
                    *pending_key = Some((key.to_owned(), pos));
                    None
                }
                None => {
                    // A complex or aliased key: remember a placeholder so the value
                    // still pairs up, and do not index inside the key.
                    *pending_key = Some(("?".to_owned(), pos));
                    if collection {
                        stack.push(Frame::Skip { depth: 1 });
                    }
                    None
                }
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
a: 1
spec:
  replicas: {min: 1, max: 10}
  list:
    - x
    - y: 2
---
b: [1, 2]
";

    #[test]
    fn records_value_positions_of_nested_fields() {
        let docs = index_documents(DOC);
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!(d.value_pos("a"), Pos { line: 1, column: 4 });
        assert_eq!(
            d.value_pos("spec.replicas.max"),
            Pos {
                line: 3,
                column: 27
            }
        );
        assert_eq!(
            d.value_pos("spec.list[1].y"),
            Pos {
                line: 6,
                column: 10
            }
        );
        assert_eq!(docs[1].value_pos("b[1]"), Pos { line: 8, column: 8 });
    }

    #[test]
    fn missing_path_falls_back_to_nearest_ancestor() {
        let docs = index_documents(DOC);
        assert_eq!(
            docs[0].value_pos("spec.replicas.nope.deeper"),
            docs[0].value_pos("spec.replicas")
        );
        assert!(!docs[0].contains("spec.replicas.nope"));
    }

    #[test]
    fn path_at_finds_key_and_preceding_node() {
        let docs = index_documents(DOC);
        assert_eq!(docs[0].path_at(Pos { line: 3, column: 3 }), "spec.replicas");
        assert_eq!(
            docs[0].path_at(Pos { line: 6, column: 9 }),
            "spec.list[1].y"
        );
    }

    #[test]
    fn parent_of_paths() {
        for (path, parent) in [
            ("a.b[2]", Some("a.b")),
            ("a.b", Some("a")),
            ("a", Some("")),
            ("", None),
        ] {
            assert_eq!(parent_path(path), parent, "{path}");
        }
    }

    #[test]
    fn syntax_error_keeps_partial_index() {
        let docs = index_documents("a: 1\nb: [\n");
        assert_eq!(docs.len(), 1);
        assert!(docs[0].contains("a"));
    }
}
