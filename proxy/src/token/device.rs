//! The OAuth device flow's replies, read into what gitgate does next. Pure: no I/O,
//! no clock (`now` is passed in).

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use super::Secret;

/// What `slow_down` adds when GitHub does not say the new interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// Polls are never closer than this, whatever the reply says.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `POST /login/device/code`'s answer.
#[derive(Clone, Deserialize)]
pub(crate) struct DeviceCode {
    pub(crate) device_code: String,
    pub(crate) user_code: String,
    pub(crate) verification_uri: String,
    pub(crate) expires_in: u64,
    pub(crate) interval: Option<u64>,
}

/// `POST /login/oauth/access_token`'s answer: a grant or an OAuth error. No `Debug`: it
/// holds tokens.
#[derive(Deserialize)]
pub(crate) struct TokenReply {
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
    refresh_token_expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
    interval: Option<u64>,
}

/// A user token with what is needed to keep it alive.
#[derive(Clone, Debug)]
pub(crate) struct Grant {
    pub(crate) access: Secret,
    pub(crate) obtained_at: SystemTime,
    /// `None`: the token does not expire (the App has expiring user tokens turned off).
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) refresh: Option<Secret>,
    pub(crate) refresh_expires_at: Option<SystemTime>,
}

/// What to do after a poll of the token endpoint.
#[derive(Debug)]
pub(crate) enum Step {
    /// Ask again after this long.
    Wait(Duration),
    /// A person approved: here is the token.
    Granted(Grant),
    /// The flow is over without a token; the sentence says why and what to do.
    Failed(String),
}

impl TokenReply {
    /// Reads a device-flow poll, given the interval in force.
    pub(crate) fn step(self, interval: Duration, code: &DeviceCode, now: SystemTime) -> Step {
        let Some(error) = self.error.as_deref() else {
            return match self.grant(now) {
                Some(grant) => Step::Granted(grant),
                None => Step::Failed("GitHub's answer held no access_token".into()),
            };
        };
        match error {
            "authorization_pending" => Step::Wait(interval),
            "slow_down" => Step::Wait(
                self.interval
                    .map(Duration::from_secs)
                    .unwrap_or(interval + SLOW_DOWN_STEP)
                    .max(MIN_INTERVAL),
            ),
            "expired_token" => Step::Failed(format!(
                "the code {} expired before it was entered at {}",
                code.user_code, code.verification_uri
            )),
            "access_denied" => Step::Failed(format!(
                "the sign-in for code {} was cancelled at GitHub (access denied)",
                code.user_code
            )),
            _ => Step::Failed(self.refusal()),
        }
    }

    /// Reads a refresh: the new grant, or why GitHub refused.
    pub(crate) fn refreshed(self, now: SystemTime) -> Result<Grant, String> {
        if self.error.is_some() {
            return Err(self.refusal());
        }
        self.grant(now)
            .ok_or_else(|| "GitHub's answer held no access_token".into())
    }

    fn grant(self, now: SystemTime) -> Option<Grant> {
        let at = |secs: Option<u64>| secs.map(|s| now + Duration::from_secs(s));
        Some(Grant {
            access: Secret::new(self.access_token.filter(|t| !t.is_empty())?),
            obtained_at: now,
            expires_at: at(self.expires_in),
            refresh: self
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            refresh_expires_at: at(self.refresh_token_expires_in),
        })
    }

    /// The OAuth error code, if the reply is one.
    pub(crate) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// GitHub's error in plain words, with what to change where that is known.
    pub(crate) fn refusal(&self) -> String {
        let error = self.error.as_deref().unwrap_or("error");
        let detail = self
            .error_description
            .as_deref()
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let hint = match error {
            "incorrect_client_credentials" => {
                "; check github.user.clientId against the App's settings page"
            }
            "device_flow_disabled" => "; enable Device Flow in the GitHub App's settings",
            "bad_refresh_token" => "; the session cannot be renewed, log in again",
            _ => "",
        };
        format!("GitHub refused ({error}{detail}){hint}")
    }
}

impl DeviceCode {
    /// The first polling interval.
    pub(crate) fn interval(&self) -> Duration {
        Duration::from_secs(self.interval.unwrap_or(5)).max(MIN_INTERVAL)
    }

    /// When the code stops being accepted.
    pub(crate) fn expires_at(&self, now: SystemTime) -> SystemTime {
        now + Duration::from_secs(self.expires_in)
    }
}

impl Grant {
    /// Worth sending: no expiry, or enough left (a quarter of its lifetime, at most a
    /// minute) that it will not expire in flight.
    pub(crate) fn usable(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| {
            let lifetime = at.duration_since(self.obtained_at).unwrap_or_default();
            let guard = (lifetime / 4).min(Duration::from_secs(60));
            at.duration_since(now).is_ok_and(|left| left > guard)
        })
    }

    /// Whether a refresh token can still get a new token (has one that has not expired).
    pub(crate) fn renewable(&self, now: SystemTime) -> bool {
        self.refresh.is_some() && self.refresh_expires_at.is_none_or(|at| at > now)
    }

    /// How long until the token should be renewed: `margin` before expiry, at most half
    /// its lifetime (`None` when it cannot or need not be renewed).
    pub(crate) fn refresh_in(&self, margin: Duration, now: SystemTime) -> Option<Duration> {
        let expires_at = self.expires_at?;
        self.refresh.as_ref()?;
        let lifetime = expires_at
            .duration_since(self.obtained_at)
            .unwrap_or_default();
        let due = expires_at - margin.min(lifetime / 2);
        Some(due.duration_since(now).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(json: &str) -> TokenReply {
        serde_json::from_str(json).unwrap()
    }

    fn code() -> DeviceCode {
        serde_json::from_str(r#"{"device_code":"d","user_code":"WDJB-MJHT","verification_uri":"https://github.com/login/device","expires_in":900,"interval":5}"#).unwrap()
    }

    #[test]
    fn each_poll_answer_is_read_as_github_documents_it() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let five = Duration::from_secs(5);
        let step = |json: &str| reply(json).step(five, &code(), now);
        assert!(matches!(step(r#"{"error":"authorization_pending"}"#), Step::Wait(d) if d == five));
        assert!(
            matches!(step(r#"{"error":"slow_down","interval":10}"#), Step::Wait(d) if d.as_secs() == 10)
        );
        assert!(matches!(step(r#"{"error":"slow_down"}"#), Step::Wait(d) if d.as_secs() == 10));
        let failed = |json: &str| match step(json) {
            Step::Failed(why) => why,
            other => panic!("{other:?}"),
        };
        assert!(failed(r#"{"error":"expired_token"}"#).contains("WDJB-MJHT expired"));
        assert!(failed(r#"{"error":"access_denied"}"#).contains("cancelled"));
        assert!(
            failed(r#"{"error":"incorrect_client_credentials","error_description":"bad"}"#)
                .contains("github.user.clientId")
        );
        assert!(failed(r#"{"access_token":""}"#).contains("no access_token"));
        let Step::Granted(grant) = step(
            r#"{"access_token":"ghu_x","expires_in":28800,"refresh_token":"ghr_y","refresh_token_expires_in":15811200,"token_type":"bearer","scope":""}"#,
        ) else {
            panic!("not granted");
        };
        assert_eq!(grant.access.expose(), "ghu_x");
        assert_eq!(grant.expires_at, Some(now + Duration::from_secs(28800)));
        assert!(!format!("{grant:?}").contains("ghu_x"));
    }

    #[test]
    fn refresh_is_due_a_margin_before_expiry_and_never_past_half_the_lifetime() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let grant = |lifetime: u64, refresh: bool| Grant {
            access: Secret::new("a"),
            obtained_at: now,
            expires_at: Some(now + Duration::from_secs(lifetime)),
            refresh: refresh.then(|| Secret::new("r")),
            refresh_expires_at: None,
        };
        let margin = Duration::from_secs(1800);
        assert_eq!(
            grant(28800, true).refresh_in(margin, now),
            Some(Duration::from_secs(27000))
        );
        assert_eq!(
            grant(10, true).refresh_in(margin, now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(grant(28800, false).refresh_in(margin, now), None);
        let late = now + Duration::from_secs(28000);
        assert_eq!(
            grant(28800, true).refresh_in(margin, late),
            Some(Duration::ZERO)
        );
        assert!(grant(28800, true).usable(late));
        assert!(!grant(28800, true).usable(now + Duration::from_secs(28790)));
        assert!(grant(8, true).usable(now + Duration::from_secs(5)));
        assert!(!grant(8, true).usable(now + Duration::from_secs(7)));
    }
}
