//! rustls client configurations for HTTPS to Prometheus, on the `ring` provider.
//!
//! `ring` rather than rustls' default `aws-lc-rs`: aws-lc needs cmake and a C toolchain
//! setup that the static `FROM scratch` build (`scripts/build-image.sh`) does not have.
//! Every configuration here names its provider explicitly, so the operator's clients
//! never depend on process-wide state; [`install_crypto_provider`] exists for other
//! reqwest clients of the process (reqwest's `rustls-no-provider` feature panics when
//! a client is built with no provider installed).
//!
//! Roots: the bundled Mozilla set (`webpki-roots`: a `FROM scratch` image has no system
//! store), or only the certificates of a CA file when the source names one.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate of the CA file is not a usable trust anchor.
    #[error("{path}: certificate #{index} is not a usable CA certificate: {message}")]
    BadCaCertificate {
        /// The CA file.
        path: String,
        /// 1-based position of the certificate in the file.
        index: usize,
        /// What rustls said.
        message: String,
    },
    /// `serverName` is neither a DNS name nor an IP address.
    #[error("server name {name:?} is not a DNS name or an IP address")]
    ServerName {
        /// The name.
        name: String,
    },
    /// rustls refused the configuration (should not happen with these inputs).
    #[error("cannot set up TLS: {0}")]
    Config(String),
}

/// The crypto provider of every configuration here.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs `ring` as the process-wide rustls provider unless one is already installed.
///
/// The [`super::Scraper`] does not need it; any other `reqwest::Client` of the process
/// does (reqwest is built with `rustls-no-provider`, and building a client with no
/// provider installed panics). Idempotent.
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The trust anchors a server certificate must chain to.
#[derive(Debug, Clone, Copy)]
pub enum Roots<'a> {
    /// The bundled Mozilla roots (`webpki-roots`).
    Bundled,
    /// Only the certificates of a CA file (`path` names it in errors).
    CaFile {
        /// The file they came from.
        path: &'a str,
        /// Its certificates, DER.
        certs: &'a [CertificateDer<'static>],
    },
}

/// A client configuration trusting `roots`; with `server_name`, the server's certificate
/// must be valid for that name instead of the URL's host.
///
/// # Errors
/// [`TlsError::BadCaCertificate`] for a CA certificate rustls cannot use as an anchor,
/// [`TlsError::ServerName`] for a name that is neither DNS nor IP.
pub fn client_config(
    roots: Roots<'_>,
    server_name: Option<&str>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let mut store = RootCertStore::empty();
    match roots {
        Roots::Bundled => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Roots::CaFile { path, certs } => {
            for (i, cert) in certs.iter().enumerate() {
                store
                    .add(cert.clone())
                    .map_err(|e| TlsError::BadCaCertificate {
                        path: path.to_owned(),
                        index: i + 1,
                        message: e.to_string(),
                    })?;
            }
        }
    }
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let config = match server_name {
        None => builder.with_webpki_verifier(verifier).with_no_client_auth(),
        Some(name) => {
            let name = ServerName::try_from(name.to_owned()).map_err(|_| TlsError::ServerName {
                name: name.to_owned(),
            })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(FixedNameVerifier {
                    inner: verifier,
                    name,
                }))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// Full WebPKI verification, against a fixed name rather than the one connected to
/// (the `serverName` option). Not a weakening: chain, signature and expiry checks are
/// the inner verifier's, only the name differs.
#[derive(Debug)]
struct FixedNameVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for FixedNameVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A rustls error in the cause chain of `err`, if any (a failed handshake).
///
/// `std::io::Error` hides the error it wraps from `source()` (and hyper wraps tokio-rustls'
/// io error in another one), so wrapped io errors are looked into too, a few levels deep.
pub fn rustls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    fn find<'a>(
        err: &'a (dyn std::error::Error + 'static),
        depth: usize,
    ) -> Option<&'a rustls::Error> {
        let mut next = Some(err);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
            if depth > 0
                && let Some(inner) = e
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                && let Some(found) = find(inner, depth - 1)
            {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
    find(err, 4)
}

/// What to change when a handshake failed with `err`, in the resource's words.
pub fn handshake_hint(err: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the server's certificate is not signed by a trusted CA: set tls.caFile to the \
             PEM of the CA that signed it (or check the one set)"
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            "the server's certificate is not valid for the url's host: use a host it names, \
             or set tls.serverName to a name it carries"
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the server's certificate has expired"
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the server's certificate is not valid yet (check both clocks)"
        }
        rustls::Error::InvalidMessage(_) => {
            "the server did not speak TLS: does it serve plain HTTP (use http://)?"
        }
        _ => "the TLS handshake failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_build_with_and_without_a_server_name() {
        assert!(client_config(Roots::Bundled, None).is_ok());
        assert!(client_config(Roots::Bundled, Some("prom.example.com")).is_ok());
        assert!(client_config(Roots::Bundled, Some("10.0.0.1")).is_ok());
    }

    #[test]
    fn a_server_name_must_be_dns_or_ip() {
        for bad in ["", "has space", "a..b", "xn--\u{0}"] {
            let e = client_config(Roots::Bundled, Some(bad)).unwrap_err();
            assert!(matches!(e, TlsError::ServerName { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_ca_file_certificate_that_is_not_der_is_named_by_position() {
        let junk = [CertificateDer::from(vec![0u8; 3])];
        let e = client_config(
            Roots::CaFile {
                path: "/etc/ca.pem",
                certs: &junk,
            },
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("/etc/ca.pem: certificate #1"),
            "{e}"
        );
    }

    #[test]
    fn installing_the_provider_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }

    #[test]
    fn hints_name_the_option_to_change() {
        use rustls::CertificateError as C;
        let unknown = rustls::Error::InvalidCertificate(C::UnknownIssuer);
        assert!(handshake_hint(&unknown).contains("tls.caFile"));
        let name = rustls::Error::InvalidCertificate(C::NotValidForName);
        assert!(handshake_hint(&name).contains("tls.serverName"));
        let io = std::io::Error::other(unknown.clone());
        assert_eq!(rustls_cause(&io), Some(&unknown));
        let plain = std::io::Error::other("refused");
        assert_eq!(rustls_cause(&plain), None);
        // As hyper hands it over: an io error wrapping tokio-rustls' io error.
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            unknown.clone(),
        ));
        assert_eq!(rustls_cause(&nested), Some(&unknown));
    }
}
