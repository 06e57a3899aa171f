//! Budget leases for AI requests: instead of a quota `Check` and `Commit`
//! per request (two writes where balances live), the edge takes a slice of
//! each limit the caller's requests count against (requests, tokens,
//! spend: quota's `Lease`) and of the paying balance (`LeaseBalance`), and
//! admits and settles locally while they last.
//!
//! Why this stays exact: every slice is taken from quota's counters or
//! held on the balance when granted, so no other edge or request can spend
//! it; a request is admitted locally only if its whole estimate fits in
//! what every slice has left, and settled with its real tokens and cost;
//! the slices are released with what was used, which quota then counts and
//! debits once. Slices are small (at most a tenth of what remains), and a
//! budget is only taken when it covers many requests, so callers near a
//! limit or with little money are checked request by request, as before.
//! Callers with a concurrency limit are never leased (a slice cannot hold
//! a slot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;

use crate::grpc::Authed;

/// A budget is asked to cover this many requests like the one that
/// triggered it (quota grants at most a tenth of what remains), and taken
/// only if it covers at least `MIN_REQUESTS`.
const WANTED_REQUESTS: i64 = 10_000;
const MIN_REQUESTS: i64 = 10;
const TTL: Duration = Duration::from_secs(10);
/// Renew this long before expiry, so the release reaches quota in time.
const RENEW_BEFORE: Duration = Duration::from_secs(2);
/// After quota granted no budget, how long a caller goes without asking.
const RETRY_AFTER_REFUSAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Requests,
    Tokens,
    Spend,
    Balance,
}

/// One slice: a quota lease (or a balance lease) and its grant.
struct Part {
    kind: Kind,
    lease_id: String,
    granted: i64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Count {
    /// Estimates of requests admitted and not yet settled.
    reserved: i64,
    used: i64,
}

/// The slices one caller holds, spent together.
struct Budget {
    parts: Vec<Part>,
    counts: Mutex<Vec<Count>>,
    renew_at: Instant,
    quota: QuotaServiceClient<Authed>,
    /// Released already (at shutdown), so not again when dropped.
    released: AtomicBool,
}

/// What one request needs of each kind of slice.
fn need(kind: Kind, tokens: i64, cost: i64) -> i64 {
    match kind {
        Kind::Requests => 1,
        Kind::Tokens => tokens,
        Kind::Spend | Kind::Balance => cost,
    }
}

impl Budget {
    fn counts(&self) -> std::sync::MutexGuard<'_, Vec<Count>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Half of some slice is spent or reserved: time to take the next.
    fn low(&self) -> bool {
        let counts = self.counts();
        self.parts
            .iter()
            .zip(counts.iter())
            .any(|(part, count)| (count.reserved + count.used) * 2 >= part.granted)
    }

    /// Reserves the estimate in every slice, if every slice has room.
    fn reserve(&self, tokens: i64, cost: i64) -> bool {
        let mut counts = self.counts();
        let fits = self.parts.iter().zip(counts.iter()).all(|(part, count)| {
            let left = part.granted - count.reserved - count.used;
            left >= need(part.kind, tokens, cost)
        });
        if fits {
            for (part, count) in self.parts.iter().zip(counts.iter_mut()) {
                count.reserved += need(part.kind, tokens, cost);
            }
        }
        fits
    }

    /// Each slice with what was used of it.
    fn used(&self) -> Vec<(Kind, String, i64)> {
        self.parts
            .iter()
            .zip(self.counts().iter())
            .map(|(part, count)| (part.kind, part.lease_id.clone(), count.used))
            .collect()
    }

    /// Replaces a reservation with what the request really used.
    fn settle(&self, estimate: (i64, i64), used: (i64, i64)) {
        let mut counts = self.counts();
        for (part, count) in self.parts.iter().zip(counts.iter_mut()) {
            count.reserved -= need(part.kind, estimate.0, estimate.1);
            count.used += need(part.kind, used.0, used.1);
        }
    }
}

impl Drop for Budget {
    /// Every slice goes back with what was used, once no request holds it.
    fn drop(&mut self) {
        if self.released.load(Ordering::Acquire) {
            return;
        }
        let used = self.used();
        let quota = self.quota.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(release(quota, used));
        }
    }
}

async fn release(mut quota: QuotaServiceClient<Authed>, parts: Vec<(Kind, String, i64)>) {
    for (kind, lease_id, used) in parts {
        let outcome = if kind == Kind::Balance {
            let request = quota::ReleaseBalanceLeaseRequest {
                lease_id,
                used_micros: used,
            };
            quota.release_balance_lease(request).await.map(|_| ())
        } else {
            let request = quota::ReleaseLeaseRequest {
                lease_id,
                used_amount: used,
            };
            quota.release_lease(request).await.map(|_| ())
        };
        if let Err(status) = outcome {
            tracing::warn!(%status, ?kind, "releasing an AI budget lease failed; it lapses");
        }
    }
}

/// A request admitted from a budget: settled with its real usage, or, if
/// dropped unsettled (it failed), with nothing but the request itself.
pub struct Ticket {
    budget: Arc<Budget>,
    estimate: (i64, i64),
    settled: bool,
}

impl Ticket {
    pub fn settle(mut self, tokens: i64, cost: i64) {
        self.settled = true;
        self.budget.settle(self.estimate, (tokens, cost));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.budget.settle(self.estimate, (0, 0));
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Ticket")
            .field("estimate", &self.estimate)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Slot {
    budget: Mutex<Option<Arc<Budget>>>,
    /// One renewal at a time per caller.
    renewing: AtomicBool,
    /// What the last budget was taken for, to take the next one before
    /// this one runs out.
    wanted: Mutex<Option<Arc<Wanted>>>,
    /// When quota last granted no budget: not asked again for a second.
    refused_at: Mutex<Option<Instant>>,
}

/// What a budget is taken for: the caller, its scopes and paying balance.
pub struct Caller<'a> {
    pub key: &'a str,
    pub tenant_id: &'a str,
    pub scopes: &'a [quota::Scope],
    pub balance_owner: Option<&'a quota::BalanceOwner>,
}

pub struct Budgets {
    quota: QuotaServiceClient<Authed>,
    edge_id: String,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
}

impl Budgets {
    pub fn new(quota: QuotaServiceClient<Authed>) -> Self {
        Self {
            quota,
            edge_id: format!("edge-{}", uuid::Uuid::now_v7().simple()),
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request of `key` from its budget, if it holds one with room
    /// for the whole estimate.
    pub fn try_admit(self: &Arc<Self>, key: &str, tokens: i64, cost: i64) -> Option<Ticket> {
        let slot = self.slots().get(key).cloned()?;
        let budget = slot
            .budget
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        if Instant::now() >= budget.renew_at || !budget.reserve(tokens, cost) {
            return None;
        }
        if budget.low() {
            let wanted = slot
                .wanted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let Some(wanted) = wanted {
                self.renew(slot, wanted);
            }
        }
        metrics::counter!("edge_admitted_total", "by" => "budget").increment(1);
        Some(Ticket {
            budget,
            estimate: (tokens, cost),
            settled: false,
        })
    }

    /// After a `Check` admitted a request of this caller: if its limits
    /// allow leasing, take a budget in the background for the next ones.
    pub fn maybe_renew(
        self: &Arc<Self>,
        caller: &Caller<'_>,
        answer: &quota::CheckResponse,
        estimate: (i64, i64),
    ) {
        let dimensions: Vec<quota::LimitDimension> = answer
            .limits
            .iter()
            .map(|limit| limit.dimension())
            .collect();
        if dimensions.contains(&quota::LimitDimension::ConcurrentRequests) {
            return;
        }
        let slot = Arc::clone(self.slots().entry(caller.key.to_owned()).or_default());
        let wanted = Arc::new(Wanted {
            tenant_id: caller.tenant_id.to_owned(),
            scopes: caller.scopes.to_vec(),
            balance_owner: caller.balance_owner.cloned(),
            dimensions,
            estimate,
        });
        *slot.wanted.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&wanted));
        self.renew(slot, wanted);
    }

    /// Takes the slot's next budget in the background, unless one is being
    /// taken; the one it replaces goes back once its requests are done.
    fn renew(self: &Arc<Self>, slot: Arc<Slot>, wanted: Arc<Wanted>) {
        let refused_at = *slot
            .refused_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if refused_at.is_some_and(|at| at.elapsed() < RETRY_AFTER_REFUSAL)
            || slot.renewing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let budgets = Arc::clone(self);
        tokio::spawn(async move {
            match budgets.take(&wanted).await {
                Some(budget) => {
                    *slot.budget.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(Arc::new(budget));
                }
                // The current budget, if any, is spent to its end.
                None => {
                    *slot
                        .refused_at
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                }
            }
            slot.renewing.store(false, Ordering::Release);
        });
    }

    /// Gives back budgets past their renewal time, every second, so an idle
    /// caller's usage is debited and its slices freed within seconds.
    pub fn sweep_in_background(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let budgets = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(budgets) = budgets.upgrade() else {
                    return;
                };
                budgets.sweep();
            }
        });
    }

    fn sweep(&self) {
        let now = Instant::now();
        let slots: Vec<Arc<Slot>> = self.slots().values().cloned().collect();
        for slot in slots {
            let mut budget = slot.budget.lock().unwrap_or_else(PoisonError::into_inner);
            if budget.as_ref().is_some_and(|budget| now >= budget.renew_at) {
                budget.take();
            }
        }
    }

    /// Returns every budget (shutdown, after in-flight requests ended):
    /// what was used is debited and the rest goes back now.
    pub async fn release_all(&self) {
        let slots: Vec<Arc<Slot>> = self.slots().values().cloned().collect();
        for slot in slots {
            let budget = slot
                .budget
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(budget) = budget {
                budget.released.store(true, Ordering::Release);
                release(budget.quota.clone(), budget.used()).await;
            }
        }
    }
}

/// What to lease: the dimensions the caller's limits count, its balance.
struct Wanted {
    tenant_id: String,
    scopes: Vec<quota::Scope>,
    balance_owner: Option<quota::BalanceOwner>,
    dimensions: Vec<quota::LimitDimension>,
    estimate: (i64, i64),
}

impl Budgets {
    /// Leases every slice; a budget that would not cover `MIN_REQUESTS`
    /// requests like this one is given back at once.
    async fn take(&self, wanted: &Wanted) -> Option<Budget> {
        let mut parts = Vec::new();
        let mut expire_in = TTL;
        let kinds = [
            (quota::LimitDimension::Requests, Kind::Requests),
            (quota::LimitDimension::Tokens, Kind::Tokens),
            (quota::LimitDimension::Spend, Kind::Spend),
        ];
        let mut enough = true;
        for (dimension, kind) in kinds {
            if !wanted.dimensions.contains(&dimension) {
                continue;
            }
            let one = need(kind, wanted.estimate.0, wanted.estimate.1).max(1);
            match self.lease(wanted, dimension, one * WANTED_REQUESTS).await {
                Some((part, lifetime)) => {
                    enough &= part.granted >= one * MIN_REQUESTS;
                    expire_in = expire_in.min(lifetime);
                    parts.push(Part { kind, ..part });
                }
                None => enough = false,
            }
        }
        if let Some(owner) = &wanted.balance_owner {
            let one = wanted.estimate.1.max(1);
            match self
                .lease_balance(wanted, owner, one * WANTED_REQUESTS)
                .await
            {
                Some(part) => {
                    enough &= part.granted >= one * MIN_REQUESTS;
                    parts.push(part);
                }
                None => enough = false,
            }
        }
        let budget = Budget {
            counts: Mutex::new(vec![Count::default(); parts.len()]),
            parts,
            renew_at: Instant::now() + expire_in.saturating_sub(RENEW_BEFORE),
            quota: self.quota.clone(),
            released: AtomicBool::new(false),
        };
        // Dropped when too small: its slices go straight back.
        enough.then_some(budget)
    }

    async fn lease(
        &self,
        wanted: &Wanted,
        dimension: quota::LimitDimension,
        amount: i64,
    ) -> Option<(Part, Duration)> {
        let request = quota::LeaseRequest {
            edge_id: self.edge_id.clone(),
            tenant_id: wanted.tenant_id.clone(),
            scopes: wanted.scopes.clone(),
            dimension: dimension.into(),
            requested_amount: amount,
            ttl: Some(ttl()),
        };
        let granted = self.quota.clone().lease(request).await.ok()?.into_inner();
        if granted.lease_id.is_empty() || granted.granted_amount <= 0 {
            return None;
        }
        let part = Part {
            kind: Kind::Requests,
            lease_id: granted.lease_id,
            granted: granted.granted_amount,
        };
        Some((part, lifetime(granted.expire_time.as_ref())))
    }

    async fn lease_balance(
        &self,
        wanted: &Wanted,
        owner: &quota::BalanceOwner,
        amount: i64,
    ) -> Option<Part> {
        let request = quota::LeaseBalanceRequest {
            edge_id: self.edge_id.clone(),
            tenant_id: wanted.tenant_id.clone(),
            balance_owner: Some(owner.clone()),
            requested_micros: amount,
            ttl: Some(ttl()),
        };
        let granted = self
            .quota
            .clone()
            .lease_balance(request)
            .await
            .ok()?
            .into_inner();
        let usable = !granted.lease_id.is_empty() && granted.granted_micros > 0;
        usable.then_some(Part {
            kind: Kind::Balance,
            lease_id: granted.lease_id,
            granted: granted.granted_micros,
        })
    }
}

fn ttl() -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(TTL.as_secs()).unwrap_or(10),
        nanos: 0,
    }
}

/// How long until `expire`, from now (the lease default without one).
fn lifetime(expire: Option<&prost_types::Timestamp>) -> Duration {
    let Some(expire) = expire else { return TTL };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Duration::from_secs(
        u64::try_from(expire.seconds)
            .unwrap_or(0)
            .saturating_sub(now),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of 100 requests, 10,000 tokens and 5,000 micro-USD on the
    /// balance; its quota client goes nowhere (releases just fail).
    fn budget() -> Arc<Budget> {
        let channel =
            crate::grpc::channel("http://127.0.0.1:9", Duration::from_millis(50)).unwrap();
        let quota = QuotaServiceClient::with_interceptor(
            channel,
            crate::grpc::authed((String::new(), String::new())),
        );
        let part = |kind, granted| Part {
            kind,
            lease_id: format!("{kind:?}"),
            granted,
        };
        let parts = vec![
            part(Kind::Requests, 100),
            part(Kind::Tokens, 10_000),
            part(Kind::Balance, 5_000),
        ];
        Arc::new(Budget {
            counts: Mutex::new(vec![Count::default(); parts.len()]),
            parts,
            renew_at: Instant::now() + TTL,
            quota,
            released: AtomicBool::new(true),
        })
    }

    fn ticket(budget: &Arc<Budget>, tokens: i64, cost: i64) -> Option<Ticket> {
        budget.reserve(tokens, cost).then(|| Ticket {
            budget: Arc::clone(budget),
            estimate: (tokens, cost),
            settled: false,
        })
    }

    #[tokio::test]
    async fn requests_fit_whole_or_not_at_all_and_settle_to_what_they_used() {
        let budget = budget();
        let first = ticket(&budget, 4_000, 2_000).expect("fits");
        let second = ticket(&budget, 4_000, 2_000).expect("fits");
        assert!(
            ticket(&budget, 4_000, 2_000).is_none(),
            "the tokens would not fit"
        );
        assert_eq!(budget.counts()[1].reserved, 8_000, "nothing half-reserved");
        assert!(budget.low(), "past half of a slice");
        first.settle(1_000, 500);
        let counts = budget.counts().clone();
        assert_eq!(
            (counts[0].used, counts[1].used, counts[2].used),
            (1, 1_000, 500)
        );
        assert_eq!(counts[1].reserved, 4_000, "only the other's estimate left");
        // A request that failed: its estimate goes back, the request counts.
        drop(second);
        let counts = budget.counts().clone();
        assert_eq!(
            (counts[0].used, counts[1].reserved, counts[2].reserved),
            (2, 0, 0)
        );
        assert!(ticket(&budget, 8_000, 4_000).is_some(), "room again");
    }

    #[tokio::test]
    async fn more_used_than_estimated_counts_in_full() {
        let budget = budget();
        ticket(&budget, 100, 100).unwrap().settle(3_000, 4_900);
        assert!(
            ticket(&budget, 1, 200).is_none(),
            "the balance slice is spent"
        );
        assert_eq!(
            budget.used()[2].2,
            4_900,
            "released with what was really used"
        );
    }
}
