//! Usage's configuration section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[usage]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen_addr: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub database_url: String,
    pub max_connections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50054)),
            database_url: "sqlite://data/usage.db".to_owned(),
            max_connections: 10,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("usage.database_url: must not be empty".to_owned());
        }
        if self.max_connections == 0 {
            problems.push("usage.max_connections: must be at least 1".to_owned());
        }
    }
}
