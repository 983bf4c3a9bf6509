//! The request rate limit of the API (SPEC §7): a token bucket per token (or per user, for
//! requests made with a session), from `governor`. A request over the limit is answered 429 with
//! `Retry-After` and does no work.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

/// Keys seen before the limiter forgets the idle ones (a few bytes each).
const FORGET_AFTER_KEYS: usize = 10_000;

#[derive(Debug)]
pub struct ApiLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU32,
}

impl ApiLimiter {
    /// `per_second` requests a second sustained, `burst` at once.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts a request of `key`: `Err(seconds to wait)` when it is over the limit.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        // Now and then, forget keys whose bucket is full again, so that memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed).is_multiple_of(1024)
            && self.limiter.len() > FORGET_AFTER_KEYS
        {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_key_waits_and_other_keys_do_not() {
        let l = ApiLimiter::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert_eq!(l.check("a"), Ok(()));
        }
        assert_eq!(l.check("a"), Err(1), "over the burst: wait about a second");
        assert_eq!(l.check("b"), Ok(()), "another token has its own bucket");
    }
}
