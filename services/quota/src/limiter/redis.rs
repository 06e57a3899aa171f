//! The Redis backend: every admission is one atomic Lua script
//! (`reserve_v1.lua`), so any number of quota replicas count together;
//! settling is a claim (`claim_v1.lua`, exactly once) then an adjustment
//! (`adjust_v1.lua`).
//!
//! Keys are `{prefix}:v1:{tenant}:{limit key}`: the version lets old and
//! new replicas run side by side during a rollout, and the `{tenant}` hash
//! tag keeps one request's counters in one Redis Cluster slot, as a cluster
//! requires of every script's keys (see `redis_pool.rs`).

use std::time::Duration;

use deadpool_redis::redis;

use super::redis_pool::{RedisConnection, RedisPool};
use super::window::LIFETIME_END;
use super::{
    Adjustment, Admission, Algorithm, Check, ClaimMode, Claimed, Decision, Limit, Outcome, State,
    slot_outcome,
};

const RESERVE: &str = include_str!("reserve_v1.lua");
const CLAIM: &str = include_str!("claim_v1.lua");
const ADJUST: &str = include_str!("adjust_v1.lua");

#[derive(Debug, thiserror::Error)]
pub enum RedisLimiterError {
    #[error("redis pool: {0}")]
    Pool(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered {0} values, expected {1}")]
    Shape(usize, usize),
    #[error("redis answered an unknown record state {0:?}")]
    State(String),
}

impl RedisLimiterError {
    /// Whether the connection itself may be broken (not an answer Redis gave).
    fn is_connection_failure(&self) -> bool {
        match self {
            Self::Pool(_) | Self::Timeout(_) => true,
            Self::Redis(error) => {
                error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_connection_refusal()
                    || error.is_timeout()
                    || error.is_unrecoverable_error()
            }
            Self::Shape(..) | Self::State(_) => false,
        }
    }
}

pub struct RedisLimiter {
    pool: RedisPool,
    prefix: String,
    reserve: redis::Script,
    claim: redis::Script,
    adjust: redis::Script,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// One Redis at `url`. `timeout` bounds every call, including getting
    /// a connection: a slow Redis must never make a request wait long.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, RedisLimiterError> {
        let pool = RedisPool::single(url, timeout).map_err(RedisLimiterError::Pool)?;
        Ok(Self::with_pool(pool, prefix, timeout))
    }

    /// A Redis Cluster reached through `seeds` (some of its nodes).
    pub fn cluster(
        seeds: &[String],
        prefix: &str,
        timeout: Duration,
    ) -> Result<Self, RedisLimiterError> {
        let pool = RedisPool::cluster(seeds, timeout).map_err(RedisLimiterError::Pool)?;
        Ok(Self::with_pool(pool, prefix, timeout))
    }

    fn with_pool(pool: RedisPool, prefix: &str, timeout: Duration) -> Self {
        Self {
            pool,
            prefix: prefix.to_owned(),
            reserve: redis::Script::new(RESERVE),
            claim: redis::Script::new(CLAIM),
            adjust: redis::Script::new(ADJUST),
            timeout,
        }
    }

    /// Checks every limit of one tenant's request at `now`, all-or-nothing.
    pub async fn check(
        &self,
        tenant_id: &str,
        checks: &[Check],
        now: i64,
    ) -> Result<Decision, RedisLimiterError> {
        self.admit(tenant_id, &Admission::checks(checks), now).await
    }

    /// Admits (or refuses) every limit and slot at `now`, all-or-nothing,
    /// keeping the record when admitted.
    pub async fn admit(
        &self,
        tenant_id: &str,
        admission: &Admission<'_>,
        now: i64,
    ) -> Result<Decision, RedisLimiterError> {
        self.bounded(self.admit_inner(tenant_id, admission, now))
            .await
    }

    /// Takes ownership of settling (or expiring) record `id`, once across
    /// replicas; `tombstone` is how long a settled record is remembered.
    pub async fn claim(
        &self,
        tenant_id: &str,
        id: &str,
        mode: ClaimMode,
        tombstone: Duration,
    ) -> Result<Claimed, RedisLimiterError> {
        let call = async {
            let mut connection = self.connection().await?;
            let mode = match mode {
                ClaimMode::Settle => "settle",
                ClaimMode::Expire => "expire",
            };
            let (state, payload): (String, String) = self
                .claim
                .key(self.record_key(tenant_id, id))
                .arg(mode)
                .arg(u64::try_from(tombstone.as_millis()).unwrap_or(u64::MAX))
                .invoke_async(&mut connection)
                .await?;
            Ok(match state.as_str() {
                "o" => Claimed::Open(payload),
                "x" => Claimed::Expired(payload),
                "d" => Claimed::Settled,
                "n" => Claimed::Unknown,
                _ => return Err(RedisLimiterError::State(state)),
            })
        };
        self.bounded(call).await
    }

    /// Applies settlement changes and frees `holder`'s slots, in one script.
    pub async fn adjust(
        &self,
        tenant_id: &str,
        adjustments: &[Adjustment],
        slots: &[String],
        holder: &str,
        now: i64,
    ) -> Result<(), RedisLimiterError> {
        let call = async {
            let mut connection = self.connection().await?;
            let mut invocation = self.adjust.prepare_invoke();
            // A zero change changes nothing, in memory too.
            let changes = adjustments
                .iter()
                .filter(|adjustment| adjustment.delta != 0);
            invocation.arg(now).arg(holder).arg(changes.clone().count());
            for adjustment in changes {
                invocation.key(self.counter_key(tenant_id, &adjustment.key));
                adjustment_args(&mut invocation, adjustment, now);
            }
            for slot in slots {
                invocation.key(self.counter_key(tenant_id, slot));
            }
            let _: i64 = invocation.invoke_async(&mut connection).await?;
            Ok(())
        };
        self.bounded(call).await
    }

    /// Remembers that lease `member` is due for expiry at `expire_at`, so
    /// any replica's sweeper can return it.
    pub async fn index_lease(&self, member: &str, expire_at: i64) -> Result<(), RedisLimiterError> {
        let call = async {
            let mut connection = self.connection().await?;
            redis::cmd("ZADD")
                .arg(self.lease_index())
                .arg(expire_at)
                .arg(member)
                .query_async::<i64>(&mut connection)
                .await?;
            Ok(())
        };
        self.bounded(call).await
    }

    /// Up to `max` leases due for expiry at `now`.
    pub async fn due_leases(&self, now: i64, max: usize) -> Result<Vec<String>, RedisLimiterError> {
        let call = async {
            let mut connection = self.connection().await?;
            Ok(redis::cmd("ZRANGEBYSCORE")
                .arg(self.lease_index())
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(max)
                .query_async::<Vec<String>>(&mut connection)
                .await?)
        };
        self.bounded(call).await
    }

    pub async fn unindex_lease(&self, member: &str) -> Result<(), RedisLimiterError> {
        let call = async {
            let mut connection = self.connection().await?;
            redis::cmd("ZREM")
                .arg(self.lease_index())
                .arg(member)
                .query_async::<i64>(&mut connection)
                .await?;
            Ok(())
        };
        self.bounded(call).await
    }

    async fn admit_inner(
        &self,
        tenant_id: &str,
        admission: &Admission<'_>,
        now: i64,
    ) -> Result<Decision, RedisLimiterError> {
        let mut connection = self.connection().await?;
        let mut invocation = self.reserve.prepare_invoke();
        let nonce = if admission.holder.is_empty() {
            uuid::Uuid::now_v7().simple().to_string()
        } else {
            admission.holder.to_owned()
        };
        let (payload, record_ttl_ms) = admission.record.map_or((String::new(), 0), |record| {
            (
                record.payload.to_owned(),
                ((record.keep_until - now) / 1000).max(1),
            )
        });
        invocation
            .arg(now)
            .arg(nonce)
            .arg(admission.checks.len())
            .arg(admission.slots.len())
            .arg(admission.hold_until)
            .arg(payload)
            .arg(record_ttl_ms)
            .arg(expiry_ms((admission.hold_until - now).max(0)));
        for check in admission.checks {
            invocation.key(self.counter_key(tenant_id, &check.key));
            limit_args(&mut invocation, check, now);
        }
        for slot in admission.slots {
            invocation
                .key(self.counter_key(tenant_id, &slot.key))
                .arg(slot.max);
        }
        if let Some(record) = admission.record {
            invocation.key(self.record_key(tenant_id, record.id));
        }
        let values: Vec<i64> = invocation.invoke_async(&mut connection).await?;
        decision(admission, &values, now)
    }

    async fn connection(&self) -> Result<RedisConnection, RedisLimiterError> {
        self.pool.get().await.map_err(RedisLimiterError::Pool)
    }

    /// Bounds a call by the timeout: a slow Redis must never make a request
    /// wait long.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisLimiterError>>,
    ) -> Result<T, RedisLimiterError> {
        // Boxed: the script call's state is large, and moving it with every
        // enclosing future showed as memmove in the profile.
        let result = tokio::time::timeout(self.timeout, Box::pin(call))
            .await
            .unwrap_or(Err(RedisLimiterError::Timeout(self.timeout)));
        if result
            .as_ref()
            .is_err_and(RedisLimiterError::is_connection_failure)
        {
            self.pool.discard_shared();
        }
        result
    }

    fn counter_key(&self, tenant_id: &str, key: &str) -> String {
        format!("{}:v1:{{{}}}:{key}", self.prefix, hash_tag(tenant_id))
    }

    fn record_key(&self, tenant_id: &str, id: &str) -> String {
        format!("{}:v1:{{{}}}:record:{id}", self.prefix, hash_tag(tenant_id))
    }

    fn lease_index(&self) -> String {
        format!("{}:v1:leases", self.prefix)
    }

    /// One round trip, for health checks and the breaker's probe.
    pub async fn ping(&self) -> Result<(), RedisLimiterError> {
        let ping = async {
            let mut connection = self.connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await?;
            Ok(())
        };
        self.bounded(ping).await
    }
}

/// Redis ignores an empty `{}` as a hash tag, which would spread a global
/// (tenant-less) request's keys over slots, and a cluster refuses a script
/// whose keys are in more than one slot.
fn hash_tag(tenant_id: &str) -> &str {
    if tenant_id.is_empty() { "-" } else { tenant_id }
}

/// How long (ms) a key must outlive `micros` from now: the script's
/// expiries, computed here so that it receives them as text.
fn expiry_ms(micros: i64) -> i64 {
    (micros + 999) / 1000 + 1000
}

/// The eight values the reserve script takes per limit (see its header).
fn limit_args(invocation: &mut redis::ScriptInvocation<'_>, check: &Check, now: i64) {
    let limit = &check.limit;
    let (start, end) = limit.window.bounds(now);
    let length = end - start;
    let code = algorithm_code(limit);
    invocation.arg(code).arg(limit.limit).arg(check.cost.max(0));
    let given = match code {
        1 if end >= LIFETIME_END => {
            invocation.arg(start).arg("");
            2
        }
        1 => {
            invocation.arg(start).arg(expiry_ms(end - now));
            2
        }
        2 => {
            invocation
                .arg(start)
                .arg(start - length)
                .arg(end - now)
                .arg(length)
                .arg(expiry_ms(end - now + length));
            5
        }
        3 => {
            invocation.arg(length).arg(expiry_ms(length));
            2
        }
        _ => {
            invocation.arg(length).arg(limit.burst);
            2
        }
    };
    pad(invocation, given, 5);
}

/// Fills the values an algorithm does not use, so every entry has the
/// script's fixed width.
fn pad(invocation: &mut redis::ScriptInvocation<'_>, given: usize, width: usize) {
    for _ in given..width {
        invocation.arg("");
    }
}

/// The eight values the adjust script takes per adjustment (see its header).
fn adjustment_args(
    invocation: &mut redis::ScriptInvocation<'_>,
    adjustment: &Adjustment,
    now: i64,
) {
    let limit = &adjustment.limit;
    let (start, end) = limit.window.bounds(now);
    let length = end - start;
    let admitted = limit.window.bounds(adjustment.admitted_at).0;
    let code = algorithm_code(limit);
    invocation.arg(code).arg(adjustment.delta);
    let given = match code {
        1 if end >= LIFETIME_END => {
            invocation.arg(admitted).arg(start).arg("");
            3
        }
        1 => {
            invocation
                .arg(admitted)
                .arg(start)
                .arg(expiry_ms(end - now));
            3
        }
        2 => {
            let after_admitted = admitted + limit.window.length(adjustment.admitted_at);
            invocation
                .arg(admitted)
                .arg(start)
                .arg(expiry_ms(end - now + length))
                .arg(after_admitted)
                .arg(start - length);
            5
        }
        3 => {
            invocation
                .arg(adjustment.admitted_at)
                .arg(length)
                .arg(expiry_ms(length));
            3
        }
        _ => {
            invocation.arg(limit.limit).arg(length);
            2
        }
    };
    pad(invocation, given, 6);
}

/// Reads the reserve script's answer: window counters come back as their
/// counts, from which the memory backend's own code derives the outcome;
/// the script's verdict stands.
fn decision(
    admission: &Admission<'_>,
    values: &[i64],
    now: i64,
) -> Result<Decision, RedisLimiterError> {
    let expected = 1 + 4 * (admission.checks.len() + admission.slots.len());
    if values.len() != expected {
        return Err(RedisLimiterError::Shape(values.len(), expected));
    }
    let (limits, slots) = values[1..].split_at(4 * admission.checks.len());
    let limit_outcomes = admission
        .checks
        .iter()
        .zip(limits.chunks_exact(4))
        .map(|(check, chunk)| limit_outcome(check, chunk, now));
    let slot_outcomes = admission
        .slots
        .iter()
        .zip(slots.chunks_exact(4))
        .map(|(slot, chunk)| slot_outcome(chunk[1], slot.max));
    Ok(Decision {
        allowed: values[0] == 1,
        outcomes: limit_outcomes.chain(slot_outcomes).collect(),
    })
}

fn limit_outcome(check: &Check, chunk: &[i64], now: i64) -> Outcome {
    let allowed = chunk[0] == 1;
    let limit = &check.limit;
    let window_start = limit.window.bounds(now).0;
    let state = match algorithm_code(limit) {
        1 => State::Fixed {
            window_start,
            used: chunk[1],
        },
        2 => State::Sliding {
            window_start,
            current: chunk[1],
            previous: chunk[2],
        },
        _ => {
            return Outcome {
                allowed,
                remaining: chunk[1],
                reset_at: chunk[2],
                retry_after: chunk[3],
            };
        }
    };
    let (outcome, _) = limit.evaluate(Some(&state), check.cost, now);
    // The script weighs in doubles; at counts past 2^53 its rounding may
    // differ from this exact arithmetic, and its verdict is what counted.
    Outcome {
        allowed,
        retry_after: if allowed {
            0
        } else {
            outcome.retry_after.max(1)
        },
        ..outcome
    }
}

fn algorithm_code(limit: &Limit) -> i64 {
    match limit.algorithm {
        _ if limit.window.is_calendar() => 1,
        Algorithm::FixedWindow => 1,
        Algorithm::SlidingWindow => 2,
        Algorithm::SlidingLog => 3,
        Algorithm::Gcra => 4,
    }
}
