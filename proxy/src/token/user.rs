//! Acting for a person: a user-to-server token from the GitHub device flow, kept in
//! memory only, renewed with its refresh token before it expires, revoked on logout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::device::{DeviceCode, Grant, Step, TokenReply};
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
}

/// One person's session per profile (a single `default` one without profiles), each
/// logged in, renewed and logged out on its own.
pub(crate) struct UserSessions {
    config: UserConfig,
    web: String,
    api: String,
    http: reqwest::Client,
    audit: Option<AuditLog>,
    sessions: Mutex<HashMap<Arc<str>, Arc<UserSource>>>,
}

impl UserSessions {
    pub(crate) fn new(
        config: UserConfig,
        web: String,
        api: &str,
        http: reqwest::Client,
        audit: Option<AuditLog>,
    ) -> Self {
        Self {
            config,
            web,
            api: api.trim_end_matches('/').to_owned(),
            http,
            audit,
            sessions: Mutex::default(),
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
    /// renewal tasks stop with them.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|profile, session| {
            let kept = keep(profile);
            if !kept {
                session.forget();
            }
            kept
        });
    }

    /// When the soonest session token expires.
    pub(crate) fn expiry(&self) -> Option<SystemTime> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.values().filter_map(|s| s.expiry()).min()
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
}

impl UserSource {
    /// Writes a `user_session` audit record.
    fn record(&self, event: &str, login: Option<&str>, detail: &str) {
        if let Some(audit) = &self.audit {
            audit.write(audit::user_line(&self.profile, event, login, detail));
        }
    }

    /// The profile the session belongs to.
    pub(crate) fn profile(&self) -> &Arc<str> {
        &self.profile
    }

    /// Drops the session and stops its tasks, without revoking (the profile is gone).
    fn forget(&self) {
        let mut inner = self.inner();
        inner.flow += 1;
        inner.epoch += 1;
        inner.waiting = None;
        inner.session = None;
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
            (_, Some(s), None) if s.refused => format!(
                "GitHub refused the token of {}'s session and gitgate is renewing it; retry in a moment",
                s.login
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
        let now = SystemTime::now();
        if self
            .inner()
            .waiting
            .as_ref()
            .is_some_and(|w| w.expires_at > now + Duration::from_secs(60))
        {
            return Ok(self.status());
        }
        let form = [("client_id", self.config.client_id.as_str())];
        let (status, body) = self.post("/login/device/code", &form).await?;
        let code = match serde_json::from_slice::<DeviceCode>(&body) {
            Ok(code) if status.is_success() => code,
            _ => {
                let detail = serde_json::from_slice::<TokenReply>(&body)
                    .map(|r| r.refusal())
                    .unwrap_or_else(|_| format!("HTTP {status}"));
                return Err(TokenError::User(format!(
                    "cannot start a GitHub login: {detail}"
                )));
            }
        };
        let flow = {
            let mut inner = self.inner();
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
            if current() {
                self.finish(outcome);
            }
            return;
        }
    }

    /// Records the end of a login.
    fn finish(self: &Arc<Self>, outcome: Result<(String, Grant), String>) {
        let mut inner = self.inner();
        inner.waiting = None;
        match outcome {
            Ok((login, grant)) => {
                tracing::info!(%login, "GitHub user logged in");
                self.record("logged_in", Some(&login), "device flow approved");
                inner.epoch += 1;
                inner.last_error = None;
                inner.session = Some(Session {
                    login,
                    grant,
                    refused: false,
                });
                let (source, epoch) = (self.clone(), inner.epoch);
                tokio::spawn(async move { source.keep_alive(epoch).await });
            }
            Err(why) => {
                tracing::warn!(error = %why, "GitHub login failed");
                self.record("login_failed", None, &why);
                inner.last_error = Some(why);
            }
        }
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
                Ok(())
            }
            Err(why) => {
                tracing::warn!(error = %why, "renewing the GitHub user token failed");
                let login = inner.session.as_ref().map(|s| s.login.as_str());
                self.record("renewal_failed", login, &why);
                inner.last_error = Some(format!("renewal failed: {why}"));
                Err(if stop { Renewal::Stop } else { Renewal::Retry })
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
        let (revoked, message) = match &self.config.client_secret {
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
        let session = inner.session.as_ref().filter(|s| s.usable(now));
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
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = UserConfig {
            client_id: "Iv1.x".into(),
            client_secret: None,
            refresh_margin: Duration::from_secs(1800),
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
        sessions.retain(|profile| profile == "a");
        assert!(sessions.existing("a").is_some() && sessions.existing("b").is_none());
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
        // The renewal was refused too: now the person must log in again.
        source.inner().last_error = Some("renewal failed: bad_refresh_token".into());
        let why = source.current().unwrap_err().to_string();
        assert!(why.contains("log in again with `gitgate login`"), "{why}");
    }
}
