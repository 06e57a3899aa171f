//! Redis when it answers, memory when it does not.
//!
//! Each Redis call has a short timeout, and a breaker stops calling a Redis
//! that keeps failing: while it is open every check is answered at once
//! from the in-memory limiter (a per-replica floor, so limits then multiply
//! by the replica count). After `open_for` one call probes Redis again; on
//! success shared counting resumes. Transitions are logged and exported as
//! `quota_limiter_backend{backend="redis"|"memory"}`.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::redis::{RedisLimiter, RedisLimiterError};
use super::{Adjustment, Admission, Check, ClaimMode, Claimed, Decision, MemoryLimiter};

/// Which backend answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    /// Redis is configured but failing: the in-memory fallback answers.
    MemoryFallback,
    /// No Redis configured (the embedded default).
    Memory,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::MemoryFallback => "memory_fallback",
            Self::Memory => "memory",
        }
    }
}

/// Where an admission's record lives, so its settlement goes to the same
/// place: reservations taken from the memory fallback settle in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Redis,
    Memory,
}

impl Stored {
    pub fn tag(self) -> char {
        match self {
            Self::Redis => 'r',
            Self::Memory => 'm',
        }
    }

    pub fn from_tag(tag: char) -> Option<Self> {
        match tag {
            'r' => Some(Self::Redis),
            'm' => Some(Self::Memory),
            _ => None,
        }
    }
}

impl Backend {
    pub fn stored(self) -> Stored {
        match self {
            Self::Redis => Stored::Redis,
            Self::Memory | Self::MemoryFallback => Stored::Memory,
        }
    }
}

/// Redis holds the record but cannot be reached now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the limiter's redis is unavailable")]
pub struct Unavailable;

#[derive(Debug)]
enum Breaker {
    Closed,
    /// Calls go to memory until the instant; then one probe.
    Open {
        until: Instant,
    },
}

pub struct Limiter {
    redis: Option<RedisLimiter>,
    memory: MemoryLimiter,
    breaker: Mutex<Breaker>,
    open_for: Duration,
    /// True while Redis answers; gRPC health reports it as `quota.redis`.
    redis_healthy: tokio::sync::watch::Sender<bool>,
}

impl Limiter {
    pub fn memory() -> Self {
        Self {
            redis: None,
            memory: MemoryLimiter::new(),
            breaker: Mutex::new(Breaker::Closed),
            open_for: Duration::from_secs(1),
            redis_healthy: tokio::sync::watch::Sender::new(false),
        }
    }

    pub fn with_redis(redis: RedisLimiter, open_for: Duration) -> Self {
        set_backend_gauges(true);
        Self {
            redis: Some(redis),
            memory: MemoryLimiter::new(),
            breaker: Mutex::new(Breaker::Closed),
            open_for,
            redis_healthy: tokio::sync::watch::Sender::new(true),
        }
    }

    /// Follows Redis health (true while it answers); None without Redis.
    pub fn redis_health(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        self.redis.as_ref().map(|_| self.redis_healthy.subscribe())
    }

    pub fn memory_limiter(&self) -> &MemoryLimiter {
        &self.memory
    }

    /// The backend the next check would use.
    pub fn backend(&self) -> Backend {
        match (&self.redis, &*self.lock()) {
            (None, _) => Backend::Memory,
            (Some(_), Breaker::Closed) => Backend::Redis,
            (Some(_), Breaker::Open { until }) if *until <= Instant::now() => Backend::Redis,
            (Some(_), Breaker::Open { .. }) => Backend::MemoryFallback,
        }
    }

    /// Checks through Redis if it is healthy, else from memory.
    pub async fn check(&self, tenant_id: &str, checks: &[Check], now: i64) -> (Decision, Backend) {
        self.admit(tenant_id, &Admission::checks(checks), now).await
    }

    /// Admits through Redis if it is healthy, else from memory.
    pub async fn admit(
        &self,
        tenant_id: &str,
        admission: &Admission<'_>,
        now: i64,
    ) -> (Decision, Backend) {
        let Some(redis) = &self.redis else {
            return (self.memory.admit(admission, now), Backend::Memory);
        };
        match self.guarded(redis.admit(tenant_id, admission, now)).await {
            Some(decision) => (decision, Backend::Redis),
            None => (self.memory.admit(admission, now), Backend::MemoryFallback),
        }
    }

    /// Claims record `id` where it was stored. A Redis record while Redis
    /// is unreachable is [`Unavailable`].
    pub async fn claim(
        &self,
        stored: Stored,
        tenant_id: &str,
        id: &str,
        mode: ClaimMode,
        now: i64,
    ) -> Result<Claimed, Unavailable> {
        match (stored, &self.redis) {
            (Stored::Redis, Some(redis)) => self
                .guarded(redis.claim(tenant_id, id, mode, tombstone()))
                .await
                .ok_or(Unavailable),
            (Stored::Redis, None) => Ok(Claimed::Unknown),
            (Stored::Memory, _) => Ok(self.memory.claim(id, mode, now)),
        }
    }

    /// Applies settlement changes where the record was stored; when that
    /// Redis is unreachable, increases are counted in memory (so usage is
    /// never dropped) and give-backs are skipped (the safe side).
    pub async fn adjust(
        &self,
        stored: Stored,
        tenant_id: &str,
        adjustments: &[Adjustment],
        slots: &[String],
        holder: &str,
        now: i64,
    ) {
        if let (Stored::Redis, Some(redis)) = (stored, &self.redis) {
            let applied = self
                .guarded(redis.adjust(tenant_id, adjustments, slots, holder, now))
                .await;
            if applied.is_some() {
                return;
            }
            let increases: Vec<Adjustment> = adjustments
                .iter()
                .filter(|adjustment| adjustment.delta > 0)
                .cloned()
                .collect();
            self.memory.adjust(&increases, &[], holder, now);
            return;
        }
        self.memory.adjust(adjustments, slots, holder, now);
    }

    /// Makes lease `member` visible to every replica's sweeper (Redis); a
    /// memory lease is found by scanning memory.
    pub async fn index_lease(&self, stored: Stored, member: &str, expire_at: i64) {
        if let (Stored::Redis, Some(redis)) = (stored, &self.redis)
            && self
                .guarded(redis.index_lease(member, expire_at))
                .await
                .is_none()
        {
            // The lease then runs to its record's TTL without being
            // returned early: its budget is lost, never overspent.
            tracing::warn!(lease_id = member, "could not index a lease for expiry");
        }
    }

    /// Leases due for expiry, wherever they are stored.
    pub async fn due_leases(&self, now: i64, max: usize) -> Vec<(Stored, String)> {
        let mut due: Vec<(Stored, String)> = self
            .memory
            .due_leases(now)
            .into_iter()
            .map(|id| (Stored::Memory, id))
            .collect();
        if let Some(redis) = &self.redis
            && let Some(ids) = self.guarded(redis.due_leases(now, max)).await
        {
            due.extend(ids.into_iter().map(|id| (Stored::Redis, id)));
        }
        due
    }

    pub async fn unindex_lease(&self, stored: Stored, member: &str) {
        if let (Stored::Redis, Some(redis)) = (stored, &self.redis) {
            let _ = self.guarded(redis.unindex_lease(member)).await;
        }
    }

    /// Calls Redis unless the breaker is open; None means "answer from
    /// memory". Failures open the breaker, a success closes it.
    async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisLimiterError>>,
    ) -> Option<T> {
        if matches!(*self.lock(), Breaker::Open { until } if until > Instant::now()) {
            return None;
        }
        match call.await {
            Ok(value) => {
                let mut breaker = self.lock();
                if matches!(*breaker, Breaker::Open { .. }) {
                    tracing::info!("redis answers again; shared limit counting resumed");
                    set_backend_gauges(true);
                }
                *breaker = Breaker::Closed;
                self.redis_healthy
                    .send_if_modified(|healthy| !std::mem::replace(healthy, true));
                Some(value)
            }
            Err(error) => {
                {
                    let mut breaker = self.lock();
                    if matches!(*breaker, Breaker::Closed) {
                        tracing::warn!(%error, "redis failed; limiting from memory until it answers again");
                        set_backend_gauges(false);
                    }
                    *breaker = Breaker::Open {
                        until: Instant::now() + self.open_for,
                    };
                }
                self.redis_healthy
                    .send_if_modified(|healthy| std::mem::replace(healthy, false));
                metrics::counter!("quota_limiter_redis_failures_total").increment(1);
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Set on each change of backend only: a labelled gauge costs a registry
/// lookup, which every call paid when it was set per call.
fn set_backend_gauges(redis: bool) {
    let (redis, fallback) = if redis { (1.0, 0.0) } else { (0.0, 1.0) };
    metrics::gauge!("quota_limiter_backend", "backend" => "redis").set(redis);
    metrics::gauge!("quota_limiter_backend", "backend" => "memory_fallback").set(fallback);
}

/// How long a settled record is remembered, for replayed settlements.
fn tombstone() -> Duration {
    Duration::from_micros(u64::try_from(super::TOMBSTONE_MICROS).unwrap_or(0))
}
