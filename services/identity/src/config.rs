//! Identity's configuration sections.

use std::net::SocketAddr;

use gateway_runtime::secret::Secret;
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
    /// Pool size; 0: the backend's default (PostgreSQL 10, SQLite 4).
    pub max_connections: u32,
    /// Self-service sign-up (a tenant and its first admin in one call).
    pub signup_enabled: bool,
    pub jwt_lifetime_secs: u64,
    /// Failed logins for one user before logins are refused for a while.
    pub login_max_failures: u32,
    pub login_lockout_secs: u64,
    /// How often key last-used times are written, in one batch.
    pub last_used_flush_secs: u64,
    /// How long `WatchKeys` history is kept; watchers further behind resync.
    pub change_retention_hours: u64,
    /// LDAP / Active Directory login; an empty URL switches it off.
    pub ldap: LdapConfig,
}

/// The `[identity.ldap]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// The bind DN for a username: `uid={username},ou=people,dc=example,dc=org`
    /// for OpenLDAP, or `{username}@corp.example.com` for Active Directory.
    pub user_dn_template: String,
    /// Tenant that first-time LDAP users are provisioned into (role USER).
    pub tenant_slug: String,
    pub timeout_ms: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            user_dn_template: String::new(),
            tenant_slug: String::new(),
            timeout_ms: 3000,
        }
    }
}

impl LdapConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: "sqlite://data/identity.db".to_owned(),
            max_connections: 0,
            signup_enabled: true,
            jwt_lifetime_secs: 24 * 3600,
            login_max_failures: 5,
            login_lockout_secs: 300,
            last_used_flush_secs: 5,
            change_retention_hours: 24 * 7,
            ldap: LdapConfig::default(),
        }
    }
}

impl Config {
    pub fn validate(&self, problems: &mut Vec<String>) {
        if self.database_url.trim().is_empty() {
            problems.push("identity.database_url: must not be empty".to_owned());
        }
        if !(60..=30 * 24 * 3600).contains(&self.jwt_lifetime_secs) {
            problems.push("identity.jwt_lifetime_secs: must be between 60 and 2592000".to_owned());
        }
        if self.login_max_failures == 0 {
            problems.push("identity.login_max_failures: must be at least 1".to_owned());
        }
        if self.last_used_flush_secs == 0 {
            problems.push("identity.last_used_flush_secs: must be at least 1".to_owned());
        }
        if self.ldap.enabled() {
            if !(self.ldap.url.starts_with("ldap://") || self.ldap.url.starts_with("ldaps://")) {
                problems.push(format!(
                    "identity.ldap.url: expected ldap:// or ldaps://, got {:?}",
                    self.ldap.url
                ));
            }
            if !self.ldap.user_dn_template.contains("{username}") {
                problems.push("identity.ldap.user_dn_template: must contain {username}".to_owned());
            }
            if self.ldap.tenant_slug.is_empty() {
                problems.push(
                    "identity.ldap.tenant_slug: LDAP users need a tenant to be provisioned into"
                        .to_owned(),
                );
            }
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
    pub password: Secret,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            tenant_slug: "system".to_owned(),
            username: "admin".to_owned(),
            password: Secret::default(),
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
        if !self.password.is_empty() && self.password.expose().chars().count() < MIN_PASSWORD_CHARS
        {
            problems.push(format!(
                "bootstrap.password: must be at least {MIN_PASSWORD_CHARS} characters"
            ));
        }
    }
}
