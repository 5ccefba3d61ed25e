//! Keeps `github.user.sessionFile` current: every change to a session wakes a task that
//! seals all of them again (retrying a failed write with backoff); logout waits for its
//! own write, so that it can say whether a restart would bring the session back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::sealed::{Contents, Saved, SessionFileError, SessionStore};
use super::user::UserSource;

/// The sessions by profile.
pub(crate) type Sessions = Arc<SessionMap>;
type SessionMap = Mutex<HashMap<Arc<str>, Arc<UserSource>>>;

/// A failed write is retried after this long, doubling up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(300);
/// How long shutdown waits for renewals under way: longer than the API client's
/// 30-second request timeout, so that a slow renewal's new refresh token is not lost.
const SETTLE: Duration = Duration::from_secs(35);

/// The session file of a running gitgate (inert until [`Persistence::start`]).
pub(crate) struct Persistence {
    store: OnceLock<Arc<SessionStore>>,
    sessions: Weak<SessionMap>,
    /// Sessions of profiles whose file did not load at start: kept in the file, unused,
    /// until a reload brings their profile back (or finds its file gone), or they can no
    /// longer be renewed.
    dormant: Mutex<Vec<Saved>>,
    client_id: String,
    host: String,
    /// One write at a time, each of a snapshot taken while holding it.
    writing: Mutex<()>,
    changed: Notify,
    /// Set at shutdown: no renewal starts any more.
    closing: AtomicBool,
    /// Renewals under way, and a wake-up when one ends.
    renewing: AtomicUsize,
    renewed: Notify,
}

/// A renewal under way (see [`Persistence::renewal`]).
pub(crate) struct Renewing<'a>(&'a Persistence);

impl Drop for Renewing<'_> {
    fn drop(&mut self) {
        self.0.renewing.fetch_sub(1, Ordering::SeqCst);
        self.0.renewed.notify_one();
    }
}

impl Persistence {
    pub(crate) fn new(sessions: &Sessions, client_id: &str, host: &str) -> Self {
        Self {
            store: OnceLock::new(),
            sessions: Arc::downgrade(sessions),
            dormant: Mutex::default(),
            client_id: client_id.to_owned(),
            host: host.to_owned(),
            writing: Mutex::default(),
            changed: Notify::new(),
            closing: AtomicBool::new(false),
            renewing: AtomicUsize::new(0),
            renewed: Notify::new(),
        }
    }

    /// Permission to renew a session now; `None` once shutdown began (the refresh token
    /// stays as sealed, unspent).
    pub(crate) fn renewal(&self) -> Option<Renewing<'_>> {
        // Sequentially consistent with `settle`: one of the two sees the other's write.
        self.renewing.fetch_add(1, Ordering::SeqCst);
        let renewing = Renewing(self);
        (!self.closing.load(Ordering::SeqCst)).then_some(renewing)
    }

    /// Stops renewals from starting and waits (up to [`SETTLE`]) for those under way.
    pub(crate) async fn settle(&self) {
        self.closing.store(true, Ordering::SeqCst);
        let _ = tokio::time::timeout(SETTLE, async {
            while self.renewing.load(Ordering::SeqCst) > 0 {
                self.renewed.notified().await;
            }
        })
        .await;
    }

    /// What the file holds for `sessions`: this client's and host's.
    pub(crate) fn contents(&self, sessions: Vec<Saved>) -> Contents {
        Contents {
            client_id: self.client_id.clone(),
            host: self.host.clone(),
            sessions,
        }
    }

    /// Keeps `store` current from now on, with `dormant` carried along.
    pub(crate) fn start(self: &Arc<Self>, store: Arc<SessionStore>, dormant: Vec<Saved>) {
        *lock(&self.dormant) = dormant;
        if self.store.set(store).is_ok() {
            tokio::spawn(self.clone().run());
        }
    }

    /// A session changed: the file is rewritten soon.
    pub(crate) fn changed(&self) {
        if self.store.get().is_some() {
            self.changed.notify_one();
        }
    }

    /// Hands the kept-aside sessions whose profile `keep` now accepts (and that are still
    /// worth keeping) to `resume`, then stops keeping them aside. The list stays locked
    /// meanwhile, so that no write sees a session both in `resume`'s hands and aside, or
    /// in neither.
    pub(crate) fn revive(&self, keep: impl Fn(&str) -> bool, mut resume: impl FnMut(Saved)) {
        let now = SystemTime::now();
        let mut dormant = lock(&self.dormant);
        let (revived, kept): (Vec<Saved>, Vec<Saved>) =
            dormant.drain(..).partition(|s| keep(&s.profile));
        for saved in revived.into_iter().filter(|s| s.restorable(now)) {
            resume(saved);
        }
        *dormant = kept;
        drop(dormant);
        self.changed();
    }

    /// Drops the kept-aside sessions of the profiles `gone` names (out of the file too);
    /// returns them.
    pub(crate) fn drop_aside(&self, gone: impl Fn(&str) -> bool) -> Vec<Saved> {
        let dropped: Vec<Saved> = {
            let mut dormant = lock(&self.dormant);
            let (dropped, kept) = dormant.drain(..).partition(|s| gone(&s.profile));
            *dormant = kept;
            dropped
        };
        if !dropped.is_empty() {
            self.changed();
        }
        dropped
    }

    /// Seals every session now, if there is a file; waits for the disk. Returns how many
    /// sessions the file holds.
    pub(crate) async fn save(self: &Arc<Self>) -> Result<usize, SessionFileError> {
        let Some(store) = self.store.get().cloned() else {
            return Ok(0);
        };
        let (this, writer) = (self.clone(), store.clone());
        tokio::task::spawn_blocking(move || {
            let _one = lock(&this.writing);
            let contents = this.snapshot(SystemTime::now());
            writer.store(&contents).map(|()| contents.sessions.len())
        })
        .await
        .unwrap_or_else(|e| Err(store.error(format!("the write failed: {e}"))))
    }

    /// Every session worth keeping, as it stands.
    fn snapshot(&self, now: SystemTime) -> Contents {
        let mut sessions: Vec<Saved> = match self.sessions.upgrade() {
            Some(map) => lock(&map).values().filter_map(|s| s.saved()).collect(),
            None => Vec::new(),
        };
        sessions.extend(lock(&self.dormant).iter().cloned());
        sessions.retain(|s| s.restorable(now));
        self.contents(sessions)
    }

    async fn run(self: Arc<Self>) {
        let mut retry = FIRST_RETRY;
        loop {
            self.changed.notified().await;
            match self.save().await {
                Ok(count) => {
                    retry = FIRST_RETRY;
                    tracing::info!(sessions = count, "sealed the GitHub user sessions");
                }
                Err(error) => {
                    tracing::error!(
                        %error,
                        retry_in_s = retry.as_secs(),
                        "cannot save the GitHub user sessions; until it works, a restart brings back the sessions as they were last saved"
                    );
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(MAX_RETRY);
                    self.changed.notify_one();
                }
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shutdown_waits_for_renewals_under_way_and_starts_none() {
        let persistence = Arc::new(Persistence::new(
            &Sessions::default(),
            "Iv1.x",
            "https://github.com",
        ));
        let under_way = persistence
            .renewal()
            .expect("renewals start before shutdown");
        let (ended_tx, ended) = tokio::sync::oneshot::channel();
        let settling = {
            let persistence = persistence.clone();
            tokio::spawn(async move {
                persistence.settle().await;
                let _ = ended_tx.send(());
            })
        };
        let mut ended = ended;
        // While a renewal is under way, shutdown waits for it.
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        assert!(
            ended.try_recv().is_err(),
            "settled with a renewal under way"
        );
        assert!(
            persistence.renewal().is_none(),
            "a renewal started during shutdown"
        );
        drop(under_way);
        settling.await.unwrap();
        assert!(ended.try_recv().is_ok());
    }
}
