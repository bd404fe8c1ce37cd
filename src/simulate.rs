//! What-if simulator: replays a per-second request-rate trace through [`crate::scaling::decide`].
//!
//! Pure: the trace arrives as text, the result is data. One evaluation per second, like a
//! daemon scraping every second ([`simulate_every`] evaluates every N seconds instead).
//! Two baselines are built in: HPA defaults at HPA's 15 s sync period
//! ([`hpa_defaults_baseline`]) and a faithful model of the original tool's 2 s loop
//! ([`original_tool_baseline`]). The model:
//!
//! ```text
//!  second s:  replicas started ≥ delay ago are ready
//!             load per ready replica = rps / ready        (∞ when none is ready)
//!             under-provisioned when that exceeds the target
//!             metrics: requestRate  → per replica (ready: load, starting: no data),
//!                                      load averaged over the stable window
//!                      loadBalancer → total rps averaged over the stable window;
//!                                      burst reading: second s itself
//!                      prometheus   → total rps of second s
//!             burst check every second, even between the ticks of simulate_every
//!             decide → record history → start or stop replicas (newest stop first)
//!  a replica started in second s serves from second max(s + 1, s + delay)
//! ```

use serde::Serialize;

use crate::policy::types::{MetricSpec, ScalingPolicy};
use crate::scaling::{self, Decision, DecisionInput, History, MetricInput, MetricReading};

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// A trace line is not `second,rps` with a non-negative rate and increasing seconds.
    #[error("{trace}:{line}: {message}")]
    ParseTrace {
        /// Trace name (usually its path).
        trace: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The trace holds no sample.
    #[error("{trace}: the trace holds no sample")]
    EmptyTrace {
        /// Trace name.
        trace: String,
    },
    /// Drawing the SVG plot failed.
    #[error("plot: {message}")]
    Plot {
        /// What the plotting library said.
        message: String,
    },
    /// The policy has no metric, so load cannot be fed to it.
    #[error("policy {policy}: no metric in spec.metrics to feed the trace to")]
    NoMetrics {
        /// Policy name.
        policy: String,
    },
}

/// A request-rate trace: `rps[s]` is the rate during second `s`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// Requests per second, one entry per second from 0.
    pub rps: Vec<f64>,
}

impl Trace {
    /// Parses CSV `second,rps` (optional header, `#` comments, blank lines). Seconds must
    /// increase; a gap repeats the previous rate.
    ///
    /// # Errors
    /// [`SimulateError::ParseTrace`] naming the line, [`SimulateError::EmptyTrace`].
    pub fn parse(name: &str, text: &str) -> Result<Self, SimulateError> {
        let mut rps: Vec<f64> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| SimulateError::ParseTrace {
                trace: name.to_owned(),
                line: i + 1,
                message,
            };
            let Some((second, rate)) = line.split_once(',') else {
                return Err(err(format!("expected `second,rps`, found {line:?}")));
            };
            let (second, rate) = (second.trim(), rate.trim());
            if rps.is_empty() && second.parse::<f64>().is_err() {
                continue; // header
            }
            let second: usize = second
                .parse()
                .map_err(|_| err(format!("second {second:?} is not a whole number")))?;
            let rate: f64 = rate
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r >= 0.0)
                .ok_or_else(|| err(format!("rps {rate:?} is not a non-negative number")))?;
            if second < rps.len() {
                return Err(err(format!("second {second} does not increase")));
            }
            if second > 1_000_000 {
                return Err(err(format!("second {second} is beyond 1000000")));
            }
            let fill = rps.last().copied().unwrap_or(rate);
            rps.resize(second, fill);
            rps.push(rate);
        }
        if rps.is_empty() {
            return Err(SimulateError::EmptyTrace {
                trace: name.to_owned(),
            });
        }
        Ok(Self { rps })
    }
}

/// Knobs of the model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Model {
    /// Time from starting a replica until it serves traffic.
    pub startup_delay_ms: u64,
    /// Simulated wall clock of second 0, milliseconds since the epoch.
    pub start_ms: u64,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            startup_delay_ms: 2_000,
            start_ms: 1_700_000_000_000,
        }
    }
}

/// The state of one simulated second.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Second {
    /// Second of the trace.
    pub second: u64,
    /// Offered load.
    pub rps: f64,
    /// Replicas running (ready or starting) during this second.
    pub replicas: u32,
    /// Replicas serving traffic.
    pub ready: u32,
    /// Load per ready replica (`None` when no replica is ready).
    pub per_ready: Option<f64>,
    /// Load per ready replica exceeded the target (or load with nothing ready).
    pub under_provisioned: bool,
}

/// A change the policy made.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Second of the trace.
    pub second: u64,
    /// Count before.
    pub from: u32,
    /// Count after.
    pub to: u32,
    /// The decision's reason.
    pub reason: String,
}

/// Figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Policy name.
    pub policy: String,
    /// Seconds simulated.
    pub seconds: u64,
    /// Σ replicas running per second: the cost.
    pub replica_seconds: u64,
    /// Seconds in which load per ready replica exceeded the target.
    pub under_provisioned_seconds: u64,
    /// Longest run of consecutive under-provisioned seconds.
    pub longest_under_provisioned: u64,
    /// Number of changes of the count (flapping shows here).
    pub scale_events: u32,
    /// Highest count.
    pub peak: u32,
}

impl Summary {
    /// The figures of `policy` over `seconds`, before any second is recorded.
    fn empty(policy: String, seconds: u64) -> Self {
        Self {
            policy,
            seconds,
            replica_seconds: 0,
            under_provisioned_seconds: 0,
            longest_under_provisioned: 0,
            scale_events: 0,
            peak: 0,
        }
    }
}

/// One policy over one trace.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// The figures.
    pub summary: Summary,
    /// Every second.
    pub seconds: Vec<Second>,
    /// Every change.
    pub events: Vec<Event>,
}

/// Replays `trace` through `policy`, starting at `replicas.min` ready replicas (at least one).
///
/// # Errors
/// [`SimulateError::NoMetrics`] when the policy has nothing to feed the load to.
pub fn simulate(
    policy: &ScalingPolicy,
    trace: &Trace,
    model: &Model,
) -> Result<Run, SimulateError> {
    simulate_every(policy, trace, model, 1)
}

/// HPA's default `--horizontal-pod-autoscaler-sync-period`.
pub const HPA_SYNC_PERIOD_S: u64 = 15;

/// The original tool's loop period.
pub const ORIGINAL_LOOP_S: u64 = 2;

/// Like [`simulate`], with one evaluation every `period_s` seconds (seconds 0, N, 2N, …),
/// as a controller with that sync period.
///
/// # Errors
/// [`SimulateError::NoMetrics`] when the policy has nothing to feed the load to.
pub fn simulate_every(
    policy: &ScalingPolicy,
    trace: &Trace,
    model: &Model,
    period_s: u64,
) -> Result<Run, SimulateError> {
    let period_s = period_s.max(1);
    let spec = &policy.spec;
    let Some(first) = spec.metrics.first() else {
        return Err(SimulateError::NoMetrics {
            policy: policy.metadata.name.clone(),
        });
    };
    let target = first.target_per_replica();
    // ready_at_ms per running replica, oldest first.
    let mut pods: Vec<u64> = vec![model.start_ms; spec.replicas.min.max(1) as usize];
    let mut history = History::default();
    let mut tally = Tally::with_capacity(trace.rps.len());
    let mut events = Vec::new();
    let mut summary = Summary::empty(policy.metadata.name.clone(), trace.rps.len() as u64);
    for (s, &rps) in trace.rps.iter().enumerate() {
        let s = s as u64;
        let now_ms = model.start_ms + s * 1000;
        let current = u32::try_from(pods.len()).unwrap_or(u32::MAX);
        let ready = pods.iter().filter(|&&at| at <= now_ms).count();
        tally.second(&mut summary, s, rps, current, ready, target);
        let metrics = sim_metrics(spec, &trace.rps, s, &pods, now_ms);
        // The burst check runs between ticks too (the daemon's runs on every batch of
        // requests); at one evaluation per second every second is a tick anyway.
        let bursting = scaling::burst_count(&metrics)
            .is_some_and(|(n, _)| scaling::triggers(&spec.behavior.windows, current, n));
        if !s.is_multiple_of(period_s) && !bursting {
            continue;
        }
        let decision: Decision = scaling::decide(&DecisionInput {
            behavior: &spec.behavior,
            replicas: &spec.replicas,
            current,
            metrics: &metrics,
            history: &history,
            now_ms,
        });
        history.record(&decision, now_ms, &spec.behavior);
        let desired = decision.desired as usize;
        if desired != pods.len() {
            summary.scale_events += 1;
            events.push(Event {
                second: s,
                from: current,
                to: decision.desired,
                reason: decision.reason.clone(),
            });
            if desired > pods.len() {
                pods.resize(desired, now_ms + model.startup_delay_ms);
            } else {
                pods.truncate(desired); // newest (possibly still starting) stop first
            }
        }
    }
    Ok(Run {
        summary,
        seconds: tally.seconds,
        events,
    })
}

/// What the metrics of `spec` read at second `s` of `rps`: `requestRate` and
/// `loadBalancer` average over the stable window (the seconds up to and including `s`),
/// a `loadBalancer` metric's burst reading is second `s` itself (a trace's resolution is
/// one second), and `prometheus` reads second `s` (its query sets its own window).
fn sim_metrics(
    spec: &crate::policy::types::PolicySpec,
    rps: &[f64],
    s: u64,
    pods: &[u64],
    now_ms: u64,
) -> Vec<MetricInput> {
    let at = usize::try_from(s)
        .unwrap_or(usize::MAX)
        .min(rps.len().saturating_sub(1));
    let now = rps.get(at).copied().unwrap_or(0.0);
    let stable_s = spec.behavior.windows.stable_seconds.max(1) as usize;
    let from = (at + 1).saturating_sub(stable_s);
    let seen = &rps[from.min(at)..=at.min(rps.len().saturating_sub(1))];
    let smooth = if seen.is_empty() {
        now
    } else {
        seen.iter().sum::<f64>() / seen.len() as f64
    };
    let ready = pods.iter().filter(|&&at| at <= now_ms).count();
    spec.metrics
        .iter()
        .map(|m| {
            let (reading, burst) = match m {
                MetricSpec::RequestRate(_) => (
                    MetricReading::PerReplica(
                        pods.iter()
                            .map(|&at| (at <= now_ms).then(|| smooth / ready as f64))
                            .collect(),
                    ),
                    None,
                ),
                MetricSpec::Prometheus(_) => (MetricReading::Total(now), None),
                // The trace knows request rates only: concurrency replays as the rate
                // (one second of work per request would be the same figure).
                MetricSpec::LoadBalancer(_) => (
                    MetricReading::Total(smooth),
                    spec.behavior.windows.burst_enabled().then_some(now),
                ),
            };
            MetricInput {
                name: m.display_name(),
                target_per_replica: m.target_per_replica(),
                reading,
                burst,
            }
        })
        .collect()
}

/// `policy` with HPA's default behaviour (no `behavior`), decided every
/// [`HPA_SYNC_PERIOD_S`] seconds, named `hpa-defaults-15s`.
///
/// # Errors
/// [`SimulateError::NoMetrics`] when the policy has nothing to feed the load to.
pub fn hpa_defaults_baseline(
    policy: &ScalingPolicy,
    trace: &Trace,
    model: &Model,
) -> Result<Run, SimulateError> {
    let mut hpa = policy.clone();
    hpa.metadata.name = format!("hpa-defaults-{HPA_SYNC_PERIOD_S}s");
    hpa.spec.behavior = crate::policy::types::Behavior::default();
    // HPA reads a rate per sync and knows no burst mode.
    hpa.spec.behavior.windows = crate::policy::types::Windows {
        stable_seconds: 1,
        burst_threshold: 0.0,
        ..crate::policy::types::Windows::default()
    };
    simulate_every(&hpa, trace, model, HPA_SYNC_PERIOD_S)
}

/// The original tool on `trace`, with `policy`'s replica bounds and the tool's fixed
/// 10 / 5 req/s thresholds ([`crate::policy::types::Threshold::default`]), named
/// `original-2s-loop`.
///
/// Its loop, as it ran: scrape every replica's request counter, sleep
/// [`ORIGINAL_LOOP_S`], then decide on that (now 2 s old) data: +1 replica when every
/// reading is above the upper rate, −1 when every reading is below the lower one. A
/// reading is the counter's increase since the previous scrape of that replica; a
/// replica's first scrape (or one while it is still starting) reads 0, which holds the
/// next scale-up for a loop. A new replica is put behind nginx at once, without a
/// readiness check: until it serves, the ready replicas carry the whole load (nginx
/// passes on the refused connections), so `ready` counts only serving replicas.
pub fn original_tool_baseline(policy: &ScalingPolicy, trace: &Trace, model: &Model) -> Run {
    let bounds = crate::policy::types::Threshold::default();
    let (min, max) = (policy.spec.replicas.min.max(1), policy.spec.replicas.max);
    let target = policy
        .spec
        .metrics
        .first()
        .map_or(bounds.upper_per_replica, MetricSpec::target_per_replica);
    let name = "original-2s-loop".to_owned();
    // Per replica: (serving from ms, requests served so far, counter at the last scrape).
    let mut pods: Vec<(u64, f64, Option<f64>)> = vec![(model.start_ms, 0.0, None); min as usize];
    let mut readings: Vec<f64> = Vec::new();
    let mut tally = Tally::with_capacity(trace.rps.len());
    let mut events = Vec::new();
    let mut summary = Summary::empty(name, trace.rps.len() as u64);
    for (s, &rps) in trace.rps.iter().enumerate() {
        let s = s as u64;
        let now_ms = model.start_ms + s * 1000;
        let current = u32::try_from(pods.len()).unwrap_or(u32::MAX);
        let ready = pods.iter().filter(|p| p.0 <= now_ms).count();
        tally.second(&mut summary, s, rps, current, ready, target);
        if s.is_multiple_of(ORIGINAL_LOOP_S) {
            // Decide on the readings of the previous scrape (taken one loop ago)…
            let count = pods.len() as u32;
            if !readings.is_empty() && readings.len() == pods.len() {
                let to = if readings.iter().all(|&r| r > bounds.upper_per_replica) && count < max {
                    count + 1
                } else if readings.iter().all(|&r| r < bounds.lower_per_replica) && count > min {
                    count - 1
                } else {
                    count
                };
                if to != count {
                    summary.scale_events += 1;
                    events.push(Event {
                        second: s,
                        from: count,
                        to,
                        reason: format!(
                            "every reading {} {} req/s: {:?}",
                            if to > count { "above" } else { "below" },
                            if to > count {
                                bounds.upper_per_replica
                            } else {
                                bounds.lower_per_replica
                            },
                            readings
                        ),
                    });
                    if to > count {
                        pods.push((now_ms + model.startup_delay_ms.max(1000), 0.0, None));
                    } else {
                        pods.pop();
                    }
                }
            }
            // …then scrape every replica again: the increase since its last scrape, per
            // second; 0 on a replica's first scrape or while it is not serving.
            readings = pods
                .iter_mut()
                .map(|p| {
                    let serving = p.0 <= now_ms;
                    let reading = match (serving, p.2) {
                        (true, Some(last)) => (p.1 - last) / ORIGINAL_LOOP_S as f64,
                        _ => 0.0,
                    };
                    p.2 = serving.then_some(p.1);
                    reading
                })
                .collect();
        }
        // This second's load, served by the replicas that serve.
        if let Some(each) = tally.last_per_ready() {
            for p in pods.iter_mut().filter(|p| p.0 <= now_ms) {
                p.1 += each;
            }
        }
    }
    Run {
        summary,
        seconds: tally.seconds,
        events,
    }
}

/// The per-second record every strategy keeps: the timeline and the under-provisioned
/// streak, summed into the run's summary.
struct Tally {
    seconds: Vec<Second>,
    streak: u64,
}

impl Tally {
    fn with_capacity(n: usize) -> Self {
        Self {
            seconds: Vec::with_capacity(n),
            streak: 0,
        }
    }

    /// Records second `s`: `rps` of load on `ready` of `current` replicas at `target` each.
    fn second(
        &mut self,
        summary: &mut Summary,
        s: u64,
        rps: f64,
        current: u32,
        ready: usize,
        target: f64,
    ) {
        let per_ready = (ready > 0).then(|| rps / ready as f64);
        let under = per_ready.map_or(rps > 0.0, |load| load > target);
        if under {
            self.streak += 1;
            summary.under_provisioned_seconds += 1;
            summary.longest_under_provisioned = summary.longest_under_provisioned.max(self.streak);
        } else {
            self.streak = 0;
        }
        summary.replica_seconds += u64::from(current);
        summary.peak = summary.peak.max(current);
        self.seconds.push(Second {
            second: s,
            rps,
            replicas: current,
            ready: u32::try_from(ready).unwrap_or(u32::MAX),
            per_ready,
            under_provisioned: under,
        });
    }

    /// The load per ready replica of the last second recorded.
    fn last_per_ready(&self) -> Option<f64> {
        self.seconds.last().and_then(|s| s.per_ready)
    }
}

/// Draws load (as replicas needed at `target`) and every run's ready replicas over time
/// as SVG text.
///
/// # Errors
/// [`SimulateError::Plot`] when the plotting library fails.
pub fn plot_svg(
    title: &str,
    trace: &Trace,
    target: f64,
    runs: &[Run],
) -> Result<String, SimulateError> {
    use plotters::prelude::*;

    let perr = |e: &dyn std::fmt::Display| SimulateError::Plot {
        message: e.to_string(),
    };
    let seconds = trace.rps.len() as u64;
    let needed = |rps: f64| if target > 0.0 { rps / target } else { 0.0 };
    let top = runs
        .iter()
        .map(|r| f64::from(r.summary.peak))
        .chain(trace.rps.iter().map(|&r| needed(r)))
        .fold(1.0, f64::max)
        * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| perr(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0..seconds.max(1), 0.0..top)
            .map_err(|e| perr(&e))?;
        chart
            .configure_mesh()
            .x_desc("second")
            .y_desc("replicas")
            .draw()
            .map_err(|e| perr(&e))?;
        chart
            .draw_series(LineSeries::new(
                trace
                    .rps
                    .iter()
                    .enumerate()
                    .map(|(s, &r)| (s as u64, needed(r))),
                BLACK.stroke_width(1),
            ))
            .map_err(|e| perr(&e))?
            .label(format!("load / target ({target} per replica)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        for (i, run) in runs.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    run.seconds.iter().map(|s| (s.second, f64::from(s.ready))),
                    color.stroke_width(2),
                ))
                .map_err(|e| perr(&e))?
                .label(format!("{} ready", run.summary.policy))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| perr(&e))?;
        root.present().map_err(|e| perr(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::types::{Behavior, Strategy};

    fn policy(name: &str, behavior: Behavior) -> ScalingPolicy {
        let yaml = format!(
            "apiVersion: autoscaler.dev/v1alpha1\nkind: ScalingPolicy\nmetadata: {{name: {name}}}\n\
             spec:\n  template: {{image: demo, containerPort: 8000}}\n  ports: {{range: 8001-8099}}\n  \
             loadBalancer: {{listen: '127.0.0.1:8080'}}\n  replicas: {{min: 1, max: 10}}\n  \
             metrics: [{{requestRate: {{targetPerReplica: 10}}}}]\n"
        );
        let mut p: ScalingPolicy = serde_saphyr::from_str(&yaml).unwrap();
        p.spec.behavior = behavior;
        // These replay the per-second rate of a 1 s tick (the daemon before windows).
        p.spec.behavior.windows.stable_seconds = 1;
        p
    }

    /// A policy on the load-balancer signal with `windows`.
    fn lb_policy(windows: crate::policy::types::Windows) -> ScalingPolicy {
        let mut p = policy("lb", Behavior::default());
        p.spec.metrics =
            serde_saphyr::from_str("[{loadBalancer: {signal: requestRate, targetPerReplica: 10}}]")
                .unwrap();
        p.spec.behavior.windows = windows;
        p
    }

    #[test]
    fn burst_mode_takes_a_step_at_once_where_the_rate_policies_would_not() {
        use crate::policy::types::Windows;
        let model = Model::default();
        let burst = simulate(&lb_policy(Windows::default()), &step(), &model).unwrap();
        let off = Windows {
            burst_threshold: 0.0,
            ..Windows::default()
        };
        let stable = simulate(&lb_policy(off), &step(), &model).unwrap();
        let delay_s = model.startup_delay_ms.div_ceil(1000).max(1);
        assert_eq!(
            time_to_ready(&burst, 9),
            Some(10 + delay_s),
            "{:?}",
            burst.events
        );
        assert_eq!(burst.events.len(), 1, "one step 1 → 9: {:?}", burst.events);
        assert!(
            burst.events[0].reason.contains("burst"),
            "{:?}",
            burst.events
        );
        // Without burst the 6 s window and +4 Pods per 15 s take far longer.
        let slow = time_to_ready(&stable, 9).expect("reaches 9");
        assert!(slow >= 10 + delay_s + 10, "{slow}: {:?}", stable.events);
    }

    #[test]
    fn the_stable_window_keeps_a_noisy_steady_load_at_one_count() {
        use crate::policy::types::Windows;
        // 60 req/s on average, ±15 from one second to the next.
        let rps: Vec<f64> = (0..120)
            .map(|s| if s % 2 == 0 { 45.0 } else { 75.0 })
            .collect();
        let trace = Trace { rps };
        let mut steady = policy("steady", Behavior::default());
        steady.spec.replicas.min = 6;
        steady.spec.behavior.windows = Windows {
            burst_threshold: 0.0,
            ..Windows::default()
        };
        let smooth = simulate(&steady, &trace, &Model::default()).unwrap();
        steady.spec.behavior.windows.stable_seconds = 1;
        let noisy = simulate(&steady, &trace, &Model::default()).unwrap();
        assert_eq!(smooth.summary.scale_events, 0, "{:?}", smooth.events);
        assert_eq!(smooth.summary.peak, 6);
        assert!(
            noisy.summary.peak > 6,
            "a 1 s rate chases the noise: {:?}",
            noisy.events
        );
    }

    fn step() -> Trace {
        let mut rps = vec![5.0; 10];
        rps.extend([90.0; 120]);
        Trace { rps }
    }

    /// First second at which `ready` replicas serve.
    fn time_to_ready(run: &Run, ready: u32) -> Option<u64> {
        run.seconds
            .iter()
            .find(|s| s.ready >= ready)
            .map(|s| s.second)
    }

    #[test]
    fn step_with_hpa_defaults_reaches_nine_ready_within_one_rate_period() {
        let run = simulate(
            &policy("hpa", Behavior::default()),
            &step(),
            &Model::default(),
        )
        .unwrap();
        // s10: 1 → 5 (+4 Pods); s25: 5 → 9 (period over); ready 2 s later.
        assert_eq!(time_to_ready(&run, 9), Some(27), "{:?}", run.events);
        assert_eq!(run.summary.peak, 9);
        assert_eq!(run.events.len(), 2);
        assert!(run.summary.under_provisioned_seconds >= 17);
    }

    /// HPA rules that let a step through at once: +100 Pods per second, no window.
    fn tuned() -> Behavior {
        let yaml = "scaleUp: {policies: [{type: Pods, value: 100, periodSeconds: 1}]}\n\
                    scaleDown: {stabilizationWindowSeconds: 60}\n";
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn threshold_rule_needs_many_more_seconds_than_a_tuned_policy() {
        let threshold = Behavior {
            strategy: Strategy::Threshold,
            ..Behavior::default()
        };
        let thr = simulate(&policy("threshold", threshold), &step(), &Model::default()).unwrap();
        let fast = simulate(&policy("tuned", tuned()), &step(), &Model::default()).unwrap();
        // Threshold: +1 per evaluation, then holds while the new replica has no data
        // (2 s start-up), so 8 steps of 2 s; tuned: all 8 at once, ready 2 s later.
        assert_eq!(time_to_ready(&thr, 9), Some(10 + 8 * 2), "{:?}", thr.events);
        assert_eq!(time_to_ready(&fast, 9), Some(12), "{:?}", fast.events);
        assert_eq!(thr.events.len(), 8);
        assert_eq!(fast.events.len(), 1);
        assert!(
            thr.summary.under_provisioned_seconds >= 5 * fast.summary.under_provisioned_seconds,
            "{:?} vs {:?}",
            thr.summary,
            fast.summary
        );
    }

    #[test]
    fn scale_down_waits_for_window_and_cost_counts_every_replica() {
        let mut rps = vec![90.0; 30];
        rps.extend(vec![0.0; 400]);
        let run = simulate(
            &policy("hpa", Behavior::default()),
            &Trace { rps },
            &Model::default(),
        )
        .unwrap();
        let down = run.events.iter().find(|e| e.to < e.from).unwrap();
        assert!(down.second >= 300, "{down:?}");
        assert_eq!(run.seconds.last().unwrap().replicas, 1);
        let sum: u64 = run.seconds.iter().map(|s| u64::from(s.replicas)).sum();
        assert_eq!(run.summary.replica_seconds, sum);
    }

    #[test]
    fn zero_startup_delay_serves_from_the_next_second() {
        let model = Model {
            startup_delay_ms: 0,
            ..Model::default()
        };
        let run = simulate(&policy("hpa", Behavior::default()), &step(), &model).unwrap();
        // Started at s25 after that second's sample: serves from s26.
        assert_eq!(time_to_ready(&run, 9), Some(26));
    }

    #[test]
    fn trace_parsing_accepts_header_comments_and_gaps_and_rejects_garbage() {
        let t = Trace::parse("t.csv", "second,rps\n# step\n0,5\n1,6\n\n4,90\n").unwrap();
        assert_eq!(t.rps, vec![5.0, 6.0, 6.0, 6.0, 90.0]);
        for (text, line) in [
            ("0,5\n0,6\n", 2),
            ("0,5\n1,-1\n", 2),
            ("0,5\n1,NaN\n", 2),
            ("0,5\n1.5,3\n", 2),
            ("second,rps\n0;5\n", 2),
        ] {
            match Trace::parse("t.csv", text) {
                Err(SimulateError::ParseTrace { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(
            Trace::parse("t.csv", "second,rps\n"),
            Err(SimulateError::EmptyTrace { .. })
        ));
    }

    #[test]
    fn plot_is_svg_with_one_line_per_run_plus_load() {
        let runs = [
            simulate(
                &policy("hpa", Behavior::default()),
                &step(),
                &Model::default(),
            )
            .unwrap(),
            simulate(&policy("tuned", tuned()), &step(), &Model::default()).unwrap(),
        ];
        let svg = plot_svg("step", &step(), 10.0, &runs).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("hpa ready") && svg.contains("tuned ready"));
        // Each run: its series and its legend mark, drawn 2 px wide in its own colour.
        let wide = svg.matches(r#"stroke-width="2""#).count();
        assert_eq!(wide, 2 * runs.len(), "{svg}");
    }

    #[test]
    fn hpa_baseline_decides_only_on_its_15_second_sync() {
        let tuned = policy("tuned", tuned());
        let run = hpa_defaults_baseline(&tuned, &step(), &Model::default()).unwrap();
        assert_eq!(run.summary.policy, "hpa-defaults-15s");
        assert!(!run.events.is_empty());
        assert!(
            run.events.iter().all(|e| e.second % HPA_SYNC_PERIOD_S == 0),
            "{:?}",
            run.events
        );
        // s15: 1 → 5 (+4 Pods), s30: 5 → 9; ready 2 s later. At a 1 s sync: s27.
        assert_eq!(time_to_ready(&run, 9), Some(32), "{:?}", run.events);
    }

    #[test]
    fn original_tool_adds_one_replica_per_two_loops_and_reads_zero_first() {
        let run = original_tool_baseline(&policy("x", tuned()), &step(), &Model::default());
        assert_eq!(run.summary.policy, "original-2s-loop");
        assert!(
            run.events.iter().all(|e| e.to == e.from + 1),
            "{:?}",
            run.events
        );
        // +1 per decision, and every new replica holds the next scale-up for a loop (its
        // first scrape reads 0), so additions are at least two loops apart.
        let gaps: Vec<u64> = run
            .events
            .windows(2)
            .map(|w| w[1].second - w[0].second)
            .collect();
        assert!(gaps.iter().all(|&g| g >= 2 * ORIGINAL_LOOP_S), "{gaps:?}");
        let nine = time_to_ready(&run, 9).unwrap();
        let hpa = time_to_ready(
            &simulate(
                &policy("hpa", Behavior::default()),
                &step(),
                &Model::default(),
            )
            .unwrap(),
            9,
        )
        .unwrap();
        assert!(nine > hpa, "original {nine} s vs HPA at 1 s {hpa} s");
    }

    #[test]
    fn policy_without_metrics_is_an_error() {
        let mut p = policy("bare", Behavior::default());
        p.spec.metrics.clear();
        assert!(matches!(
            simulate(&p, &step(), &Model::default()),
            Err(SimulateError::NoMetrics { .. })
        ));
    }
}
