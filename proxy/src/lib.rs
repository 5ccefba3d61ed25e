//! gitgate's network side: the forward proxy, interception of the GitHub hosts,
//! tunnels, the upstream client, git request handling and GitHub credentials.
//!
//! Every decision is delegated to the pure [`gitgate_policy`] crate; this crate only
//! moves bytes and turns decisions into answers the client understands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
mod body;
mod connect;
mod forward;
mod git;
mod github;
mod headers;
mod listener;
mod mitm;
mod push;
mod reply;
mod serve;
mod settings;
mod state;
pub mod token;
mod tunnel;
mod upstream;

use std::future::Future;
use std::sync::Arc;

use gitgate_certs::CertificateAuthority;
use gitgate_policy::Policy;
use tokio::net::TcpListener;

pub use settings::{Limits, Settings};
pub use token::{TokenConfig, Tokens};
pub use upstream::UpstreamSettings;

/// Why the proxy could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A trust anchor in `upstream.caFile` is unusable.
    #[error("upstream.caFile: {0}")]
    Roots(#[from] rustls::Error),
    /// The token source could not be set up.
    #[error(transparent)]
    Token(#[from] token::TokenError),
}

impl Tokens {
    /// A credential source on its own (for `gitgate doctor`), dialling upstream as the
    /// proxy would.
    pub fn standalone(config: TokenConfig, settings: &Settings) -> Result<Self, BuildError> {
        let dialer = upstream::Dialer::new(&settings.upstream)?;
        Ok(Tokens::new(config, &settings.api_url, &dialer)?)
    }
}

/// A configured proxy, ready to serve.
pub struct Proxy {
    state: Arc<state::State>,
}

impl Proxy {
    /// Assembles the proxy.
    pub fn new(
        settings: Settings,
        ca: CertificateAuthority,
        policy: Policy,
        tokens: TokenConfig,
    ) -> Result<Self, BuildError> {
        let upstream = upstream::Upstream::new(&settings.upstream)?;
        let tokens = Arc::new(Tokens::new(tokens, &settings.api_url, upstream.dialer())?);
        let state = state::State::new(settings, ca, upstream, tokens, policy);
        Ok(Self {
            state: Arc::new(state),
        })
    }

    /// Replaces the policy: new requests use it at once; requests in flight finish under
    /// the one they started with. Tokens whose scope no longer fits are dropped.
    pub fn set_policy(&self, policy: Policy) {
        self.state.set_policy(policy);
    }

    /// The credential source (for `gitgate doctor`).
    pub fn tokens(&self) -> &Tokens {
        &self.state.tokens
    }

    /// Serves clients on `listener` until `shutdown` resolves, then drains.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        listener::run(self.state.clone(), listener, shutdown).await;
    }
}
