//! One nginx request record, as the signal `log_format` writes it (pure parsing).
//!
//! nginx sends each record as a syslog message: `<PRI>TIMESTAMP TAG: MESSAGE` (the
//! `nohostname` option drops the host). The message is [`FORMAT`], fields separated by
//! `|`, beginning with the version marker [`MARKER`]:
//!
//! ```text
//! as1|POLICY|STATUS|REQUEST_TIME|UPSTREAM_ADDR|UPSTREAM_RESPONSE_TIME|MSEC|PID|CONNECTION|CONNECTION_REQUESTS
//! as1|web|200|0.003|172.17.0.5:8080|0.002|1764625589.123|4242|17|3
//! ```
//!
//! `$upstream_addr` lists every replica tried: `a:1, b:2` (a retry: the request went to
//! `a`, then to `b`) and `a:1 : b:2` (an internal redirect to another upstream). The
//! replica that answered is the last address. `-` or a bare upstream name (nginx's
//! `502 no live upstreams`) means no replica answered: nginx answered itself.

use std::net::SocketAddr;

/// First field of every record: the format's version.
pub const MARKER: &str = "as1";

/// The nginx `log_format` body producing the records [`parse`] reads. `$autoscaler_policy`
/// is `set` in every server block the operator renders.
pub const FORMAT: &str = "as1|$autoscaler_policy|$status|$request_time|$upstream_addr|\
                          $upstream_response_time|$msec|$pid|$connection|$connection_requests";

/// Longest datagram accepted; a longer one is counted as dropped (oversized).
pub const MAX_RECORD_BYTES: usize = 2048;

/// One finished request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Record<'a> {
    /// The policy whose server block answered.
    pub policy: &'a str,
    /// HTTP status sent to the client (499: the client closed first).
    pub status: u16,
    /// Whole request time, seconds (finite, non-negative).
    pub request_time: f64,
    /// The replica that answered last; `None` when nginx answered itself.
    pub replica: Option<SocketAddr>,
    /// Seconds the replicas took in total (every attempt), when any was contacted.
    pub upstream_time: Option<f64>,
    /// When nginx logged the request, seconds since the epoch (millisecond resolution).
    pub msec: f64,
    /// The nginx worker's pid.
    pub worker: u32,
    /// The connection's serial number.
    pub connection: u64,
    /// Which request of the connection this was (1, 2, ...).
    pub connection_requests: u64,
}

/// Why a datagram is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Longer than [`MAX_RECORD_BYTES`] (or cut by the receive buffer).
    #[error("record longer than {MAX_RECORD_BYTES} bytes")]
    Oversized,
    /// Not UTF-8 (nginx escapes variable values, so a real record always is).
    #[error("record is not UTF-8")]
    NotUtf8,
    /// No syslog header `...: ` before the message.
    #[error("no syslog header")]
    NoHeader,
    /// The message does not start with [`MARKER`] (another format version or a stray sender).
    #[error("unknown record format (want marker {MARKER:?})")]
    Marker,
    /// Fewer or more fields than [`FORMAT`] has.
    #[error("record has {got} fields, want 10")]
    FieldCount {
        /// Fields found.
        got: usize,
    },
    /// A field does not hold a valid value.
    #[error("field {field} has an invalid value {value:?}")]
    Field {
        /// The field's name in [`FORMAT`].
        field: &'static str,
        /// The rejected text (cut to 64 bytes).
        value: String,
    },
}

/// Parses one syslog datagram carrying a record.
///
/// # Errors
///
/// A [`RecordError`] naming what is wrong; the caller counts it as a dropped record.
pub fn parse(datagram: &[u8]) -> Result<Record<'_>, RecordError> {
    if datagram.len() > MAX_RECORD_BYTES {
        return Err(RecordError::Oversized);
    }
    let text = std::str::from_utf8(datagram).map_err(|_| RecordError::NotUtf8)?;
    let text = text.trim_end_matches(['\n', '\r', '\0']);
    let message = strip_syslog_header(text).ok_or(RecordError::NoHeader)?;
    parse_message(message)
}

/// The message after `<PRI>TIMESTAMP [HOST] TAG: `; a bare message (no `<`) is
/// accepted as is, so a plain datagram sender works too.
fn strip_syslog_header(text: &str) -> Option<&str> {
    if !text.starts_with('<') {
        return Some(text);
    }
    let start = text.find(": ")? + 2;
    text.get(start..)
}

/// Parses the `|`-separated message.
pub fn parse_message(message: &str) -> Result<Record<'_>, RecordError> {
    // A fixed array, no allocation per record; one slot more detects extra fields.
    let mut fields = [""; 11];
    let mut got = 0;
    for part in message.split('|') {
        if got == fields.len() {
            break;
        }
        fields[got] = part;
        got += 1;
    }
    if fields[0] != MARKER {
        return Err(RecordError::Marker);
    }
    if got != 10 {
        let got = if got == 11 {
            message.split('|').count()
        } else {
            got
        };
        return Err(RecordError::FieldCount { got });
    }
    let [
        _,
        policy,
        status,
        request_time,
        upstream_addr,
        upstream_time,
        msec,
        pid,
        connection,
        requests,
        _,
    ] = fields;
    if !is_policy_name(policy) {
        return Err(invalid("policy", policy));
    }
    Ok(Record {
        policy,
        status: parse_status(status)?,
        request_time: parse_seconds("request_time", request_time)?,
        replica: last_replica(upstream_addr),
        upstream_time: parse_upstream_time(upstream_time)?,
        msec: parse_seconds("msec", msec)?,
        worker: pid.parse().map_err(|_| invalid("pid", pid))?,
        connection: connection
            .parse()
            .map_err(|_| invalid("connection", connection))?,
        connection_requests: requests
            .parse()
            .map_err(|_| invalid("connection_requests", requests))?,
    })
}

fn invalid(field: &'static str, value: &str) -> RecordError {
    let mut end = value.len().min(64);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    RecordError::Field {
        field,
        value: value[..end].to_owned(),
    }
}

/// A DNS label, as rendered policy names are (anything else is not ours).
fn is_policy_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Three digits, 100..=599, or 000 (nginx logs 0 when it sent nothing) and 499.
fn parse_status(text: &str) -> Result<u16, RecordError> {
    match text.parse::<u16>() {
        Ok(code) if text.len() == 3 && (code == 0 || (100..=599).contains(&code)) => Ok(code),
        _ => Err(invalid("status", text)),
    }
}

/// A finite, non-negative number of seconds.
fn parse_seconds(field: &'static str, text: &str) -> Result<f64, RecordError> {
    // `f64::from_str` accepts "NaN", "inf" and "1e3": only plain decimals are nginx's.
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    match text.parse::<f64>() {
        Ok(v) if plain && v.is_finite() => Ok(v),
        _ => Err(invalid(field, text)),
    }
}

/// Sum of the attempts' times (`0.001, 0.002 : 0.003`); `-` entries (an attempt that
/// got no answer) count as zero; all `-` is `None`.
fn parse_upstream_time(text: &str) -> Result<Option<f64>, RecordError> {
    let mut total = None;
    for part in text.split([',', ':']) {
        let part = part.trim();
        if part == "-" {
            continue;
        }
        let v = parse_seconds("upstream_response_time", part)?;
        total = Some(total.unwrap_or(0.0) + v);
    }
    Ok(total)
}

/// The last address of `$upstream_addr`, when it is `IP:PORT` (a name or `-` means
/// no replica answered).
fn last_replica(text: &str) -> Option<SocketAddr> {
    let last = text
        .rsplit([',', ' '])
        .find(|p| !p.is_empty() && *p != ":")?;
    last.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<190>Dec  1 21:46:29 autoscaler: ";

    fn msg(body: &str) -> Vec<u8> {
        format!("{HEADER}{body}").into_bytes()
    }

    #[test]
    fn parses_a_plain_record() {
        let data = msg("as1|web|200|0.003|172.17.0.5:8080|0.002|1764625589.123|4242|17|3");
        let r = parse(&data).unwrap();
        assert_eq!(
            r,
            Record {
                policy: "web",
                status: 200,
                request_time: 0.003,
                replica: Some("172.17.0.5:8080".parse().unwrap()),
                upstream_time: Some(0.002),
                msec: 1_764_625_589.123,
                worker: 4242,
                connection: 17,
                connection_requests: 3,
            }
        );
    }

    #[test]
    fn replica_and_upstream_time_forms() {
        // (upstream_addr, upstream_response_time, replica, upstream_time)
        let cases: &[(&str, &str, Option<&str>, Option<f64>)] = &[
            ("-", "-", None, None),
            ("autoscaler_web", "-", None, None),
            (
                "10.0.0.1:80, 10.0.0.2:81",
                "0.000, 0.004",
                Some("10.0.0.2:81"),
                Some(0.004),
            ),
            (
                "10.0.0.1:80 : 10.0.0.3:82",
                "0.001 : 0.002",
                Some("10.0.0.3:82"),
                Some(0.003),
            ),
            (
                "10.0.0.1:80, 10.0.0.2:81 : 10.0.0.3:82",
                "-, 0.001 : 0.002",
                Some("10.0.0.3:82"),
                Some(0.003),
            ),
            ("10.0.0.1:80, autoscaler_web", "0.001, -", None, Some(0.001)),
            ("[::1]:8080", "0.010", Some("[::1]:8080"), Some(0.010)),
            ("unix:/run/x.sock", "0.001", None, Some(0.001)),
        ];
        for (addr, ut, want_replica, want_time) in cases {
            let data = msg(&format!("as1|web|502|0.010|{addr}|{ut}|1.000|1|1|1"));
            let r = parse(&data).unwrap_or_else(|e| panic!("{addr:?}: {e}"));
            assert_eq!(
                r.replica,
                want_replica.map(|a| a.parse().unwrap()),
                "{addr:?}"
            );
            match (r.upstream_time, want_time) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{ut:?}: {a} != {b}"),
                (a, b) => assert_eq!(a, *b, "{ut:?}"),
            }
        }
    }

    #[test]
    fn statuses() {
        for (status, ok) in [
            ("200", true),
            ("499", true),
            ("503", true),
            ("000", true),
            ("-", false),
            ("99", false),
            ("600", false),
            ("2000", false),
            ("", false),
        ] {
            let data = msg(&format!("as1|web|{status}|0.001|-|-|1.0|1|1|1"));
            assert_eq!(parse(&data).is_ok(), ok, "{status:?}");
        }
    }

    #[test]
    fn rejects_ugly_input() {
        let long = msg(&format!(
            "as1|web|200|0.001|-|-|1.0|1|1|{}",
            "1".repeat(3000)
        ));
        let cases: Vec<(Vec<u8>, RecordError)> = vec![
            (long, RecordError::Oversized),
            (
                b"<190>Dec  1 x: as1|w\xff|200".to_vec(),
                RecordError::NotUtf8,
            ),
            (b"<190>no colon here".to_vec(), RecordError::NoHeader),
            (msg("as2|web|200|0.001|-|-|1.0|1|1|1"), RecordError::Marker),
            (msg(""), RecordError::Marker),
            (
                msg("as1|web|200|0.001|-|-|1.0"),
                RecordError::FieldCount { got: 7 },
            ),
            (
                msg("as1|web|200|0.001|-|-|1.0|1|1|1|x"),
                RecordError::FieldCount { got: 11 },
            ),
            (
                msg("as1|web|200|NaN|-|-|1.0|1|1|1"),
                invalid("request_time", "NaN"),
            ),
            (
                msg("as1|web|200|inf|-|-|1.0|1|1|1"),
                invalid("request_time", "inf"),
            ),
            (
                msg("as1|web|200|-|-|-|1.0|1|1|1"),
                invalid("request_time", "-"),
            ),
            (
                msg("as1|web|200|-0.5|-|-|1.0|1|1|1"),
                invalid("request_time", "-0.5"),
            ),
            (
                msg("as1|web|200|1e3|-|-|1.0|1|1|1"),
                invalid("request_time", "1e3"),
            ),
            (
                msg("as1|web|200|0.1|-|nan|1.0|1|1|1"),
                invalid("upstream_response_time", "nan"),
            ),
            (
                msg("as1|Web|200|0.1|-|-|1.0|1|1|1"),
                invalid("policy", "Web"),
            ),
            (msg("as1||200|0.1|-|-|1.0|1|1|1"), invalid("policy", "")),
            (msg("as1|web|200|0.1|-|-|1.0|x|1|1"), invalid("pid", "x")),
            // Truncated mid-record.
            (msg("as1|web|200|0.00"), RecordError::FieldCount { got: 4 }),
        ];
        for (data, want) in cases {
            assert_eq!(
                parse(&data),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(&data)
            );
        }
    }

    #[test]
    fn header_forms() {
        let body = "as1|web|200|0.001|-|-|1.0|1|1|1";
        for data in [
            format!("<190>Dec  1 21:46:29 autoscaler: {body}"),
            format!("<190>Dec  1 21:46:29 somehost autoscaler: {body}\n"),
            body.to_owned(),
        ] {
            assert!(parse(data.as_bytes()).is_ok(), "{data:?}");
        }
    }
}
