//! Rate limiting: the algorithms, and the in-memory backend that checks
//! many limits at once, all-or-nothing.
//!
//! The in-memory backend is the embedded default and the fallback when
//! Redis is unreachable; the Redis backend runs the same algorithms as
//! atomic Lua scripts so that replicas agree.

mod algorithm;
mod fallback;
mod holders;
pub mod redis;
mod redis_pool;
mod window;

pub use algorithm::{Algorithm, Limit, Outcome, State};
pub use fallback::{Backend, Limiter, Stored};
pub use window::Window;

use std::collections::HashMap;

use holders::Holders;
use std::sync::{Mutex, PoisonError};

/// One limit to check for one key (`"key:k1:plan:p1:requests:minute:gcra"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub limit: Limit,
    pub cost: i64,
}

/// A concurrency limit: at most `max` holders at once. A holder is a
/// reservation, held until it is settled or its hold expires, so a crashed
/// caller can never leak a slot for longer than the reservation's TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub max: i64,
}

/// What the caller asks to keep with an admission: an opaque payload under
/// `id`, settled (or expired) exactly once later.
#[derive(Debug, Clone, Copy)]
pub struct NewRecord<'a> {
    pub id: &'a str,
    pub payload: &'a str,
    /// Until when the record (and, after settling, its tombstone) is kept.
    pub keep_until: i64,
    /// Leases: when the sweeper may expire it.
    pub lease_expire_at: Option<i64>,
}

/// One all-or-nothing admission: rate limits, concurrency slots and the
/// record of what was reserved.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    pub checks: &'a [Check],
    pub slots: &'a [Slot],
    /// The slot holder's name (the reservation id) and until when it holds.
    pub holder: &'a str,
    pub hold_until: i64,
    pub record: Option<NewRecord<'a>>,
}

impl<'a> Admission<'a> {
    /// Rate limits only, nothing kept.
    pub fn checks(checks: &'a [Check]) -> Self {
        Self {
            checks,
            slots: &[],
            holder: "",
            hold_until: 0,
            record: None,
        }
    }
}

/// The answer to a multi-limit check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True only if every limit admitted; then every limit consumed.
    pub allowed: bool,
    /// One outcome per check, then one per slot, in order.
    pub outcomes: Vec<Outcome>,
}

/// A change to one counter when a reservation or lease is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub key: String,
    pub limit: Limit,
    /// Negative gives back, positive counts more (see [`Limit::adjust`]).
    pub delta: i64,
    pub admitted_at: i64,
}

/// Whether a record is settled or expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// Commit or release: once.
    Settle,
    /// The lease sweeper: only an open lease past its expiry.
    Expire,
}

/// What claiming a record found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// It was open; the caller now owns settling it.
    Open(String),
    /// It had expired (the sweeper returned it); settling now may count
    /// late usage.
    Expired(String),
    /// Settled before: nothing to do.
    Settled,
    /// Never seen, or forgotten.
    Unknown,
}

#[derive(Debug)]
struct Counter {
    limit: Limit,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordState {
    Open,
    Expired,
    Settled,
}

#[derive(Debug)]
struct Record {
    state: RecordState,
    payload: String,
    keep_until: i64,
    lease_expire_at: Option<i64>,
}

#[derive(Debug, Default)]
struct Inner {
    counters: HashMap<String, Counter>,
    slots: HashMap<String, Holders>,
    records: HashMap<String, Record>,
}

impl Inner {
    /// Updates a counter in place: its key is allocated only when new.
    fn set_counter(&mut self, key: &str, limit: &Limit, state: State) {
        if let Some(counter) = self.counters.get_mut(key) {
            counter.limit = limit.clone();
            counter.state = state;
        } else {
            let counter = Counter {
                limit: limit.clone(),
                state,
            };
            self.counters.insert(key.to_owned(), counter);
        }
    }
}

/// Limits kept in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryLimiter {
    inner: Mutex<Inner>,
}

/// How long a settled record's tombstone is kept, so a replayed Commit or
/// ReleaseLease is recognised. Edges retry within seconds; two minutes
/// bounds the memory tombstones take at high request rates (the ledger
/// debit is idempotent in SQL whatever this says).
pub const TOMBSTONE_MICROS: i64 = 2 * 60 * 1_000_000;

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluates every check at `now`; consumes only if all admit, so a
    /// refused request costs nothing anywhere.
    pub fn check(&self, checks: &[Check], now: i64) -> Decision {
        self.admit(&Admission::checks(checks), now)
    }

    /// Evaluates every check and slot at `now`; only if all admit does it
    /// consume, take the slots and keep the record.
    pub fn admit(&self, admission: &Admission<'_>, now: i64) -> Decision {
        let mut inner = self.lock();
        // Later checks of the same key see earlier ones' tentative state.
        let mut tentative: HashMap<&str, State> = HashMap::new();
        let mut outcomes = Vec::with_capacity(admission.checks.len() + admission.slots.len());
        for check in admission.checks {
            let current = tentative
                .get(check.key.as_str())
                .or_else(|| inner.counters.get(&check.key).map(|counter| &counter.state));
            let (outcome, next) = check.limit.evaluate(current, check.cost, now);
            if outcome.allowed {
                tentative.insert(&check.key, next);
            }
            outcomes.push(outcome);
        }
        for slot in admission.slots {
            let held = inner.slots.get_mut(&slot.key).map_or(0, |holders| {
                i64::try_from(holders.live(now)).unwrap_or(i64::MAX)
            });
            outcomes.push(slot_outcome(held, slot.max));
        }
        let allowed = outcomes.iter().all(|outcome| outcome.allowed);
        if allowed {
            for check in admission.checks {
                if let Some(state) = tentative.remove(check.key.as_str()) {
                    inner.set_counter(&check.key, &check.limit, state);
                }
            }
            for slot in admission.slots {
                inner
                    .slots
                    .entry(slot.key.clone())
                    .or_default()
                    .insert(admission.holder, admission.hold_until);
            }
            if let Some(record) = admission.record {
                inner.records.insert(
                    record.id.to_owned(),
                    Record {
                        state: RecordState::Open,
                        payload: record.payload.to_owned(),
                        keep_until: record.keep_until,
                        lease_expire_at: record.lease_expire_at,
                    },
                );
            }
        }
        Decision { allowed, outcomes }
    }

    /// Takes ownership of settling (or expiring) record `id`, once.
    pub fn claim(&self, id: &str, mode: ClaimMode, now: i64) -> Claimed {
        let mut inner = self.lock();
        let Some(record) = inner.records.get_mut(id) else {
            return Claimed::Unknown;
        };
        match (record.state, mode) {
            (RecordState::Open, ClaimMode::Settle) => {
                record.state = RecordState::Settled;
                record.keep_until = now + TOMBSTONE_MICROS;
                Claimed::Open(std::mem::take(&mut record.payload))
            }
            (RecordState::Expired, ClaimMode::Settle) => {
                record.state = RecordState::Settled;
                record.keep_until = now + TOMBSTONE_MICROS;
                Claimed::Expired(std::mem::take(&mut record.payload))
            }
            (RecordState::Open, ClaimMode::Expire) => {
                record.state = RecordState::Expired;
                record.keep_until = now + TOMBSTONE_MICROS;
                Claimed::Open(record.payload.clone())
            }
            (RecordState::Expired, ClaimMode::Expire) => Claimed::Expired(String::new()),
            (RecordState::Settled, _) => Claimed::Settled,
        }
    }

    /// Applies settlement changes and frees `holder`'s slots.
    pub fn adjust(&self, adjustments: &[Adjustment], slots: &[String], holder: &str, now: i64) {
        let mut inner = self.lock();
        for adjustment in adjustments {
            let current = inner
                .counters
                .get(&adjustment.key)
                .map(|counter| &counter.state);
            if let Some(state) =
                adjustment
                    .limit
                    .adjust(current, adjustment.delta, adjustment.admitted_at, now)
            {
                inner.set_counter(&adjustment.key, &adjustment.limit, state);
            }
        }
        for key in slots {
            if let Some(holders) = inner.slots.get_mut(key) {
                holders.remove(holder);
            }
        }
    }

    /// Open leases whose expiry has passed, for the sweeper.
    pub fn due_leases(&self, now: i64) -> Vec<String> {
        self.lock()
            .records
            .iter()
            .filter(|(_, record)| {
                record.state == RecordState::Open
                    && record.lease_expire_at.is_some_and(|at| at <= now)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Drops counters, slot holders and records that no longer matter, to
    /// bound memory. Returns how many entries went.
    pub fn sweep(&self, now: i64) -> usize {
        let mut inner = self.lock();
        let before = inner.counters.len() + inner.records.len();
        inner
            .counters
            .retain(|_, counter| !counter.limit.is_expired(&counter.state, now));
        inner.slots.retain(|_, holders| holders.live(now) > 0);
        // An open lease stays until the sweeper has expired it.
        inner.records.retain(|_, record| {
            record.keep_until > now
                || (record.state == RecordState::Open && record.lease_expire_at.is_some())
        });
        before - (inner.counters.len() + inner.records.len())
    }

    pub fn len(&self) -> usize {
        self.lock().counters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The maps stay consistent even if a holder panicked: every update
        // is a whole-value insert or remove.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The outcome of a concurrency slot with `held` live holders.
fn slot_outcome(held: i64, max: i64) -> Outcome {
    let allowed = held < max;
    Outcome {
        allowed,
        remaining: if allowed { max - held - 1 } else { 0 },
        reset_at: 0,
        // When a slot frees is unknown: suggest a short wait.
        retry_after: if allowed { 0 } else { SLOT_RETRY_MICROS },
    }
}

/// The retry hint for a full concurrency limit.
pub const SLOT_RETRY_MICROS: i64 = 1_000_000;

#[cfg(test)]
mod tests;
