//! Password hashing with argon2id (the `argon2` crate's defaults, OWASP's recommended
//! parameters), the password rules people are shown, and [`HashLimiter`], which bounds how many
//! hashes run at once: each takes ~19 MiB and a core for tens of milliseconds, so unbounded
//! parallel logins would exhaust memory and starve everything else (SPEC §11).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Gauge of hashes running now, and counter of requests refused because none could start.
pub const METRIC_IN_PROGRESS: &str = "tds_web_password_hashes_in_progress";
pub const METRIC_BUSY: &str = "tds_web_password_hash_busy_total";

/// At most `max` argon2 runs at a time, on the blocking pool; a request that cannot start one
/// within `wait` is refused as busy (the caller answers 503 with `Retry-After`) instead of
/// queueing without end.
#[derive(Debug, Clone)]
pub struct HashLimiter {
    permits: Arc<Semaphore>,
    wait: Duration,
}

/// Why a hash did not run.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("too many password checks in progress")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

impl HashLimiter {
    pub fn new(max: usize, wait: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(max.max(1))), wait }
    }

    /// Whether `password` matches the stored PHC string.
    pub async fn verify(&self, password: String, phc: String) -> Result<bool, HashError> {
        self.run(move || Ok(verify(&password, &phc))).await
    }

    /// A new PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move || hash(&password).map_err(|e| HashError::Failed(e.to_string()))).await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(Ok(permit)) = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned()).await
        else {
            metrics::counter!(METRIC_BUSY).increment(1);
            return Err(HashError::Busy);
        };
        metrics::gauge!(METRIC_IN_PROGRESS).increment(1.0);
        let done = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await;
        metrics::gauge!(METRIC_IN_PROGRESS).decrement(1.0);
        done.map_err(|e| HashError::Failed(e.to_string()))?
    }
}

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (argon2 could take more; this bounds the work per login).
pub const MAX_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
}

/// Checks a new password against the rules.
pub fn check_new(password: &str) -> Result<(), PasswordProblem> {
    let len = password.chars().count();
    if len < MIN_LENGTH {
        Err(PasswordProblem::TooShort)
    } else if len > MAX_LENGTH {
        Err(PasswordProblem::TooLong)
    } else {
        Ok(())
    }
}

pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt)?.to_string())
}

/// Whether `password` matches the stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash to verify against when the user does not exist, so that the response time does not
/// tell which emails have accounts.
pub fn dummy_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$ZmFrZWhhc2hmYWtlaGFzaGZha2VoYXNoZmFrZWhhcw"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_wrong_passwords_do_not() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a hash"));
        assert!(!verify("anything", dummy_hash()));
    }

    #[tokio::test]
    async fn no_more_hashes_run_at_once_than_the_limit_and_the_rest_are_refused_as_busy() {
        let limiter = HashLimiter::new(2, Duration::from_millis(50));
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let release = Arc::new(std::sync::Barrier::new(3));
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let (limiter, running, peak, release) =
                (limiter.clone(), running.clone(), peak.clone(), release.clone());
            tasks.push(tokio::spawn(async move {
                limiter
                    .run(move || {
                        let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                        release.wait();
                        running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        Ok(())
                    })
                    .await
            }));
        }
        // Both permits are held until the barrier opens: a third check cannot start.
        while running.load(std::sync::atomic::Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let third = limiter.verify("x".into(), dummy_hash().into()).await;
        assert!(matches!(third, Err(HashError::Busy)), "{third:?}");
        release.wait();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2);
        // Permits are back: checks run again.
        assert!(!limiter.verify("x".into(), dummy_hash().into()).await.unwrap());
    }

    #[test]
    fn rules_bound_the_length() {
        assert_eq!(check_new("short"), Err(PasswordProblem::TooShort));
        assert_eq!(check_new("long enough!"), Ok(()));
        assert_eq!(check_new(&"x".repeat(300)), Err(PasswordProblem::TooLong));
    }
}
