//! Tenants.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::changes::{Change, ChangeKind, record};
use super::{IdentityStore, Transaction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, slug, name, created_at, updated_at";

fn tenant(row: &AnyRow) -> Result<Tenant, StorageError> {
    Ok(Tenant {
        id: row.try_get("id")?,
        slug: row.try_get("slug")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub async fn insert(
    transaction: &mut Transaction,
    slug: &str,
    name: &str,
) -> Result<Tenant, StorageError> {
    let now = now_micros();
    let tenant = Tenant {
        id: uuid::Uuid::now_v7().to_string(),
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: now,
        updated_at: now,
    };
    sqlx::query(
        "INSERT INTO tenants (id, slug, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(&tenant.id)
    .bind(&tenant.slug)
    .bind(&tenant.name)
    .bind(now)
    .execute(&mut **transaction)
    .await?;
    Ok(tenant)
}

impl IdentityStore {
    pub async fn create_tenant(&self, slug: &str, name: &str) -> Result<Tenant, StorageError> {
        let mut transaction = self.begin().await?;
        let tenant = insert(&mut transaction, slug, name).await?;
        transaction.commit().await?;
        Ok(tenant)
    }

    pub async fn get_tenant(&self, id: &str) -> Result<Tenant, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        tenant(&row)
    }

    pub async fn tenant_by_slug(&self, slug: &str) -> Result<Tenant, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE slug = $1"
        )))
        .bind(slug)
        .fetch_one(self.db.pool())
        .await?;
        tenant(&row)
    }

    /// A page of tenants; `only` restricts to one tenant id (non-superadmins).
    pub async fn list_tenants(
        &self,
        page: &Page,
        only: Option<&str>,
    ) -> Result<Vec<Tenant>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM tenants WHERE id > $1 AND ($2 = '' OR id = $2) ORDER BY id LIMIT $3"
        )))
        .bind(&page.after)
        .bind(super::optional(only))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(tenant).collect()
    }

    pub async fn update_tenant(
        &self,
        id: &str,
        slug: Option<&str>,
        name: Option<&str>,
    ) -> Result<Tenant, StorageError> {
        let mut transaction = self.begin().await?;
        let result = sqlx::query(
            "UPDATE tenants SET slug = COALESCE($2, slug), name = COALESCE($3, name), updated_at = $4 WHERE id = $1",
        )
        .bind(id)
        .bind(slug.map(str::to_owned))
        .bind(name.map(str::to_owned))
        .bind(now_micros())
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        record(&mut transaction, Change::new(ChangeKind::TenantUpdated, id)).await?;
        transaction.commit().await?;
        self.get_tenant(id).await
    }

    /// Deletes the tenant and everything in it; its keys stop
    /// authenticating with this commit (one TENANT_DELETED change).
    pub async fn delete_tenant(&self, id: &str) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        for statement in [
            "DELETE FROM api_keys WHERE tenant_id = $1",
            "DELETE FROM group_members WHERE group_id IN (SELECT id FROM user_groups WHERE tenant_id = $1)",
            "DELETE FROM user_groups WHERE tenant_id = $1",
            "DELETE FROM clients WHERE tenant_id = $1",
            "DELETE FROM users WHERE tenant_id = $1",
        ] {
            sqlx::query(statement)
                .bind(id)
                .execute(&mut *transaction)
                .await?;
        }
        let result = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        record(&mut transaction, Change::new(ChangeKind::TenantDeleted, id)).await?;
        transaction.commit().await?;
        Ok(())
    }
}
