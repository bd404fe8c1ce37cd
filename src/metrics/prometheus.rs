//! Instant queries against a Prometheus server, over HTTP or HTTPS, with credentials.
//!
//! # Clients
//! One `reqwest::Client` (and so one connection pool) per distinct TLS setting, not per
//! query: the scraper's own client (bundled roots) serves `http://` and plain `https://`;
//! a source with `tls.caFile` or `tls.serverName` gets a client keyed by the CA file's
//! content hash and the name, built on first use and reused after. The CA file and the
//! credentials are read again at every query (a rotated file is picked up: a new CA
//! content is a new key); at most [`MAX_TLS_CLIENTS`] are kept, the cache is emptied
//! when full (a rebuild costs one handshake).

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::files::{self, FileError};
use super::tls::{self, Roots};
use super::{MetricsError, Scraper};
use crate::policy::{PrometheusAuth, PrometheusMetric, PrometheusTls};

/// Most TLS clients a scraper keeps (distinct CA contents × server names).
pub const MAX_TLS_CLIENTS: usize = 16;

/// What makes two TLS clients differ.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TlsKey {
    ca_sha256: Option<[u8; 32]>,
    server_name: Option<String>,
}

/// The cached TLS clients of a scraper and its clones.
pub(super) type TlsClients = std::sync::Mutex<HashMap<TlsKey, reqwest::Client>>;

/// The credentials read for one query, and how to say which were sent.
enum Credentials {
    None,
    Bearer(files::Secret),
    Basic {
        username: String,
        password: files::Secret,
    },
}

impl Credentials {
    fn read(auth: Option<&PrometheusAuth>, url: &str) -> Result<Self, MetricsError> {
        let file_err = |field: &'static str| {
            move |source: FileError| MetricsError::SourceFile {
                url: url.to_owned(),
                field,
                source,
            }
        };
        Ok(match auth {
            None => Self::None,
            Some(PrometheusAuth::BearerTokenFile(path)) => Self::Bearer(
                files::read_secret_file(path).map_err(file_err("auth.bearerTokenFile"))?,
            ),
            Some(PrometheusAuth::Basic(basic)) => Self::Basic {
                username: basic.username.clone(),
                password: files::read_secret_file(&basic.password_file)
                    .map_err(file_err("auth.basic.passwordFile"))?,
            },
        })
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        // reqwest marks both headers sensitive (kept out of its Debug output).
        match self {
            Self::None => request,
            Self::Bearer(token) => request.bearer_auth(token.expose()),
            Self::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::None => "no credentials were sent; set auth".to_owned(),
            Self::Bearer(_) => "the bearer token of auth.bearerTokenFile was refused".to_owned(),
            Self::Basic { username, .. } => {
                format!("basic credentials for user {username:?} were refused")
            }
        }
    }
}

impl Scraper {
    /// Runs an instant query on the plain server at `base` (no TLS options, no
    /// credentials) and returns its single value (scalar or one-element vector).
    ///
    /// # Errors
    /// As [`Scraper::prometheus_source`].
    pub async fn prometheus_query(&self, base: &str, query: &str) -> Result<f64, MetricsError> {
        self.query_with(base, None, None, query).await
    }

    /// Runs the instant query of `source` on its server, with its TLS settings and
    /// credentials, and returns the single value.
    ///
    /// # Errors
    /// [`MetricsError::Query`] when the answer is an error, not one series, or not a finite
    /// number; [`MetricsError::Unauthorized`] on HTTP 401/403; [`MetricsError::Handshake`]
    /// when TLS fails (with what to change); [`MetricsError::SourceFile`] when a CA or
    /// credential file is unusable; [`MetricsError::BodyTooLarge`] past the body cap;
    /// `Request` on the wire.
    pub async fn prometheus_source(&self, source: &PrometheusMetric) -> Result<f64, MetricsError> {
        self.query_with(
            &source.url,
            source.tls.as_ref(),
            source.auth.as_ref(),
            &source.query,
        )
        .await
    }

    /// How many TLS clients are cached (one per distinct CA content and server name).
    pub fn tls_clients_cached(&self) -> usize {
        self.tls_clients.lock().map(|c| c.len()).unwrap_or(0)
    }

    async fn query_with(
        &self,
        base: &str,
        tls: Option<&PrometheusTls>,
        auth: Option<&PrometheusAuth>,
        query: &str,
    ) -> Result<f64, MetricsError> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let query_err = |message: String| MetricsError::Query {
            url: base.to_owned(),
            query: query.to_owned(),
            message,
        };
        // Both read small files (a few KiB) synchronously: cheaper than a blocking-pool hop.
        let client = self.client_for(base, tls)?;
        let credentials = Credentials::read(auth, base)?;
        let request = credentials.apply(client.get(&url).query(&[("query", query)]));
        // Prometheus answers errors (a bad query: 400, 422) with a JSON body that says why.
        let body = self.send_capped(request, &url, false).await?;
        if matches!(body.status.as_u16(), 401 | 403) {
            return Err(MetricsError::Unauthorized {
                url: base.to_owned(),
                status: body.status.as_u16(),
                detail: credentials.describe(),
            });
        }
        let answer: QueryResponse = serde_json::from_slice(&body.bytes).map_err(|e| {
            query_err(format!(
                "answer (HTTP {}) is not Prometheus JSON: {e}",
                body.status.as_u16()
            ))
        })?;
        query_value(&answer).map_err(query_err)
    }

    /// The client for a server with `tls` settings: the scraper's own, or a cached one.
    fn client_for(
        &self,
        base: &str,
        tls: Option<&PrometheusTls>,
    ) -> Result<reqwest::Client, MetricsError> {
        let Some(tls) = tls.filter(|t| t.ca_file.is_some() || t.server_name.is_some()) else {
            return Ok(self.client.clone());
        };
        let ca = match &tls.ca_file {
            None => None,
            Some(path) => {
                let (bytes, certs) =
                    files::read_ca_file(path).map_err(|source| MetricsError::SourceFile {
                        url: base.to_owned(),
                        field: "tls.caFile",
                        source,
                    })?;
                Some((path.as_str(), Sha256::digest(&bytes).into(), certs))
            }
        };
        let key = TlsKey {
            ca_sha256: ca.as_ref().map(|(_, hash, _)| *hash),
            server_name: tls.server_name.clone(),
        };
        // A poisoned lock only means another query panicked mid-insert: the map is fine.
        let mut cache = self
            .tls_clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = cache.get(&key) {
            return Ok(client.clone());
        }
        let roots = match &ca {
            None => Roots::Bundled,
            Some((path, _, certs)) => Roots::CaFile { path, certs },
        };
        let config = tls::client_config(roots, tls.server_name.as_deref()).map_err(|source| {
            MetricsError::Tls {
                url: base.to_owned(),
                source,
            }
        })?;
        let client = super::build_client(self.timeout, config)?;
        if cache.len() >= MAX_TLS_CLIENTS {
            cache.clear();
        }
        cache.insert(key, client.clone());
        tracing::debug!(
            url = base,
            clients = cache.len(),
            "built a TLS client for a Prometheus source"
        );
        Ok(client)
    }
}

/// The subset of Prometheus' `/api/v1/query` answer that matters here.
#[derive(Debug, Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<QueryData>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Scalar((f64, String)),
    Vector(Vec<VectorSample>),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct VectorSample {
    value: (f64, String),
}

fn query_value(body: &QueryResponse) -> Result<f64, String> {
    if body.status != "success" {
        return Err(body
            .error
            .clone()
            .unwrap_or_else(|| format!("status {}", body.status)));
    }
    let text = match &body.data {
        Some(QueryData::Scalar((_, v))) => v,
        Some(QueryData::Vector(samples)) => match samples.as_slice() {
            [one] => &one.value.1,
            [] => return Err("query returned no series".to_owned()),
            many => {
                return Err(format!(
                    "query returned {} series; aggregate it (e.g. sum(...))",
                    many.len()
                ));
            }
        },
        Some(QueryData::Matrix(_)) | Some(QueryData::String(_)) => {
            return Err("query must return a scalar or an instant vector".to_owned());
        }
        None => return Err("answer has no data".to_owned()),
    };
    let value: f64 = text
        .parse()
        .map_err(|_| format!("value {text:?} is not a number"))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("value {text} is not finite"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::BasicAuth;

    #[test]
    fn non_finite_prometheus_values_are_errors_not_numbers() {
        for value in ["NaN", "+Inf", "-Inf", "Inf"] {
            for kind in ["scalar", "vector"] {
                let result = match kind {
                    "scalar" => format!("[1,\"{value}\"]"),
                    _ => format!("[{{\"metric\":{{}},\"value\":[1,\"{value}\"]}}]"),
                };
                let text = format!(
                    "{{\"status\":\"success\",\"data\":{{\"resultType\":\"{kind}\",\"result\":{result}}}}}"
                );
                let answer: QueryResponse = serde_json::from_str(&text).expect("fixture parses");
                let got = query_value(&answer);
                assert!(
                    got.as_ref().is_err_and(|e| e.contains("not finite")),
                    "{kind} {value}: {got:?}"
                );
            }
        }
    }

    #[test]
    fn query_answers() {
        let parse = |text: &str| query_value(&serde_json::from_str(text).unwrap());
        assert_eq!(
            parse(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42.5"]}]}}"#
            ),
            Ok(42.5)
        );
        assert_eq!(
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#),
            Ok(3.0)
        );
        assert!(
            parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
                .unwrap_err()
                .contains("no series")
        );
        assert!(parse(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"2"]}]}}"#)
            .unwrap_err()
            .contains("aggregate"));
        assert!(
            parse(r#"{"status":"error","error":"bad query"}"#)
                .unwrap_err()
                .contains("bad query")
        );
        assert!(
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#)
                .unwrap_err()
                .contains("not finite")
        );
    }

    /// TLS settings; handshakes with real certificates are in `tests/metrics_prometheus_tls.rs`.
    fn tls(ca_file: Option<&str>, server_name: Option<&str>) -> PrometheusTls {
        PrometheusTls {
            ca_file: ca_file.map(str::to_owned),
            server_name: server_name.map(str::to_owned),
        }
    }

    #[test]
    fn clients_are_shared_per_distinct_tls_setting() {
        let scraper = Scraper::new(Duration::from_secs(1)).unwrap();
        let base = "https://10.0.0.1:9090";
        // No setting, or an empty one: the scraper's own client, nothing cached.
        scraper.client_for(base, None).unwrap();
        scraper.client_for(base, Some(&tls(None, None))).unwrap();
        assert_eq!(scraper.tls_clients_cached(), 0);
        for _ in 0..3 {
            scraper
                .client_for(base, Some(&tls(None, Some("prom.example"))))
                .unwrap();
        }
        assert_eq!(
            scraper.tls_clients_cached(),
            1,
            "one client for one setting"
        );
        scraper
            .client_for(base, Some(&tls(None, Some("other.example"))))
            .unwrap();
        assert_eq!(scraper.tls_clients_cached(), 2);
        // Clones share the cache.
        let clone = scraper.clone();
        clone
            .client_for(base, Some(&tls(None, Some("prom.example"))))
            .unwrap();
        assert_eq!(scraper.tls_clients_cached(), 2);
    }

    #[test]
    fn the_client_cache_stays_bounded() {
        let scraper = Scraper::new(Duration::from_secs(1)).unwrap();
        for i in 0..(MAX_TLS_CLIENTS * 2 + 3) {
            let name = format!("n{i}.example");
            scraper
                .client_for("https://h", Some(&tls(None, Some(&name))))
                .unwrap();
            assert!(scraper.tls_clients_cached() <= MAX_TLS_CLIENTS);
        }
    }

    #[test]
    fn an_unusable_ca_file_names_the_field_and_the_file() {
        let scraper = Scraper::new(Duration::from_secs(1)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [&not_pem, &missing] {
            let path = path.display().to_string();
            let e = scraper
                .client_for("https://h:9090", Some(&tls(Some(&path), None)))
                .unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains("https://h:9090")
                    && text.contains("tls.caFile")
                    && text.contains(&path),
                "{text}"
            );
        }
    }

    #[test]
    fn credentials_are_read_per_query_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken-v1\n").unwrap();
        let bearer = PrometheusAuth::BearerTokenFile(token.display().to_string());
        let read = Credentials::read(Some(&bearer), "https://h").unwrap();
        assert!(matches!(&read, Credentials::Bearer(s) if s.expose() == "t0ken-v1"));
        assert!(!read.describe().contains("t0ken"));
        std::fs::write(&token, "t0ken-v2").unwrap();
        let read = Credentials::read(Some(&bearer), "https://h").unwrap();
        assert!(matches!(&read, Credentials::Bearer(s) if s.expose() == "t0ken-v2"));

        let basic = PrometheusAuth::Basic(BasicAuth {
            username: "ops".to_owned(),
            password_file: dir.path().join("none").display().to_string(),
        });
        let Err(e) = Credentials::read(Some(&basic), "https://h") else {
            panic!("a missing password file is an error");
        };
        assert!(e.to_string().contains("auth.basic.passwordFile"), "{e}");
        assert!(
            Credentials::read(None, "https://h")
                .unwrap()
                .describe()
                .contains("set auth")
        );
    }
}
