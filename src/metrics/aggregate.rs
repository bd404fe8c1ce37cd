//! Metric aggregation, pure: how the counter series scraped from several replicas become one reading.
//!
//! The rules follow Prometheus' `rate()` over the last two samples of each series:
//!
//! - a rate is taken **per series** (label set), each with its own counter-reset handling
//!   (a value lower than the previous one counts whole, as the increase since the reset);
//! - a replica's rate is the sum of its series' rates;
//! - a series that **vanished** since the previous pass contributes nothing (it is not a
//!   reset of the others: label churn never reads as a burst);
//! - a **new** series is a baseline: it contributes from its second sample on;
//! - a replica none of whose current series has a usable previous sample has no rate
//!   (`None`, missing data), as does one with a NaN, infinite or negative value, or whose
//!   rates sum to infinity; the last three also give a warning, and a non-finite value is
//!   never returned as a sample to store;
//! - a replica that does not expose the counter at all counts as 0 once it has been seen
//!   before (lazily created label sets), unless no scraped replica exposes it: then the
//!   name is probably wrong and the reading is unavailable. It is also unavailable when
//!   every scrape failed. Unscraped (unready) replicas are missing data.
//!
//! Samples are keyed by [`sample_key`]; the caller stores them and hands them back as
//! `previous` on the next pass.

use std::collections::BTreeMap;

use crate::scaling::MetricReading;
use crate::state::CounterSample;

/// One series of a counter family as scraped: its label set and value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValue {
    /// Canonical label text, pairs sorted by name (`{code="200",path="/a"}`); `""` for none.
    pub labels: String,
    /// The value as exposed; may be NaN or infinite (judged by [`request_rate`]).
    pub value: f64,
}

/// What one pass got from one replica for one counter.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplicaScrape {
    /// Not scraped (the replica is not ready yet): missing data.
    Skipped,
    /// The family's series.
    Series(Vec<SeriesValue>),
    /// The exposition was read but has no sample of the family.
    MissingFamily,
    /// The scrape failed (connect, timeout, status, size, parse); the error in words.
    Failed(String),
}

/// One replica's scrape, as [`request_rate`] reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaInput<'a> {
    /// The container id; the first word of the replica's [`sample_key`]s.
    pub replica_id: &'a str,
    /// What the scrape gave.
    pub scrape: ReplicaScrape,
}

/// The result of [`request_rate`].
#[derive(Debug, Clone, PartialEq)]
pub struct RateOutcome {
    /// One entry per input replica, in order, or why there is no reading.
    pub reading: MetricReading,
    /// The samples of this pass to store for the next one (finite values only).
    pub samples: Vec<(String, CounterSample)>,
    /// Data problems worth an event, in words (non-finite or negative values, overflow).
    /// Failed scrapes are not repeated here: they are in the inputs.
    pub warnings: Vec<String>,
}

/// Per-second rate between two samples of a counter; `None` without a usable interval.
///
/// A counter that went down was reset (replica restarted): as Prometheus does, the new
/// value counts as the increase since the reset. No rate when the interval is empty or
/// negative (the clock went back), when either value is not a finite non-negative
/// number, or when the result is not finite.
pub fn rate(previous: Option<CounterSample>, current: CounterSample) -> Option<f64> {
    let r = raw_rate(previous?, current)?;
    r.is_finite().then_some(r)
}

/// [`rate`] without the final finiteness check (an overflow must be told from no data).
fn raw_rate(previous: CounterSample, current: CounterSample) -> Option<f64> {
    let usable = |v: f64| v.is_finite() && v >= 0.0;
    if current.at_ms <= previous.at_ms || !usable(current.value) || !usable(previous.value) {
        return None;
    }
    let seconds = (current.at_ms - previous.at_ms) as f64 / 1000.0;
    let increase = if current.value >= previous.value {
        current.value - previous.value
    } else {
        current.value
    };
    Some(increase / seconds)
}

/// The request rate of every replica of one `RequestRate` metric, and the samples to keep.
///
/// `previous` holds the samples stored by earlier passes (keys of [`sample_key`]); `now_ms`
/// is the time of this pass's scrapes. See the module documentation for the rules.
pub fn request_rate(
    path: &str,
    counter: &str,
    replicas: &[ReplicaInput],
    previous: &BTreeMap<String, CounterSample>,
    now_ms: u64,
) -> RateOutcome {
    let mut out = RateOutcome {
        reading: MetricReading::PerReplica(Vec::new()),
        samples: Vec::new(),
        warnings: Vec::new(),
    };
    let mut values = Vec::with_capacity(replicas.len());
    let mut attempted = 0;
    let mut without_family = 0;
    let mut failures: Vec<&str> = Vec::new();
    for replica in replicas {
        let id = replica.replica_id;
        let value = match &replica.scrape {
            ReplicaScrape::Skipped => None,
            ReplicaScrape::Failed(message) => {
                attempted += 1;
                failures.push(message);
                None
            }
            ReplicaScrape::MissingFamily => {
                attempted += 1;
                without_family += 1;
                missing_family_rate(id, path, counter, previous, now_ms, &mut out.samples)
            }
            ReplicaScrape::Series(series) if series.is_empty() => {
                attempted += 1;
                without_family += 1;
                missing_family_rate(id, path, counter, previous, now_ms, &mut out.samples)
            }
            ReplicaScrape::Series(series) => {
                attempted += 1;
                let key = SeriesKey { id, path, counter };
                replica_rate(&key, series, previous, now_ms, &mut out)
            }
        };
        values.push(value);
    }
    out.reading = if attempted > 0 && without_family == attempted {
        MetricReading::Unavailable(format!("no replica exposes the counter {counter}"))
    } else if attempted > 0 && failures.len() == attempted {
        MetricReading::Unavailable(format!("every scrape failed, e.g. {}", failures[0]))
    } else {
        MetricReading::PerReplica(values)
    };
    out
}

/// Which replica, path and counter a series belongs to.
struct SeriesKey<'a> {
    id: &'a str,
    path: &'a str,
    counter: &'a str,
}

/// The rate of a replica exposing no series: 0 when it was seen before, else missing.
///
/// Stores a 0 sample under the unlabeled key, so that the next pass knows the replica and
/// a lazily created unlabeled counter counts from 0.
fn missing_family_rate(
    id: &str,
    path: &str,
    counter: &str,
    previous: &BTreeMap<String, CounterSample>,
    now_ms: u64,
    samples: &mut Vec<(String, CounterSample)>,
) -> Option<f64> {
    samples.push((
        sample_key(id, path, counter, ""),
        CounterSample {
            at_ms: now_ms,
            value: 0.0,
        },
    ));
    let prefix = sample_key(id, path, counter, "");
    let seen_before = previous.iter().any(|(key, sample)| {
        let same = key == &prefix
            || key
                .strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.starts_with(' '));
        same && sample.at_ms < now_ms
    });
    seen_before.then_some(0.0)
}

/// The sum of the per-series rates of one replica; records its samples and warnings.
fn replica_rate(
    key: &SeriesKey,
    series: &[SeriesValue],
    previous: &BTreeMap<String, CounterSample>,
    now_ms: u64,
    out: &mut RateOutcome,
) -> Option<f64> {
    let SeriesKey { id, path, counter } = *key;
    let mut invalid = false;
    let mut rated = false;
    let mut total = 0.0;
    for s in series {
        if !s.value.is_finite() || s.value < 0.0 {
            invalid = true;
            let what = if s.value.is_finite() {
                "negative"
            } else {
                "not a finite number"
            };
            out.warnings.push(format!(
                "replica {id}: {counter}{} at {path} is {} ({what}); its rate is missing data",
                s.labels, s.value
            ));
            continue;
        }
        let sample_key = sample_key(id, path, counter, &s.labels);
        let current = CounterSample {
            at_ms: now_ms,
            value: s.value,
        };
        if let Some(r) = previous
            .get(&sample_key)
            .and_then(|p| raw_rate(*p, current))
        {
            total += r;
            rated = true;
        }
        out.samples.push((sample_key, current));
    }
    if invalid || !rated {
        return None;
    }
    if !total.is_finite() {
        out.warnings.push(format!(
            "replica {id}: the rate of {counter} at {path} overflows ({total}); \
             its rate is missing data"
        ));
        return None;
    }
    Some(total)
}

/// Samples of a replica that just became ready, so that the next pass has a rate for it
/// (otherwise its first pass counts it as missing data).
///
/// Finite, non-negative series only; a missing family gives the 0 sample that
/// [`request_rate`] would store; a skipped or failed scrape gives nothing.
pub fn baseline_samples(
    replica_id: &str,
    path: &str,
    counter: &str,
    scrape: &ReplicaScrape,
    now_ms: u64,
) -> Vec<(String, CounterSample)> {
    let sample = |labels: &str, value: f64| {
        (
            sample_key(replica_id, path, counter, labels),
            CounterSample {
                at_ms: now_ms,
                value,
            },
        )
    };
    match scrape {
        ReplicaScrape::Skipped | ReplicaScrape::Failed(_) => Vec::new(),
        ReplicaScrape::MissingFamily => vec![sample("", 0.0)],
        ReplicaScrape::Series(series) if series.is_empty() => vec![sample("", 0.0)],
        ReplicaScrape::Series(series) => series
            .iter()
            .filter(|s| s.value.is_finite() && s.value >= 0.0)
            .map(|s| sample(&s.labels, s.value))
            .collect(),
    }
}

/// Key of one series' counter sample in the state: `<replica_id> <path> <counter>`, then
/// ` <labels>` when the series has labels.
///
/// The unlabeled key is the one used before per-series rates, so a stored sample of an
/// unlabeled counter keeps its meaning across the upgrade.
pub fn sample_key(replica_id: &str, path: &str, counter: &str, labels: &str) -> String {
    if labels.is_empty() {
        format!("{replica_id} {path} {counter}")
    } else {
        format!("{replica_id} {path} {counter} {labels}")
    }
}

/// The replica (container) id a sample key belongs to: its first word.
pub fn sample_owner(key: &str) -> &str {
    key.split(' ').next().unwrap_or(key)
}

#[cfg(test)]
mod tests;
