//! One pool type for a single Redis and for Redis Cluster, so the limiter's
//! scripts run unchanged on either: cluster connections route each script
//! by the slot of its keys, which the `{tenant}` hash tag keeps together.
//!
//! Redis connections are multiplexed: one carries any number of concurrent
//! calls. So calls share a few connections taken from the deadpool pool
//! (which connects and validates them) instead of checking one out per
//! call, which cost a round trip (deadpool's recycle sends UNWATCH + PING)
//! for every script. A connection that fails is put back to the pool's
//! judgement: the next call takes a validated one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::{self, cluster_async::ClusterConnection};

/// Connections calls share; Redis runs one script at a time anyway, and a
/// few connections spread the client's work over the runtime's threads.
const SHARED_CONNECTIONS: usize = 4;

enum Pool {
    Single(deadpool_redis::Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

pub(super) struct RedisPool {
    pool: Pool,
    shared: [Mutex<Option<RedisConnection>>; SHARED_CONNECTIONS],
    next: AtomicUsize,
}

#[derive(Clone)]
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
            shared: Default::default(),
            next: AtomicUsize::new(0),
        }
    }

    /// A shared connection, taken from the pool when its place is empty.
    pub(super) async fn get(&self) -> Result<RedisConnection, String> {
        let place = &self.shared[self.next.fetch_add(1, Ordering::Relaxed) % SHARED_CONNECTIONS];
        if let Some(connection) = lock(place).clone() {
            return Ok(connection);
        }
        // The pooled object goes back to the pool idle; its clone is the
        // same connection, which the pool validates when it next lends it.
        let connection = match &self.pool {
            Pool::Single(pool) => pool
                .get()
                .await
                .map(|lent| RedisConnection::Single((*lent).clone())),
            Pool::Cluster(pool) => pool
                .get()
                .await
                .map(|lent| RedisConnection::Cluster((*lent).clone())),
        }
        .map_err(|error| error.to_string())?;
        *lock(place) = Some(connection.clone());
        Ok(connection)
    }

    /// After a failed or timed-out call: every shared connection is given
    /// up, so the next calls take connections the pool has validated (or
    /// made anew) rather than one that may be dead.
    pub(super) fn discard_shared(&self) {
        for place in &self.shared {
            *lock(place) = None;
        }
    }
}

fn lock(
    place: &Mutex<Option<RedisConnection>>,
) -> std::sync::MutexGuard<'_, Option<RedisConnection>> {
    place.lock().unwrap_or_else(PoisonError::into_inner)
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
