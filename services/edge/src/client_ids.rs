//! Unregistered `X-Client-ID` values. As in the systems our users come
//! from, a key's limits apply per client id value when the header is
//! present; each distinct value is a quota counter of its own, so the
//! number of values a key may use per UTC day is capped.
//!
//! The cap is counted on each edge replica (it bounds counter growth and
//! the multiplication of a key's limits); the limits themselves are
//! counted by quota, exactly, across replicas.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// Longest accepted `X-Client-ID` value.
pub const MAX_LEN: usize = 128;

/// Whether `value` can name a client: visible ASCII, at most [`MAX_LEN`].
pub fn valid(value: &str) -> bool {
    (1..=MAX_LEN).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_graphic())
}

pub struct ClientIds {
    per_key: usize,
    seen: Mutex<(u64, HashMap<String, HashSet<String>>)>,
}

/// The cap was hit: retry after this many seconds (the next UTC day).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapReached {
    pub cap: usize,
    pub retry_after_secs: u64,
}

impl ClientIds {
    pub fn new(per_key: usize) -> Self {
        Self {
            per_key,
            seen: Mutex::new((0, HashMap::new())),
        }
    }

    /// Admits `value` for `key_id` at `now_secs` (Unix time): known values
    /// always, new ones while the key is under its cap for the day.
    pub fn admit(&self, key_id: &str, value: &str, now_secs: u64) -> Result<(), CapReached> {
        let day = now_secs / 86_400;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.0 != day {
            *seen = (day, HashMap::new());
        }
        let values = seen.1.entry(key_id.to_owned()).or_default();
        if values.contains(value) {
            return Ok(());
        }
        if values.len() >= self.per_key {
            return Err(CapReached {
                cap: self.per_key,
                retry_after_secs: (day + 1) * 86_400 - now_secs,
            });
        }
        values.insert(value.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_may_use_up_to_its_cap_of_values_per_day() {
        let ids = ClientIds::new(2);
        let noon = 20_000 * 86_400 + 43_200;
        assert!(ids.admit("k1", "a", noon).is_ok());
        assert!(ids.admit("k1", "b", noon).is_ok());
        assert!(ids.admit("k1", "a", noon).is_ok(), "a known value");
        assert_eq!(
            ids.admit("k1", "c", noon),
            Err(CapReached {
                cap: 2,
                retry_after_secs: 43_200
            })
        );
        assert!(ids.admit("k2", "c", noon).is_ok(), "another key");
        assert!(ids.admit("k1", "c", noon + 43_200).is_ok(), "the next day");
    }

    #[test]
    fn values_must_be_short_visible_ascii() {
        assert!(valid("mobile-app_1.2"));
        assert!(!valid(""));
        assert!(!valid("has space"));
        assert!(!valid(&"x".repeat(MAX_LEN + 1)));
    }
}
