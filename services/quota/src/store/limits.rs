//! Plans and group rules, stored as protobuf specs.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::QuotaStore;

/// One stored plan or rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitConfig {
    pub kind: &'static str,
    pub id: String,
    pub tenant_id: String,
    pub unique_key: String,
    pub group_id: String,
    pub spec: Vec<u8>,
    pub created_at: i64,
    pub updated_at: i64,
}

pub const PLAN: &str = "plan";
pub const RULE: &str = "rule";

const COLUMNS: &str = "id, tenant_id, unique_key, group_id, spec, created_at, updated_at";

fn config(kind: &'static str, row: &AnyRow) -> Result<LimitConfig, StorageError> {
    Ok(LimitConfig {
        kind,
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        unique_key: row.try_get("unique_key")?,
        group_id: row.try_get("group_id")?,
        spec: row.try_get("spec")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl QuotaStore {
    pub async fn insert_limit_config(&self, config: &LimitConfig) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO limit_configs (kind, id, tenant_id, unique_key, group_id, spec, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(config.kind)
        .bind(&config.id)
        .bind(&config.tenant_id)
        .bind(&config.unique_key)
        .bind(&config.group_id)
        .bind(config.spec.clone())
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    pub async fn update_limit_config(&self, config: &LimitConfig) -> Result<(), StorageError> {
        let result = sqlx::query(
            "UPDATE limit_configs SET unique_key = $3, group_id = $4, spec = $5, updated_at = $6 \
             WHERE kind = $1 AND id = $2",
        )
        .bind(config.kind)
        .bind(&config.id)
        .bind(&config.unique_key)
        .bind(&config.group_id)
        .bind(config.spec.clone())
        .bind(now_micros())
        .execute(self.db.pool())
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_limit_config(
        &self,
        kind: &'static str,
        id: &str,
    ) -> Result<(), StorageError> {
        let result = sqlx::query("DELETE FROM limit_configs WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    pub async fn limit_config(
        &self,
        kind: &'static str,
        id: &str,
    ) -> Result<LimitConfig, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM limit_configs WHERE kind = $1 AND id = $2"
        )))
        .bind(kind)
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        config(kind, &row)
    }

    /// A page of one kind; `tenant_id` `None` lists every tenant's, and
    /// `group_id` narrows rules to one group.
    pub async fn limit_configs(
        &self,
        kind: &'static str,
        tenant_id: Option<&str>,
        group_id: &str,
        page: &Page,
    ) -> Result<Vec<LimitConfig>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM limit_configs WHERE kind = $1 AND id > $2 AND ($3 = '*' OR tenant_id = $3) \
             AND ($4 = '' OR group_id = $4) ORDER BY id LIMIT $5"
        )))
        .bind(kind)
        .bind(&page.after)
        .bind(tenant_id.unwrap_or("*"))
        .bind(group_id)
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|row| config(kind, row)).collect()
    }
}

impl QuotaStore {
    /// Every plan and rule of every tenant: the limits snapshot Check
    /// evaluates from (a few rows per tenant).
    pub async fn all_limit_configs(&self) -> Result<Vec<LimitConfig>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT kind, {COLUMNS} FROM limit_configs ORDER BY kind, id"
        )))
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                config(if kind == PLAN { PLAN } else { RULE }, row)
            })
            .collect()
    }

    /// Changes whenever a plan or rule is created, updated or deleted: a
    /// cheap poll tells a replica when to reload its snapshot.
    pub async fn limit_configs_stamp(&self) -> Result<(i64, i64), StorageError> {
        let row = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n, CAST(COALESCE(MAX(updated_at), 0) AS BIGINT) AS latest \
             FROM limit_configs",
        )
        .fetch_one(self.db.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("latest")?))
    }
}
