//! Target health, independent of what a target is: active probes (a GET
//! every interval, thresholds of consecutive passes and failures) and
//! passive outlier detection (a target failing consecutively is ejected for
//! a period that grows with each ejection).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Consecutive failures that eject a target when the policy names none.
pub const DEFAULT_EJECT_AFTER: u32 = 5;
/// The first ejection; each further one lasts this much longer.
const BASE_EJECTION: Duration = Duration::from_secs(10);
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// An API's `health_check`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Empty = any 2xx.
    pub expected: Vec<u16>,
}

impl HealthPolicy {
    pub fn passes(&self, status: u16) -> bool {
        if self.expected.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expected.contains(&status)
        }
    }
}

#[derive(Debug, Default)]
struct Runs {
    passes: u32,
    failures: u32,
}

#[derive(Debug, Default)]
struct Ejection {
    consecutive: u32,
    ejections: u32,
    until: Option<Instant>,
}

/// A target's health as the balancer sees it.
#[derive(Debug)]
pub struct Health {
    /// The active probes' verdict; true until they say otherwise.
    healthy: AtomicBool,
    runs: Mutex<Runs>,
    ejection: Mutex<Ejection>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            runs: Mutex::new(Runs::default()),
            ejection: Mutex::new(Ejection::default()),
        }
    }
}

impl Health {
    /// Healthy by the probes and not ejected.
    pub fn usable(&self, now: Instant) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.ejected(now)
    }

    pub fn probed_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now: Instant) -> bool {
        let ejection = self.ejection.lock().unwrap_or_else(PoisonError::into_inner);
        ejection.until.is_some_and(|until| now < until)
    }

    /// One probe's outcome; returns the new verdict when it changed.
    pub fn probed(&self, policy: &HealthPolicy, passed: bool) -> Option<bool> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if passed {
            runs.passes += 1;
            runs.failures = 0;
        } else {
            runs.failures += 1;
            runs.passes = 0;
        }
        let healthy = self.healthy.load(Ordering::Relaxed);
        let flip = if healthy {
            !passed && runs.failures >= policy.unhealthy_threshold.max(1)
        } else {
            passed && runs.passes >= policy.healthy_threshold.max(1)
        };
        flip.then(|| {
            self.healthy.store(!healthy, Ordering::Relaxed);
            !healthy
        })
    }

    /// Ejects the target for exactly `period` from `now` (an AI channel
    /// told to wait by the provider's `Retry-After`), unless it is already
    /// ejected for longer.
    pub fn eject_for(&self, period: Duration, now: Instant) {
        let mut ejection = self.ejection.lock().unwrap_or_else(PoisonError::into_inner);
        let until = now + period.min(MAX_EJECTION);
        if ejection.until.is_none_or(|current| current < until) {
            ejection.until = Some(until);
        }
    }

    /// When an ejection ends, if the target is ejected at `now`.
    pub fn ejected_until(&self, now: Instant) -> Option<Instant> {
        let ejection = self.ejection.lock().unwrap_or_else(PoisonError::into_inner);
        ejection.until.filter(|until| now < *until)
    }

    /// One real request's outcome (passive detection); returns the
    /// ejection period when this failure ejects the target.
    pub fn observed(&self, failed: bool, eject_after: u32, now: Instant) -> Option<Duration> {
        let mut ejection = self.ejection.lock().unwrap_or_else(PoisonError::into_inner);
        if !failed {
            ejection.consecutive = 0;
            if ejection.until.is_none_or(|until| now >= until) {
                // Healthy again: the next ejection is shorter.
                ejection.ejections = ejection.ejections.saturating_sub(1);
            }
            return None;
        }
        ejection.consecutive += 1;
        if ejection.consecutive < eject_after.max(1) {
            return None;
        }
        ejection.consecutive = 0;
        ejection.ejections += 1;
        let period = BASE_EJECTION
            .saturating_mul(ejection.ejections)
            .min(MAX_EJECTION);
        ejection.until = Some(now + period);
        Some(period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> HealthPolicy {
        HealthPolicy {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected: Vec::new(),
        }
    }

    #[test]
    fn probes_flip_the_verdict_at_their_thresholds() {
        let (health, policy) = (Health::default(), policy());
        assert!(health.probed_healthy());
        assert_eq!(health.probed(&policy, false), None);
        assert_eq!(health.probed(&policy, false), None);
        assert_eq!(health.probed(&policy, false), Some(false));
        assert!(!health.usable(Instant::now()));
        assert_eq!(health.probed(&policy, true), None);
        assert_eq!(health.probed(&policy, true), Some(true));
        assert!(policy.passes(204) && !policy.passes(500));
        let strict = HealthPolicy {
            expected: vec![200],
            ..policy
        };
        assert!(!strict.passes(204));
    }

    #[test]
    fn a_told_wait_ejects_for_that_long_but_never_shortens_one() {
        let (health, now) = (Health::default(), Instant::now());
        health.eject_for(Duration::from_secs(30), now);
        assert_eq!(
            health.ejected_until(now),
            Some(now + Duration::from_secs(30))
        );
        health.eject_for(Duration::from_secs(5), now);
        assert_eq!(
            health.ejected_until(now),
            Some(now + Duration::from_secs(30))
        );
        assert_eq!(health.ejected_until(now + Duration::from_secs(30)), None);
    }

    #[test]
    fn consecutive_failures_eject_for_a_growing_period() {
        let (health, now) = (Health::default(), Instant::now());
        for _ in 0..4 {
            assert_eq!(health.observed(true, 5, now), None);
        }
        assert_eq!(health.observed(true, 5, now), Some(Duration::from_secs(10)));
        assert!(health.ejected(now) && !health.usable(now));
        let back = now + Duration::from_secs(10);
        assert!(!health.ejected(back));
        for _ in 0..4 {
            health.observed(true, 5, back);
        }
        assert_eq!(
            health.observed(true, 5, back),
            Some(Duration::from_secs(20))
        );
        // Successes after an ejection shorten the next one again.
        let later = back + Duration::from_secs(20);
        health.observed(false, 5, later);
        for _ in 0..4 {
            health.observed(true, 5, later);
        }
        assert_eq!(
            health.observed(true, 5, later),
            Some(Duration::from_secs(20))
        );
    }
}
