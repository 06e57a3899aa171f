//! API keys, stored as SHA-256 hashes with a display prefix.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::changes::{Change, ChangeKind, record};
use super::{IdentityStore, list_json, string_list};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub name: String,
    /// The first characters of the key, for people to recognise it.
    pub prefix: String,
    pub key_sha256: String,
    pub group_id: Option<String>,
    pub spend_limit_micros: Option<i64>,
    pub plan_id: String,
    pub expire_at: Option<i64>,
    pub frozen: bool,
    pub allowed_models: Vec<String>,
    /// CIDRs or addresses; empty allows every address.
    pub allowed_ips: Vec<String>,
    /// Opts in to the edge's completion cache.
    pub completion_cache: bool,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub tenant_id: String,
    pub user_id: String,
    pub name: String,
    pub prefix: String,
    pub key_sha256: String,
    pub group_id: Option<String>,
    pub spend_limit_micros: Option<i64>,
    pub plan_id: String,
    pub expire_at: Option<i64>,
    pub allowed_models: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub completion_cache: bool,
}

/// Changes to a key; the outer `None` leaves a field as it is, and for
/// optional fields `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub group_id: Option<Option<String>>,
    pub spend_limit_micros: Option<Option<i64>>,
    pub plan_id: Option<String>,
    pub expire_at: Option<Option<i64>>,
    pub allowed_models: Option<Vec<String>>,
    pub allowed_ips: Option<Vec<String>>,
    pub completion_cache: Option<bool>,
}

/// A key with its owner and tenant, as `AuthenticateKey` needs them.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub key: ApiKey,
    pub username: String,
    pub role: String,
    pub user_disabled: bool,
    pub tenant_slug: String,
}

const COLUMNS: &str = "k.id, k.tenant_id, k.user_id, k.name, k.prefix, k.key_sha256, k.group_id, \
     k.spend_limit_micros, k.plan_id, k.expire_at, k.frozen, k.allowed_models, k.allowed_ips, \
     k.completion_cache, k.last_used_at, k.created_at, k.updated_at";

fn api_key(row: &AnyRow) -> Result<ApiKey, StorageError> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        key_sha256: row.try_get("key_sha256")?,
        group_id: row.try_get("group_id")?,
        spend_limit_micros: row.try_get("spend_limit_micros")?,
        plan_id: row.try_get("plan_id")?,
        expire_at: row.try_get("expire_at")?,
        frozen: gateway_storage::flag(row, "frozen")?,
        allowed_models: string_list(row.try_get("allowed_models")?)?,
        allowed_ips: string_list(row.try_get("allowed_ips")?)?,
        completion_cache: gateway_storage::flag(row, "completion_cache")?,
        last_used_at: row.try_get("last_used_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl IdentityStore {
    pub async fn create_key(&self, new_key: NewKey) -> Result<ApiKey, StorageError> {
        let now = now_micros();
        let key = ApiKey {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: new_key.tenant_id,
            user_id: new_key.user_id,
            name: new_key.name,
            prefix: new_key.prefix,
            key_sha256: new_key.key_sha256,
            group_id: new_key.group_id,
            spend_limit_micros: new_key.spend_limit_micros,
            plan_id: new_key.plan_id,
            expire_at: new_key.expire_at,
            frozen: false,
            allowed_models: new_key.allowed_models,
            allowed_ips: new_key.allowed_ips,
            completion_cache: new_key.completion_cache,
            last_used_at: None,
            created_at: now,
            updated_at: now,
        };
        let mut transaction = self.begin().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, user_id, name, prefix, key_sha256, group_id, spend_limit_micros, \
             plan_id, expire_at, frozen, allowed_models, allowed_ips, completion_cache, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $14, $14)",
        )
        .bind(&key.id)
        .bind(&key.tenant_id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.key_sha256)
        .bind(key.group_id.clone())
        .bind(key.spend_limit_micros)
        .bind(&key.plan_id)
        .bind(key.expire_at)
        .bind(false)
        .bind(list_json(&key.allowed_models))
        .bind(list_json(&key.allowed_ips))
        .bind(now)
        .bind(key.completion_cache)
        .execute(&mut *transaction)
        .await?;
        // Edges may cache "unknown" for this hash; the change evicts it.
        let change = Change::new(ChangeKind::KeyCreated, &key.tenant_id)
            .user(&key.user_id)
            .key(&key.id, &key.key_sha256);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(key)
    }

    pub async fn get_key(&self, id: &str) -> Result<ApiKey, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        api_key(&row)
    }

    pub async fn list_keys(
        &self,
        page: &Page,
        tenant_id: Option<&str>,
        user_id: Option<&str>,
        group_id: Option<&str>,
    ) -> Result<Vec<ApiKey>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.id > $1 AND ($2 = '' OR k.tenant_id = $2) \
             AND ($3 = '' OR k.user_id = $3) AND ($4 = '' OR k.group_id = $4) ORDER BY k.id LIMIT $5"
        )))
        .bind(&page.after)
        .bind(super::optional(tenant_id))
        .bind(super::optional(user_id))
        .bind(super::optional(group_id))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(api_key).collect()
    }

    /// The indexed lookup behind `AuthenticateKey`.
    pub async fn key_by_hash(&self, key_sha256: &str) -> Result<Option<KeyRecord>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, u.username, u.role, u.disabled AS user_disabled, t.slug AS tenant_slug \
             FROM api_keys k JOIN users u ON u.id = k.user_id JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_sha256 = $1"
        )))
        .bind(key_sha256)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(KeyRecord {
                key: api_key(&row)?,
                username: row.try_get("username")?,
                role: row.try_get("role")?,
                user_disabled: gateway_storage::flag(&row, "user_disabled")?,
                tenant_slug: row.try_get("tenant_slug")?,
            })
        })
        .transpose()
    }

    pub async fn update_key(
        &self,
        existing: &ApiKey,
        update: &KeyUpdate,
    ) -> Result<ApiKey, StorageError> {
        let mut key = existing.clone();
        if let Some(name) = &update.name {
            key.name.clone_from(name);
        }
        if let Some(group_id) = &update.group_id {
            key.group_id.clone_from(group_id);
        }
        if let Some(limit) = update.spend_limit_micros {
            key.spend_limit_micros = limit;
        }
        if let Some(plan_id) = &update.plan_id {
            key.plan_id.clone_from(plan_id);
        }
        if let Some(expire_at) = update.expire_at {
            key.expire_at = expire_at;
        }
        if let Some(models) = &update.allowed_models {
            key.allowed_models.clone_from(models);
        }
        if let Some(ips) = &update.allowed_ips {
            key.allowed_ips.clone_from(ips);
        }
        if let Some(cache) = update.completion_cache {
            key.completion_cache = cache;
        }
        key.updated_at = now_micros();
        let mut transaction = self.begin().await?;
        sqlx::query(
            "UPDATE api_keys SET name = $2, group_id = $3, spend_limit_micros = $4, plan_id = $5, \
             expire_at = $6, allowed_models = $7, allowed_ips = $8, updated_at = $9, \
             completion_cache = $10 WHERE id = $1",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(key.group_id.clone())
        .bind(key.spend_limit_micros)
        .bind(&key.plan_id)
        .bind(key.expire_at)
        .bind(list_json(&key.allowed_models))
        .bind(list_json(&key.allowed_ips))
        .bind(key.updated_at)
        .bind(key.completion_cache)
        .execute(&mut *transaction)
        .await?;
        let change = Change::new(ChangeKind::KeyUpdated, &key.tenant_id)
            .user(&key.user_id)
            .key(&key.id, &key.key_sha256);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(key)
    }

    pub async fn set_key_frozen(
        &self,
        existing: &ApiKey,
        frozen: bool,
    ) -> Result<ApiKey, StorageError> {
        let mut transaction = self.begin().await?;
        let updated_at = now_micros();
        sqlx::query("UPDATE api_keys SET frozen = $2, updated_at = $3 WHERE id = $1")
            .bind(&existing.id)
            .bind(frozen)
            .bind(updated_at)
            .execute(&mut *transaction)
            .await?;
        let kind = if frozen {
            ChangeKind::KeyFrozen
        } else {
            ChangeKind::KeyUnfrozen
        };
        let change = Change::new(kind, &existing.tenant_id)
            .user(&existing.user_id)
            .key(&existing.id, &existing.key_sha256);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(ApiKey {
            frozen,
            updated_at,
            ..existing.clone()
        })
    }

    pub async fn delete_key(&self, existing: &ApiKey) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(&existing.id)
            .execute(&mut *transaction)
            .await?;
        let change = Change::new(ChangeKind::KeyDeleted, &existing.tenant_id)
            .user(&existing.user_id)
            .key(&existing.id, &existing.key_sha256);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Writes a batch of last-used times in one transaction.
    pub async fn record_keys_used(&self, used: &[(String, i64)]) -> Result<(), StorageError> {
        if used.is_empty() {
            return Ok(());
        }
        let mut transaction = self.begin().await?;
        for (key_id, at) in used {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
            )
            .bind(key_id)
            .bind(*at)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}
