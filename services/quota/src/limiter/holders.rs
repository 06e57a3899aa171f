//! The holders of one concurrency slot key, with their expiries ordered so
//! that counting the live ones costs the expired ones once, not a scan of
//! every holder on every check (a key with long-lived reservations can have
//! thousands).

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub(super) struct Holders {
    until: HashMap<String, i64>,
    /// The same holders by (hold_until, name): the front expires first.
    by_expiry: BTreeSet<(i64, String)>,
}

impl Holders {
    /// Holders still holding at `now`; drops those whose hold has ended.
    pub(super) fn live(&mut self, now: i64) -> usize {
        while let Some((until, _)) = self.by_expiry.first() {
            if *until > now {
                break;
            }
            if let Some((_, name)) = self.by_expiry.pop_first() {
                self.until.remove(&name);
            }
        }
        self.until.len()
    }

    /// `holder` holds until `until` (replacing an earlier hold of its own).
    pub(super) fn insert(&mut self, holder: &str, until: i64) {
        if let Some(previous) = self.until.insert(holder.to_owned(), until) {
            self.by_expiry.remove(&(previous, holder.to_owned()));
        }
        self.by_expiry.insert((until, holder.to_owned()));
    }

    pub(super) fn remove(&mut self, holder: &str) {
        if let Some(until) = self.until.remove(holder) {
            self.by_expiry.remove(&(until, holder.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Holders;

    #[test]
    fn expired_holders_stop_counting_and_are_dropped() {
        let mut holders = Holders::default();
        holders.insert("a", 10);
        holders.insert("b", 20);
        holders.insert("c", 30);
        assert_eq!(holders.live(5), 3);
        assert_eq!(holders.live(10), 2, "a hold ending at now has ended");
        holders.remove("c");
        assert_eq!(holders.live(10), 1);
        assert_eq!(holders.live(25), 0);
        assert!(holders.until.is_empty() && holders.by_expiry.is_empty());
    }

    #[test]
    fn a_holder_taking_its_slot_again_is_counted_once_with_its_new_expiry() {
        let mut holders = Holders::default();
        holders.insert("a", 10);
        holders.insert("a", 50);
        assert_eq!(holders.live(20), 1);
        holders.remove("a");
        assert_eq!(holders.live(20), 0);
        assert!(holders.by_expiry.is_empty());
    }
}
