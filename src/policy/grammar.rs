//! Strict grammars for every policy string that reaches nginx, Docker or an HTTP request.
//!
//! Each check returns `Err(reason)` in words; none uses a regex engine, so each rule is
//! readable and exhaustive: characters outside the grammar are rejected, never escaped.

use std::net::{IpAddr, SocketAddr};

/// Longest argument or environment value accepted, in bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// RFC 1123 DNS label: lowercase letters, digits and `-`, not at either end, 1..=63.
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!(
            "must be 1 to 63 characters long (a DNS label), got {}",
            s.len()
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "{s:?} is not a DNS label: only a-z, 0-9 and '-' are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!(
            "{s:?} is not a DNS label: must not start or end with '-'"
        ));
    }
    Ok(())
}

/// Docker image reference: `[host[:port]/]path[:tag][@algo:hex]`, path lowercase.
pub fn image_reference(s: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("{s:?} is not a valid image reference: {why}"));
    if s.is_empty() || s.len() > 512 {
        return bad("must be 1 to 512 characters long");
    }
    let (rest, digest) = match s.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((algo, hex)) = d.split_once(':') else {
            return bad("digest must be ALGORITHM:HEX");
        };
        let algo_ok = !algo.is_empty()
            && algo.split(['+', '.', '_', '-']).all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !algo_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad("digest must be ALGORITHM:HEX with at least 32 hex digits");
        }
    }
    // A tag is after the last ':' that follows the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let mut bytes = tag.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !first_ok
            || tag.len() > 128
            || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        {
            return bad("tag must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("name must be 1 to 255 characters long");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let first = components[0];
    if components.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        domain(first).or_else(|why| bad(&why))?;
        components.remove(0);
    }
    for c in components {
        path_component(c).or_else(|why| bad(&why))?;
    }
    Ok(())
}

/// `host[:port]` of an image reference.
fn domain(s: &str) -> Result<(), String> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("registry port must be digits".to_owned());
    }
    let ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!("registry host {host:?} is not a host name"))
    }
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or runs of `-`.
fn path_component(c: &str) -> Result<(), String> {
    let err = || {
        Err(format!(
            "path component {c:?} must be lowercase letters and digits joined by '.', '_', '__' or '-'"
        ))
    };
    let bytes = c.as_bytes();
    if bytes.is_empty() || !is_alnum(bytes[0]) || !is_alnum(bytes[bytes.len() - 1]) {
        return err();
    }
    let mut i = 0;
    while i < bytes.len() {
        if is_alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return err();
        }
    }
    Ok(())
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// POSIX environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 256 bytes.
pub fn env_name(s: &str) -> Result<(), String> {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if first_ok && s.len() <= 256 && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a POSIX variable name ([A-Za-z_][A-Za-z0-9_]*)"
        ))
    }
}

/// An argument or environment value: any text on one line, without NUL or control
/// characters other than tab, at most [`MAX_VALUE_BYTES`].
pub fn single_line_value(s: &str) -> Result<(), String> {
    if s.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "is {} bytes long, more than {MAX_VALUE_BYTES}",
            s.len()
        ));
    }
    match s.chars().find(|c| c.is_control() && *c != '\t') {
        Some(c) => Err(format!(
            "must not contain control characters (found {c:?}): newlines and NUL are not allowed"
        )),
        None => Ok(()),
    }
}

/// An absolute HTTP path: `/` followed by `A-Z a-z 0-9 . _ ~ - / %`, at most 1024
/// bytes; no query, spaces, quotes, `;` or braces.
pub fn http_path(s: &str) -> Result<(), String> {
    let ok = s.starts_with('/')
        && s.len() <= 1024
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-' | b'/' | b'%')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not an absolute path of [A-Za-z0-9._~/%-] characters"
        ))
    }
}

/// A Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`, at most 256 bytes.
pub fn metric_name(s: &str) -> Result<(), String> {
    let mut bytes = s.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':');
    if first_ok
        && s.len() <= 256
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
    {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        ))
    }
}

/// An IP address (v4 or v6) in canonical textual form.
pub fn ip_address(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not an IP address"))
}

/// `IP:PORT` (IPv6 as `[::1]:PORT`) with a non-zero port.
pub fn listen_address(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|_| format!("{s:?} is not IP:PORT (e.g. 127.0.0.1:8080)"))?;
    if addr.port() == 0 {
        return Err(format!("{s:?} has port 0; choose a fixed port"));
    }
    Ok(addr)
}

/// `FIRST-LAST` with both ports in 1..=65535 and FIRST <= LAST.
pub fn port_range(s: &str) -> Result<(u16, u16), String> {
    let parse = |p: &str| -> Option<u16> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        p.parse::<u16>().ok().filter(|&n| n >= 1)
    };
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not FIRST-LAST (e.g. 8001-8099)"))?;
    match (parse(a), parse(b)) {
        (Some(first), Some(last)) if first <= last => Ok((first, last)),
        (Some(first), Some(last)) => Err(format!("first port {first} is above last port {last}")),
        _ => Err(format!("{s:?} is not FIRST-LAST with ports in 1..=65535")),
    }
}

/// An `http://` or `https://` URL: host, optional port and path; no credentials,
/// query, whitespace, quotes or control characters.
pub fn http_url(s: &str) -> Result<(), String> {
    let bad = || Err(format!("{s:?} is not an http(s)://HOST[:PORT][/PATH] URL"));
    let Some(rest) = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
    else {
        return bad();
    };
    if s.len() > 2048 {
        return bad();
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if !path.is_empty() && http_path(path).is_err() {
        return bad();
    }
    let host_ok = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((ip, port)) => {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty() || port_digits(port.strip_prefix(':')))
            }
            None => false,
        }
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        !host.is_empty()
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            && port.is_none_or(|p| port_digits(Some(p)))
    };
    if host_ok { Ok(()) } else { bad() }
}

fn port_digits(p: Option<&str>) -> bool {
    p.is_some_and(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|n| n > 0)
    })
}

/// A Kubernetes memory quantity in bytes: plain digits, or a number with a suffix
/// `k M G T P E` (powers of 1000) or `Ki Mi Gi Ti Pi Ei` (powers of 1024); a decimal
/// fraction is allowed and rounded down. `None` when malformed or above `u64::MAX`.
pub fn memory_bytes(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int.is_empty() || int.len() > 20 || frac.len() > 9 {
        return None;
    }
    if number.contains('.') && frac.is_empty() {
        return None;
    }
    let int: u128 = int.parse().ok()?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
    let total = int.checked_mul(multiplier)? + frac_value * multiplier / scale;
    u64::try_from(total).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["web", "a", "web-1", "0abc", &"a".repeat(63)] {
            assert!(dns_label(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Web",
            "-web",
            "web-",
            "we_b",
            "we.b",
            "web;",
            "web{",
            "w b",
            "web\n",
            "wéb",
            &"a".repeat(64),
        ] {
            assert!(dns_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "autoscaler-demo:latest",
            "nginx",
            "library/nginx:1.27",
            "docker.io/library/nginx:1.27-alpine",
            "localhost:5000/team/app:v1.2.3",
            "registry.example.com/a/b/c",
            "a__b/c-d---e.f",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "app:v1@sha256:0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                image_reference(ok).is_ok(),
                "{ok}: {:?}",
                image_reference(ok)
            );
        }
        for bad in [
            "",
            "App:latest",
            "app:",
            ":tag",
            "app:-x",
            "app;rm -rf /",
            "app:latest\n",
            "app latest",
            "app\"x",
            "app/",
            "/app",
            "app//x",
            "app@sha256:short",
            "app@:0123456789abcdef0123456789abcdef",
            "a..b",
            "-app",
            "app_",
            "host:port/app",
            "app:{x}",
        ] {
            assert!(image_reference(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_names_and_values() {
        for ok in ["A", "_x", "PORT_2"] {
            assert!(env_name(ok).is_ok());
        }
        for bad in ["", "2A", "A-B", "A B", "A=B", "Ä"] {
            assert!(env_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["", "with spaces", "a=b;c", "tab\there", "ünïcode"] {
            assert!(single_line_value(ok).is_ok(), "{ok:?}");
        }
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        for bad in ["a\nb", "a\rb", "nul\0", "\u{1b}[31m", long.as_str()] {
            assert!(single_line_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_paths() {
        for ok in ["/", "/healthz", "/metrics", "/a/b-c_d.e~f%20"] {
            assert!(http_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "healthz", "/a b", "/a;b", "/a{b}", "/a\"b", "/a'b", "/a\nb", "/a?b=1", "/a\0",
        ] {
            assert!(http_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        assert!(ip_address("127.0.0.1").is_ok());
        assert!(ip_address("::1").is_ok());
        for bad in ["", "localhost", "127.0.0.1;", "1.2.3", "127.0.0.1 "] {
            assert!(ip_address(bad).is_err(), "{bad:?}");
        }
        assert_eq!(listen_address("127.0.0.1:8080").map(|a| a.port()), Ok(8080));
        assert!(listen_address("[::1]:8080").is_ok());
        for bad in [
            "8080",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:70000",
            "0.0.0.0:80;",
            "localhost:80",
        ] {
            assert!(listen_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("8001-8099"), Ok((8001, 8099)));
        assert_eq!(port_range("1-65535"), Ok((1, 65535)));
        assert_eq!(port_range("80-80"), Ok((80, 80)));
        for bad in [
            "", "8001", "0-10", "10-5", "1-65536", " 1-2", "1-2 ", "+1-2", "1--2", "a-b", "1-2-3",
        ] {
            assert!(port_range(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        for ok in [
            "http://127.0.0.1:9090",
            "https://prom.example.com/prometheus",
            "http://[::1]:9090/",
            "http://prometheus",
        ] {
            assert!(http_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://x",
            "http://",
            "http://a b",
            "http://user:pw@host",
            "http://host:0",
            "http://host:99999",
            "http://host/?q=1",
            "http://host/\"",
            "http://host;x",
        ] {
            assert!(http_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn memory_quantities() {
        let cases = [
            ("128Mi", Some(128 << 20)),
            ("1Gi", Some(1 << 30)),
            ("500M", Some(500_000_000)),
            ("1048576", Some(1_048_576)),
            ("1.5Gi", Some(3 << 29)),
            ("0.5k", Some(500)),
            ("100k", Some(100_000)),
            ("16Ei", None),
            ("", None),
            ("Mi", None),
            ("1.Mi", None),
            ("1..5Mi", None),
            ("-1Mi", None),
            ("1mi", None),
            ("1 Mi", None),
            ("1KiB", None),
            ("99999999999999999999999", None),
        ];
        for (input, expected) in cases {
            assert_eq!(memory_bytes(input), expected, "{input:?}");
        }
    }

    #[test]
    fn metric_names() {
        assert!(metric_name("http_requests_total").is_ok());
        assert!(metric_name("ns:rate5m").is_ok());
        for bad in ["", "1x", "a-b", "a b", "a{b}"] {
            assert!(metric_name(bad).is_err(), "{bad:?}");
        }
    }
}
