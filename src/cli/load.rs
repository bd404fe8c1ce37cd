//! `autoscaler load`: the traffic generator's command line, thin over [`crate::load`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::loadgen::{self, LoadConfig, Mode, Profile};

/// `load --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler load --url http://127.0.0.1:8080/ --rps 200 --duration 60s
  autoscaler load --url http://127.0.0.1:8080/ --profile 5@10s,90@30s,5@60s --json
  autoscaler load --url http://127.0.0.1:8080/ --concurrency 64 --duration 10s --max-error-rate 0.01";

/// Arguments of `autoscaler load` (boxed so the subcommand enum stays small).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    inner: Box<LoadArgs>,
}

/// The flags of `autoscaler load`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("shape").required(true).args(["rps", "profile", "ramp", "trace", "concurrency"]))]
pub struct LoadArgs {
    /// Target URL (http only), e.g. http://127.0.0.1:8080/.
    #[arg(long)]
    pub url: String,
    /// Open loop at a constant rate, requests per second.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Open loop in steps RATE@DURATION,..., e.g. "5@10s,90@30s,5@60s".
    #[arg(long)]
    pub profile: Option<String>,
    /// Open loop on a linear ramp FROM:TO@DURATION, e.g. "5:90@60s" (then holds TO).
    #[arg(long)]
    pub ramp: Option<String>,
    /// Open loop following a CSV trace of `second,rps` rows.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Closed loop with N concurrent workers (maximum throughput).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Sending window (default: the profile's length, else 60s).
    #[arg(long, value_parser = loadgen::parse_duration)]
    pub duration: Option<Duration>,
    /// Stop after N requests.
    #[arg(long)]
    pub max_requests: Option<u64>,
    /// Per-request timeout.
    #[arg(long, default_value = "2s", value_parser = loadgen::parse_duration)]
    pub timeout: Duration,
    /// Cap on concurrent requests / open connections in open-loop mode.
    #[arg(long)]
    pub connections: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a per-second timeline CSV (t,sent,ok,failed,p50_ms,p99_ms).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Exit with code 1 when failed/completed exceeds this fraction (e.g. 0.01).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
}

/// Runs the subcommand: 0 done, 1 every request failed or the error rate exceeded
/// `--max-error-rate`, 2 bad arguments or could not start.
pub fn run(args: Args) -> ExitCode {
    match run_inner(*args.inner) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("autoscaler load: {}", super::exit::describe_anyhow(&err));
            super::Exit::Invalid.into()
        }
    }
}

fn profile(args: &LoadArgs) -> anyhow::Result<Mode> {
    Ok(
        match (
            &args.rps,
            &args.profile,
            &args.ramp,
            &args.trace,
            args.concurrency,
        ) {
            (Some(rps), ..) if rps.is_finite() && *rps >= 0.0 => {
                Mode::Open(Profile::Constant(*rps))
            }
            (Some(rps), ..) => anyhow::bail!("--rps {rps} must be a finite number >= 0"),
            (_, Some(p), ..) => Mode::Open(Profile::parse_steps(p)?),
            (_, _, Some(r), ..) => Mode::Open(Profile::parse_ramp(r)?),
            (_, _, _, Some(path), _) => Mode::Open(loadgen::read_trace(path)?),
            (_, _, _, _, Some(concurrency)) => Mode::Closed { concurrency },
            _ => anyhow::bail!("give one of --rps, --profile, --ramp, --trace or --concurrency"),
        },
    )
}

fn run_inner(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if let Some(rate) = args.max_error_rate
        && !(0.0..=1.0).contains(&rate)
    {
        anyhow::bail!("--max-error-rate {rate} must be between 0 and 1");
    }
    let mode = profile(&args)?;
    let duration = args
        .duration
        .or(match &mode {
            Mode::Open(p) => p.length(),
            Mode::Closed { .. } => None,
        })
        .unwrap_or(Duration::from_secs(60));
    let config = LoadConfig {
        url: args.url.clone(),
        mode,
        duration,
        max_requests: args.max_requests,
        timeout: args.timeout,
        connections: args.connections,
        progress: true,
    };
    let runtime = super::tokio_runtime()?;
    let report = runtime.block_on(loadgen::run(config, async {
        let _ = tokio::signal::ctrl_c().await;
    }))?;
    if let Some(path) = &args.out {
        std::fs::write(path, report.timeline_csv())
            .map_err(|e| anyhow::anyhow!("cannot write timeline {}: {e}", path.display()))?;
    }
    if args.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::out!("{}", report.human());
    }
    if report.sent > 0 && report.ok == 0 {
        eprintln!(
            "autoscaler load: every request failed ({} of {}: {} connect, {} timeout, {} 5xx, {} 4xx, {} other)",
            report.failed,
            report.sent,
            report.failures.connect,
            report.failures.timeout,
            report.failures.status_5xx,
            report.failures.status_4xx,
            report.failures.other
        );
        return Ok(super::Exit::Failed.into());
    }
    if let Some(max) = args.max_error_rate
        && report.error_rate() > max
    {
        eprintln!(
            "autoscaler load: error rate {:.4} exceeds --max-error-rate {max}",
            report.error_rate()
        );
        return Ok(super::Exit::Failed.into());
    }
    Ok(super::Exit::Ok.into())
}
