//! Reads the per-policy server sets back out of config text that rendering produced.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{LIVE_PATH, UPSTREAM_PREFIX};

/// Reads back the server set per policy from text `render_*` produced (the plan's "live upstream").
///
/// Only `upstream autoscaler_<policy> {` blocks count; `down` placeholders are skipped,
/// so a policy with no ready replica maps to an empty list. Servers come back sorted
/// and deduplicated. Lines it does not understand are ignored: the input is our own
/// output, and the plan re-renders from its own view anyway.
pub fn parse_upstreams(config: &str) -> BTreeMap<String, Vec<SocketAddr>> {
    let mut out: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in config.lines() {
        let line = line.trim();
        if let Some(policy) = &current {
            if line == "}" {
                current = None;
            } else if let Some(addr) = server_addr(line) {
                out.entry(policy.clone()).or_default().push(addr);
            }
        } else if let Some(policy) = upstream_open(line) {
            out.entry(policy.to_owned()).or_default();
            current = Some(policy.to_owned());
        }
    }
    for servers in out.values_mut() {
        servers.sort();
        servers.dedup();
    }
    out
}

/// The hash the live-check location of `config` answers, `None` when it has none (no
/// server block, or text that rendering did not produce).
pub fn config_hash(config: &str) -> Option<&str> {
    let open = format!("location = {LIVE_PATH} {{");
    let mut lines = config.lines().map(str::trim);
    lines.find(|l| *l == open)?;
    lines.find_map(|l| l.strip_prefix("return 200 \"")?.strip_suffix("\\n\";"))
}

/// `config` with its live-check hash replaced by a fixed placeholder and the load-signal
/// lines removed, for showing a diff between two rendered texts without the lines that
/// change with any change (the hash) or with the daemon's runtime wiring (the signal
/// endpoint a running `autoscaler run` bound, which `diff` has no receiver for).
pub fn mask_config_hash(config: &str) -> String {
    let stripped = strip_signal(config);
    match config_hash(config) {
        Some(hash) => stripped.replace(hash, "<config-hash>"),
        None => stripped,
    }
}

/// `config` without the lines the load signal adds (see the template).
fn strip_signal(config: &str) -> String {
    let is_signal = |line: &str| {
        let t = line.trim();
        t.starts_with("# Load signal: ")
            || t.starts_with("# syslog datagram each, ")
            || t.starts_with("log_format autoscaler_signal ")
            || t.starts_with("set $autoscaler_policy ")
            || (t.starts_with("access_log syslog:") && t.ends_with(" autoscaler_signal;"))
    };
    let lines: Vec<&str> = config.split_inclusive('\n').collect();
    let mut out = String::with_capacity(config.len());
    for (i, line) in lines.iter().enumerate() {
        // The blank line that opens the signal block goes with it.
        let opens_block = line.trim().is_empty()
            && lines
                .get(i + 1)
                .is_some_and(|next| next.trim().starts_with("# Load signal: "));
        if !is_signal(line) && !opens_block {
            out.push_str(line);
        }
    }
    out
}

/// The policy of an `upstream autoscaler_<policy> {` line.
fn upstream_open(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("upstream")?;
    let rest = rest.strip_suffix('{')?.trim();
    let policy = rest.strip_prefix(UPSTREAM_PREFIX)?;
    (!policy.is_empty() && !policy.contains(char::is_whitespace)).then_some(policy)
}

/// The address of a `server ADDR ...;` line inside an upstream, unless marked `down`.
fn server_addr(line: &str) -> Option<SocketAddr> {
    let body = line.strip_prefix("server")?.strip_suffix(';')?;
    let mut words = body.split_whitespace();
    let addr = words.next()?.parse().ok()?;
    if words.any(|w| w == "down") {
        return None;
    }
    Some(addr)
}
