//! Quota's configuration section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[quota]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen_addr: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub database_url: String,
    pub max_connections: u32,
    /// Shared limit counters: `redis://host:6379`. Empty: in-memory limits
    /// (the embedded default; each replica then counts alone).
    pub redis_url: String,
    /// Key prefix in Redis, so several suites can share one server.
    pub redis_prefix: String,
    /// Every Redis call gives up after this; the memory fallback answers.
    pub redis_timeout_ms: u64,
    /// After a Redis failure, how long to answer from memory before trying
    /// Redis again.
    pub redis_retry_after_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50053)),
            database_url: "sqlite://data/quota.db".to_owned(),
            max_connections: 10,
            redis_url: String::new(),
            redis_prefix: "gw:quota".to_owned(),
            redis_timeout_ms: 25,
            redis_retry_after_ms: 1000,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("quota.database_url: must not be empty".to_owned());
        }
        if self.max_connections == 0 {
            problems.push("quota.max_connections: must be at least 1".to_owned());
        }
        let redis_url_ok = self.redis_url.is_empty()
            || self.redis_url.starts_with("redis://")
            || self.redis_url.starts_with("rediss://");
        if !redis_url_ok {
            problems.push(format!(
                "quota.redis_url: expected redis:// or rediss://, got {:?}",
                self.redis_url
            ));
        }
        if !(1..=1000).contains(&self.redis_timeout_ms) {
            problems.push("quota.redis_timeout_ms: must be between 1 and 1000".to_owned());
        }
    }
}
