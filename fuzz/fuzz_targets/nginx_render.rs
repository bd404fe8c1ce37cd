//! Fuzz target: nginx rendering either refuses an upstream set or emits well-formed config.
//!
//! Running `nginx -t` per input is too slow here; tests/bad_input.rs does that on a
//! seeded sample. This target checks cheap structural properties of every accepted
//! render: balanced braces, every line a directive (`;`), a block edge (`{`/`}`), blank
//! or a comment, no interpolated value carrying `;{}"'` or whitespace, and the rendered
//! server sets read back exactly.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use autoscaler::nginx::{self, ManagedSettings, RenderError, Upstream};
use autoscaler::policy::Algorithm;
use libfuzzer_sys::fuzz_target;

/// An address: loopback-ish IPv4, any IPv4, or any IPv6, with any port (0 included).
#[derive(Debug, Arbitrary)]
enum FuzzAddr {
    Loopback(u16),
    V4([u8; 4], u16),
    V6([u8; 16], u16),
}

impl FuzzAddr {
    fn addr(&self) -> SocketAddr {
        match *self {
            FuzzAddr::Loopback(port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            FuzzAddr::V4(ip, port) => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            FuzzAddr::V6(ip, port) => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }
}

/// One upstream as the fuzzer builds it.
#[derive(Debug, Arbitrary)]
struct FuzzUpstream {
    policy: String,
    algorithm: u8,
    keepalive: u32,
    listen: FuzzAddr,
    servers: Vec<FuzzAddr>,
}

/// The managed prefix: usually a plain one (so full configs get rendered), sometimes anything.
#[derive(Debug, Arbitrary)]
enum FuzzPrefix {
    Plain,
    Any(String),
}

/// A whole render request.
#[derive(Debug, Arbitrary)]
struct Input {
    upstreams: Vec<FuzzUpstream>,
    prefix: FuzzPrefix,
    worker_processes: u32,
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::LeastConn,
    Algorithm::RoundRobin,
    Algorithm::IpHash,
    Algorithm::RandomTwoLeastConn,
];

fn upstream(f: &FuzzUpstream) -> Upstream {
    Upstream {
        policy: f.policy.clone(),
        algorithm: ALGORITHMS[usize::from(f.algorithm) % ALGORITHMS.len()],
        keepalive: f.keepalive,
        listen: f.listen.addr(),
        servers: f.servers.iter().map(FuzzAddr::addr).collect(),
    }
}

/// True when `value` could not break out of an nginx directive argument.
fn inert(value: &str) -> bool {
    !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || ";{}\"'#$\\".contains(c))
}

/// Structural checks of rendered config text.
fn assert_well_formed(text: &str) {
    let mut depth: i64 = 0;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        assert!(
            line.ends_with(';') || line.ends_with('{') || line.ends_with('}'),
            "line {} is not a directive or block edge: {raw:?}",
            n + 1
        );
        // Quotes only appear as the literal empty string of the template.
        let unquoted = line.replace("\"\"", "");
        assert!(
            !unquoted.contains('"') && !unquoted.contains('\''),
            "quote on line {}: {raw:?}",
            n + 1
        );
        // At most one structural character per line, and only at its end.
        let structural = line.chars().filter(|c| ";{}".contains(*c)).count();
        assert_eq!(
            structural,
            1,
            "line {} has {structural} of ;{{}}: {raw:?}",
            n + 1
        );
        depth += line.matches('{').count() as i64;
        depth -= line.matches('}').count() as i64;
        assert!(depth >= 0, "unbalanced '}}' on line {}", n + 1);
    }
    assert_eq!(depth, 0, "unclosed block");
}

fuzz_target!(|input: Input| {
    let upstreams: Vec<Upstream> = input.upstreams.iter().map(upstream).collect();
    let snippet = nginx::render_snippet(&upstreams);
    let settings = ManagedSettings {
        prefix: match &input.prefix {
            FuzzPrefix::Plain => "/var/lib/autoscaler/nginx".to_owned(),
            FuzzPrefix::Any(p) => p.clone(),
        },
        worker_processes: input.worker_processes,
    };
    let managed = nginx::render_managed(&upstreams, &settings);

    // Both renders validate the upstreams the same way: if the snippet fails, so does
    // the full config; if the snippet passes, the full config fails only on settings.
    if snippet.is_err() {
        assert!(
            managed.is_err(),
            "managed accepted what the snippet refused"
        );
    }
    let Ok(snippet) = snippet else { return };

    // Accepted values are inert once interpolated.
    let mut expected: BTreeMap<String, Vec<SocketAddr>> = BTreeMap::new();
    for u in &upstreams {
        assert!(inert(&u.policy), "accepted policy name {:?}", u.policy);
        assert!(u.listen.port() != 0 && u.servers.iter().all(|s| s.port() != 0));
        assert!(inert(&u.listen.to_string()));
        let set: BTreeSet<SocketAddr> = u.servers.iter().copied().collect();
        expected.insert(u.policy.clone(), set.into_iter().collect());
    }
    assert_well_formed(&snippet);
    assert_eq!(
        nginx::parse_upstreams(&snippet),
        expected,
        "snippet read-back"
    );

    match managed {
        Ok(conf) => {
            assert!(
                inert(&settings.prefix),
                "accepted prefix {:?}",
                settings.prefix
            );
            assert_well_formed(&conf);
            assert_eq!(nginx::parse_upstreams(&conf), expected, "managed read-back");
        }
        // The upstreams passed, so only the settings can be at fault.
        Err(e) => assert!(
            matches!(
                e,
                RenderError::ValidatePrefix { .. } | RenderError::ValidateWorkerProcesses { .. }
            ),
            "managed refused upstreams the snippet accepted: {e}"
        ),
    }
});
