//! Request-rate profiles (constant, steps, linear ramp, CSV trace) and the open-loop send schedule.
//!
//! Pure: no clock, no I/O. A profile is a list of [`Segment`]s whose rate changes linearly
//! inside each segment; the schedule sends request `n` at the time `t` where the integral
//! of the rate from 0 to `t` equals `n`, so the count in any window matches the profile.

use std::time::Duration;

/// Why a profile, duration or trace text was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    /// A duration such as `10s`, `500ms` or `2m` did not parse.
    #[error("invalid duration {text:?}: {reason}")]
    ParseDuration {
        /// The text as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rate was negative, not a number, or not finite.
    #[error("invalid rate {text:?}: expected a finite number >= 0 of requests per second")]
    ParseRate {
        /// The text as given.
        text: String,
    },
    /// A `--profile` step list such as `5@10s,90@30s` did not parse.
    #[error("invalid step profile {text:?}: {reason}")]
    ParseSteps {
        /// The whole profile text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--ramp` such as `5:90@60s` did not parse.
    #[error("invalid ramp {text:?}: expected FROM:TO@DURATION, e.g. 5:90@60s ({reason})")]
    ParseRamp {
        /// The ramp text.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A line of a `second,rps` trace did not parse.
    #[error("trace line {line}: {reason}")]
    ParseTrace {
        /// 1-based line number in the trace text.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Parses a duration: a number with unit `ms`, `s`, `m` or `h` (`1.5s`, `500ms`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, ProfileError> {
    let err = |reason: &str| ProfileError::ParseDuration {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| err("missing unit (ms, s, m or h)"))?;
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| err("not a number"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(err("unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err("out of range"))
}

fn parse_rate(text: &str) -> Result<f64, ProfileError> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(ProfileError::ParseRate {
            text: text.to_owned(),
        }),
    }
}

/// A stretch of time over which the rate moves linearly from `from_rps` to `to_rps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Length of the segment in seconds (> 0).
    pub secs: f64,
    /// Rate at the start of the segment, requests per second.
    pub from_rps: f64,
    /// Rate at the end of the segment, requests per second.
    pub to_rps: f64,
}

impl Segment {
    /// Requests the segment holds (the area under its rate).
    fn area(&self) -> f64 {
        (self.from_rps + self.to_rps) / 2.0 * self.secs
    }

    /// Offset `x` into the segment at which the integral of the rate reaches `m`.
    fn invert(&self, m: f64) -> f64 {
        let a = self.from_rps;
        let b = (self.to_rps - self.from_rps) / self.secs;
        if m <= 0.0 {
            return 0.0;
        }
        // Solve a*x + b*x^2/2 = m in the form that is stable when b is near 0.
        let disc = (a * a + 2.0 * b * m).max(0.0);
        let denom = a + disc.sqrt();
        if denom <= 0.0 {
            self.secs
        } else {
            (2.0 * m / denom).min(self.secs)
        }
    }
}

/// A request-rate profile over time.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// The same rate forever (the run's duration bounds it).
    Constant(f64),
    /// Consecutive segments; the profile ends after the last one.
    Segments(Vec<Segment>),
}

impl Profile {
    /// Parses steps `RATE@DURATION,...`, e.g. `5@10s,90@30s,5@60s`: 5 req/s for 10 s, then 90 for 30 s, then 5 for 60 s.
    pub fn parse_steps(text: &str) -> Result<Profile, ProfileError> {
        let err = |reason: String| ProfileError::ParseSteps {
            text: text.to_owned(),
            reason,
        };
        let mut segments = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (rate, dur) = part
                .split_once('@')
                .ok_or_else(|| err(format!("step {part:?} is not RATE@DURATION")))?;
            let rate = parse_rate(rate).map_err(|e| err(e.to_string()))?;
            let secs = parse_duration(dur)
                .map_err(|e| err(e.to_string()))?
                .as_secs_f64();
            if secs <= 0.0 {
                return Err(err(format!("step {part:?} has a zero duration")));
            }
            segments.push(Segment {
                secs,
                from_rps: rate,
                to_rps: rate,
            });
        }
        Ok(Profile::Segments(segments))
    }

    /// Parses a linear ramp `FROM:TO@DURATION`, e.g. `5:90@60s`; the rate then holds at TO.
    pub fn parse_ramp(text: &str) -> Result<Profile, ProfileError> {
        let err = |reason: String| ProfileError::ParseRamp {
            text: text.to_owned(),
            reason,
        };
        let (rates, dur) = text
            .split_once('@')
            .ok_or_else(|| err("missing @".into()))?;
        let (from, to) = rates
            .split_once(':')
            .ok_or_else(|| err("missing :".into()))?;
        let from = parse_rate(from).map_err(|e| err(e.to_string()))?;
        let to = parse_rate(to).map_err(|e| err(e.to_string()))?;
        let secs = parse_duration(dur)
            .map_err(|e| err(e.to_string()))?
            .as_secs_f64();
        if secs <= 0.0 {
            return Err(err("zero duration".into()));
        }
        Ok(Profile::Segments(vec![
            Segment {
                secs,
                from_rps: from,
                to_rps: to,
            },
            // Hold the final rate for as long as the run lasts.
            Segment {
                secs: f64::INFINITY,
                from_rps: to,
                to_rps: to,
            },
        ]))
    }

    /// Parses a `second,rps` CSV trace (optional header, `#` comments); each rate holds until the next row's second, the last for one second.
    pub fn parse_trace(text: &str) -> Result<Profile, ProfileError> {
        let mut rows: Vec<(f64, f64)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let err = |reason: String| ProfileError::ParseTrace {
                line: i + 1,
                reason,
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (sec, rate) = line
                .split_once(',')
                .ok_or_else(|| err(format!("{line:?} is not second,rps")))?;
            let Ok(sec) = sec.trim().parse::<f64>() else {
                if rows.is_empty() {
                    continue; // a header line such as `second,rps`
                }
                return Err(err(format!("second {sec:?} is not a number")));
            };
            if !sec.is_finite() || sec < 0.0 {
                return Err(err(format!("second {sec} is negative or not finite")));
            }
            if let Some(&(prev, _)) = rows.last()
                && sec <= prev
            {
                return Err(err(format!(
                    "second {sec} does not increase (after {prev})"
                )));
            }
            let rate = parse_rate(rate).map_err(|e| err(e.to_string()))?;
            rows.push((sec, rate));
        }
        if rows.is_empty() {
            return Err(ProfileError::ParseTrace {
                line: 0,
                reason: "the trace has no rows".into(),
            });
        }
        let mut segments = Vec::with_capacity(rows.len() + 1);
        if rows[0].0 > 0.0 {
            segments.push(Segment {
                secs: rows[0].0,
                from_rps: 0.0,
                to_rps: 0.0,
            });
        }
        for (i, &(sec, rate)) in rows.iter().enumerate() {
            let end = rows.get(i + 1).map_or(sec + 1.0, |next| next.0);
            segments.push(Segment {
                secs: end - sec,
                from_rps: rate,
                to_rps: rate,
            });
        }
        Ok(Profile::Segments(segments))
    }

    /// How long the profile lasts, or `None` when it goes on for ever.
    pub fn length(&self) -> Option<Duration> {
        match self {
            Profile::Constant(_) => None,
            Profile::Segments(segs) => {
                let secs: f64 = segs.iter().map(|s| s.secs).sum();
                Duration::try_from_secs_f64(secs).ok()
            }
        }
    }

    /// The rate in requests per second at `t` seconds into the run (0 after the profile ends).
    pub fn rate_at(&self, t: f64) -> f64 {
        match self {
            Profile::Constant(r) => *r,
            Profile::Segments(segs) => {
                let mut start = 0.0;
                for s in segs {
                    if t < start + s.secs {
                        let x = (t - start).max(0.0);
                        return s.from_rps + (s.to_rps - s.from_rps) * x / s.secs;
                    }
                    start += s.secs;
                }
                0.0
            }
        }
    }

    /// The send offsets of successive requests, ending before `duration` or after `max_requests`.
    pub fn schedule(&self, duration: Duration, max_requests: Option<u64>) -> Schedule {
        let segments = match self {
            Profile::Constant(r) => vec![Segment {
                secs: f64::INFINITY,
                from_rps: *r,
                to_rps: *r,
            }],
            Profile::Segments(segs) => segs.clone(),
        };
        Schedule {
            segments,
            index: 0,
            seg_start_secs: 0.0,
            seg_start_count: 0.0,
            next: 0,
            end_secs: duration.as_secs_f64(),
            max_requests: max_requests.unwrap_or(u64::MAX),
        }
    }
}

/// Iterator over request send offsets (from the start of the run) for an open-loop profile.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    index: usize,
    seg_start_secs: f64,
    seg_start_count: f64,
    next: u64,
    end_secs: f64,
    max_requests: u64,
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        if self.next >= self.max_requests {
            return None;
        }
        let target = self.next as f64;
        loop {
            let seg = self.segments.get(self.index)?;
            let area = seg.area();
            // Strictly inside this segment (the boundary belongs to the next one).
            if target < self.seg_start_count + area {
                let t = self.seg_start_secs + seg.invert(target - self.seg_start_count);
                if t >= self.end_secs {
                    return None;
                }
                self.next += 1;
                return Duration::try_from_secs_f64(t).ok();
            }
            if self.seg_start_secs + seg.secs >= self.end_secs {
                return None;
            }
            self.seg_start_secs += seg.secs;
            self.seg_start_count += area;
            self.index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: &[Duration]) -> Vec<f64> {
        d.iter()
            .map(|d| (d.as_secs_f64() * 1e6).round() / 1e6)
            .collect()
    }

    #[test]
    fn parse_duration_accepts_units_and_rejects_garbage() {
        let cases: &[(&str, Result<f64, ()>)] = &[
            ("10s", Ok(10.0)),
            ("1.5s", Ok(1.5)),
            ("500ms", Ok(0.5)),
            ("2m", Ok(120.0)),
            ("1h", Ok(3600.0)),
            (" 3s ", Ok(3.0)),
            ("10", Err(())),
            ("s", Err(())),
            ("10x", Err(())),
            ("-1s", Err(())),
            ("1.2.3s", Err(())),
            ("", Err(())),
        ];
        for (text, want) in cases {
            let got = parse_duration(text)
                .map(|d| d.as_secs_f64())
                .map_err(|_| ());
            assert_eq!(&got, want, "{text:?}");
        }
    }

    #[test]
    fn constant_rate_sends_evenly_spaced_requests_until_the_duration() {
        let s: Vec<_> = Profile::Constant(4.0)
            .schedule(Duration::from_secs(1), None)
            .collect();
        assert_eq!(secs(&s), vec![0.0, 0.25, 0.5, 0.75]);
    }

    #[test]
    fn schedule_stops_at_max_requests() {
        let n = Profile::Constant(1000.0)
            .schedule(Duration::from_secs(10), Some(37))
            .count();
        assert_eq!(n, 37);
    }

    #[test]
    fn zero_rate_sends_nothing_and_terminates() {
        assert_eq!(
            Profile::Constant(0.0)
                .schedule(Duration::from_secs(5), None)
                .count(),
            0
        );
        let p = Profile::parse_steps("0@2s,2@1s").unwrap();
        let s: Vec<_> = p.schedule(Duration::from_secs(60), None).collect();
        assert_eq!(secs(&s), vec![2.0, 2.5]);
    }

    #[test]
    fn steps_send_each_step_count_in_its_own_window() {
        let p = Profile::parse_steps("5@10s,90@30s,5@60s").unwrap();
        assert_eq!(p.length(), Some(Duration::from_secs(100)));
        let s: Vec<_> = p.schedule(Duration::from_secs(1000), None).collect();
        let in_window = |a: f64, b: f64| {
            s.iter()
                .filter(|d| d.as_secs_f64() >= a && d.as_secs_f64() < b)
                .count()
        };
        assert_eq!(in_window(0.0, 10.0), 50);
        assert_eq!(in_window(10.0, 40.0), 2700);
        assert_eq!(in_window(40.0, 100.0), 300);
        assert_eq!(s.len(), 3050);
    }

    #[test]
    fn rate_at_follows_steps_ramps_and_ends() {
        let steps = Profile::parse_steps("5@10s,90@30s").unwrap();
        let ramp = Profile::parse_ramp("10:20@10s").unwrap();
        let cases: &[(&Profile, f64, f64)] = &[
            (&steps, 0.0, 5.0),
            (&steps, 9.99, 5.0),
            (&steps, 10.0, 90.0),
            (&steps, 39.9, 90.0),
            (&steps, 40.0, 0.0),
            (&ramp, 0.0, 10.0),
            (&ramp, 5.0, 15.0),
            (&ramp, 10.0, 20.0),
            (&ramp, 1000.0, 20.0),
            (&Profile::Constant(7.0), 1e6, 7.0),
        ];
        for (p, t, want) in cases {
            assert!((p.rate_at(*t) - want).abs() < 1e-9, "{p:?} at {t}");
        }
    }

    #[test]
    fn ramp_sends_the_integral_of_its_rate() {
        // 0 → 100 req/s over 10 s holds 500 requests; the first half holds a quarter.
        let p = Profile::parse_ramp("0:100@10s").unwrap();
        let s: Vec<_> = p.schedule(Duration::from_secs(10), None).collect();
        assert_eq!(s.len(), 500);
        let first_half = s.iter().filter(|d| d.as_secs_f64() < 5.0).count();
        assert_eq!(first_half, 125);
        assert!(s.windows(2).all(|w| w[0] <= w[1]), "monotonic");
    }

    #[test]
    fn ramp_down_and_hold_after_ramp() {
        let p = Profile::parse_ramp("100:0@10s").unwrap();
        assert_eq!(p.schedule(Duration::from_secs(20), None).count(), 500);
        let p = Profile::parse_ramp("10:20@10s").unwrap();
        // 150 during the ramp, then 20/s for 5 s.
        assert_eq!(p.schedule(Duration::from_secs(15), None).count(), 250);
    }

    #[test]
    fn trace_holds_each_rate_until_the_next_second() {
        let p = Profile::parse_trace("second,rps\n# comment\n0,2\n2,4\n3,0\n").unwrap();
        assert_eq!(p.length(), Some(Duration::from_secs(4)));
        let s: Vec<_> = p.schedule(Duration::from_secs(60), None).collect();
        assert_eq!(secs(&s), vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.25, 2.5, 2.75]);
    }

    #[test]
    fn trace_starting_late_is_silent_first() {
        let p = Profile::parse_trace("2,1\n").unwrap();
        let s: Vec<_> = p.schedule(Duration::from_secs(60), None).collect();
        assert_eq!(secs(&s), vec![2.0]);
    }

    #[test]
    fn bad_profiles_are_rejected_with_the_reason() {
        let cases: &[(&str, Result<Profile, ProfileError>)] = &[
            ("5@10s,x@1s", Profile::parse_steps("5@10s,x@1s")),
            ("5", Profile::parse_steps("5")),
            ("5@0s", Profile::parse_steps("5@0s")),
            ("-5@1s", Profile::parse_steps("-5@1s")),
            ("NaN@1s", Profile::parse_steps("NaN@1s")),
            ("5:90", Profile::parse_ramp("5:90")),
            ("5@60s", Profile::parse_ramp("5@60s")),
            ("5:inf@60s", Profile::parse_ramp("5:inf@60s")),
            ("trace 1,1;2,1", Profile::parse_trace("1,1\n1,3\n")),
            ("trace empty", Profile::parse_trace("second,rps\n")),
            ("trace bad rate", Profile::parse_trace("0,fast\n")),
            ("trace no comma", Profile::parse_trace("0 5\n")),
            ("trace bad later second", Profile::parse_trace("0,1\nx,2\n")),
        ];
        for (name, got) in cases {
            assert!(got.is_err(), "{name} should be rejected, got {got:?}");
        }
        assert_eq!(
            Profile::parse_trace("0,1\n0,2\n"),
            Err(ProfileError::ParseTrace {
                line: 2,
                reason: "second 0 does not increase (after 0)".into()
            })
        );
    }
}
