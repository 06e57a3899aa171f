//! One pool type for a single Redis and for Redis Cluster, so the limiter's
//! scripts run unchanged on either: cluster connections route each script
//! by the slot of its keys, which the `{tenant}` hash tag keeps together.

use std::time::Duration;

use deadpool_redis::redis::{self, aio::ConnectionLike};

pub(super) enum RedisPool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

pub(super) enum RedisConnection {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

/// Waits for a connection, creating and recycling one are all bounded by
/// `timeout`, as every call is.
fn pool_config(timeout: Duration) -> deadpool_redis::PoolConfig {
    deadpool_redis::PoolConfig {
        max_size: 32,
        timeouts: deadpool_redis::Timeouts {
            wait: Some(timeout),
            create: Some(timeout),
            recycle: Some(timeout),
        },
        ..deadpool_redis::PoolConfig::default()
    }
}

impl RedisPool {
    pub(super) fn single(url: &str, timeout: Duration) -> Result<Self, String> {
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(pool_config(timeout));
        config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map(Self::Single)
            .map_err(|error| error.to_string())
    }

    /// `seeds` are some of the cluster's nodes; the rest, and which node
    /// holds which slot, are discovered from them and followed on MOVED.
    pub(super) fn cluster(seeds: &[String], timeout: Duration) -> Result<Self, String> {
        let mut config = deadpool_redis::cluster::Config::from_urls(seeds.to_vec());
        config.pool = Some(pool_config(timeout));
        config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map(Self::Cluster)
            .map_err(|error| error.to_string())
    }

    pub(super) async fn get(&self) -> Result<RedisConnection, String> {
        match self {
            Self::Single(pool) => pool.get().await.map(RedisConnection::Single),
            Self::Cluster(pool) => pool.get().await.map(RedisConnection::Cluster),
        }
        .map_err(|error| error.to_string())
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}
