//! Catalog's SQL store: every resource is an entry (kind, id, tenant,
//! unique key, protobuf spec, sealed secret), and every write bumps the
//! catalog version and logs the change in the same transaction.

use gateway_storage::page::Page;
use gateway_storage::{Database, Migrations, StorageError, now_micros};
use sqlx::Row as _;
use sqlx::any::AnyRow;

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "catalog version" => "0001_catalog_version.sql",
    2 "entries and change log" => "0002_entries.sql",
);

/// The kinds of catalog resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Api,
    Channel,
    ModelPrice,
    GroupMultiplier,
    GroupPrice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Channel => "channel",
            Self::ModelPrice => "model_price",
            Self::GroupMultiplier => "group_multiplier",
            Self::GroupPrice => "group_price",
        }
    }

    fn parse(value: &str) -> Result<Self, StorageError> {
        Ok(match value {
            "api" => Self::Api,
            "channel" => Self::Channel,
            "model_price" => Self::ModelPrice,
            "group_multiplier" => Self::GroupMultiplier,
            "group_price" => Self::GroupPrice,
            other => {
                return Err(StorageError::Config(format!(
                    "unknown entry kind {other:?}"
                )));
            }
        })
    }
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub id: String,
    pub tenant_id: String,
    pub unique_key: String,
    /// The protobuf encoding of the resource (without secrets).
    pub spec: Vec<u8>,
    /// The sealed secret, if the resource has one.
    pub secret: Option<Vec<u8>>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub version: i64,
    pub kind: Kind,
    pub id: String,
    pub deleted: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct CatalogStore {
    db: Database,
}

const COLUMNS: &str = "kind, id, tenant_id, unique_key, spec, secret, created_at, updated_at";

fn entry(row: &AnyRow) -> Result<Entry, StorageError> {
    Ok(Entry {
        kind: Kind::parse(row.try_get("kind")?)?,
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        unique_key: row.try_get("unique_key")?,
        spec: row.try_get("spec")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

type Transaction = sqlx::Transaction<'static, sqlx::Any>;

impl CatalogStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The version of the last committed change (0 for an empty catalog).
    pub async fn current_version(&self) -> Result<i64, StorageError> {
        let version = sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1")
            .fetch_one(self.db.pool())
            .await?;
        Ok(version)
    }

    /// Bumps the version inside the writing transaction and returns the new
    /// one. The row lock serialises writers, so versions are gap-free and
    /// commit in order on every backend and across replicas.
    pub async fn bump_version(transaction: &mut Transaction) -> Result<i64, StorageError> {
        let version = sqlx::query_scalar(
            "UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **transaction)
        .await?;
        Ok(version)
    }

    async fn log_change(
        transaction: &mut Transaction,
        kind: Kind,
        id: &str,
        deleted: bool,
    ) -> Result<i64, StorageError> {
        let version = Self::bump_version(transaction).await?;
        sqlx::query("INSERT INTO catalog_changes (version, kind, id, deleted, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(version)
            .bind(kind.as_str())
            .bind(id)
            .bind(deleted)
            .bind(now_micros())
            .execute(&mut **transaction)
            .await?;
        Ok(version)
    }

    /// Inserts a new entry; returns the catalog version it committed at.
    pub async fn insert(&self, entry: &Entry) -> Result<i64, StorageError> {
        let mut transaction = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO entries (kind, id, tenant_id, unique_key, spec, secret, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(entry.kind.as_str())
        .bind(&entry.id)
        .bind(&entry.tenant_id)
        .bind(&entry.unique_key)
        .bind(entry.spec.clone())
        .bind(entry.secret.clone())
        .bind(entry.created_at)
        .bind(entry.updated_at)
        .execute(&mut *transaction)
        .await?;
        let version = Self::log_change(&mut transaction, entry.kind, &entry.id, false).await?;
        transaction.commit().await?;
        Ok(version)
    }

    /// Replaces an entry's unique key, spec and (if given) secret.
    pub async fn update(&self, entry: &Entry) -> Result<i64, StorageError> {
        let mut transaction = self.db.begin_write().await?;
        let result = sqlx::query(
            "UPDATE entries SET unique_key = $3, spec = $4, secret = COALESCE($5, secret), updated_at = $6 \
             WHERE kind = $1 AND id = $2",
        )
        .bind(entry.kind.as_str())
        .bind(&entry.id)
        .bind(&entry.unique_key)
        .bind(entry.spec.clone())
        .bind(entry.secret.clone())
        .bind(entry.updated_at)
        .execute(&mut *transaction)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        let version = Self::log_change(&mut transaction, entry.kind, &entry.id, false).await?;
        transaction.commit().await?;
        Ok(version)
    }

    pub async fn delete(&self, kind: Kind, id: &str) -> Result<i64, StorageError> {
        let mut transaction = self.db.begin_write().await?;
        let result = sqlx::query("DELETE FROM entries WHERE kind = $1 AND id = $2")
            .bind(kind.as_str())
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        let version = Self::log_change(&mut transaction, kind, id, true).await?;
        transaction.commit().await?;
        Ok(version)
    }

    pub async fn get(&self, kind: Kind, id: &str) -> Result<Entry, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM entries WHERE kind = $1 AND id = $2"
        )))
        .bind(kind.as_str())
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        entry(&row)
    }

    /// A page of one kind; `tenant_id` `None` lists every tenant's.
    pub async fn list(
        &self,
        kind: Kind,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Vec<Entry>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM entries WHERE kind = $1 AND id > $2 AND ($3 = '*' OR tenant_id = $3) \
             ORDER BY id LIMIT $4"
        )))
        .bind(kind.as_str())
        .bind(&page.after)
        .bind(tenant_id.unwrap_or("*"))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(entry).collect()
    }

    /// Every entry with the version they were read at, in one transaction.
    pub async fn everything(&self) -> Result<(i64, Vec<Entry>), StorageError> {
        self.read_at_version("").await
    }

    /// The price entries only (model prices, group prices, multipliers),
    /// with the version they were read at: what a quote needs.
    pub async fn prices(&self) -> Result<(i64, Vec<Entry>), StorageError> {
        self.read_at_version("WHERE kind IN ('model_price', 'group_price', 'group_multiplier')")
            .await
    }

    /// Entries matching `filter` (a constant WHERE clause) and the version
    /// they were read at, in one transaction.
    async fn read_at_version(
        &self,
        filter: &'static str,
    ) -> Result<(i64, Vec<Entry>), StorageError> {
        let mut transaction = self.db.pool().begin().await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM catalog_version WHERE id = 1")
            .fetch_one(&mut *transaction)
            .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM entries {filter} ORDER BY kind, id"
        )))
        .fetch_all(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok((version, rows.iter().map(entry).collect::<Result<_, _>>()?))
    }

    pub async fn oldest_change(&self) -> Result<i64, StorageError> {
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(version) FROM catalog_changes")
            .fetch_one(self.db.pool())
            .await?;
        Ok(oldest.unwrap_or(0))
    }

    pub async fn changes_after(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<ChangeRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT version, kind, id, deleted, created_at FROM catalog_changes WHERE version > $1 \
             ORDER BY version LIMIT $2",
        )
        .bind(version)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChangeRow {
                    version: row.try_get("version")?,
                    kind: Kind::parse(row.try_get("kind")?)?,
                    id: row.try_get("id")?,
                    deleted: gateway_storage::flag(row, "deleted")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_storage::ConnectOptions;

    async fn open(url: &str) -> CatalogStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        CatalogStore::new(db)
    }

    fn api(id: &str, tenant: &str, slug: &str) -> Entry {
        Entry {
            kind: Kind::Api,
            id: id.to_owned(),
            tenant_id: tenant.to_owned(),
            unique_key: slug.to_owned(),
            spec: vec![1, 2, 3],
            secret: Some(vec![9]),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let (sqlite, postgres) = MIGRATIONS.versions();
        assert_eq!(sqlite, postgres);
    }

    gateway_testkit::test_on_every_backend! {
        async fn every_write_is_one_version_and_one_logged_change(db) {
            let store = open(db.url()).await;
            assert_eq!(store.current_version().await.unwrap(), 0);
            assert_eq!(store.insert(&api("a1", "t1", "orders")).await.unwrap(), 1);
            let duplicate = store.insert(&api("a2", "t1", "orders")).await.unwrap_err();
            assert!(duplicate.is_already_exists());
            assert_eq!(store.insert(&api("a3", "t2", "orders")).await.unwrap(), 2, "slugs are unique per tenant");
            let mut changed = api("a1", "t1", "orders-v2");
            changed.secret = None;
            assert_eq!(store.update(&changed).await.unwrap(), 3);
            let stored = store.get(Kind::Api, "a1").await.unwrap();
            assert_eq!(stored.unique_key, "orders-v2");
            assert_eq!(stored.secret, Some(vec![9]), "no new secret keeps the old one");
            assert_eq!(store.delete(Kind::Api, "a3").await.unwrap(), 4);
            assert!(matches!(store.delete(Kind::Api, "a3").await, Err(StorageError::NotFound)));
            let changes = store.changes_after(0, 10).await.unwrap();
            let summary: Vec<(i64, &str, bool)> = changes.iter().map(|c| (c.version, c.id.as_str(), c.deleted)).collect();
            assert_eq!(summary, [(1, "a1", false), (2, "a3", false), (3, "a1", false), (4, "a3", true)]);
            let (version, entries) = store.everything().await.unwrap();
            assert_eq!((version, entries.len()), (4, 1));
            let page = Page::new(0, "").unwrap();
            assert_eq!(store.list(Kind::Api, Some("t1"), &page).await.unwrap().len(), 1);
            assert_eq!(store.list(Kind::Api, Some("t2"), &page).await.unwrap().len(), 0);
            assert_eq!(store.list(Kind::Api, None, &page).await.unwrap().len(), 1);
        }

        async fn concurrent_writers_get_distinct_gap_free_versions(db) {
            let store = open(db.url()).await;
            let mut writers = Vec::new();
            for index in 0..20 {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    store.insert(&api(&format!("a{index}"), "t", &format!("s{index}"))).await.unwrap()
                }));
            }
            let mut versions = Vec::new();
            for writer in writers {
                versions.push(writer.await.unwrap());
            }
            versions.sort_unstable();
            assert_eq!(versions, (1..=20).collect::<Vec<i64>>());
        }
    }
}
