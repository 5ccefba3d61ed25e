//! The memory a held push's check holds (what it reads out of the pack: the object list,
//! decoded commits and trees), charged to the client's share of `limits.maxPushCheckBytes`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use gitgate_policy::ByteSize;

use crate::budget::{Budget, Reservation, Spent};
use crate::pack::PackError;

/// What a held push's check holds in memory (what it reads out of the pack), charged to
/// its client's share of `limits.maxPushCheckBytes` a MiB at a time, and given back when
/// the push is done.
pub(crate) struct Metered {
    charged: Mutex<(Reservation, u64)>,
    /// Which limit refused a charge, if one did.
    spent: OnceLock<Spent>,
}

impl Metered {
    /// Charges are taken from the budget this many bytes at a time.
    const STEP: u64 = 1 << 20;

    /// A meter charging `client`'s share of `budget`.
    pub(crate) fn new(budget: &Arc<Budget>, client: IpAddr) -> Arc<Self> {
        Arc::new(Self {
            charged: Mutex::new((Reservation::new(Arc::clone(budget), client), 0)),
            spent: OnceLock::new(),
        })
    }

    /// Takes `bytes` more, or refuses them naming the limit.
    pub(crate) fn charge(&self, bytes: u64) -> Result<(), PackError> {
        let mut charged = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        let (reservation, used) = &mut *charged;
        *used = used.saturating_add(bytes);
        let more = used.saturating_sub(reservation.bytes());
        if more == 0 {
            return Ok(());
        }
        // A step at a time, or what is needed exactly when a whole step no longer fits.
        let grown = reservation
            .grow(more.max(Self::STEP))
            .or_else(|_| reservation.grow(more));
        grown.map_err(|spent| {
            let budget = reservation.budget();
            let reason = match spent {
                Spent::All => format!(
                    "checking it would take the memory gitgate's push checks hold past limits.maxPushCheckBytes {}; retry shortly",
                    budget.describe()
                ),
                Spent::Client => format!(
                    "checking it would take this client's push checks past limits.maxPushCheckBytesPerClient {}; push fewer commits and trees at once",
                    ByteSize(budget.per_client())
                ),
            };
            let _ = self.spent.set(spent);
            crate::pack::fail(reason)
        })
    }

    /// What is charged now.
    pub(crate) fn used(&self) -> u64 {
        self.charged.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    /// Gives back `bytes` charged for what is no longer held.
    pub(crate) fn give_back(&self, bytes: u64) {
        let mut charged = self.charged.lock().unwrap_or_else(|p| p.into_inner());
        let (reservation, used) = &mut *charged;
        *used = used.saturating_sub(bytes);
        reservation.shrink_to(*used);
    }

    /// The rule of a failed check: the limit that refused a charge, else `pack`.
    pub(crate) fn rule(&self) -> &'static str {
        match self.spent.get() {
            Some(Spent::All) => "limits.maxPushCheckBytes",
            Some(Spent::Client) => "limits.maxPushCheckBytesPerClient",
            None => "pack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checks_memory_is_charged_a_mib_at_a_time_and_given_back() {
        let budget = Budget::new(8 << 20, 4 << 20, Default::default());
        let meter = Metered::new(&budget, [10, 0, 0, 1].into());
        meter.charge(100).unwrap();
        assert_eq!((meter.used(), budget.used()), (100, 1 << 20));
        meter.charge(3 << 20).unwrap();
        assert_eq!(budget.used(), (3 << 20) + 100);
        // What a replaced decode held comes back.
        meter.give_back(3 << 20);
        assert_eq!((meter.used(), budget.used()), (100, 100));
        // Past the client's share: refused, naming it.
        let refused = meter.charge(5 << 20).unwrap_err().to_string();
        assert!(
            refused.contains("limits.maxPushCheckBytesPerClient"),
            "{refused}"
        );
        assert_eq!(meter.rule(), "limits.maxPushCheckBytesPerClient");
        drop(meter);
        assert_eq!(budget.used(), 0);
    }

    /// Near the share's end a whole step no longer fits, but what is needed still does.
    #[test]
    fn a_charge_that_fits_the_share_exactly_is_taken() {
        let budget = Budget::new(8 << 20, 1 << 20, Default::default());
        let meter = Metered::new(&budget, [10, 0, 0, 1].into());
        meter.charge(3000).unwrap();
        meter.give_back(0);
        assert_eq!(budget.used(), 3000);
        meter.charge(200).unwrap();
        assert_eq!(meter.used(), 3200);
        assert!(meter.charge(1 << 20).is_err());
    }
}
