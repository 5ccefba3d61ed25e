//! gitgate's certificate authority: load or generate the CA that sandboxes trust,
//! and mint (and cache) the leaf certificates gitgate presents for intercepted hosts.
//!
//! No sockets here: the proxy asks [`CertificateAuthority::server_config`] for a
//! ready rustls configuration per host.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod authority;
mod error;
mod files;
mod leaf;

pub use authority::{CertificateAuthority, Provenance};
pub use error::CaError;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// The crypto provider for both TLS legs: ring, with AES-128-GCM preferred (the cheapest
/// AEAD with hardware support, and SHA-256 rather than SHA-384 for the handshake) and
/// X25519 for the key exchange. Both orders are gitgate's own: rustls 0.23.48 put P-384
/// first among ring's groups, and a client sends its key share for its first group, so
/// every upstream handshake cost about 11 million instructions more (callgrind).
///
/// rustls 0.23.48 deprecates its ring provider because ring has no post-quantum key
/// exchange; aws-lc-rs has, and costs 2 MB more resident memory (`bench/RESULTS.md`).
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    let mut provider = default_provider();
    provider.cipher_suites = vec![
        cipher_suite::TLS13_AES_128_GCM_SHA256,
        cipher_suite::TLS13_AES_256_GCM_SHA384,
        cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use rustls::NamedGroup;

    #[test]
    fn the_provider_prefers_aes_128_gcm_and_x25519() {
        let provider = super::crypto_provider();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let groups: Vec<NamedGroup> = provider.kx_groups.iter().map(|g| g.name()).collect();
        assert_eq!(
            groups,
            [
                NamedGroup::X25519,
                NamedGroup::secp256r1,
                NamedGroup::secp384r1
            ]
        );
    }
}
