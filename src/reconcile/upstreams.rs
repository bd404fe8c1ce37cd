//! The shared nginx upstream table: one entry per policy, rendered and applied as a whole.
//!
//! Every policy's pass changes only its own entry; the table renders all of them, so one
//! apply at a time goes through the lock here. Two rules keep one policy from hurting
//! another:
//! - a change that nginx refuses is undone in the table, so the entries of the other
//!   policies go on rendering what nginx last accepted;
//! - a listen address claimed by two entries (a policy renamed: the old one retiring, the
//!   new one starting) is served by exactly one of them. The newest claimant takes it over
//!   once it has a ready replica; until then the one serving it keeps it, so requests never
//!   meet an empty upstream.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use super::ReconcileError;
use super::seams::HostPorts;
use crate::lb::{ApplyOutcome, LbError, LoadBalancer};
use crate::nginx::{self, Upstream};
use crate::state::UpstreamSettings;

/// The upstream table and the count of reloads it caused.
#[derive(Debug, Default)]
pub struct UpstreamTable {
    inner: Mutex<Table>,
    reloads: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    entries: BTreeMap<String, Entry>,
    /// Which policy serves each contested listen address.
    owners: BTreeMap<SocketAddr, String>,
    /// Listen addresses in the config nginx has now (bind checks skip them: nginx holds them).
    serving: BTreeSet<SocketAddr>,
    generation: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    upstream: Upstream,
    /// When the entry's settings last changed: the newest claimant of a listen wins it.
    generation: u64,
}

impl UpstreamTable {
    /// nginx reloads caused by this table.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Rebuilds the table from the config in place (`live`), the remembered settings of
    /// known policies and the settings of the policies loaded now (these win).
    pub async fn reset(
        &self,
        live: Option<&str>,
        remembered: &[(String, UpstreamSettings)],
        loaded: &[Upstream],
    ) {
        let servers = live.map(nginx::parse_upstreams).unwrap_or_default();
        let mut table = self.inner.lock().await;
        table.entries.clear();
        table.owners.clear();
        table.serving = live.map(parse_listens).unwrap_or_default();
        // Remembered settings come from the state file (strings on disk); loaded ones
        // from policies, typed already.
        let remembered = remembered.iter().filter_map(|(n, s)| {
            upstream_from_settings(n, s, super::DEFAULT_DRAIN_TIMEOUT.as_secs())
        });
        for mut upstream in remembered.chain(loaded.iter().cloned()) {
            let name = upstream.policy.clone();
            upstream.servers = servers.get(&name).cloned().unwrap_or_default();
            table.generation += 1;
            let generation = table.generation;
            table.entries.insert(
                name,
                Entry {
                    upstream,
                    generation,
                },
            );
        }
        // Whoever serves a listen in the live config keeps it until a successor is ready.
        let live_owners: Vec<(SocketAddr, String)> = table
            .entries
            .iter()
            .filter(|(name, e)| servers.contains_key(*name) && !e.upstream.servers.is_empty())
            .map(|(name, e)| (e.upstream.listen, name.clone()))
            .collect();
        table.owners.extend(live_owners);
    }

    /// Makes nginx serve the table as it is.
    pub async fn apply_all<L: LoadBalancer>(&self, lb: &L) -> Result<(), ReconcileError> {
        let mut table = self.inner.lock().await;
        self.apply_locked(&mut table, lb).await?;
        Ok(())
    }

    /// Adds or updates a policy's listen/algorithm/keepalive, keeping its servers, and
    /// applies it. A listen that another process holds is refused before nginx sees it;
    /// a change nginx refuses is undone so other policies keep converging.
    pub async fn sync_settings<L: LoadBalancer>(
        &self,
        lb: &L,
        ports: &dyn HostPorts,
        mut wanted: Upstream,
    ) -> Result<(), ReconcileError> {
        let mut table = self.inner.lock().await;
        let name = wanted.policy.clone();
        let name = name.as_str();
        let previous = table.entries.get(name).cloned();
        if let Some(p) = &previous {
            wanted.servers = p.upstream.servers.clone();
            if p.upstream == wanted {
                return Ok(());
            }
        }
        let listen = wanted.listen;
        let claimed_by_table = table
            .entries
            .iter()
            .any(|(n, e)| n != name && e.upstream.listen == listen);
        if !table.serving.contains(&listen) && !claimed_by_table && !ports.is_free(listen) {
            return Err(ReconcileError::ListenUnavailable {
                policy: name.to_owned(),
                listen,
                reason: "the address is in use by another process".to_owned(),
            });
        }
        table.generation += 1;
        let generation = table.generation;
        table.entries.insert(
            name.to_owned(),
            Entry {
                upstream: wanted,
                generation,
            },
        );
        if let Err(e) = self.apply_locked(&mut table, lb).await {
            match previous {
                Some(p) => table.entries.insert(name.to_owned(), p),
                None => table.entries.remove(name),
            };
            return Err(ReconcileError::ListenUnavailable {
                policy: name.to_owned(),
                listen,
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Adds an entry for a policy the table does not know yet, without applying: a renamed
    /// policy's claim on its listen address is then visible to its predecessor's teardown
    /// before either of them runs.
    pub async fn claim(&self, upstream: Upstream) {
        let mut table = self.inner.lock().await;
        if table.entries.contains_key(&upstream.policy) {
            return;
        }
        table.generation += 1;
        let generation = table.generation;
        table.entries.insert(
            upstream.policy.clone(),
            Entry {
                upstream,
                generation,
            },
        );
    }

    /// Sets a policy's servers and applies; on failure the previous servers stay.
    pub async fn set_servers<L: LoadBalancer>(
        &self,
        lb: &L,
        name: &str,
        servers: Vec<SocketAddr>,
    ) -> Result<(), ReconcileError> {
        let mut table = self.inner.lock().await;
        let Some(entry) = table.entries.get_mut(name) else {
            return Err(ReconcileError::NoUpstream {
                policy: name.to_owned(),
            });
        };
        let previous = std::mem::replace(&mut entry.upstream.servers, servers);
        if let Err(e) = self.apply_locked(&mut table, lb).await {
            if let Some(entry) = table.entries.get_mut(name) {
                entry.upstream.servers = previous;
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// Drops a policy's entry and applies (a no-op when it has none).
    pub async fn remove<L: LoadBalancer>(&self, lb: &L, name: &str) -> Result<(), ReconcileError> {
        let mut table = self.inner.lock().await;
        let Some(previous) = table.entries.remove(name) else {
            return Ok(());
        };
        if let Err(e) = self.apply_locked(&mut table, lb).await {
            table.entries.insert(name.to_owned(), previous);
            return Err(e.into());
        }
        Ok(())
    }

    /// The listen address `name` serves while another entry claims it too (a successor
    /// that is not ready yet): tearing `name` down now would leave it empty.
    pub async fn pending_handover(&self, name: &str) -> Option<SocketAddr> {
        let table = self.inner.lock().await;
        let listen = table.entries.get(name)?.upstream.listen;
        let contested = table
            .entries
            .iter()
            .any(|(n, e)| n != name && e.upstream.listen == listen);
        (contested && table.owners.get(&listen).map(String::as_str) == Some(name)).then_some(listen)
    }

    /// The servers of a policy's entry (empty without one).
    pub async fn servers(&self, name: &str) -> Vec<SocketAddr> {
        let table = self.inner.lock().await;
        table
            .entries
            .get(name)
            .map(|e| e.upstream.servers.clone())
            .unwrap_or_default()
    }

    /// Number of policies with an entry.
    pub async fn len(&self) -> usize {
        self.inner.lock().await.entries.len()
    }

    /// Whether no policy has an entry.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// The config the table would render with some policies' servers replaced and some
    /// entries dropped (what `diff` shows as "after").
    pub async fn render_after<L: LoadBalancer>(
        &self,
        lb: &L,
        servers: &BTreeMap<String, Vec<SocketAddr>>,
        dropped: &BTreeSet<String>,
    ) -> Result<String, LbError> {
        let table = self.inner.lock().await;
        let mut copy = Table {
            entries: table.entries.clone(),
            owners: table.owners.clone(),
            serving: table.serving.clone(),
            generation: table.generation,
        };
        drop(table);
        copy.entries.retain(|name, _| !dropped.contains(name));
        for (name, s) in servers {
            if let Some(e) = copy.entries.get_mut(name) {
                e.upstream.servers = s.clone();
            }
        }
        lb.render(&copy.visible())
    }

    async fn apply_locked<L: LoadBalancer>(
        &self,
        table: &mut Table,
        lb: &L,
    ) -> Result<ApplyOutcome, LbError> {
        let visible = table.visible();
        let outcome = lb.apply(&visible).await?;
        if outcome == ApplyOutcome::Reloaded {
            self.reloads.fetch_add(1, Ordering::Relaxed);
        }
        table.serving = visible.iter().map(|u| u.listen).collect();
        table.owners = visible
            .iter()
            .map(|u| (u.listen, u.policy.clone()))
            .collect();
        Ok(outcome)
    }
}

impl Table {
    /// The upstreams to render: every entry, except that a listen claimed by several goes
    /// to one (see the module docs).
    fn visible(&self) -> Vec<Upstream> {
        let mut by_listen: BTreeMap<SocketAddr, Vec<(&String, &Entry)>> = BTreeMap::new();
        for (name, entry) in &self.entries {
            by_listen
                .entry(entry.upstream.listen)
                .or_default()
                .push((name, entry));
        }
        let mut out: Vec<Upstream> = by_listen
            .into_iter()
            .filter_map(|(listen, claimants)| {
                self.owner(listen, &claimants)
                    .map(|(_, e)| e.upstream.clone())
            })
            .collect();
        out.sort_by(|a, b| a.policy.cmp(&b.policy));
        out
    }

    fn owner<'a>(
        &self,
        listen: SocketAddr,
        claimants: &[(&'a String, &'a Entry)],
    ) -> Option<(&'a String, &'a Entry)> {
        if let [only] = claimants {
            return Some(*only);
        }
        let newest_ready = claimants
            .iter()
            .filter(|(_, e)| !e.upstream.servers.is_empty())
            .max_by_key(|(_, e)| e.generation);
        if let Some(ready) = newest_ready {
            let current = self.owners.get(&listen);
            // The current owner keeps the listen against older claimants.
            if let Some(cur) = current.and_then(|c| claimants.iter().find(|(n, _)| *n == c))
                && cur.1.generation > ready.1.generation
            {
                return Some(*cur);
            }
            return Some(*ready);
        }
        let current = self.owners.get(&listen);
        current
            .and_then(|c| claimants.iter().find(|(n, _)| *n == c).copied())
            .or_else(|| claimants.iter().max_by_key(|(_, e)| e.generation).copied())
    }
}

/// The upstream of `name` with `settings` and no servers; None when the listen address
/// is not `IP:PORT` (only a hand-edited state file can say so). Its drain timeout sets
/// how long nginx lets old workers finish after a reload.
pub fn upstream_from_settings(
    name: &str,
    settings: &UpstreamSettings,
    drain_timeout_seconds: u64,
) -> Option<Upstream> {
    let listen: SocketAddr = settings.listen.parse().ok()?;
    Some(Upstream {
        policy: name.to_owned(),
        algorithm: settings.algorithm,
        keepalive: settings.keepalive,
        listen,
        servers: Vec::new(),
        drain_timeout_seconds,
        hold: None,
    })
}

/// The `listen ADDR;` addresses of config text rendering produced.
fn parse_listens(config: &str) -> BTreeSet<SocketAddr> {
    config
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("listen")?;
            rest.trim()
                .strip_suffix(';')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, listen: &str, servers: &[&str], generation: u64) -> (String, Entry) {
        (
            name.to_owned(),
            Entry {
                upstream: Upstream {
                    policy: name.to_owned(),
                    algorithm: Default::default(),
                    keepalive: 0,
                    listen: listen.parse().expect("listen"),
                    servers: servers.iter().map(|s| s.parse().expect("server")).collect(),
                    drain_timeout_seconds: 30,
                    hold: None,
                },
                generation,
            },
        )
    }

    #[test]
    fn a_contested_listen_goes_to_exactly_one_claimant() {
        struct Case {
            name: &'static str,
            entries: Vec<(String, Entry)>,
            owner: Option<&'static str>,
            want: Vec<&'static str>,
        }
        let l = "127.0.0.1:8080";
        let cases = vec![
            Case {
                name: "old keeps the listen while the new one has no ready replica",
                entries: vec![
                    entry("old", l, &["127.0.0.1:8001"], 1),
                    entry("new", l, &[], 2),
                ],
                owner: Some("old"),
                want: vec!["old"],
            },
            Case {
                name: "new takes the listen once it has a ready replica",
                entries: vec![
                    entry("old", l, &["127.0.0.1:8001"], 1),
                    entry("new", l, &["127.0.0.1:8002"], 2),
                ],
                owner: Some("old"),
                want: vec!["new"],
            },
            Case {
                name: "the newest ready claimant wins when nobody owns it yet",
                entries: vec![
                    entry("a", l, &["127.0.0.1:8001"], 3),
                    entry("b", l, &["127.0.0.1:8002"], 2),
                ],
                owner: None,
                want: vec!["a"],
            },
            Case {
                name: "without ready claimants the newest claims an unowned listen",
                entries: vec![entry("a", l, &[], 1), entry("b", l, &[], 2)],
                owner: None,
                want: vec!["b"],
            },
            Case {
                name: "distinct listens all render",
                entries: vec![
                    entry("a", "127.0.0.1:8080", &[], 1),
                    entry("b", "127.0.0.1:8081", &[], 2),
                ],
                owner: None,
                want: vec!["a", "b"],
            },
        ];
        for case in cases {
            let mut table = Table::default();
            table.entries.extend(case.entries);
            if let Some(o) = case.owner {
                table
                    .owners
                    .insert(l.parse().expect("listen"), o.to_owned());
            }
            let got: Vec<String> = table.visible().into_iter().map(|u| u.policy).collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn listens_are_read_back_from_rendered_text() {
        let text = "server {\n    listen 127.0.0.1:8080;\n}\nserver {\n  listen [::1]:81;\n}\n# listen nothing\n";
        let got: Vec<String> = parse_listens(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(got, vec!["127.0.0.1:8080", "[::1]:81"]);
    }
}
