//! One pool type for a single Redis and for Redis Cluster, so the limiter's
//! scripts run unchanged on either: cluster connections route each script
//! by the slot of its keys, which the `{tenant}` hash tag keeps together.
//!
//! Redis connections are multiplexed: one carries any number of concurrent
//! calls, pipelined. So calls share one connection kept checked out of the
//! deadpool pool (which connects and validates it) instead of checking one
//! out per call, which cost a round trip for every script (deadpool's
//! recycle sends UNWATCH and PING). One shared connection ran 1.09x the
//! Check rate of four (`check_load`, same session): Redis runs one script
//! at a time, and one connection batches more calls per write. A
//! connection that fails goes back to the pool, whose recycle check judges
//! it before it is lent again.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, cluster_async::ClusterConnection};

enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

pub(super) struct RedisPool {
    pool: Pool,
    shared: Mutex<Option<Lent>>,
}

/// The connection checked out of the pool for as long as it is shared.
enum Lent {
    Single(deadpool_redis::Connection),
    Cluster(deadpool_redis::cluster::Connection),
}

impl Lent {
    fn connection(&self) -> RedisConnection {
        match self {
            Self::Single(lent) => RedisConnection::Single((**lent).clone()),
            Self::Cluster(lent) => RedisConnection::Cluster((**lent).clone()),
        }
    }
}

pub(super) enum RedisConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
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
            .map(|pool| Self::shared(Pool::Single(pool)))
            .map_err(|error| error.to_string())
    }

    /// `seeds` are some of the cluster's nodes; the rest, and which node
    /// holds which slot, are discovered from them and followed on MOVED.
    pub(super) fn cluster(seeds: &[String], timeout: Duration) -> Result<Self, String> {
        let mut config = deadpool_redis::cluster::Config::from_urls(seeds.to_vec());
        config.pool = Some(pool_config(timeout));
        config
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map(|pool| Self::shared(Pool::Cluster(pool)))
            .map_err(|error| error.to_string())
    }

    fn shared(pool: Pool) -> Self {
        Self {
            pool,
            shared: Mutex::new(None),
        }
    }

    /// The shared connection, taken from the pool when there is none.
    pub(super) async fn get(&self) -> Result<RedisConnection, String> {
        if let Some(lent) = &*self.lock() {
            return Ok(lent.connection());
        }
        let lent = match &self.pool {
            Pool::Single(pool) => pool.get().await.map(Lent::Single),
            Pool::Cluster(pool) => pool.get().await.map(Lent::Cluster),
        }
        .map_err(|error| error.to_string())?;
        let connection = lent.connection();
        // Two calls may have found none: the later one's goes back to the pool.
        self.lock().get_or_insert(lent);
        Ok(connection)
    }

    /// After a failed or timed-out call: the shared connection goes back to
    /// the pool, so the next calls take one it has validated (or made anew)
    /// rather than one that may be dead.
    pub(super) fn discard_shared(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Lent>> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
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
