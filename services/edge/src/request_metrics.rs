//! `edge_requests_total` by tenant, API, route and status, with its
//! handles cached: building the labelled key for every request cost five
//! allocations and a registry lookup (the allocation profile of the plain
//! path). A hit here allocates nothing.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::Counter;

/// Distinct label sets kept; past it (a label explosion) counters are
/// looked up uncached, still counted.
const MAX_CACHED: usize = 10_000;

#[derive(Clone, Default)]
pub struct RequestCounters {
    counters: Arc<RwLock<HashMap<Box<str>, Counter>>>,
}

thread_local! {
    /// The lookup key, rebuilt in place for every request.
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
}

impl RequestCounters {
    pub fn increment(&self, tenant: &str, api: &str, route: &str, status: u16) {
        KEY.with_borrow_mut(|key| {
            key.clear();
            // Unit separators: no label value is expected to hold one.
            let _ = write!(key, "{tenant}\u{1f}{api}\u{1f}{route}\u{1f}{status}");
            let cached = self
                .counters
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key.as_str())
                .cloned();
            let counter = cached.unwrap_or_else(|| self.register(key, tenant, api, route, status));
            counter.increment(1);
        });
    }

    fn register(&self, key: &str, tenant: &str, api: &str, route: &str, status: u16) -> Counter {
        let counter = metrics::counter!(
            "edge_requests_total",
            "tenant" => tenant.to_owned(),
            "api" => api.to_owned(),
            "route" => route.to_owned(),
            "status" => status.to_string()
        );
        let mut counters = self
            .counters
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if counters.len() < MAX_CACHED {
            counters.insert(key.into(), counter.clone());
        }
        counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_are_cached_once_each() {
        let counters = RequestCounters::default();
        counters.increment("t1", "api", "orders", 200);
        counters.increment("t1", "api", "orders", 200);
        counters.increment("t1", "api", "orders", 404);
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        counters.increment("t1", "a", "bc", 200);
        counters.increment("t1", "ab", "c", 200);
        assert_eq!(counters.counters.read().unwrap().len(), 4);
    }
}
