//! `autoscaler status`: per-policy desired/current/ready, metrics vs target, what is
//! abnormal and why, the last event and its age, and whether the daemon is alive.

use std::process::ExitCode;
use std::time::Duration;

use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

use super::Exit;
use super::events::{age, aggregate, now_ms, rfc3339};
use super::output::{stdout_closed, write_stdout};
use crate::state::{Condition, Event, PolicyStatus, State, StateDir};

/// `status --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler status
  autoscaler status web --watch
  autoscaler status --json --state-dir /var/lib/autoscaler | jq '.policies'";

/// Arguments of `autoscaler status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this policy.
    pub name: Option<String>,
    /// State directory of the operator to show (default as for `run`).
    #[arg(long, env = "AUTOSCALER_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
    pub state_dir: std::path::PathBuf,
    /// Print JSON (camelCase keys, RFC 3339 times) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place every second until interrupted.
    #[arg(long, short = 'w')]
    pub watch: bool,
}

/// Prints the status once, or repeatedly with `--watch`. A state directory that does
/// not exist is an error (exit 3): no operator has run there. An unknown NAME is exit 2.
pub fn run(args: Args) -> ExitCode {
    let dir = StateDir::new(&args.state_dir);
    if !dir.root().is_dir() {
        eprintln!(
            "autoscaler status: state directory {} does not exist: no operator has run here (give --state-dir or AUTOSCALER_STATE_DIR)",
            dir.root().display()
        );
        return Exit::Unavailable.into();
    }
    let mut first = true;
    loop {
        let text = match render(&dir, &args) {
            Ok(text) => text,
            Err(StatusError::UnknownPolicy(name)) => {
                eprintln!(
                    "autoscaler status: no policy named {name:?} in {}",
                    dir.root().display()
                );
                return Exit::Invalid.into();
            }
            Err(StatusError::State(e)) => {
                eprintln!("autoscaler status: {e}");
                return Exit::Unavailable.into();
            }
        };
        if !args.watch {
            write_stdout(&text);
            return Exit::Ok.into();
        }
        // Clear once, then redraw in place (home, draw, clear what is left): no flicker.
        let clear = if first { "\x1b[2J" } else { "" };
        write_stdout(&format!(
            "{clear}\x1b[H{}\x1b[J",
            text.replace('\n', "\x1b[K\n")
        ));
        first = false;
        if stdout_closed() {
            return Exit::Ok.into();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[derive(Debug)]
enum StatusError {
    UnknownPolicy(String),
    State(crate::state::StateError),
}

impl From<crate::state::StateError> for StatusError {
    fn from(e: crate::state::StateError) -> Self {
        StatusError::State(e)
    }
}

fn render(dir: &StateDir, args: &Args) -> Result<String, StatusError> {
    // Read-only: files that do not parse are skipped here and set aside by the lock holder.
    let report = dir.load_checked()?;
    let mut state = report.state;
    let unreadable: Vec<String> = report.resets.iter().map(|r| r.message()).collect();
    let mut events = dir.recent_events(500)?;
    if let Some(name) = &args.name {
        if !state.policies.contains_key(name) {
            return Err(StatusError::UnknownPolicy(name.clone()));
        }
        state.policies.retain(|n, _| n == name);
        events.retain(|e| &e.policy == name);
    }
    let daemon = Daemon::of(dir);
    let now = now_ms();
    if args.json {
        let mut view = JsonView::new(&state, &events, &daemon);
        view.unreadable = unreadable;
        let text = serde_json::to_string_pretty(&view).unwrap_or_default();
        return Ok(format!("{text}\n"));
    }
    let warnings: String = unreadable
        .iter()
        .map(|line| format!("warning: {line}\n"))
        .collect();
    Ok(format!(
        "{}{}{}{warnings}",
        table(&state, &events, now, terminal_width()),
        lb_table(&state),
        daemon.line(&state, now)
    ))
}

/// The daemon as the lock file tells it: the pid that last held the lock and whether it
/// is still an `autoscaler` process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Daemon {
    /// What the lock file says (`pid 123 (run)`), if anything.
    pub holder: Option<String>,
    /// Whether that process is alive and is an autoscaler.
    pub alive: bool,
}

impl Daemon {
    /// Reads `lock` without taking it (taking it, even briefly, could refuse a daemon
    /// that starts at that moment).
    pub fn of(dir: &StateDir) -> Daemon {
        let holder = std::fs::read_to_string(dir.root().join("lock"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        let alive = holder
            .as_deref()
            .and_then(|h| h.strip_prefix("pid "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmd| String::from_utf8_lossy(&cmd).contains("autoscaler"))
            });
        Daemon { holder, alive }
    }

    /// `operator: pid 123 (run), alive; last reconciled 2s ago`.
    fn line(&self, state: &State, now: u64) -> String {
        let who = match (&self.holder, self.alive) {
            (Some(h), true) => format!("operator: {h}, running"),
            (Some(h), false) => format!("operator: not running (last: {h})"),
            (None, _) => "operator: never ran here".to_owned(),
        };
        let last = state
            .policies
            .values()
            .map(|p| p.status.last_reconcile_ms)
            .max()
            .filter(|ms| *ms > 0)
            .map_or_else(
                || "never reconciled".to_owned(),
                |ms| format!("last reconciled {} ago", age(ms, now)),
            );
        format!("{who}; {last}\n")
    }
}

/// Whether a condition is in its normal state (then `status` does not show it).
pub fn is_normal(c: &Condition) -> bool {
    match c.kind.as_str() {
        // True is what deserves a look: limited, or at zero (with requests held, maybe).
        "ScalingLimited" | "ScaledToZero" => !c.status,
        _ => c.status,
    }
}

/// What the CONDITIONS column says: the abnormal conditions with their reason, or `Ready`.
pub fn conditions_text(status: &PolicyStatus) -> String {
    let abnormal: Vec<String> = status
        .conditions
        .iter()
        .filter(|c| !is_normal(c))
        .map(|c| {
            let name = if c.kind == "ScalingLimited" || c.kind == "ScaledToZero" {
                c.kind.clone()
            } else {
                format!("{}=false", c.kind)
            };
            if c.reason.is_empty() {
                name
            } else {
                format!("{name} ({})", c.reason)
            }
        })
        .collect();
    if abnormal.is_empty() {
        "Ready".to_owned()
    } else {
        abnormal.join(", ")
    }
}

/// The terminal's width when stdout is one (`COLUMNS` first), else no limit.
fn terminal_width() -> Option<u16> {
    use std::io::IsTerminal;
    if let Some(cols) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return Some(cols);
    }
    if !std::io::stdout().is_terminal() {
        return None;
    }
    comfy_table::Table::new().width()
}

/// The status table (also used by the quickstart script); `width` fits it to a terminal.
pub fn table(state: &State, events: &[Event], now_ms: u64, width: Option<u16>) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    match width {
        Some(w) => {
            table.set_width(w);
            table.set_content_arrangement(ContentArrangement::Dynamic);
        }
        None => {
            table.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    table.set_header(vec![
        "POLICY",
        "DESIRED",
        "CURRENT",
        "READY",
        "METRIC/TARGET",
        "CONDITIONS",
        "LAST EVENT",
    ]);
    for (name, ps) in &state.policies {
        let s = &ps.status;
        let metrics = s
            .metrics
            .iter()
            .map(|m| match m.value {
                Some(v) => format!("{v:.1}/{}", m.target),
                None => format!("?/{}", m.target),
            })
            .collect::<Vec<_>>()
            .join(" ");
        let policy_events: Vec<Event> = events
            .iter()
            .filter(|e| &e.policy == name)
            .cloned()
            .collect();
        let last = aggregate(&policy_events)
            .pop()
            .map(|a| {
                let repeat = if a.count > 1 {
                    format!(" (x{} in {})", a.count, age(a.first_ms, a.last_ms))
                } else {
                    String::new()
                };
                format!("{} ago: {}{repeat}", age(a.last_ms, now_ms), a.message)
            })
            .unwrap_or_default();
        table.add_row(vec![
            name.clone(),
            s.desired.to_string(),
            s.current.to_string(),
            s.ready.to_string(),
            if metrics.is_empty() {
                "-".to_owned()
            } else {
                metrics
            },
            conditions_text(s),
            last,
        ]);
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// The load balancer's view of the policies that scale on it (nothing when none has
/// data): request rate, concurrency, p50/p99 latency, share of 5xx and nginx's own answers.
pub fn lb_table(state: &State) -> String {
    let rows: Vec<(&String, &crate::state::LbStatus)> = state
        .policies
        .iter()
        .filter_map(|(name, ps)| ps.status.load_balancer.as_ref().map(|lb| (name, lb)))
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_content_arrangement(ContentArrangement::Disabled);
    table.set_header(vec![
        "POLICY",
        "WINDOW",
        "RATE",
        "CONCURRENCY",
        "P50",
        "P99",
        "5XX",
        "UNROUTED",
    ]);
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}ms"));
    for (name, lb) in rows {
        table.add_row(vec![
            name.clone(),
            format!("{}s", lb.window_ms.div_ceil(1000)),
            format!("{:.1}/s", lb.rate),
            format!("{:.2}", lb.concurrency),
            ms(lb.p50_ms),
            ms(lb.p99_ms),
            format!("{:.1}%", lb.error_ratio() * 100.0),
            format!("{:.1}/s", lb.unrouted_rate),
        ]);
    }
    format!("load balancer:\n{}\n", table.trim_fmt())
}

/// `status --json`: per policy its status (camelCase) and times in RFC 3339.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonView<'a> {
    daemon: &'a Daemon,
    policies: std::collections::BTreeMap<&'a str, JsonPolicy<'a>>,
    events: Vec<super::events::Aggregated>,
    /// State files that could not be read (set aside by the lock holder).
    unreadable: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPolicy<'a> {
    source_file: &'a std::path::Path,
    #[serde(flatten)]
    status: &'a PolicyStatus,
    last_reconcile_time: Option<String>,
    last_scale_time: Option<String>,
    abnormal_conditions: Vec<&'a Condition>,
}

impl<'a> JsonView<'a> {
    fn new(state: &'a State, events: &[Event], daemon: &'a Daemon) -> Self {
        let policies = state
            .policies
            .iter()
            .map(|(name, ps)| {
                let s = &ps.status;
                (
                    name.as_str(),
                    JsonPolicy {
                        source_file: &ps.source_file,
                        status: s,
                        last_reconcile_time: (s.last_reconcile_ms > 0)
                            .then(|| rfc3339(s.last_reconcile_ms)),
                        last_scale_time: s.last_scale_ms.map(rfc3339),
                        abnormal_conditions: s
                            .conditions
                            .iter()
                            .filter(|c| !is_normal(c))
                            .collect(),
                    },
                )
            })
            .collect();
        JsonView {
            daemon,
            policies,
            events: aggregate(events),
            unreadable: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(kind: &str, status: bool, reason: &str) -> Condition {
        Condition {
            kind: kind.into(),
            status,
            reason: reason.into(),
            message: String::new(),
            last_transition_ms: 0,
        }
    }

    #[test]
    fn conditions_show_only_what_is_abnormal_with_its_reason() {
        let mut s = PolicyStatus {
            conditions: vec![
                condition("AbleToScale", true, "Succeeded"),
                condition("ScalingActive", true, "ValidMetric"),
                condition("ScalingLimited", false, "DesiredWithinRange"),
            ],
            ..PolicyStatus::default()
        };
        assert_eq!(conditions_text(&s), "Ready");
        s.conditions
            .push(condition("ScaledToZero", false, "Serving"));
        assert_eq!(conditions_text(&s), "Ready", "serving replicas is normal");
        s.conditions[3] = condition("ScaledToZero", true, "Activating");
        assert_eq!(conditions_text(&s), "ScaledToZero (Activating)");
        s.conditions.pop();
        s.conditions[0] = condition("AbleToScale", false, "ListenUnavailable");
        s.conditions[2] = condition("ScalingLimited", true, "TooManyReplicas");
        assert_eq!(
            conditions_text(&s),
            "AbleToScale=false (ListenUnavailable), ScalingLimited (TooManyReplicas)"
        );
    }

    #[test]
    fn the_last_event_is_whole_with_its_age_and_repeats() {
        let mut state = State::default();
        state.policies.insert("web".into(), Default::default());
        let long = "x".repeat(120);
        let events: Vec<Event> = (0..3)
            .map(|i| Event::new(1_000 + i * 1000, "web", "StepFailed", long.clone()))
            .collect();
        let text = table(&state, &events, 13_000, None);
        assert!(
            text.contains(&format!("10s ago: {long} (x3 in 2s)")),
            "{text}"
        );
        assert!(text.contains("Ready"), "{text}");
    }

    #[test]
    fn the_table_fits_the_width_it_is_given() {
        let mut state = State::default();
        state.policies.insert("web".into(), Default::default());
        let events = vec![Event::new(0, "web", "StepFailed", "word ".repeat(60))];
        let text = table(&state, &events, 0, Some(80));
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{} > 80: {line:?}",
                line.chars().count()
            );
        }
    }
}
