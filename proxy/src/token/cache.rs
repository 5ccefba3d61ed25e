//! Installation tokens cached per (installation, scope), minted once for all waiters,
//! refreshed in the background ahead of expiry, with backoff after failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gitgate_policy::TokenScope;

use super::TokenError;
use super::app::{AppClient, Minted};
use crate::metrics::{Metrics, Outcome};

/// After a failure, the next mint waits this long, doubling up to [`MAX_BACKOFF`]. Kept on
/// the monotonic clock: a wall clock stepped backwards must not lengthen it.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What a cached token is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ScopeKey {
    pub(crate) owner: String,
    pub(crate) installation: u64,
    pub(crate) scope: TokenScope,
}

#[derive(Default)]
struct SlotState {
    token: Option<Minted>,
    failure: Option<(TokenError, Instant)>,
    failures: u32,
    refreshing: bool,
}

/// One scope's token; `mint_lock` makes concurrent callers share one mint.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    mint_lock: tokio::sync::Mutex<()>,
}

impl Slot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When its token expires, if it is live or expired because renewing it failed.
    fn expiry_on_record(&self, now: SystemTime) -> Option<SystemTime> {
        let state = self.state();
        let expires_at = state.token.as_ref()?.expires_at;
        (expires_at > now || state.failure.is_some()).then_some(expires_at)
    }

    /// Nothing to keep: no token that can still be sent, no mint running, no backoff to
    /// remember. Such a scope is minted again when asked for.
    fn idle(&self, now: SystemTime, clock: Instant) -> bool {
        let Ok(_not_minting) = self.mint_lock.try_lock() else {
            return false;
        };
        let state = self.state();
        !state.refreshing
            && state.token.as_ref().is_none_or(|t| !t.usable(now))
            && state
                .failure
                .as_ref()
                .is_none_or(|(_, until)| *until <= clock)
    }
}

impl Minted {
    /// Safe to send: enough lifetime left that it will not expire in flight.
    fn usable(&self, now: SystemTime) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.minted_at)
            .unwrap_or_default();
        let guard = (lifetime / 4).min(Duration::from_secs(60));
        self.expires_at
            .duration_since(now)
            .is_ok_and(|left| left > guard)
    }

    /// Time to mint its successor.
    fn due(&self, now: SystemTime, margin: Duration) -> bool {
        let lifetime = self
            .expires_at
            .duration_since(self.minted_at)
            .unwrap_or_default();
        let margin = margin.min(lifetime / 2);
        self.expires_at
            .duration_since(now)
            .map_or(true, |left| left < margin)
    }
}

/// The token cache of one GitHub App.
pub(crate) struct TokenCache {
    client: Arc<AppClient>,
    metrics: Arc<Metrics>,
    refresh_margin: Duration,
    slots: Mutex<HashMap<ScopeKey, Arc<Slot>>>,
}

impl TokenCache {
    pub(crate) fn new(
        client: Arc<AppClient>,
        refresh_margin: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            metrics,
            refresh_margin,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &ScopeKey) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = slots.get(key) {
            return slot.clone();
        }
        // A new scope: let go of the scopes left idle first, so that the cache holds
        // what is in use (many repository sets or profiles over a long run).
        let (now, clock) = (SystemTime::now(), Instant::now());
        slots.retain(|_, slot| !slot.idle(now, clock));
        slots.entry(key.clone()).or_default().clone()
    }

    /// A usable token for `key`. Waits on GitHub only when no usable token exists.
    pub(crate) async fn get(self: &Arc<Self>, key: &ScopeKey) -> Result<Minted, TokenError> {
        let slot = self.slot(key);
        let now = SystemTime::now();
        {
            let mut state = slot.state();
            if let Some(token) = state.token.clone().filter(|t| t.usable(now)) {
                let backing_off = state
                    .failure
                    .as_ref()
                    .is_some_and(|(_, until)| Instant::now() < *until);
                if token.due(now, self.refresh_margin) && !state.refreshing && !backing_off {
                    state.refreshing = true;
                    let (cache, key, slot) = (self.clone(), key.clone(), slot.clone());
                    tokio::spawn(async move {
                        let _guard = slot.mint_lock.lock().await;
                        if let Err(error) = cache.mint(&key, &slot).await {
                            tracing::warn!(%error, installation = key.installation, "token refresh failed; the current token stays in use");
                        }
                        slot.state().refreshing = false;
                    });
                }
                return Ok(token);
            }
        }
        let _guard = slot.mint_lock.lock().await;
        {
            let state = slot.state();
            let now = SystemTime::now();
            if let Some(token) = state.token.clone().filter(|t| t.usable(now)) {
                return Ok(token);
            }
            if let Some((error, until)) = &state.failure
                && Instant::now() < *until
            {
                return Err(error.clone());
            }
        }
        self.mint(key, &slot).await
    }

    async fn mint(&self, key: &ScopeKey, slot: &Slot) -> Result<Minted, TokenError> {
        let result = self.client.mint(key.installation, &key.scope).await;
        let mut state = slot.state();
        self.metrics.token_mint(if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        });
        match &result {
            Ok(minted) => {
                tracing::info!(
                    installation = key.installation,
                    owner = %key.owner,
                    repositories = ?key.scope.repositories,
                    expires_in_s = minted.expires_at.duration_since(SystemTime::now()).unwrap_or_default().as_secs(),
                    "minted installation token"
                );
                state.token = Some(minted.clone());
                state.failure = None;
                state.failures = 0;
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1 << state.failures.min(6).saturating_sub(1))
                    .min(MAX_BACKOFF);
                state.failure = Some((error.clone(), Instant::now() + backoff));
            }
        }
        result
    }

    /// Forgets `secret` if it is still cached (GitHub refused it).
    pub(crate) fn invalidate(&self, key: &ScopeKey, secret: &super::Secret) {
        let slot = self.slot(key);
        let mut state = slot.state();
        if state.token.as_ref().is_some_and(|t| &t.secret == secret) {
            state.token = None;
        }
    }

    /// Drops every cached token whose scope `keep` no longer accepts.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&ScopeKey) -> bool) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|key, _| keep(key));
    }

    /// When the soonest cached token expires (for metrics): of those still live, and of
    /// those that expired because renewing them failed. A scope nobody used since its
    /// token expired does not pin the figure at zero; one whose renewal fails does.
    pub(crate) fn soonest_expiry(&self, now: SystemTime) -> Option<SystemTime> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .filter_map(|slot| slot.expiry_on_record(now))
            .min()
    }

    /// Whether some cached token can be sent now (for readiness).
    pub(crate) fn any_usable(&self, now: SystemTime) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .values()
            .any(|slot| slot.state().token.as_ref().is_some_and(|t| t.usable(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    fn minted(lifetime: u64, age: u64) -> (Minted, SystemTime) {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let m = Minted {
            secret: Secret::new("t"),
            minted_at: start,
            expires_at: start + Duration::from_secs(lifetime),
        };
        (m, start + Duration::from_secs(age))
    }

    #[test]
    fn hour_tokens_refresh_ten_minutes_ahead_and_stay_usable_until_the_last_minute() {
        let margin = Duration::from_secs(600);
        let (t, now) = minted(3600, 2900);
        assert!(t.usable(now) && !t.due(now, margin));
        let (t, now) = minted(3600, 3001);
        assert!(t.usable(now) && t.due(now, margin));
        let (t, now) = minted(3600, 3541);
        assert!(!t.usable(now));
    }

    #[test]
    fn a_slot_is_idle_only_without_a_usable_token_a_mint_or_a_backoff() {
        let (now, clock) = (SystemTime::now(), Instant::now());
        let slot = Slot::default();
        assert!(slot.idle(now, clock));
        let token = |left: u64| Minted {
            secret: Secret::new("t"),
            minted_at: now - Duration::from_secs(3600 - left),
            expires_at: now + Duration::from_secs(left),
        };
        slot.state().token = Some(token(600));
        assert!(!slot.idle(now, clock));
        slot.state().token = Some(token(10));
        assert!(slot.idle(now, clock), "a token past its last usable minute");
        slot.state().failure = Some((
            TokenError::Static("x".into()),
            clock + Duration::from_secs(5),
        ));
        assert!(!slot.idle(now, clock), "a backoff still running");
        slot.state().failure = Some((TokenError::Static("x".into()), clock));
        assert!(slot.idle(now, clock));
        let _minting = slot.mint_lock.try_lock().unwrap();
        assert!(!slot.idle(now, clock), "a mint running");
    }

    #[test]
    fn a_backoff_ends_by_the_monotonic_clock_whatever_the_wall_clock_says() {
        let (now, clock) = (SystemTime::now(), Instant::now());
        let slot = Slot::default();
        slot.state().failure = Some((
            TokenError::Static("x".into()),
            clock + Duration::from_secs(5),
        ));
        let hour = Duration::from_secs(3600);
        assert!(!slot.idle(now + hour, clock), "wall clock stepped forwards");
        assert!(
            slot.idle(now - hour, clock + Duration::from_secs(5)),
            "wall clock stepped back"
        );
    }

    #[test]
    fn an_expired_token_counts_for_the_expiry_gauge_only_if_renewing_it_failed() {
        let now = SystemTime::now();
        let slot = Slot::default();
        assert_eq!(slot.expiry_on_record(now), None);
        let later = |secs| now + Duration::from_secs(secs);
        let earlier = |secs| now - Duration::from_secs(secs);
        let token = |expires: SystemTime| Minted {
            secret: Secret::new("t"),
            minted_at: earlier(3600),
            expires_at: expires,
        };
        slot.state().token = Some(token(later(600)));
        assert_eq!(slot.expiry_on_record(now), Some(later(600)));
        slot.state().token = Some(token(earlier(5)));
        assert_eq!(slot.expiry_on_record(now), None, "expired unused");
        slot.state().failure = Some((
            TokenError::Static("x".into()),
            Instant::now() + Duration::from_secs(30),
        ));
        assert_eq!(
            slot.expiry_on_record(now),
            Some(earlier(5)),
            "renewal failed"
        );
    }

    #[test]
    fn short_tokens_scale_their_margins() {
        let margin = Duration::from_secs(600);
        let (t, now) = minted(8, 1);
        assert!(t.usable(now) && !t.due(now, margin));
        let (t, now) = minted(8, 5);
        assert!(t.usable(now) && t.due(now, margin));
        let (t, now) = minted(8, 7);
        assert!(!t.usable(now));
    }
}
