//! The storage layer behaves the same on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_storage::{Backend, ConnectOptions, Database, Migration, Migrations, StorageError};
use gateway_testkit::TestDatabase;
use sqlx::Row as _;

static MIGRATIONS: Migrations = Migrations {
    sqlite: &[
        Migration {
            version: 1,
            description: "items",
            sql: include_str!("migrations/sqlite/0001_items.sql"),
        },
        Migration {
            version: 2,
            description: "tags",
            sql: include_str!("migrations/sqlite/0002_tags.sql"),
        },
    ],
    postgres: &[
        Migration {
            version: 1,
            description: "items",
            sql: include_str!("migrations/postgres/0001_items.sql"),
        },
        Migration {
            version: 2,
            description: "tags",
            sql: include_str!("migrations/postgres/0002_tags.sql"),
        },
    ],
};

async fn open(db: &TestDatabase) -> Database {
    let database = Database::connect(db.url(), &ConnectOptions::default())
        .await
        .unwrap();
    let expected = if db.is_postgres() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    assert_eq!(database.backend(), expected);
    database.migrate(&MIGRATIONS).await.unwrap();
    database
}

async fn insert_item(
    database: &Database,
    id: &str,
    name: &str,
    amount: i64,
) -> Result<(), StorageError> {
    sqlx::query(
        "INSERT INTO items (id, name, amount_micros, enabled, payload, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(name)
    .bind(amount)
    .bind(true)
    .bind(vec![0_u8, 1, 2, 255])
    .bind(gateway_storage::now_micros())
    .execute(database.pool())
    .await?;
    Ok(())
}

gateway_testkit::test_on_every_backend! {
    async fn migrations_apply_once_and_rerun_as_a_no_op(db) {
        let database = open(&db).await;
        // A second replica starting against the same database.
        let second = Database::connect(db.url(), &ConnectOptions::default()).await.unwrap();
        second.migrate(&MIGRATIONS).await.unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(applied, 2);
        database.ping().await.unwrap();
    }

    async fn values_round_trip_with_the_same_types(db) {
        let database = open(&db).await;
        insert_item(&database, "a", "alpha", 1_500_000).await.unwrap();
        let row = sqlx::query("SELECT name, amount_micros, enabled, payload FROM items WHERE id = $1")
            .bind("a")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(row.get::<String, _>("name"), "alpha");
        assert_eq!(row.get::<i64, _>("amount_micros"), 1_500_000);
        assert!(gateway_storage::flag(&row, "enabled").unwrap());
        assert_eq!(row.get::<Vec<u8>, _>("payload"), vec![0, 1, 2, 255]);
    }

    async fn unique_violation_maps_to_already_exists(db) {
        let database = open(&db).await;
        insert_item(&database, "a", "alpha", 1).await.unwrap();
        let error = insert_item(&database, "b", "alpha", 1).await.unwrap_err();
        assert!(error.is_already_exists(), "{error:?}");
    }

    async fn check_and_foreign_key_violations_are_distinguished(db) {
        let database = open(&db).await;
        let error = insert_item(&database, "neg", "negative", -1).await.unwrap_err();
        assert!(matches!(error, StorageError::Check { .. }), "{error:?}");

        let error: StorageError = sqlx::query("INSERT INTO tags (item_id, tag) VALUES ($1, $2)")
            .bind("missing")
            .bind("x")
            .execute(database.pool())
            .await
            .unwrap_err()
            .into();
        assert!(matches!(error, StorageError::ForeignKey { .. }), "{error:?}");
    }

    async fn missing_row_maps_to_not_found(db) {
        let database = open(&db).await;
        let Err(error) = sqlx::query("SELECT name FROM items WHERE id = $1")
            .bind("nope")
            .fetch_one(database.pool())
            .await
        else {
            panic!("a missing row was found");
        };
        let error = StorageError::from(error);
        assert!(matches!(error, StorageError::NotFound), "{error:?}");
    }

    async fn concurrent_write_transactions_all_commit(db) {
        let database = open(&db).await;
        let mut writers = Vec::new();
        for index in 0..16 {
            let database = database.clone();
            writers.push(tokio::spawn(async move {
                let mut transaction = database.begin_write().await.unwrap();
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
                    .fetch_one(&mut *transaction)
                    .await
                    .unwrap();
                sqlx::query(
                    "INSERT INTO items (id, name, amount_micros, enabled, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(format!("id-{index}"))
                .bind(format!("name-{index}"))
                .bind(count)
                .bind(false)
                .bind(0_i64)
                .execute(&mut *transaction)
                .await
                .unwrap();
                transaction.commit().await.unwrap();
            }));
        }
        for writer in writers {
            writer.await.unwrap();
        }
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(count, 16);
    }

    async fn rolled_back_transaction_leaves_nothing(db) {
        let database = open(&db).await;
        let mut transaction = database.begin_write().await.unwrap();
        sqlx::query(
            "INSERT INTO items (id, name, amount_micros, enabled, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind("r")
        .bind("rolled")
        .bind(1_i64)
        .bind(true)
        .bind(0_i64)
        .execute(&mut *transaction)
        .await
        .unwrap();
        transaction.rollback().await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(database.pool())
            .await
            .unwrap();
        assert_eq!(count, 0);
    }
}

#[tokio::test]
async fn changed_applied_migration_is_refused() {
    let db = TestDatabase::sqlite().await;
    let database = open(&db).await;
    static EDITED: Migrations = Migrations {
        sqlite: &[Migration {
            version: 1,
            description: "items",
            sql: "CREATE TABLE items (id TEXT PRIMARY KEY);",
        }],
        postgres: &[],
    };
    let error = database.migrate(&EDITED).await.unwrap_err();
    assert!(matches!(error, StorageError::Migrate(_)), "{error:?}");
}

#[tokio::test]
async fn unsupported_url_is_a_clear_config_error() {
    let error = Database::connect("mysql://localhost/x", &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("expected sqlite: or postgres://"),
        "{error}"
    );
}
