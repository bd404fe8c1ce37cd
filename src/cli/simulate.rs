//! `autoscaler simulate`: replay a request-rate trace through one or more policies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use comfy_table::Table;
use serde::Serialize;

use crate::policy::types::ScalingPolicy;
use crate::simulate::{self, Model, Run, Trace};

/// `simulate --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler simulate -f policy.yaml --trace examples/traces/step.csv
  autoscaler simulate -f fast.yaml -f slow.yaml --trace examples/traces/step.csv --plot out.svg
  autoscaler simulate -f policies.yaml --trace trace.csv --json   # every policy of a multi-document file";

/// Arguments of `autoscaler simulate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy file (every policy of a multi-document file is replayed); repeat to put
    /// several policies side by side.
    #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// CSV trace `second,rps` (see examples/traces/).
    #[arg(long)]
    pub trace: PathBuf,
    /// Time from starting a replica until it serves traffic, e.g. `2s`, `500ms`.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub startup_delay: Duration,
    /// One table row per policy (implied by several `-f`).
    #[arg(long)]
    pub compare: bool,
    /// Add two baselines on the first policy's replica bounds: HPA defaults at HPA's 15 s
    /// sync period, and the original tool's 2 s loop (+1/−1, first reading 0, no readiness).
    #[arg(long)]
    pub baselines: bool,
    /// Write an SVG plot of load and ready replicas over time.
    #[arg(long, value_name = "OUT.svg")]
    pub plot: Option<PathBuf>,
    /// Print the full result (summaries, scale events, every second) as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` document.
#[derive(Serialize)]
struct Report<'a> {
    trace: String,
    model: Model,
    runs: &'a [Run],
}

/// Runs the subcommand: exit 0 on success, 2 when an input cannot be read or used.
pub fn run(args: Args) -> ExitCode {
    match execute(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "autoscaler simulate: {}",
                super::exit::describe_anyhow(&err)
            );
            super::Exit::Invalid.into()
        }
    }
}

fn execute(args: &Args) -> anyhow::Result<()> {
    let trace_text = std::fs::read_to_string(&args.trace)
        .with_context(|| format!("reading trace {}", args.trace.display()))?;
    let trace = Trace::parse(&args.trace.display().to_string(), &trace_text)?;
    let model = Model {
        startup_delay_ms: u64::try_from(args.startup_delay.as_millis()).unwrap_or(u64::MAX),
        ..Model::default()
    };
    let mut runs = Vec::with_capacity(args.files.len() + 2);
    let mut target = None;
    let mut first = None;
    for path in &args.files {
        for policy in read_policies(path)? {
            target = target.or_else(|| policy.spec.metrics.first().map(|m| m.target_per_replica()));
            runs.push(simulate::simulate(&policy, &trace, &model)?);
            first.get_or_insert(policy);
        }
    }
    if let (true, Some(policy)) = (args.baselines, &first) {
        runs.push(simulate::hpa_defaults_baseline(policy, &trace, &model)?);
        runs.push(simulate::original_tool_baseline(policy, &trace, &model));
    }
    if let Some(out) = &args.plot {
        let title = format!(
            "{} (start-up delay {} ms)",
            file_name(&args.trace),
            model.startup_delay_ms
        );
        let svg = simulate::plot_svg(&title, &trace, target.unwrap_or(1.0), &runs)?;
        std::fs::write(out, svg).with_context(|| format!("writing plot {}", out.display()))?;
        tracing::info!(path = %out.display(), "plot written");
    }
    if args.json {
        let report = Report {
            trace: args.trace.display().to_string(),
            model,
            runs: &runs,
        };
        return print(&(serde_json::to_string_pretty(&report)? + "\n"));
    }
    let mut text = format!("{}\n", summary_table(&runs));
    if !args.compare && !args.baselines && runs.len() == 1 {
        for event in &runs[0].events {
            text.push_str(&format!(
                "{:>6} s  {} → {}  {}\n",
                event.second, event.from, event.to, event.reason
            ));
        }
    }
    print(&text)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) -> anyhow::Result<()> {
    super::output::write_stdout(text);
    Ok(())
}

/// Loads a policy file with the same validation as `validate` (each file on its own:
/// compared policies may share ports). Every policy of a multi-document file is replayed.
fn read_policies(path: &Path) -> anyhow::Result<Vec<ScalingPolicy>> {
    let loaded = crate::policy_files::load_path(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if loaded.is_empty() {
        bail!("{}: no ScalingPolicy in the file", path.display());
    }
    Ok(loaded.into_iter().map(|l| l.policy).collect())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// One row per run; ratios against the first row so comparisons read at a glance.
fn summary_table(runs: &[Run]) -> Table {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(vec![
        "POLICY",
        "REPLICA-SECONDS",
        "COST",
        "UNDER-PROVISIONED S",
        "LONGEST UNDER S",
        "SCALE EVENTS",
        "PEAK",
    ]);
    let base = runs.first().map_or(1, |r| r.summary.replica_seconds.max(1));
    for run in runs {
        let s = &run.summary;
        table.add_row(vec![
            s.policy.clone(),
            s.replica_seconds.to_string(),
            format!("{:.2}×", s.replica_seconds as f64 / base as f64),
            s.under_provisioned_seconds.to_string(),
            s.longest_under_provisioned.to_string(),
            s.scale_events.to_string(),
            s.peak.to_string(),
        ]);
    }
    table
}

/// Parses `2s`, `500ms`, `1.5s`, `1m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 2s or 500ms"))?;
    if !(value.is_finite() && value >= 0.0 && value * scale <= 86_400.0) {
        return Err(format!("{text:?} is not a duration between 0 and 24 h"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        for (text, ms) in [
            ("2s", 2000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("1m", 60_000),
            ("3", 3000),
            ("0s", 0),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for text in ["", "s", "-1s", "abc", "2h", "1e9s", "NaNs"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }
}
