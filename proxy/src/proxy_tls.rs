//! `listenTls`: gitgate as an HTTPS proxy. Clients reach it over TLS (its certificate is
//! minted from gitgate's own CA, which sandboxes already trust) and may present a client
//! certificate from `clientCa`, whose subject then names their profile.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gitgate_certs::CertificateAuthority;
use gitgate_policy::CertSubject;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::settings::ListenTls;

/// The proxy listener's certificate is re-minted after this long (it is valid for 24 h).
const RENEW_AFTER: Duration = Duration::from_secs(12 * 3600);

/// Why a client's TLS session to the proxy listener did not start.
pub(crate) enum HandshakeError {
    /// Not completed within `limits.tlsHandshakeTimeout`.
    Timeout,
    /// Refused or broken (no usable certificate, protocol error, …).
    Failed(String),
}

/// Why `clientCa` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("clientCa: {0}")]
pub struct ClientCaError(String);

/// The TLS side of the HTTPS proxy listener.
pub(crate) struct ProxyTls {
    names: Vec<String>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    current: Mutex<Option<(Arc<ServerConfig>, SystemTime)>>,
}

impl ProxyTls {
    pub(crate) fn new(settings: &ListenTls) -> Result<Self, ClientCaError> {
        let verifier = if settings.client_ca.is_empty() {
            None
        } else {
            Some(client_verifier(&settings.client_ca)?)
        };
        Ok(Self {
            names: settings.names.clone(),
            verifier,
            current: Mutex::new(None),
        })
    }

    /// The server configuration, re-minted when its leaf gets old.
    fn config(
        &self,
        ca: &CertificateAuthority,
    ) -> Result<Arc<ServerConfig>, gitgate_certs::CaError> {
        let now = SystemTime::now();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((config, minted)) = current.as_ref()
            && now
                .duration_since(*minted)
                .is_ok_and(|age| age < RENEW_AFTER)
        {
            return Ok(config.clone());
        }
        let config = ca.proxy_server_config(&self.names, self.verifier.clone(), now)?;
        *current = Some((config.clone(), now));
        Ok(config)
    }

    /// Completes the client's TLS handshake within `timeout`; returns the stream and the
    /// subjects of its verified certificate (none without one).
    pub(crate) async fn accept(
        &self,
        ca: &CertificateAuthority,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<(TlsStream<TcpStream>, Arc<[CertSubject]>), HandshakeError> {
        let config = self
            .config(ca)
            .map_err(|e| HandshakeError::Failed(e.to_string()))?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Err(HandshakeError::Failed(error.to_string())),
            Err(_) => return Err(HandshakeError::Timeout),
        };
        let subjects = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(subjects)
            .unwrap_or_default();
        Ok((tls, subjects.into()))
    }
}

/// Verifies client certificates against `client_ca`; a client without one may still
/// identify by proxy secret or address.
fn client_verifier(
    client_ca: &[CertificateDer<'static>],
) -> Result<Arc<dyn ClientCertVerifier>, ClientCaError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in client_ca {
        roots
            .add(cert.clone())
            .map_err(|e| ClientCaError(format!("not a usable CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), gitgate_certs::crypto_provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ClientCaError(e.to_string()))
}

/// The identities a (verified) certificate carries: `CN=` of its subject and `URI=` of
/// its URI subject alternative names.
fn subjects(cert: &CertificateDer<'_>) -> Vec<CertSubject> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out: Vec<CertSubject> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(CertSubject::common_name)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        out.extend(
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::URI(uri) => Some(CertSubject::uri(uri)),
                    _ => None,
                }),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_name_and_uri_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(vec![]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "agent-a");
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://c/ns/agents/sa/a".try_into().unwrap(),
        )];
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            subjects(cert.der()),
            vec![
                CertSubject::common_name("agent-a"),
                CertSubject::uri("spiffe://c/ns/agents/sa/a")
            ]
        );
        assert!(subjects(&CertificateDer::from(vec![1, 2, 3])).is_empty());
    }
}
