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

use super::redis::RedisLimiter;
use super::{Check, Decision, MemoryLimiter};

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
}

impl Limiter {
    pub fn memory() -> Self {
        Self {
            redis: None,
            memory: MemoryLimiter::new(),
            breaker: Mutex::new(Breaker::Closed),
            open_for: Duration::from_secs(1),
        }
    }

    pub fn with_redis(redis: RedisLimiter, open_for: Duration) -> Self {
        Self {
            redis: Some(redis),
            memory: MemoryLimiter::new(),
            breaker: Mutex::new(Breaker::Closed),
            open_for,
        }
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
        let Some(redis) = &self.redis else {
            return (self.memory.check(checks, now), Backend::Memory);
        };
        if matches!(*self.lock(), Breaker::Open { until } if until > Instant::now()) {
            return (self.memory.check(checks, now), Backend::MemoryFallback);
        }
        match redis.check(tenant_id, checks, now).await {
            Ok(decision) => {
                let mut breaker = self.lock();
                if matches!(*breaker, Breaker::Open { .. }) {
                    tracing::info!("redis answers again; shared limit counting resumed");
                    metrics::gauge!("quota_limiter_backend", "backend" => "memory_fallback")
                        .set(0.0);
                }
                *breaker = Breaker::Closed;
                metrics::gauge!("quota_limiter_backend", "backend" => "redis").set(1.0);
                (decision, Backend::Redis)
            }
            Err(error) => {
                {
                    let mut breaker = self.lock();
                    if matches!(*breaker, Breaker::Closed) {
                        tracing::warn!(%error, "redis failed; limiting from memory until it answers again");
                    }
                    *breaker = Breaker::Open {
                        until: Instant::now() + self.open_for,
                    };
                }
                metrics::gauge!("quota_limiter_backend", "backend" => "redis").set(0.0);
                metrics::gauge!("quota_limiter_backend", "backend" => "memory_fallback").set(1.0);
                metrics::counter!("quota_limiter_redis_failures_total").increment(1);
                (self.memory.check(checks, now), Backend::MemoryFallback)
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
