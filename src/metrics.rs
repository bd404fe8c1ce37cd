//! Metric inputs: scrape replicas' Prometheus expositions, query a Prometheus server,
//! and turn counter samples into per-second rates (with counter-reset handling).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::state::CounterSample;

/// Errors of metric collection; all are transient from the operator's point of view.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The HTTP client could not be built.
    #[error("cannot build HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The request failed (connect, timeout, body).
    #[error("scrape of {url} failed: {source}")]
    Request {
        /// URL scraped.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
    /// The server answered a non-2xx status.
    #[error("scrape of {url} answered HTTP {status}")]
    Status {
        /// URL scraped.
        url: String,
        /// Status code.
        status: u16,
    },
    /// The exposition did not parse.
    #[error("exposition from {url} does not parse: {message}")]
    Parse {
        /// URL scraped.
        url: String,
        /// Parser message.
        message: String,
    },
    /// The family is absent from the exposition.
    #[error("{url} exposes no metric family {family}")]
    MissingFamily {
        /// URL scraped.
        url: String,
        /// Family looked for.
        family: String,
    },
    /// The Prometheus answer was not a single number.
    #[error("Prometheus query {query:?} at {url}: {message}")]
    Query {
        /// Server URL.
        url: String,
        /// Query.
        query: String,
        /// What was wrong.
        message: String,
    },
}

/// Scrapes expositions and queries Prometheus over plain HTTP, never through a proxy.
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
}

impl Scraper {
    /// A scraper whose every request gives up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, MetricsError> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(MetricsError::Client)?;
        Ok(Self { client })
    }

    /// GETs `http://addr/path` and returns the body.
    pub async fn fetch(&self, addr: SocketAddr, path: &str) -> Result<String, MetricsError> {
        let url = format!("http://{addr}{path}");
        let request_err = |source| MetricsError::Request {
            url: url.clone(),
            source,
        };
        let response = self.client.get(&url).send().await.map_err(request_err)?;
        let status = response.status();
        if !status.is_success() {
            return Err(MetricsError::Status {
                url,
                status: status.as_u16(),
            });
        }
        response.text().await.map_err(request_err)
    }

    /// The sum of `family` across its label sets in the exposition at `addr` + `path`.
    pub async fn family_sum(
        &self,
        addr: SocketAddr,
        path: &str,
        family: &str,
    ) -> Result<f64, MetricsError> {
        let text = self.fetch(addr, path).await?;
        let url = format!("http://{addr}{path}");
        let exposition = crate::exposition::parse(&text).map_err(|e| MetricsError::Parse {
            url: url.clone(),
            message: e.to_string(),
        })?;
        exposition
            .sum(family)
            .ok_or_else(|| MetricsError::MissingFamily {
                url,
                family: family.to_owned(),
            })
    }

    /// Every series of `family` (TEMPORARY: the whole family as one series until the
    /// per-series scraper lands).
    pub async fn family_series(
        &self,
        addr: SocketAddr,
        path: &str,
        family: &str,
    ) -> Result<Vec<SeriesValue>, MetricsError> {
        let value = self.family_sum(addr, path, family).await?;
        Ok(vec![SeriesValue {
            labels: String::new(),
            value,
        }])
    }

    /// Runs an instant query and returns its single value (scalar or one-element vector).
    pub async fn prometheus_query(&self, base: &str, query: &str) -> Result<f64, MetricsError> {
        let url = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let query_err = |message: String| MetricsError::Query {
            url: base.to_owned(),
            query: query.to_owned(),
            message,
        };
        let response = self
            .client
            .get(&url)
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|source| MetricsError::Request {
                url: url.clone(),
                source,
            })?;
        let body: QueryResponse = response
            .json()
            .await
            .map_err(|e| query_err(format!("answer is not Prometheus JSON: {e}")))?;
        query_value(&body).map_err(query_err)
    }
}

/// One series of a family as scraped: its canonical label text and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesValue {
    /// Sorted label text, empty for a series without labels.
    pub labels: String,
    /// Sample value.
    pub value: f64,
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

/// Per-second rate between two samples of a counter; `None` without a usable interval.
///
/// A counter that went down was reset (replica restarted): as Prometheus does, the new
/// value counts as the increase since the reset.
pub fn rate(previous: Option<CounterSample>, current: CounterSample) -> Option<f64> {
    let previous = previous?;
    if current.at_ms <= previous.at_ms || !current.value.is_finite() || current.value < 0.0 {
        return None;
    }
    let seconds = (current.at_ms - previous.at_ms) as f64 / 1000.0;
    let increase = if current.value >= previous.value {
        current.value - previous.value
    } else {
        current.value
    };
    Some(increase / seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at_ms: u64, value: f64) -> CounterSample {
        CounterSample { at_ms, value }
    }

    #[test]
    fn rates() {
        let cases: &[(&str, Option<CounterSample>, CounterSample, Option<f64>)] = &[
            ("first sample has no rate", None, s(1000, 5.0), None),
            (
                "steady increase",
                Some(s(1000, 10.0)),
                s(3000, 30.0),
                Some(10.0),
            ),
            ("no traffic", Some(s(1000, 10.0)), s(2000, 10.0), Some(0.0)),
            (
                "reset counts new value",
                Some(s(1000, 100.0)),
                s(2000, 4.0),
                Some(4.0),
            ),
            ("same instant", Some(s(1000, 1.0)), s(1000, 2.0), None),
            ("clock went back", Some(s(2000, 1.0)), s(1000, 2.0), None),
            ("NaN value", Some(s(1000, 1.0)), s(2000, f64::NAN), None),
        ];
        for (name, prev, cur, want) in cases {
            assert_eq!(rate(*prev, *cur), *want, "{name}");
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
}
