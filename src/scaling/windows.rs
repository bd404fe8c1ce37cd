//! Reading metrics over windows: the burst reading of a load-balancer signal and the
//! stable-window rate of scraped counters. Pure: the caller hands in what it read.
//!
//! # The burst reading
//! A window that straddles a step in load averages the old rate with the new one, and a
//! window that holds a handful of requests is noise. So the burst reading is taken over
//! the *shortest* window (in [`BURST_STEP_MS`] steps up to the burst window) that holds at
//! least [`BURST_MIN_REQUESTS`] requests, and trusted only when its newer half is not more
//! than [`BURST_RISING`] times busier than the whole: a rate still rising is read again on
//! the next batch of requests, by which time the window lies inside the new load. A 5 → 90
//! req/s step is so read as ~90 req/s about 100 ms after it, not as 20 req/s.
//!
//! # The burst reading from the request count
//! The signal's windows are whole 100 ms buckets, the current partial one included, so a
//! 100 ms window holds 100 to 200 ms of requests. Where the running count of a policy's
//! requests is known at exact times (each notification of new requests), [`CountSamples`]
//! gives the rate between those times instead: exact counts over exact spans, read with
//! the same rules (shortest span holding [`BURST_MIN_REQUESTS`], not still rising).
//!
//! # The stable window of scraped counters
//! A rate between two scrapes one tick apart is noisy. [`SampleWindows`] keeps each
//! series' samples for the stable window and hands back, as the "previous" sample, the
//! newest one at least a window old: the rate is then taken over (about) the window.

use std::collections::{BTreeMap, VecDeque};

use crate::state::CounterSample;

/// Granularity of the burst windows tried, in milliseconds.
pub const BURST_STEP_MS: u64 = 100;
/// Fewest requests a burst window must hold to be read at all.
pub const BURST_MIN_REQUESTS: u64 = 8;
/// A burst window whose newer half is busier than this many times the whole is still
/// rising: not trusted yet.
pub const BURST_RISING: f64 = 1.25;

/// One window's figures, as the signal source reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowFigures {
    /// Requests that finished in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// The figure scaled on (the rate, or the concurrency).
    pub value: f64,
}

/// A trusted burst reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstReading {
    /// Window the reading covers, milliseconds.
    pub window_ms: u64,
    /// The figure scaled on over that window.
    pub value: f64,
}

/// The burst reading over at most `burst_ms`; `read(ms)` gives the figures of the last
/// `ms` milliseconds (None: no data). None when no window holds enough requests, or the
/// rate is still rising (see the module documentation).
pub fn burst_reading(
    burst_ms: u64,
    mut read: impl FnMut(u64) -> Option<WindowFigures>,
) -> Option<BurstReading> {
    let steps = (burst_ms / BURST_STEP_MS).max(1);
    let enough = |f: &Option<WindowFigures>| f.is_some_and(|f| f.requests >= BURST_MIN_REQUESTS);
    // Requests only grow with the window: binary search for the shortest one with enough.
    let longest = read(steps * BURST_STEP_MS);
    if !enough(&longest) {
        return None;
    }
    let (mut lo, mut hi, mut found) = (1, steps, longest);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let f = read(mid * BURST_STEP_MS);
        if enough(&f) {
            hi = mid;
            found = f;
        } else {
            lo = mid + 1;
        }
    }
    let whole = found?;
    if !(whole.value.is_finite() && whole.value >= 0.0 && whole.rate.is_finite()) {
        return None;
    }
    let half = hi / 2;
    if half >= 1
        && let Some(newer) = read(half * BURST_STEP_MS)
        && newer.rate > BURST_RISING * whole.rate
    {
        return None;
    }
    Some(BurstReading {
        window_ms: hi * BURST_STEP_MS,
        value: whole.value,
    })
}

/// A policy's running request count at the times it was announced (see the module
/// documentation), oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CountSamples {
    samples: VecDeque<(u64, u64)>,
}

impl CountSamples {
    /// Adds the count seen at `at_ms` and forgets samples older than `keep_ms` (keeping at
    /// least two). A count that went down (the stream restarted) starts over.
    pub fn push(&mut self, at_ms: u64, count: u64, keep_ms: u64) {
        if self
            .samples
            .back()
            .is_some_and(|&(t, c)| c > count || t > at_ms)
        {
            self.samples.clear();
        }
        if self.samples.back().is_some_and(|&(_, c)| c == count) {
            return; // nothing new: keep the older time, the span stays exact
        }
        self.samples.push_back((at_ms, count));
        let cutoff = at_ms.saturating_sub(keep_ms);
        while self.samples.len() > 2 && self.samples.front().is_some_and(|&(t, _)| t < cutoff) {
            self.samples.pop_front();
        }
    }

    /// When the newest sample was taken.
    pub fn newest_ms(&self) -> Option<u64> {
        self.samples.back().map(|&(t, _)| t)
    }

    /// The burst rate (requests per second) over the shortest span back from the newest
    /// sample holding at least [`BURST_MIN_REQUESTS`], within `burst_ms`; None without one,
    /// or while the rate is still rising (the newest announcement's interval, or the newer
    /// half of the span, [`BURST_RISING`] times busier than the whole).
    pub fn burst_rate(&self, burst_ms: u64) -> Option<BurstReading> {
        let &(t1, c1) = self.samples.back()?;
        let start = self.samples.iter().rev().skip(1).find(|&&(t, c)| {
            c1.saturating_sub(c) >= BURST_MIN_REQUESTS || t1.saturating_sub(t) > burst_ms
        })?;
        let (t0, c0) = *start;
        let span = t1.saturating_sub(t0);
        if span == 0 || span > burst_ms || c1 - c0 < BURST_MIN_REQUESTS {
            return None;
        }
        let rate = (c1 - c0) as f64 * 1000.0 / span as f64;
        // The newest announcement's own rate: a step shows there first.
        if let Some(&(tp, cp)) = self.samples.iter().rev().nth(1)
            && tp > t0
            && (c1 - cp) as f64 * 1000.0 / (t1 - tp) as f64 > BURST_RISING * rate
        {
            return None;
        }
        // The sample nearest the middle of the span, if any lies strictly inside it.
        let mid = t0 + span / 2;
        let newer = self
            .samples
            .iter()
            .filter(|&&(t, _)| t > t0 && t < t1)
            .min_by_key(|&&(t, _)| t.abs_diff(mid));
        if let Some(&(tm, cm)) = newer {
            let newer_rate = (c1 - cm) as f64 * 1000.0 / (t1 - tm) as f64;
            if newer_rate > BURST_RISING * rate {
                return None;
            }
        }
        Some(BurstReading {
            window_ms: span,
            value: rate,
        })
    }
}

/// Samples of every counter series over the stable window (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleWindows {
    series: BTreeMap<String, VecDeque<CounterSample>>,
}

impl SampleWindows {
    /// The sample each series' rate is taken from at `now_ms` over `window_ms`: the newest
    /// at least a window old, else the oldest kept. Series this window never saw take
    /// theirs from `fallback` (e.g. the state file after a restart).
    pub fn previous(
        &self,
        now_ms: u64,
        window_ms: u64,
        fallback: &BTreeMap<String, CounterSample>,
    ) -> BTreeMap<String, CounterSample> {
        let cutoff = now_ms.saturating_sub(window_ms);
        let mut out = fallback.clone();
        for (key, samples) in &self.series {
            let old_enough = samples.iter().rev().find(|s| s.at_ms <= cutoff);
            if let Some(s) = old_enough.or_else(|| samples.front()) {
                out.insert(key.clone(), *s);
            }
        }
        out
    }

    /// Adds samples taken at about `now_ms`, and forgets those no window ending now or
    /// later needs (all but the newest one at least `window_ms` old).
    pub fn record(
        &mut self,
        samples: impl IntoIterator<Item = (String, CounterSample)>,
        now_ms: u64,
        window_ms: u64,
    ) {
        for (key, sample) in samples {
            let kept = self.series.entry(key).or_default();
            // A sample older than the newest kept one (a clock step) restarts the series.
            if kept.back().is_some_and(|last| last.at_ms > sample.at_ms) {
                kept.clear();
            }
            kept.push_back(sample);
        }
        let cutoff = now_ms.saturating_sub(window_ms);
        for kept in self.series.values_mut() {
            while kept.len() > 1 && kept.get(1).is_some_and(|s| s.at_ms <= cutoff) {
                kept.pop_front();
            }
        }
    }

    /// Keeps only the series `keep` says yes to (e.g. of replicas that still exist).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.series.retain(|key, _| keep(key));
    }

    /// Samples kept, over all series.
    pub fn len(&self) -> usize {
        self.series.values().map(VecDeque::len).sum()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A signal source replaying request finish times (ms) with `busy_ms` of work each.
    fn source(times: &[u64], now: u64) -> impl FnMut(u64) -> Option<WindowFigures> + '_ {
        move |ms| {
            let n = times
                .iter()
                .filter(|t| **t > now.saturating_sub(ms) && **t <= now)
                .count() as u64;
            let rate = n as f64 * 1000.0 / ms as f64;
            Some(WindowFigures {
                requests: n,
                rate,
                value: rate,
            })
        }
    }

    /// Evenly spaced requests at `rate` per second over `[from, to)` ms.
    fn even(rate: f64, from: u64, to: u64) -> Vec<u64> {
        let gap = 1000.0 / rate;
        (0..)
            .map(|i| from + (f64::from(i) * gap) as u64)
            .take_while(|t| *t < to)
            .collect()
    }

    #[test]
    fn burst_reading_sees_a_step_only_once_the_window_lies_inside_it() {
        // 5 req/s for 10 s, then 90 req/s from t = 10 000 ms.
        let mut times = even(5.0, 0, 10_000);
        times.extend(even(90.0, 10_000, 12_000));
        // (now, expected reading): None until enough new requests, then ~90.
        type Case = (&'static str, u64, Option<(u64, f64)>);
        let cases: &[Case] = &[
            ("steady_low_rate_too_few_requests", 9_990, None),
            ("just_after_the_step_too_few", 10_040, None),
            ("mixed_window_still_rising", 10_070, None),
            ("window_inside_the_new_load", 10_100, Some((100, 90.0))),
            ("well_after", 10_500, Some((100, 90.0))),
        ];
        for (name, now, want) in cases {
            let got = burst_reading(1000, source(&times, *now)).map(|r| (r.window_ms, r.value));
            match (got, want) {
                (None, None) => {}
                (Some((w, v)), Some((ww, wv))) => {
                    assert_eq!(w, *ww, "{name}");
                    assert!((v - wv).abs() <= 10.0, "{name}: {v}");
                }
                _ => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn burst_reading_edges() {
        let none = |_: u64| None;
        assert_eq!(burst_reading(1000, none), None, "no data");
        let nan = |_: u64| {
            Some(WindowFigures {
                requests: 100,
                rate: f64::NAN,
                value: f64::NAN,
            })
        };
        assert_eq!(burst_reading(1000, nan), None, "NaN is no reading");
        let steady = even(60.0, 0, 5_000);
        let r = burst_reading(1000, source(&steady, 4_000)).expect("steady 60/s is read");
        assert_eq!(r.window_ms, 200, "shortest window with 8 requests");
        assert!((r.value - 60.0).abs() < 6.0, "{r:?}");
        // A burst window shorter than one step is read as one step.
        let r = burst_reading(10, source(&steady, 4_000));
        assert_eq!(r, None, "100 ms holds only 6 requests at 60/s");
        // Huge windows are searched, not scanned.
        let mut calls = 0;
        let _ = burst_reading(60_000, |ms| {
            calls += 1;
            source(&steady, 4_999)(ms)
        });
        assert!(calls < 15, "{calls} reads");
    }

    #[test]
    fn count_samples_read_a_step_from_exact_counts() {
        let mut c = CountSamples::default();
        assert_eq!(c.burst_rate(1000), None, "empty");
        // 5 req/s announced every 200 ms, then 90 req/s announced every 100 ms from 10 s.
        let mut count = 0;
        for i in 0..50u64 {
            count += 1;
            c.push(i * 200, count, 2000);
        }
        assert_eq!(c.burst_rate(1000), None, "5/s: fewer than 8 in a second");
        // (time, count) after the step, expected reading
        let cases: &[(u64, u64, Option<f64>)] = &[
            (10_040, 4, None), // a few new requests: too few
            (10_140, 9, Some(9_000.0 / 100.0 * 1.0)),
            (10_240, 9, Some(90.0)),
        ];
        for (at, more, want) in cases {
            count += more;
            c.push(*at, count, 2000);
            let got = c.burst_rate(1000).map(|r| r.value);
            match (got, want) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1.0, "{at}: {g} vs {w}"),
                _ => panic!("{at}: got {got:?}, want {want:?}"),
            }
        }
        // A stream restart (count down) starts over; repeats add nothing.
        c.push(11_000, 3, 2000);
        assert_eq!(c.burst_rate(1000), None);
        c.push(11_100, 3, 2000);
        assert_eq!(c.newest_ms(), Some(11_000));
        // A span longer than the burst window is no burst reading.
        c.push(13_000, 30, 2000);
        assert_eq!(c.burst_rate(1000), None);
    }

    #[test]
    fn count_samples_wait_while_the_rate_still_rises() {
        let mut c = CountSamples::default();
        // 200 ms at 20/s, then 100 ms at 100/s: the newer half is 5x the whole's rate.
        c.push(0, 0, 2000);
        c.push(100, 2, 2000);
        c.push(200, 4, 2000);
        c.push(300, 14, 2000);
        let r = c.burst_rate(1000).expect("the last 100 ms hold 10");
        assert_eq!(r.window_ms, 100);
        assert!((r.value - 100.0).abs() < 1e-9);
        let mut c = CountSamples::default();
        c.push(0, 0, 2000);
        c.push(100, 1, 2000);
        c.push(200, 2, 2000);
        c.push(250, 9, 2000);
        assert_eq!(
            c.burst_rate(1000),
            None,
            "7 in the last 50 ms of 250: rising"
        );
    }

    fn s(at_ms: u64, value: f64) -> CounterSample {
        CounterSample { at_ms, value }
    }

    #[test]
    fn previous_is_the_newest_sample_a_window_old() {
        let mut w = SampleWindows::default();
        for t in 0..10u64 {
            w.record(
                [("a".to_owned(), s(t * 1000, t as f64 * 60.0))],
                t * 1000,
                6000,
            );
        }
        let fallback = BTreeMap::from([("a".to_owned(), s(0, 0.0)), ("b".to_owned(), s(5, 1.0))]);
        let prev = w.previous(9000, 6000, &fallback);
        assert_eq!(prev["a"], s(3000, 180.0), "6 s before 9 s");
        assert_eq!(prev["b"], s(5, 1.0), "unknown series fall back");
        let prev = w.previous(9000, 1000, &BTreeMap::new());
        assert_eq!(
            prev["a"],
            s(8000, 480.0),
            "a 1 s window is the old 1 s rate"
        );
        assert!(w.len() <= 8, "pruned to the window: {}", w.len());
    }

    #[test]
    fn sample_windows_edges() {
        let mut w = SampleWindows::default();
        assert!(w.is_empty());
        assert_eq!(w.previous(5, 1000, &BTreeMap::new()), BTreeMap::new());
        // Warm-up: nothing a window old yet, the oldest is used.
        w.record([("a".to_owned(), s(1000, 1.0))], 1000, 6000);
        w.record([("a".to_owned(), s(2000, 2.0))], 2000, 6000);
        assert_eq!(w.previous(2000, 6000, &BTreeMap::new())["a"], s(1000, 1.0));
        // A sample from the past (clock step) restarts the series.
        w.record([("a".to_owned(), s(500, 9.0))], 500, 6000);
        assert_eq!(w.previous(500, 6000, &BTreeMap::new())["a"], s(500, 9.0));
        // Vanished replicas are forgotten.
        w.record([("b x".to_owned(), s(600, 1.0))], 600, 6000);
        w.retain(|k| k.starts_with('a'));
        assert_eq!(w.len(), 1);
        // A huge window never underflows.
        assert_eq!(w.previous(0, u64::MAX, &BTreeMap::new())["a"], s(500, 9.0));
    }
}
