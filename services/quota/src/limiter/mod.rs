//! Rate limiting: the algorithms, and the in-memory backend that checks
//! many limits at once, all-or-nothing.
//!
//! The in-memory backend is the embedded default and the fallback when
//! Redis is unreachable; the Redis backend runs the same algorithms as
//! atomic Lua scripts so that replicas agree.

mod algorithm;
mod fallback;
pub mod redis;
mod window;

pub use algorithm::{Algorithm, Limit, Outcome, State};
pub use fallback::{Backend, Limiter};
pub use window::Window;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// One limit to check for one key (`"plan:p1:key:k1:requests:minute"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub limit: Limit,
    pub cost: i64,
}

/// The answer to a multi-limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True only if every limit admitted; then every limit consumed.
    pub allowed: bool,
    /// One outcome per check, in order.
    pub outcomes: Vec<Outcome>,
}

/// Limits kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    states: Mutex<HashMap<String, State>>,
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluates every check at `now`; consumes only if all admit, so a
    /// refused request costs nothing anywhere.
    pub fn check(&self, checks: &[Check], now: i64) -> Decision {
        let mut states = self.lock();
        // Later checks of the same key see earlier ones' tentative state.
        let mut tentative: HashMap<&str, State> = HashMap::new();
        let mut outcomes = Vec::with_capacity(checks.len());
        for check in checks {
            let current = tentative
                .get(check.key.as_str())
                .or_else(|| states.get(&check.key));
            let (outcome, next) = check.limit.evaluate(current, check.cost, now);
            if outcome.allowed {
                tentative.insert(&check.key, next);
            }
            outcomes.push(outcome);
        }
        let allowed = outcomes.iter().all(|outcome| outcome.allowed);
        if allowed {
            for (key, state) in tentative {
                states.insert(key.to_owned(), state);
            }
        }
        Decision { allowed, outcomes }
    }

    /// Gives back what an admitted check consumed (a released reservation).
    pub fn refund(&self, check: &Check, admitted_at: i64, now: i64) {
        if let Some(state) = self.lock().get_mut(&check.key) {
            check.limit.refund(state, check.cost, admitted_at, now);
        }
    }

    /// Drops state that no longer limits anything; `limit_of` says which
    /// limit a key counts for (None: unknown, kept).
    pub fn sweep(&self, now: i64, limit_of: impl Fn(&str) -> Option<Limit>) -> usize {
        let mut states = self.lock();
        let before = states.len();
        states.retain(|key, state| limit_of(key).is_none_or(|limit| !limit.is_expired(state, now)));
        before - states.len()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        // State maps stay consistent even if a holder panicked: every update
        // is a whole-value insert.
        self.states.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
