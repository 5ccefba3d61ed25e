//! Acting for a person: a user-to-server token from the GitHub device flow, kept in
//! memory (and, with `github.user.sessionFile`, sealed to a file that a restart reads
//! back), renewed with its refresh token before it expires, revoked on logout.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::device::{DeviceCode, Grant, Step, TokenReply};
use super::rate::RateBudget;
use super::sealed::{Saved, SessionFileError, SessionFiles};
use super::session_saver::{Persistence, Sessions};
use super::{Secret, TokenError};
use crate::audit::{self, AuditLog};

/// `github.user`: the App's OAuth client.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// The App's Client ID (`Iv1.…` / `Iv23…`).
    pub client_id: String,
    /// The App's client secret, used only to revoke the token on logout.
    pub client_secret: Option<Secret>,
    /// Renew the token when less than this remains.
    pub refresh_margin: Duration,
    /// Where the sessions are sealed so that they survive a restart (`sessionFile`).
    pub sessions: Option<SessionFiles>,
}

/// A failed renewal is retried after this long, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// Who is logged in, what is waiting, and what went wrong: the `/login` answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginStatus {
    /// The profile whose session this is (`default` without profiles).
    pub profile: String,
    /// `loggedIn`, `pending` or `loggedOut`.
    pub state: &'static str,
    /// The GitHub user the token acts for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// Logged in, but the token is not usable now and gitgate is renewing it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub renewing: bool,
    /// When the current token expires (RFC 3339); renewed before then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When the session can no longer be renewed (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<String>,
    /// Where the person enters the code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_uri: Option<String>,
    /// The code to enter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_code: Option<String>,
    /// When the code stops being accepted (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_expires_at: Option<String>,
    /// Why the last login or renewal failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl LoginStatus {
    /// A profile nobody has logged in for yet.
    pub(crate) fn logged_out(profile: &str) -> Self {
        Self {
            profile: profile.to_owned(),
            state: "loggedOut",
            login: None,
            renewing: false,
            expires_at: None,
            refresh_expires_at: None,
            verification_uri: None,
            user_code: None,
            code_expires_at: None,
            last_error: None,
        }
    }
}

/// What logout did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LogoutOutcome {
    /// The profile.
    pub profile: String,
    /// Who was logged in, if anyone.
    pub login: Option<String>,
    /// Whether GitHub revoked the token (needs `github.user.clientSecretFile`).
    pub revoked: bool,
    /// One sentence for the person.
    pub message: String,
}

/// A device code a person has yet to enter.
#[derive(Clone)]
struct Waiting {
    code: DeviceCode,
    expires_at: SystemTime,
}

struct Session {
    login: String,
    grant: Grant,
    /// GitHub refused this token (revoked?): not sent again until renewed.
    refused: bool,
}

impl Session {
    fn usable(&self, now: SystemTime) -> bool {
        !self.refused && self.grant.usable(now)
    }
}

#[derive(Default)]
struct Inner {
    session: Option<Session>,
    waiting: Option<Waiting>,
    last_error: Option<String>,
    /// Bumped to stop the polling task of a superseded login.
    flow: u64,
    /// Bumped to stop the renewal task of a forgotten session.
    epoch: u64,
    /// The profile is gone (a reload removed it): nothing starts again.
    forgotten: bool,
    /// New device codes asked of GitHub ([`CODES_PER_PERIOD`]).
    codes: Option<RateBudget>,
    /// The last request for a device code failed, when and why: logins that waited on it
    /// get the same answer for [`START_RETRY`] rather than each asking again.
    start_failed: Option<(std::time::Instant, TokenError)>,
}

/// One person's session per profile (a single `default` one without profiles), each
/// logged in, renewed and logged out on its own.
pub(crate) struct UserSessions {
    config: UserConfig,
    web: String,
    api: String,
    http: reqwest::Client,
    audit: Option<AuditLog>,
    sessions: Sessions,
    /// The session file, once `gitgate run` has taken it back ([`UserSessions::restore`]).
    persistence: Arc<Persistence>,
}

impl UserSessions {
    pub(crate) fn new(
        config: UserConfig,
        web: String,
        api: &str,
        http: reqwest::Client,
        audit: Option<AuditLog>,
    ) -> Self {
        let sessions = Sessions::default();
        let persistence = Arc::new(Persistence::new(&sessions, &config.client_id, &web));
        Self {
            config,
            web,
            api: api.trim_end_matches('/').to_owned(),
            http,
            audit,
            sessions,
            persistence,
        }
    }

    /// `profile`'s session, made (logged out) on first use.
    pub(crate) fn session(&self, profile: &str) -> Arc<UserSource> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = sessions.get(profile) {
            return session.clone();
        }
        let profile: Arc<str> = profile.into();
        let session = Arc::new(UserSource {
            config: self.config.clone(),
            web: self.web.clone(),
            api: self.api.clone(),
            http: self.http.clone(),
            inner: Mutex::default(),
            renew_now: Notify::new(),
            audit: self.audit.clone(),
            profile: profile.clone(),
            persistence: self.persistence.clone(),
            starting: tokio::sync::Mutex::new(()),
        });
        sessions.insert(profile, session.clone());
        session
    }

    /// The session of `profile` if one was ever used.
    pub(crate) fn existing(&self, profile: &str) -> Option<Arc<UserSource>> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(profile).cloned()
    }

    /// Forgets the sessions of profiles `keep` rejects (removed by a reload); their
    /// renewal tasks stop with them. Sessions kept aside at start for a profile `keep`
    /// now accepts are taken back; those of profiles `aside` no longer names (their
    /// broken file was removed) are dropped.
    pub(crate) fn retain(&self, keep: impl Fn(&str) -> bool, aside: impl Fn(&str) -> bool) {
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            sessions.retain(|profile, session| {
                let kept = keep(profile);
                if !kept {
                    session.forget();
                }
                kept
            });
        }
        // Lock order: the kept-aside list, then the sessions map (in `session`).
        self.persistence
            .revive(keep, |saved| self.session(&saved.profile).resume(saved));
        for gone in self.persistence.drop_aside(|profile| !aside(profile)) {
            record(
                &self.audit,
                &gone.profile,
                "dropped",
                Some(&gone.login),
                "its profile is gone",
            );
        }
    }

    /// When the soonest session token expires.
    pub(crate) fn expiry(&self) -> Option<SystemTime> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().filter_map(|s| s.expiry()).min()
    }

    /// Takes back the sessions sealed in `github.user.sessionFile` (still usable or
    /// renewable, of profiles `keep` accepts; those of profiles `aside` names, whose file
    /// did not load, are kept aside, unused) and keeps the file current from now on. Only
    /// for the running proxy, and only once nothing else can stop it from starting:
    /// whatever renews a session spends its refresh token.
    pub(crate) fn restore(
        &self,
        keep: impl Fn(&str) -> bool,
        aside: impl Fn(&str) -> bool,
    ) -> Result<(), SessionFileError> {
        let Some(files) = &self.config.sessions else {
            return Ok(());
        };
        let store = Arc::new(files.open()?);
        store.lock()?;
        let now = SystemTime::now();
        let (mut resumed, mut dormant) = (Vec::new(), Vec::new());
        if let Some(contents) = store.load_for(&self.config.client_id, &self.web)? {
            for saved in contents.sessions {
                let (profile, login) = (saved.profile.as_str(), saved.login.as_str());
                if !saved.restorable(now) {
                    tracing::info!(
                        profile,
                        login,
                        "a saved GitHub user session expired while gitgate was down"
                    );
                    record(
                        &self.audit,
                        profile,
                        "dropped",
                        Some(login),
                        "expired while gitgate was down; log in again",
                    );
                } else if keep(profile) {
                    resumed.push(saved);
                } else if aside(profile) {
                    tracing::warn!(
                        profile,
                        login,
                        "a saved GitHub user session is kept aside: its profile file did not load; it is taken back when a reload brings the profile back"
                    );
                    dormant.push(saved);
                } else {
                    tracing::info!(
                        profile,
                        login,
                        "a saved GitHub user session is dropped: its profile is gone"
                    );
                    record(
                        &self.audit,
                        profile,
                        "dropped",
                        Some(login),
                        "its profile is gone",
                    );
                }
            }
        }
        // Written before anything is renewed: a file gitgate cannot write stops it here.
        let kept = resumed.iter().chain(&dormant).cloned().collect();
        store.store(&self.persistence.contents(kept))?;
        self.persistence.start(store, dormant);
        for saved in resumed {
            self.session(&saved.profile).resume(saved);
        }
        Ok(())
    }

    /// Seals every session now (at shutdown), if there is a session file.
    pub(crate) async fn save(&self) -> Result<usize, SessionFileError> {
        self.persistence.save().await
    }

    /// No renewal starts any more; those under way end (shutdown).
    pub(crate) async fn settle(&self) {
        self.persistence.settle().await;
    }
}

/// Writes a `user_session` audit record, if there is an audit log.
fn record(audit: &Option<AuditLog>, profile: &str, event: &str, login: Option<&str>, detail: &str) {
    if let Some(audit) = audit {
        audit.write(audit::user_line(profile, event, login, detail));
    }
}

/// One profile's user-token session.
pub(crate) struct UserSource {
    config: UserConfig,
    web: String,
    api: String,
    http: reqwest::Client,
    inner: Mutex<Inner>,
    /// Wakes the renewal task at once (GitHub refused the current token).
    renew_now: Notify,
    /// Where session events are recorded (none for `gitgate doctor`).
    audit: Option<AuditLog>,
    /// The profile the session belongs to.
    profile: Arc<str>,
    /// The session file, told when the session starts, is renewed or ends.
    persistence: Arc<Persistence>,
    /// One device code asked of GitHub at a time: callers meanwhile share it.
    starting: tokio::sync::Mutex<()>,
}

/// The most new device codes one profile asks GitHub for in a row, one more coming back
/// every [`CODES_PERIOD`] / [`CODES_PER_PERIOD`] (a minute). Every
/// `POST /login` while a code is still good shares that code; a sandbox looping over
/// login and logout would otherwise spend the App's device-flow limit, which every
/// profile's logins and renewals share.
const CODES_PER_PERIOD: u32 = 10;
const CODES_PERIOD: Duration = Duration::from_secs(600);
/// How long a failed request for a device code answers the logins that come after it.
const START_RETRY: Duration = Duration::from_secs(5);

impl UserSource {
    /// Writes a `user_session` audit record.
    fn record(&self, event: &str, login: Option<&str>, detail: &str) {
        record(&self.audit, &self.profile, event, login, detail);
    }

    /// The session as the file keeps it, if someone is logged in (not one whose token
    /// GitHub refused and that cannot be renewed).
    pub(crate) fn saved(&self) -> Option<Saved> {
        let inner = self.inner();
        let session = inner
            .session
            .as_ref()
            .filter(|s| !s.refused || s.grant.renewable(SystemTime::now()))?;
        Some(Saved {
            profile: self.profile.to_string(),
            login: session.login.clone(),
            grant: session.grant.clone(),
        })
    }

    /// The profile the session belongs to.
    pub(crate) fn profile(&self) -> &Arc<str> {
        &self.profile
    }

    /// Drops the session and stops its tasks, without revoking (the profile is gone).
    fn forget(&self) {
        let mut inner = self.inner();
        inner.forgotten = true;
        inner.flow += 1;
        inner.epoch += 1;
        inner.waiting = None;
        if inner.session.take().is_some() {
            self.persistence.changed();
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current token and who it acts for, or why there is none, in words that say
    /// what to do.
    pub(crate) fn current(&self) -> Result<(Secret, Arc<str>), TokenError> {
        let inner = self.inner();
        let now = SystemTime::now();
        if let Some(session) = inner.session.as_ref().filter(|s| s.usable(now)) {
            return Ok((session.grant.access.clone(), session.login.as_str().into()));
        }
        let why = match (&inner.waiting, &inner.session, &inner.last_error) {
            (Some(w), _, _) => format!(
                "a GitHub login is waiting: open {} and enter the code {}",
                w.code.verification_uri, w.code.user_code
            ),
            (_, Some(s), None) if s.refused && s.grant.renewable(now) => format!(
                "GitHub refused the token of {}'s session and gitgate is renewing it; retry in a moment",
                s.login
            ),
            // Expired (say, while gitgate was down) or refused, and renewal goes on.
            (_, Some(s), error) if s.grant.renewable(now) => format!(
                "gitgate is renewing the token of {}'s GitHub session{}; retry in a moment",
                s.login,
                error
                    .as_ref()
                    .map(|e| format!(" (the last attempt failed: {e})"))
                    .unwrap_or_default()
            ),
            (_, Some(s), error) => format!(
                "the GitHub session of {} is no longer valid{}; log in again with `gitgate login` (or POST /login to the proxy)",
                s.login,
                error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
            ),
            (_, None, Some(error)) => format!(
                "no GitHub user is logged in: the last login failed: {error}; log in again with `gitgate login` (or POST /login to the proxy)"
            ),
            (_, None, None) => "no GitHub user is logged in to gitgate; log in with `gitgate login` (or POST /login to the proxy) and enter the code it shows at GitHub".to_owned(),
        };
        Err(TokenError::User(why))
    }

    /// GitHub refused `secret`: renew now if it is still the current token.
    pub(crate) fn reject(&self, secret: &Secret) {
        let mut inner = self.inner();
        if let Some(session) = inner.session.as_mut().filter(|s| &s.grant.access == secret) {
            session.refused = true;
            // Until the renewal answers, an older error says nothing about this session.
            inner.last_error = None;
            self.renew_now.notify_one();
        }
    }

    /// When the current token expires.
    pub(crate) fn expiry(&self) -> Option<SystemTime> {
        self.inner()
            .session
            .as_ref()
            .and_then(|s| s.grant.expires_at)
    }

    /// Starts the device flow (or returns the code already waiting) and polls for the
    /// person's answer in the background.
    pub(crate) async fn login(self: &Arc<Self>) -> Result<LoginStatus, TokenError> {
        let _one_at_a_time = self.starting.lock().await;
        let now = SystemTime::now();
        {
            let mut inner = self.inner();
            if inner
                .waiting
                .as_ref()
                .is_some_and(|w| w.expires_at > now + Duration::from_secs(60))
            {
                drop(inner);
                return Ok(self.status());
            }
            if inner.forgotten {
                return Err(self.removed());
            }
            let clock = std::time::Instant::now();
            if let Some((at, error)) = &inner.start_failed
                && clock.duration_since(*at) < START_RETRY
            {
                return Err(error.clone());
            }
            let codes = inner
                .codes
                .get_or_insert_with(|| RateBudget::new(CODES_PER_PERIOD, CODES_PERIOD, clock));
            if !codes.take(clock) {
                return Err(TokenError::Throttled(format!(
                    "this profile has started {CODES_PER_PERIOD} GitHub logins in a row, its most (then one every {} s; each asks GitHub for a new code, a limit every profile shares); enter the code already shown, or retry in a minute",
                    CODES_PERIOD.as_secs() / u64::from(CODES_PER_PERIOD)
                )));
            }
        }
        let code = match self.ask_for_code().await {
            Ok(code) => code,
            Err(error) => {
                self.inner().start_failed = Some((std::time::Instant::now(), error.clone()));
                return Err(error);
            }
        };
        let flow = {
            let mut inner = self.inner();
            // Removed while GitHub answered: the code is never shown nor polled for.
            if inner.forgotten {
                return Err(self.removed());
            }
            inner.start_failed = None;
            inner.flow += 1;
            inner.last_error = None;
            inner.waiting = Some(Waiting {
                expires_at: code.expires_at(now),
                code: code.clone(),
            });
            inner.flow
        };
        tracing::info!(user_code = %code.user_code, "GitHub device login started");
        let source = self.clone();
        let expires_at = code.expires_at(now);
        tokio::spawn(async move { source.poll(flow, code, expires_at).await });
        Ok(self.status())
    }

    /// A new device code from GitHub.
    async fn ask_for_code(&self) -> Result<DeviceCode, TokenError> {
        let form = [("client_id", self.config.client_id.as_str())];
        let (status, body) = self.post("/login/device/code", &form).await?;
        match serde_json::from_slice::<DeviceCode>(&body) {
            Ok(code) if status.is_success() => Ok(code),
            _ => {
                let detail = serde_json::from_slice::<TokenReply>(&body)
                    .map(|r| r.refusal())
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                Err(TokenError::User(format!(
                    "cannot start a GitHub login: {detail}"
                )))
            }
        }
    }

    fn removed(&self) -> TokenError {
        TokenError::User(format!(
            "the profile {} was removed; nobody can log in to it",
            self.profile
        ))
    }

    /// Polls until the person approves, refuses or the code expires.
    async fn poll(self: Arc<Self>, flow: u64, code: DeviceCode, expires_at: SystemTime) {
        let mut interval = code.interval();
        let current = || self.inner().flow == flow;
        loop {
            tokio::time::sleep(interval).await;
            if !current() {
                return;
            }
            let form = [
                ("client_id", self.config.client_id.as_str()),
                ("device_code", code.device_code.as_str()),
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ];
            let reply = self.post("/login/oauth/access_token", &form).await;
            let now = SystemTime::now();
            let step = match reply.map(|(_, body)| serde_json::from_slice::<TokenReply>(&body)) {
                Ok(Ok(reply)) => reply.step(interval, &code, now),
                // A network blip or a garbled answer: keep polling until the code expires.
                Ok(Err(error)) => {
                    tracing::warn!(%error, "unreadable device-flow answer; polling on");
                    Step::Wait(interval)
                }
                Err(error) => {
                    tracing::warn!(%error, "device-flow poll failed; polling on");
                    Step::Wait(interval)
                }
            };
            let outcome = match step {
                Step::Wait(next) if now < expires_at => {
                    interval = next;
                    continue;
                }
                Step::Wait(_) => Err(format!(
                    "the code {} expired before it was entered",
                    code.user_code
                )),
                Step::Granted(grant) => self.who(&grant).await.map(|login| (login, grant)),
                Step::Failed(why) => Err(why),
            };
            self.finish(flow, outcome);
            return;
        }
    }

    /// Records the end of login `flow`, unless a later login, a logout or the profile's
    /// removal superseded it (checked under the lock that installs the session).
    fn finish(self: &Arc<Self>, flow: u64, outcome: Result<(String, Grant), String>) {
        let mut inner = self.inner();
        if inner.flow != flow || inner.forgotten {
            return;
        }
        inner.waiting = None;
        match outcome {
            Ok((login, grant)) => {
                tracing::info!(%login, "GitHub user logged in");
                self.record("logged_in", Some(&login), "device flow approved");
                self.start(&mut inner, login, grant);
            }
            Err(why) => {
                tracing::warn!(error = %why, "GitHub login failed");
                self.record("login_failed", None, &why);
                inner.last_error = Some(why);
            }
        }
    }

    /// A session saved before a restart: used (or renewed first) as if just logged in.
    fn resume(self: &Arc<Self>, saved: Saved) {
        tracing::info!(login = %saved.login, profile = %self.profile, "GitHub user session restored from the session file");
        self.record(
            "restored",
            Some(&saved.login),
            "sealed in github.user.sessionFile before a restart",
        );
        self.start(&mut self.inner(), saved.login, saved.grant);
    }

    /// Makes `grant` the session's token and keeps it renewed.
    fn start(self: &Arc<Self>, inner: &mut Inner, login: String, grant: Grant) {
        inner.epoch += 1;
        inner.last_error = None;
        inner.session = Some(Session {
            login,
            grant,
            refused: false,
        });
        let (source, epoch) = (self.clone(), inner.epoch);
        tokio::spawn(async move { source.keep_alive(epoch).await });
        self.persistence.changed();
    }

    /// The login of the user a token acts for (`GET /user`).
    async fn who(&self, grant: &Grant) -> Result<String, String> {
        #[derive(Deserialize)]
        struct User {
            login: String,
        }
        let response = self
            .http
            .get(format!("{}/user", self.api))
            .header("Accept", "application/vnd.github+json")
            .bearer_auth(grant.access.expose())
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.api))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        match serde_json::from_slice::<User>(&body) {
            Ok(user) if status == StatusCode::OK => Ok(user.login),
            _ => Err(format!(
                "GitHub did not accept the new token for GET /user (HTTP {status})"
            )),
        }
    }

    /// Renews the session before it expires, for as long as it is the current one.
    async fn keep_alive(self: Arc<Self>, epoch: u64) {
        let mut retry = FIRST_RETRY;
        loop {
            let wait = {
                let inner = self.inner();
                if inner.epoch != epoch {
                    return;
                }
                let Some(session) = &inner.session else {
                    return;
                };
                match session
                    .grant
                    .refresh_in(self.config.refresh_margin, SystemTime::now())
                {
                    Some(wait) => wait,
                    None => return,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.renew_now.notified() => {}
            }
            match self.renew(epoch).await {
                Ok(()) => retry = FIRST_RETRY,
                Err(Renewal::Stop) => return,
                Err(Renewal::Retry) => {
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        }
    }

    async fn renew(&self, epoch: u64) -> Result<(), Renewal> {
        // Shutdown began: the sealed refresh token stays unspent for the next start.
        let Some(_renewing) = self.persistence.renewal() else {
            return Err(Renewal::Stop);
        };
        let refresh = {
            let inner = self.inner();
            match inner.session.as_ref().and_then(|s| s.grant.refresh.clone()) {
                Some(refresh) if inner.epoch == epoch => refresh,
                _ => return Err(Renewal::Stop),
            }
        };
        let form = [
            ("client_id", self.config.client_id.as_str()),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
        ];
        let reply = self.post("/login/oauth/access_token", &form).await;
        let now = SystemTime::now();
        let (result, stop) = match reply.map(|(_, b)| serde_json::from_slice::<TokenReply>(&b)) {
            Ok(Ok(reply)) => {
                let final_refusal = reply.error() == Some("bad_refresh_token");
                (reply.refreshed(now), final_refusal)
            }
            Ok(Err(e)) => (Err(format!("unreadable answer: {e}")), false),
            Err(e) => (Err(e.to_string()), false),
        };
        let mut inner = self.inner();
        if inner.epoch != epoch {
            return Err(Renewal::Stop);
        }
        match result {
            Ok(grant) => {
                if let Some(session) = inner.session.as_mut() {
                    tracing::info!(login = %session.login, "renewed the GitHub user token");
                    self.record("renewed", Some(&session.login), "refresh token used");
                    session.grant = grant;
                    session.refused = false;
                }
                inner.last_error = None;
                self.persistence.changed();
                Ok(())
            }
            Err(why) => {
                tracing::warn!(error = %why, "renewing the GitHub user token failed");
                let login = inner.session.as_ref().map(|s| s.login.as_str());
                self.record("renewal_failed", login, &why);
                inner.last_error = Some(format!("renewal failed: {why}"));
                if !stop {
                    return Err(Renewal::Retry);
                }
                // Spent for good: the session is over (and out of the session file).
                if let Some(session) = inner.session.as_mut() {
                    session.grant.refresh = None;
                }
                self.persistence.changed();
                Err(Renewal::Stop)
            }
        }
    }

    /// Forgets the session (and any login in progress); revokes the token at GitHub when
    /// the client secret is configured.
    pub(crate) async fn logout(&self) -> LogoutOutcome {
        let profile = &*self.profile;
        let session = {
            let mut inner = self.inner();
            inner.flow += 1;
            inner.epoch += 1;
            inner.waiting = None;
            inner.last_error = None;
            inner.session.take()
        };
        let Some(session) = session else {
            return LogoutOutcome {
                profile: profile.to_owned(),
                login: None,
                revoked: false,
                message: "nobody was logged in".into(),
            };
        };
        // Out of the session file before the answer, so that it can say if it is not.
        let unsaved = self.persistence.save().await.err().map(|error| {
            tracing::error!(%error, "cannot take a logged-out session out of the session file");
            self.persistence.changed();
            format!(
                "; but gitgate could not take the session out of its session file ({error}), so a restart before that works would bring it back"
            )
        });
        let (revoked, mut message) = match &self.config.client_secret {
            Some(secret) => match self.revoke(&session.grant.access, secret).await {
                Ok(()) => (
                    true,
                    format!("logged out {}; GitHub revoked the token", session.login),
                ),
                Err(why) => (
                    false,
                    format!(
                        "logged out {} (gitgate forgot the token), but GitHub did not revoke it: {why}; it expires by itself",
                        session.login
                    ),
                ),
            },
            None => (
                false,
                format!(
                    "logged out {}: gitgate forgot the token; it was not revoked at GitHub because github.user.clientSecretFile is not set, so it stays valid until it expires",
                    session.login
                ),
            ),
        };
        message.push_str(unsaved.as_deref().unwrap_or_default());
        tracing::info!(login = %session.login, revoked, "GitHub user logged out");
        self.record("logged_out", Some(&session.login), &message);
        LogoutOutcome {
            profile: profile.to_owned(),
            login: Some(session.login),
            revoked,
            message,
        }
    }

    /// `DELETE /applications/{client_id}/token`.
    async fn revoke(&self, token: &Secret, secret: &Secret) -> Result<(), String> {
        let response = self
            .http
            .delete(format!(
                "{}/applications/{}/token",
                self.api, self.config.client_id
            ))
            .basic_auth(&self.config.client_id, Some(secret.expose()))
            .header("Accept", "application/vnd.github+json")
            .header("Content-Type", "application/json")
            .body(serde_json::json!({ "access_token": token.expose() }).to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.api))?;
        match response.status() {
            StatusCode::NO_CONTENT => Ok(()),
            status => Err(format!("HTTP {status}")),
        }
    }

    /// The state for `GET /login`.
    pub(crate) fn status(&self) -> LoginStatus {
        let inner = self.inner();
        let now = SystemTime::now();
        // A session gitgate is renewing (its token expired or was refused) is still one.
        let session = inner
            .session
            .as_ref()
            .filter(|s| s.usable(now) || s.grant.renewable(now));
        // Shown until the polling task concludes, even past the code's expiry, so that the
        // outcome (and its reason) replaces it in one step.
        let waiting = inner.waiting.as_ref();
        LoginStatus {
            profile: self.profile.to_string(),
            state: match (session, waiting) {
                (Some(_), _) => "loggedIn",
                (None, Some(_)) => "pending",
                (None, None) => "loggedOut",
            },
            login: session.map(|s| s.login.clone()),
            renewing: session.is_some_and(|s| !s.usable(now)),
            expires_at: session.and_then(|s| s.grant.expires_at).map(rfc3339),
            refresh_expires_at: session
                .and_then(|s| s.grant.refresh_expires_at)
                .map(rfc3339),
            verification_uri: waiting.map(|w| w.code.verification_uri.clone()),
            user_code: waiting.map(|w| w.code.user_code.clone()),
            code_expires_at: waiting.map(|w| rfc3339(w.expires_at)),
            last_error: inner.last_error.clone(),
        }
    }

    /// POSTs a form to the web host's OAuth endpoints, asking for JSON.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, bytes::Bytes), TokenError> {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let unreachable = |e: reqwest::Error| TokenError::Unreachable {
            host: self.web.clone(),
            detail: super::error_chain(&e),
        };
        let response = self
            .http
            .post(format!("{}{path}", self.web))
            .header("Accept", "application/json")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        Ok((status, response.bytes().await.map_err(unreachable)?))
    }
}

enum Renewal {
    Retry,
    Stop,
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::from(t))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions of a client with no network behind it (nothing here calls GitHub).
    fn sessions() -> UserSessions {
        sessions_in(None)
    }

    /// The same, sealed to `store`.
    fn sessions_in(store: Option<SessionFiles>) -> UserSessions {
        let _ = Arc::unwrap_or_clone(gitgate_certs::crypto_provider()).install_default();
        let config = UserConfig {
            client_id: "Iv1.x".into(),
            client_secret: None,
            refresh_margin: Duration::from_secs(1800),
            sessions: store,
        };
        UserSessions::new(
            config,
            "https://github.com".into(),
            "https://api.github.com",
            reqwest::Client::new(),
            None,
        )
    }

    #[test]
    fn each_profile_has_its_own_session_and_a_removed_profile_loses_it() {
        let sessions = sessions();
        let a = sessions.session("a");
        assert!(Arc::ptr_eq(&a, &sessions.session("a")));
        assert!(!Arc::ptr_eq(&a, &sessions.session("b")));
        assert_eq!(&**a.profile(), "a");
        assert_eq!(sessions.session("b").status().profile, "b");
        assert!(sessions.existing("c").is_none(), "looking makes no session");
        sessions.retain(|profile| profile == "a", |_| false);
        assert!(sessions.existing("a").is_some() && sessions.existing("b").is_none());
    }

    /// A login that a logout, a later login or the profile's removal superseded never
    /// installs its session, and a removed profile starts no login.
    #[tokio::test]
    async fn a_superseded_login_installs_nothing_and_a_removed_profile_starts_none() {
        let sessions = sessions();
        let source = sessions.session("gone");
        let now = SystemTime::now();
        let grant = || Grant {
            access: Secret::new("ghu_a"),
            obtained_at: now,
            expires_at: Some(now + Duration::from_secs(28_800)),
            refresh: None,
            refresh_expires_at: None,
        };
        let stale = source.inner().flow;
        source.inner().flow += 1;
        source.finish(stale, Ok(("octo".into(), grant())));
        assert!(source.inner().session.is_none(), "a superseded login");
        sessions.retain(|_| false, |_| false);
        let current = source.inner().flow;
        source.finish(current, Ok(("octo".into(), grant())));
        assert!(
            source.inner().session.is_none(),
            "a removed profile's login"
        );
        let refused = source.login().await.unwrap_err().to_string();
        assert!(
            refused.contains("the profile gone was removed"),
            "{refused}"
        );
    }

    /// Logins that come just after GitHub failed to give a code get that failure, rather
    /// than each asking GitHub again (nothing here can reach GitHub: asking would fail
    /// with another error).
    #[tokio::test]
    async fn a_failed_start_answers_the_logins_just_after_it() {
        let source = sessions().session("default");
        let failure = TokenError::User("cannot start a GitHub login: HTTP 502".into());
        source.inner().start_failed = Some((std::time::Instant::now(), failure.clone()));
        assert_eq!(source.login().await.unwrap_err(), failure);
        let long_ago = std::time::Instant::now() - START_RETRY;
        source.inner().start_failed = Some((long_ago, failure.clone()));
        assert_ne!(source.login().await.unwrap_err(), failure, "asked again");
    }

    #[test]
    fn a_refused_token_being_renewed_is_not_called_a_lost_session() {
        let source = sessions().session("default");
        let access = Secret::new("ghu_a");
        let now = SystemTime::now();
        source.inner().session = Some(Session {
            login: "octo".into(),
            grant: Grant {
                access: access.clone(),
                obtained_at: now,
                expires_at: Some(now + Duration::from_secs(28_800)),
                refresh: Some(Secret::new("ghr_a")),
                refresh_expires_at: None,
            },
            refused: false,
        });
        source.inner().last_error = Some("renewal failed: timed out".into());
        assert!(source.current().is_ok());
        source.reject(&access);
        let why = source.current().unwrap_err().to_string();
        assert!(
            why.contains("octo's session and gitgate is renewing it; retry"),
            "{why}"
        );
        // A renewal that failed for now is retried: git is told so.
        source.inner().last_error = Some("renewal failed: timed out".into());
        let why = source.current().unwrap_err().to_string();
        assert!(
            why.contains("renewing the token of octo's GitHub session (the last attempt failed: renewal failed: timed out); retry"),
            "{why}"
        );
        // The renewal was refused for good (its refresh token is dropped): now the person
        // must log in again.
        source.inner().last_error = Some("renewal failed: bad_refresh_token".into());
        source.inner().session.as_mut().unwrap().grant.refresh = None;
        let why = source.current().unwrap_err().to_string();
        assert!(why.contains("log in again with `gitgate login`"), "{why}");
        assert_eq!(source.status().state, "loggedOut");
        // Refused again with nothing left to renew it with: not "renewing", and not kept
        // for the next start.
        source.inner().last_error = None;
        let why = source.current().unwrap_err().to_string();
        assert!(why.contains("log in again with `gitgate login`"), "{why}");
        assert!(source.saved().is_none());
    }

    #[test]
    fn a_session_restored_with_an_expired_token_is_being_renewed_not_lost() {
        let source = sessions().session("default");
        let then = SystemTime::now() - Duration::from_secs(60);
        let grant = |refresh: Option<&str>| Grant {
            access: Secret::new("ghu_old"),
            obtained_at: then - Duration::from_secs(8),
            expires_at: Some(then),
            refresh: refresh.map(Secret::new),
            refresh_expires_at: None,
        };
        let session = |refresh| Session {
            login: "octo".into(),
            grant: grant(refresh),
            refused: false,
        };
        source.inner().session = Some(session(Some("ghr_a")));
        let why = source.current().unwrap_err().to_string();
        assert!(
            why.contains("gitgate is renewing the token of octo's GitHub session; retry"),
            "{why}"
        );
        let status = source.status();
        assert_eq!((status.state, status.renewing), ("loggedIn", true));
        let said = crate::login::describe(&status, "127.0.0.1:1");
        assert!(
            said.contains("logged in to GitHub as octo; the token is not usable now")
                && said.contains("gitgate is renewing it"),
            "{said}"
        );
        source.inner().session = Some(session(None));
        let why = source.current().unwrap_err().to_string();
        assert!(why.contains("log in again with `gitgate login`"), "{why}");
    }

    #[tokio::test]
    async fn a_restart_takes_back_live_sessions_and_keeps_those_of_missing_profiles_aside() {
        use super::super::sealed::Contents;
        let dir = tempfile::tempdir().unwrap();
        let files = |name: &str| {
            let key_file = dir.path().join("key");
            std::fs::write(&key_file, [3u8; 32]).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
            SessionFiles {
                file: dir.path().join(name),
                key_file,
            }
        };
        let now = SystemTime::now();
        let saved = |profile: &str, expires_in: i64, refresh: bool| Saved {
            profile: profile.into(),
            login: format!("{profile}-user"),
            grant: Grant {
                access: Secret::new(format!("ghu_{profile}")),
                obtained_at: now - Duration::from_secs(100),
                expires_at: Some(match expires_in {
                    n if n >= 0 => now + Duration::from_secs(n as u64),
                    n => now - Duration::from_secs(n.unsigned_abs()),
                }),
                refresh: refresh.then(|| Secret::new(format!("ghr_{profile}"))),
                refresh_expires_at: None,
            },
        };
        let write = |name: &str, client_id: &str| {
            let sessions = vec![
                saved("live", 3600, true),
                saved("missing", 3600, true),
                saved("broken", 3600, true),
                saved("gone", 3600, true),
                saved("expired", -10, false),
                saved("lasting", 3600 * 24 * 400, true),
            ];
            let contents = Contents {
                client_id: client_id.into(),
                host: "https://github.com".into(),
                sessions,
            };
            files(name).open().unwrap().store(&contents).unwrap();
        };
        let in_file = |name: &str| {
            let mut profiles: Vec<String> = match files(name).open().unwrap().load().unwrap() {
                Some(c) => c.sessions.into_iter().map(|s| s.profile).collect(),
                None => Vec::new(),
            };
            profiles.sort();
            profiles
        };

        write("s", "Iv1.x");
        let users = sessions_in(Some(files("s")));
        users
            .restore(
                |profile| !["missing", "broken", "gone"].contains(&profile),
                |profile| ["missing", "broken"].contains(&profile),
            )
            .unwrap();
        let state = |profile: &str| users.existing(profile).map(|s| s.status().state);
        assert_eq!(state("live"), Some("loggedIn"));
        assert_eq!(
            users.session("live").status().login.as_deref(),
            Some("live-user")
        );
        assert_eq!(state("lasting"), Some("loggedIn"));
        assert_eq!(
            (state("missing"), state("expired"), state("gone")),
            (None, None, None)
        );
        // Written at once: the expired one and the removed profile's are gone, the one
        // of the profile whose file did not load is kept aside.
        assert_eq!(in_file("s"), ["broken", "lasting", "live", "missing"]);
        let eventually = |want: &[&str]| {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            async move {
                for _ in 0..500 {
                    if in_file("s") == want {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                assert_eq!(in_file("s"), want);
            }
        };

        // A reload after `broken`'s file was removed (`missing`'s still does not load)
        // drops `broken`'s session.
        users.retain(
            |profile| ["live", "lasting"].contains(&profile),
            |profile| profile == "missing",
        );
        eventually(&["lasting", "live", "missing"]).await;
        assert_eq!(state("missing"), None);
        // One that brings the profile back takes its session back.
        users.retain(|_| true, |_| false);
        assert_eq!(state("missing"), Some("loggedIn"));
        // One that removes profiles ends their sessions, in the file too.
        users.retain(|profile| profile == "live", |_| false);
        eventually(&["live"]).await;

        // Sessions of another App client stop gitgate, and the file is left as it was.
        write("other", "Iv1.other");
        let before = std::fs::read(dir.path().join("other")).unwrap();
        let why = sessions_in(Some(files("other")))
            .restore(|_| true, |_| false)
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("holds the sessions of App client Iv1.other at https://github.com, not of github.user.clientId Iv1.x"),
            "{why}"
        );
        assert_eq!(std::fs::read(dir.path().join("other")).unwrap(), before);
    }
}
