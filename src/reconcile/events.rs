//! The event log of the operator: appended to the state directory and kept in memory for
//! `/status`, every event stamped with the wall clock.
//!
//! Repeats are folded as Kubernetes folds its events: the same event (policy, kind and
//! message) again within [`FOLD_WINDOW_MS`] of the line last written for it is counted, not
//! written; the next occurrence after the window writes one line standing for all of them
//! (`count`, `firstMs`), and so does dropping the log (shutdown).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::seams::Clock;
use crate::state::{Event, StateDir};

/// How many recent events are kept in memory.
pub const RECENT_EVENTS: usize = 100;

/// Repeats of one event within this long of its last written line are folded.
pub const FOLD_WINDOW_MS: u64 = 60_000;

/// How many distinct events the folding remembers before it forgets the oldest.
const FOLD_MEMORY: usize = 1024;

type Key = (String, String, String);

/// Repeats of one event not written yet.
#[derive(Debug, Clone, Copy)]
struct Folded {
    /// When the last line for this event was written.
    written_ms: u64,
    /// Occurrences since then, and the first and last of them.
    count: u32,
    first_ms: u64,
    last_ms: u64,
}

/// Records events; never fails a pass (a write error is logged).
pub struct EventLog {
    state_dir: StateDir,
    clock: Arc<dyn Clock>,
    recent: Mutex<VecDeque<Event>>,
    folded: Mutex<BTreeMap<Key, Folded>>,
}

impl EventLog {
    /// An event log in `state_dir`, starting with the events it already holds.
    pub fn new(state_dir: StateDir, clock: Arc<dyn Clock>, recent: Vec<Event>) -> Self {
        Self {
            state_dir,
            clock,
            recent: Mutex::new(recent.into()),
            folded: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one event of `kind` for `policy` now (or folds it into a repeat).
    pub fn record(&self, policy: &str, kind: &str, message: String) {
        let now = self.clock.wall_ms();
        let key: Key = (policy.to_owned(), kind.to_owned(), message.clone());
        let to_write = match self.folded.lock() {
            Ok(mut folded) => fold(&mut folded, key, now),
            Err(_) => Some((1, now)),
        };
        let Some((count, first_ms)) = to_write else {
            tracing::debug!(policy, kind, "{message} (repeat, folded)");
            self.bump_recent(policy, kind, &message, now);
            return;
        };
        tracing::info!(policy, kind, "{message}");
        let mut event = Event::new(now, policy, kind, message);
        event.count = count;
        if count > 1 {
            event.first_ms = first_ms;
        }
        self.record_all(vec![event]);
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

    /// Counts a folded repeat on the newest in-memory copy of the event.
    fn bump_recent(&self, policy: &str, kind: &str, message: &str, now: u64) {
        if let Ok(mut recent) = self.recent.lock()
            && let Some(e) = recent
                .iter_mut()
                .rev()
                .find(|e| e.policy == policy && e.kind == kind && e.message == message)
        {
            if e.first_ms == 0 {
                e.first_ms = e.at_ms;
            }
            e.count = e.occurrences() + 1;
            e.at_ms = now;
            e.time = crate::state::rfc3339(now);
        }
    }

    /// The most recent events, newest last.
    pub fn recent(&self) -> Vec<Event> {
        self.recent
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The wall clock the log stamps with.
    pub fn now_ms(&self) -> u64 {
        self.clock.wall_ms()
    }
}

impl Drop for EventLog {
    /// Writes the repeats still folded, so no occurrence is lost at shutdown.
    fn drop(&mut self) {
        let Ok(folded) = self.folded.lock() else {
            return;
        };
        let events: Vec<Event> = folded
            .iter()
            .filter(|(_, f)| f.count > 0)
            .map(|((policy, kind, message), f)| {
                let mut e = Event::new(f.last_ms, policy, kind, message.clone());
                e.count = f.count;
                e.first_ms = if f.count > 1 { f.first_ms } else { 0 };
                e
            })
            .collect();
        if let Err(e) = self.state_dir.append_events(&events) {
            tracing::warn!(error = %e, "cannot record folded events");
        }
    }
}

/// Folds one occurrence: `None` when it is counted only, else the line to write now
/// (occurrences it stands for, first of them).
fn fold(folded: &mut BTreeMap<Key, Folded>, key: Key, now: u64) -> Option<(u32, u64)> {
    match folded.get_mut(&key) {
        Some(f) if now.saturating_sub(f.written_ms) < FOLD_WINDOW_MS => {
            if f.count == 0 {
                f.first_ms = now;
            }
            f.count += 1;
            f.last_ms = now;
            None
        }
        Some(f) => {
            let line = (f.count + 1, if f.count > 0 { f.first_ms } else { now });
            *f = Folded {
                written_ms: now,
                count: 0,
                first_ms: now,
                last_ms: now,
            };
            Some(line)
        }
        None => {
            if folded.len() >= FOLD_MEMORY
                && let Some(oldest) = folded
                    .iter()
                    .min_by_key(|(_, f)| f.written_ms)
                    .map(|(k, _)| k.clone())
            {
                folded.remove(&oldest);
            }
            folded.insert(
                key,
                Folded {
                    written_ms: now,
                    count: 0,
                    first_ms: now,
                    last_ms: now,
                },
            );
            Some((1, now))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_window_fold_into_the_next_line() {
        let mut folded = BTreeMap::new();
        let key = || ("web".to_owned(), "StepFailed".to_owned(), "x".to_owned());
        assert_eq!(
            fold(&mut folded, key(), 0),
            Some((1, 0)),
            "first is written"
        );
        assert_eq!(fold(&mut folded, key(), 1_000), None);
        assert_eq!(fold(&mut folded, key(), 2_000), None);
        // After the window: one line for the two folded and this one.
        assert_eq!(fold(&mut folded, key(), 61_000), Some((3, 1_000)));
        assert_eq!(fold(&mut folded, key(), 62_000), None);
        let other = ("web".to_owned(), "StepFailed".to_owned(), "y".to_owned());
        assert_eq!(
            fold(&mut folded, other, 62_500),
            Some((1, 62_500)),
            "another message"
        );
        // A lone occurrence long after is written on its own.
        assert_eq!(fold(&mut folded, key(), 200_000), Some((2, 62_000)));
        assert_eq!(fold(&mut folded, key(), 400_000), Some((1, 400_000)));
    }
}
