//! Client ids: a tenant's own clients, sent as `X-Client-ID`, each with an
//! optional plan so the tenant can limit them separately.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::IdentityStore;
use super::changes::{Change, ChangeKind, record};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub client_id: String,
    pub plan_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct NewClient<'a> {
    pub tenant_id: &'a str,
    pub name: &'a str,
    pub client_id: &'a str,
    pub plan_id: &'a str,
}

#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub plan_id: Option<String>,
}

const COLUMNS: &str = "id, tenant_id, name, client_id, plan_id, created_at, updated_at";

fn client(row: &AnyRow) -> Result<Client, StorageError> {
    Ok(Client {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        name: row.try_get("name")?,
        client_id: row.try_get("client_id")?,
        plan_id: row.try_get("plan_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl IdentityStore {
    pub async fn create_client(&self, new_client: NewClient<'_>) -> Result<Client, StorageError> {
        let now = now_micros();
        let client = Client {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: new_client.tenant_id.to_owned(),
            name: new_client.name.to_owned(),
            client_id: new_client.client_id.to_owned(),
            plan_id: new_client.plan_id.to_owned(),
            created_at: now,
            updated_at: now,
        };
        let mut transaction = self.begin().await?;
        sqlx::query(
            "INSERT INTO clients (id, tenant_id, name, client_id, plan_id, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&client.id)
        .bind(&client.tenant_id)
        .bind(&client.name)
        .bind(&client.client_id)
        .bind(&client.plan_id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        let change =
            Change::new(ChangeKind::ClientCreated, &client.tenant_id).client(&client.client_id);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(client)
    }

    pub async fn get_client(&self, id: &str) -> Result<Client, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        client(&row)
    }

    pub async fn client_by_client_id(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<Client>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE tenant_id = $1 AND client_id = $2"
        )))
        .bind(tenant_id)
        .bind(client_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(client).transpose()
    }

    pub async fn list_clients(
        &self,
        page: &Page,
        tenant_id: Option<&str>,
    ) -> Result<Vec<Client>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE id > $1 AND ($2 = '' OR tenant_id = $2) ORDER BY id LIMIT $3"
        )))
        .bind(&page.after)
        .bind(super::optional(tenant_id))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(client).collect()
    }

    pub async fn update_client(
        &self,
        existing: &Client,
        update: &ClientUpdate,
    ) -> Result<Client, StorageError> {
        let mut transaction = self.begin().await?;
        sqlx::query(
            "UPDATE clients SET name = COALESCE($2, name), client_id = COALESCE($3, client_id), \
             plan_id = COALESCE($4, plan_id), updated_at = $5 WHERE id = $1",
        )
        .bind(&existing.id)
        .bind(update.name.clone())
        .bind(update.client_id.clone())
        .bind(update.plan_id.clone())
        .bind(now_micros())
        .execute(&mut *transaction)
        .await?;
        // Edges cache by the client id string: evict the old and the new.
        for client_id in [Some(&existing.client_id), update.client_id.as_ref()]
            .into_iter()
            .flatten()
        {
            let change =
                Change::new(ChangeKind::ClientUpdated, &existing.tenant_id).client(client_id);
            record(&mut transaction, change).await?;
        }
        transaction.commit().await?;
        self.get_client(&existing.id).await
    }

    pub async fn delete_client(&self, existing: &Client) -> Result<(), StorageError> {
        let mut transaction = self.begin().await?;
        sqlx::query("DELETE FROM clients WHERE id = $1")
            .bind(&existing.id)
            .execute(&mut *transaction)
            .await?;
        let change =
            Change::new(ChangeKind::ClientDeleted, &existing.tenant_id).client(&existing.client_id);
        record(&mut transaction, change).await?;
        transaction.commit().await?;
        Ok(())
    }
}
