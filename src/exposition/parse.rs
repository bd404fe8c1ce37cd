//! The line parser behind [`super::parse`]: metadata lines, sample lines, family grouping.

use std::collections::HashMap;

use super::{Exposition, Family, Format, MetricType, ParseError, Sample};

/// Parses a scrape body, reading it as OpenMetrics when it has a `# EOF` line and as
/// text 0.0.4 otherwise.
///
/// # Errors
/// A [`ParseError`] naming the first line that cannot be read.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let format = if text.lines().any(|l| l.trim() == "# EOF") {
        Format::OpenMetrics
    } else {
        Format::Text004
    };
    parse_with(text, format)
}

/// Parses a scrape body in a known format (e.g. from [`Format::from_content_type`]).
///
/// # Errors
/// A [`ParseError`] naming the first line that cannot be read.
pub fn parse_with(text: &str, format: Format) -> Result<Exposition, ParseError> {
    let mut builder = Builder::default();
    let mut seen_eof = false;
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let line = raw.trim_matches(is_blank);
        if seen_eof {
            if line.is_empty() {
                continue;
            }
            return Err(ParseError::ParseAfterEof { line: line_no });
        }
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            match parse_comment(comment, line_no)? {
                Comment::Help(name, help) => builder.meta(name).help = Some(help),
                Comment::Type(name, kind) => builder.meta(name).kind = kind,
                Comment::Unit(name, unit) => builder.meta(name).unit = Some(unit),
                Comment::Eof => seen_eof = format == Format::OpenMetrics,
                Comment::Other => {}
            }
            continue;
        }
        builder.push(parse_sample(line, line_no, format)?);
    }
    Ok(Exposition {
        format,
        families: builder.families,
        index: builder.index,
    })
}

/// Space or tab: the only token separators of both formats (plus a stray `\r`).
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r'
}

/// Groups samples into families as they stream in.
#[derive(Default)]
struct Builder {
    families: Vec<Family>,
    index: HashMap<String, usize>,
    /// The family of the last metadata or sample line; samples usually follow it.
    current: Option<usize>,
}

impl Builder {
    /// The family a metadata line names, created if new; it becomes the current one.
    fn meta(&mut self, name: String) -> &mut Family {
        let idx = match self.index.get(&name) {
            Some(&i) => i,
            None => self.create(name),
        };
        self.current = Some(idx);
        &mut self.families[idx]
    }

    fn create(&mut self, name: String) -> usize {
        let idx = self.families.len();
        self.index.insert(name.clone(), idx);
        self.families.push(Family {
            name,
            kind: MetricType::Unknown,
            help: None,
            unit: None,
            samples: Vec::new(),
        });
        idx
    }

    /// Adds a sample to the current family, a declared family that admits its name, or
    /// a new untyped family named after it.
    fn push(&mut self, sample: Sample) {
        let idx = self
            .current
            .filter(|&i| self.families[i].accepts(&sample.name))
            .or_else(|| self.declared_family_of(&sample.name))
            .unwrap_or_else(|| self.create(sample.name.clone()));
        self.current = Some(idx);
        self.families[idx].samples.push(sample);
    }

    fn declared_family_of(&self, sample_name: &str) -> Option<usize> {
        let candidates = std::iter::once(sample_name).chain(
            super::ALL_SUFFIXES
                .iter()
                .filter_map(|s| sample_name.strip_suffix(s)),
        );
        candidates
            .filter_map(|base| self.index.get(base).copied())
            .find(|&i| self.families[i].accepts(sample_name))
    }
}

/// What a `#` line says.
enum Comment {
    Help(String, String),
    Type(String, MetricType),
    Unit(String, String),
    Eof,
    Other,
}

/// Reads the text after a line's `#`.
fn parse_comment(comment: &str, line: usize) -> Result<Comment, ParseError> {
    if !comment.starts_with(is_blank) {
        return Ok(Comment::Other);
    }
    let comment = comment.trim_start_matches(is_blank);
    let (keyword, rest) = split_token(comment);
    let keyword: &'static str = match keyword {
        "HELP" => "HELP",
        "TYPE" => "TYPE",
        "UNIT" => "UNIT",
        "EOF" if rest.is_empty() => return Ok(Comment::Eof),
        _ => return Ok(Comment::Other),
    };
    let meta_err = |detail: &str| ParseError::ParseMetadata {
        line,
        keyword,
        detail: detail.to_string(),
    };
    let (name, rest) = if rest.starts_with('"') {
        let mut cursor = Cursor::new(rest);
        cursor.bump();
        let name = cursor
            .quoted()
            .map_err(|_| meta_err("unterminated quoted metric name"))?;
        (name, &rest[cursor.pos..])
    } else {
        let (name, rest) = split_token(rest);
        if !is_metric_name(name) {
            return Err(meta_err(&format!("invalid metric name {name:?}")));
        }
        (name.to_string(), rest)
    };
    // One blank separates the name from the text; the text itself may start with blanks.
    let text = rest.strip_prefix(is_blank).unwrap_or(rest);
    match keyword {
        "HELP" => Ok(Comment::Help(name, unescape(text))),
        "TYPE" => {
            let (kind, extra) = split_token(text.trim_start_matches(is_blank));
            if kind.is_empty() || !extra.is_empty() {
                return Err(meta_err("expected `# TYPE <name> <type>`"));
            }
            Ok(Comment::Type(name, MetricType::from_token(kind)))
        }
        _ => Ok(Comment::Unit(name, text.trim_matches(is_blank).to_string())),
    }
}

/// Splits off the first blank-separated token; the rest has its leading blanks removed.
fn split_token(s: &str) -> (&str, &str) {
    match s.find(is_blank) {
        Some(i) => (&s[..i], s[i..].trim_start_matches(is_blank)),
        None => (s, ""),
    }
}

/// Reads one sample line: `name{labels} value [timestamp] [# exemplar]`.
fn parse_sample(line: &str, line_no: usize, format: Format) -> Result<Sample, ParseError> {
    let mut cursor = Cursor::new(line);
    let mut name = None;
    if cursor.peek() != Some(b'{') {
        let start = cursor.pos;
        while cursor.peek().is_some_and(is_name_byte) {
            cursor.bump();
        }
        let token = &line[start..cursor.pos];
        let next_ok = matches!(cursor.peek(), None | Some(b'{' | b' ' | b'\t'));
        if !is_metric_name(token) || !next_ok {
            let end = line[start..]
                .find([' ', '\t', '{'])
                .map_or(line.len(), |i| start + i);
            return Err(ParseError::ParseMetricName {
                line: line_no,
                detail: format!("{:?}", &line[start..end]),
            });
        }
        name = Some(token.to_string());
        cursor.skip_blanks();
    }
    let mut labels = Vec::new();
    if cursor.peek() == Some(b'{') {
        cursor.bump();
        parse_labels(&mut cursor, &mut name, &mut labels).map_err(|detail| {
            ParseError::ParseLabels {
                line: line_no,
                detail,
            }
        })?;
    }
    let name = name.ok_or_else(|| ParseError::ParseMetricName {
        line: line_no,
        detail: "missing".to_string(),
    })?;

    let mut tokens = line[cursor.pos..]
        .split([' ', '\t'])
        .filter(|t| !t.is_empty());
    let value_text = tokens.next().unwrap_or_default();
    let value = parse_float(value_text).ok_or_else(|| ParseError::ParseValue {
        line: line_no,
        text: value_text.to_string(),
    })?;
    let mut timestamp = None;
    if let Some(token) = tokens.next().filter(|t| *t != "#") {
        timestamp =
            Some(
                parse_timestamp(token, format).ok_or_else(|| ParseError::ParseTimestamp {
                    line: line_no,
                    text: token.to_string(),
                    expected: match format {
                        Format::Text004 => "integer milliseconds",
                        Format::OpenMetrics => "float seconds",
                    },
                })?,
            );
        if let Some(extra) = tokens.next().filter(|t| *t != "#") {
            return Err(ParseError::ParseTrailingText {
                line: line_no,
                text: extra.to_string(),
            });
        }
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Reads labels after `{` up to and including `}`; a leading quoted string with no `=`
/// is the metric name (Prometheus 3 UTF-8 names).
fn parse_labels(
    cursor: &mut Cursor<'_>,
    name: &mut Option<String>,
    labels: &mut Vec<(String, String)>,
) -> Result<(), String> {
    loop {
        cursor.skip_blanks();
        let key = match cursor.peek() {
            Some(b'}') => {
                cursor.bump();
                return Ok(());
            }
            Some(b'"') => {
                cursor.bump();
                cursor.quoted()?
            }
            Some(b) if is_label_start(b) => {
                let start = cursor.pos;
                while cursor.peek().is_some_and(is_label_byte) {
                    cursor.bump();
                }
                cursor.text[start..cursor.pos].to_string()
            }
            Some(_) => return Err(format!("unexpected character at column {}", cursor.pos + 1)),
            None => return Err("missing `}`".to_string()),
        };
        cursor.skip_blanks();
        if cursor.peek() == Some(b'=') {
            cursor.bump();
            cursor.skip_blanks();
            if cursor.peek() != Some(b'"') {
                return Err(format!("value of label {key:?} is not quoted"));
            }
            cursor.bump();
            let value = cursor.quoted()?;
            if labels.iter().any(|(k, _)| *k == key) {
                return Err(format!("duplicate label {key:?}"));
            }
            labels.push((key, value));
        } else if name.is_none() && labels.is_empty() && !key.is_empty() {
            *name = Some(key);
        } else {
            return Err(format!("label {key:?} has no `=`"));
        }
        cursor.skip_blanks();
        match cursor.peek() {
            Some(b',') => cursor.bump(),
            Some(b'}') => {}
            Some(_) => return Err(format!("expected `,` or `}}` at column {}", cursor.pos + 1)),
            None => return Err("missing `}`".to_string()),
        }
    }
}

/// A byte position in one line; only ASCII bytes are ever inspected, so slicing at the
/// positions it stops on is always on a UTF-8 boundary.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.bump();
        }
    }

    /// Reads a quoted string whose opening `"` was consumed, through the closing `"`.
    fn quoted(&mut self) -> Result<String, String> {
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        let mut chunk = self.pos;
        while let Some(&b) = bytes.get(self.pos) {
            match b {
                b'"' => {
                    out.push_str(&self.text[chunk..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.text[chunk..self.pos]);
                    match bytes.get(self.pos + 1) {
                        Some(b'\\') => out.push('\\'),
                        Some(b'"') => out.push('"'),
                        Some(b'n') => out.push('\n'),
                        // Unknown escapes stay as written; the next char is copied with
                        // the following chunk.
                        Some(_) => {
                            out.push('\\');
                            self.pos += 1;
                            chunk = self.pos;
                            continue;
                        }
                        None => break,
                    }
                    self.pos += 2;
                    chunk = self.pos;
                }
                _ => self.pos += 1,
            }
        }
        Err("unterminated quoted string".to_string())
    }
}

/// Undoes HELP escapes (`\\`, `\n`, and `\"` too since OpenMetrics has it).
fn unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') => out.push('"'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Reads a value the way Go's `strconv.ParseFloat` does for the forms exporters emit.
fn parse_float(token: &str) -> Option<f64> {
    if token.is_empty() || token.contains('_') {
        return None;
    }
    token.parse::<f64>().ok()
}

/// Reads a timestamp and converts it to seconds.
fn parse_timestamp(token: &str, format: Format) -> Option<f64> {
    match format {
        Format::Text004 => token.parse::<i64>().ok().map(|ms| ms as f64 / 1000.0),
        Format::OpenMetrics => parse_float(token).filter(|t| t.is_finite()),
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(is_name_byte)
}
