//! The proxy's validated settings (the sidecar builds them from the YAML config).

use std::net::SocketAddr;
use std::time::Duration;

use crate::audit::AuditTarget;
use crate::upstream::UpstreamSettings;

/// Everything the proxy needs besides the CA, the policy and the token source.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the forward proxy listens.
    pub listen: SocketAddr,
    /// The git host (`github.host`), lowercase.
    pub github_host: String,
    /// The REST API base URL (`github.apiUrl`), without a trailing slash.
    pub api_url: String,
    /// The API's host, lowercase.
    pub api_host: String,
    /// How upstreams are reached.
    pub upstream: UpstreamSettings,
    /// Timeouts and sizes.
    pub limits: Limits,
    /// Where audit records go.
    pub audit: AuditTarget,
    /// The HTTPS proxy listener's TLS settings (`listenTls`), if it is enabled.
    pub listen_tls: Option<ListenTls>,
    /// At most this many profiles get a metric label of their own.
    pub max_profile_labels: usize,
}

/// `listenTls`: gitgate as an HTTPS proxy, with client certificates as identities.
#[derive(Debug, Clone)]
pub struct ListenTls {
    /// The names (DNS names or IP addresses) its certificate is minted for.
    pub names: Vec<String>,
    /// The CA certificates that sign sandbox client certificates (`clientCa`).
    pub client_ca: Vec<rustls_pki_types::CertificateDer<'static>>,
}

impl Settings {
    /// The git host's web origin (`https://github.com`): where the device flow runs, and
    /// whose user tokens a session file holds.
    pub fn github_web(&self) -> String {
        format!("https://{}", self.github_host)
    }

    /// The hosts gitgate intercepts: the git host and the API host.
    pub fn intercepted_hosts(&self) -> Vec<String> {
        let mut hosts = vec![self.github_host.clone()];
        if self.api_host != self.github_host {
            hosts.push(self.api_host.clone());
        }
        hosts
    }
}

/// Timeouts and size limits that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request head must arrive within this time (slowloris).
    pub header_read_timeout: Duration,
    /// The client's TLS handshake inside CONNECT must finish within this time.
    pub tls_handshake_timeout: Duration,
    /// Upstream must send its response head within this time after the request was sent.
    pub response_header_timeout: Duration,
    /// A request body that sends nothing for this long is abandoned.
    pub body_idle_timeout: Duration,
    /// The most bytes of a push read before its pack (the command list).
    pub max_push_header_bytes: usize,
    /// The most ref updates in one push.
    pub max_push_commands: usize,
    /// The most bytes read and discarded from a denied push so git can show the reason.
    pub max_drain_bytes: u64,
    /// Most bytes of pushes held on disk at once (while content rules decide), all
    /// clients together; a push that would go past it is refused.
    pub max_held_push_bytes: u64,
    /// The share of `max_held_push_bytes` one client address may hold.
    pub max_held_push_bytes_per_client: u64,
    /// Most pushes held at once for the content rules, all clients together (each keeps a
    /// blocking thread reading its pack as it arrives).
    pub max_held_pushes: usize,
    /// The share of `max_held_pushes` one client address may hold.
    pub max_held_pushes_per_client: usize,
    /// Most memory the checks of held pushes may hold (what they read out of packs: object
    /// lists, commits, trees), all clients together; a push past it is refused.
    pub max_push_check_bytes: u64,
    /// The share of `max_push_check_bytes` one client address may hold.
    pub max_push_check_bytes_per_client: u64,
    /// Most bytes of request bodies held in memory to decide on them (API calls, LFS batch
    /// requests, push command lists), all clients together; past it, 503.
    pub max_buffered_body_bytes: u64,
    /// The share of `max_buffered_body_bytes` one client address may hold.
    pub max_buffered_body_bytes_per_client: u64,
    /// In-flight requests get this long to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// A connection on which no byte moves either way for this long is closed.
    pub idle_timeout: Duration,
    /// The most client connections at once.
    pub max_connections: usize,
    /// The most client connections at once from one address.
    pub max_connections_per_client: usize,
    /// The most open CONNECT tunnels to allow-listed hosts.
    pub max_tunnels: usize,
    /// The share of `max_tunnels` one client address may hold.
    pub max_tunnels_per_client: usize,
    /// The most bytes of a request head (request line and headers).
    pub max_header_bytes: usize,
    /// The most header fields in a request.
    pub max_headers: usize,
    /// What a push that a content rule applies to holds back until it is decided.
    pub push_hold: PushHold,
}

impl Limits {
    /// The file descriptors these limits can take: each client connection and the
    /// upstream connection its request or tunnel holds, the idle upstream pool (git and
    /// API hosts), each held push's file (written and read), the admin listener's
    /// connections, and a reserve for listeners, logs and the runtime.
    pub fn descriptors_needed(&self) -> u64 {
        const RESERVE: u64 = 64;
        let pool = 2 * crate::upstream::MAX_IDLE_PER_HOST as u64;
        let held = 2 * self.max_held_pushes as u64;
        let admin = crate::admin::MAX_CONNECTIONS as u64;
        2 * self.max_connections as u64 + pool + held + admin + RESERVE
    }
}

/// What a push that a content rule applies to holds back until every rule has passed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushHold {
    /// The whole pack: nothing of it reaches GitHub before the decision.
    #[default]
    Pack,
    /// Only its trailing checksum: the pack goes upstream as it arrives, and a refusal
    /// breaks the upstream request, leaving GitHub a pack it cannot apply.
    Trailer,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            response_header_timeout: Duration::from_secs(600),
            body_idle_timeout: Duration::from_secs(120),
            max_push_header_bytes: 1 << 20,
            max_push_commands: 1000,
            max_drain_bytes: 2 << 30,
            max_held_push_bytes: 4 << 30,
            max_held_push_bytes_per_client: 2 << 30,
            max_held_pushes: 128,
            max_held_pushes_per_client: 16,
            max_push_check_bytes: 512 << 20,
            max_push_check_bytes_per_client: 128 << 20,
            max_buffered_body_bytes: 128 << 20,
            max_buffered_body_bytes_per_client: 16 << 20,
            shutdown_grace: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            max_connections: 4096,
            max_connections_per_client: 512,
            max_tunnels: 1024,
            max_tunnels_per_client: 256,
            max_header_bytes: 64 << 10,
            max_headers: 100,
            push_hold: PushHold::Pack,
        }
    }
}
