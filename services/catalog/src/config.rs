//! Catalog's configuration section.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The `[catalog]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen_addr: SocketAddr,
    /// `sqlite://path` (embedded default) or `postgres://...`.
    pub database_url: String,
    /// Pool size; 0: the backend's default (PostgreSQL 10, SQLite 4).
    pub max_connections: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50052)),
            database_url: "sqlite://data/catalog.db".to_owned(),
            max_connections: 0,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("catalog.database_url: must not be empty".to_owned());
        }
    }
}
