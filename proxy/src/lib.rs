//! gitgate's network side: the forward proxy, interception of the GitHub hosts,
//! tunnels, the upstream client, git request handling and GitHub credentials.
//!
//! Every decision is delegated to the pure [`gitgate_policy`] crate; this crate only
//! moves bytes and turns decisions into answers the client understands.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

/// The `AsyncWrite` methods that an I/O wrapper watching or shaping its `inner` stream
/// passes straight through: vectored-write support, flush and shutdown.
macro_rules! forward_write_control {
    () => {
        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    };
}

mod admin;
mod admission;
mod api;
pub mod audit;
mod body;
mod broken_off;
mod budget;
mod client_hello;
mod connect;
mod forward;
mod framing;
mod git;
mod github;
mod headers;
mod identity;
mod idle;
mod lfs;
mod linger;
mod listener;
mod login;
mod metrics;
mod mitm;
mod observe;
mod pack;
mod proxy_tls;
mod push;
mod push_check;
mod push_content;
mod read_ahead;
mod reply;
mod repo_api;
mod resolve;
mod send;
mod serve;
mod settings;
mod signature;
mod spool;
mod spool_dir;
mod state;
mod storage;
mod tap;
pub mod token;
mod tunnel;
mod upstream;

/// Entry points for the fuzz targets in `fuzz/`, built only with the `fuzzing` feature:
/// not an API.
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    /// Reads `pack` as gitgate reads a pushed pack, both passes, with every want (objects
    /// over `max_blob`, trees, signatures); with `seal`, the trailing checksum is computed
    /// and appended first, so that crafted entries get past it. Refusing is fine; a panic,
    /// a hang or unbounded memory is a bug. Returns whether the pack was read.
    pub fn pushed_pack(pack: &[u8], seal: bool, max_blob: Option<u64>) -> bool {
        let hash = gix_hash::Kind::Sha1;
        let mut bytes = pack.to_vec();
        if seal {
            let mut hasher = gix_hash::hasher(hash);
            hasher.update(pack);
            match hasher.try_finalize() {
                Ok(id) => bytes.extend_from_slice(id.as_bytes()),
                Err(_) => return false,
            }
        }
        let wants = crate::pack::Wants {
            max_blob,
            trees: true,
            signatures: true,
        };
        let bytes = bytes::Bytes::from(bytes);
        crate::pack::facts(&bytes, wants, &crate::pack::Bases::new(), hash).is_ok()
    }

    /// Reads a client's first bytes in a tunnel as they come, in `pieces`, as gitgate
    /// does before letting any reach the host; and says whether the tunnel to `host`
    /// would be refused. Never panics, and decides within `MAX_HELLO` bytes.
    pub fn tunnel_hello(pieces: &[&[u8]], host: &str) -> Option<bool> {
        let host = gitgate_policy::HostName::parse(host).ok()?;
        let mut first = Vec::new();
        for piece in pieces {
            first.extend_from_slice(piece);
            match crate::client_hello::read(&first) {
                Ok(hello) => return Some(crate::tunnel::refusal(&hello, &host).is_some()),
                // More is asked for, within the bound.
                Err(needed) => {
                    assert!(needed > first.len() && needed <= crate::client_hello::MAX_HELLO)
                }
            }
        }
        None
    }
}

use std::future::Future;
use std::sync::Arc;

use gitgate_certs::CertificateAuthority;
use gitgate_policy::{Policies, Policy};
use tokio::net::TcpListener;

use audit::AuditLog;
use metrics::{Metrics, Outcome};

pub use metrics::DEFAULT_PROFILE_LABELS;
pub use proxy_tls::ClientCaError;
pub use settings::{Limits, ListenTls, PushHold, Settings};
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
    /// The audit log could not be opened.
    #[error("audit.file: {0}")]
    Audit(#[from] std::io::Error),
    /// `clientCa` is unusable.
    #[error(transparent)]
    ClientCa(#[from] ClientCaError),
    /// `github.user.sessionFile` cannot be read back.
    #[error(transparent)]
    SessionFile(#[from] token::SessionFileError),
}

impl Tokens {
    /// A credential source on its own (for `gitgate doctor`), dialling upstream as the
    /// proxy would.
    pub fn standalone(config: TokenConfig, settings: &Settings) -> Result<Self, BuildError> {
        let dialer = upstream::Dialer::new(&settings.upstream)?;
        Ok(Tokens::new(
            config,
            settings,
            &dialer,
            Arc::default(),
            None,
        )?)
    }
}

/// A configured proxy, ready to serve.
pub struct Proxy {
    state: Arc<state::State>,
    tls: Option<Arc<proxy_tls::ProxyTls>>,
}

impl Proxy {
    /// Assembles the proxy. Must be called inside a tokio runtime (the audit writer is
    /// a background task).
    pub fn new(
        settings: Settings,
        ca: CertificateAuthority,
        policies: Policies,
        tokens: TokenConfig,
    ) -> Result<Self, BuildError> {
        let tls = match &settings.listen_tls {
            Some(listen_tls) => Some(Arc::new(proxy_tls::ProxyTls::new(listen_tls)?)),
            None => None,
        };
        let metrics = Arc::new(Metrics::new(settings.max_profile_labels));
        let upstream = upstream::Upstream::new(&settings.upstream)?;
        let audit = AuditLog::start(settings.audit.clone(), metrics.audit_losses.clone())?;
        let tokens = Arc::new(Tokens::new(
            tokens,
            &settings,
            upstream.dialer(),
            metrics.clone(),
            Some(audit.clone()),
        )?);
        metrics.policy_loaded(Outcome::Ok, Some(&policies_hash(&policies)));
        let observer = observe::Observer::new(audit, metrics);
        let repo_api = repo_api::RepoApi::new(&settings, upstream.dialer())?;
        let state = state::State::new(
            settings,
            ca,
            upstream,
            (tokens, repo_api),
            observer,
            policies,
        );
        Ok(Self {
            state: Arc::new(state),
            tls,
        })
    }

    /// Takes back the user sessions sealed in `github.user.sessionFile` and keeps the file
    /// current; sessions of the `unloaded` profiles (whose files did not load) are kept
    /// aside until a reload brings them. Call it last before serving: a restored session
    /// may be renewed at once, spending its refresh token.
    pub fn restore_sessions(&self, unloaded: &[String]) -> Result<(), BuildError> {
        let policies = self.state.policies();
        Ok(self.state.tokens.restore_sessions(&policies, unloaded)?)
    }

    /// Replaces the policies (after an edit of `file`): new requests use them at once;
    /// requests in flight and open tunnels to other hosts finish under the ones they
    /// started with; intercepted connections keep their profile and get its new policy.
    /// Tokens whose scope no policy asks for any more are dropped. Returns the hash.
    pub fn set_policies(&self, policies: Policies, unloaded: &[String], file: &str) -> String {
        let hash = policies_hash(&policies);
        self.state.set_policies(policies, unloaded);
        self.state
            .observer
            .metrics
            .policy_loaded(Outcome::Ok, Some(&hash));
        self.state
            .observer
            .audit()
            .write(audit::reload_line(file, true, "policy reloaded", &hash));
        hash
    }

    /// Records a reload that failed; the policy in force stays.
    pub fn reload_failed(&self, file: &str, error: &str) {
        let hash = policies_hash(&self.state.policies());
        self.state
            .observer
            .metrics
            .policy_loaded(Outcome::Error, None);
        self.state
            .observer
            .audit()
            .write(audit::reload_line(file, false, error, &hash));
    }

    /// Ends the shutdown's grace period now (a second stop signal): what is still open
    /// is closed and recorded.
    pub fn close_now(&self) {
        self.state.hurry.send_replace(true);
    }

    /// A fingerprint of the CA certificate in use (to tell whether its file changed).
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(self.state.ca.cert_pem().as_bytes())
    }

    /// Reopens the audit file (SIGHUP, log rotation).
    pub fn reopen_audit(&self) {
        self.state.observer.audit().reopen();
    }

    /// The credential source (for `gitgate doctor`).
    pub fn tokens(&self) -> &Tokens {
        &self.state.tokens
    }

    /// Serves clients on `listener` until `shutdown` resolves, then drains (within the
    /// grace period, then closing what is left).
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        listener::run(self.state.clone(), listener, None, shutdown).await;
    }

    /// Writes the last audit records and stops the audit writer: the last step of
    /// shutdown, once every listener has drained. A writer whose output is blocked (a
    /// stalled stdout) is given [`AUDIT_CLOSE`] and then left.
    pub async fn close_audit(&self) {
        let audit = self.state.observer.audit().clone();
        let _ = tokio::task::spawn_blocking(move || audit.close_within(AUDIT_CLOSE)).await;
    }

    /// Serves the HTTPS proxy listener (`listenTls`) until `shutdown` resolves; does
    /// nothing when it is not configured.
    pub async fn serve_tls(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        if let Some(tls) = &self.tls {
            listener::run(self.state.clone(), listener, Some(tls.clone()), shutdown).await;
        }
    }

    /// Serves the admin endpoints (`/healthz`, `/readyz`, `/metrics`) on `listener`
    /// until `shutdown` resolves.
    pub async fn serve_admin(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        admin::run(self.state.clone(), listener, shutdown).await;
    }
}

/// How long the audit writer gets to write what is queued at shutdown.
pub const AUDIT_CLOSE: std::time::Duration = std::time::Duration::from_secs(5);

/// A short, stable fingerprint of a policy (SHA-256 of all it decides with).
pub fn policy_hash(policy: &Policy) -> String {
    fingerprint(policy.exact().as_bytes())
}

/// A short, stable fingerprint of the policies: of the single policy, or of every
/// profile (name, identity and policy) in name order.
pub fn policies_hash(policies: &Policies) -> String {
    match policies {
        Policies::Single(policy) => policy_hash(policy),
        Policies::Profiles(set) => {
            let mut profiles: Vec<_> = set.iter().collect();
            profiles.sort_by(|a, b| a.name.cmp(&b.name));
            let mut summary = String::new();
            for profile in profiles {
                summary.push_str(&profile.exact());
                summary.push('\n');
            }
            fingerprint(summary.as_bytes())
        }
    }
}

/// A short, stable fingerprint of `bytes` (the first 8 bytes of their SHA-256, in hex).
pub fn fingerprint(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
