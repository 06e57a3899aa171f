//! A per-target circuit breaker, independent of what a target is (an API's
//! upstream, an AI channel). CLOSED counts failures (consecutive, and as a
//! rate over a rolling window); tripping opens it; after `open_for` it is
//! HALF_OPEN and lets `half_open_requests` probes through, closing on their
//! success and reopening on any failure.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// When a breaker trips and how it recovers (an API's `circuit_breaker`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Opens after this many consecutive failures; 0 = not used.
    pub consecutive_failures: u32,
    /// Opens when failures reach this share of requests in `window`
    /// (1-100); 0 = not used.
    pub failure_rate_percent: u32,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_requests: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    opened_at: Option<Instant>,
    consecutive: u32,
    /// Outcomes in the rolling window (true = failure), oldest first.
    recent: VecDeque<(Instant, bool)>,
    probes_in_flight: u32,
    probe_successes: u32,
}

/// Outcomes kept per breaker at most, whatever the window.
const MAX_RECENT: usize = 4096;

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                opened_at: None,
                consecutive: 0,
                recent: VecDeque::new(),
                probes_in_flight: 0,
                probe_successes: 0,
            }),
        }
    }
}

/// A state change, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn state(&self) -> BreakerState {
        self.lock().state
    }

    /// Whether a request may go to the target now; a HALF_OPEN breaker
    /// counts the probe it lets through.
    pub fn try_acquire(&self, policy: &BreakerPolicy, now: Instant) -> (bool, Option<Transition>) {
        let mut inner = self.lock();
        let mut transition = None;
        if inner.state == BreakerState::Open
            && inner
                .opened_at
                .is_some_and(|at| now.duration_since(at) >= policy.open_for)
        {
            transition = Some(Transition {
                from: BreakerState::Open,
                to: BreakerState::HalfOpen,
            });
            inner.state = BreakerState::HalfOpen;
            inner.probes_in_flight = 0;
            inner.probe_successes = 0;
        }
        let allowed = match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => {
                let room = inner.probes_in_flight < policy.half_open_requests.max(1);
                if room {
                    inner.probes_in_flight += 1;
                }
                room
            }
        };
        (allowed, transition)
    }

    /// Whether [`Self::try_acquire`] would let a request through now,
    /// without counting one.
    pub fn admits(&self, policy: &BreakerPolicy, now: Instant) -> bool {
        let inner = self.lock();
        match inner.state {
            BreakerState::Closed => true,
            BreakerState::Open => inner
                .opened_at
                .is_some_and(|at| now.duration_since(at) >= policy.open_for),
            BreakerState::HalfOpen => inner.probes_in_flight < policy.half_open_requests.max(1),
        }
    }

    /// How long until an OPEN breaker lets a probe through.
    pub fn retry_after(&self, policy: &BreakerPolicy, now: Instant) -> Option<Duration> {
        let inner = self.lock();
        match (inner.state, inner.opened_at) {
            (BreakerState::Open, Some(at)) => {
                Some(policy.open_for.saturating_sub(now.duration_since(at)))
            }
            _ => None,
        }
    }

    /// Records an outcome of a request `try_acquire` let through.
    pub fn record(&self, policy: &BreakerPolicy, failed: bool, now: Instant) -> Option<Transition> {
        let mut inner = self.lock();
        match inner.state {
            BreakerState::HalfOpen => {
                inner.probes_in_flight = inner.probes_in_flight.saturating_sub(1);
                if failed {
                    return Some(open(&mut inner, now, BreakerState::HalfOpen));
                }
                inner.probe_successes += 1;
                if inner.probe_successes < policy.half_open_requests.max(1) {
                    return None;
                }
                inner.state = BreakerState::Closed;
                inner.consecutive = 0;
                inner.recent.clear();
                Some(Transition {
                    from: BreakerState::HalfOpen,
                    to: BreakerState::Closed,
                })
            }
            // A request admitted before the breaker opened.
            BreakerState::Open => None,
            BreakerState::Closed => {
                inner.consecutive = if failed { inner.consecutive + 1 } else { 0 };
                inner.recent.push_back((now, failed));
                while inner.recent.len() > MAX_RECENT
                    || inner
                        .recent
                        .front()
                        .is_some_and(|(at, _)| now.duration_since(*at) > policy.window)
                {
                    inner.recent.pop_front();
                }
                trips(policy, &inner).then(|| open(&mut inner, now, BreakerState::Closed))
            }
        }
    }
}

fn trips(policy: &BreakerPolicy, inner: &Inner) -> bool {
    if policy.consecutive_failures > 0 && inner.consecutive >= policy.consecutive_failures {
        return true;
    }
    let total = inner.recent.len();
    if policy.failure_rate_percent == 0 || total < policy.min_requests.max(1) as usize {
        return false;
    }
    let failures = inner.recent.iter().filter(|(_, failed)| *failed).count();
    failures * 100 >= total * policy.failure_rate_percent as usize
}

fn open(inner: &mut Inner, now: Instant, from: BreakerState) -> Transition {
    inner.state = BreakerState::Open;
    inner.opened_at = Some(now);
    inner.consecutive = 0;
    inner.recent.clear();
    Transition {
        from,
        to: BreakerState::Open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate_percent: 0,
            min_requests: 0,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_requests: 2,
        }
    }

    #[test]
    fn consecutive_failures_open_then_probes_close_it() {
        let (breaker, policy, start) = (Breaker::default(), policy(), Instant::now());
        assert!(breaker.record(&policy, true, start).is_none());
        assert!(
            breaker.record(&policy, false, start).is_none(),
            "a success resets the run"
        );
        breaker.record(&policy, true, start);
        breaker.record(&policy, true, start);
        let opened = breaker.record(&policy, true, start).unwrap();
        assert_eq!(opened.to, BreakerState::Open);
        assert!(!breaker.try_acquire(&policy, start).0);
        assert_eq!(
            breaker.retry_after(&policy, start),
            Some(Duration::from_secs(5))
        );
        // After open_for: two probes, no third.
        let later = start + Duration::from_secs(5);
        let (allowed, transition) = breaker.try_acquire(&policy, later);
        assert!(allowed);
        assert_eq!(transition.unwrap().to, BreakerState::HalfOpen);
        assert!(breaker.try_acquire(&policy, later).0);
        assert!(!breaker.try_acquire(&policy, later).0);
        assert!(breaker.record(&policy, false, later).is_none());
        assert_eq!(
            breaker.record(&policy, false, later).unwrap().to,
            BreakerState::Closed
        );
        assert!(breaker.try_acquire(&policy, later).0);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let (breaker, policy, start) = (Breaker::default(), policy(), Instant::now());
        for _ in 0..3 {
            breaker.record(&policy, true, start);
        }
        let later = start + Duration::from_secs(6);
        assert!(breaker.try_acquire(&policy, later).0);
        let reopened = breaker.record(&policy, true, later).unwrap();
        assert_eq!(
            reopened,
            Transition {
                from: BreakerState::HalfOpen,
                to: BreakerState::Open
            }
        );
        assert!(
            !breaker
                .try_acquire(&policy, later + Duration::from_secs(1))
                .0
        );
    }

    #[test]
    fn the_failure_rate_needs_its_minimum_of_requests_in_the_window() {
        let policy = BreakerPolicy {
            consecutive_failures: 0,
            failure_rate_percent: 50,
            min_requests: 4,
            ..policy()
        };
        let (breaker, start) = (Breaker::default(), Instant::now());
        breaker.record(&policy, true, start);
        breaker.record(&policy, false, start);
        assert!(
            breaker.record(&policy, true, start).is_none(),
            "3 < min_requests"
        );
        assert!(
            breaker.record(&policy, false, start).is_some(),
            "2 of 4 = 50%"
        );
        // Old outcomes leave the window.
        let breaker = Breaker::default();
        for _ in 0..3 {
            breaker.record(&policy, true, start);
        }
        let later = start + Duration::from_secs(11);
        for _ in 0..3 {
            assert!(breaker.record(&policy, false, later).is_none());
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
