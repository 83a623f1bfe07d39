//! A request rate limit: one token bucket (governor's GCRA) that refills `requestsPerSecond`
//! tokens a second and holds at most that many, so a burst of up to one second's worth passes
//! at once and a steady stream at the rate always passes. A gate holds one; it never keeps state
//! keyed by anything a request carries, so its memory is one bucket whatever the traffic.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::num::NonZeroU32;
use std::time::Duration;

/// A token bucket of `per_second` tokens, refilled at `per_second` a second.
pub struct RateLimit<C: Clock = DefaultClock> {
    per_second: NonZeroU32,
    bucket: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
}

/// A request the bucket had no token for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// The limit that refused it, in requests per second.
    pub per_second: u32,
    /// Whole seconds until a token is back, at least 1 (what `Retry-After` says).
    pub retry_after_secs: u64,
}

impl RateLimit {
    pub fn new(per_second: NonZeroU32) -> Self {
        Self::with_clock(per_second, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimit<C> {
    fn with_clock(per_second: NonZeroU32, clock: C) -> Self {
        let bucket = RateLimiter::direct_with_clock(Quota::per_second(per_second), clock.clone());
        Self { per_second, bucket, clock }
    }

    /// The limit, in requests per second.
    pub fn per_second(&self) -> NonZeroU32 {
        self.per_second
    }

    /// Takes a token for one request, or says how long until there is one.
    pub fn take(&self) -> Result<(), Limited> {
        self.bucket.check().map_err(|refused| Limited {
            per_second: self.per_second.get(),
            retry_after_secs: whole_seconds(refused.wait_time_from(self.clock.now())),
        })
    }
}

impl<C: Clock> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RateLimit({}/s)", self.per_second)
    }
}

/// `wait` rounded up to whole seconds, at least 1: a client that waits that long finds a token.
fn whole_seconds(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limit(per_second: u32) -> (RateLimit<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (RateLimit::with_clock(NonZeroU32::new(per_second).unwrap(), clock.clone()), clock)
    }

    fn passed(limit: &RateLimit<FakeRelativeClock>, tries: u32) -> u32 {
        (0..tries).filter(|_| limit.take().is_ok()).count() as u32
    }

    #[test]
    fn a_burst_passes_exactly_one_seconds_worth_and_no_more() {
        let (limit, _clock) = limit(5);
        assert_eq!(passed(&limit, 20), 5);
        assert_eq!(limit.take(), Err(Limited { per_second: 5, retry_after_secs: 1 }));
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let (limit, clock) = limit(5);
        assert_eq!(passed(&limit, 5), 5);
        clock.advance(Duration::from_millis(199));
        assert_eq!(passed(&limit, 5), 0, "a token takes 200 ms to come back");
        clock.advance(Duration::from_millis(1));
        assert_eq!(passed(&limit, 5), 1);
        clock.advance(Duration::from_secs(10));
        assert_eq!(passed(&limit, 20), 5, "an idle bucket holds one second's worth, never more");
    }

    #[test]
    fn a_steady_stream_at_the_rate_always_passes() {
        let (limit, clock) = limit(50);
        for _ in 0..500 {
            assert!(limit.take().is_ok());
            clock.advance(Duration::from_millis(20));
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        let (limit, _clock) = limit(1);
        assert_eq!(passed(&limit, 1), 1);
        assert_eq!(limit.take().unwrap_err().retry_after_secs, 1);
    }

    #[test]
    fn the_highest_rate_a_spec_may_set_keeps_its_count() {
        // A token every microsecond: governor's nanosecond arithmetic stays exact.
        let max = crate::spec::MAX_REQUESTS_PER_SECOND;
        let (limit, clock) = limit(max);
        assert_eq!(passed(&limit, max + 10), max);
        clock.advance(Duration::from_micros(3));
        assert_eq!(passed(&limit, 10), 3);
    }
}
