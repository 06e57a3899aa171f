//! Login throttling: after `max_failures` failed logins for one user
//! within the lockout period, logins for that user are refused until it
//! passes. Counted per replica, in memory: an attacker spreading guesses
//! over N replicas gets N times the budget, still bounded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Entries kept before stale ones are swept, so a flood of usernames cannot
/// grow memory without bound.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug)]
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    failures: Mutex<HashMap<String, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    /// When the current window (or lockout) ends.
    until: Instant,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        Self {
            max_failures,
            lockout,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(retry_after)` while `user` is locked out.
    pub fn check(&self, user: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let failures = self.lock();
        match failures.get(user) {
            Some(entry) if entry.count >= self.max_failures && entry.until > now => {
                Err(entry.until - now)
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, user: &str) {
        let now = Instant::now();
        let mut failures = self.lock();
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, entry| entry.until > now);
        }
        let entry = failures.entry(user.to_owned()).or_insert(Failures {
            count: 0,
            until: now,
        });
        if entry.until <= now {
            *entry = Failures {
                count: 0,
                until: now + self.lockout,
            };
        }
        entry.count += 1;
        if entry.count >= self.max_failures {
            entry.until = now + self.lockout;
        }
    }

    pub fn record_success(&self, user: &str) {
        self.lock().remove(user);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn repeated_failures_lock_the_user_out_for_a_while() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            throttle.record_failure("acme/ada");
            assert!(throttle.check("acme/ada").is_ok());
        }
        throttle.record_failure("acme/ada");
        let retry_after = throttle.check("acme/ada").unwrap_err();
        assert_eq!(retry_after, Duration::from_secs(60));
        assert!(
            throttle.check("acme/bob").is_ok(),
            "other users are unaffected"
        );

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(throttle.check("acme/ada").is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn success_clears_the_count_and_old_failures_expire() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        throttle.record_failure("u");
        throttle.record_failure("u");
        throttle.record_success("u");
        throttle.record_failure("u");
        assert!(throttle.check("u").is_ok());
        throttle.record_failure("u");
        tokio::time::advance(Duration::from_secs(61)).await;
        throttle.record_failure("u");
        assert!(
            throttle.check("u").is_ok(),
            "failures outside the window start a new count"
        );
    }
}
