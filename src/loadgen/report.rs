//! Counting outcomes as they arrive, and the final [`LoadReport`] with its per-second timeline.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::Outcome;

/// Highest latency the histograms track exactly (longer ones are clamped), in microseconds.
const MAX_TRACKED_US: u64 = 3_600_000_000;

/// Failed requests by class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failures {
    /// No connection could be made.
    pub connect: u64,
    /// No complete response within the per-request timeout.
    pub timeout: u64,
    /// A 5xx response.
    pub status_5xx: u64,
    /// A 4xx response.
    pub status_4xx: u64,
    /// Any other transport failure (reset, closed mid-response, malformed response, 1xx).
    pub other: u64,
}

impl Failures {
    /// All failed requests.
    pub fn total(&self) -> u64 {
        self.connect + self.timeout + self.status_5xx + self.status_4xx + self.other
    }
}

/// Latency percentiles in milliseconds, over requests that got a response (any status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Arithmetic mean.
    pub mean_ms: f64,
}

/// One second of the run (requests attributed to the second in which they were sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Seconds since the start of the run.
    pub t: u64,
    /// Requests sent in this second.
    pub sent: u64,
    /// Of those, requests that succeeded.
    pub ok: u64,
    /// Of those, requests that failed.
    pub failed: u64,
    /// Median latency of those that got a response.
    pub p50_ms: f64,
    /// 99th percentile latency of those that got a response.
    pub p99_ms: f64,
}

/// The summary of a run: what `--json` prints and what [`super::run`] returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// `open` (scheduled rate) or `closed` (fixed concurrency).
    pub mode: &'static str,
    /// Wall time from the first send to the last response, seconds.
    pub elapsed_secs: f64,
    /// Requests sent (each counted once, retries excluded).
    pub sent: u64,
    /// Requests answered with 2xx or 3xx.
    pub ok: u64,
    /// Failed requests in all classes.
    pub failed: u64,
    /// Failed requests by class.
    pub failures: Failures,
    /// Requests resent once because a reused keep-alive connection was closed before any response byte (not failures).
    pub retried: u64,
    /// Sent requests per second over the sending window.
    pub send_rate: f64,
    /// Completed requests (ok + failed) per second over the whole run: the throughput.
    pub throughput: f64,
    /// Latency percentiles; open loop measures from the scheduled send time.
    pub latency: Latency,
    /// One row per second.
    pub timeline: Vec<Second>,
}

impl LoadReport {
    /// Failed requests over completed requests (0 when nothing completed).
    pub fn error_rate(&self) -> f64 {
        let done = self.ok + self.failed;
        if done == 0 {
            0.0
        } else {
            self.failed as f64 / done as f64
        }
    }

    /// The timeline as CSV with header `t,sent,ok,failed,p50_ms,p99_ms`.
    pub fn timeline_csv(&self) -> String {
        let mut out = String::from("t,sent,ok,failed,p50_ms,p99_ms\n");
        for s in &self.timeline {
            out.push_str(&format!(
                "{},{},{},{},{:.3},{:.3}\n",
                s.t, s.sent, s.ok, s.failed, s.p50_ms, s.p99_ms
            ));
        }
        out
    }

    /// A few human-readable lines for the terminal.
    pub fn human(&self) -> String {
        let f = &self.failures;
        format!(
            "mode {} · {:.1}s · sent {} · ok {} · failed {} (connect {}, timeout {}, 5xx {}, 4xx {}, other {}) · retried {}\n\
             send rate {:.1}/s · throughput {:.1}/s\n\
             latency p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms\n",
            self.mode,
            self.elapsed_secs,
            self.sent,
            self.ok,
            self.failed,
            f.connect,
            f.timeout,
            f.status_5xx,
            f.status_4xx,
            f.other,
            self.retried,
            self.send_rate,
            self.throughput,
            self.latency.p50_ms,
            self.latency.p90_ms,
            self.latency.p99_ms,
            self.latency.max_ms,
        )
    }
}

struct Bucket {
    sent: u64,
    ok: u64,
    failed: u64,
    hist: Histogram<u32>,
}

/// Accumulates outcomes during a run; shared behind a mutex by the request tasks.
pub struct Recorder {
    sent: u64,
    ok: u64,
    failures: Failures,
    retried: u64,
    hist: Histogram<u64>,
    seconds: Vec<Bucket>,
}

/// A running total for the progress line.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Requests sent so far.
    pub sent: u64,
    /// Requests that succeeded so far.
    pub ok: u64,
    /// Requests that failed so far.
    pub failed: u64,
    /// 99th percentile latency so far, ms.
    pub p99_ms: f64,
}

fn hist<T: hdrhistogram::Counter>(sigfig: u8) -> Histogram<T> {
    // Constant, valid bounds (1 <= low, high >= 2 * low, sigfig <= 5): this cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, MAX_TRACKED_US, sigfig)
        .expect("constant histogram bounds are valid")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Recorder {
        Recorder {
            sent: 0,
            ok: 0,
            failures: Failures::default(),
            retried: 0,
            hist: hist(3),
            seconds: Vec::new(),
        }
    }

    fn bucket(&mut self, second: u64) -> &mut Bucket {
        let i = usize::try_from(second).unwrap_or(usize::MAX).min(1 << 20);
        while self.seconds.len() <= i {
            self.seconds.push(Bucket {
                sent: 0,
                ok: 0,
                failed: 0,
                hist: hist(2),
            });
        }
        &mut self.seconds[i]
    }

    /// Counts a request sent in `second` of the run.
    pub fn sent(&mut self, second: u64) {
        self.sent += 1;
        self.bucket(second).sent += 1;
    }

    /// Counts how a request sent in `second` ended, `latency` after it was (or was due to be) sent.
    pub fn finished(&mut self, second: u64, outcome: Outcome, latency: Duration, retried: bool) {
        if retried {
            self.retried += 1;
        }
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let responded = matches!(outcome, Outcome::Status(_));
        let ok = match outcome {
            Outcome::Status(s) if s.is_success() || s.is_redirection() => true,
            Outcome::Status(s) if s.is_server_error() => {
                self.failures.status_5xx += 1;
                false
            }
            Outcome::Status(s) if s.is_client_error() => {
                self.failures.status_4xx += 1;
                false
            }
            Outcome::Status(_) | Outcome::Other => {
                self.failures.other += 1;
                false
            }
            Outcome::Connect => {
                self.failures.connect += 1;
                false
            }
            Outcome::Timeout => {
                self.failures.timeout += 1;
                false
            }
        };
        if ok {
            self.ok += 1;
        }
        if responded {
            self.hist.saturating_record(us);
        }
        let b = self.bucket(second);
        if ok {
            b.ok += 1;
        } else {
            b.failed += 1;
        }
        if responded {
            b.hist.saturating_record(us);
        }
    }

    /// Totals so far, for the progress line.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            sent: self.sent,
            ok: self.ok,
            failed: self.failures.total(),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
        }
    }

    /// The final report; `send_window` is how long sending went on, `elapsed` the whole run.
    pub fn report(
        &self,
        mode: &'static str,
        send_window: Duration,
        elapsed: Duration,
    ) -> LoadReport {
        let per_sec = |n: u64, d: Duration| {
            let s = d.as_secs_f64();
            if s > 0.0 { n as f64 / s } else { 0.0 }
        };
        let failed = self.failures.total();
        let latency = if self.hist.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50_ms: ms(self.hist.value_at_quantile(0.50)),
                p90_ms: ms(self.hist.value_at_quantile(0.90)),
                p99_ms: ms(self.hist.value_at_quantile(0.99)),
                max_ms: ms(self.hist.max()),
                mean_ms: self.hist.mean() / 1000.0,
            }
        };
        let timeline = self
            .seconds
            .iter()
            .enumerate()
            .map(|(t, b)| Second {
                t: t as u64,
                sent: b.sent,
                ok: b.ok,
                failed: b.failed,
                p50_ms: if b.hist.is_empty() {
                    0.0
                } else {
                    ms(b.hist.value_at_quantile(0.5))
                },
                p99_ms: if b.hist.is_empty() {
                    0.0
                } else {
                    ms(b.hist.value_at_quantile(0.99))
                },
            })
            .collect();
        LoadReport {
            mode,
            elapsed_secs: elapsed.as_secs_f64(),
            sent: self.sent,
            ok: self.ok,
            failed,
            failures: self.failures,
            retried: self.retried,
            send_rate: per_sec(self.sent, send_window),
            throughput: per_sec(self.ok + failed, elapsed),
            latency,
            timeline,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    #[test]
    fn outcomes_land_in_their_class_and_second() {
        let mut r = Recorder::new();
        let ms = Duration::from_millis;
        let cases = [
            (0, Outcome::Status(StatusCode::OK), false),
            (0, Outcome::Status(StatusCode::FOUND), false),
            (1, Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR), false),
            (1, Outcome::Status(StatusCode::BAD_GATEWAY), false),
            (1, Outcome::Status(StatusCode::NOT_FOUND), false),
            (2, Outcome::Connect, false),
            (2, Outcome::Timeout, false),
            (2, Outcome::Other, false),
            (3, Outcome::Status(StatusCode::OK), true),
        ];
        for (sec, outcome, retried) in cases {
            r.sent(sec);
            r.finished(sec, outcome, ms(10), retried);
        }
        let rep = r.report("open", Duration::from_secs(4), Duration::from_secs(4));
        assert_eq!((rep.sent, rep.ok, rep.failed, rep.retried), (9, 3, 6, 1));
        assert_eq!(
            rep.failures,
            Failures {
                connect: 1,
                timeout: 1,
                status_5xx: 2,
                status_4xx: 1,
                other: 1
            }
        );
        let rows: Vec<_> = rep
            .timeline
            .iter()
            .map(|s| (s.t, s.sent, s.ok, s.failed))
            .collect();
        assert_eq!(
            rows,
            vec![(0, 2, 2, 0), (1, 3, 0, 3), (2, 3, 0, 3), (3, 1, 1, 0)]
        );
        assert_eq!(rep.timeline[2].p50_ms, 0.0, "no responses, no latency");
        assert!((rep.error_rate() - 6.0 / 9.0).abs() < 1e-9);
    }

    #[test]
    fn latency_percentiles_and_csv() {
        let mut r = Recorder::new();
        for i in 1..=100u64 {
            r.sent(0);
            r.finished(
                0,
                Outcome::Status(StatusCode::OK),
                Duration::from_millis(i),
                false,
            );
        }
        let rep = r.report("closed", Duration::from_secs(1), Duration::from_secs(2));
        assert!((rep.latency.p50_ms - 50.0).abs() < 0.1, "{:?}", rep.latency);
        assert!((rep.latency.p99_ms - 99.0).abs() < 0.1, "{:?}", rep.latency);
        assert!(
            (rep.latency.max_ms - 100.0).abs() < 0.1,
            "{:?}",
            rep.latency
        );
        assert_eq!(rep.send_rate, 100.0);
        assert_eq!(rep.throughput, 50.0);
        let csv = rep.timeline_csv();
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some("t,sent,ok,failed,p50_ms,p99_ms"));
        assert!(
            lines
                .next()
                .is_some_and(|l| l.starts_with("0,100,100,0,50.")),
            "{csv}"
        );
    }

    #[test]
    fn empty_run_reports_zeros_not_nan() {
        let rep = Recorder::new().report("open", Duration::ZERO, Duration::ZERO);
        assert_eq!(
            (rep.send_rate, rep.throughput, rep.error_rate()),
            (0.0, 0.0, 0.0)
        );
        assert_eq!(rep.latency, Latency::default());
        assert!(serde_json::to_string(&rep).is_ok());
    }
}
