//! Storage plumbing shared by the services: connect to SQLite (the embedded
//! default) or PostgreSQL (production) by URL, run a service's migrations,
//! and map database errors to a small set of kinds at this boundary.
//!
//! Stores use sqlx's `Any` driver, so one query text serves both backends.
//! The portable subset is: `$1`-style placeholders (SQLite accepts them),
//! `BIGINT` timestamps in unix microseconds, `TEXT` ids, `BIGINT` money in
//! micro-units, `ON CONFLICT` upserts and `RETURNING`. DDL differs and lives
//! in one migration set per backend. Booleans are `BOOLEAN` on PostgreSQL
//! and `INTEGER` on SQLite (the `Any` driver cannot read SQLite's `BOOLEAN`
//! declaration); bind a Rust `bool` and read it back with [`flag`].

pub mod calendar;
mod database;
mod error;
mod migrations;
pub mod page;

pub use database::{Backend, ConnectOptions, Database};
pub use error::StorageError;
pub use migrations::{Migration, Migrations};

pub use sqlx;

use sqlx::Row as _;

/// Reads a boolean column written from a Rust `bool` on either backend.
pub fn flag(row: &sqlx::any::AnyRow, column: &str) -> Result<bool, sqlx::Error> {
    match row.try_get::<bool, _>(column) {
        Ok(value) => Ok(value),
        Err(_) => row.try_get::<i64, _>(column).map(|value| value != 0),
    }
}

/// Microseconds since the Unix epoch: how every store keeps timestamps.
pub fn now_micros() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
}
