//! The stand-in's own test CA and its server certificate.

use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// Names the server certificate is valid for.
pub(crate) const SERVER_NAMES: [&str; 5] = [
    "github.com",
    "api.github.com",
    "tunnel.test",
    "other.test",
    crate::lfs::STORAGE_HOST,
];

/// A freshly generated CA (PEM) and a rustls server config whose leaf it signed.
pub(crate) struct Tls {
    pub(crate) ca_pem: String,
    pub(crate) server: Arc<ServerConfig>,
}

/// Generates the test CA and the server leaf, and builds an HTTP/1.1-only server config.
pub(crate) fn generate() -> anyhow::Result<Tls> {
    let now = OffsetDateTime::now_utc();

    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("gitgate-standin test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - Duration::days(1);
    ca.not_after = now + Duration::days(30);
    let ca_key = KeyPair::generate().context("generating CA key")?;
    let ca_cert = ca.self_signed(&ca_key).context("self-signing CA")?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(SERVER_NAMES.map(str::to_owned).to_vec())
        .context("server certificate names")?;
    leaf.distinguished_name = name("github.com");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - Duration::hours(1);
    leaf.not_after = now + Duration::days(7);
    let leaf_key = KeyPair::generate().context("generating server key")?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("signing server certificate")?;

    let chain: Vec<CertificateDer<'static>> = vec![leaf_cert.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    // ring, like gitgate (rustls deprecates it for want of post-quantum key exchange).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server certificate")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    })
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "gitgate tests");
    dn
}
