//! What every connection shares.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use gitgate_certs::CertificateAuthority;
use gitgate_policy::{CertSubject, Policies};
use tokio::sync::{mpsc, watch};

use crate::Settings;
use crate::admission::{Admission, Admitted};
use crate::metrics::Open;
use crate::observe::Observer;
use crate::repo_api::RepoApi;
use crate::token::Tokens;
use crate::upstream::Upstream;

/// Shared, long-lived proxy state.
pub(crate) struct State {
    pub(crate) settings: Settings,
    pub(crate) ca: CertificateAuthority,
    pub(crate) upstream: Upstream,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) repo_api: RepoApi,
    pub(crate) observer: Observer,
    pub(crate) admission: Admission,
    pub(crate) tunnels: Arc<crate::budget::Budget>,
    /// LFS storage hosts batch responses opened to their clients.
    pub(crate) storage: crate::storage::StorageGrants,
    /// Where held pushes are written.
    pub(crate) spool: crate::spool_dir::SpoolPlace,
    /// The disk held pushes take, together.
    pub(crate) held_push_bytes: Arc<crate::budget::Budget>,
    /// The pushes held at once (each keeps a blocking thread).
    pub(crate) held_push_count: Arc<crate::budget::Budget>,
    /// The memory held pushes' checks hold (`limits.maxPushCheckBytes`).
    pub(crate) push_checks: Arc<crate::budget::Budget>,
    /// Set by a second stop signal: shutdown closes what is open without waiting for
    /// the grace period.
    pub(crate) hurry: tokio::sync::watch::Sender<bool>,
    /// The memory of request bodies and tunnels' first bytes read to decide on
    /// (`limits.maxBufferedBodyBytes`).
    pub(crate) buffered_bodies: Arc<crate::budget::Budget>,
    policies: RwLock<Arc<Policies>>,
    next_connection: AtomicU64,
}

impl State {
    pub(crate) fn new(
        settings: Settings,
        ca: CertificateAuthority,
        upstream: Upstream,
        (tokens, repo_api): (Arc<Tokens>, RepoApi),
        observer: Observer,
        policies: Policies,
    ) -> Self {
        let limits = &settings.limits;
        let admission = Admission::new(limits.max_connections, limits.max_connections_per_client);
        let tunnels = crate::budget::Budget::new(
            limits.max_tunnels as u64,
            limits.max_tunnels_per_client as u64,
            observer.metrics.open_tunnels.clone(),
        );
        let held_push_bytes = crate::budget::Budget::new(
            limits.max_held_push_bytes,
            limits.max_held_push_bytes_per_client,
            observer.metrics.held_push_bytes.clone(),
        );
        let held_push_count = crate::budget::Budget::new(
            limits.max_held_pushes as u64,
            limits.max_held_pushes_per_client as u64,
            observer.metrics.held_pushes.clone(),
        );
        let push_checks = crate::budget::Budget::new(
            limits.max_push_check_bytes,
            limits.max_push_check_bytes_per_client,
            observer.metrics.push_check_bytes.clone(),
        );
        let buffered_bodies = crate::budget::Budget::new(
            limits.max_buffered_body_bytes,
            limits.max_buffered_body_bytes_per_client,
            observer.metrics.buffered_body_bytes.clone(),
        );
        Self {
            settings,
            ca,
            upstream,
            tokens,
            repo_api,
            observer,
            admission,
            tunnels,
            storage: Default::default(),
            spool: crate::spool_dir::SpoolPlace::new(std::env::temp_dir()),
            held_push_bytes,
            held_push_count,
            push_checks,
            buffered_bodies,
            hurry: tokio::sync::watch::Sender::new(false),
            policies: RwLock::new(Arc::new(policies)),
            next_connection: AtomicU64::new(1),
        }
    }

    /// The policies in force now; a request keeps the ones it started with.
    pub(crate) fn policies(&self) -> Arc<Policies> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Swaps the policies in; `unloaded` names the profiles whose file is there but did
    /// not load (their kept-aside user sessions stay aside).
    pub(crate) fn set_policies(&self, policies: Policies, unloaded: &[String]) {
        let policies = Arc::new(policies);
        let old = std::mem::replace(
            &mut *self.policies.write().unwrap_or_else(|p| p.into_inner()),
            policies.clone(),
        );
        // After the swap, so that no request starting meanwhile mints for a scope of the
        // old policies once they were pruned, or is granted storage under them. A
        // reload that leaves a client's policy as it was (a SIGHUP for log rotation,
        // another profile's edit) leaves its storage grants too.
        self.tokens.policies_changed(&policies, unloaded);
        let policy =
            |of: &Policies, profile: Option<&str>| of.current(profile).ok().map(|p| p.to_string());
        self.storage.retain(|(profile, _)| {
            let before = policy(&old, profile.as_deref());
            before.is_some() && before == policy(&policies, profile.as_deref())
        });
    }

    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }
}

/// One client connection: who it is, and its link to graceful shutdown.
#[derive(Clone)]
pub(crate) struct ConnCtx {
    pub(crate) id: u64,
    pub(crate) client: SocketAddr,
    /// The subjects of the client certificate verified on `listenTls` (else empty).
    pub(crate) cert_subjects: Arc<[CertSubject]>,
    pub(crate) lifecycle: Lifecycle,
    /// Counts the connection against the limits and in the gauge for as long as any
    /// part of it lives, including a tunnel or an intercepted session after CONNECT.
    pub(crate) _held: Option<Arc<(Admitted, Open)>>,
}

/// Where shutdown is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Serving,
    /// No new connections; requests in flight and tunnels may finish.
    Stopping,
    /// The grace period is over: whatever still runs ends now, writing its record.
    Closing,
}

/// Held by every task that serves a client; shutdown waits until all are dropped.
#[derive(Clone)]
pub(crate) struct Lifecycle {
    phase: watch::Receiver<Phase>,
    _alive: mpsc::Sender<()>,
}

impl Lifecycle {
    pub(crate) fn new(phase: watch::Receiver<Phase>, alive: mpsc::Sender<()>) -> Self {
        Self {
            phase,
            _alive: alive,
        }
    }

    /// Resolves once shutdown has begun.
    pub(crate) async fn stopping(&mut self) {
        self.reached(Phase::Stopping).await;
    }

    /// Resolves once the grace period is over.
    pub(crate) async fn closing(&mut self) {
        self.reached(Phase::Closing).await;
    }

    async fn reached(&mut self, phase: Phase) {
        if self.phase.wait_for(|now| *now >= phase).await.is_err() {
            // The listener is gone without saying: never resolve for that.
            std::future::pending::<()>().await;
        }
    }
}
