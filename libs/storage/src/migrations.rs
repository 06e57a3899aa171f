//! Embedded, per-backend migration sets.

use std::borrow::Cow;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{MigrationType, Migrator};

use crate::Backend;

/// One migration file, embedded with `include_str!`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// A service's schema history, once per backend. Versions must match
/// between the two sets, so that both backends hold the same schema.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static [Migration],
    pub postgres: &'static [Migration],
}

impl Migrations {
    pub(crate) fn migrator(&self, backend: Backend) -> Migrator {
        let set = match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        };
        Migrator::with_migrations(
            set.iter()
                .map(|migration| {
                    sqlx::migrate::Migration::new(
                        migration.version,
                        Cow::Borrowed(migration.description),
                        MigrationType::Simple,
                        migration.sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }

    /// The versions of each set, for a test that both sets stay in step.
    pub fn versions(&self) -> (Vec<i64>, Vec<i64>) {
        (
            self.sqlite
                .iter()
                .map(|migration| migration.version)
                .collect(),
            self.postgres
                .iter()
                .map(|migration| migration.version)
                .collect(),
        )
    }
}

/// Declares a service's migrations from `migrations/{sqlite,postgres}/NNNN_name.sql`.
///
/// ```ignore
/// pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
///     1 "init" => "0001_init.sql",
/// );
/// ```
#[macro_export]
macro_rules! migrations {
    ($($version:literal $description:literal => $file:literal),+ $(,)?) => {
        $crate::Migrations {
            sqlite: &[$($crate::Migration {
                version: $version,
                description: $description,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $file)),
            }),+],
            postgres: &[$($crate::Migration {
                version: $version,
                description: $description,
                sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $file)),
            }),+],
        }
    };
}
