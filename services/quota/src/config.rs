//! Quota's configuration section.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The `[quota]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen_addr: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub database_url: String,
    /// Pool size; 0: the backend's default (PostgreSQL 10, SQLite 4).
    pub max_connections: u32,
    /// Shared limit counters: `redis://host:6379`. Empty: in-memory limits
    /// (the embedded default; each replica then counts alone).
    pub redis_url: String,
    /// `redis_url` names a Redis Cluster: a comma-separated list of some
    /// of its nodes (`redis://a:6379,redis://b:6379`).
    pub redis_cluster: bool,
    /// Key prefix in Redis, so several suites can share one server.
    pub redis_prefix: String,
    /// Every Redis call gives up after this; the memory fallback answers.
    pub redis_timeout_ms: u64,
    /// After a Redis failure, how long to answer from memory before trying
    /// Redis again.
    pub redis_retry_after_ms: u64,
    /// How long a Check's reservation holds when the request names no TTL.
    pub reservation_ttl_secs: u64,
    /// The longest reservation TTL a Check may ask for.
    pub max_reservation_ttl_secs: u64,
    /// A lease's lifetime when the request names none, and the longest one.
    pub lease_ttl_secs: u64,
    pub max_lease_ttl_secs: u64,
    /// The largest share (percent) of the tightest limit's remaining budget
    /// one lease may take: it bounds how far a lost lease can overrun.
    pub lease_percent: u8,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            database_url: "sqlite://data/quota.db".to_owned(),
            max_connections: 0,
            redis_url: String::new(),
            redis_cluster: false,
            redis_prefix: "gw:quota".to_owned(),
            redis_timeout_ms: 25,
            redis_retry_after_ms: 1000,
            reservation_ttl_secs: 300,
            max_reservation_ttl_secs: 3600,
            lease_ttl_secs: 10,
            max_lease_ttl_secs: 60,
            lease_percent: 10,
        }
    }
}

impl Config {
    pub fn admission_settings(&self) -> crate::admission::Settings {
        crate::admission::Settings {
            reservation_ttl: Duration::from_secs(self.reservation_ttl_secs),
            max_reservation_ttl: Duration::from_secs(self.max_reservation_ttl_secs),
            lease_ttl: Duration::from_secs(self.lease_ttl_secs),
            max_lease_ttl: Duration::from_secs(self.max_lease_ttl_secs),
            lease_percent: i64::from(self.lease_percent),
        }
    }

    /// The Redis URLs: one, or a cluster's seed nodes.
    pub fn redis_urls(&self) -> Vec<String> {
        self.redis_url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn validate_redis(&self, problems: &mut Vec<String>) {
        let urls = self.redis_urls();
        for url in &urls {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                problems.push(format!(
                    "quota.redis_url: expected redis:// or rediss://, got {url:?}"
                ));
            }
        }
        if urls.len() > 1 && !self.redis_cluster {
            problems.push(
                "quota.redis_url: several URLs name a Redis Cluster; set quota.redis_cluster"
                    .to_owned(),
            );
        }
        if urls.is_empty() && self.redis_cluster {
            problems.push("quota.redis_cluster: needs quota.redis_url (the seed nodes)".to_owned());
        }
    }

    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("quota.database_url: must not be empty".to_owned());
        }
        self.validate_redis(problems);
        if !(1..=self.max_reservation_ttl_secs).contains(&self.reservation_ttl_secs) {
            problems.push(
                "quota.reservation_ttl_secs: must be between 1 and max_reservation_ttl_secs"
                    .to_owned(),
            );
        }
        if !(1..=self.max_lease_ttl_secs).contains(&self.lease_ttl_secs) {
            problems
                .push("quota.lease_ttl_secs: must be between 1 and max_lease_ttl_secs".to_owned());
        }
        if !(1..=50).contains(&self.lease_percent) {
            problems.push("quota.lease_percent: must be between 1 and 50".to_owned());
        }
        if !(1..=1000).contains(&self.redis_timeout_ms) {
            problems.push("quota.redis_timeout_ms: must be between 1 and 1000".to_owned());
        }
    }
}
