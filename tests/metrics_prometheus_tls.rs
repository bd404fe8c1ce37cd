//! The Prometheus source over HTTPS, against a loopback HTTPS server that answers like
//! Prometheus' `/api/v1/query`, with a CA and certificates generated here (rcgen): trust
//! through `tls.caFile`, `tls.serverName`, bearer and basic credentials checked by the
//! server, files re-read at every query, one connection per TLS setting.

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoscaler::metrics::{MetricsError, Scraper};
use autoscaler::policy::{BasicAuth, PrometheusAuth, PrometheusMetric, PrometheusTls};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const ANSWER: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"42.5"]}]}}"#;

/// A certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// Writes the CA certificate as PEM into `dir` and returns the path.
    fn write_pem(&self, dir: &Path, file: &str) -> String {
        let path = dir.join(file);
        std::fs::write(&path, self.issuer.pem()).expect("write CA file");
        path.display().to_string()
    }

    /// A server certificate for `names` (DNS names or IPs) and its key.
    fn leaf(&self, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.use_authority_key_identifier_extension = true;
        params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// A loopback HTTPS server answering `/api/v1/query`.
struct FakePrometheus {
    /// `https://127.0.0.1:PORT`.
    base: String,
    /// TCP connections accepted so far.
    connections: Arc<AtomicUsize>,
    /// The `Authorization` header required (None: anything goes); can change mid-test.
    expect_auth: Arc<Mutex<Option<String>>>,
}

impl FakePrometheus {
    async fn start(ca: &Ca, names: &[&str], expect_auth: Option<&str>) -> Self {
        let (cert, key) = ca.leaf(names);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let expect_auth = Arc::new(Mutex::new(expect_auth.map(str::to_owned)));
        let (count, expected) = (connections.clone(), expect_auth.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (acceptor, expected) = (acceptor.clone(), expected.clone());
                tokio::spawn(async move {
                    // A failed handshake is what some tests are about: just drop it.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let expected = expected.clone();
                        async move { Ok::<_, Infallible>(answer(&req, &expected)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            base: format!("https://{addr}"),
            connections,
            expect_auth,
        }
    }

    fn expect_auth(&self, header: &str) {
        if let Ok(mut e) = self.expect_auth.lock() {
            *e = Some(header.to_owned());
        }
    }
}

fn answer(req: &Request<Incoming>, expected: &Mutex<Option<String>>) -> Response<Full<Bytes>> {
    let respond = |status: StatusCode, body: &str| {
        let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
        *r.status_mut() = status;
        r
    };
    let required = expected.lock().ok().and_then(|e| e.clone());
    let sent = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(required) = required
        && sent != Some(required.as_str())
    {
        return respond(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    }
    let query_ok = req.uri().path() == "/api/v1/query"
        && req
            .uri()
            .query()
            .is_some_and(|q| q.contains("query=sum%28rate%28x%5B30s%5D%29%29"));
    if query_ok {
        respond(StatusCode::OK, ANSWER)
    } else {
        respond(
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"unexpected request"}"#,
        )
    }
}

fn source(
    base: &str,
    tls: Option<PrometheusTls>,
    auth: Option<PrometheusAuth>,
) -> PrometheusMetric {
    PrometheusMetric {
        url: base.to_owned(),
        query: "sum(rate(x[30s]))".to_owned(),
        target_per_replica: 1.0,
        tls,
        auth,
    }
}

fn ca_file(path: &str) -> Option<PrometheusTls> {
    Some(PrometheusTls {
        ca_file: Some(path.to_owned()),
        server_name: None,
    })
}

fn scraper() -> Scraper {
    Scraper::new(Duration::from_secs(5)).expect("scraper")
}

#[tokio::test]
async fn https_with_the_ca_file_answers_over_one_reused_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let prom = FakePrometheus::start(&ca, &["127.0.0.1"], None).await;
    let scraper = scraper();
    let src = source(
        &prom.base,
        ca_file(&ca.write_pem(dir.path(), "ca.pem")),
        None,
    );
    for _ in 0..5 {
        assert_eq!(scraper.prometheus_source(&src).await.unwrap(), 42.5);
    }
    // One client per TLS setting, whose pool keeps the connection: not one per query.
    assert_eq!(prom.connections.load(Ordering::SeqCst), 1);
    assert_eq!(scraper.tls_clients_cached(), 1);
    // The trailing slash of a base url is fine.
    let slash = source(&format!("{}/", prom.base), src.tls.clone(), None);
    assert_eq!(scraper.prometheus_source(&slash).await.unwrap(), 42.5);
}

#[tokio::test]
async fn an_untrusted_certificate_fails_with_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let prom = FakePrometheus::start(&ca, &["127.0.0.1"], None).await;
    let scraper = scraper();
    let other = Ca::new("another CA");
    for (case, tls) in [
        ("bundled roots only", None),
        (
            "another CA",
            ca_file(&other.write_pem(dir.path(), "other.pem")),
        ),
    ] {
        let e = scraper
            .prometheus_source(&source(&prom.base, tls, None))
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, MetricsError::Handshake { .. }),
            "{case}: {text}"
        );
        assert!(
            text.contains(&prom.base)
                && text.contains("UnknownIssuer")
                && text.contains("tls.caFile"),
            "{case}: {text}"
        );
    }
}

#[tokio::test]
async fn a_rotated_ca_file_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let other = Ca::new("another CA");
    let prom = FakePrometheus::start(&ca, &["127.0.0.1"], None).await;
    let scraper = scraper();
    let path = other.write_pem(dir.path(), "ca.pem");
    let src = source(&prom.base, ca_file(&path), None);
    assert!(scraper.prometheus_source(&src).await.is_err());
    ca.write_pem(dir.path(), "ca.pem");
    assert_eq!(scraper.prometheus_source(&src).await.unwrap(), 42.5);
    assert_eq!(scraper.tls_clients_cached(), 2, "one client per CA content");

    std::fs::remove_file(&path).unwrap();
    let e = scraper.prometheus_source(&src).await.unwrap_err();
    assert!(
        matches!(
            e,
            MetricsError::SourceFile {
                field: "tls.caFile",
                ..
            }
        ),
        "{e}"
    );
}

#[tokio::test]
async fn server_name_verifies_against_the_name_the_certificate_carries() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    // The certificate names only prom.test; the url is an IP address.
    let prom = FakePrometheus::start(&ca, &["prom.test"], None).await;
    let scraper = scraper();
    let ca_path = ca.write_pem(dir.path(), "ca.pem");
    let with_name = |name: Option<&str>| {
        source(
            &prom.base,
            Some(PrometheusTls {
                ca_file: Some(ca_path.clone()),
                server_name: name.map(str::to_owned),
            }),
            None,
        )
    };
    let e = scraper
        .prometheus_source(&with_name(None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetricsError::Handshake { .. }) && e.to_string().contains("tls.serverName"),
        "{e}"
    );
    assert_eq!(
        scraper
            .prometheus_source(&with_name(Some("prom.test")))
            .await
            .unwrap(),
        42.5
    );
    let e = scraper
        .prometheus_source(&with_name(Some("other.test")))
        .await
        .unwrap_err();
    assert!(matches!(e, MetricsError::Handshake { .. }), "{e}");
}

#[tokio::test]
async fn the_bearer_token_is_sent_checked_and_re_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    let prom = FakePrometheus::start(&ca, &["127.0.0.1"], Some("Bearer s3cret-1")).await;
    let scraper = scraper();
    let tls = ca_file(&ca.write_pem(dir.path(), "ca.pem"));
    let token = dir.path().join("token");
    let auth = Some(PrometheusAuth::BearerTokenFile(token.display().to_string()));

    let e = scraper
        .prometheus_source(&source(&prom.base, tls.clone(), None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetricsError::Unauthorized { status: 401, .. })
            && e.to_string().contains("no credentials were sent"),
        "{e}"
    );

    // `echo s3cret-1 > token` writes a trailing newline: it is not part of the token.
    std::fs::write(&token, "s3cret-1\n").unwrap();
    let src = source(&prom.base, tls, auth);
    assert_eq!(scraper.prometheus_source(&src).await.unwrap(), 42.5);

    std::fs::write(&token, "wr0ng-token").unwrap();
    let e = scraper.prometheus_source(&src).await.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, MetricsError::Unauthorized { status: 401, .. }),
        "{text}"
    );
    assert!(
        text.contains("bearer token") && !text.contains("wr0ng"),
        "no secret in errors: {text}"
    );

    // Rotation: the server and the file change; the same scraper follows.
    prom.expect_auth("Bearer s3cret-2");
    std::fs::write(&token, "s3cret-2\n").unwrap();
    assert_eq!(scraper.prometheus_source(&src).await.unwrap(), 42.5);
}

#[tokio::test]
async fn basic_credentials_are_sent_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test CA");
    // base64("ops:pa55 w0rd")
    let prom = FakePrometheus::start(&ca, &["127.0.0.1"], Some("Basic b3BzOnBhNTUgdzByZA==")).await;
    let scraper = scraper();
    let tls = ca_file(&ca.write_pem(dir.path(), "ca.pem"));
    let password = dir.path().join("password");
    std::fs::write(&password, "pa55 w0rd\n").unwrap();
    let basic = |username: &str| {
        Some(PrometheusAuth::Basic(BasicAuth {
            username: username.to_owned(),
            password_file: password.display().to_string(),
        }))
    };
    let ok = source(&prom.base, tls.clone(), basic("ops"));
    assert_eq!(scraper.prometheus_source(&ok).await.unwrap(), 42.5);

    let e = scraper
        .prometheus_source(&source(&prom.base, tls.clone(), basic("dev")))
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, MetricsError::Unauthorized { status: 401, .. }),
        "{text}"
    );
    assert!(text.contains("\"dev\"") && !text.contains("w0rd"), "{text}");

    let e = scraper
        .prometheus_source(&source(&prom.base, tls, None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetricsError::Unauthorized { status: 401, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn https_to_a_plain_http_server_says_so() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let e = scraper()
        .prometheus_source(&source(&format!("https://{addr}"), None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(e, MetricsError::Handshake { .. }) && e.to_string().contains("http://"),
        "{e}"
    );
}
