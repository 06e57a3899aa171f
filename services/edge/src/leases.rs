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

struct Lease {
    id: String,
    remaining: AtomicI64,
    granted: i64,
    renew_at: Instant,
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

    /// Admits one request of `key` from its lease, if it holds one.
    pub fn try_admit(&self, key: &str) -> bool {
        let Some(slot) = self.lock().get(key).cloned() else {
            return false;
        };
        let lease = slot
            .lease
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(lease) = lease else { return false };
        if Instant::now() >= lease.renew_at {
            return false;
        }
        // Never below zero: a failed decrement leaves the count as it was.
        lease
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |remaining| {
                (remaining > 0).then(|| remaining - 1)
            })
            .is_ok()
    }

    /// After a per-request Check admitted `key` with these limits: if they
    /// allow a lease and none is being fetched, fetch one in the background
    /// (and release the spent one).
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
        tokio::spawn(async move {
            let old = slot
                .lease
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(old) = old {
                leases.release(&old).await;
            }
            match leases.quota.clone().lease(request).await {
                Ok(granted) => {
                    let granted = granted.into_inner();
                    if granted.granted_amount > 0 && !granted.lease_id.is_empty() {
                        let lifetime = granted
                            .expire_time
                            .map(|expire| {
                                let now = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |elapsed| elapsed.as_secs());
                                let left = u64::try_from(expire.seconds)
                                    .unwrap_or(0)
                                    .saturating_sub(now);
                                Duration::from_secs(left)
                            })
                            .unwrap_or(TTL);
                        *slot.lease.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some(Arc::new(Lease {
                                id: granted.lease_id,
                                remaining: AtomicI64::new(granted.granted_amount),
                                granted: granted.granted_amount,
                                renew_at: Instant::now() + lifetime.saturating_sub(RENEW_BEFORE),
                            }));
                    }
                }
                Err(status) => tracing::debug!(%status, "no quota lease; checking per request"),
            }
            slot.renewing.store(false, Ordering::Release);
        });
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
