//! `autoscaler events`: the event log as `kubectl get events` shows it: repeats
//! aggregated with a count and first/last seen, ages, RFC 3339 in JSON, `--follow`.
//!
//! Events are read through [`StateDir::recent_events`]; the aggregation happens here,
//! on read, so the file's format is untouched.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::Table;
use serde::Serialize;

use super::Exit;
use super::output::{stdout_closed, write_stdout};
use crate::state::{Event, StateDir};

/// `events --help` examples.
pub const EXAMPLES: &str = "\
Examples:
  autoscaler events
  autoscaler events web --since 10m
  autoscaler events --follow
  autoscaler events web --json | jq '.[] | select(.count > 1)'";

/// How many of the newest lines of `events.jsonl` are read.
const READ_LIMIT: usize = 10_000;

/// Arguments of `autoscaler events`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only the events of this policy.
    pub name: Option<String>,
    /// State directory of the operator to show.
    #[arg(long, env = "AUTOSCALER_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
    pub state_dir: std::path::PathBuf,
    /// Only events seen within this duration, e.g. `10m`, `1h`.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub since: Option<Duration>,
    /// Keep printing new events as they are recorded, until interrupted.
    #[arg(long, short = 'w')]
    pub follow: bool,
    /// Print JSON (camelCase keys, RFC 3339 times) instead of a table; with `--follow`,
    /// one object per line.
    #[arg(long)]
    pub json: bool,
}

/// One line of the aggregated view: repeats of the same event collapsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregated {
    /// Policy name.
    pub policy: String,
    /// Event kind (`ScaledUp`, `StepFailed`, ...).
    pub kind: String,
    /// Sentence for people.
    pub message: String,
    /// How many times it was recorded in a row.
    pub count: u64,
    /// First time, RFC 3339.
    pub first_seen: String,
    /// Last time, RFC 3339.
    pub last_seen: String,
    /// First time, milliseconds since the epoch.
    #[serde(skip)]
    pub first_ms: u64,
    /// Last time, milliseconds since the epoch.
    #[serde(skip)]
    pub last_ms: u64,
}

/// Collapses events with the same policy, kind and message (in time order) into one
/// line with a count; the line takes the place of the last repeat.
pub fn aggregate(events: &[Event]) -> Vec<Aggregated> {
    let mut out: Vec<Aggregated> = Vec::new();
    for e in events {
        if let Some(same) = out
            .iter_mut()
            .find(|a| a.policy == e.policy && a.kind == e.kind && a.message == e.message)
        {
            same.count += u64::from(e.occurrences());
            same.first_ms = same.first_ms.min(e.first_at_ms());
            same.last_ms = same.last_ms.max(e.at_ms);
        } else {
            out.push(Aggregated {
                policy: e.policy.clone(),
                kind: e.kind.clone(),
                message: e.message.clone(),
                count: u64::from(e.occurrences()),
                first_seen: String::new(),
                last_seen: String::new(),
                first_ms: e.first_at_ms(),
                last_ms: e.at_ms,
            });
        }
    }
    out.sort_by_key(|a| a.last_ms);
    for a in &mut out {
        a.first_seen = rfc3339(a.first_ms);
        a.last_seen = rfc3339(a.last_ms);
    }
    out
}

pub use crate::state::rfc3339;

/// How long ago, as kubectl prints it: `45s`, `12m`, `3h`, `2d`.
pub fn age(ms: u64, now_ms: u64) -> String {
    let s = now_ms.saturating_sub(ms) / 1000;
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172_800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The events a filter selects, oldest first.
fn select(events: Vec<Event>, name: Option<&str>, since_ms: Option<u64>) -> Vec<Event> {
    events
        .into_iter()
        .filter(|e| name.is_none_or(|n| e.policy == n))
        .filter(|e| since_ms.is_none_or(|s| e.at_ms >= s))
        .collect()
}

/// The table `events` prints.
pub fn table(rows: &[Aggregated], now_ms: u64) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::NOTHING);
    table.set_header(vec![
        "LAST SEEN",
        "KIND",
        "POLICY",
        "COUNT",
        "FIRST SEEN",
        "MESSAGE",
    ]);
    for a in rows {
        table.add_row(vec![
            age(a.last_ms, now_ms),
            a.kind.clone(),
            a.policy.clone(),
            a.count.to_string(),
            age(a.first_ms, now_ms),
            a.message.clone(),
        ]);
    }
    let mut text = table.trim_fmt();
    text.push('\n');
    text
}

/// Prints the events once, or follows the file with `--follow`.
pub fn run(args: Args) -> ExitCode {
    let dir = StateDir::new(&args.state_dir);
    if !dir.root().is_dir() {
        eprintln!(
            "autoscaler events: state directory {} does not exist: no operator has run here (give --state-dir or AUTOSCALER_STATE_DIR)",
            dir.root().display()
        );
        return Exit::Unavailable.into();
    }
    let since_ms = args
        .since
        .map(|d| now_ms().saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)));
    let read = |since: Option<u64>| {
        dir.recent_events(READ_LIMIT)
            .map(|events| select(events, args.name.as_deref(), since))
    };
    let events = match read(since_ms) {
        Ok(events) => events,
        Err(e) => {
            eprintln!("autoscaler events: {e}");
            return Exit::Unavailable.into();
        }
    };
    let rows = aggregate(&events);
    if args.json && args.follow {
        // A stream: one JSON object per line, first the aggregated past, then each new event.
        for row in &rows {
            write_stdout(&format!(
                "{}\n",
                serde_json::to_string(row).unwrap_or_default()
            ));
        }
    } else if args.json {
        match serde_json::to_string_pretty(&rows) {
            Ok(text) => write_stdout(&format!("{text}\n")),
            Err(e) => {
                eprintln!("autoscaler events: {e}");
                return Exit::Failed.into();
            }
        }
    } else if rows.is_empty() && !args.follow {
        eprintln!("No events.");
    } else {
        write_stdout(&table(&rows, now_ms()));
    }
    if !args.follow {
        return Exit::Ok.into();
    }
    follow(&args, events, since_ms, read)
}

/// Polls the file once a second and prints what is new, one line per new event.
fn follow(
    args: &Args,
    mut seen: Vec<Event>,
    since_ms: Option<u64>,
    read: impl Fn(Option<u64>) -> Result<Vec<Event>, crate::state::StateError>,
) -> ExitCode {
    loop {
        std::thread::sleep(Duration::from_secs(1));
        // Never before `--since`, nor before what was printed already.
        let since = seen.last().map(|e| e.at_ms).or(since_ms);
        let events = match read(since) {
            Ok(events) => events,
            Err(e) => {
                eprintln!("autoscaler events: {e}");
                return Exit::Unavailable.into();
            }
        };
        // Events at the last printed millisecond may be partly seen already.
        let fresh: Vec<Event> = events
            .into_iter()
            .filter(|e| {
                !seen
                    .iter()
                    .rev()
                    .take_while(|s| s.at_ms == e.at_ms)
                    .any(|s| s == e)
            })
            .collect();
        for e in &fresh {
            if args.json {
                let row = &aggregate(std::slice::from_ref(e))[0];
                write_stdout(&format!(
                    "{}\n",
                    serde_json::to_string(row).unwrap_or_default()
                ));
            } else {
                write_stdout(&format!(
                    "{}  {}  {}  {}\n",
                    rfc3339(e.at_ms),
                    e.kind,
                    e.policy,
                    e.message
                ));
            }
        }
        seen.extend(fresh);
        if stdout_closed() {
            return Exit::Ok.into();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(at_ms: u64, kind: &str, message: &str) -> Event {
        Event::new(at_ms, "web", kind, message.into())
    }

    #[test]
    fn repeats_collapse_into_one_line_with_count_and_first_and_last_seen() {
        let events = vec![
            event(1_000, "StepFailed", "image nosuch:latest does not exist"),
            event(2_000, "ScaledUp", "ScaledUp 1→2"),
            event(3_000, "StepFailed", "image nosuch:latest does not exist"),
            event(4_000, "StepFailed", "image nosuch:latest does not exist"),
        ];
        let rows = aggregate(&events);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, "ScaledUp");
        assert_eq!(rows[1].count, 3);
        assert_eq!((rows[1].first_ms, rows[1].last_ms), (1_000, 4_000));
        assert_eq!(rows[1].first_seen, "1970-01-01T00:00:01.000Z");
        assert_eq!(rows[1].last_seen, "1970-01-01T00:00:04.000Z");
    }

    #[test]
    fn ages_read_like_kubectl() {
        for (ago_s, text) in [
            (5, "5s"),
            (119, "119s"),
            (600, "10m"),
            (7200, "2h"),
            (200_000, "2d"),
        ] {
            assert_eq!(age(1_000_000_000, 1_000_000_000 + ago_s * 1000), text);
        }
    }

    #[test]
    fn json_keys_are_camel_case_with_rfc3339_times() {
        let rows = aggregate(&[event(0, "ScaledUp", "x")]);
        let json = serde_json::to_string(&rows).expect("serialize");
        assert!(
            json.contains("\"firstSeen\":\"1970-01-01T00:00:00.000Z\""),
            "{json}"
        );
        assert!(!json.contains('_'), "{json}");
    }
}
