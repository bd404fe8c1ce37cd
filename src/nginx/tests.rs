//! Table-driven and property tests of nginx rendering.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn upstream(policy: &str, listen: &str, servers: &[&str]) -> Upstream {
    Upstream {
        policy: policy.to_owned(),
        algorithm: Algorithm::LeastConn,
        keepalive: 32,
        listen: addr(listen),
        servers: servers.iter().map(|s| addr(s)).collect(),
    }
}

fn settings(prefix: &str) -> ManagedSettings {
    ManagedSettings {
        prefix: prefix.to_owned(),
        worker_processes: 2,
    }
}

/// The lines of the `upstream` block of `policy`, trimmed.
fn upstream_block(text: &str, policy: &str) -> Vec<String> {
    let open = format!("upstream {} {{", upstream_name(policy));
    text.lines()
        .map(str::trim)
        .skip_while(|l| *l != open)
        .skip(1)
        .take_while(|l| *l != "}")
        .map(str::to_owned)
        .collect()
}

#[test]
fn algorithm_directive_comes_first_and_before_keepalive() {
    let cases = [
        (Algorithm::LeastConn, Some("least_conn;")),
        (Algorithm::RoundRobin, None),
        (Algorithm::IpHash, Some("ip_hash;")),
        (
            Algorithm::RandomTwoLeastConn,
            Some("random two least_conn;"),
        ),
    ];
    for (algorithm, want) in cases {
        let mut u = upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"]);
        u.algorithm = algorithm;
        let text = render_snippet(&[u]).unwrap();
        let block = upstream_block(&text, "web");
        let first = block.first().map(String::as_str);
        match want {
            Some(directive) => assert_eq!(first, Some(directive), "{algorithm:?}: {block:?}"),
            None => assert!(
                first.unwrap().starts_with("server "),
                "{algorithm:?}: {block:?}"
            ),
        }
        assert_eq!(block.last().map(String::as_str), Some("keepalive 32;"));
    }
}

#[test]
fn keepalive_zero_omits_the_directive() {
    let cases = [
        (0, None),
        (1, Some("keepalive 1;")),
        (65_535, Some("keepalive 65535;")),
    ];
    for (keepalive, want) in cases {
        let mut u = upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"]);
        u.keepalive = keepalive;
        let text = render_snippet(&[u]).unwrap();
        let found = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("keepalive "));
        assert_eq!(found, want, "keepalive {keepalive}");
    }
}

#[test]
fn servers_are_sorted_deduplicated_and_fail_fast() {
    let u = upstream(
        "web",
        "127.0.0.1:8080",
        &[
            "127.0.0.1:8003",
            "127.0.0.1:8001",
            "127.0.0.1:8003",
            "[::1]:8002",
        ],
    );
    let block = upstream_block(&render_snippet(&[u]).unwrap(), "web");
    let servers: Vec<&str> = block
        .iter()
        .filter(|l| l.starts_with("server "))
        .map(String::as_str)
        .collect();
    assert_eq!(
        servers,
        [
            "server 127.0.0.1:8001 max_fails=1 fail_timeout=2s;",
            "server 127.0.0.1:8003 max_fails=1 fail_timeout=2s;",
            "server [::1]:8002 max_fails=1 fail_timeout=2s;",
        ]
    );
}

#[test]
fn empty_upstream_gets_down_placeholder_and_answers_503() {
    let text = render_snippet(&[upstream("idle", "127.0.0.1:8080", &[])]).unwrap();
    let block = upstream_block(&text, "idle");
    assert!(
        block.contains(&"server 127.0.0.1:1 down;".to_owned()),
        "{block:?}"
    );
    assert!(text.contains("return 503;"), "{text}");
    assert!(!text.contains("proxy_pass"), "{text}");
    assert_eq!(
        parse_upstreams(&text),
        BTreeMap::from([("idle".to_owned(), vec![])])
    );
}

#[test]
fn server_block_proxies_with_failover_headers_and_keepalive() {
    let text = render_snippet(&[upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"])]).unwrap();
    for want in [
        "listen 127.0.0.1:8080;",
        "proxy_pass http://autoscaler_web;",
        "proxy_http_version 1.1;",
        "proxy_set_header Connection \"\";",
        "proxy_set_header Host $host;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_connect_timeout 1s;",
        "proxy_next_upstream error timeout http_502 http_503;",
        "proxy_next_upstream_tries 3;",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == want),
            "missing {want:?} in\n{text}"
        );
    }
    // nginx keeps non-idempotent requests un-retried only while non_idempotent is absent.
    assert!(!text.contains("non_idempotent"));
}

#[test]
fn invalid_values_are_rejected_before_rendering() {
    let bad_names = [
        "",
        "Web",
        "-web",
        "web-",
        "web;",
        "web {",
        "web\n",
        "web server",
        "w$b",
        "wéb",
        "a.b",
        "web}\nserver{listen 80;}",
        &"a".repeat(64),
    ];
    for name in bad_names {
        let u = upstream(name, "127.0.0.1:8080", &["127.0.0.1:8001"]);
        let err = render_snippet(std::slice::from_ref(&u)).unwrap_err();
        assert!(
            matches!(err, RenderError::ValidatePolicyName { .. }),
            "{name:?}: {err}"
        );
        let err = render_managed(&[u], &settings("/srv/nginx")).unwrap_err();
        assert!(
            matches!(err, RenderError::ValidatePolicyName { .. }),
            "{name:?}: {err}"
        );
    }
    let cases: Vec<(Vec<Upstream>, &str)> = vec![
        (
            vec![upstream("web", "127.0.0.1:0", &["127.0.0.1:8001"])],
            "port",
        ),
        (
            vec![upstream("web", "127.0.0.1:8080", &["127.0.0.1:0"])],
            "port",
        ),
        (
            vec![
                upstream("a", "127.0.0.1:8080", &[]),
                upstream("a", "127.0.0.1:8081", &[]),
            ],
            "duplicate policy",
        ),
        (
            vec![
                upstream("b", "127.0.0.1:8080", &[]),
                upstream("a", "127.0.0.1:8080", &[]),
            ],
            "duplicate listen",
        ),
        (
            vec![Upstream {
                keepalive: 65_536,
                ..upstream("a", "127.0.0.1:8080", &[])
            }],
            "keepalive",
        ),
    ];
    for (ups, what) in cases {
        let err = render_snippet(&ups).unwrap_err();
        let ok = match what {
            "port" => matches!(err, RenderError::ValidatePort { .. }),
            "duplicate policy" => matches!(err, RenderError::ValidateDuplicatePolicy { .. }),
            "duplicate listen" => {
                matches!(&err, RenderError::ValidateDuplicateListen { first, second, .. } if first == "a" && second == "b")
            }
            _ => matches!(err, RenderError::ValidateKeepalive { .. }),
        };
        assert!(ok, "{what}: {err}");
    }
}

#[test]
fn managed_prefix_and_workers_are_validated() {
    let ups = [upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"])];
    for prefix in [
        "relative/dir",
        "",
        "/srv/ngi nx",
        "/srv/x;",
        "/srv/{x}",
        "/srv/../etc",
        "/srv/$x",
        "/srv/\"x",
        "/srv/x\n",
    ] {
        let err = render_managed(&ups, &settings(prefix)).unwrap_err();
        assert!(
            matches!(err, RenderError::ValidatePrefix { .. }),
            "{prefix:?}: {err}"
        );
    }
    for value in [0, 1025] {
        let s = ManagedSettings {
            worker_processes: value,
            ..settings("/srv/nginx")
        };
        let err = render_managed(&ups, &s).unwrap_err();
        assert!(
            matches!(err, RenderError::ValidateWorkerProcesses { .. }),
            "{value}: {err}"
        );
    }
}

#[test]
fn managed_config_keeps_everything_under_the_prefix() {
    let text = render_managed(
        &[upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"])],
        &settings("/srv/a-b_c.d/nginx/"),
    )
    .unwrap();
    for want in [
        "worker_processes 2;",
        "pid /srv/a-b_c.d/nginx/nginx.pid;",
        "error_log /srv/a-b_c.d/nginx/error.log warn;",
        "worker_shutdown_timeout 30s;",
        "client_body_temp_path /srv/a-b_c.d/nginx/client_body_temp;",
        "proxy_temp_path /srv/a-b_c.d/nginx/proxy_temp;",
        "access_log off;",
        "upstream autoscaler_web {",
    ] {
        assert!(
            text.lines().any(|l| l.trim() == want),
            "missing {want:?} in\n{text}"
        );
    }
    // Every path directive points inside the prefix.
    for line in text.lines().map(str::trim) {
        if line.contains("_path ") || line.starts_with("pid ") || line.starts_with("error_log ") {
            assert!(line.contains(" /srv/a-b_c.d/nginx/"), "{line}");
        }
    }
    assert!(text.ends_with("}\n"), "trailing newline kept");
}

#[test]
fn managed_config_matches_golden_text() {
    let mut rr = upstream(
        "api",
        "127.0.0.1:8081",
        &["127.0.0.1:8102", "127.0.0.1:8101"],
    );
    rr.algorithm = Algorithm::RoundRobin;
    rr.keepalive = 0;
    let ups = [
        upstream("web", "127.0.0.1:8080", &["127.0.0.1:8001"]),
        rr,
        upstream("idle", "[::1]:8082", &[]),
    ];
    let got = render_managed(&ups, &settings("/run/as")).unwrap();
    let want = include_str!("testdata/managed.golden.conf");
    if got != want {
        panic!("golden mismatch; got:\n{got}");
    }
}

/// A small deterministic generator (xorshift64*), so property cases are reproducible.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn addr(&mut self) -> SocketAddr {
        let ip = if self.below(4) == 0 {
            IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1 + self.below(3) as u16))
        } else {
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + self.below(3) as u8))
        };
        SocketAddr::new(ip, 1 + self.below(20) as u16)
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
    fn upstreams(&mut self) -> Vec<Upstream> {
        let algorithms = [
            Algorithm::LeastConn,
            Algorithm::RoundRobin,
            Algorithm::IpHash,
            Algorithm::RandomTwoLeastConn,
        ];
        let count = self.below(5) as usize;
        (0..count)
            .map(|i| Upstream {
                policy: format!("p{}-{i}", self.below(100)),
                algorithm: algorithms[self.below(4) as usize],
                keepalive: self.below(3) as u32 * 16,
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9000 + i as u16),
                servers: (0..self.below(8)).map(|_| self.addr()).collect(),
            })
            .collect()
    }
}

#[test]
fn rendering_ignores_input_order_and_duplicates_and_parses_back() {
    let mut g = Gen(0x5eed_1234_abcd_0001);
    for case in 0..300 {
        let ups = g.upstreams();
        let want: BTreeMap<String, Vec<SocketAddr>> = ups
            .iter()
            .map(|u| {
                let mut s = u.servers.clone();
                s.sort();
                s.dedup();
                (u.policy.clone(), s)
            })
            .collect();
        let text = render_snippet(&ups).unwrap();
        let managed = render_managed(&ups, &settings("/tmp/x")).unwrap();
        assert_eq!(parse_upstreams(&text), want, "case {case}:\n{text}");
        assert_eq!(parse_upstreams(&managed), want, "case {case}:\n{managed}");

        let mut shuffled = ups.clone();
        g.shuffle(&mut shuffled);
        for u in &mut shuffled {
            let extra: Vec<SocketAddr> = u
                .servers
                .iter()
                .copied()
                .filter(|_| g.below(2) == 0)
                .collect();
            u.servers.extend(extra);
            g.shuffle(&mut u.servers);
        }
        assert_eq!(render_snippet(&shuffled).unwrap(), text, "case {case}");
        assert_eq!(
            render_managed(&shuffled, &settings("/tmp/x")).unwrap(),
            managed,
            "case {case}"
        );

        // Structure: every directive line ends a statement or a block.
        for line in managed.lines().map(str::trim) {
            let ok = line.is_empty()
                || line.starts_with('#')
                || line.ends_with(';')
                || line.ends_with('{')
                || line == "}";
            assert!(ok, "case {case}: odd line {line:?}");
        }
        let opens = managed.matches('{').count();
        assert_eq!(
            opens,
            managed.matches('}').count(),
            "case {case}: unbalanced braces"
        );
    }
}

#[test]
fn parse_ignores_foreign_upstreams_and_down_servers() {
    let text = "\
upstream other { server 10.0.0.1:80; }
upstream other2 {
    server 10.0.0.2:80;
}
upstream autoscaler_web {
    least_conn;
    server 127.0.0.1:8002 max_fails=1;
    server 127.0.0.1:8001;
    server 127.0.0.1:8009 down;
    server not-an-addr:80;
    keepalive 8;
}
server { listen 127.0.0.1:8080; }
";
    let got = parse_upstreams(text);
    assert_eq!(
        got,
        BTreeMap::from([(
            "web".to_owned(),
            vec![addr("127.0.0.1:8001"), addr("127.0.0.1:8002")]
        )])
    );
    assert!(parse_upstreams("").is_empty());
}
