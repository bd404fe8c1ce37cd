//! Prometheus text exposition (format 0.0.4) and OpenMetrics 1.0 parser: pure, quote-aware, no I/O.
//!
//! The operator's metrics input. [`parse`] turns a scrape body into an [`Exposition`]: an
//! ordered list of metric [`Family`]s, each holding its [`Sample`]s. Lookups accept the
//! names a person writes in a policy whichever format the target speaks:
//! `http_requests_total` and `http_requests` find both a text 0.0.4 counter
//! (`# TYPE http_requests_total counter`) and an OpenMetrics one (`# TYPE http_requests
//! counter` with samples `http_requests_total`).
//!
//! # What is accepted
//! - `# HELP`, `# TYPE`, `# UNIT` and (OpenMetrics) `# EOF` lines; any other comment is
//!   ignored, as Prometheus does. A `TYPE` naming an unknown type gives [`MetricType::Unknown`].
//! - Label values with the escapes `\\`, `\"` and `\n`; any other backslash sequence is
//!   kept literally (Prometheus does the same). `}`, `,`, `#` and `=` inside quotes are data.
//! - Quoted UTF-8 metric names inside the braces (`{"my.metric", a="b"} 1`).
//! - Values as Go's `ParseFloat` reads them, including `NaN`, `+Inf`, `-Inf`.
//! - Timestamps: integer milliseconds in text 0.0.4, float seconds in OpenMetrics; both
//!   are stored as seconds.
//! - Exemplars (` # {labels} value [ts]` after a sample) are skipped.
//! - Blank lines, `\r\n` line ends, runs of spaces or tabs between tokens.

mod parse;
#[cfg(test)]
mod tests;

pub use parse::{parse, parse_with};

use std::collections::HashMap;

/// The wire format of an exposition, which decides the unit of timestamps and `# EOF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    Text004,
    /// OpenMetrics 1.0 (`application/openmetrics-text`), terminated by `# EOF`.
    OpenMetrics,
}

impl Format {
    /// The format a scrape response declares in its `Content-Type` header.
    ///
    /// Anything that is not `application/openmetrics-text` is read as text 0.0.4, as
    /// Prometheus does.
    pub fn from_content_type(content_type: &str) -> Format {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if media == "application/openmetrics-text" {
            Format::OpenMetrics
        } else {
            Format::Text004
        }
    }
}

/// The type a `# TYPE` line declares for a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A monotonic counter (`x_total` in OpenMetrics, any name in text 0.0.4).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative buckets plus `_count` and `_sum`.
    Histogram,
    /// OpenMetrics gauge histogram: buckets plus `_gcount` and `_gsum`.
    GaugeHistogram,
    /// Quantiles plus `_count` and `_sum`.
    Summary,
    /// OpenMetrics info metric (`x_info` samples).
    Info,
    /// OpenMetrics state set.
    StateSet,
    /// No `TYPE` line, `untyped`, `unknown`, or a type this parser does not know.
    Unknown,
}

impl MetricType {
    /// Reads the type token of a `# TYPE` line; unknown tokens give `Unknown`.
    fn from_token(token: &str) -> MetricType {
        match token {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    /// Suffixes that sample names of a family of this type may add to the family name.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_count", "_sum", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
            MetricType::Summary => &["_count", "_sum", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[],
        }
    }

    /// Whether a sample may carry the family name unchanged.
    fn allows_bare_name(self) -> bool {
        // Text 0.0.4 counters carry their family name (which usually ends in `_total`).
        !matches!(
            self,
            MetricType::Histogram | MetricType::GaugeHistogram | MetricType::Info
        )
    }

    /// The suffix of the samples that carry a family's headline value, if not bare.
    fn value_suffix(self) -> Option<&'static str> {
        match self {
            MetricType::Histogram | MetricType::GaugeHistogram => Some("_bucket"),
            MetricType::Info => Some("_info"),
            _ => None,
        }
    }
}

/// Every suffix any family type admits, longest first so `_gcount` wins over `_count`.
const ALL_SUFFIXES: &[&str] = &[
    "_created", "_bucket", "_gcount", "_total", "_count", "_gsum", "_info", "_sum",
];

/// One sample line: a name, its labels, a value and an optional timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample name as written (`http_requests_total`, `x_bucket`, ...).
    pub name: String,
    /// Label pairs in the order written, values unescaped; names are unique.
    pub labels: Vec<(String, String)>,
    /// The value; may be NaN or infinite.
    pub value: f64,
    /// Timestamp in seconds since the Unix epoch, when the line has one.
    pub timestamp: Option<f64>,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The label set as one canonical text, the identity of the series: pairs sorted by
    /// name, values escaped as in the exposition (`{code="200",path="/a"}`); `""` when
    /// the sample has no labels.
    pub fn canonical_labels(&self) -> String {
        if self.labels.is_empty() {
            return String::new();
        }
        let mut pairs: Vec<&(String, String)> = self.labels.iter().collect();
        pairs.sort();
        let mut out = String::from("{");
        for (i, (name, value)) in pairs.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(name);
            out.push_str("=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
        out
    }
}

/// A metric family: metadata plus every sample that belongs to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name (`# TYPE` name, or the sample name for undeclared samples).
    pub name: String,
    /// The declared type.
    pub kind: MetricType,
    /// The `# HELP` text, unescaped.
    pub help: Option<String>,
    /// The OpenMetrics `# UNIT`.
    pub unit: Option<String>,
    /// Samples in the order they appeared.
    pub samples: Vec<Sample>,
}

impl Family {
    /// Whether a sample named `sample_name` belongs to this family.
    fn accepts(&self, sample_name: &str) -> bool {
        match sample_name.strip_prefix(self.name.as_str()) {
            Some("") => self.kind.allows_bare_name(),
            Some(suffix) => self.kind.suffixes().contains(&suffix),
            None => false,
        }
    }

    /// The samples that carry the family's headline value (see [`Exposition::samples`]).
    fn value_samples(&self) -> impl Iterator<Item = &Sample> {
        let total = format!("{}_total", self.name);
        let wanted = match self.kind.value_suffix() {
            Some(suffix) => format!("{}{suffix}", self.name),
            None => self.name.clone(),
        };
        let is_counter = self.kind == MetricType::Counter;
        self.samples
            .iter()
            .filter(move |s| s.name == wanted || (is_counter && s.name == total))
    }
}

/// A parsed scrape: families in the order they first appeared.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposition {
    /// The format the text was read as.
    pub format: Format,
    /// Every family, in order of first appearance.
    pub families: Vec<Family>,
    /// Family name → index into `families`.
    index: HashMap<String, usize>,
}

impl Exposition {
    /// The family a person means by `name`.
    ///
    /// Tries, in order: a family of exactly that name; the name without a suffix its
    /// type admits (`x_total` → OpenMetrics counter `x`, `x_count` → histogram `x`); the
    /// name plus `_total` (text 0.0.4 counter `x_total` asked for as `x`).
    pub fn family(&self, name: &str) -> Option<&Family> {
        if let Some(&i) = self.index.get(name) {
            return Some(&self.families[i]);
        }
        for suffix in ALL_SUFFIXES {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(&i) = self.index.get(base)
                && self.families[i].kind.suffixes().contains(suffix)
            {
                return Some(&self.families[i]);
            }
        }
        self.index
            .get(&format!("{name}_total"))
            .map(|&i| &self.families[i])
    }

    /// The samples a person means by `name`, across all label sets.
    ///
    /// Samples whose name is exactly `name` when there are any; otherwise the headline
    /// samples of [`Exposition::family`]`(name)`: a counter's `_total` (or bare) samples,
    /// a histogram's `_bucket`s, a summary's quantiles, a gauge's values.
    pub fn samples(&self, name: &str) -> Vec<&Sample> {
        let exact: Vec<&Sample> = self
            .families
            .iter()
            .flat_map(|f| f.samples.iter())
            .filter(|s| s.name == name)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        self.family(name)
            .map(|f| f.value_samples().collect())
            .unwrap_or_default()
    }

    /// The sum of [`Exposition::samples`]`(name)` across label sets; `None` when there
    /// are no such samples. A NaN sample makes the sum NaN.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.sum_where(name, |_| true)
    }

    /// Every series of [`Exposition::samples`]`(name)`: its canonical label text (see
    /// [`Sample::canonical_labels`]) and value, sorted by label text; `None` when there are
    /// no such samples.
    ///
    /// Samples with the same label set (a duplicate line, or `x` next to `x_total`) are one
    /// series whose value is their sum, as [`Exposition::sum`] counts them. Values are
    /// returned as written, NaN and infinities included: judging them is the caller's job.
    pub fn series(&self, name: &str) -> Option<Vec<(String, f64)>> {
        let samples = self.samples(name);
        if samples.is_empty() {
            return None;
        }
        let mut series: std::collections::BTreeMap<String, f64> = Default::default();
        for sample in samples {
            *series.entry(sample.canonical_labels()).or_insert(0.0) += sample.value;
        }
        Some(series.into_iter().collect())
    }

    /// Like [`Exposition::sum`], over only the samples `keep` accepts; `None` when none is kept.
    pub fn sum_where(&self, name: &str, keep: impl Fn(&Sample) -> bool) -> Option<f64> {
        let mut total = None;
        for sample in self.samples(name).into_iter().filter(|s| keep(s)) {
            total = Some(total.unwrap_or(0.0) + sample.value);
        }
        total
    }
}

/// Why an exposition could not be parsed; every variant names the 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// A sample's metric name is missing or has a character names may not have.
    #[error("line {line}: invalid metric name: {detail}")]
    ParseMetricName {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The `{...}` label set is malformed (bad name, missing quote, duplicate label, ...).
    #[error("line {line}: invalid label set: {detail}")]
    ParseLabels {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The sample value is missing or not a float.
    #[error("line {line}: invalid sample value {text:?}")]
    ParseValue {
        /// 1-based line number.
        line: usize,
        /// The offending token (empty when missing).
        text: String,
    },
    /// The timestamp is not a number of the format's unit.
    #[error("line {line}: invalid timestamp {text:?} (expected {expected})")]
    ParseTimestamp {
        /// 1-based line number.
        line: usize,
        /// The offending token.
        text: String,
        /// What the format expects.
        expected: &'static str,
    },
    /// Text follows the value and timestamp that is not an exemplar.
    #[error("line {line}: unexpected text after the sample: {text:?}")]
    ParseTrailingText {
        /// 1-based line number.
        line: usize,
        /// The unexpected text.
        text: String,
    },
    /// A `# HELP`, `# TYPE` or `# UNIT` line lacks its metric name or type.
    #[error("line {line}: invalid # {keyword} line: {detail}")]
    ParseMetadata {
        /// 1-based line number.
        line: usize,
        /// `HELP`, `TYPE` or `UNIT`.
        keyword: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An OpenMetrics exposition has content after `# EOF`.
    #[error("line {line}: content after # EOF")]
    ParseAfterEof {
        /// 1-based line number.
        line: usize,
    },
}

impl ParseError {
    /// The 1-based line the error is on.
    pub fn line(&self) -> usize {
        match self {
            ParseError::ParseMetricName { line, .. }
            | ParseError::ParseLabels { line, .. }
            | ParseError::ParseValue { line, .. }
            | ParseError::ParseTimestamp { line, .. }
            | ParseError::ParseTrailingText { line, .. }
            | ParseError::ParseMetadata { line, .. }
            | ParseError::ParseAfterEof { line } => *line,
        }
    }
}
