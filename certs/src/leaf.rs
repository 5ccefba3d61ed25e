//! Leaf certificates for intercepted hosts, minted from the CA and cached per host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::ServerConfig;
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::CaError;
use crate::authority::{Provider, private_key_der};

/// Leaf certificates start this long in the past, to tolerate client clock skew.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Leaf certificates are short-lived.
const VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// A cached leaf is replaced once it is this old.
const REFRESH_AFTER: Duration = Duration::from_secs(12 * 3600);
/// At most this many hosts are cached; only intercepted hosts ever get here.
const MAX_CACHED: usize = 256;

/// Signs leaf certificates with the CA key. All leaves share one key pair.
pub(crate) struct LeafMinter {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    provider: Provider,
}

impl LeafMinter {
    pub(crate) fn new(
        issuer: Issuer<'static, KeyPair>,
        ca_der: CertificateDer<'static>,
        provider: Provider,
    ) -> Result<Self, CaError> {
        let leaf_key = KeyPair::generate().map_err(|e| CaError::Generate(e.to_string()))?;
        let signing_key = provider
            .key_provider
            .load_private_key(private_key_der(&leaf_key))
            .map_err(|e| CaError::Generate(e.to_string()))?;
        Ok(Self {
            issuer,
            ca_der,
            leaf_key,
            signing_key,
            provider,
        })
    }

    /// Mints a leaf certificate for `names` (DNS names or IP addresses; the first is
    /// also the common name), valid from an hour ago for a day.
    fn mint(&self, names: &[String], now: SystemTime) -> Result<CertificateDer<'static>, CaError> {
        let host = names.first().map_or("", String::as_str);
        let gen_err = |e: rcgen::Error| CaError::Generate(format!("leaf for {host}: {e}"));
        let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        params.distinguished_name.push(DnType::CommonName, host);
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + VALIDITY).into();
        params.serial_number = Some(self.serial()?);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(gen_err)?;
        Ok(cert.der().clone())
    }

    /// A random positive 128-bit serial number.
    fn serial(&self) -> Result<SerialNumber, CaError> {
        let mut bytes = [0u8; 16];
        self.provider
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| CaError::Generate("the system random source failed".into()))?;
        bytes[0] &= 0x7f;
        Ok(SerialNumber::from_slice(&bytes))
    }

    /// A server configuration presenting a fresh leaf for `names` (HTTP/1.1 only),
    /// asking for client certificates when `clients` is given.
    pub(crate) fn server_config(
        &self,
        names: &[String],
        clients: Option<Arc<dyn ClientCertVerifier>>,
        now: SystemTime,
    ) -> Result<Arc<ServerConfig>, CaError> {
        let leaf = self.mint(names, now)?;
        let certified =
            CertifiedKey::new(vec![leaf, self.ca_der.clone()], self.signing_key.clone());
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| CaError::Generate(e.to_string()))?;
        let checks_clients = clients.is_some();
        let builder = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        if checks_clients {
            // A resumed session brings back the client certificate it began with, unchecked
            // (an expired one too): every connection shows and is verified on its own.
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Our order (AES-128-GCM first) rather than the client's.
        config.ignore_client_order = true;
        Ok(Arc::new(config))
    }

    /// Proves the CA key matches the CA certificate: a leaf signed with the key must
    /// verify against the certificate as a trust anchor.
    pub(crate) fn self_check(&self, now: SystemTime) -> Result<(), CaError> {
        const PROBE: &str = "gitgate-selfcheck.invalid";
        let leaf = self.mint(&[PROBE.to_owned()], now)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| {
            CaError::Mismatch(format!("the certificate is not a usable trust anchor: {e}"))
        })?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| CaError::Mismatch(e.to_string()))?;
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let name = ServerName::try_from(PROBE).map_err(|e| CaError::Mismatch(e.to_string()))?;
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::since_unix_epoch(since_epoch))
            .map_err(|e| CaError::Mismatch(format!("a leaf signed with the key does not verify against the certificate ({e}); is it the key of this certificate, and is the certificate a CA that is valid now?")))?;
        Ok(())
    }
}

struct Cached {
    config: Arc<ServerConfig>,
    minted: SystemTime,
}

/// Per-host cache of server configurations. Reusing a configuration keeps its TLS
/// session cache, so returning clients resume instead of doing a full handshake.
pub(crate) struct LeafCache {
    minter: LeafMinter,
    entries: Mutex<HashMap<String, Cached>>,
}

impl LeafCache {
    pub(crate) fn new(minter: LeafMinter) -> Self {
        Self {
            minter,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn minter(&self) -> &LeafMinter {
        &self.minter
    }

    pub(crate) fn get(&self, host: &str, now: SystemTime) -> Result<Arc<ServerConfig>, CaError> {
        let fresh = |c: &Cached| {
            now.duration_since(c.minted)
                .map(|age| age < REFRESH_AFTER)
                .unwrap_or(false)
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cached) = entries.get(host).filter(|c| fresh(c)) {
            return Ok(cached.config.clone());
        }
        let config = self.minter.server_config(&[host.to_owned()], None, now)?;
        if entries.len() >= MAX_CACHED {
            entries.retain(|_, c| fresh(c));
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(
            host.to_owned(),
            Cached {
                config: config.clone(),
                minted: now,
            },
        );
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use crate::CertificateAuthority;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    fn ca() -> CertificateAuthority {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::create(&dir.path().join("c.pem"), &dir.path().join("k.pem")).unwrap()
    }

    #[test]
    fn configs_are_cached_per_host_and_renewed_when_old() {
        let ca = ca();
        let now = SystemTime::now();
        let a = ca.server_config("github.com", now).unwrap();
        let b = ca
            .server_config("github.com", now + Duration::from_secs(60))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = ca.server_config("api.github.com", now).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        let d = ca
            .server_config("github.com", now + Duration::from_secs(13 * 3600))
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &d));
    }

    /// A TLS handshake, in memory, between `server` and a client that trusts only `ca`,
    /// connects to `name`, and believes the time is `at`.
    fn handshake(
        ca: &CertificateAuthority,
        server: Arc<rustls::ServerConfig>,
        name: &str,
        at: SystemTime,
    ) -> Result<(), rustls::Error> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
        #[derive(Debug)]
        struct At(UnixTime);
        impl rustls::time_provider::TimeProvider for At {
            fn current_time(&self) -> Option<UnixTime> {
                Some(self.0)
            }
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        let config = rustls::ClientConfig::builder_with_details(
            crate::crypto_provider(),
            Arc::new(At(UnixTime::since_unix_epoch(since))),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let mut client = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut server = rustls::ServerConnection::new(server).unwrap();
        while client.is_handshaking() || server.is_handshaking() {
            let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
            client.write_tls(&mut to_server).unwrap();
            server.read_tls(&mut &to_server[..]).unwrap();
            server.process_new_packets()?;
            server.write_tls(&mut to_client).unwrap();
            client.read_tls(&mut &to_client[..]).unwrap();
            client.process_new_packets()?;
            if to_server.is_empty() && to_client.is_empty() {
                return Err(rustls::Error::General("the handshake stalled".into()));
            }
        }
        Ok(())
    }

    #[test]
    fn leaf_names_the_host_and_offers_only_http1() {
        let ca = ca();
        let config = ca.server_config("github.com", SystemTime::now()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_the_leaf_for_its_host_only_and_for_a_day() {
        let (ca, other) = (ca(), ca());
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        let leaf = ca.server_config("github.com", now).unwrap();
        handshake(&ca, leaf.clone(), "github.com", now).unwrap();
        handshake(&ca, leaf.clone(), "github.com", now + 23 * hour).unwrap();
        handshake(&ca, leaf.clone(), "github.com", now - hour / 2).unwrap();
        for (name, at) in [
            ("api.github.com", now),
            ("evil.example", now),
            ("github.com", now + 25 * hour),
            ("github.com", now - 2 * hour),
        ] {
            let refused = handshake(&ca, leaf.clone(), name, at);
            assert!(
                matches!(refused, Err(rustls::Error::InvalidCertificate(_))),
                "{name} at {at:?}: {refused:?}"
            );
        }
        // Another CA's client does not trust it at all.
        let refused = handshake(&other, leaf, "github.com", now);
        assert!(
            matches!(refused, Err(rustls::Error::InvalidCertificate(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn aes_128_gcm_is_preferred_over_the_clients_order() {
        let ca = ca();
        let config = ca.server_config("github.com", SystemTime::now()).unwrap();
        assert!(config.ignore_client_order);
        assert_eq!(
            config.crypto_provider().cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
    }
}
