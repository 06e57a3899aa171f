//! The change log: what `WatchKeys` streams to edges.

use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;

use super::{IdentityStore, Transaction};

/// What changed. Stored by name; the names match `KeyChangeKind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    KeyCreated,
    KeyUpdated,
    KeyFrozen,
    KeyUnfrozen,
    KeyDeleted,
    UserUpdated,
    UserDisabled,
    UserDeleted,
    MembershipChanged,
    GroupUpdated,
    GroupDeleted,
    ClientCreated,
    ClientUpdated,
    ClientDeleted,
    TenantUpdated,
    TenantDeleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreated => "KEY_CREATED",
            Self::KeyUpdated => "KEY_UPDATED",
            Self::KeyFrozen => "KEY_FROZEN",
            Self::KeyUnfrozen => "KEY_UNFROZEN",
            Self::KeyDeleted => "KEY_DELETED",
            Self::UserUpdated => "USER_UPDATED",
            Self::UserDisabled => "USER_DISABLED",
            Self::UserDeleted => "USER_DELETED",
            Self::MembershipChanged => "MEMBERSHIP_CHANGED",
            Self::GroupUpdated => "GROUP_UPDATED",
            Self::GroupDeleted => "GROUP_DELETED",
            Self::ClientCreated => "CLIENT_CREATED",
            Self::ClientUpdated => "CLIENT_UPDATED",
            Self::ClientDeleted => "CLIENT_DELETED",
            Self::TenantUpdated => "TENANT_UPDATED",
            Self::TenantDeleted => "TENANT_DELETED",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            Self::KeyCreated,
            Self::KeyUpdated,
            Self::KeyFrozen,
            Self::KeyUnfrozen,
            Self::KeyDeleted,
            Self::UserUpdated,
            Self::UserDisabled,
            Self::UserDeleted,
            Self::MembershipChanged,
            Self::GroupUpdated,
            Self::GroupDeleted,
            Self::ClientCreated,
            Self::ClientUpdated,
            Self::ClientDeleted,
            Self::TenantUpdated,
            Self::TenantDeleted,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }
}

/// One entry of the change log. Ids that do not apply are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub version: i64,
    pub kind: ChangeKind,
    pub tenant_id: String,
    pub user_id: String,
    pub key_id: String,
    pub key_sha256: String,
    pub group_id: String,
    /// The `X-Client-ID` value, which edges cache principals by.
    pub client_id: String,
    pub created_at: i64,
}

impl Change {
    pub fn new(kind: ChangeKind, tenant_id: &str) -> Self {
        Self {
            version: 0,
            kind,
            tenant_id: tenant_id.to_owned(),
            user_id: String::new(),
            key_id: String::new(),
            key_sha256: String::new(),
            group_id: String::new(),
            client_id: String::new(),
            created_at: 0,
        }
    }

    pub fn user(mut self, user_id: &str) -> Self {
        self.user_id = user_id.to_owned();
        self
    }

    pub fn key(mut self, key_id: &str, key_sha256: &str) -> Self {
        self.key_id = key_id.to_owned();
        self.key_sha256 = key_sha256.to_owned();
        self
    }

    pub fn group(mut self, group_id: &str) -> Self {
        self.group_id = group_id.to_owned();
        self
    }

    pub fn client(mut self, client_id: &str) -> Self {
        self.client_id = client_id.to_owned();
        self
    }
}

/// Appends `change` with the next version, inside the writer's transaction.
/// The version row's update lock orders concurrent writers.
pub(crate) async fn record(
    transaction: &mut Transaction,
    change: Change,
) -> Result<i64, StorageError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE identity_version SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut **transaction)
    .await?;
    sqlx::query(
        "INSERT INTO key_changes (version, kind, tenant_id, user_id, key_id, key_sha256, group_id, client_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(version)
    .bind(change.kind.as_str())
    .bind(&change.tenant_id)
    .bind(&change.user_id)
    .bind(&change.key_id)
    .bind(&change.key_sha256)
    .bind(&change.group_id)
    .bind(&change.client_id)
    .bind(now_micros())
    .execute(&mut **transaction)
    .await?;
    Ok(version)
}

impl IdentityStore {
    /// The version of the last committed change.
    pub async fn current_version(&self) -> Result<i64, StorageError> {
        let version = sqlx::query_scalar("SELECT version FROM identity_version WHERE id = 1")
            .fetch_one(self.db.pool())
            .await?;
        Ok(version)
    }

    /// The oldest version still in the log (0 if the log is empty).
    pub async fn oldest_version(&self) -> Result<i64, StorageError> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(version) FROM key_changes")
            .fetch_one(self.db.pool())
            .await?;
        Ok(oldest.unwrap_or(0))
    }

    /// Up to `limit` changes after `version`, oldest first.
    pub async fn changes_after(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<Change>, StorageError> {
        let rows = sqlx::query(
            "SELECT version, kind, tenant_id, user_id, key_id, key_sha256, group_id, client_id, created_at \
             FROM key_changes WHERE version > $1 ORDER BY version LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(Change {
                    version: row.try_get("version")?,
                    kind: ChangeKind::parse(&kind).ok_or_else(|| {
                        StorageError::Config(format!("unknown change kind {kind:?}"))
                    })?,
                    tenant_id: row.try_get("tenant_id")?,
                    user_id: row.try_get("user_id")?,
                    key_id: row.try_get("key_id")?,
                    key_sha256: row.try_get("key_sha256")?,
                    group_id: row.try_get("group_id")?,
                    client_id: row.try_get("client_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Drops log entries older than `before_micros`, keeping the newest so
    /// the version history stays anchored. Watchers further behind resync.
    pub async fn prune_changes(&self, before_micros: i64) -> Result<u64, StorageError> {
        let result = sqlx::query(
            "DELETE FROM key_changes WHERE created_at < $1 \
             AND version < (SELECT version FROM identity_version WHERE id = 1)",
        )
        .bind(before_micros)
        .execute(self.db.pool())
        .await?;
        Ok(result.rows_affected())
    }
}
