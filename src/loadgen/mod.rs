//! `autoscaler load`: an open-loop (scheduled rate) or closed-loop (fixed concurrency) HTTP load generator.
//!
//! # Layout
//! - [`profile`]: rate profiles and the open-loop send schedule (pure).
//! - [`client`]: keep-alive HTTP/1.1 pool with the one safe retry on a closed idle connection.
//! - `wire`: closed-loop workers' own connections, HTTP/1.1 read in place (same retry rule).
//! - [`report`]: outcome counting, latency histograms, the per-second timeline, the report.
//!
//! Open loop: request `n` leaves at its scheduled time whatever earlier requests are
//! doing, and its latency is measured from that scheduled time, so a stalled server shows
//! up as latency instead of as a lower send rate (no coordinated omission). Closed loop:
//! `concurrency` workers each send the next request when the previous one finished.

pub mod client;
pub mod profile;
pub mod report;
mod wire;

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::Uri;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use client::Outcome;
pub use profile::{Profile, ProfileError, parse_duration};
pub use report::{Failures, Latency, LoadReport, Second};

use client::Client;
use report::Recorder;

/// Why a load run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target URL is not an absolute `http://host[:port]/path` URL.
    #[error("invalid target URL {url:?}: {reason}")]
    ParseUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target host name did not resolve to an address.
    #[error("cannot resolve {host:?}")]
    Resolve {
        /// `host:port` as looked up.
        host: String,
        /// The resolver's error, if it gave one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A trace file could not be read.
    #[error("cannot read trace file {path}")]
    ReadTrace {
        /// The trace file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A trace file did not parse.
    #[error("invalid trace file {path}")]
    ParseTrace {
        /// The trace file.
        path: PathBuf,
        /// The parse error with its line.
        #[source]
        source: ProfileError,
    },
    /// The configuration cannot run (zero concurrency, zero timeout).
    #[error("invalid load configuration: {reason}")]
    Configure {
        /// What is wrong.
        reason: String,
    },
}

/// Open loop (a rate profile) or closed loop (a number of concurrent workers).
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Send on the profile's schedule whatever the responses do.
    Open(Profile),
    /// Keep `concurrency` requests in flight, each worker sending when its last one ended.
    Closed {
        /// Number of workers (and connections).
        concurrency: usize,
    },
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target, `http://host[:port]/path?query` (no TLS).
    pub url: String,
    /// Open or closed loop.
    pub mode: Mode,
    /// Hard bound on the sending window; requests in flight then get up to `timeout` to finish.
    pub duration: Duration,
    /// Stop after this many requests have been sent.
    pub max_requests: Option<u64>,
    /// Per-request timeout, connect to last body byte (the retry included).
    pub timeout: Duration,
    /// Cap on requests in flight, hence on open connections (open loop; unlimited when `None`).
    pub connections: Option<usize>,
    /// Draw a progress line on stderr when stderr is a terminal.
    pub progress: bool,
}

impl LoadConfig {
    /// An open-loop run of `profile` against `url` for `duration`, with a 2 s timeout.
    pub fn open(url: impl Into<String>, profile: Profile, duration: Duration) -> LoadConfig {
        LoadConfig {
            url: url.into(),
            mode: Mode::Open(profile),
            duration,
            max_requests: None,
            timeout: Duration::from_secs(2),
            connections: None,
            progress: false,
        }
    }

    /// A closed-loop run with `concurrency` workers against `url` for `duration`, with a 2 s timeout.
    pub fn closed(url: impl Into<String>, concurrency: usize, duration: Duration) -> LoadConfig {
        LoadConfig {
            mode: Mode::Closed { concurrency },
            ..LoadConfig::open(url, Profile::Constant(0.0), duration)
        }
    }
}

/// Reads and parses a `second,rps` CSV trace file into a profile.
pub fn read_trace(path: &Path) -> Result<Profile, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::ReadTrace {
        path: path.to_owned(),
        source,
    })?;
    Profile::parse_trace(&text).map_err(|source| LoadError::ParseTrace {
        path: path.to_owned(),
        source,
    })
}

/// Runs a load test until the schedule, `duration` or `max_requests` ends it, or `shutdown` resolves.
///
/// # Guarantees
/// Returns within `duration + timeout` (plus scheduling noise) after it starts; after
/// `shutdown` resolves no new request is sent and in-flight ones get up to `timeout`.
///
/// # Errors
/// Only for a run that cannot start: a bad URL, an unresolvable host, a zero concurrency
/// or timeout. Request failures are counted in the report, never returned as errors.
pub async fn run(config: LoadConfig, shutdown: impl Future) -> Result<LoadReport, LoadError> {
    let client = Arc::new(build_client(&config).await?);
    let recorder = Arc::new(Mutex::new(Recorder::new()));
    let start = Instant::now();
    let progress = config
        .progress
        .then(|| spawn_progress(Arc::clone(&recorder), start));
    let (mode, send_window) = match &config.mode {
        Mode::Open(profile) => {
            let window = run_open(&config, profile, &client, &recorder, start, shutdown).await;
            ("open", window)
        }
        Mode::Closed { concurrency } => {
            let window =
                run_closed(&config, *concurrency, &client, &recorder, start, shutdown).await;
            ("closed", window)
        }
    };
    let elapsed = start.elapsed();
    if let Some((stop, task)) = progress {
        let _ = stop.send(());
        let _ = task.await;
    }
    let report = match recorder.lock() {
        Ok(r) => r.report(mode, send_window, elapsed),
        Err(poisoned) => poisoned.into_inner().report(mode, send_window, elapsed),
    };
    Ok(report)
}

async fn build_client(config: &LoadConfig) -> Result<Client, LoadError> {
    let url_err = |reason: &str| LoadError::ParseUrl {
        url: config.url.clone(),
        reason: reason.to_owned(),
    };
    if config.timeout.is_zero() {
        return Err(LoadError::Configure {
            reason: "the timeout must be above zero".into(),
        });
    }
    if matches!(config.mode, Mode::Closed { concurrency: 0 }) || config.connections == Some(0) {
        return Err(LoadError::Configure {
            reason: "concurrency and connections must be at least 1".into(),
        });
    }
    let uri: Uri = config.url.parse().map_err(|_| url_err("not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err(url_err("only http:// is supported")),
        None => return Err(url_err("missing http:// scheme")),
    }
    let authority = uri.authority().ok_or_else(|| url_err("missing host"))?;
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(80);
    let lookup = format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    );
    let addr = tokio::net::lookup_host(&lookup)
        .await
        .map_err(|source| LoadError::Resolve {
            host: lookup.clone(),
            source: Some(source),
        })?
        .next()
        .ok_or_else(|| LoadError::Resolve {
            host: lookup.clone(),
            source: None,
        })?;
    let path: Uri = uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .parse()
        .map_err(|_| url_err("bad path"))?;
    let host_header = hyper::header::HeaderValue::from_str(authority.as_str())
        .map_err(|_| url_err("host is not a valid header value"))?;
    Ok(Client::new(
        addr,
        path,
        host_header,
        config.timeout,
        config.connections,
    ))
}

fn second_of(start: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(start).as_secs()
}

fn with<R>(recorder: &Mutex<Recorder>, f: impl FnOnce(&mut Recorder) -> R) -> R {
    match recorder.lock() {
        Ok(mut r) => f(&mut r),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Open loop; returns how long sending went on.
async fn run_open(
    config: &LoadConfig,
    profile: &Profile,
    client: &Arc<Client>,
    recorder: &Arc<Mutex<Recorder>>,
    start: Instant,
    shutdown: impl Future,
) -> Duration {
    let mut tasks = JoinSet::new();
    let mut stopped = false;
    tokio::pin!(shutdown);
    for offset in profile.schedule(config.duration, config.max_requests) {
        let due = start + offset;
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = &mut shutdown => { stopped = true; }
            }
        }
        if stopped {
            break;
        }
        let second = second_of(start, due);
        with(recorder, |r| r.sent(second));
        let client = Arc::clone(client);
        let recorder = Arc::clone(recorder);
        tasks.spawn(async move {
            let attempted = client.get().await;
            let latency = due.elapsed();
            with(&recorder, |r| {
                r.finished(second, attempted.outcome, latency, attempted.retried)
            });
        });
        while tasks.try_join_next().is_some() {}
    }
    let window = start.elapsed().min(config.duration);
    drain(tasks, config.timeout).await;
    window
}

/// Closed loop; returns how long sending went on.
async fn run_closed(
    config: &LoadConfig,
    concurrency: usize,
    client: &Arc<Client>,
    recorder: &Arc<Mutex<Recorder>>,
    start: Instant,
    shutdown: impl Future,
) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let tickets = Arc::new(AtomicU64::new(0));
    let deadline = start + config.duration;
    let max = config.max_requests.unwrap_or(u64::MAX);
    let worker = {
        let (client, recorder, stop, tickets) = (
            Arc::clone(client),
            Arc::clone(recorder),
            Arc::clone(&stop),
            Arc::clone(&tickets),
        );
        move || {
            let (client, recorder, stop, tickets) = (
                Arc::clone(&client),
                Arc::clone(&recorder),
                Arc::clone(&stop),
                Arc::clone(&tickets),
            );
            async move {
                let mut session = client.session();
                let mut batch = Batch::new(&recorder);
                loop {
                    let now = Instant::now();
                    if stop.load(Ordering::Relaxed)
                        || now >= deadline
                        || tickets.fetch_add(1, Ordering::Relaxed) >= max
                    {
                        return;
                    }
                    let attempted = session.get().await;
                    batch.push(second_of(start, now), attempted, now);
                }
            }
        }
    };
    // One single-threaded runtime per core, each with its share of the workers (as wrk
    // runs one event loop per thread): no work stealing, no cross-thread wake-ups.
    let mut done = Vec::new();
    let mut tasks = JoinSet::new();
    match per_core_runtimes(concurrency) {
        Some(runtimes) => {
            let n = runtimes.len();
            for (i, runtime) in runtimes.into_iter().enumerate() {
                let share = concurrency / n + usize::from(i < concurrency % n);
                let workers: Vec<_> = (0..share).map(|_| worker()).collect();
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                done.push(rx);
                let spawned =
                    std::thread::Builder::new()
                        .name(format!("load-{i}"))
                        .spawn(move || {
                            runtime.block_on(async move {
                                let mut set = JoinSet::new();
                                for w in workers {
                                    set.spawn(w);
                                }
                                while set.join_next().await.is_some() {}
                            });
                            drop(tx);
                        });
                if let Err(err) = spawned {
                    tracing::warn!(%err, "cannot start a load thread; running its workers here");
                    for _ in 0..share {
                        tasks.spawn(worker());
                    }
                }
            }
        }
        None => {
            for _ in 0..concurrency {
                tasks.spawn(worker());
            }
        }
    }
    let all_done = async {
        while tasks.join_next().await.is_some() {}
        for rx in done {
            let _ = rx.await;
        }
    };
    tokio::pin!(all_done);
    tokio::pin!(shutdown);
    let mut window = None;
    tokio::select! {
        _ = &mut all_done => {}
        _ = &mut shutdown => {
            stop.store(true, Ordering::Relaxed);
            window = Some(start.elapsed());
            // Each worker finishes its request in flight, bounded by the timeout.
            let _ = tokio::time::timeout(config.timeout + Duration::from_secs(1), &mut all_done).await;
        }
    }
    window.unwrap_or_else(|| start.elapsed().min(config.duration))
}

/// One current-thread runtime per available core (at most one per worker), or `None`
/// when there is one core or a runtime cannot be built (the caller's runtime is used).
fn per_core_runtimes(concurrency: usize) -> Option<Vec<tokio::runtime::Runtime>> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let n = cores.min(concurrency);
    if n < 2 {
        return None;
    }
    (0..n)
        .map(|_| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| tracing::warn!(%err, "cannot build a load runtime"))
                .ok()
        })
        .collect()
}

/// A closed-loop worker's finished requests, handed to the shared recorder in batches.
///
/// One lock per [`Batch::CAP`] requests or [`Batch::EVERY`], whichever comes first, instead
/// of one per request; whatever is left is recorded when the batch is dropped (the worker
/// ended or was abandoned after the timeout).
struct Batch<'a> {
    recorder: &'a Mutex<Recorder>,
    done: Vec<(u64, client::Attempted, Duration)>,
    since: Instant,
}

impl<'a> Batch<'a> {
    const CAP: usize = 64;
    const EVERY: Duration = Duration::from_millis(100);

    fn new(recorder: &'a Mutex<Recorder>) -> Batch<'a> {
        Batch {
            recorder,
            done: Vec::with_capacity(Self::CAP),
            since: Instant::now(),
        }
    }

    /// Records a request sent in `second` at `sent_at` that ended now.
    fn push(&mut self, second: u64, attempted: client::Attempted, sent_at: Instant) {
        let now = Instant::now();
        self.done
            .push((second, attempted, now.duration_since(sent_at)));
        if self.done.len() >= Self::CAP || now.duration_since(self.since) >= Self::EVERY {
            self.flush();
            self.since = now;
        }
    }

    fn flush(&mut self) {
        if self.done.is_empty() {
            return;
        }
        with(self.recorder, |r| {
            for (second, attempted, latency) in self.done.drain(..) {
                r.sent(second);
                r.finished(second, attempted.outcome, latency, attempted.retried);
            }
        });
    }
}

impl Drop for Batch<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Waits for in-flight requests; each is bounded by the timeout, so this is too.
async fn drain(mut tasks: JoinSet<()>, timeout: Duration) {
    let bound = timeout + Duration::from_secs(1);
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(bound, all).await.is_err() {
        tracing::warn!("requests still in flight after the timeout; abandoning them");
    }
}

/// Draws the live progress line on a terminal until told to stop, then clears it.
fn spawn_progress(
    recorder: Arc<Mutex<Recorder>>,
    start: Instant,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut last = (0u64, start);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stop => {
                    bar.finish_and_clear();
                    return;
                }
            }
            let snap = with(&recorder, |r| r.snapshot());
            let now = Instant::now();
            let dt = now.duration_since(last.1).as_secs_f64();
            let rate = if dt > 0.0 {
                (snap.sent - last.0) as f64 / dt
            } else {
                0.0
            };
            last = (snap.sent, now);
            bar.set_message(format!(
                "{:>5.1}s  sent {}  ok {}  failed {}  {:.0} req/s  p99 {:.2} ms",
                start.elapsed().as_secs_f64(),
                snap.sent,
                snap.ok,
                snap.failed,
                rate,
                snap.p99_ms
            ));
            bar.tick();
        }
    });
    (stop_tx, task)
}
