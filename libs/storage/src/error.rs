//! Database errors mapped to what a caller can act on.

/// What went wrong in a store, independent of the backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No row matched.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write; `constraint` names it when the
    /// backend says which (PostgreSQL does, SQLite names the columns).
    #[error("already exists ({constraint})")]
    AlreadyExists { constraint: String },
    /// A foreign key refused the write: the referenced row is missing, or
    /// rows still point at the one being deleted.
    #[error("referenced row missing or still referenced ({constraint})")]
    ForeignKey { constraint: String },
    /// A check constraint refused the values.
    #[error("value rejected by constraint ({constraint})")]
    Check { constraint: String },
    /// The database could not be reached, or the pool timed out.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The URL or options are unusable.
    #[error("invalid database configuration: {0}")]
    Config(String),
    /// A migration failed or the applied history disagrees with the code.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Anything else: a bug or a broken database. Log it in full and
    /// answer callers with a generic message.
    #[error("database error: {0}")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StorageError {
    fn from(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(ref database_error) => {
                let constraint = database_error
                    .constraint()
                    .map(str::to_owned)
                    .unwrap_or_else(|| database_error.message().to_owned());
                match database_error.kind() {
                    sqlx::error::ErrorKind::UniqueViolation => Self::AlreadyExists { constraint },
                    sqlx::error::ErrorKind::ForeignKeyViolation => Self::ForeignKey { constraint },
                    sqlx::error::ErrorKind::CheckViolation
                    | sqlx::error::ErrorKind::NotNullViolation => Self::Check { constraint },
                    _ => Self::Other(error),
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => Self::Unavailable(error),
            sqlx::Error::Configuration(ref message) => Self::Config(message.to_string()),
            other => Self::Other(other),
        }
    }
}

impl StorageError {
    /// True for unique violations: callers answer ALREADY_EXISTS.
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::AlreadyExists { .. })
    }
}
