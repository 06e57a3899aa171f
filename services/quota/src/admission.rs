//! Check, Commit, Lease and ReleaseLease: admitting requests against every
//! limit of their scopes and the paying balance, and settling them.
//!
//! A Check reserves 1 request, the estimated tokens and spend, a
//! concurrency slot and (if a balance pays) a hold on the balance, all or
//! nothing. Commit moves each token and spend counter by actual - estimate,
//! frees the slot and turns the hold into a ledger debit. A reservation
//! never committed lapses: its slot and balance hold free at its expiry, and
//! its estimate stays counted (the request may have used it).
//!
//! A Lease takes a slice of every limit of one dimension up front (at most
//! `lease_percent` of what the tightest limit has left), so while it lives
//! the total can never pass a limit. ReleaseLease gives back the unused
//! part. A lease not released by its expiry is returned in full by the
//! sweeper, since the server cannot know what the edge used: the budget is
//! never lost to a crashed edge, and the total can exceed a limit by at most
//! what an edge admitted under a lease it failed to release in time, which
//! is at most `lease_percent` of what remained at grant time, per lease. A
//! release arriving after the sweeper still counts the used amount.

mod balance_leases;

use std::sync::Arc;
use std::time::Duration;

use gateway_proto::quota::v1 as pb;
use gateway_proto::{duration_from_micros, micros_from_duration, timestamp_from_micros};
use gateway_runtime::CancellationToken;
use gateway_storage::now_micros;
use serde::{Deserialize, Serialize};

use crate::error::QuotaError;
use crate::limiter::{
    Adjustment, Admission, Backend, Check, ClaimMode, Claimed, Limit, Limiter, NewRecord, Outcome,
    Stored, TOMBSTONE_MICROS,
};
use crate::resolve::{Dimension, LimitsCache, Origin, Resolution, window_to_proto};
use crate::store::holds::Hold;
use crate::store::{Owner, OwnerKind, QuotaStore};

/// Tunables of admission, from the `[quota]` section.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub reservation_ttl: Duration,
    pub max_reservation_ttl: Duration,
    pub lease_ttl: Duration,
    pub max_lease_ttl: Duration,
    /// The largest share of the tightest limit's remaining budget a lease
    /// may take, in percent.
    pub lease_percent: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(300),
            max_reservation_ttl: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(10),
            max_lease_ttl: Duration::from_secs(60),
            lease_percent: 10,
        }
    }
}

/// What a reservation or lease took, kept with it until it is settled.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    admitted_at: i64,
    expire_at: i64,
    limits: Vec<HeldLimit>,
    slots: Vec<String>,
    /// Leases: the amount granted.
    granted: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HeldLimit {
    key: String,
    limit: Limit,
    dimension: Dimension,
    cost: i64,
}

/// Reservation ids are `{where}{uuid}`: `r` Redis, `m` memory, `n` nothing
/// kept (no token, spend or concurrency limit to settle). Lease ids add the
/// tenant, since ReleaseLease names nothing else: `l{where}.{uuid}.{tenant}`.
const NOTHING_KEPT: char = 'n';

pub struct Admissions {
    limits: Arc<LimitsCache>,
    limiter: Arc<Limiter>,
    store: QuotaStore,
    settings: Settings,
    clock: Clock,
}

/// Where admission reads the time: the system clock, or one a test sets
/// and advances (paused time).
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Manual(Arc<std::sync::atomic::AtomicI64>),
}

impl Clock {
    /// A paused clock at `micros`; advance it with [`Clock::advance`].
    pub fn paused(micros: i64) -> Self {
        Self::Manual(Arc::new(std::sync::atomic::AtomicI64::new(micros)))
    }

    pub fn now(&self) -> i64 {
        match self {
            Self::System => now_micros(),
            Self::Manual(at) => at.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    pub fn advance(&self, by: Duration) {
        if let Self::Manual(at) = self {
            at.fetch_add(duration_micros(by), std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn duration_micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// A requested duration, defaulted and clamped.
fn ttl(
    requested: Option<&prost_types::Duration>,
    default: Duration,
    max: Duration,
    field: &'static str,
) -> Result<i64, QuotaError> {
    let Some(requested) = requested else {
        return Ok(duration_micros(default));
    };
    if requested.seconds < 0 || requested.nanos < 0 {
        return Err(QuotaError::invalid(field, "must not be negative"));
    }
    let micros = micros_from_duration(requested);
    if micros == 0 {
        return Ok(duration_micros(default));
    }
    Ok(micros.clamp(1_000, duration_micros(max)))
}

fn non_negative(value: i64, field: &'static str) -> Result<i64, QuotaError> {
    if value < 0 {
        return Err(QuotaError::invalid(field, "must not be negative"));
    }
    Ok(value)
}

fn backend_to_proto(backend: Backend) -> pb::LimiterBackend {
    match backend {
        Backend::Redis => pb::LimiterBackend::Redis,
        Backend::Memory | Backend::MemoryFallback => pb::LimiterBackend::Memory,
    }
}

fn balance_owner(
    tenant_id: &str,
    owner: Option<&pb::BalanceOwner>,
) -> Result<Option<Owner>, QuotaError> {
    let Some(owner) = owner else { return Ok(None) };
    let kind = match pb::BalanceOwnerKind::try_from(owner.kind) {
        Ok(pb::BalanceOwnerKind::User) => OwnerKind::User,
        Ok(pb::BalanceOwnerKind::Key) => OwnerKind::Key,
        _ => {
            return Err(QuotaError::invalid(
                "balance_owner.kind",
                "must be USER or KEY",
            ));
        }
    };
    if owner.id.is_empty() {
        return Err(QuotaError::invalid("balance_owner.id", "must not be empty"));
    }
    Ok(Some(Owner {
        tenant_id: tenant_id.to_owned(),
        kind,
        id: owner.id.clone(),
    }))
}

fn require_tenant(tenant_id: &str) -> Result<(), QuotaError> {
    if tenant_id.is_empty() {
        return Err(QuotaError::invalid("tenant_id", "must not be empty"));
    }
    Ok(())
}

/// A LimitStatus from a limit's outcome.
fn status(
    origin: &Origin,
    dimension: pb::LimitDimension,
    limit: Option<&Limit>,
    max: i64,
    outcome: &Outcome,
) -> pb::LimitStatus {
    let lifetime = limit.is_some_and(|limit| limit.window == crate::limiter::Window::Lifetime);
    pb::LimitStatus {
        name: origin.name.clone(),
        scope_kind: origin.scope_kind.into(),
        scope_id: origin.scope_id.clone(),
        source: origin.source.into(),
        source_id: origin.source_id.clone(),
        dimension: dimension.into(),
        window: limit.map_or(pb::LimitWindow::Unspecified, |limit| {
            window_to_proto(limit.window)
        }) as i32,
        limit: max,
        remaining: outcome.remaining.max(0),
        reset_time: (limit.is_some() && !lifetime && outcome.reset_at > 0)
            .then(|| timestamp_from_micros(outcome.reset_at)),
        retry_after: (!lifetime).then(|| duration_from_micros(outcome.retry_after.max(0))),
        exceeded: !outcome.allowed,
    }
}

/// Exceeded first, then the tightest (remaining / limit) first: the edge
/// takes its RateLimit-* headers from the first.
fn sort_statuses(statuses: &mut [pb::LimitStatus]) {
    statuses.sort_by(|a, b| {
        b.exceeded.cmp(&a.exceeded).then_with(|| {
            let left = i128::from(a.remaining) * i128::from(b.limit.max(1));
            let right = i128::from(b.remaining) * i128::from(a.limit.max(1));
            left.cmp(&right)
        })
    });
}

/// The statuses of a resolution's limits and slots from a decision.
fn statuses(resolution: &Resolution, outcomes: &[Outcome]) -> Vec<pb::LimitStatus> {
    let limits = resolution.limits.iter().map(|applicable| {
        (
            &applicable.origin,
            applicable.dimension.to_proto(),
            Some(&applicable.limit),
            applicable.limit.limit,
        )
    });
    let slots = resolution.slots.iter().map(|slot| {
        (
            &slot.origin,
            pb::LimitDimension::ConcurrentRequests,
            None,
            slot.slot.max,
        )
    });
    let mut statuses: Vec<pb::LimitStatus> = limits
        .chain(slots)
        .zip(outcomes)
        .map(|((origin, dimension, limit, max), outcome)| {
            status(origin, dimension, limit, max, outcome)
        })
        .collect();
    sort_statuses(&mut statuses);
    statuses
}

/// Why a Check was refused, from its exceeded limits.
fn refusal(statuses: &[pb::LimitStatus]) -> pb::RefusalReason {
    let exceeded = || statuses.iter().filter(|status| status.exceeded);
    if exceeded().any(|status| status.dimension == pb::LimitDimension::ConcurrentRequests as i32) {
        pb::RefusalReason::Concurrency
    } else if exceeded().any(|status| status.dimension != pb::LimitDimension::Spend as i32) {
        pb::RefusalReason::RateLimited
    } else {
        pb::RefusalReason::SpendLimit
    }
}

/// The refusal's retry-after: the longest wait among exceeded limits, or
/// none when one of them cannot be waited out.
fn retry_after(statuses: &[pb::LimitStatus]) -> Option<prost_types::Duration> {
    let mut longest: Option<prost_types::Duration> = None;
    for status in statuses.iter().filter(|status| status.exceeded) {
        let wait = status.retry_after?;
        if longest
            .is_none_or(|current| (wait.seconds, wait.nanos) > (current.seconds, current.nanos))
        {
            longest = Some(wait);
        }
    }
    longest
}

impl Admissions {
    pub fn new(
        limits: Arc<LimitsCache>,
        limiter: Arc<Limiter>,
        store: QuotaStore,
        settings: Settings,
    ) -> Self {
        Self {
            limits,
            limiter,
            store,
            settings,
            clock: Clock::System,
        }
    }

    /// Reads time from `clock` (tests pause and advance it).
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn check(&self, request: &pb::CheckRequest) -> Result<pb::CheckResponse, QuotaError> {
        require_tenant(&request.tenant_id)?;
        let tokens = non_negative(request.estimated_tokens, "estimated_tokens")?;
        let cost = non_negative(request.estimated_cost_micros, "estimated_cost_micros")?;
        let owner = balance_owner(&request.tenant_id, request.balance_owner.as_ref())?;
        let ttl = ttl(
            request.reservation_ttl.as_ref(),
            self.settings.reservation_ttl,
            self.settings.max_reservation_ttl,
            "reservation_ttl",
        )?;
        let resolution = self.limits.resolve(&request.tenant_id, &request.scopes)?;
        let now = self.clock.now();
        let expire_at = now.saturating_add(ttl);
        let uuid = uuid::Uuid::now_v7().simple().to_string();

        // The balance first: a refusal there must not touch the counters.
        let mut balance_micros = None;
        if let Some(owner) = &owner {
            match self.store.hold(owner, &uuid, cost, expire_at, now).await? {
                Hold::Held { available_micros } => balance_micros = Some(available_micros),
                Hold::Insufficient { available_micros } => {
                    metrics::counter!("quota_checks_total", "result" => "insufficient_balance")
                        .increment(1);
                    return Ok(pb::CheckResponse {
                        allowed: false,
                        refusal_reason: pb::RefusalReason::InsufficientBalance.into(),
                        balance_micros: Some(available_micros),
                        backend: backend_to_proto(self.limiter.backend()).into(),
                        ..pb::CheckResponse::default()
                    });
                }
            }
        }

        let checks: Vec<Check> = resolution
            .limits
            .iter()
            .map(|applicable| Check {
                key: applicable.key.clone(),
                limit: applicable.limit.clone(),
                cost: match applicable.dimension {
                    Dimension::Requests => 1,
                    Dimension::Tokens => tokens,
                    Dimension::Spend => cost,
                },
            })
            .collect();
        let slots: Vec<_> = resolution
            .slots
            .iter()
            .map(|slot| slot.slot.clone())
            .collect();
        // Only token and spend counters and slots change at Commit.
        let settles = !slots.is_empty()
            || resolution
                .limits
                .iter()
                .any(|applicable| applicable.dimension != Dimension::Requests);
        let payload = if settles {
            let held = Held {
                admitted_at: now,
                expire_at,
                limits: resolution
                    .limits
                    .iter()
                    .zip(&checks)
                    .filter(|(applicable, _)| applicable.dimension != Dimension::Requests)
                    .map(|(applicable, check)| HeldLimit {
                        key: check.key.clone(),
                        limit: check.limit.clone(),
                        dimension: applicable.dimension,
                        cost: check.cost,
                    })
                    .collect(),
                slots: slots.iter().map(|slot| slot.key.clone()).collect(),
                granted: None,
            };
            Some(serde_json::to_string(&held).map_err(|error| {
                QuotaError::Unavailable(format!("encoding a reservation: {error}"))
            })?)
        } else {
            None
        };
        let admission = Admission {
            checks: &checks,
            slots: &slots,
            holder: &uuid,
            hold_until: expire_at,
            record: payload.as_deref().map(|payload| NewRecord {
                id: &uuid,
                payload,
                keep_until: expire_at.saturating_add(TOMBSTONE_MICROS),
                lease_expire_at: None,
            }),
        };
        let (decision, backend) = self
            .limiter
            .admit(&request.tenant_id, &admission, now)
            .await;
        let limits = statuses(&resolution, &decision.outcomes);
        if !decision.allowed {
            if owner.is_some() {
                self.store.release_hold(&uuid).await?;
            }
            let reason = refusal(&limits);
            metrics::counter!("quota_checks_total", "result" => "refused").increment(1);
            tracing::debug!(
                request_id = request.request_id,
                tenant_id = request.tenant_id,
                ?reason,
                "check refused"
            );
            return Ok(pb::CheckResponse {
                allowed: false,
                reservation_id: String::new(),
                retry_after: retry_after(&limits),
                limits,
                refusal_reason: reason.into(),
                balance_micros: balance_micros.map(|available| available + cost),
                backend: backend_to_proto(backend).into(),
                commit_required: false,
            });
        }
        metrics::counter!("quota_checks_total", "result" => "allowed").increment(1);
        let tag = if payload.is_some() {
            backend.stored().tag()
        } else {
            NOTHING_KEPT
        };
        Ok(pb::CheckResponse {
            allowed: true,
            commit_required: payload.is_some() || owner.is_some(),
            reservation_id: format!("{tag}{uuid}"),
            limits,
            refusal_reason: pb::RefusalReason::Unspecified.into(),
            retry_after: None,
            balance_micros,
            backend: backend_to_proto(backend).into(),
        })
    }

    pub async fn commit(
        &self,
        request: &pb::CommitRequest,
    ) -> Result<pb::CommitResponse, QuotaError> {
        let (tag, uuid) = parse_reservation_id(&request.reservation_id)?;
        require_tenant(&request.tenant_id)?;
        let success = match pb::CommitOutcome::try_from(request.outcome) {
            Ok(pb::CommitOutcome::Success) => true,
            Ok(pb::CommitOutcome::Failure) => false,
            _ => return Err(QuotaError::invalid("outcome", "must be SUCCESS or FAILURE")),
        };
        let prompt = non_negative(request.prompt_tokens, "prompt_tokens")?;
        let completion = non_negative(request.completion_tokens, "completion_tokens")?;
        non_negative(request.cached_tokens, "cached_tokens")?;
        let cost = non_negative(request.cost_micros, "cost_micros")?;
        let owner = balance_owner(&request.tenant_id, request.balance_owner.as_ref())?;
        let (tokens, cost) = if success {
            (prompt.saturating_add(completion), cost)
        } else {
            (0, 0)
        };
        let now = self.clock.now();
        let mut response = pb::CommitResponse::default();

        if let Some(stored) = Stored::from_tag(tag) {
            let claimed = self
                .limiter
                .claim(stored, &request.tenant_id, uuid, ClaimMode::Settle, now)
                .await;
            let (adjustments, slots, stored) = match claimed {
                Ok(Claimed::Open(payload) | Claimed::Expired(payload)) => {
                    let held = decode(&payload)?;
                    response.reservation_expired = held.expire_at <= now;
                    let adjustments = held
                        .limits
                        .iter()
                        .filter_map(|limit| {
                            let actual = match limit.dimension {
                                Dimension::Requests => return None,
                                Dimension::Tokens => tokens,
                                Dimension::Spend => cost,
                            };
                            Some(Adjustment {
                                key: limit.key.clone(),
                                limit: limit.limit.clone(),
                                delta: actual - limit.cost,
                                admitted_at: held.admitted_at,
                            })
                        })
                        .filter(|adjustment| adjustment.delta != 0)
                        .collect();
                    (adjustments, held.slots, stored)
                }
                Ok(Claimed::Settled) => {
                    response.already_committed = true;
                    (Vec::new(), Vec::new(), stored)
                }
                Ok(Claimed::Unknown) => {
                    // Lapsed and forgotten: count the actual usage from the
                    // scopes the request repeats.
                    response.reservation_expired = true;
                    (
                        self.late_usage(request, tokens, cost, now)?,
                        Vec::new(),
                        stored,
                    )
                }
                Err(unavailable) => {
                    tracing::warn!(%unavailable, reservation_id = request.reservation_id,
                        "settling from the request's scopes; the reservation's estimate stays counted in redis");
                    (
                        self.late_usage(request, tokens, cost, now)?,
                        Vec::new(),
                        stored,
                    )
                }
            };
            if !adjustments.is_empty() || !slots.is_empty() {
                self.limiter
                    .adjust(stored, &request.tenant_id, &adjustments, &slots, uuid, now)
                    .await;
            }
        }

        // Money settles in SQL, idempotently by reservation, even when the
        // counters were settled by an earlier attempt.
        if let Some(owner) = &owner {
            response.balance_micros = Some(
                self.store
                    .settle(owner, uuid, &request.reservation_id, cost)
                    .await?,
            );
        }
        metrics::counter!("quota_commits_total", "outcome" => if success { "success" } else { "failure" })
            .increment(1);
        Ok(response)
    }

    /// Counts actual tokens and spend against the request's scopes, for a
    /// reservation whose record is gone.
    fn late_usage(
        &self,
        request: &pb::CommitRequest,
        tokens: i64,
        cost: i64,
        now: i64,
    ) -> Result<Vec<Adjustment>, QuotaError> {
        let resolution = self.limits.resolve(&request.tenant_id, &request.scopes)?;
        Ok(resolution
            .limits
            .into_iter()
            .filter_map(|applicable| {
                let delta = match applicable.dimension {
                    Dimension::Requests => return None,
                    Dimension::Tokens => tokens,
                    Dimension::Spend => cost,
                };
                (delta > 0).then_some(Adjustment {
                    key: applicable.key,
                    limit: applicable.limit,
                    delta,
                    admitted_at: now,
                })
            })
            .collect())
    }

    pub async fn lease(&self, request: &pb::LeaseRequest) -> Result<pb::LeaseResponse, QuotaError> {
        require_tenant(&request.tenant_id)?;
        if request.tenant_id.contains('.') {
            return Err(QuotaError::invalid("tenant_id", "must not contain '.'"));
        }
        let dimension = Dimension::from_proto(request.dimension)
            .ok_or_else(|| QuotaError::invalid("dimension", "must be REQUESTS, TOKENS or SPEND"))?;
        if request.requested_amount <= 0 {
            return Err(QuotaError::invalid("requested_amount", "must be positive"));
        }
        let ttl = ttl(
            request.ttl.as_ref(),
            self.settings.lease_ttl,
            self.settings.max_lease_ttl,
            "ttl",
        )?;
        let mut resolution = self.limits.resolve(&request.tenant_id, &request.scopes)?;
        resolution
            .limits
            .retain(|applicable| applicable.dimension == dimension);
        resolution.slots.clear();
        let now = self.clock.now();
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        if resolution.limits.is_empty() {
            // Nothing limits this dimension: the edge may admit freely.
            return Ok(pb::LeaseResponse {
                lease_id: format!("l{NOTHING_KEPT}.{uuid}.{}", request.tenant_id),
                granted_amount: request.requested_amount,
                limits: Vec::new(),
                expire_time: Some(timestamp_from_micros(now.saturating_add(ttl))),
                backend: backend_to_proto(self.limiter.backend()).into(),
            });
        }
        let probe: Vec<Check> = resolution
            .limits
            .iter()
            .map(|applicable| Check {
                key: applicable.key.clone(),
                limit: applicable.limit.clone(),
                cost: 0,
            })
            .collect();
        let (seen, backend) = self
            .limiter
            .admit(&request.tenant_id, &Admission::checks(&probe), now)
            .await;
        let tightest = seen
            .outcomes
            .iter()
            .map(|outcome| outcome.remaining)
            .min()
            .unwrap_or(0);
        let granted = request
            .requested_amount
            .min(tightest.saturating_mul(self.settings.lease_percent) / 100);
        let none = |decision_outcomes: &[Outcome], backend| pb::LeaseResponse {
            lease_id: String::new(),
            granted_amount: 0,
            limits: statuses(&resolution, decision_outcomes),
            expire_time: None,
            backend: backend_to_proto(backend).into(),
        };
        if granted <= 0 {
            return Ok(none(&seen.outcomes, backend));
        }
        // Never past a fixed window's end: what it took would not come back.
        let expire_at = resolution
            .limits
            .iter()
            .filter(|applicable| {
                applicable.limit.window.is_calendar()
                    || applicable.limit.algorithm == crate::limiter::Algorithm::FixedWindow
            })
            .map(|applicable| applicable.limit.window.bounds(now).1)
            .fold(now.saturating_add(ttl), i64::min);
        let checks: Vec<Check> = probe
            .into_iter()
            .map(|check| Check {
                cost: granted,
                ..check
            })
            .collect();
        let held = Held {
            admitted_at: now,
            expire_at,
            limits: resolution
                .limits
                .iter()
                .map(|applicable| HeldLimit {
                    key: applicable.key.clone(),
                    limit: applicable.limit.clone(),
                    dimension,
                    cost: granted,
                })
                .collect(),
            slots: Vec::new(),
            granted: Some(granted),
        };
        let payload = serde_json::to_string(&held)
            .map_err(|error| QuotaError::Unavailable(format!("encoding a lease: {error}")))?;
        let admission = Admission {
            checks: &checks,
            slots: &[],
            holder: &uuid,
            hold_until: expire_at,
            record: Some(NewRecord {
                id: &uuid,
                payload: &payload,
                keep_until: expire_at.saturating_add(TOMBSTONE_MICROS),
                lease_expire_at: Some(expire_at),
            }),
        };
        let (decision, backend) = self
            .limiter
            .admit(&request.tenant_id, &admission, now)
            .await;
        if !decision.allowed {
            // Another request took the room in between.
            return Ok(none(&decision.outcomes, backend));
        }
        let stored = backend.stored();
        let lease_id = format!("l{}.{uuid}.{}", stored.tag(), request.tenant_id);
        self.limiter.index_lease(stored, &lease_id, expire_at).await;
        metrics::counter!("quota_leases_total").increment(1);
        tracing::debug!(
            edge_id = request.edge_id,
            lease_id,
            granted,
            "lease granted"
        );
        Ok(pb::LeaseResponse {
            lease_id,
            granted_amount: granted,
            limits: statuses(&resolution, &decision.outcomes),
            expire_time: Some(timestamp_from_micros(expire_at)),
            backend: backend_to_proto(backend).into(),
        })
    }

    pub async fn release_lease(
        &self,
        request: &pb::ReleaseLeaseRequest,
    ) -> Result<pb::ReleaseLeaseResponse, QuotaError> {
        let (tag, uuid, tenant_id) = parse_lease_id(&request.lease_id)?;
        let used = non_negative(request.used_amount, "used_amount")?;
        let Some(stored) = Stored::from_tag(tag) else {
            return Ok(pb::ReleaseLeaseResponse { returned_amount: 0 });
        };
        let now = self.clock.now();
        let claimed = self
            .limiter
            .claim(stored, tenant_id, uuid, ClaimMode::Settle, now)
            .await
            .map_err(|error| QuotaError::Unavailable(error.to_string()))?;
        let (held, delta, returned) = match claimed {
            Claimed::Open(payload) => {
                let held = decode(&payload)?;
                let granted = held.granted.unwrap_or(0);
                (held, used - granted, (granted - used).max(0))
            }
            // The sweeper gave the whole lease back: what was used counts now.
            Claimed::Expired(payload) => (decode(&payload)?, used, 0),
            Claimed::Settled | Claimed::Unknown => {
                return Ok(pb::ReleaseLeaseResponse { returned_amount: 0 });
            }
        };
        self.settle_lease(stored, tenant_id, uuid, &held, delta, now)
            .await;
        self.limiter.unindex_lease(stored, &request.lease_id).await;
        Ok(pb::ReleaseLeaseResponse {
            returned_amount: returned,
        })
    }

    async fn settle_lease(
        &self,
        stored: Stored,
        tenant_id: &str,
        uuid: &str,
        held: &Held,
        delta: i64,
        now: i64,
    ) {
        if delta == 0 {
            return;
        }
        let adjustments: Vec<Adjustment> = held
            .limits
            .iter()
            .map(|limit| Adjustment {
                key: limit.key.clone(),
                limit: limit.limit.clone(),
                delta,
                admitted_at: held.admitted_at,
            })
            .collect();
        self.limiter
            .adjust(stored, tenant_id, &adjustments, &[], uuid, now)
            .await;
    }

    /// Returns leases past their expiry; any replica may run it, a lease is
    /// returned once. Returns how many were returned.
    pub async fn expire_leases(&self, now: i64) -> usize {
        let mut returned = 0;
        for (stored, lease_id) in self.limiter.due_leases(now, 256).await {
            // Memory lists leases by their record id; Redis by lease id.
            let (tenant_id, uuid) = match (stored, parse_lease_id(&lease_id)) {
                (Stored::Redis, Ok((_, uuid, tenant_id))) => {
                    (tenant_id.to_owned(), uuid.to_owned())
                }
                (Stored::Redis, Err(_)) => {
                    self.limiter.unindex_lease(stored, &lease_id).await;
                    continue;
                }
                (Stored::Memory, _) => (String::new(), lease_id.clone()),
            };
            match self
                .limiter
                .claim(stored, &tenant_id, &uuid, ClaimMode::Expire, now)
                .await
            {
                Ok(Claimed::Open(payload)) => {
                    if let Ok(held) = decode(&payload) {
                        let granted = held.granted.unwrap_or(0);
                        self.settle_lease(stored, &tenant_id, &uuid, &held, -granted, now)
                            .await;
                        returned += 1;
                        metrics::counter!("quota_leases_expired_total").increment(1);
                    }
                    self.limiter.unindex_lease(stored, &lease_id).await;
                }
                Ok(Claimed::Unknown | Claimed::Settled | Claimed::Expired(_)) => {
                    self.limiter.unindex_lease(stored, &lease_id).await;
                }
                // Redis is away: try again on a later sweep.
                Err(_) => {}
            }
        }
        returned
    }

    /// Housekeeping until `shutdown`: expires leases, sweeps the memory
    /// limiter and lapsed balance holds.
    pub async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            ticks += 1;
            let now = self.clock.now();
            self.expire_leases(now).await;
            if ticks.is_multiple_of(10) {
                self.limiter.memory_limiter().sweep(now);
            }
            if ticks.is_multiple_of(60)
                && let Err(error) = self.store.purge_expired_holds(now).await
            {
                tracing::warn!(%error, "could not purge lapsed balance holds");
            }
        }
    }
}

fn decode(payload: &str) -> Result<Held, QuotaError> {
    serde_json::from_str(payload)
        .map_err(|error| QuotaError::Unavailable(format!("reading a reservation: {error}")))
}

fn parse_reservation_id(id: &str) -> Result<(char, &str), QuotaError> {
    let invalid = || QuotaError::invalid("reservation_id", "is not a reservation id from Check");
    let mut chars = id.chars();
    let tag = chars.next().ok_or_else(invalid)?;
    let uuid = chars.as_str();
    let valid = matches!(tag, 'r' | 'm' | NOTHING_KEPT)
        && uuid.len() == 32
        && uuid.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !valid {
        return Err(invalid());
    }
    Ok((tag, uuid))
}

fn parse_lease_id(id: &str) -> Result<(char, &str, &str), QuotaError> {
    let invalid = || QuotaError::invalid("lease_id", "is not a lease id from Lease");
    let rest = id.strip_prefix('l').ok_or_else(invalid)?;
    let mut parts = rest.splitn(3, '.');
    let (Some(tag), Some(uuid), Some(tenant_id)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let tag = match tag {
        "r" => 'r',
        "m" => 'm',
        "n" => NOTHING_KEPT,
        _ => return Err(invalid()),
    };
    if uuid.len() != 32
        || !uuid.bytes().all(|byte| byte.is_ascii_hexdigit())
        || tenant_id.is_empty()
    {
        return Err(invalid());
    }
    Ok((tag, uuid, tenant_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_in_their_own_shape() {
        let uuid = "0190a0b0c0d0e0f00112233445566778";
        assert_eq!(
            parse_reservation_id(&format!("r{uuid}")).unwrap(),
            ('r', uuid)
        );
        assert!(parse_reservation_id("").is_err());
        assert!(parse_reservation_id(&format!("x{uuid}")).is_err());
        assert!(parse_reservation_id("r123").is_err());
        assert_eq!(
            parse_lease_id(&format!("lm.{uuid}.tenant-1")).unwrap(),
            ('m', uuid, "tenant-1")
        );
        assert!(parse_lease_id(&format!("lm.{uuid}.")).is_err());
        assert!(parse_lease_id(&format!("r{uuid}")).is_err());
    }

    #[test]
    fn statuses_put_exceeded_then_tightest_first() {
        let status = |name: &str, limit, remaining, exceeded| pb::LimitStatus {
            name: name.to_owned(),
            limit,
            remaining,
            exceeded,
            ..pb::LimitStatus::default()
        };
        let mut statuses = vec![
            status("loose", 100, 90, false),
            status("tight", 10, 1, false),
            status("over", 1_000, 0, true),
        ];
        sort_statuses(&mut statuses);
        let names: Vec<_> = statuses.iter().map(|status| status.name.as_str()).collect();
        assert_eq!(names, ["over", "tight", "loose"]);
    }
}
