//! Identity's configuration sections.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::password::MIN_PASSWORD_CHARS;

/// The `[identity]` section.
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
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: "sqlite://data/identity.db".to_owned(),
            max_connections: 10,
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("identity.database_url: must not be empty".to_owned());
        }
        if self.max_connections == 0 {
            problems.push("identity.max_connections: must be at least 1".to_owned());
        }
    }
}

/// The `[bootstrap]` section: the first superadmin, created on first start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    /// Slug of the system tenant the superadmin belongs to.
    pub tenant_slug: String,
    pub username: String,
    /// `GATEWAY_BOOTSTRAP_PASSWORD`; empty means generate one and print it once.
    pub password: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            tenant_slug: "system".to_owned(),
            username: "admin".to_owned(),
            password: String::new(),
        }
    }
}

impl BootstrapConfig {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.username.trim().is_empty() {
            problems.push("bootstrap.username: must not be empty".to_owned());
        }
        if self.tenant_slug.trim().is_empty() {
            problems.push("bootstrap.tenant_slug: must not be empty".to_owned());
        }
        if !self.password.is_empty() && self.password.chars().count() < MIN_PASSWORD_CHARS {
            problems.push(format!(
                "bootstrap.password: must be at least {MIN_PASSWORD_CHARS} characters"
            ));
        }
    }
}
