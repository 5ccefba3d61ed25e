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
/// AEAD with hardware support, and SHA-256 rather than SHA-384 for the handshake).
///
/// rustls 0.23.48 deprecates its ring provider because ring has no post-quantum key
/// exchange; aws-lc-rs has, and costs 2 MB more resident memory (`bench/RESULTS.md`).
#[allow(deprecated)]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::{cipher_suite, default_provider};
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
    Arc::new(provider)
}
