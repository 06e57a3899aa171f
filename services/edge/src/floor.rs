//! The edge's own limiter, used only while quota is unreachable under
//! `fail_open`: a fixed one-minute window per key, so an outage of quota is
//! never an outage of limits altogether.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

pub struct Floor {
    per_minute: u64,
    counts: Mutex<(u64, HashMap<String, u64>)>,
}

impl Floor {
    pub fn new(per_minute: u64) -> Self {
        Self {
            per_minute,
            counts: Mutex::new((0, HashMap::new())),
        }
    }

    /// Counts one request of `key`; false past the per-minute floor.
    pub fn admit(&self, key: &str) -> bool {
        let minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() / 60);
        self.admit_in(key, minute)
    }

    /// As [`Self::admit`], in the given minute since the Unix epoch.
    fn admit_in(&self, key: &str, minute: u64) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.0 != minute {
            // A new window: the old counts no longer matter.
            *counts = (minute, HashMap::new());
        }
        let count = counts.1.entry(key.to_owned()).or_insert(0);
        if *count >= self.per_minute {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_admits_up_to_its_limit_per_key() {
        let floor = Floor::new(3);
        let minute = 29_000_000;
        let admitted: Vec<bool> = (0..5).map(|_| floor.admit_in("k1", minute)).collect();
        assert_eq!(admitted, [true, true, true, false, false]);
        assert!(
            floor.admit_in("k2", minute),
            "another key has its own count"
        );
        assert!(
            floor.admit_in("k1", minute + 1),
            "the next minute starts afresh"
        );
        // The wall-clock entry point limits too.
        let floor = Floor::new(1);
        let admitted = (0..4).filter(|_| floor.admit("k1")).count();
        assert!((1..=2).contains(&admitted), "{admitted}");
    }
}
