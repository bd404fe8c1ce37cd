//! The files a Prometheus source names: a CA bundle, a bearer token, a password.
//!
//! They are read when a policy loads (so a typo is a positioned error at once, see
//! [`check_policy_files`]) and again at every query (so a rotated token or CA is picked
//! up without a reload, as Prometheus itself does with its `*_file` settings).
//!
//! A secret never reaches a log or an error: [`Secret`] has no `Display` and its
//! `Debug` prints `Secret([redacted])`; errors name the file, never its content.

use std::io::Read;
use std::path::Path;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::policy::{ParsedPolicy, PolicyError, PrometheusAuth, PrometheusMetric};

/// Largest secret file accepted (64 KiB): a token is a few KiB at most.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;
/// Largest CA file accepted (1 MiB): a full public bundle is about 220 KiB.
pub const MAX_CA_BYTES: u64 = 1 << 20;

/// Why a file named by a metric source cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening or reading failed (missing, permissions, a directory...).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is larger than makes sense for what it holds.
    #[error("{path} is larger than {limit} bytes; is it the right file?")]
    TooLarge {
        /// The file.
        path: String,
        /// The cap in bytes.
        limit: u64,
    },
    /// The secret is empty (or only line breaks).
    #[error("{path} is empty")]
    Empty {
        /// The file.
        path: String,
    },
    /// The secret is not UTF-8 text.
    #[error("{path} is not UTF-8 text")]
    NotText {
        /// The file.
        path: String,
    },
    /// The secret has a line break or other control character before its end: it would
    /// not fit an HTTP header (only a trailing line break is dropped).
    #[error(
        "{path} has a control character (a line break or similar) inside; a secret file \
         holds one line"
    )]
    ControlCharacter {
        /// The file.
        path: String,
    },
    /// The CA file is not PEM or has no certificate.
    #[error("{path} has no usable PEM certificate: {message}")]
    NoCertificate {
        /// The file.
        path: String,
        /// What the PEM reader said.
        message: String,
    },
}

/// A bearer token or password. Its `Debug` is redacted and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to put in a request header; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Reads at most `limit` bytes of `path`; a longer file is an error, not a truncation.
fn read_capped(path: &str, limit: u64) -> Result<Vec<u8>, FileError> {
    let read_err = |source| FileError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(Path::new(path)).map_err(read_err)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "larger".
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge {
            path: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// The secret in `bytes` (read from `path`): trailing line breaks dropped (`echo token >
/// file` writes one), the rest one line of UTF-8 text without control characters.
pub fn parse_secret(path: &str, bytes: Vec<u8>) -> Result<Secret, FileError> {
    let text = String::from_utf8(bytes).map_err(|_| FileError::NotText {
        path: path.to_owned(),
    })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(FileError::Empty {
            path: path.to_owned(),
        });
    }
    if secret.chars().any(char::is_control) {
        return Err(FileError::ControlCharacter {
            path: path.to_owned(),
        });
    }
    Ok(Secret(secret.to_owned()))
}

/// Reads the secret in `path` (see [`parse_secret`]), at most [`MAX_SECRET_BYTES`].
pub fn read_secret_file(path: &str) -> Result<Secret, FileError> {
    parse_secret(path, read_capped(path, MAX_SECRET_BYTES)?)
}

/// The certificates of a PEM bundle (other PEM sections, such as keys, are skipped).
pub fn parse_ca_pem(path: &str, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, FileError> {
    let no_cert = |message: String| FileError::NoCertificate {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| no_cert(e.to_string()))?;
    if certs.is_empty() {
        return Err(no_cert(
            "no \"-----BEGIN CERTIFICATE-----\" section found".to_owned(),
        ));
    }
    Ok(certs)
}

/// Reads the CA bundle in `path` (see [`parse_ca_pem`]), at most [`MAX_CA_BYTES`]; returns
/// its raw bytes too (they key the client cache).
pub fn read_ca_file(path: &str) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), FileError> {
    let bytes = read_capped(path, MAX_CA_BYTES)?;
    let certs = parse_ca_pem(path, &bytes)?;
    Ok((bytes, certs))
}

/// Every file `metric` names, as `(field path under the metric, path, what it holds)`.
fn named_files(metric: &PrometheusMetric) -> Vec<(&'static str, &str, FileKind)> {
    let mut out = Vec::new();
    if let Some(ca) = metric.tls.as_ref().and_then(|t| t.ca_file.as_deref()) {
        out.push(("tls.caFile", ca, FileKind::Ca));
    }
    match &metric.auth {
        Some(PrometheusAuth::BearerTokenFile(path)) => {
            out.push(("auth.bearerTokenFile", path.as_str(), FileKind::Secret));
        }
        Some(PrometheusAuth::Basic(basic)) => {
            out.push((
                "auth.basic.passwordFile",
                basic.password_file.as_str(),
                FileKind::Secret,
            ));
        }
        None => {}
    }
    out
}

#[derive(Clone, Copy)]
enum FileKind {
    Ca,
    Secret,
}

/// Reads every file the Prometheus sources of `policies` name and reports each one that
/// is unusable at its field (`file:line:col: spec.metrics[0].prometheus.tls.caFile: ...`).
///
/// The effectful complement of [`crate::policy::validate_all`]: the loader calls both.
/// A policy that breaks a rule is skipped: its errors come first (a relative path, say,
/// is reported as such, not also as unreadable).
pub fn check_policy_files(policies: &[ParsedPolicy]) -> Vec<PolicyError> {
    let mut errors = Vec::new();
    for parsed in policies {
        if !crate::policy::check_policy(&parsed.policy).is_empty() {
            continue;
        }
        for (i, metric) in parsed.policy.spec.metrics.iter().enumerate() {
            let crate::policy::MetricSpec::Prometheus(pm) = metric else {
                continue;
            };
            for (field, path, kind) in named_files(pm) {
                let checked = match kind {
                    FileKind::Ca => read_ca_file(path).map(drop),
                    FileKind::Secret => read_secret_file(path).map(drop),
                };
                if let Err(e) = checked {
                    let at = format!("spec.metrics[{i}].prometheus.{field}");
                    errors.push(parsed.error_at(&at, e.to_string()));
                }
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_drop_trailing_line_breaks_and_refuse_the_rest() {
        let cases: [(&[u8], Result<&str, &str>); 11] = [
            (b"s3cret", Ok("s3cret")),
            (b"s3cret\n", Ok("s3cret")),
            (b"s3cret\r\n", Ok("s3cret")),
            (b"s3cret\n\n\n", Ok("s3cret")),
            // Spaces may be part of a password: kept.
            (b" pass word ", Ok(" pass word ")),
            (b"", Err("is empty")),
            (b"\n", Err("is empty")),
            (b"a\nb", Err("control character")),
            (b"a\0b", Err("control character")),
            (b"tok\ten", Err("control character")),
            (b"\xff\xfe", Err("not UTF-8")),
        ];
        for (bytes, want) in cases {
            let got = parse_secret("/run/token", bytes.to_vec());
            match (got, want) {
                (Ok(s), Ok(w)) => assert_eq!(s.expose(), w, "{bytes:?}"),
                (Err(e), Err(w)) => {
                    let text = e.to_string();
                    assert!(text.contains(w) && text.contains("/run/token"), "{text}");
                }
                (got, want) => panic!("{bytes:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let s = parse_secret("/t", b"hunter2\n".to_vec()).unwrap();
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
    }

    #[test]
    fn secret_files_missing_huge_or_a_directory_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").display().to_string();
        let e = read_secret_file(&missing).unwrap_err();
        assert!(matches!(e, FileError::Read { .. }) && e.to_string().contains(&missing));

        let huge = dir.path().join("huge");
        std::fs::write(&huge, vec![b'a'; MAX_SECRET_BYTES as usize + 1]).unwrap();
        let e = read_secret_file(&huge.display().to_string()).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { .. }), "{e}");

        let exact = dir.path().join("exact");
        std::fs::write(&exact, vec![b'a'; MAX_SECRET_BYTES as usize]).unwrap();
        assert!(read_secret_file(&exact.display().to_string()).is_ok());

        let e = read_secret_file(&dir.path().display().to_string()).unwrap_err();
        assert!(matches!(e, FileError::Read { .. }), "{e}");
    }

    #[test]
    fn unreadable_files_are_reported_at_their_field_in_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "tok\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.path().join("ca.pem").display().to_string();
        let text = format!(
            "\
apiVersion: autoscaler.dev/v1alpha1
kind: ScalingPolicy
metadata: {{name: web}}
spec:
  template: {{image: demo:latest, containerPort: 8000}}
  ports: {{range: 8001-8079}}
  loadBalancer: {{listen: 127.0.0.1:8080}}
  metrics:
    - prometheus:
        url: https://prom:9090
        query: up
        targetPerReplica: 1
        tls: {{caFile: {missing}}}
        auth: {{bearerTokenFile: {token}}}
    - prometheus:
        url: https://prom:9090
        query: up
        targetPerReplica: 1
        auth: {{basic: {{username: ops, passwordFile: {empty}}}}}
",
            token = token.display(),
            empty = empty.display(),
        );
        let (ok, errs) = crate::policy::parse_documents(&text, "web.yaml");
        assert!(errs.is_empty(), "{errs:?}");
        let found: Vec<String> = check_policy_files(&ok)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0]
                .starts_with("web.yaml:13:23: spec.metrics[0].prometheus.tls.caFile: cannot read ")
                && found[0].contains(&missing),
            "{found:?}"
        );
        assert!(
            found[1].starts_with(
                "web.yaml:19:53: spec.metrics[1].prometheus.auth.basic.passwordFile: "
            ) && found[1].ends_with("is empty"),
            "{found:?}"
        );
    }

    #[test]
    fn ca_pem_needs_at_least_one_certificate() {
        for (text, ok) in [
            ("", false),
            ("not pem at all", false),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                false,
            ),
            ("-----BEGIN CERTIFICATE-----\nAAAA\n", false),
            (
                "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
                false,
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                true,
            ),
        ] {
            let got = parse_ca_pem("/ca.pem", text.as_bytes());
            assert_eq!(got.is_ok(), ok, "{text:?}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().starts_with("/ca.pem has no usable"), "{e}");
            }
        }
    }
}
