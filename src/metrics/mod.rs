//! Metric inputs: scrape replicas' Prometheus expositions and query a Prometheus server,
//! with bounded bodies and bounded concurrency; [`aggregate`] turns samples into readings.
//!
//! Replicas are scraped over plain HTTP; a Prometheus server may be `https://`
//! ([`prometheus`]: client per TLS setting, credentials; [`tls`]: rustls on `ring` with
//! bundled or CA-file roots; [`files`]: the CA and secret files a source names).
//!
//! # Limits
//! Every response body (a replica's `/metrics`, a Prometheus answer) is read in chunks and
//! refused with [`MetricsError::BodyTooLarge`] as soon as it would pass the body cap
//! ([`MAX_SCRAPE_BYTES`] unless [`Scraper::with_limits`] says otherwise), or at once when
//! its `Content-Length` announces more. At most [`MAX_CONCURRENT_SCRAPES`] requests of one
//! [`Scraper`] (and of all its clones) run at a time; the others wait for a slot. Memory
//! spent on bodies is thus bounded by about cap × concurrency.

pub mod aggregate;
pub mod files;
pub mod prometheus;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use aggregate::{SeriesValue, rate};

/// Default cap on one response body: 4 MiB, far above real expositions (a busy
/// service's is tens of KiB) and far below what hurts the operator.
pub const MAX_SCRAPE_BYTES: usize = 4 << 20;

/// Default number of scrapes and queries that may run at once, process-wide per scraper.
pub const MAX_CONCURRENT_SCRAPES: usize = 32;

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
    /// The response body is larger than the scraper's cap; reading stopped there.
    #[error(
        "response from {url} is larger than the {limit}-byte limit; stopped reading \
         (trim the exposition, or raise the limit)"
    )]
    BodyTooLarge {
        /// URL scraped or queried.
        url: String,
        /// The cap in bytes.
        limit: usize,
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
    /// The family's value is NaN or infinite: no usable number.
    #[error("{url} exposes {family} = {value}, which is not a finite number")]
    NonFinite {
        /// URL scraped.
        url: String,
        /// Family looked for.
        family: String,
        /// The value (or the sum) read.
        value: f64,
    },
    /// A file the Prometheus source names (CA, token, password) is unusable.
    #[error("Prometheus at {url}: {field}: {source}")]
    SourceFile {
        /// Server URL.
        url: String,
        /// The field naming the file, e.g. `tls.caFile`.
        field: &'static str,
        /// Cause (names the file, never its content).
        source: files::FileError,
    },
    /// The TLS settings of a source could not be turned into a client configuration.
    #[error("cannot set up TLS for {url}: {source}")]
    Tls {
        /// Server URL.
        url: String,
        /// Cause.
        source: tls::TlsError,
    },
    /// The TLS handshake failed: an untrusted or misnamed certificate, or no TLS at all.
    #[error("TLS handshake with {url} failed: {reason}; {hint}")]
    Handshake {
        /// URL requested.
        url: String,
        /// rustls' reason.
        reason: String,
        /// What to change, in the resource's words.
        hint: &'static str,
    },
    /// The server refused the request's credentials (HTTP 401 or 403).
    #[error("Prometheus at {url} answered HTTP {status}: {detail}")]
    Unauthorized {
        /// Server URL.
        url: String,
        /// 401 or 403.
        status: u16,
        /// Which credentials were sent (never their value).
        detail: String,
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

/// Scrapes expositions over plain HTTP and queries Prometheus over HTTP or HTTPS, never
/// through a proxy.
///
/// Clones share the HTTP connection pools, the TLS client cache and the concurrency bound.
#[derive(Debug, Clone)]
pub struct Scraper {
    /// Replica scrapes, plain Prometheus and `https://` with the bundled roots.
    client: reqwest::Client,
    /// Per-request timeout, for the TLS clients built later.
    timeout: Duration,
    /// One client per distinct TLS setting of a Prometheus source (see [`prometheus`]).
    tls_clients: Arc<prometheus::TlsClients>,
    /// Cap on one response body, in bytes.
    max_body_bytes: usize,
    /// One permit per request in flight (see the module's `# Limits`).
    permits: Arc<Semaphore>,
}

/// A client with `timeout` on connect and on the whole request, `tls`, and never a proxy.
fn build_client(
    timeout: Duration,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, MetricsError> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(MetricsError::Client)
}

/// A response read whole, within the cap.
struct Body {
    status: reqwest::StatusCode,
    bytes: Vec<u8>,
}

impl Scraper {
    /// A scraper whose every request gives up after `timeout`, with the default limits.
    pub fn new(timeout: Duration) -> Result<Self, MetricsError> {
        let config =
            tls::client_config(tls::Roots::Bundled, None).map_err(|source| MetricsError::Tls {
                url: "https:// with the bundled roots".to_owned(),
                source,
            })?;
        Ok(Self {
            client: build_client(timeout, config)?,
            timeout,
            tls_clients: Arc::default(),
            max_body_bytes: MAX_SCRAPE_BYTES,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT_SCRAPES)),
        })
    }

    /// The same scraper with another body cap (bytes) and concurrency bound (at least 1).
    ///
    /// The bound is a new one: earlier clones keep theirs.
    pub fn with_limits(mut self, max_body_bytes: usize, max_concurrent: usize) -> Self {
        self.max_body_bytes = max_body_bytes;
        self.permits = Arc::new(Semaphore::new(max_concurrent.max(1)));
        self
    }

    /// The cap on one response body, in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Sends `request` (for `url`) and reads its body, within the cap and a permit.
    ///
    /// With `require_success`, a non-2xx status is an error and its body is not read.
    async fn send_capped(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
        require_success: bool,
    ) -> Result<Body, MetricsError> {
        // The semaphore is never closed; if it were, scraping unbounded beats not scraping.
        let _permit = self.permits.acquire().await.ok();
        let request_err = |source: reqwest::Error| match tls::rustls_cause(&source) {
            Some(cause) => MetricsError::Handshake {
                url: url.to_owned(),
                reason: cause.to_string(),
                hint: tls::handshake_hint(cause),
            },
            None => MetricsError::Request {
                url: url.to_owned(),
                source,
            },
        };
        let too_large = || MetricsError::BodyTooLarge {
            url: url.to_owned(),
            limit: self.max_body_bytes,
        };
        let mut response = request.send().await.map_err(request_err)?;
        let status = response.status();
        if require_success && !status.is_success() {
            return Err(MetricsError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        let announced = response.content_length();
        if announced.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(announced.unwrap_or(0) as usize);
        while let Some(chunk) = response.chunk().await.map_err(request_err)? {
            if chunk.len() > self.max_body_bytes - bytes.len() {
                // Dropping `response` here closes the connection: nothing more is read.
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Body { status, bytes })
    }

    /// GETs `http://addr/path` and returns the body (invalid UTF-8 replaced), within the cap.
    pub async fn fetch(&self, addr: SocketAddr, path: &str) -> Result<String, MetricsError> {
        let url = format!("http://{addr}{path}");
        let body = self.send_capped(self.client.get(&url), &url, true).await?;
        Ok(match String::from_utf8(body.bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Every series of the counter (or other) `family` in the exposition at `addr` + `path`,
    /// with its canonical label text; values as exposed, non-finite ones included.
    ///
    /// # Errors
    /// [`MetricsError::MissingFamily`] when the exposition has no sample of `family`; any
    /// other variant when the scrape or the parse failed.
    pub async fn family_series(
        &self,
        addr: SocketAddr,
        path: &str,
        family: &str,
    ) -> Result<Vec<SeriesValue>, MetricsError> {
        let (url, exposition) = self.exposition(addr, path).await?;
        let series = exposition
            .series(family)
            .ok_or_else(|| MetricsError::MissingFamily {
                url,
                family: family.to_owned(),
            })?;
        Ok(series
            .into_iter()
            .map(|(labels, value)| SeriesValue { labels, value })
            .collect())
    }

    /// [`Scraper::family_series`] as the aggregation reads it: the series, a missing
    /// family, or the failure in words.
    pub async fn replica_scrape(
        &self,
        addr: SocketAddr,
        path: &str,
        family: &str,
    ) -> aggregate::ReplicaScrape {
        match self.family_series(addr, path, family).await {
            Ok(series) => aggregate::ReplicaScrape::Series(series),
            Err(MetricsError::MissingFamily { .. }) => aggregate::ReplicaScrape::MissingFamily,
            Err(e) => aggregate::ReplicaScrape::Failed(e.to_string()),
        }
    }

    /// The sum of `family` across its label sets in the exposition at `addr` + `path`.
    ///
    /// # Errors
    /// As [`Scraper::family_series`], plus [`MetricsError::NonFinite`] when the sum is NaN
    /// or infinite (a NaN gauge is no reading).
    pub async fn family_sum(
        &self,
        addr: SocketAddr,
        path: &str,
        family: &str,
    ) -> Result<f64, MetricsError> {
        let (url, exposition) = self.exposition(addr, path).await?;
        match exposition.sum(family) {
            Some(value) if value.is_finite() => Ok(value),
            Some(value) => Err(MetricsError::NonFinite {
                url,
                family: family.to_owned(),
                value,
            }),
            None => Err(MetricsError::MissingFamily {
                url,
                family: family.to_owned(),
            }),
        }
    }

    /// Scrapes and parses the exposition at `addr` + `path`; returns its URL too.
    async fn exposition(
        &self,
        addr: SocketAddr,
        path: &str,
    ) -> Result<(String, crate::exposition::Exposition), MetricsError> {
        let text = self.fetch(addr, path).await?;
        let url = format!("http://{addr}{path}");
        let exposition = crate::exposition::parse(&text).map_err(|e| MetricsError::Parse {
            url: url.clone(),
            message: e.to_string(),
        })?;
        Ok((url, exposition))
    }
}
