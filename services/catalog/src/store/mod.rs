//! Catalog's SQL store. The version counter orders every catalog change.

use gateway_storage::{Database, Migrations, StorageError};

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "catalog version" => "0001_catalog_version.sql",
);

#[derive(Debug, Clone)]
pub struct CatalogStore {
    db: Database,
}

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
    pub async fn bump_version(
        transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<i64, StorageError> {
        let version = sqlx::query_scalar(
            "UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **transaction)
        .await?;
        Ok(version)
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

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let (sqlite, postgres) = MIGRATIONS.versions();
        assert_eq!(sqlite, postgres);
    }

    gateway_testkit::test_on_every_backend! {
        async fn version_moves_only_with_committed_writes(db) {
            let store = open(db.url()).await;
            assert_eq!(store.current_version().await.unwrap(), 0);

            let mut transaction = store.database().begin_write().await.unwrap();
            assert_eq!(CatalogStore::bump_version(&mut transaction).await.unwrap(), 1);
            transaction.commit().await.unwrap();
            assert_eq!(store.current_version().await.unwrap(), 1);

            let mut transaction = store.database().begin_write().await.unwrap();
            CatalogStore::bump_version(&mut transaction).await.unwrap();
            transaction.rollback().await.unwrap();
            assert_eq!(store.current_version().await.unwrap(), 1);
        }

        async fn concurrent_writers_get_distinct_gap_free_versions(db) {
            let store = open(db.url()).await;
            let mut writers = Vec::new();
            for _ in 0..20 {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    let mut transaction = store.database().begin_write().await.unwrap();
                    let version = CatalogStore::bump_version(&mut transaction).await.unwrap();
                    transaction.commit().await.unwrap();
                    version
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
