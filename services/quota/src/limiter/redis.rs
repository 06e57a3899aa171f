//! The Redis backend: every check is one atomic Lua script
//! (`check_v1.lua`), so any number of quota replicas count together.
//!
//! Keys are `{prefix}:v1:{tenant}:{limit key}`: the version lets old and
//! new replicas run side by side during a rollout, and the `{tenant}` hash
//! tag keeps one request's counters in one Redis Cluster slot.

use std::time::Duration;

use deadpool_redis::redis;

use super::{Algorithm, Check, Decision, Outcome};

const SCRIPT: &str = include_str!("check_v1.lua");

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
}

pub struct RedisLimiter {
    pool: deadpool_redis::Pool,
    prefix: String,
    script: redis::Script,
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
    /// `timeout` bounds every call, including getting a connection: a slow
    /// Redis must never make a request wait long.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, RedisLimiterError> {
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: 32,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(timeout),
                create: Some(timeout),
                recycle: Some(timeout),
            },
            ..deadpool_redis::PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(|error| RedisLimiterError::Pool(error.to_string()))?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            script: redis::Script::new(SCRIPT),
            timeout,
        })
    }

    /// Checks every limit of one tenant's request at `now`, all-or-nothing.
    pub async fn check(
        &self,
        tenant_id: &str,
        checks: &[Check],
        now: i64,
    ) -> Result<Decision, RedisLimiterError> {
        match tokio::time::timeout(self.timeout, self.check_inner(tenant_id, checks, now)).await {
            Ok(result) => result,
            Err(_) => Err(RedisLimiterError::Timeout(self.timeout)),
        }
    }

    async fn check_inner(
        &self,
        tenant_id: &str,
        checks: &[Check],
        now: i64,
    ) -> Result<Decision, RedisLimiterError> {
        let mut connection = self
            .pool
            .get()
            .await
            .map_err(|error| RedisLimiterError::Pool(error.to_string()))?;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .arg(now)
            .arg(uuid::Uuid::now_v7().simple().to_string());
        for check in checks {
            let (start, end) = check.limit.window.bounds(now);
            let algorithm = match check.limit.algorithm {
                _ if check.limit.window.is_calendar() => 1,
                Algorithm::FixedWindow => 1,
                Algorithm::SlidingWindow => 2,
                Algorithm::SlidingLog => 3,
                Algorithm::Gcra => 4,
            };
            invocation
                .key(format!("{}:v1:{{{tenant_id}}}:{}", self.prefix, check.key))
                .arg(algorithm)
                .arg(check.limit.limit)
                .arg(start)
                .arg(end)
                .arg(check.limit.burst)
                .arg(check.cost.max(0));
        }
        let values: Vec<i64> = invocation.invoke_async(&mut *connection).await?;
        let expected = 1 + 4 * checks.len();
        if values.len() != expected {
            return Err(RedisLimiterError::Shape(values.len(), expected));
        }
        let outcomes = values[1..]
            .chunks_exact(4)
            .map(|chunk| Outcome {
                allowed: chunk[0] == 1,
                remaining: chunk[1],
                reset_at: chunk[2],
                retry_after: chunk[3],
            })
            .collect();
        Ok(Decision {
            allowed: values[0] == 1,
            outcomes,
        })
    }

    /// One round trip, for health checks and the breaker's probe.
    pub async fn ping(&self) -> Result<(), RedisLimiterError> {
        let ping = async {
            let mut connection = self
                .pool
                .get()
                .await
                .map_err(|error| RedisLimiterError::Pool(error.to_string()))?;
            redis::cmd("PING")
                .query_async::<String>(&mut *connection)
                .await?;
            Ok(())
        };
        tokio::time::timeout(self.timeout, ping)
            .await
            .unwrap_or(Err(RedisLimiterError::Timeout(self.timeout)))
    }
}
