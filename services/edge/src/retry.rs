//! Retries: which failures and methods may be retried, full-jitter
//! exponential backoff, and an Envoy-style retry budget, so an outage
//! cannot multiply the load on an upstream. Independent of what is being
//! retried (an API's targets, AI channels).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;

/// Largest request body kept in memory so it can be sent again.
pub const MAX_REPLAY_BYTES: u64 = 64 * 1024;

/// An API's `retry` policy, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included.
    pub max_attempts: u32,
    pub statuses: Vec<u16>,
    pub on_connect_failure: bool,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub non_idempotent: bool,
}

impl RetryPolicy {
    /// Whether this method may be sent twice.
    pub fn allows_method(&self, method: &Method) -> bool {
        self.non_idempotent
            || matches!(
                *method,
                Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
            )
    }

    pub fn retries_status(&self, status: u16) -> bool {
        self.statuses.contains(&status)
    }

    /// The wait before retry number `retry` (1 = the first retry): uniform
    /// in [0, min(max_backoff, initial * 2^(retry-1))] ("full jitter").
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubled = self
            .initial_backoff
            .saturating_mul(1_u32 << retry.saturating_sub(1).min(20));
        let cap = doubled.min(self.max_backoff.max(self.initial_backoff));
        let micros = u64::try_from(cap.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(..=micros))
    }
}

/// Retries in flight may be at most `percent` of the requests in flight,
/// but never fewer than `minimum` are refused.
#[derive(Debug)]
pub struct RetryBudget {
    active: AtomicUsize,
    retrying: AtomicUsize,
    percent: usize,
    minimum: usize,
}

impl Default for RetryBudget {
    fn default() -> Self {
        // Envoy's defaults: 20% of active requests, at least 3.
        Self::new(20, 3)
    }
}

/// Counts one request (or retry) for as long as it lives.
#[derive(Debug)]
pub struct Active(Arc<RetryBudget>, bool);

impl Drop for Active {
    fn drop(&mut self) {
        let counter = if self.1 {
            &self.0.retrying
        } else {
            &self.0.active
        };
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    pub fn new(percent: usize, minimum: usize) -> Self {
        Self {
            active: AtomicUsize::new(0),
            retrying: AtomicUsize::new(0),
            percent,
            minimum,
        }
    }

    /// A request begins.
    pub fn start(self: &Arc<Self>) -> Active {
        self.active.fetch_add(1, Ordering::Relaxed);
        Active(Arc::clone(self), false)
    }

    /// A retry, if the budget has room for one more.
    pub fn try_retry(self: &Arc<Self>) -> Option<Active> {
        let allowed = (self.active.load(Ordering::Relaxed) * self.percent / 100).max(self.minimum);
        let previous = self.retrying.fetch_add(1, Ordering::Relaxed);
        if previous >= allowed {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("edge_retry_budget_exhausted_total").increment(1);
            return None;
        }
        Some(Active(Arc::clone(self), true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            statuses: vec![502, 503],
            on_connect_failure: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(250),
            non_idempotent: false,
        }
    }

    #[test]
    fn only_idempotent_methods_unless_allowed() {
        let mut retry = policy();
        assert!(retry.allows_method(&Method::GET) && retry.allows_method(&Method::PUT));
        assert!(!retry.allows_method(&Method::POST) && !retry.allows_method(&Method::PATCH));
        retry.non_idempotent = true;
        assert!(retry.allows_method(&Method::POST));
    }

    #[test]
    fn backoff_is_full_jitter_capped_by_max_backoff() {
        let retry = policy();
        for _ in 0..200 {
            assert!(retry.backoff(1) <= Duration::from_millis(100));
            assert!(retry.backoff(2) <= Duration::from_millis(200));
            assert!(retry.backoff(9) <= Duration::from_millis(250));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| retry.backoff(3)).collect();
        assert!(spread.len() > 10, "jittered");
    }

    #[test]
    fn the_budget_allows_a_share_of_active_requests_with_a_minimum() {
        let budget = Arc::new(RetryBudget::new(20, 2));
        let active: Vec<_> = (0..20).map(|_| budget.start()).collect();
        // 20% of 20 = 4 retries at once.
        let retries: Vec<_> = (0..6).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(retries.len(), 4);
        drop(retries);
        drop(active);
        // Nothing active: the minimum still applies.
        let retries: Vec<_> = (0..5).filter_map(|_| budget.try_retry()).collect();
        assert_eq!(retries.len(), 2);
    }
}
