//! Bytes held against one limit shared by every client, with a share per client address
//! so that no client can take it all from the others: the disk of pushes held for the
//! content rules (`limits.maxHeldPushBytes`), the memory of request bodies read to decide
//! on (`limits.maxBufferedBodyBytes`), …

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::gauge::Gauge;

/// A limit, and how much of it is taken.
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    /// The most one client address may hold.
    per_client: u64,
    /// What each client address holds.
    clients: Mutex<HashMap<IpAddr, u64>>,
    /// `used`, as a metric.
    gauge: Gauge,
}

/// Why a [`Reservation`] could not grow.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Spent {
    /// All clients together hold the limit.
    All,
    /// This client holds its share.
    Client,
}

impl Budget {
    /// `limit` bytes for all clients together, at most `per_client` for one address; what
    /// is held is shown by `gauge`.
    pub(crate) fn new(limit: u64, per_client: u64, gauge: Gauge) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            per_client,
            clients: Mutex::default(),
            gauge,
        })
    }

    /// Bytes held now.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// What a refusal says of it: `LIMIT (USED held now)`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({} held now)",
            gitgate_policy::ByteSize(self.limit),
            gitgate_policy::ByteSize(self.used())
        )
    }

    /// What all clients together may hold.
    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    /// The share one client may hold.
    pub(crate) fn per_client(&self) -> u64 {
        self.per_client
    }

    fn clients(&self) -> MutexGuard<'_, HashMap<IpAddr, u64>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Part of a budget, given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    client: IpAddr,
    bytes: u64,
}

impl Reservation {
    /// An empty share of `budget`, for `client`.
    pub(crate) fn new(budget: Arc<Budget>, client: IpAddr) -> Self {
        Self {
            budget,
            client,
            bytes: 0,
        }
    }

    /// The budget it is a share of.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Bytes it holds.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Takes `more` bytes of the budget, or says which limit refuses them.
    pub(crate) fn grow(&mut self, more: u64) -> Result<(), Spent> {
        if more == 0 {
            return Ok(());
        }
        let mut clients = self.budget.clients();
        let held = clients.get(&self.client).copied().unwrap_or(0);
        let limit = self.budget.limit;
        // A share as large as the whole is no limit of its own: the whole is what refuses.
        let share = self.budget.per_client;
        if share < limit && held.checked_add(more).is_none_or(|total| total > share) {
            return Err(Spent::Client);
        }
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|total| *total <= limit)
            })
            .map_err(|_| Spent::All)?;
        *clients.entry(self.client).or_insert(0) += more;
        self.budget.gauge.inc_by(gauged(more));
        self.bytes += more;
        Ok(())
    }

    /// Gives back all but `bytes` of what it holds.
    pub(crate) fn shrink_to(&mut self, bytes: u64) {
        if let Some(less) = self.bytes.checked_sub(bytes) {
            self.give_back(less);
        }
    }

    fn give_back(&mut self, less: u64) {
        if less == 0 {
            return;
        }
        self.budget.used.fetch_sub(less, Ordering::AcqRel);
        self.budget.gauge.dec_by(gauged(less));
        let mut clients = self.budget.clients();
        if let Some(held) = clients.get_mut(&self.client) {
            *held -= less;
            if *held == 0 {
                clients.remove(&self.client);
            }
        }
        self.bytes -= less;
    }
}

/// `bytes` as a gauge's value (no budget holds more than `i64::MAX` bytes).
fn gauged(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_bounded_together_and_given_back_when_dropped() {
        let gauge = Gauge::default();
        let budget = Budget::new(100, 100, gauge.clone());
        let mut a = Reservation::new(budget.clone(), [10, 0, 0, 1].into());
        let mut b = Reservation::new(budget.clone(), [10, 0, 0, 2].into());
        assert_eq!(a.grow(60), Ok(()));
        assert_eq!(b.grow(41), Err(Spent::All));
        assert_eq!(b.grow(40), Ok(()));
        assert_eq!(budget.used(), 100);
        assert_eq!(gauge.get(), 100, "the metric shows what is held");
        drop(b);
        assert_eq!((budget.used(), gauge.get()), (60, 60));
        assert_eq!(
            a.grow(u64::MAX),
            Err(Spent::All),
            "a share of the whole is no limit"
        );
        a.shrink_to(10);
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!((budget.used(), gauge.get()), (0, 0));
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share() {
        let budget = Budget::new(100, 40, Gauge::default());
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let mut x1 = Reservation::new(budget.clone(), x);
        let mut x2 = Reservation::new(budget.clone(), x);
        assert_eq!(x1.grow(30), Ok(()));
        assert_eq!(x2.grow(11), Err(Spent::Client), "x's share is spent");
        assert_eq!(x2.grow(10), Ok(()));
        let mut y1 = Reservation::new(budget.clone(), y);
        assert_eq!(y1.grow(40), Ok(()), "y is not held back by x");
        let mut z = Reservation::new(budget.clone(), "10.0.0.3".parse().unwrap());
        assert_eq!(z.grow(21), Err(Spent::All));
        drop(x1);
        drop(x2);
        assert_eq!(budget.used(), 40);
        assert!(budget.clients().get(&x).is_none(), "no entry is left");
    }
}
