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
