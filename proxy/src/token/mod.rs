//! Credentials for GitHub: where they come from, how they are cached, and the one
//! place they are turned into an `Authorization` header.

mod app;
mod cache;
mod device;
mod error;
mod jwt;
mod key;
#[cfg(feature = "aws-kms")]
mod kms;
mod rate;
mod sealed;
mod secret;
mod session_saver;
mod signer;
mod static_source;
mod user;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gitgate_policy::{Policies, Policy, RepoPath, TokenScope};
use http::HeaderValue;

pub use app::AppInfo;
pub use error::TokenError;
pub use key::{AppKey, KeyError};
#[cfg(feature = "aws-kms")]
pub use kms::KmsSigner;
use rate::RateBudget;
pub use sealed::{SavedSession, SessionFileError, SessionFiles, SessionKey, SessionStore};
pub use secret::Secret;
use secret::sensitive;
pub use signer::{CommandSigner, Signer};
pub use user::{LoginStatus, LogoutOutcome, UserConfig};

use app::AppClient;
use cache::{ScopeKey, TokenCache};
use static_source::StaticToken;
use user::UserSessions;

use crate::Settings;
use crate::audit::AuditLog;
use crate::metrics::Metrics;
use crate::upstream::Dialer;

/// The one profile there is until profiles exist.
pub const DEFAULT_PROFILE: &str = "default";

/// Where gitgate's GitHub credential comes from (`github.app` / `github.token` /
/// `github.user`).
#[derive(Debug)]
pub enum TokenConfig {
    /// No credential: requests go upstream without one (public repositories only).
    None,
    /// A token read from a file, re-read when the file changes.
    File(PathBuf),
    /// A token read from an environment variable at start.
    Env(String),
    /// Installation tokens minted from a GitHub App.
    App(Box<AppConfig>),
    /// A person's user-to-server token, from the device flow.
    User(UserConfig),
}

/// The GitHub App token source.
#[derive(Debug)]
pub struct AppConfig {
    /// App ID or Client ID (the JWT issuer).
    pub id: String,
    /// What signs the App's JWTs.
    pub signer: Signer,
    /// Installation ids by owner, overriding the lookup.
    pub installations: std::collections::BTreeMap<String, u64>,
    /// Tokens are refreshed when less than this remains.
    pub refresh_margin: Duration,
}

/// What a credential is for: git (and LFS) requests get the policy's narrow scope, API
/// calls that scope plus `policy.api`'s permissions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// git smart HTTP and Git LFS.
    Git,
    /// The REST and GraphQL API.
    Api,
}

/// A credential for one request, with what it is scoped to (for audit, never the token).
#[derive(Clone, Debug)]
pub(crate) struct Credential {
    secret: Secret,
    key: Option<ScopeKey>,
    user: Option<UserOf>,
}

/// Whose user token a credential is: the GitHub login, and the profile's session.
#[derive(Clone, Debug)]
struct UserOf {
    login: Arc<str>,
    profile: Arc<str>,
}

impl Credential {
    /// `Authorization` for git smart HTTP and LFS on the git host.
    pub(crate) fn basic(&self) -> HeaderValue {
        self.secret.basic()
    }

    /// `Authorization` for the REST API.
    pub(crate) fn bearer(&self) -> HeaderValue {
        sensitive(format!("Bearer {}", self.secret.expose()))
    }

    /// The installation and scope the token was minted for (installation tokens only).
    pub(crate) fn scope(&self) -> Option<(u64, &TokenScope)> {
        self.key.as_ref().map(|k| (k.installation, &k.scope))
    }

    /// The GitHub user a user token acts for.
    pub(crate) fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref().map(|u| &u.login)
    }
}

/// One owner's line in `gitgate doctor`.
#[derive(Debug, Clone)]
pub struct DoctorRow {
    /// The account.
    pub owner: String,
    /// Its installation.
    pub installation: u64,
    /// The scope a token was minted for.
    pub scope: TokenScope,
    /// When that token expires.
    pub expires_at: SystemTime,
}

enum Source {
    None,
    Static(StaticToken),
    App {
        client: Arc<AppClient>,
        cache: Arc<TokenCache>,
        installations: Installations,
        /// When GitHub last accepted the App's JWT for `/readyz`.
        accepted: std::sync::Mutex<Option<SystemTime>>,
    },
    User(UserSessions),
}

/// How long GitHub's acceptance of the App's JWT stands for `/readyz`, so that probes of
/// an idle gitgate do not each call GitHub.
const READY_FOR: Duration = Duration::from_secs(60);

/// gitgate's credential source.
pub struct Tokens {
    source: Source,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.source {
            Source::None => "none",
            Source::Static(_) => "static",
            Source::App { .. } => "app",
            Source::User(_) => "user",
        };
        f.debug_struct("Tokens").field("source", &kind).finish()
    }
}

impl Tokens {
    /// Builds the source for the GitHub named in `settings`.
    pub(crate) fn new(
        config: TokenConfig,
        settings: &Settings,
        dialer: &Dialer,
        metrics: Arc<Metrics>,
        audit: Option<AuditLog>,
    ) -> Result<Self, TokenError> {
        let api = settings.api_url.as_str();
        let client = || {
            api_client(dialer).map_err(|e| TokenError::Unreachable {
                host: api.to_owned(),
                detail: e.to_string(),
            })
        };
        let source = match config {
            TokenConfig::None => Source::None,
            TokenConfig::File(path) => Source::Static(StaticToken::from_file(path)),
            TokenConfig::Env(name) => Source::Static(StaticToken::from_env(&name)?),
            TokenConfig::App(app) => {
                let app = *app;
                let http = client()?;
                let client = Arc::new(AppClient::new(
                    app.id,
                    app.signer,
                    api,
                    http,
                    metrics.clone(),
                ));
                Source::App {
                    cache: Arc::new(TokenCache::new(client.clone(), app.refresh_margin, metrics)),
                    client,
                    installations: Installations::new(app.installations),
                    accepted: std::sync::Mutex::new(None),
                }
            }
            TokenConfig::User(user) => Source::User(UserSessions::new(
                user,
                settings.github_web(),
                api,
                client()?,
                audit,
            )),
        };
        Ok(Self { source })
    }

    /// Whether no credential is configured (requests go upstream without one).
    pub fn is_none(&self) -> bool {
        matches!(self.source, Source::None)
    }

    /// What kind of credential this is, for people.
    pub fn kind(&self) -> &'static str {
        match self.source {
            Source::None => "none",
            Source::Static(_) => "static token",
            Source::App { .. } => "GitHub App",
            Source::User(_) => "GitHub user (device flow)",
        }
    }

    /// Whether the credential is a person's (`github.user`), per profile.
    pub fn acts_for_people(&self) -> bool {
        matches!(self.source, Source::User(_))
    }

    /// The device-flow sessions, when `github.user` is configured.
    fn users(&self) -> Option<&UserSessions> {
        match &self.source {
            Source::User(users) => Some(users),
            _ => None,
        }
    }

    /// Starts a device-flow login for `profile` (or shows the one waiting); `None`
    /// without `github.user`.
    pub async fn login(&self, profile: &str) -> Option<Result<LoginStatus, TokenError>> {
        Some(self.users()?.session(profile).login().await)
    }

    /// Who is logged in for `profile`; `None` without `github.user`. Looking makes no
    /// session (the operator's overview of thousands of profiles costs nothing to keep).
    pub fn login_status(&self, profile: &str) -> Option<LoginStatus> {
        let users = self.users()?;
        Some(match users.existing(profile) {
            Some(session) => session.status(),
            None => LoginStatus::logged_out(profile),
        })
    }

    /// Forgets (and where possible revokes) `profile`'s user token; `None` without
    /// `github.user`.
    pub async fn logout(&self, profile: &str) -> Option<LogoutOutcome> {
        Some(self.users()?.session(profile).logout().await)
    }

    /// The credential for a request to `repo` under `policy` from a client of `profile`
    /// (`None` without profiles), or `None` without a source; an installation token is
    /// scoped for `purpose`, a user token is the profile's person's.
    pub(crate) async fn credential(
        &self,
        policy: &Policy,
        repo: &RepoPath,
        purpose: Purpose,
        profile: Option<&str>,
    ) -> Result<Option<Credential>, TokenError> {
        match &self.source {
            Source::None => Ok(None),
            Source::Static(source) => Ok(Some(Credential {
                secret: source.get().await?,
                key: None,
                user: None,
            })),
            Source::User(users) => {
                let session = users.session(profile.unwrap_or(DEFAULT_PROFILE));
                let (secret, login) = session.current()?;
                Ok(Some(Credential {
                    secret,
                    key: None,
                    user: Some(UserOf {
                        login,
                        profile: session.profile().clone(),
                    }),
                }))
            }
            Source::App {
                cache,
                client,
                installations,
                ..
            } => {
                let scope = match purpose {
                    Purpose::Git => policy.token_scope(repo.owner()),
                    Purpose::Api => policy.api_token_scope(repo.owner()),
                };
                let Some(scope) = scope else {
                    return Ok(None);
                };
                let narrow = scope.narrowed_to(repo.name());
                // Only owners a wildcard let the sandbox choose are held to the budget.
                let installs = (installations, Some(policy));
                let (key, minted) = match mint(client, cache, installs, repo, scope).await {
                    // One repository of the list may be gone or outside the installation:
                    // that must not cut the sandbox off from the others, so this one gets
                    // a token of its own (`gitgate doctor` still reports the list refused).
                    Err(TokenError::Refused { status: 422, .. }) if let Some(narrow) = narrow => {
                        tracing::warn!(
                            owner = repo.owner(),
                            %repo,
                            "GitHub refused a token for all of this owner's allowed repositories (is one deleted, renamed, or not in the App's installation? `gitgate doctor` says which list); using a token for this repository alone"
                        );
                        mint(client, cache, installs, repo, narrow).await?
                    }
                    result => result?,
                };
                Ok(Some(Credential {
                    secret: minted.secret,
                    key: Some(key),
                    user: None,
                }))
            }
        }
    }

    /// GitHub refused `credential`: do not use it again.
    pub(crate) fn reject(&self, credential: &Credential) {
        match (&self.source, &credential.key) {
            (Source::App { cache, .. }, Some(key)) => cache.invalidate(key, &credential.secret),
            (Source::User(users), _) => {
                if let Some(session) = credential
                    .user
                    .as_ref()
                    .and_then(|u| users.existing(&u.profile))
                {
                    session.reject(&credential.secret);
                }
            }
            _ => {}
        }
    }

    /// The policies changed: drop tokens whose scope none of them asks for any more, and
    /// user sessions of profiles gone (kept aside only for the `unloaded` profiles, whose
    /// file is there but did not load).
    pub fn policies_changed(&self, policies: &Policies, unloaded: &[String]) {
        if let Source::User(users) = &self.source {
            users.retain(
                |profile| has_profile(policies, profile),
                |profile| listed(unloaded, profile),
            );
        }
        if let Source::App { cache, .. } = &self.source {
            // Each owner's wanted scopes are computed once, not once per cached token.
            let mut wanted: HashMap<String, HashSet<TokenScope>> = HashMap::new();
            cache.retain(|key| {
                let scopes = wanted.entry(key.owner.clone()).or_insert_with(|| {
                    policies
                        .all()
                        .flat_map(|policy| policy.token_scopes(&key.owner))
                        .collect()
                });
                // A token for one repository of a wanted list (GitHub refused the whole
                // list) is still wanted.
                scopes.contains(&key.scope)
                    || key.scope.repositories.as_deref().is_some_and(|only| {
                        only.len() == 1
                            && scopes
                                .iter()
                                .any(|s| s.narrowed_to(&only[0]).as_ref() == Some(&key.scope))
                    })
            });
        }
    }

    /// Takes back the user sessions sealed in `github.user.sessionFile` (for the profiles
    /// `policies` has; those of `unloaded` profiles, whose file did not load, are kept
    /// aside) and keeps the file current. Only for the running proxy.
    pub(crate) fn restore_sessions(
        &self,
        policies: &Policies,
        unloaded: &[String],
    ) -> Result<(), SessionFileError> {
        match &self.source {
            Source::User(users) => users.restore(
                |profile| has_profile(policies, profile),
                |profile| listed(unloaded, profile),
            ),
            _ => Ok(()),
        }
    }

    /// Stops starting renewals and waits (a few seconds at most) for those under way, so
    /// that [`Tokens::save_sessions`] seals the newest refresh tokens (at shutdown).
    pub async fn settle_sessions(&self) {
        if let Source::User(users) = &self.source {
            users.settle().await;
        }
    }

    /// Seals the user sessions to `github.user.sessionFile` now (at shutdown: a renewal
    /// that just happened must not be lost); how many it holds.
    pub async fn save_sessions(&self) -> Result<usize, SessionFileError> {
        match &self.source {
            Source::User(users) => users.save().await,
            _ => Ok(0),
        }
    }

    /// Whether requests can get a credential now: a usable token is cached, or GitHub
    /// accepts the App's JWT; for a static source, the token can be read.
    pub(crate) async fn readiness(&self) -> Result<(), TokenError> {
        match &self.source {
            // Serving does not wait for a person to log in; `/login` says who is.
            Source::None | Source::User(_) => Ok(()),
            Source::Static(source) => source.get().await.map(drop),
            Source::App {
                client,
                cache,
                accepted,
                ..
            } => {
                let now = SystemTime::now();
                let accepted_lately = || {
                    let at = *accepted.lock().unwrap_or_else(|p| p.into_inner());
                    at.and_then(|at| now.duration_since(at).ok())
                        .is_some_and(|ago| ago < READY_FOR)
                };
                if cache.any_usable(now) || accepted_lately() {
                    return Ok(());
                }
                client.app().await?;
                *accepted.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
                Ok(())
            }
        }
    }

    /// When the soonest cached installation token that is still live expires.
    pub fn soonest_expiry(&self) -> Option<SystemTime> {
        match &self.source {
            Source::App { cache, .. } => cache.soonest_expiry(SystemTime::now()),
            Source::User(users) => users.expiry(),
            _ => None,
        }
    }

    /// `gitgate doctor`: checks the JWT, then resolves and mints for each `(owner, repo)`.
    /// Stops at the first failure.
    pub async fn doctor(
        &self,
        policy: &Policy,
        repos: &[RepoPath],
    ) -> Result<(Option<AppInfo>, Vec<DoctorRow>), TokenError> {
        let Source::App {
            client,
            cache,
            installations,
            ..
        } = &self.source
        else {
            if let Source::Static(source) = &self.source {
                source.get().await?;
            }
            return Ok((None, Vec::new()));
        };
        let app = client.app().await?;
        let mut rows = Vec::new();
        for repo in repos {
            for scope in policy.token_scopes(repo.owner()) {
                let installs = (installations, None);
                let (key, minted) = mint(client, cache, installs, repo, scope).await?;
                rows.push(DoctorRow {
                    owner: key.owner,
                    installation: key.installation,
                    scope: key.scope,
                    expires_at: minted.expires_at,
                });
            }
        }
        Ok((Some(app), rows))
    }
}

/// Whether `name` is one of `names`.
fn listed(names: &[String], name: &str) -> bool {
    names.iter().any(|n| n == name)
}

/// Whether `profile` is one `policies` knows (`default` without profiles).
fn has_profile(policies: &Policies, profile: &str) -> bool {
    match policies {
        Policies::Single(_) => profile == DEFAULT_PROFILE,
        Policies::Profiles(set) => set.get(profile).is_some(),
    }
}

/// A token for `scope` on `repo`'s installation. When GitHub no longer knows a looked-up
/// installation (404: the App was uninstalled or reinstalled), the installation is looked
/// up again once, so the request gets a token from the new one. A lookup of an owner
/// `named_by` does not name is held to the [`LOOKUPS_PER_MINUTE`] budget (`None`: none
/// is).
async fn mint(
    client: &AppClient,
    cache: &Arc<TokenCache>,
    (installations, named_by): (&Installations, Option<&Policy>),
    repo: &RepoPath,
    scope: TokenScope,
) -> Result<(ScopeKey, app::Minted), TokenError> {
    let owner = repo.owner().to_owned();
    let (installation, looked_up) = installations.get(client, repo, named_by).await?;
    let key = ScopeKey {
        owner,
        installation,
        scope,
    };
    match cache.get(&key).await {
        Err(TokenError::Refused { status: 404, .. }) if looked_up => {
            installations.forget(&key.owner, installation);
            let (installation, _) = installations.get(client, repo, named_by).await?;
            let key = ScopeKey {
                installation,
                ..key
            };
            let minted = cache.get(&key).await?;
            Ok((key, minted))
        }
        result => result.map(|minted| (key, minted)),
    }
}

/// Installation ids by owner: configured, or looked up (again when GitHub no longer knows
/// one), and recent failed lookups.
struct Installations {
    configured: HashMap<String, u64>,
    lookups: std::sync::Mutex<Lookups>,
}

struct Lookups {
    known: HashMap<String, u64>,
    /// Failed lookups, each until its backoff ends on the monotonic clock.
    failed: HashMap<String, (TokenError, Instant)>,
    /// One lookup at a time per owner, held across its API calls; other owners, and
    /// owners already known, never wait for it.
    running: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    budget: RateBudget,
}

/// A failed installation lookup is not repeated for this long (each lookup costs up to
/// three API calls).
const LOOKUP_BACKOFF: Duration = Duration::from_secs(30);

/// The most installation lookups a minute of owners only a wildcard allows. Each spends
/// up to three calls of the App's own rate limit, which every token mint needs, and an
/// owner wildcard in `allowedRepos` (`*/tools`) lets a sandbox name as many owners as it
/// likes. Owners a policy names, and owners already known or configured, are never held
/// back.
const LOOKUPS_PER_MINUTE: u32 = 30;

impl Installations {
    fn new(configured: std::collections::BTreeMap<String, u64>) -> Self {
        Self {
            configured: configured
                .into_iter()
                .map(|(owner, id)| (owner.to_ascii_lowercase(), id))
                .collect(),
            lookups: std::sync::Mutex::new(Lookups {
                known: HashMap::new(),
                failed: HashMap::new(),
                running: HashMap::new(),
                budget: RateBudget::new(
                    LOOKUPS_PER_MINUTE,
                    Duration::from_secs(60),
                    Instant::now(),
                ),
            }),
        }
    }

    fn lookups(&self) -> std::sync::MutexGuard<'_, Lookups> {
        self.lookups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A looked-up id, or a failed lookup still backing off.
    fn cached(&self, owner: &str, now: Instant) -> Option<Result<u64, TokenError>> {
        let lookups = self.lookups();
        if let Some(id) = lookups.known.get(owner) {
            return Some(Ok(*id));
        }
        lookups
            .failed
            .get(owner)
            .filter(|(_, until)| now < *until)
            .map(|(error, _)| Err(error.clone()))
    }

    /// The installation for `repo.owner`, and whether it was looked up (not configured);
    /// a lookup of an owner `named_by` does not name is held to the budget.
    async fn get(
        &self,
        client: &AppClient,
        repo: &RepoPath,
        named_by: Option<&Policy>,
    ) -> Result<(u64, bool), TokenError> {
        let owner = repo.owner();
        if let Some(id) = self.configured.get(owner) {
            return Ok((*id, false));
        }
        if let Some(hit) = self.cached(owner, Instant::now()) {
            return hit.map(|id| (id, true));
        }
        let turn = self
            .lookups()
            .running
            .entry(owner.to_owned())
            .or_default()
            .clone();
        let _turn = turn.lock().await;
        // Another request may have finished the lookup while this one waited.
        if let Some(hit) = self.cached(owner, Instant::now()) {
            return hit.map(|id| (id, true));
        }
        // Let go of the owner's entry however this ends, even when the request is dropped
        // mid-lookup (a sandbox trying many owners must not grow the map).
        let _running = Running {
            installations: self,
            owner,
        };
        let budgeted = named_by.is_some_and(|policy| !policy.names_owner(owner));
        if budgeted && !self.lookups().budget.take(Instant::now()) {
            return Err(TokenError::Throttled(format!(
                "gitgate has looked up the GitHub App installations of {LOOKUPS_PER_MINUTE} accounts in the last minute, its most (each lookup spends the App's own rate limit, which every token needs); the installation for {owner} is not known yet: retry in a minute, or name it in github.app.installations"
            )));
        }
        let result = client.installation(owner, repo.name()).await;
        let now = Instant::now();
        let mut lookups = self.lookups();
        match &result {
            Ok(id) => {
                tracing::info!(%owner, installation = id, "resolved GitHub App installation");
                lookups.failed.remove(owner);
                lookups.known.insert(owner.to_owned(), *id);
            }
            Err(error) => {
                lookups.failed.retain(|_, (_, until)| now < *until);
                lookups
                    .failed
                    .insert(owner.to_owned(), (error.clone(), now + LOOKUP_BACKOFF));
            }
        }
        result.map(|id| (id, true))
    }
}

/// An owner's lookup in progress; its entry in [`Lookups::running`] goes with it.
struct Running<'a> {
    installations: &'a Installations,
    owner: &'a str,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.installations.lookups().running.remove(self.owner);
    }
}

impl Installations {
    /// GitHub no longer knows installation `id` of `owner` (the App was uninstalled or
    /// reinstalled): look it up again next time.
    fn forget(&self, owner: &str, id: u64) {
        let mut lookups = self.lookups();
        if lookups.known.get(owner) == Some(&id) {
            tracing::info!(%owner, installation = id, "GitHub no longer knows this installation; looking it up again");
            lookups.known.remove(owner);
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// The HTTP client for the GitHub API: the same verified TLS and `upstream.resolve`
/// overrides as every other upstream connection, no proxy, no redirects.
pub(crate) fn api_client(dialer: &Dialer) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls((*dialer.tls_config()).clone())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("gitgate/", env!("CARGO_PKG_VERSION")));
    for (host, addr) in dialer.overrides() {
        builder = builder.resolve(host, *addr);
    }
    builder.build()
}
