//! The event log of the operator: appended to the state directory and kept in memory for
//! `/status`, every event stamped with the wall clock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::seams::Clock;
use crate::state::{Event, StateDir};

/// How many recent events are kept in memory.
const RECENT_EVENTS: usize = 100;

/// Records events; never fails a pass (a write error is logged).
pub struct EventLog {
    state_dir: StateDir,
    clock: Arc<dyn Clock>,
    recent: Mutex<VecDeque<Event>>,
}

impl EventLog {
    /// An event log in `state_dir`, starting with the events it already holds.
    pub fn new(state_dir: StateDir, clock: Arc<dyn Clock>, recent: Vec<Event>) -> Self {
        Self {
            state_dir,
            clock,
            recent: Mutex::new(recent.into()),
        }
    }

    /// Records one event of `kind` for `policy` now.
    pub fn record(&self, policy: &str, kind: &str, message: String) {
        tracing::info!(policy, kind, "{message}");
        self.record_all(vec![Event {
            at_ms: self.clock.wall_ms(),
            policy: policy.to_owned(),
            kind: kind.to_owned(),
            message,
        }]);
    }

    /// Records events already built.
    pub fn record_all(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.state_dir.append_events(&events) {
            tracing::warn!(error = %e, "cannot record events");
        }
        if let Ok(mut recent) = self.recent.lock() {
            recent.extend(events);
            while recent.len() > RECENT_EVENTS {
                recent.pop_front();
            }
        }
    }

    /// The most recent events, newest last.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest events of `policy`, newest last (tests and `status`).
    pub fn of(&self, policy: &str) -> Vec<Event> {
        self.recent()
            .into_iter()
            .filter(|e| e.policy == policy)
            .collect()
    }

    /// The wall clock the log stamps with.
    pub fn now_ms(&self) -> u64 {
        self.clock.wall_ms()
    }
}

/// The recent-events window size, for callers that preload it.
pub const fn recent_capacity() -> usize {
    RECENT_EVENTS
}
