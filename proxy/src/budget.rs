//! Bytes held against one limit shared by every client: the disk of pushes held for the
//! content rules (`limits.maxHeldPushBytes`), the memory of request bodies read to decide
//! on (`limits.maxBufferedBodyBytes`, with a share per client address so that no client
//! can take it all from the others).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A limit, and how much of it is taken.
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
    /// The most one client address may hold, and what each holds.
    per_client: Option<(u64, Mutex<HashMap<IpAddr, u64>>)>,
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
    /// `limit` bytes for all clients together.
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            per_client: None,
        })
    }

    /// `limit` bytes for all clients together, at most `per_client` for one address.
    pub(crate) fn shared(limit: u64, per_client: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
            per_client: Some((per_client, Mutex::default())),
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

    /// The share one client may hold, if there is one.
    pub(crate) fn per_client(&self) -> Option<u64> {
        self.per_client.as_ref().map(|(limit, _)| *limit)
    }

    fn clients(&self) -> Option<std::sync::MutexGuard<'_, HashMap<IpAddr, u64>>> {
        let (_, clients) = self.per_client.as_ref()?;
        Some(clients.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Part of a budget, given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    client: Option<IpAddr>,
    bytes: u64,
}

impl Reservation {
    /// An empty share of `budget`, for `client` when the budget has per-client shares.
    pub(crate) fn new(budget: Arc<Budget>, client: Option<IpAddr>) -> Self {
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
        let mut clients = self.client.and(self.budget.clients());
        if let (Some(clients), Some(client), Some(share)) =
            (clients.as_deref(), self.client, self.budget.per_client())
        {
            let held = clients.get(&client).copied().unwrap_or(0);
            if held.checked_add(more).is_none_or(|total| total > share) {
                return Err(Spent::Client);
            }
        }
        let limit = self.budget.limit;
        self.budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|total| *total <= limit)
            })
            .map_err(|_| Spent::All)?;
        if let (Some(clients), Some(client)) = (clients.as_deref_mut(), self.client) {
            *clients.entry(client).or_insert(0) += more;
        }
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
        if let (Some(mut clients), Some(client)) = (self.budget.clients(), self.client)
            && let Some(held) = clients.get_mut(&client)
        {
            *held -= less;
            if *held == 0 {
                clients.remove(&client);
            }
        }
        self.bytes -= less;
    }
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
        let budget = Budget::new(100);
        let mut a = Reservation::new(budget.clone(), None);
        let mut b = Reservation::new(budget.clone(), None);
        assert_eq!(a.grow(60), Ok(()));
        assert_eq!(b.grow(41), Err(Spent::All));
        assert_eq!(b.grow(40), Ok(()));
        assert_eq!(budget.used(), 100);
        drop(b);
        assert_eq!(budget.used(), 60);
        assert_eq!(a.grow(u64::MAX), Err(Spent::All));
        a.shrink_to(10);
        assert_eq!(budget.used(), 10);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn one_client_cannot_take_more_than_its_share() {
        let budget = Budget::shared(100, 40);
        let x: IpAddr = "10.0.0.1".parse().unwrap();
        let y: IpAddr = "10.0.0.2".parse().unwrap();
        let mut x1 = Reservation::new(budget.clone(), Some(x));
        let mut x2 = Reservation::new(budget.clone(), Some(x));
        assert_eq!(x1.grow(30), Ok(()));
        assert_eq!(x2.grow(11), Err(Spent::Client), "x's share is spent");
        assert_eq!(x2.grow(10), Ok(()));
        let mut y1 = Reservation::new(budget.clone(), Some(y));
        assert_eq!(y1.grow(40), Ok(()), "y is not held back by x");
        let mut z = Reservation::new(budget.clone(), Some("10.0.0.3".parse().unwrap()));
        assert_eq!(z.grow(21), Err(Spent::All));
        drop(x1);
        drop(x2);
        assert_eq!(budget.used(), 40);
        assert!(
            budget.clients().unwrap().get(&x).is_none(),
            "no entry is left"
        );
    }
}
