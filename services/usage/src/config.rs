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
    /// Pool size; 0: the backend's default (PostgreSQL 10, SQLite 4).
    pub max_connections: u32,
    /// Where audit segments live, one directory per UTC day.
    pub audit_dir: String,
    /// Writer threads appending audit records (each owns its segments).
    pub audit_writers: usize,
    /// A segment is closed and a new one started past this size.
    pub audit_segment_bytes: u64,
    /// Request and response bodies are cut to this many bytes each.
    pub max_body_bytes: usize,
    /// Events and audit segments older than this many days are removed.
    pub retention_days: u32,
    /// How often the retention sweeper runs.
    pub retention_sweep_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50054)),
            database_url: "sqlite://data/usage.db".to_owned(),
            max_connections: 0,
            audit_dir: "data/audit".to_owned(),
            audit_writers: 2,
            audit_segment_bytes: 64 * 1024 * 1024,
            max_body_bytes: 64 * 1024,
            retention_days: 30,
            retention_sweep_secs: 3600,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("usage.database_url: must not be empty".to_owned());
        }
        if self.audit_dir.trim().is_empty() {
            problems.push("usage.audit_dir: must not be empty".to_owned());
        }
        if !(1..=64).contains(&self.audit_writers) {
            problems.push("usage.audit_writers: must be between 1 and 64".to_owned());
        }
        if self.audit_segment_bytes < 1024 * 1024 {
            problems.push("usage.audit_segment_bytes: must be at least 1 MiB".to_owned());
        }
        if self.retention_days == 0 {
            problems.push("usage.retention_days: must be at least 1".to_owned());
        }
        if self.retention_sweep_secs == 0 {
            problems.push("usage.retention_sweep_secs: must be at least 1".to_owned());
        }
    }
}
