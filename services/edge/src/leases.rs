//! Quota leases: for a key whose only limits count requests, the edge takes
//! a slice of every limit up front (quota grants at most 10% of what the
//! tightest limit has left) and admits locally while it lasts, instead of a
//! `Check` call per request.
//!
//! Why this keeps answers exact enough: the slice is taken from quota's
//! counters when granted, so other edges can never admit past a limit while
//! this one holds it; small limits (under 10 requests left) get no lease,
//! so the last requests before any limit are always checked one by one; a
//! lease is released with its used count before it expires, and a lease
//! lost with a crashed edge overruns by at most its grant. Keys with token,
//! spend or concurrency limits, or a paying balance, are checked per
//! request on this path (a request lease cannot price a request); AI
//! requests have budget leases of their own (`crate::ai::budget`). A
//! plan or rule changed while a lease is held applies when the lease is
//! renewed, within its 10 s lifetime.
//!
//! Renewal ahead: when a lease is down to a quarter of its grant, or 2 s
//! before its renewal time, one request is checked by quota instead. Its
//! answer confirms the key may still lease, and the next lease is taken in
//! the background while this one keeps admitting; the old one then goes
//! back with its used count. Before, a lease was given back first and
//! every request in the gap waited on a `Check`. If quota refuses that
//! request or does not answer, the lease admits it, since quota cannot see
//! what the lease still holds. For the moment of a swap an edge holds two
//! leases, so a crash then forgoes both slices (never an overrun).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;

use crate::grpc::Authed;

/// What the edge asks for; quota grants less when limits are tight.
const REQUESTED: i64 = 10_000;
const TTL: Duration = Duration::from_secs(10);
/// Renew this long before expiry, so the release reaches quota in time.
const RENEW_BEFORE: Duration = Duration::from_secs(2);
/// Start the next lease this long before `renew_at`, or when a quarter of
/// the grant is left, so requests keep admitting locally while it comes.
const PREFETCH_BEFORE: Duration = Duration::from_secs(2);

struct Lease {
    id: String,
    remaining: AtomicI64,
    granted: i64,
    renew_at: Instant,
    prefetch_at: Instant,
    /// Whether a request has gone to quota to renew this lease early.
    prefetching: AtomicBool,
}

impl Lease {
    fn granted(granted: quota::LeaseResponse) -> Self {
        let lifetime = granted.expire_time.map_or(TTL, |expire| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            let left = u64::try_from(expire.seconds)
                .unwrap_or(0)
                .saturating_sub(now);
            Duration::from_secs(left)
        });
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        Self {
            id: granted.lease_id,
            remaining: AtomicI64::new(granted.granted_amount),
            granted: granted.granted_amount,
            renew_at,
            prefetch_at: renew_at.checked_sub(PREFETCH_BEFORE).unwrap_or(renew_at),
            prefetching: AtomicBool::new(false),
        }
    }

    /// Never below zero: a failed decrement leaves the count as it was.
    fn take_one(&self) -> bool {
        self.remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |remaining| {
                (remaining > 0).then(|| remaining - 1)
            })
            .is_ok()
    }

    /// True for the one request that should be checked by quota so that
    /// its answer renews the lease early (see [`Leases::maybe_renew`]).
    fn claims_prefetch(&self, now: Instant) -> bool {
        let low = self.remaining.load(Ordering::Acquire) <= self.granted / 4;
        (low || now >= self.prefetch_at) && !self.prefetching.swap(true, Ordering::AcqRel)
    }
}

/// What a key's lease says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FromLease {
    Admitted,
    /// No lease, or it cannot admit: check with quota.
    No,
    /// Check with quota, whose answer renews the lease ahead; if quota
    /// refuses, [`Leases::admit_refused_prefetch`].
    CheckFirst,
}

#[derive(Default)]
struct Slot {
    lease: Mutex<Option<Arc<Lease>>>,
    /// One renewal at a time per key.
    renewing: AtomicBool,
}

pub struct Leases {
    quota: QuotaServiceClient<Authed>,
    edge_id: String,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Leases {
    pub fn new(quota: QuotaServiceClient<Authed>) -> Self {
        Self {
            quota,
            edge_id: format!("edge-{}", uuid::Uuid::now_v7().simple()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Whether one request of `key` is admitted from its lease.
    pub fn try_admit(&self, key: &str) -> FromLease {
        let Some(lease) = self.current(key) else {
            return FromLease::No;
        };
        let now = Instant::now();
        if now >= lease.renew_at {
            return FromLease::No;
        }
        // One request goes to quota early: its answer re-checks that the
        // key may still lease (its plan may have changed) and renews, while
        // the others still admit from this lease and none waits on quota.
        if lease.claims_prefetch(now) {
            return FromLease::CheckFirst;
        }
        if lease.take_one() {
            FromLease::Admitted
        } else {
            FromLease::No
        }
    }

    /// The prefetching request when quota refused it: quota cannot see
    /// what this lease still holds, so the lease admits it if it can.
    pub fn admit_refused_prefetch(&self, key: &str) -> bool {
        self.current(key)
            .is_some_and(|lease| Instant::now() < lease.renew_at && lease.take_one())
    }

    fn current(&self, key: &str) -> Option<Arc<Lease>> {
        let slot = self.lock().get(key).cloned()?;
        let lease = slot.lease.lock().unwrap_or_else(PoisonError::into_inner);
        lease.clone()
    }

    /// After a per-request Check admitted `key` with these limits: if they
    /// allow a lease and none is being fetched, fetch one in the background
    /// (the current one goes back once the next is in).
    pub fn maybe_renew(
        self: &Arc<Self>,
        key: &str,
        tenant_id: &str,
        scopes: &[quota::Scope],
        answer: &quota::CheckResponse,
    ) {
        // No limits at all is eligible too: a limit added later applies
        // within one lease lifetime (10 s).
        let eligible = !answer.commit_required
            && answer
                .limits
                .iter()
                .all(|limit| limit.dimension() == quota::LimitDimension::Requests);
        if !eligible {
            return;
        }
        let slot = Arc::clone(self.lock().entry(key.to_owned()).or_default());
        if slot.renewing.swap(true, Ordering::AcqRel) {
            return;
        }
        let leases = Arc::clone(self);
        let request = quota::LeaseRequest {
            edge_id: self.edge_id.clone(),
            tenant_id: tenant_id.to_owned(),
            scopes: scopes.to_vec(),
            dimension: quota::LimitDimension::Requests.into(),
            requested_amount: REQUESTED,
            ttl: Some(prost_types::Duration {
                seconds: i64::try_from(TTL.as_secs()).unwrap_or(10),
                nanos: 0,
            }),
        };
        // The current lease keeps admitting until the next one is in; then
        // it goes back with its used count.
        tokio::spawn(async move {
            match leases.quota.clone().lease(request).await {
                Ok(granted) => {
                    let granted = granted.into_inner();
                    if granted.granted_amount > 0 && !granted.lease_id.is_empty() {
                        let old = slot
                            .lease
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .replace(Arc::new(Lease::granted(granted)));
                        if let Some(old) = old {
                            leases.release(&old).await;
                        }
                    } else {
                        leases.release_spent(&slot).await;
                    }
                }
                Err(status) => {
                    tracing::debug!(%status, "no quota lease; checking per request");
                    leases.release_spent(&slot).await;
                }
            }
            slot.renewing.store(false, Ordering::Release);
        });
    }

    /// With no next lease: the current one goes back once it can no longer
    /// admit, so quota counts what it really admitted.
    async fn release_spent(&self, slot: &Slot) {
        let spent = {
            let mut current = slot.lease.lock().unwrap_or_else(PoisonError::into_inner);
            let can_admit = current.as_ref().is_some_and(|lease| {
                Instant::now() < lease.renew_at && lease.remaining.load(Ordering::Acquire) > 0
            });
            if can_admit { None } else { current.take() }
        };
        if let Some(lease) = spent {
            self.release(&lease).await;
        }
    }

    async fn release(&self, lease: &Lease) {
        let used = lease.granted - lease.remaining.load(Ordering::Acquire).max(0);
        let _ = self
            .quota
            .clone()
            .release_lease(quota::ReleaseLeaseRequest {
                lease_id: lease.id.clone(),
                used_amount: used,
            })
            .await;
    }

    /// Releases every lease (shutdown), so unused budget goes back now
    /// rather than at expiry.
    pub async fn release_all(&self) {
        let slots: Vec<Arc<Slot>> = self.lock().values().cloned().collect();
        for slot in slots {
            let lease = slot
                .lease
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(lease) = lease {
                self.release(&lease).await;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
