//! The endpoint's bounds on what a client may cost (SPEC §2 Limits): token buckets (new
//! connections per source address, messages per gateway, connection-history entries per
//! gateway) and a log that says a refusal once per interval, with how many it did not say, rather
//! than once per packet.
//!
//! Must not: decide what is refused (the endpoint and the sessions do) or sleep itself: a bucket
//! says how long to wait and the caller chooses whether to wait or to refuse.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `burst` tokens, refilled at `rate` a second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self { rate: rate.max(f64::MIN_POSITIVE), burst, tokens: burst, last: Instant::now() }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.refill(Instant::now());
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes a token for something already received: when there was none the bucket goes into
    /// debt and says how long to wait before receiving anything else, so that the sustained rate
    /// is the bucket's whatever the waits.
    pub fn take_or_wait(&mut self) -> Option<Duration> {
        self.refill(Instant::now());
        self.tokens -= 1.0;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }

    /// Whether the bucket is full again, i.e. the same as a new one (and can be forgotten).
    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// One token bucket per key, at most `max_keys` of them: when full, the buckets that have
/// refilled (those that would be created anew) are forgotten, and if that frees less than half,
/// all of them (an attacker with that many addresses gains nothing a new address would not give).
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: u32,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash + Copy> KeyedBuckets<K> {
    pub fn new(rate: f64, burst: u32, max_keys: usize) -> Self {
        Self { rate, burst, max_keys: max_keys.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token from `key`'s bucket; `false` when it has none.
    pub fn allow(&self, key: K) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else { return true };
        if buckets.len() >= self.max_keys && !buckets.contains_key(&key) {
            let now = Instant::now();
            buckets.retain(|_, b| !b.is_full(now));
            if buckets.len() >= self.max_keys / 2 {
                buckets.clear();
            }
        }
        buckets.entry(key).or_insert_with(|| TokenBucket::new(self.rate, self.burst)).try_take()
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// New connections per second per source address.
pub type AddressBuckets = KeyedBuckets<IpAddr>;

/// Says a kind of refusal at most once per interval, with how many went unsaid since.
#[derive(Debug)]
pub struct RateLog {
    interval: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl RateLog {
    pub fn new(interval: Duration) -> Self {
        Self { interval, last: Mutex::new(HashMap::new()) }
    }

    /// Calls `say` with the number of `kind` refusals not logged since the last time, unless
    /// `kind` was logged within the interval (then only counts it).
    pub fn note(&self, kind: &'static str, say: impl FnOnce(u64)) {
        let now = Instant::now();
        let suppressed = {
            let Ok(mut last) = self.last.lock() else { return };
            match last.get_mut(kind) {
                Some((at, count)) if now.duration_since(*at) < self.interval => {
                    *count += 1;
                    return;
                }
                Some((at, count)) => {
                    let n = *count;
                    *at = now;
                    *count = 0;
                    n
                }
                None => {
                    last.insert(kind, (now, 0));
                    0
                }
            }
        };
        say(suppressed);
    }
}

impl Default for RateLog {
    /// Once a minute.
    fn default() -> Self {
        Self::new(Duration::from_mins(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_burst_then_says_how_long_to_wait() {
        let mut b = TokenBucket::new(10.0, 3);
        assert!(b.try_take() && b.try_take() && b.try_take());
        let wait = b.take_or_wait().unwrap();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(!b.try_take(), "the debt was paid first");
        std::thread::sleep(Duration::from_millis(100));
        assert!(b.try_take(), "refilled at 10 a second");
    }

    #[test]
    fn keyed_buckets_are_per_key_and_bounded() {
        let limits = KeyedBuckets::new(0.001, 2, 4);
        assert!(limits.allow(1) && limits.allow(1));
        assert!(!limits.allow(1), "key 1 spent its burst");
        assert!(limits.allow(2), "other keys have their own");
        for k in 3..100 {
            limits.allow(k);
            assert!(limits.len() <= 4, "never more than the bound");
        }
    }

    #[test]
    fn a_rate_log_says_once_per_interval_and_counts_the_rest() {
        let log = RateLog::new(Duration::from_millis(50));
        let mut said = Vec::new();
        for _ in 0..10 {
            log.note("tls", |n| said.push(n));
        }
        assert_eq!(said, vec![0]);
        std::thread::sleep(Duration::from_millis(60));
        log.note("tls", |n| said.push(n));
        log.note("other", |n| said.push(n));
        assert_eq!(said, vec![0, 9, 0]);
    }
}
