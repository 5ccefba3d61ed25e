//! The CA: loading, generating and checking it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::leaf::{LeafCache, LeafMinter};
use crate::{CaError, files};

/// How long a generated CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// Whether the CA was read from disk or created on this start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Both files existed and were loaded.
    Loaded,
    /// Neither file existed; a new CA was generated and written.
    Generated,
}

/// gitgate's certificate authority, with a cache of per-host leaf configurations.
pub struct CertificateAuthority {
    cert_pem: String,
    leaves: LeafCache,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Builds a CA from PEM text: the certificate and its PKCS#8 private key.
    ///
    /// The pair is checked by signing a test leaf and verifying it against the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        Self::from_pem_at(
            cert_pem,
            key_pem,
            Path::new("<memory>"),
            Path::new("<memory>"),
        )
    }

    fn from_pem_at(
        cert_pem: &str,
        key_pem: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, CaError> {
        let invalid = |role: &'static str, path: &Path, reason: String| CaError::Invalid {
            role,
            path: path.to_owned(),
            reason,
        };
        let cert_der = first_certificate(cert_pem).ok_or_else(|| {
            invalid(
                "ca.cert",
                cert_path,
                "no PEM CERTIFICATE block found".into(),
            )
        })?;
        let key = KeyPair::from_pem(key_pem).map_err(|e| {
            invalid(
                "ca.key",
                key_path,
                format!("not a PKCS#8 PEM private key (ECDSA P-256/P-384, Ed25519 or RSA): {e}"),
            )
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| {
            invalid(
                "ca.cert",
                cert_path,
                format!("not a parsable certificate: {e}"),
            )
        })?;
        let provider = crate::crypto_provider();
        let minter = LeafMinter::new(issuer, cert_der, provider)?;
        minter.self_check(SystemTime::now())?;
        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            leaves: LeafCache::new(minter),
        })
    }

    /// Loads the CA from its two files; the key must not be readable by group or others.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let cert_pem = files::read("ca.cert", cert_path)?;
        files::check_private("ca.key", key_path)?;
        let key_pem = files::read("ca.key", key_path)?;
        Self::from_pem_at(&cert_pem, &key_pem, cert_path, key_path)
    }

    /// Loads the CA, or generates and writes one when neither file exists.
    ///
    /// Refuses when only one of the two files exists.
    pub fn load_or_generate(
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(Self, Provenance), CaError> {
        match (cert_path.exists(), key_path.exists()) {
            (true, true) => Ok((Self::load(cert_path, key_path)?, Provenance::Loaded)),
            (false, false) => Ok((Self::create(cert_path, key_path)?, Provenance::Generated)),
            (true, false) => Err(CaError::HalfPresent {
                missing_role: "ca.key",
                missing: key_path.to_owned(),
                present_role: "ca.cert",
                present: cert_path.to_owned(),
            }),
            (false, true) => Err(CaError::HalfPresent {
                missing_role: "ca.cert",
                missing: cert_path.to_owned(),
                present_role: "ca.key",
                present: key_path.to_owned(),
            }),
        }
    }

    /// Generates a new CA (ECDSA P-256) and writes it: the key with mode 0600, the
    /// certificate with 0644. Fails if either file already exists.
    pub fn create(cert_path: &Path, key_path: &Path) -> Result<Self, CaError> {
        let (cert_pem, key_pem) = generate(SystemTime::now())?;
        files::create(key_path, &key_pem, 0o600)?;
        files::create(cert_path, &cert_pem, 0o644)?;
        Self::from_pem_at(&cert_pem, &key_pem, cert_path, key_path)
    }

    /// The CA certificate in PEM form, for sandboxes to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server configuration presenting a leaf certificate for `host`
    /// (a DNS name or IP address), minted on first use and cached until close to expiry.
    pub fn server_config(&self, host: &str, now: SystemTime) -> Result<Arc<ServerConfig>, CaError> {
        self.leaves.get(host, now)
    }

    /// A TLS server configuration for gitgate's own HTTPS proxy listener: a fresh leaf
    /// for `names`, and client certificates checked by `clients` if given (not cached:
    /// the caller keeps it and asks again before the leaf's 24 h are up).
    pub fn proxy_server_config(
        &self,
        names: &[String],
        clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
        now: SystemTime,
    ) -> Result<Arc<ServerConfig>, CaError> {
        self.leaves.minter().server_config(names, clients, now)
    }
}

/// Generates a CA certificate and key as PEM text.
fn generate(now: SystemTime) -> Result<(String, String), CaError> {
    let gen_err = |e: rcgen::Error| CaError::Generate(e.to_string());
    let key = KeyPair::generate().map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "gitgate egress CA");
    name.push(DnType::OrganizationName, "gitgate");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + CA_VALIDITY).into();
    let cert = params.self_signed(&key).map_err(gen_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The first `CERTIFICATE` block of a PEM text.
fn first_certificate(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes()).next()?.ok()
}

/// Converts an rcgen key into the DER form rustls signs with.
pub(crate) fn private_key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// The crypto provider type used throughout.
pub(crate) type Provider = Arc<CryptoProvider>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_that_checks_client_certificates_resumes_no_session() {
        let now = SystemTime::now();
        let (cert, key) = generate(now).unwrap();
        let ca = CertificateAuthority::from_pem(&cert, &key).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls::pki_types::pem::PemObject;
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
            roots.add(der.unwrap()).unwrap();
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            crate::crypto_provider(),
        )
        .build()
        .unwrap();
        let names = ["proxy.internal".to_owned()];
        let checked = ca.proxy_server_config(&names, Some(verifier), now).unwrap();
        assert!(!checked.session_storage.can_cache());
        assert_eq!(checked.send_tls13_tickets, 0);
        // Without client certificates, sessions resume (a new connection per request
        // costs no full handshake).
        let open = ca.proxy_server_config(&names, None, now).unwrap();
        assert!(open.session_storage.can_cache() && open.send_tls13_tickets > 0);
    }

    #[test]
    fn generated_ca_round_trips_through_pem() {
        let (cert, key) = generate(SystemTime::now()).unwrap();
        let ca = CertificateAuthority::from_pem(&cert, &key).unwrap();
        assert_eq!(ca.cert_pem(), cert);
    }

    #[test]
    fn mismatched_key_is_refused() {
        let (cert, _) = generate(SystemTime::now()).unwrap();
        let (_, other_key) = generate(SystemTime::now()).unwrap();
        let err = CertificateAuthority::from_pem(&cert, &other_key).unwrap_err();
        assert!(matches!(err, CaError::Mismatch(_)), "{err}");
    }

    #[test]
    fn garbage_is_refused_naming_the_file() {
        let (cert, _) = generate(SystemTime::now()).unwrap();
        let err = CertificateAuthority::from_pem(&cert, "not a key").unwrap_err();
        assert!(err.to_string().starts_with("ca.key"), "{err}");
        let err = CertificateAuthority::from_pem("nope", "nope").unwrap_err();
        assert!(err.to_string().starts_with("ca.cert"), "{err}");
    }

    #[test]
    fn generates_when_both_missing_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca/ca.pem");
        let key = dir.path().join("ca/ca-key.pem");
        let (_, how) = CertificateAuthority::load_or_generate(&cert, &key).unwrap();
        assert_eq!(how, Provenance::Generated);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (_, how) = CertificateAuthority::load_or_generate(&cert, &key).unwrap();
        assert_eq!(how, Provenance::Loaded);
    }

    #[test]
    fn half_present_is_refused_naming_the_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca-key.pem");
        CertificateAuthority::create(&cert, &key).unwrap();
        std::fs::remove_file(&key).unwrap();
        let err = CertificateAuthority::load_or_generate(&cert, &key).unwrap_err();
        assert!(err.to_string().starts_with("ca.key"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("ca.pem");
        let key = dir.path().join("ca-key.pem");
        CertificateAuthority::create(&cert, &key).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = CertificateAuthority::load(&cert, &key).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}
