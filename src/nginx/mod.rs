//! Pure nginx rendering: upstream set → config text, deterministic and injection-proof.
//!
//! Two outputs come from the templates in `nginx-templates/` (embedded at compile time,
//! so this module does no I/O):
//! - [`render_managed`]: a complete `nginx.conf` for the nginx master the operator runs.
//! - [`render_snippet`]: an `upstream` + `server` block per policy, to `include` inside
//!   the `http {}` block of an nginx someone else runs.
//!
//! # Guarantees
//!
//! - Deterministic: upstreams are sorted by policy name, servers sorted and deduplicated.
//! - Every interpolated value is validated here (policy names are DNS labels, ports are
//!   non-zero, the prefix is a plain absolute path), so nothing can inject a directive
//!   even when validation upstream was bypassed.
//! - [`parse_upstreams`] reads back exactly the server sets that were rendered.
//! - Every server block answers [`LIVE_PATH`], to the host itself only, with a hash of
//!   the whole rendered text ([`config_hash`] reads it back): after a reload the
//!   operator asks each listen address for it to know the new text is the one serving.
//!
//! # Choices
//!
//! - **Zero servers.** nginx rejects an `upstream` block without a `server`, so a
//!   policy with no ready replica gets a `server 127.0.0.1:1 down;` placeholder (never
//!   contacted) and its server block answers `503` with `Retry-After: 1` itself: the
//!   client gets an honest "unavailable" rather than a `502 no live upstreams`.
//! - **Scale to zero.** An upstream with a [`HoldTarget`] and no server proxies to the
//!   operator's activator instead, naming the policy in [`ACTIVATOR_POLICY_HEADER`]
//!   (nginx's `proxy_set_header` replaces a client's value). When the activator is down
//!   (operator stopped or restarting) the connect is refused and `error_page` turns the
//!   502 into an immediate `503` with `Retry-After: 1`: never a hang, never a dead end.
//!   As soon as a replica is in the upstream the block is the ordinary one again, so
//!   warm traffic never passes the activator.
//! - **Failover.** `proxy_next_upstream error timeout http_502 http_503` retries a
//!   request on another replica when the chosen one refuses the connection (nginx never
//!   retries a non-idempotent request once it was sent, and we keep that default).
//!   Servers carry `max_fails=1 fail_timeout=2s`: one failed attempt takes a dead
//!   replica out of rotation in that worker for 2 s, so a replica killed from outside
//!   costs one quick retry per worker per 2 s instead of one per request (which would
//!   be a full `proxy_connect_timeout` each time for a black-holed address), and it is
//!   probed again soon after it comes back. nginx ignores `max_fails` when an upstream
//!   has a single server, so a lone replica is never marked away.
//! - **Directive order.** The balancing directive comes before `keepalive`, as nginx
//!   requires.
//! - **Shutdown timeout.** After a reload the old workers finish in-flight requests for
//!   at most `worker_shutdown_timeout`: the longest drain timeout of any upstream plus
//!   [`SHUTDOWN_MARGIN_SECONDS`], never below [`SHUTDOWN_FLOOR_SECONDS`], so a reload for
//!   one policy never cuts the requests another policy is draining. (Managed mode only:
//!   the directive belongs to the main context, which the snippet cannot reach; the
//!   snippet's header names the value for the user's own `nginx.conf`.)
//! - **Load signal.** Given a signal endpoint (the operator's receiver), the output
//!   defines `log_format autoscaler_signal` ([`crate::signal::record::FORMAT`]) and every
//!   policy's server block sets `$autoscaler_policy` and logs each request with
//!   `access_log syslog:server=ENDPOINT,nohostname,tag=autoscaler` (one datagram per
//!   request, sent non-blocking: a record is dropped, never waited for). The live-check
//!   location keeps `access_log off`. Managed mode logs the main context at `crit`
//!   (with the signal on, a stopped operator makes each request's send fail with an
//!   `[error]` there: an unbounded stream of lines nobody rotates while the operator is
//!   down) and the `http` context at `error` (a unix socket's full queue gives a `[warn]`
//!   per lost record there). Without an endpoint (`reconcile --once`, `diff`, no
//!   receiver) nothing is logged, as before.
//! - **Live check.** `return` runs in nginx's rewrite phase, before `allow`/`deny`
//!   would, so the check location refuses other hosts with
//!   `if ($remote_addr != $server_addr)`: only a connection from the host to itself
//!   (the operator binds its probe to the listen address) has both ends equal.

mod parse;

pub use parse::{activator_addr, config_hash, mask_config_hash, parse_upstreams};

use std::collections::BTreeSet;
use std::net::SocketAddr;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, UndefinedBehavior};
use sha2::{Digest, Sha256};

use crate::policy::Algorithm;
use crate::signal::Endpoint;
use crate::signal::record::FORMAT as SIGNAL_FORMAT;

/// Template of the complete managed-mode `nginx.conf`.
const MANAGED_TEMPLATE: &str = include_str!("../../nginx-templates/nginx.conf.j2");
/// Template of the includable upstream + server snippet.
const SNIPPET_TEMPLATE: &str = include_str!("../../nginx-templates/upstream.conf.j2");

/// Prefix of every upstream name this operator renders; [`parse_upstreams`] keys on it.
const UPSTREAM_PREFIX: &str = "autoscaler_";
/// Largest `keepalive` accepted (nginx caches at most this many idle connections).
const MAX_KEEPALIVE: u32 = 65_535;
/// Largest `worker_processes` accepted.
const MAX_WORKER_PROCESSES: u32 = 1024;
/// Largest drain timeout accepted, in seconds (a day; policy validation allows far less).
const MAX_DRAIN_SECONDS: u64 = 86_400;
/// `worker_shutdown_timeout` never goes below this many seconds (nor with no upstream).
pub const SHUTDOWN_FLOOR_SECONDS: u64 = 30;
/// Seconds added to the longest drain for `worker_shutdown_timeout`.
pub const SHUTDOWN_MARGIN_SECONDS: u64 = 5;
/// Exact path every server block answers with the config hash (to the host itself only).
pub const LIVE_PATH: &str = "/.autoscaler/config";
/// Stands for the hash while the text is hashed; no validated value can contain `@`.
const HASH_PLACEHOLDER: &str = "@config-hash@";
/// Bytes of the SHA-256 digest kept in the hash (hex: twice as many characters).
const HASH_BYTES: usize = 16;

/// One policy's load balancer: where it listens and which replicas it spreads over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Policy name (a DNS label); names the upstream.
    pub policy: String,
    /// Balancing algorithm.
    pub algorithm: Algorithm,
    /// Idle keep-alive connections per worker to the replicas; 0 disables the cache.
    pub keepalive: u32,
    /// Address the server block listens on.
    pub listen: SocketAddr,
    /// Replica addresses (any order, duplicates allowed: rendering sorts and dedups).
    pub servers: Vec<SocketAddr>,
    /// The policy's `spec.drain.timeoutSeconds`: a reload lets old workers finish
    /// requests for at least the longest of these (see [`shutdown_timeout_seconds`]).
    pub drain_timeout_seconds: u64,
    /// Where the server sends requests while `servers` is empty (a scale-to-zero policy
    /// under `autoscaler run`); `None`: it answers `503` itself.
    pub hold: Option<HoldTarget>,
}

/// The operator's activator, which holds a scale-to-zero policy's requests at zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldTarget {
    /// The activator's loopback listener.
    pub addr: SocketAddr,
    /// The policy's `scaleToZero.timeoutSeconds`: nginx waits a little longer for the
    /// activator's answer, so the activator's own 503 is what a client sees.
    pub timeout_seconds: u64,
}

/// Header naming the policy on requests nginx sends to the activator. nginx sets it with
/// `proxy_set_header`, which replaces any value a client sent.
pub const ACTIVATOR_POLICY_HEADER: &str = "X-Autoscaler-Policy";
/// Seconds nginx waits for the activator beyond the policy's hold timeout.
const HOLD_MARGIN_SECONDS: u64 = 5;
/// Longest hold timeout accepted, in seconds (policy validation allows 600).
const MAX_HOLD_SECONDS: u64 = 3600;

/// Settings of the nginx master the operator runs itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedSettings {
    /// Absolute prefix directory holding the pid file, logs and temp paths.
    pub prefix: String,
    /// Number of worker processes.
    pub worker_processes: u32,
}

/// Why a config could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A policy name is not a DNS label (it names the upstream and would reach nginx).
    #[error(
        "policy name {name:?} is not a DNS label (1-63 of a-z, 0-9, '-', alphanumeric at both ends)"
    )]
    ValidatePolicyName {
        /// The rejected name.
        name: String,
    },
    /// Two upstreams share a policy name.
    #[error("policy {policy:?} appears twice")]
    ValidateDuplicatePolicy {
        /// The repeated name.
        policy: String,
    },
    /// Two upstreams share a listen address.
    #[error("policies {first:?} and {second:?} both listen on {listen}")]
    ValidateDuplicateListen {
        /// Address claimed twice.
        listen: SocketAddr,
        /// First claimant (sorted order).
        first: String,
        /// Second claimant.
        second: String,
    },
    /// A listen or server address has port 0.
    #[error("policy {policy:?}: address {addr} has port 0")]
    ValidatePort {
        /// Policy owning the address.
        policy: String,
        /// The rejected address.
        addr: SocketAddr,
    },
    /// `keepalive` is out of range.
    #[error("policy {policy:?}: keepalive {keepalive} exceeds {MAX_KEEPALIVE}")]
    ValidateKeepalive {
        /// Policy owning the value.
        policy: String,
        /// The rejected value.
        keepalive: u32,
    },
    /// The managed prefix is not a plain absolute path.
    #[error(
        "nginx prefix {prefix:?} must be an absolute path of A-Z a-z 0-9 / . _ - + characters, without '..'"
    )]
    ValidatePrefix {
        /// The rejected prefix.
        prefix: String,
    },
    /// A drain timeout is out of range.
    #[error("policy {policy:?}: drain timeout {seconds}s exceeds {MAX_DRAIN_SECONDS}s")]
    ValidateDrainTimeout {
        /// Policy owning the value.
        policy: String,
        /// The rejected value.
        seconds: u64,
    },
    /// `worker_processes` is out of range.
    #[error("worker_processes {value} must be between 1 and {MAX_WORKER_PROCESSES}")]
    ValidateWorkerProcesses {
        /// The rejected value.
        value: u32,
    },
    /// The activator address has port 0, or the hold timeout is out of range.
    #[error(
        "policy {policy:?}: activator {addr} with a hold timeout of {seconds}s (port must be non-zero, timeout 1..={MAX_HOLD_SECONDS}s)"
    )]
    ValidateHold {
        /// Policy owning the value.
        policy: String,
        /// The activator address.
        addr: SocketAddr,
        /// The hold timeout.
        seconds: u64,
    },
    /// The signal endpoint cannot be written into the config.
    #[error(
        "signal endpoint {endpoint} cannot go into nginx's syslog parameter: want IP:PORT or \
         unix: and an absolute path of A-Z a-z 0-9 / . _ - + characters"
    )]
    ValidateSignal {
        /// The rejected endpoint.
        endpoint: String,
    },
    /// The template engine failed (a bug in a template).
    #[error("rendering template {template}: {source}")]
    Template {
        /// Template name.
        template: &'static str,
        /// Engine error.
        #[source]
        source: minijinja::Error,
    },
}

/// Name of the nginx upstream that serves `policy`.
pub fn upstream_name(policy: &str) -> String {
    format!("{UPSTREAM_PREFIX}{policy}")
}

/// `worker_shutdown_timeout` for `upstreams`, in seconds: the longest drain timeout plus
/// [`SHUTDOWN_MARGIN_SECONDS`], at least [`SHUTDOWN_FLOOR_SECONDS`].
pub fn shutdown_timeout_seconds(upstreams: &[Upstream]) -> u64 {
    upstreams
        .iter()
        .map(|u| {
            u.drain_timeout_seconds
                .saturating_add(SHUTDOWN_MARGIN_SECONDS)
        })
        .max()
        .unwrap_or(0)
        .max(SHUTDOWN_FLOOR_SECONDS)
}

/// Renders the complete managed-mode `nginx.conf` for `upstreams`.
///
/// # Errors
///
/// A [`RenderError`] when any value fails validation (see the module docs).
pub fn render_managed(
    upstreams: &[Upstream],
    settings: &ManagedSettings,
) -> Result<String, RenderError> {
    render_managed_with(upstreams, settings, None)
}

/// [`render_managed`], reporting every request to `signal` when given.
///
/// # Errors
///
/// A [`RenderError`] when any value fails validation (see the module docs).
pub fn render_managed_with(
    upstreams: &[Upstream],
    settings: &ManagedSettings,
    signal: Option<&Endpoint>,
) -> Result<String, RenderError> {
    let prefix = validate_prefix(&settings.prefix)?;
    if !(1..=MAX_WORKER_PROCESSES).contains(&settings.worker_processes) {
        return Err(RenderError::ValidateWorkerProcesses {
            value: settings.worker_processes,
        });
    }
    let snippet = render_upstreams(upstreams, false, signal)?;
    let ctx = minijinja::context! {
        prefix => prefix,
        worker_processes => settings.worker_processes,
        shutdown_timeout => shutdown_timeout_seconds(upstreams),
        snippet => snippet,
    };
    render_template("nginx.conf.j2", MANAGED_TEMPLATE, ctx).map(seal)
}

/// Renders the includable `upstream` + `server` snippet for `upstreams`.
///
/// # Errors
///
/// A [`RenderError`] when any value fails validation (see the module docs).
pub fn render_snippet(upstreams: &[Upstream]) -> Result<String, RenderError> {
    render_snippet_with(upstreams, None)
}

/// [`render_snippet`], reporting every request to `signal` when given.
///
/// # Errors
///
/// A [`RenderError`] when any value fails validation (see the module docs).
pub fn render_snippet_with(
    upstreams: &[Upstream],
    signal: Option<&Endpoint>,
) -> Result<String, RenderError> {
    render_upstreams(upstreams, true, signal).map(seal)
}

/// The `syslog:server=` value for `signal`, validated so it cannot break the directive.
fn signal_server(signal: &Endpoint) -> Result<String, RenderError> {
    let ok = match signal {
        Endpoint::Udp(addr) => addr.port() != 0,
        Endpoint::Unix(path) => path
            .to_str()
            .is_some_and(|p| validate_prefix(p).is_ok_and(|t| t == p)),
    };
    if ok {
        Ok(signal.nginx_server())
    } else {
        Err(RenderError::ValidateSignal {
            endpoint: signal.nginx_server(),
        })
    }
}

/// Replaces the hash placeholder with the hash of the text that holds it.
fn seal(text: String) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hash: String = digest[..HASH_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    text.replace(HASH_PLACEHOLDER, &hash)
}

/// The upstream template; `standalone` adds the header for a file people include.
fn render_upstreams(
    upstreams: &[Upstream],
    standalone: bool,
    signal: Option<&Endpoint>,
) -> Result<String, RenderError> {
    let views = normalize(upstreams)?;
    let signal = signal.map(signal_server).transpose()?;
    let values: Vec<minijinja::Value> = views.into_iter().map(UpstreamView::into_value).collect();
    render_template(
        "upstream.conf.j2",
        SNIPPET_TEMPLATE,
        minijinja::context! {
            upstreams => values,
            standalone => standalone,
            shutdown_timeout => shutdown_timeout_seconds(upstreams),
            live_path => LIVE_PATH,
            hash => HASH_PLACEHOLDER,
            policy_header => ACTIVATOR_POLICY_HEADER,
            signal => signal,
            signal_format => SIGNAL_FORMAT,
        },
    )
}

/// What a template sees of one upstream: validated strings only.
#[derive(Debug)]
struct UpstreamView {
    policy: String,
    name: String,
    algorithm: Option<&'static str>,
    keepalive: u32,
    listen: String,
    servers: Vec<String>,
    /// `(activator address, nginx read timeout in seconds)` when held at zero.
    hold: Option<(String, u64)>,
}

impl UpstreamView {
    /// The template value (built by hand: minijinja's serde support is not enabled).
    fn into_value(self) -> minijinja::Value {
        minijinja::context! {
            policy => self.policy,
            name => self.name,
            algorithm => self.algorithm,
            keepalive => self.keepalive,
            listen => self.listen,
            servers => self.servers,
            hold => self.hold.map(|(addr, read_timeout)| minijinja::context! {
                addr => addr,
                read_timeout => read_timeout,
            }),
        }
    }
}

/// Validates, sorts and deduplicates `upstreams` into template views.
fn normalize(upstreams: &[Upstream]) -> Result<Vec<UpstreamView>, RenderError> {
    let mut sorted: Vec<&Upstream> = upstreams.iter().collect();
    sorted.sort_by(|a, b| a.policy.cmp(&b.policy));
    let mut listens: Vec<(SocketAddr, &str)> = Vec::new();
    let mut views = Vec::with_capacity(sorted.len());
    for (i, u) in sorted.iter().enumerate() {
        validate_policy_name(&u.policy)?;
        if i > 0 && sorted[i - 1].policy == u.policy {
            return Err(RenderError::ValidateDuplicatePolicy {
                policy: u.policy.clone(),
            });
        }
        if u.keepalive > MAX_KEEPALIVE {
            return Err(RenderError::ValidateKeepalive {
                policy: u.policy.clone(),
                keepalive: u.keepalive,
            });
        }
        if u.drain_timeout_seconds > MAX_DRAIN_SECONDS {
            return Err(RenderError::ValidateDrainTimeout {
                policy: u.policy.clone(),
                seconds: u.drain_timeout_seconds,
            });
        }
        validate_port(&u.policy, u.listen)?;
        if let Some((_, first)) = listens.iter().find(|(l, _)| *l == u.listen) {
            return Err(RenderError::ValidateDuplicateListen {
                listen: u.listen,
                first: (*first).to_owned(),
                second: u.policy.clone(),
            });
        }
        listens.push((u.listen, &u.policy));
        let mut servers = BTreeSet::new();
        for s in &u.servers {
            validate_port(&u.policy, *s)?;
            servers.insert(*s);
        }
        let hold = match u.hold {
            Some(h)
                if h.addr.port() == 0 || !(1..=MAX_HOLD_SECONDS).contains(&h.timeout_seconds) =>
            {
                return Err(RenderError::ValidateHold {
                    policy: u.policy.clone(),
                    addr: h.addr,
                    seconds: h.timeout_seconds,
                });
            }
            Some(h) => Some((h.addr.to_string(), h.timeout_seconds + HOLD_MARGIN_SECONDS)),
            None => None,
        };
        views.push(UpstreamView {
            policy: u.policy.clone(),
            name: upstream_name(&u.policy),
            algorithm: algorithm_directive(u.algorithm),
            keepalive: u.keepalive,
            listen: u.listen.to_string(),
            servers: servers.iter().map(SocketAddr::to_string).collect(),
            hold,
        });
    }
    Ok(views)
}

/// The upstream directive selecting `algorithm`; `None` for nginx's default.
fn algorithm_directive(algorithm: Algorithm) -> Option<&'static str> {
    match algorithm {
        Algorithm::LeastConn => Some("least_conn"),
        Algorithm::RoundRobin => None,
        Algorithm::IpHash => Some("ip_hash"),
        Algorithm::RandomTwoLeastConn => Some("random two least_conn"),
    }
}

/// True when `name` is an RFC 1123 DNS label.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let end_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(inner_ok)
        && bytes.first().is_some_and(end_ok)
        && bytes.last().is_some_and(end_ok)
}

fn validate_policy_name(name: &str) -> Result<(), RenderError> {
    if is_dns_label(name) {
        Ok(())
    } else {
        Err(RenderError::ValidatePolicyName {
            name: name.to_owned(),
        })
    }
}

fn validate_port(policy: &str, addr: SocketAddr) -> Result<(), RenderError> {
    if addr.port() == 0 {
        return Err(RenderError::ValidatePort {
            policy: policy.to_owned(),
            addr,
        });
    }
    Ok(())
}

/// Checks the prefix and returns it without trailing slashes.
fn validate_prefix(prefix: &str) -> Result<&str, RenderError> {
    let trimmed = prefix.trim_end_matches('/');
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '+');
    let ok = trimmed.starts_with('/')
        && trimmed.chars().all(safe)
        && !trimmed.split('/').any(|part| part == "..");
    if ok {
        Ok(trimmed)
    } else {
        Err(RenderError::ValidatePrefix {
            prefix: prefix.to_owned(),
        })
    }
}

/// Renders one embedded template with strict undefined and the trailing newline kept.
fn render_template(
    template: &'static str,
    source: &'static str,
    ctx: minijinja::Value,
) -> Result<String, RenderError> {
    let wrap = |source| RenderError::Template { template, source };
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(wrap)?;
    env.set_syntax(syntax);
    env.add_template(template, source).map_err(wrap)?;
    env.get_template(template)
        .and_then(|t| t.render(ctx))
        .map_err(wrap)
}

#[cfg(test)]
mod tests;
