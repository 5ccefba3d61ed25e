//! Bytes held against one limit shared by every client: the disk of pushes held for the
//! content rules (`limits.maxHeldPushBytes`), the memory of request bodies read to decide
//! on (`limits.maxBufferedBodyBytes`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A limit, and how much of it is taken.
pub(crate) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    pub(crate) fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
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
}

/// Part of a budget, given back when dropped.
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Reservation {
    /// An empty share of `budget`.
    pub(crate) fn new(budget: Arc<Budget>) -> Self {
        Self { budget, bytes: 0 }
    }

    /// The budget it is a share of.
    pub(crate) fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Takes `more` bytes of the budget; `false` if that would exceed it.
    pub(crate) fn grow(&mut self, more: u64) -> bool {
        let limit = self.budget.limit;
        let taken = self
            .budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|total| *total <= limit)
            })
            .is_ok();
        if taken {
            self.bytes += more;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_bounded_together_and_given_back_when_dropped() {
        let budget = Budget::new(100);
        let mut a = Reservation::new(budget.clone());
        let mut b = Reservation::new(budget.clone());
        assert!(a.grow(60));
        assert!(!b.grow(41));
        assert!(b.grow(40));
        assert_eq!(budget.used(), 100);
        drop(b);
        assert_eq!(budget.used(), 60);
        assert!(!a.grow(u64::MAX));
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
