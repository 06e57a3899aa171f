//! A connection pool to SQLite or PostgreSQL, chosen by URL.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AnyPool, Connection as _, Executor as _, PgPool};

use crate::{Migrations, StorageError};

/// Which database server a [`Database`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Pool settings; the defaults suit one service replica.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// 0: the backend's default ([`DEFAULT_POSTGRES_CONNECTIONS`],
    /// [`DEFAULT_SQLITE_CONNECTIONS`]).
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            max_connections: 0,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// PostgreSQL serves many connections at once.
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 10;

/// SQLite runs one writer at a time and each connection is a thread with
/// its own page cache: a larger pool only grows memory (a soak saw ten
/// connections per service, most of them idle).
pub const DEFAULT_SQLITE_CONNECTIONS: u32 = 4;

/// A service's database: a pool plus the backend it runs on.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL through sqlx's own driver; connects on first use.
    postgres: Option<PgPool>,
}

// SQLite settings for a server workload: readers do not block the writer
// (WAL), a busy writer is waited for instead of failing at once, and
// foreign keys are enforced as on PostgreSQL.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 5000; \
     PRAGMA foreign_keys = ON;";

impl Database {
    /// Connects to `url`: `sqlite://path/to.db`, `sqlite::memory:`, or
    /// `postgres://user@host:port/db`. A SQLite file and its directory are
    /// created if missing.
    pub async fn connect(url: &str, options: &ConnectOptions) -> Result<Self, StorageError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(url)?,
            Backend::Postgres => url.to_owned(),
        };
        let connect_options: AnyConnectOptions = url
            .parse()
            .map_err(|error: sqlx::Error| StorageError::Config(error.to_string()))?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let size = pool_size(backend, in_memory, options.max_connections);
        let pool = AnyPoolOptions::new()
            .max_connections(size)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        connection.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(StorageError::from)?;
        tracing::debug!(?backend, "database connected");
        let postgres = match backend {
            Backend::Postgres => Some(native_postgres(&url, size, options)?),
            Backend::Sqlite => None,
        };
        Ok(Self {
            pool,
            backend,
            postgres,
        })
    }

    /// Applies every migration not yet applied. Safe to run from several
    /// replicas at once: PostgreSQL serialises them with an advisory lock.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), StorageError> {
        migrations.migrator(self.backend).run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The same PostgreSQL database through sqlx's own driver, for what
    /// the `Any` pool cannot do (`COPY`); `None` on SQLite. Its
    /// connections open on first use, so a service that never calls this
    /// holds none.
    pub fn postgres(&self) -> Option<&PgPool> {
        self.postgres.as_ref()
    }

    /// Starts a transaction that will write.
    ///
    /// On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred transaction that upgrades from read to write fails with
    /// `SQLITE_BUSY` instead of waiting when another writer is active.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StorageError> {
        let transaction = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(transaction)
    }

    /// Round-trips a trivial query: readiness probes call this.
    pub async fn ping(&self) -> Result<(), StorageError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(postgres) = &self.postgres {
            postgres.close().await;
        }
    }
}

fn native_postgres(url: &str, size: u32, options: &ConnectOptions) -> Result<PgPool, StorageError> {
    let connect_options: PgConnectOptions = url
        .parse()
        .map_err(|error: sqlx::Error| StorageError::Config(error.to_string()))?;
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(options.acquire_timeout)
        // A ping on every checkout is a round trip per batch on ingest. A
        // connection in steady use needs none; one idle a while may have
        // been closed by the server, and is checked.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_WHEN_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(connect_options))
}

/// How long a native PostgreSQL connection may sit idle before its next
/// checkout pings it.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

fn pool_size(backend: Backend, in_memory: bool, requested: u32) -> u32 {
    match (backend, requested) {
        // Every connection to an in-memory SQLite database is a separate
        // database, so such a pool holds exactly one.
        _ if in_memory => 1,
        (_, requested) if requested > 0 => requested,
        (Backend::Sqlite, _) => DEFAULT_SQLITE_CONNECTIONS,
        (Backend::Postgres, _) => DEFAULT_POSTGRES_CONNECTIONS,
    }
}

fn backend_of(url: &str) -> Result<Backend, StorageError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StorageError::Config(format!(
            "unsupported database URL scheme in {:?}: expected sqlite: or postgres://",
            url.split_once(':').map_or(url, |(scheme, _)| scheme)
        )))
    }
}

/// Adds `mode=rwc` (create if missing) and creates the file's directory.
fn prepare_sqlite_url(url: &str) -> Result<String, StorageError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
        return Ok(url.to_owned());
    }
    if let Some(parent) = Path::new(path)
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(|error| {
            StorageError::Config(format!(
                "cannot create directory {}: {error}",
                parent.display()
            ))
        })?;
    }
    if query.contains("mode=") {
        return Ok(url.to_owned());
    }
    let separator = if url.contains('?') { "&" } else { "?" };
    Ok(format!("{url}{separator}mode=rwc"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_size_of_zero_is_the_backends_default_and_others_are_kept() {
        assert_eq!(
            pool_size(Backend::Sqlite, false, 0),
            DEFAULT_SQLITE_CONNECTIONS
        );
        assert_eq!(
            pool_size(Backend::Postgres, false, 0),
            DEFAULT_POSTGRES_CONNECTIONS
        );
        assert_eq!(pool_size(Backend::Sqlite, false, 12), 12);
        assert_eq!(pool_size(Backend::Postgres, false, 3), 3);
        assert_eq!(
            pool_size(Backend::Sqlite, true, 12),
            1,
            "in-memory: one database"
        );
    }

    #[tokio::test]
    async fn a_sqlite_pool_opens_at_most_its_default_size() {
        let dir = tempfile_dir();
        let url = format!("sqlite://{}/pool.db", dir.display());
        let db = Database::connect(&url, &ConnectOptions::default())
            .await
            .unwrap();
        let mut held = Vec::new();
        for _ in 0..DEFAULT_SQLITE_CONNECTIONS {
            held.push(db.pool().acquire().await.unwrap());
        }
        let more = tokio::time::timeout(Duration::from_millis(200), db.pool().acquire()).await;
        assert!(
            more.is_err(),
            "a connection beyond the default size was opened"
        );
    }

    #[test]
    fn unknown_scheme_is_a_config_error() {
        let error = backend_of("mysql://localhost/db").unwrap_err().to_string();
        assert!(error.contains("\"mysql\""), "{error}");
    }

    #[test]
    fn sqlite_url_gets_create_mode_and_directory() {
        let dir = tempfile_dir();
        let url = format!("sqlite://{}/nested/identity.db", dir.display());
        let prepared = prepare_sqlite_url(&url).unwrap();
        assert_eq!(prepared, format!("{url}?mode=rwc"));
        assert!(dir.join("nested").is_dir());
        let with_query = format!("sqlite://{}/a.db?cache=shared", dir.display());
        assert_eq!(
            prepare_sqlite_url(&with_query).unwrap(),
            format!("{with_query}&mode=rwc")
        );
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:").unwrap(),
            "sqlite::memory:"
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-storage-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
