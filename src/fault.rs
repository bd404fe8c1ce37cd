//! Fault-injection points for crash tests: abort the process before or after a step.
//!
//! Only in builds with the `fault-injection` cargo feature (the crash tests turn it on);
//! a default build ignores the variable. Set `AUTOSCALER_FAULT=<when>:<step>[:<n>]`, e.g. `before:set-upstream` or
//! `after:create:2` (the second create). `<when>` is `before` or `after`; `<step>` is one of
//! `create`, `wait-ready`, `set-upstream`, `drain`, `stop`, `remove`. Unset, a point costs
//! one environment lookup per step. This is the one place the library may end the
//! process: it simulates `kill -9`, on purpose.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicU32, Ordering};

use crate::plan::Step;

/// Environment variable that arms a fault point.
pub const FAULT_ENV: &str = "AUTOSCALER_FAULT";

#[cfg(feature = "fault-injection")]
static HITS: AtomicU32 = AtomicU32::new(0);

/// Short kebab-case name of a step kind, as used in `AUTOSCALER_FAULT`.
pub fn step_kind(step: &Step) -> &'static str {
    match step {
        Step::Create { .. } => "create",
        Step::WaitReady { .. } => "wait-ready",
        Step::SetUpstream { .. } => "set-upstream",
        Step::Drain { .. } => "drain",
        Step::Stop { .. } => "stop",
        Step::Remove { .. } => "remove",
    }
}

/// Aborts the process when the armed fault matches `when` and this step.
///
/// Compiled in only with the `fault-injection` feature; otherwise a no-op, so a default
/// build ignores `AUTOSCALER_FAULT`.
#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn point(_when: &str, _step: &Step) {}

/// Aborts the process when the armed fault matches `when` and this step.
#[cfg(feature = "fault-injection")]
pub fn point(when: &str, step: &Step) {
    let Ok(spec) = std::env::var(FAULT_ENV) else {
        return;
    };
    if matches(&spec, when, step_kind(step), || {
        HITS.fetch_add(1, Ordering::SeqCst) + 1
    }) {
        eprintln!("autoscaler: injected fault {spec}: aborting");
        std::process::abort();
    }
}

/// Pure matcher: `count` is called only when the point's kind matches, to count hits.
#[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
fn matches(spec: &str, when: &str, kind: &str, count: impl FnOnce() -> u32) -> bool {
    let mut parts = spec.split(':');
    let (Some(w), Some(k)) = (parts.next(), parts.next()) else {
        return false;
    };
    if w != when || k != kind {
        return false;
    }
    let nth: u32 = parts.next().and_then(|n| n.parse().ok()).unwrap_or(1);
    count() == nth
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn fault_spec_matching() {
        assert!(matches("before:create", "before", "create", || 1));
        assert!(!matches("before:create", "after", "create", || 1));
        assert!(!matches("before:create", "before", "stop", || 1));
        assert!(!matches("after:create:2", "after", "create", || 1));
        assert!(matches("after:create:2", "after", "create", || 2));
        assert!(!matches("garbage", "before", "create", || 1));
    }
}
