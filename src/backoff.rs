//! How long to wait before trying again after failures in a row: a delay that doubles with
//! each failure, up to a cap. The reconcile controller, the job workers and the receipt
//! appender all retry with it. It only computes delays; it never sleeps or counts failures.

use std::time::Duration;

/// Doubling delays from `first`, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The delay after `failures` failures in a row: `first` after one, twice that after two,
    /// and so on, never more than `max` (and nothing before any failure).
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(doublings) = failures.checked_sub(1) else { return Duration::ZERO };
        let factor = 2u32.checked_pow(doublings).unwrap_or(u32::MAX);
        self.first.checked_mul(factor).unwrap_or(Duration::MAX).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));

    #[test]
    fn the_delay_doubles_with_each_failure_in_a_row() {
        let delays: Vec<_> = (1..=5).map(|failures| BACKOFF.delay(failures).as_millis()).collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000]);
    }

    #[test]
    fn the_delay_never_exceeds_the_cap_however_many_failures() {
        for failures in [8, 9, 31, 32, 33, 1000, u32::MAX] {
            assert_eq!(BACKOFF.delay(failures), Duration::from_secs(30), "{failures}");
        }
    }

    #[test]
    fn there_is_no_delay_before_any_failure() {
        assert_eq!(BACKOFF.delay(0), Duration::ZERO);
    }
}
