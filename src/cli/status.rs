//! `autoscaler status`: per-policy desired/current/ready, metrics vs target, last event.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use comfy_table::Table;

use crate::state::{Event, State, StateDir};

/// Arguments of `autoscaler status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// State directory of the operator to show (default as for `run`).
    #[arg(long, env = "AUTOSCALER_STATE_DIR", default_value_os_t = crate::state::default_state_dir())]
    pub state_dir: std::path::PathBuf,
    /// Print JSON (state and recent events) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Refresh in place every second until interrupted.
    #[arg(long)]
    pub watch: bool,
}

/// Prints the status once, or repeatedly with `--watch`.
pub fn run(args: Args) -> ExitCode {
    let dir = StateDir::new(&args.state_dir);
    loop {
        let text = match render(&dir, args.json) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("autoscaler status: {e}");
                return ExitCode::FAILURE;
            }
        };
        if args.watch {
            // Clear the screen and home the cursor, then draw.
            print!("\x1b[2J\x1b[H{text}");
            let _ = std::io::stdout().flush();
            std::thread::sleep(Duration::from_secs(1));
        } else {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
    }
}

fn render(dir: &StateDir, json: bool) -> Result<String, crate::state::StateError> {
    // Read-only: files that do not parse are skipped here and set aside by the lock holder.
    let report = dir.load_checked()?;
    let state = report.state;
    let unreadable: Vec<String> = report.resets.iter().map(|r| r.message()).collect();
    let events = dir.recent_events(200)?;
    if json {
        let value = serde_json::json!({
            "policies": state.policies,
            "events": events,
            "unreadable": unreadable,
        });
        return Ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        ));
    }
    let mut text = table(&state, &events);
    for line in unreadable {
        text.push_str(&format!("warning: {line}\n"));
    }
    Ok(text)
}

/// The status table (also used by the quickstart script).
pub fn table(state: &State, events: &[Event]) -> String {
    let mut table = Table::new();
    table.load_style(comfy_table::presets::ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(vec![
        "POLICY",
        "DESIRED",
        "CURRENT",
        "READY",
        "METRIC / TARGET",
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
        let conditions = s
            .conditions
            .iter()
            .filter(|c| !c.status || c.kind == "ScalingLimited")
            .map(|c| format!("{}={}", c.kind, c.status))
            .collect::<Vec<_>>()
            .join(" ");
        let last = events
            .iter()
            .rev()
            .find(|e| &e.policy == name)
            .map(|e| e.message.clone())
            .unwrap_or_default();
        table.add_row(vec![
            name.clone(),
            s.desired.to_string(),
            s.current.to_string(),
            s.ready.to_string(),
            metrics,
            if conditions.is_empty() {
                "ok".to_owned()
            } else {
                conditions
            },
            truncate(&last, 70),
        ]);
    }
    format!("{table}\n")
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut out: String = text.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}
