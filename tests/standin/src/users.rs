//! The OAuth device flow and user-to-server tokens, as GitHub keeps them: device codes
//! waiting for a person, user tokens that expire, refresh tokens that rotate, revocation.
//! Pure: every method takes `now`.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// How the device flow behaves (see [`crate::Config`]).
#[derive(Clone, Debug)]
pub(crate) struct DeviceSettings {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    pub(crate) code_lifetime: Duration,
    pub(crate) interval: Duration,
    pub(crate) slow_down_step: Duration,
    pub(crate) user_token_lifetime: Duration,
    pub(crate) refresh_token_lifetime: Duration,
}

/// What a person did with a device code.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Approval {
    Waiting,
    Approved(String),
    Denied,
}

#[derive(Debug)]
struct Device {
    user_code: String,
    expires_at: SystemTime,
    interval: Duration,
    last_poll: Option<SystemTime>,
    approval: Approval,
}

#[derive(Debug)]
struct UserGrant {
    login: String,
    expires_at: SystemTime,
}

/// A device code as handed out.
#[derive(Debug)]
pub(crate) struct DeviceCode {
    pub(crate) device_code: String,
    pub(crate) user_code: String,
    pub(crate) expires_in: u64,
    pub(crate) interval: u64,
}

/// A user token pair as handed out.
#[derive(Debug)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) refresh_token: String,
    pub(crate) refresh_token_expires_in: u64,
}

/// An OAuth error reply: `error` and `error_description`; `interval` with `slow_down`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub(crate) error: &'static str,
    pub(crate) description: &'static str,
    pub(crate) interval: Option<u64>,
}

impl OAuthError {
    fn new(error: &'static str, description: &'static str) -> Self {
        Self {
            error,
            description,
            interval: None,
        }
    }
}

/// Something that happened to a user token, for tests to assert on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEvent {
    /// `device` (first grant), `refresh` or `revoke`.
    pub kind: &'static str,
    /// The GitHub user.
    pub login: String,
    /// The access token concerned.
    pub access_token: String,
    /// The refresh token issued with it (`None` for `revoke`).
    pub refresh_token: Option<String>,
    /// When it expires (`None` for `revoke`).
    pub expires_at: Option<SystemTime>,
}

/// Device codes, user tokens, refresh tokens and what happened to them.
#[derive(Debug)]
pub(crate) struct UserStore {
    settings: DeviceSettings,
    devices: HashMap<String, Device>,
    access: HashMap<String, UserGrant>,
    /// Refresh token → (login, expiry, the access token issued with it).
    refresh: HashMap<String, (String, SystemTime, String)>,
    forced_slow_downs: u32,
    events: Vec<UserEvent>,
    errors: Vec<&'static str>,
}

impl UserStore {
    pub(crate) fn new(settings: DeviceSettings) -> Self {
        Self {
            settings,
            devices: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            forced_slow_downs: 0,
            events: Vec::new(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn settings(&self) -> &DeviceSettings {
        &self.settings
    }

    pub(crate) fn set_user_token_lifetime(&mut self, lifetime: Duration) {
        self.settings.user_token_lifetime = lifetime;
    }

    pub(crate) fn set_code_lifetime(&mut self, lifetime: Duration) {
        self.settings.code_lifetime = lifetime;
    }

    /// Records an OAuth error answered (for [`crate::StandIn::oauth_errors`]).
    pub(crate) fn answered(&mut self, error: &'static str) {
        self.errors.push(error);
    }

    pub(crate) fn errors(&self) -> &[&'static str] {
        &self.errors
    }

    pub(crate) fn force_slow_downs(&mut self, n: u32) {
        self.forced_slow_downs = n;
    }

    pub(crate) fn events(&self) -> &[UserEvent] {
        &self.events
    }

    /// `POST /login/device/code`.
    pub(crate) fn device_code(
        &mut self,
        client_id: &str,
        device_code: String,
        user_code: String,
        now: SystemTime,
    ) -> Result<DeviceCode, OAuthError> {
        self.check_client(client_id)?;
        let s = &self.settings;
        self.devices.insert(
            device_code.clone(),
            Device {
                user_code: user_code.clone(),
                expires_at: now + s.code_lifetime,
                interval: s.interval,
                last_poll: None,
                approval: Approval::Waiting,
            },
        );
        Ok(DeviceCode {
            device_code,
            user_code,
            expires_in: s.code_lifetime.as_secs(),
            interval: s.interval.as_secs(),
        })
    }

    /// A person entered `user_code` and approved (`Some(login)`) or cancelled (`None`).
    pub(crate) fn decide(&mut self, user_code: &str, login: Option<&str>) -> bool {
        let Some(device) = self
            .devices
            .values_mut()
            .find(|d| d.user_code == user_code && d.approval == Approval::Waiting)
        else {
            return false;
        };
        device.approval = match login {
            Some(login) => Approval::Approved(login.to_owned()),
            None => Approval::Denied,
        };
        true
    }

    /// `POST /login/oauth/access_token` with the device-code grant.
    pub(crate) fn poll(
        &mut self,
        client_id: &str,
        device_code: &str,
        tokens: (String, String),
        now: SystemTime,
    ) -> Result<Issued, OAuthError> {
        self.check_client(client_id)?;
        let step = self.settings.slow_down_step;
        let device = self.devices.get_mut(device_code).ok_or(OAuthError::new(
            "incorrect_device_code",
            "The device_code provided is not valid.",
        ))?;
        if now >= device.expires_at {
            return Err(OAuthError::new(
                "expired_token",
                "The device_code has expired.",
            ));
        }
        let too_soon = device.last_poll.is_some_and(|last| {
            now.duration_since(last).unwrap_or_default() + POLL_SLACK < device.interval
        });
        device.last_poll = Some(now);
        if too_soon || self.forced_slow_downs > 0 {
            self.forced_slow_downs = self.forced_slow_downs.saturating_sub(1);
            device.interval += step;
            return Err(OAuthError {
                error: "slow_down",
                description: "Too many requests have been made in the same timeframe.",
                interval: Some(device.interval.as_secs()),
            });
        }
        let login = match &device.approval {
            Approval::Waiting => {
                return Err(OAuthError::new(
                    "authorization_pending",
                    "The authorization request is still pending.",
                ));
            }
            Approval::Denied => {
                return Err(OAuthError::new(
                    "access_denied",
                    "The authorization request was denied.",
                ));
            }
            Approval::Approved(login) => login.clone(),
        };
        self.devices.remove(device_code);
        Ok(self.issue(login, tokens, "device", now))
    }

    /// `POST /login/oauth/access_token` with the refresh-token grant: the old pair stops
    /// working.
    pub(crate) fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        tokens: (String, String),
        now: SystemTime,
    ) -> Result<Issued, OAuthError> {
        self.check_client(client_id)?;
        let bad = || {
            OAuthError::new(
                "bad_refresh_token",
                "The refresh token passed is incorrect or expired.",
            )
        };
        let (login, expires_at, old_access) = self.refresh.remove(refresh_token).ok_or_else(bad)?;
        self.access.remove(&old_access);
        if now >= expires_at {
            return Err(bad());
        }
        Ok(self.issue(login, tokens, "refresh", now))
    }

    /// `DELETE /applications/{client_id}/token`: the token and its refresh token stop working.
    pub(crate) fn revoke(&mut self, access_token: &str) -> bool {
        let Some(grant) = self.access.remove(access_token) else {
            return false;
        };
        self.refresh
            .retain(|_, (_, _, access)| access != access_token);
        self.events.push(UserEvent {
            kind: "revoke",
            login: grant.login,
            access_token: access_token.to_owned(),
            refresh_token: None,
            expires_at: None,
        });
        true
    }

    /// The user a live access token belongs to.
    pub(crate) fn user(&self, access_token: &str, now: SystemTime) -> Option<&str> {
        self.access
            .get(access_token)
            .filter(|g| now < g.expires_at)
            .map(|g| g.login.as_str())
    }

    pub(crate) fn check_secret(&self, client_id: &str, secret: &str) -> bool {
        client_id == self.settings.client_id && secret == self.settings.client_secret
    }

    fn check_client(&self, client_id: &str) -> Result<(), OAuthError> {
        if client_id == self.settings.client_id {
            Ok(())
        } else {
            Err(OAuthError::new(
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ))
        }
    }

    fn issue(
        &mut self,
        login: String,
        (access_token, refresh_token): (String, String),
        kind: &'static str,
        now: SystemTime,
    ) -> Issued {
        let s = &self.settings;
        let expires_at = now + s.user_token_lifetime;
        self.access.insert(
            access_token.clone(),
            UserGrant {
                login: login.clone(),
                expires_at,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            (
                login.clone(),
                now + s.refresh_token_lifetime,
                access_token.clone(),
            ),
        );
        self.events.push(UserEvent {
            kind,
            login,
            access_token: access_token.clone(),
            refresh_token: Some(refresh_token.clone()),
            expires_at: Some(expires_at),
        });
        Issued {
            access_token,
            expires_in: s.user_token_lifetime.as_secs(),
            refresh_token,
            refresh_token_expires_in: s.refresh_token_lifetime.as_secs(),
        }
    }
}

/// Polls this much early still count as on time (timer jitter between the two clocks).
const POLL_SLACK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> UserStore {
        UserStore::new(DeviceSettings {
            client_id: "Iv1.test".into(),
            client_secret: "s".into(),
            code_lifetime: Duration::from_secs(900),
            interval: Duration::from_secs(5),
            slow_down_step: Duration::from_secs(5),
            user_token_lifetime: Duration::from_secs(28800),
            refresh_token_lifetime: Duration::from_secs(15_811_200),
        })
    }

    fn pair(n: u32) -> (String, String) {
        (format!("ghu_{n}"), format!("ghr_{n}"))
    }

    #[test]
    fn device_flow_from_pending_to_refresh_and_revoke() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = store();
        assert_eq!(
            s.device_code("nope", "d".into(), "U".into(), t0)
                .unwrap_err()
                .error,
            "incorrect_client_credentials"
        );
        s.device_code("Iv1.test", "d1".into(), "AAAA-BBBB".into(), t0)
            .unwrap();
        let poll = |s: &mut UserStore, t| s.poll("Iv1.test", "d1", pair(1), t);
        assert_eq!(
            poll(&mut s, at(5)).unwrap_err().error,
            "authorization_pending"
        );
        let slow = poll(&mut s, at(6)).unwrap_err();
        assert_eq!((slow.error, slow.interval), ("slow_down", Some(10)));
        assert!(s.decide("AAAA-BBBB", Some("octo")));
        let issued = poll(&mut s, at(16)).unwrap();
        assert_eq!(s.user(&issued.access_token, at(17)), Some("octo"));
        assert_eq!(s.user(&issued.access_token, at(16 + 28800)), None);
        assert_eq!(
            poll(&mut s, at(30)).unwrap_err().error,
            "incorrect_device_code"
        );

        let renewed = s
            .refresh("Iv1.test", &issued.refresh_token, pair(2), at(100))
            .unwrap();
        assert_eq!(s.user(&issued.access_token, at(101)), None);
        assert_eq!(s.user(&renewed.access_token, at(101)), Some("octo"));
        assert_eq!(
            s.refresh("Iv1.test", &issued.refresh_token, pair(3), at(102))
                .unwrap_err()
                .error,
            "bad_refresh_token"
        );
        assert!(s.revoke(&renewed.access_token));
        assert_eq!(s.user(&renewed.access_token, at(103)), None);
        assert!(
            s.refresh("Iv1.test", &renewed.refresh_token, pair(4), at(104))
                .is_err()
        );
        let kinds: Vec<_> = s.events().iter().map(|e| e.kind).collect();
        assert_eq!(kinds, ["device", "refresh", "revoke"]);
    }

    #[test]
    fn denied_and_expired_codes() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut s = store();
        s.device_code("Iv1.test", "d1".into(), "A".into(), t0)
            .unwrap();
        s.device_code("Iv1.test", "d2".into(), "B".into(), t0)
            .unwrap();
        assert!(s.decide("A", None));
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            s.poll("Iv1.test", "d1", pair(1), later).unwrap_err().error,
            "access_denied"
        );
        let expired = t0 + Duration::from_secs(900);
        assert_eq!(
            s.poll("Iv1.test", "d2", pair(2), expired)
                .unwrap_err()
                .error,
            "expired_token"
        );
    }
}
