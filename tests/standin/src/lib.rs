//! A local stand-in for GitHub, for gitgate's tests and demo.
//!
//! [`StandIn::start`] serves HTTPS on `127.0.0.1:<ephemeral>` with a certificate from a test
//! CA it generates ([`StandIn::ca_file`]), routing by `Host`:
//!
//! - `github.com`: git smart HTTP through the real `git http-backend`, behind GitHub-style
//!   installation-token auth (`Authorization: Basic base64("x-access-token:" + token)`);
//! - `api.github.com`: the GitHub App endpoints (App JWT verified with RS256), which mint the
//!   tokens the git side accepts; REST routes for pull requests, comments, refs, contents,
//!   merges, branch renames and releases; and `POST /graphql`, a small schema executed for
//!   real (repository, node, pull requests, refs, commits); each authorized by the token's
//!   repositories and permissions as GitHub does;
//! - `github.com/api/v3/…`, `github.com/api/graphql`: the same API as GitHub Enterprise
//!   Server lays it out;
//! - `lfs-storage.test`: LFS object storage behind signed, expiring batch-action URLs;
//! - `tunnel.test`, `other.test`: `hello from <host>\n`.
//!
//! Every request is recorded ([`StandIn::requests`]), every token mint too
//! ([`StandIn::mints`]). Faults can be switched on at run time ([`StandIn::set_fault`]).
//!
//! ```no_run
//! let standin = gitgate_standin::StandIn::start(Default::default())?;
//! let mint = standin.issue_token(1001, Some(&["app"]), Some(&[("contents", "read")]))?;
//! let header = gitgate_standin::basic_auth(&mint.token);
//! // git -c http.sslCAInfo=<ca_file> -c "http.extraHeader=Authorization: <header>"
//! //     -c http.curloptResolve=github.com:<port>:127.0.0.1 clone <standin.git_url("acme", "app")>
//! # let _ = header;
//! # anyhow::Ok(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod cgi;
mod git;
mod gitops;
mod graphql;
mod hub;
mod lfs;

pub use hub::{Pull, PullState};
pub use lfs::STORAGE_HOST as LFS_STORAGE_HOST;
mod jwt;
mod oauth;
mod record;
mod repo_api;
mod repos;
mod rest;
mod server;
mod tls;
mod tokens;
mod users;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use ring::signature::{KeyPair as _, RsaKeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{PrivatePkcs1KeyDer, PrivatePkcs8KeyDer};
use tokio::sync::{Semaphore, watch};

pub use record::RecordedRequest;
pub use tokens::{AccountType, Installation, Mint, Selection};
pub use users::UserEvent;

use server::Shared;
use tokens::{MintRequest, TokenStore, perms};
use users::{DeviceSettings, UserStore};

/// Default App id (`iss` of the JWT, `GET /app` → `id`).
pub const DEFAULT_APP_ID: &str = "123456";
/// Default installation access token lifetime, as on GitHub.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The OAuth client id of the App (device flow), default.
pub const DEFAULT_CLIENT_ID: &str = "Iv1.gitgatetest0001";
/// The App's client secret (token revocation), default.
pub const DEFAULT_CLIENT_SECRET: &str = "gitgate-test-client-secret";

/// How to start a [`StandIn`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The App id JWTs must carry as `iss` (default [`DEFAULT_APP_ID`]).
    pub app_id: String,
    /// The App's installations (default: [`default_installations`]).
    pub installations: Vec<Installation>,
    /// Lifetime of minted tokens (default one hour).
    pub token_lifetime: Duration,
    /// Verify JWTs against this DER `RSAPublicKey` (PKCS#1) instead of the generated key,
    /// for an external signer. The generated key files are still written.
    pub app_public_key_der: Option<Vec<u8>>,
    /// Create (and seed) every repository listed by the installations (default true).
    pub seed_repos: bool,
    /// The App's OAuth client id (default [`DEFAULT_CLIENT_ID`]).
    pub client_id: String,
    /// The App's client secret (default [`DEFAULT_CLIENT_SECRET`]).
    pub client_secret: String,
    /// How long a device code waits for a person (default 900 s, as on GitHub).
    pub device_code_lifetime: Duration,
    /// The polling interval handed out with a device code (default 5 s, as on GitHub).
    pub device_interval: Duration,
    /// What `slow_down` adds to the interval (default 5 s, as on GitHub).
    pub slow_down_step: Duration,
    /// Lifetime of user access tokens (default 8 h, as on GitHub).
    pub user_token_lifetime: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            app_id: DEFAULT_APP_ID.to_owned(),
            installations: default_installations(),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            app_public_key_der: None,
            seed_repos: true,
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            client_secret: DEFAULT_CLIENT_SECRET.to_owned(),
            device_code_lifetime: Duration::from_secs(900),
            device_interval: Duration::from_secs(5),
            slow_down_step: Duration::from_secs(5),
            user_token_lifetime: Duration::from_secs(8 * 3600),
        }
    }
}

/// Installation 1001 on org `acme` (selected: `app`, `lib-core`, `secret`) and 2002 on user
/// `bob` (all repositories; `tools` seeded); both with the permissions of
/// [`Installation::new`].
pub fn default_installations() -> Vec<Installation> {
    vec![
        Installation::new(
            1001,
            "acme",
            AccountType::Organization,
            Selection::Selected,
            &["app", "lib-core", "secret"],
        ),
        Installation::new(2002, "bob", AccountType::User, Selection::All, &["tools"]),
    ]
}

/// A failure switched on with [`StandIn::set_fault`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// `POST /app/installations/{id}/access_tokens` answers `status` with `body` (as JSON
    /// content type), before any JWT check.
    TokenEndpoint {
        /// HTTP status.
        status: u16,
        /// Response body, verbatim.
        body: String,
    },
    /// Every `api.github.com` request answers `503` with a GitHub-style JSON error.
    ApiUnavailable,
    /// `github.com` requests hang (no response) until the fault is changed.
    GitStall,
    /// Only receive-pack POSTs hang until the fault is changed (advertisements pass).
    PushStall,
    /// Only upload-pack POSTs hang until the fault is changed (advertisements pass).
    FetchStall,
    /// Only POSTs whose last path segment is `rpc` (`git-receive-pack`,
    /// `git-upload-pack`) answer `status` with `body` as `text/plain`, unread.
    RpcError {
        /// The endpoint.
        rpc: String,
        /// HTTP status.
        status: u16,
        /// Response body, verbatim.
        body: String,
    },
    /// Only POSTs whose last path segment is `rpc`: the request body is read, then a 200
    /// of `content_type` carries `bytes` and breaks off.
    RpcCutOff {
        /// The endpoint.
        rpc: String,
        /// The answer's content type.
        content_type: String,
        /// What the answer carries before it breaks.
        bytes: Vec<u8>,
    },
    /// The App's installation lookups for `owner` (`GET /repos/{owner}/…/installation`,
    /// `/orgs/{owner}/installation`, `/users/{owner}/installation`) hang until the fault
    /// is changed.
    LookupStall {
        /// The account whose lookups hang.
        owner: String,
    },
    /// Every `github.com` request gets `302 Found` to `location`.
    GitRedirect {
        /// The `Location` header.
        location: String,
    },
    /// Every `github.com` request gets a 200 promising 1000 bytes that breaks after 10.
    GitCutOff,
    /// Every `github.com` request answers `status` with `body` as `text/plain`.
    GitError {
        /// HTTP status.
        status: u16,
        /// Response body, verbatim.
        body: String,
    },
}

/// `base64("x-access-token:")`: every git `Basic` credential value starts with it (the
/// 15 bytes are five whole base64 groups).
pub const BASIC_PREFIX: &str = "eC1hY2Nlc3MtdG9rZW46";

/// `Basic base64("x-access-token:" + token)`, the value of an `Authorization` header for git.
pub fn basic_auth(token: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    format!("Basic {encoded}")
}

/// A running stand-in. Dropping it stops the server, kills CGI children and deletes its files.
pub struct StandIn {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_file: PathBuf,
    ca_pem: String,
    key_pkcs1: PathBuf,
    key_pkcs8: PathBuf,
    thread: Option<JoinHandle<()>>,
    // Dropped last (after the thread is joined): removes everything on disk.
    dir: Option<tempfile::TempDir>,
}

// Tests may share one stand-in across threads.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<StandIn>();
};

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("addr", &self.addr)
            .field("root", &self.root())
            .finish_non_exhaustive()
    }
}

impl StandIn {
    /// Generates the CA and App key, seeds the repositories, and starts serving; returns once
    /// the listener is bound and the server runs.
    pub fn start(config: Config) -> anyhow::Result<Self> {
        ensure!(!config.app_id.is_empty(), "app_id must not be empty");
        let dir = tempfile::Builder::new()
            .prefix("gitgate-standin-")
            .tempdir()
            .context("creating the stand-in's temp dir")?;
        let root = dir.path();
        let (repos, home) = (root.join("repos"), root.join("home"));
        std::fs::create_dir_all(&repos)?;
        std::fs::create_dir_all(&home)?;

        let tls = tls::generate()?;
        let ca_file = root.join("ca.pem");
        std::fs::write(&ca_file, &tls.ca_pem)?;

        let (key_pkcs1, key_pkcs8) = (
            root.join("app-key.pkcs1.pem"),
            root.join("app-key.pkcs8.pem"),
        );
        let generated_public = generate_app_key(&key_pkcs1, &key_pkcs8)?;
        let app_public_key = config
            .app_public_key_der
            .clone()
            .unwrap_or(generated_public);

        if config.seed_repos {
            for inst in &config.installations {
                for name in &inst.repositories {
                    repos::create(&repos, &home, &inst.account, name, false)?;
                }
            }
        }

        let shared = Arc::new(Shared {
            repos,
            home,
            app_id: config.app_id,
            app_public_key,
            recorder: Default::default(),
            tokens: Mutex::new(TokenStore::new(config.installations, config.token_lifetime)),
            users: Mutex::new(UserStore::new(DeviceSettings {
                client_id: config.client_id,
                client_secret: config.client_secret,
                code_lifetime: config.device_code_lifetime,
                interval: config.device_interval,
                slow_down_step: config.slow_down_step,
                user_token_lifetime: config.user_token_lifetime,
                refresh_token_lifetime: Duration::from_secs(15_811_200),
            })),
            fault: watch::Sender::new(None),
            shutdown: watch::Sender::new(false),
            children: watch::Sender::new(0),
            cgi_slots: Arc::new(Semaphore::new(server::MAX_CGI)),
            api_calls: AtomicU64::new(0),
            pulls: Mutex::new(Vec::new()),
            releases: Mutex::new(Vec::new()),
            lfs_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &api::random_bytes::<32>()),
        });

        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("binding")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server);
        let (ready_tx, ready_rx) = mpsc::sync_channel::<anyhow::Result<()>>(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("gitgate-standin".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("gitgate-standin-rt")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.into()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    server::serve(listener, acceptor, thread_shared).await;
                });
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .context("spawning the server thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e.context("starting the server")),
            Err(_) => bail!("the server thread died while starting"),
        }

        Ok(Self {
            shared,
            addr,
            ca_file,
            ca_pem: tls.ca_pem,
            key_pkcs1,
            key_pkcs8,
            thread: Some(thread),
            dir: Some(dir),
        })
    }

    /// Where the server listens (`127.0.0.1:<port>`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `https://github.com:<port>/<owner>/<name>.git`; reach it with
    /// `http.curloptResolve=github.com:<port>:127.0.0.1`.
    pub fn git_url(&self, owner: &str, name: &str) -> String {
        format!("https://github.com:{}/{owner}/{name}.git", self.port())
    }

    /// PEM file of the test CA that signed the server certificate.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The test CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The stand-in's temp dir (`repos/`, `home/`, `ca.pem`, the App keys).
    pub fn root(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// The App id JWTs must name as `iss`.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// The App private key, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), mode 0600.
    pub fn app_key_pkcs1_file(&self) -> &Path {
        &self.key_pkcs1
    }

    /// The same App private key, PKCS#8 PEM (`BEGIN PRIVATE KEY`), mode 0600.
    pub fn app_key_pkcs8_file(&self) -> &Path {
        &self.key_pkcs8
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorder.snapshot()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.shared.recorder.clear();
    }

    /// Every token minted so far, in order.
    pub fn mints(&self) -> Vec<Mint> {
        self.shared.tokens().mints().to_vec()
    }

    /// Forgets the mint log (the tokens stay valid).
    pub fn clear_mints(&self) {
        self.shared.tokens().clear_mints();
    }

    /// Every token handed out so far: installation tokens, user tokens and refresh tokens
    /// (to scan output for leaks).
    pub fn tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> = self
            .shared
            .tokens()
            .mints()
            .iter()
            .map(|m| m.token.clone())
            .collect();
        for event in self.shared.users().events() {
            tokens.push(event.access_token.clone());
            tokens.extend(event.refresh_token.clone());
        }
        tokens
    }

    /// Every text form of a credential gitgate holds: each token raw and as the base64 in
    /// git's `Basic` value, the base64 of `x-access-token:` that starts every such value,
    /// and each credential presented to the GitHub hosts (App JWTs, user tokens). Output
    /// that contains none of them leaked none.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![BASIC_PREFIX.to_owned()];
        for token in self.tokens() {
            secrets.push(basic_auth(&token)["Basic ".len()..].to_owned());
            secrets.push(token);
        }
        for request in self.requests() {
            if request.host != "github.com" && request.host != "api.github.com" {
                continue;
            }
            if let Some((_, credential)) = request
                .header("authorization")
                .and_then(|v| v.split_once(' '))
            {
                secrets.push(credential.trim().to_owned());
            }
        }
        secrets.sort();
        secrets.dedup();
        secrets
    }

    /// Uninstalls the App from `account` and installs it again as installation `id`: the
    /// old installation's tokens stop working and its id is unknown from then on.
    pub fn reinstall(&self, account: &str, id: u64) -> bool {
        self.shared.tokens().reinstall(account, id)
    }

    /// The configured installations.
    pub fn installations(&self) -> Vec<Installation> {
        self.shared.tokens().installations().to_vec()
    }

    /// Mints a token directly, with the API's rules (`None` = omitted); recorded in
    /// [`mints`](Self::mints) like an API mint.
    pub fn issue_token(
        &self,
        installation_id: u64,
        repositories: Option<&[&str]>,
        permissions: Option<&[(&str, &str)]>,
    ) -> anyhow::Result<Mint> {
        let req = MintRequest {
            repositories: repositories.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            permissions: permissions.map(perms),
        };
        Ok(api::mint(&self.shared, installation_id, req)?.mint)
    }

    /// The App's OAuth client id (for `github.user.clientId`).
    pub fn client_id(&self) -> String {
        self.shared.users().settings().client_id.clone()
    }

    /// The App's client secret.
    pub fn client_secret(&self) -> String {
        self.shared.users().settings().client_secret.clone()
    }

    /// A person enters `user_code` at GitHub and approves it as `login`; false if no
    /// device code waits under that user code.
    pub fn approve_device(&self, user_code: &str, login: &str) -> bool {
        self.shared.users().decide(user_code, Some(login))
    }

    /// A person enters `user_code` and cancels (the poll then gets `access_denied`).
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.shared.users().decide(user_code, None)
    }

    /// The next `n` device-code polls get `slow_down`, however well timed.
    pub fn slow_down_next(&self, n: u32) {
        self.shared.users().force_slow_downs(n);
    }

    /// Every OAuth error answered so far (`authorization_pending`, `slow_down`, ...), in order.
    pub fn oauth_errors(&self) -> Vec<&'static str> {
        self.shared.users().errors().to_vec()
    }

    /// How long device codes handed out from now on wait for a person.
    pub fn set_device_code_lifetime(&self, lifetime: Duration) {
        self.shared.users().set_code_lifetime(lifetime);
    }

    /// Revokes a user token (and its refresh token), as the person or an admin can at
    /// GitHub; false if it was not live.
    pub fn revoke_user_token(&self, token: &str) -> bool {
        self.shared.users().revoke(token)
    }

    /// Lifetime of user tokens issued from now on.
    pub fn set_user_token_lifetime(&self, lifetime: Duration) {
        self.shared.users().set_user_token_lifetime(lifetime);
    }

    /// Every user token grant, refresh and revocation so far, in order.
    pub fn user_events(&self) -> Vec<UserEvent> {
        self.shared.users().events().to_vec()
    }

    /// Whether `token` is a live user token (issued, not expired, not rotated or revoked).
    pub fn user_token_live(&self, token: &str) -> bool {
        self.shared
            .users()
            .user(token, std::time::SystemTime::now())
            .is_some()
    }

    /// Switches a fault on (`Some`) or off (`None`); takes effect for the next request.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.shared.fault.send_replace(fault);
    }

    /// Lifetime of tokens minted from now on (`Duration::ZERO` mints already-expired tokens).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.tokens().set_lifetime(lifetime);
    }

    /// Creates `owner/name` as a bare repo with one commit (`README.md`) on `main`.
    pub fn create_repo(&self, owner: &str, name: &str) -> anyhow::Result<PathBuf> {
        repos::create(&self.shared.repos, &self.shared.home, owner, name, false)
    }

    /// Like [`create_repo`](Self::create_repo), with `--object-format=sha256`.
    pub fn create_repo_sha256(&self, owner: &str, name: &str) -> anyhow::Result<PathBuf> {
        repos::create(&self.shared.repos, &self.shared.home, owner, name, true)
    }

    /// `<root>/repos/<owner>/<name>.git` (lowercased); it may not exist.
    pub fn repo_dir(&self, owner: &str, name: &str) -> PathBuf {
        repos::repo_dir(&self.shared.repos, owner, name)
    }

    /// `git rev-parse --verify -q <refname>` in the bare repo; `None` if it does not resolve.
    pub fn rev_parse(&self, owner: &str, name: &str, refname: &str) -> Option<String> {
        repos::rev_parse(&self.shared.home, &self.repo_dir(owner, name), refname)
    }

    /// Points `refname` of `owner/name` at `target` (a commit or ref), as a push would.
    pub fn update_ref(
        &self,
        owner: &str,
        name: &str,
        refname: &str,
        target: &str,
    ) -> anyhow::Result<()> {
        let dir = self.repo_dir(owner, name);
        let repo = self.shared.repo(&dir);
        let sha = repo
            .resolve(target)
            .with_context(|| format!("{target} does not resolve"))?;
        repo.update_ref(refname, &sha, None)
    }

    /// The LFS object `oid` stored for `owner/name`, if it was uploaded.
    pub fn lfs_object(&self, owner: &str, name: &str, oid: &str) -> Option<Vec<u8>> {
        std::fs::read(lfs::object_path(&self.shared, owner, name, oid)).ok()
    }

    /// Pull requests opened through the API, in order.
    pub fn pull_requests(&self) -> Vec<Pull> {
        self.shared.pulls().clone()
    }

    /// Stops the server, kills CGI children and deletes the temp dir (as dropping does).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.send_replace(true);
        // Lift a stall so stalled handlers do not outlive the server.
        self.shared.fault.send_replace(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Generates an RSA 2048 App key with `openssl` in PKCS#1 and PKCS#8 PEM (mode 0600), checks
/// both hold the same key, and returns its DER `RSAPublicKey`.
fn generate_app_key(pkcs1: &Path, pkcs8: &Path) -> anyhow::Result<Vec<u8>> {
    let openssl = |args: &[&std::ffi::OsStr]| -> anyhow::Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .context("running openssl")?;
        ensure!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    };
    openssl(&[
        "genrsa".as_ref(),
        "-traditional".as_ref(),
        "-out".as_ref(),
        pkcs1.as_os_str(),
        "2048".as_ref(),
    ])?;
    openssl(&[
        "pkcs8".as_ref(),
        "-topk8".as_ref(),
        "-nocrypt".as_ref(),
        "-in".as_ref(),
        pkcs1.as_os_str(),
        "-out".as_ref(),
        pkcs8.as_os_str(),
    ])?;
    for file in [pkcs1, pkcs8] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
    }
    let from8 = PrivatePkcs8KeyDer::from_pem_file(pkcs8).context("reading the PKCS#8 key")?;
    let from1 = PrivatePkcs1KeyDer::from_pem_file(pkcs1).context("reading the PKCS#1 key")?;
    let key8 = RsaKeyPair::from_pkcs8(from8.secret_pkcs8_der())
        .map_err(|e| anyhow::anyhow!("PKCS#8 App key rejected: {e}"))?;
    let key1 = RsaKeyPair::from_der(from1.secret_pkcs1_der())
        .map_err(|e| anyhow::anyhow!("PKCS#1 App key rejected: {e}"))?;
    let public = key8.public_key().as_ref().to_vec();
    ensure!(
        public == key1.public_key().as_ref(),
        "PKCS#1 and PKCS#8 keys differ"
    );
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_basic_credential_starts_with_the_prefix() {
        for token in ["t", "ghs_abc", "x"] {
            assert!(basic_auth(token).starts_with(&format!("Basic {BASIC_PREFIX}")));
        }
    }
}
