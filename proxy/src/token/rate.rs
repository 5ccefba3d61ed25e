//! A budget of calls a sandbox can make gitgate spend on GitHub: at most so many at once,
//! given back evenly over a period (a token bucket), on the monotonic clock.

use std::time::{Duration, Instant};

/// At most `most` calls, one more coming back every `period / most`.
pub(crate) struct RateBudget {
    most: f64,
    per_second: f64,
    left: f64,
    at: Instant,
}

impl RateBudget {
    /// A full budget of `most` calls per `period`, as of `now`.
    pub(crate) fn new(most: u32, period: Duration, now: Instant) -> Self {
        let most = f64::from(most);
        Self {
            most,
            per_second: most / period.as_secs_f64(),
            left: most,
            at: now,
        }
    }

    /// Takes one call at `now`, if one is left.
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.left = (self.left + refill).min(self.most);
        self.at = now;
        let left = self.left >= 1.0;
        if left {
            self.left -= 1.0;
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_held_to_the_budget_and_it_refills_evenly() {
        let start = Instant::now();
        let mut budget = RateBudget::new(30, Duration::from_secs(60), start);
        for n in 0..30 {
            assert!(budget.take(start), "call {n}");
        }
        assert!(!budget.take(start));
        // One call comes back every 2 s.
        let every = Duration::from_secs(2);
        assert!(!budget.take(start + every / 2));
        assert!(budget.take(start + every));
        assert!(!budget.take(start + every));
        // Idle for long, it holds no more than one period's worth.
        let later = start + Duration::from_secs(3600);
        let taken = (0..60).take_while(|_| budget.take(later)).count();
        assert_eq!(taken, 30);
    }
}
