//! Identity's SQL store: tenants, users, groups, API keys, clients, signing
//! keys and the change log that `WatchKeys` streams.
//!
//! Every write that can change what `AuthenticateKey` answers appends a
//! [`Change`] in the same transaction, with a gap-free version.

mod changes;
mod clients;
mod groups;
mod keys;
mod signing;
mod tenants;
mod users;

pub use changes::{Change, ChangeKind};
pub use clients::{Client, ClientUpdate, NewClient};
pub use groups::{Group, GroupUpdate, Member, NewGroup};
pub use keys::{ApiKey, KeyRecord, KeyUpdate, NewKey};
pub use signing::SigningKeyRow;
pub use tenants::{Tenant, insert as insert_tenant};
pub use users::{LoginMethod, NewUser, User, UserUpdate, insert as insert_user};

pub use gateway_auth::Role;
use gateway_storage::{Database, Migrations, StorageError};

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "tenants and users" => "0001_tenants_and_users.sql",
    2 "groups, keys, clients, signing keys, change log" => "0002_directory.sql",
    3 "sealed signing keys" => "0003_sealed_signing_keys.sql",
    4 "completion cache opt-in" => "0004_completion_cache.sql",
);

pub type Transaction = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone)]
pub struct IdentityStore {
    db: Database,
}

impl IdentityStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn begin(&self) -> Result<Transaction, StorageError> {
        self.db.begin_write().await
    }
}

/// Filters by an optional equal match: `""` matches everything.
pub(crate) fn optional(value: Option<&str>) -> String {
    value.unwrap_or_default().to_owned()
}

pub(crate) fn role_of(value: &str) -> Result<Role, StorageError> {
    Role::parse(value)
        .ok_or_else(|| StorageError::Config(format!("unknown role {value:?} in the store")))
}

pub(crate) fn string_list(json: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(json)
        .map_err(|error| StorageError::Config(format!("corrupt list column: {error}")))
}

pub(crate) fn list_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests;
