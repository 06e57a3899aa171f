//! Quota's SQL store: balances as an append-only ledger.

use gateway_storage::{Database, Migrations, StorageError, now_micros};
use sqlx::Row as _;

pub static MIGRATIONS: Migrations = gateway_storage::migrations!(
    1 "balances and ledger" => "0001_balances.sql",
    2 "vouchers" => "0002_vouchers.sql",
    3 "plans and rules" => "0003_limits.sql",
    4 "balance holds" => "0004_balance_holds.sql",
);

pub mod holds;
pub mod limits;
mod vouchers;

pub use vouchers::{NewVoucher, Redeemed, Voucher, VoucherError};

/// Whose balance an entry moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    User,
    Key,
}

impl OwnerKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::User => "USER",
            Self::Key => "KEY",
        }
    }
}

/// A balance owner: a user or an API key of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub tenant_id: String,
    pub kind: OwnerKind,
    pub id: String,
}

/// A movement to append to an owner's ledger.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    /// `CREDIT`, `DEBIT`, `VOUCHER`, `ADJUSTMENT`, ...
    pub kind: &'a str,
    /// Positive credits, negative debits.
    pub amount_micros: i64,
    pub reason: &'a str,
    /// Idempotency: a second entry with the same non-empty reference for
    /// the same owner is not applied.
    pub reference_id: &'a str,
    pub actor_user_id: &'a str,
    /// Refuse a debit that would take the balance below zero.
    pub forbid_negative: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub kind: String,
    pub amount_micros: i64,
    pub balance_after_micros: i64,
    pub reference_id: String,
}

/// A ledger entry as listed, with its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecord {
    pub entry: LedgerEntry,
    pub tenant_id: String,
    pub reason: String,
    pub actor_user_id: String,
    pub created_at: i64,
}

/// What appending did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Applied(LedgerEntry),
    /// The reference was already applied; this is the earlier entry.
    AlreadyApplied(LedgerEntry),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("balance {balance_micros} cannot cover a debit of {debit_micros} micro-USD")]
    InsufficientBalance {
        balance_micros: i64,
        debit_micros: i64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

#[derive(Debug, Clone)]
pub struct QuotaStore {
    db: Database,
}

impl QuotaStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The owner's balance in micro-USD (0 if it never had an entry).
    pub async fn balance(&self, owner: &Owner) -> Result<i64, StorageError> {
        let balance = sqlx::query_scalar(
            "SELECT balance_micros FROM balances WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(balance.unwrap_or(0))
    }

    /// The owner's balance and when an entry last moved it; None if it
    /// never had an entry.
    pub async fn balance_row(&self, owner: &Owner) -> Result<Option<(i64, i64)>, StorageError> {
        let row = sqlx::query(
            "SELECT balance_micros, updated_at FROM balances WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| Ok((row.try_get("balance_micros")?, row.try_get("updated_at")?)))
            .transpose()
    }

    /// Appends one entry and moves the running balance in one transaction.
    ///
    /// The balance row's update lock serialises concurrent entries for an
    /// owner, so the ledger and the balance always agree.
    pub async fn append(
        &self,
        owner: &Owner,
        entry: &NewEntry<'_>,
    ) -> Result<Appended, LedgerError> {
        if !entry.reference_id.is_empty()
            && let Some(existing) = self.entry_by_reference(owner, entry.reference_id).await?
        {
            return Ok(Appended::AlreadyApplied(existing));
        }
        let mut transaction = self.db.begin_write().await?;
        match append_in(&mut transaction, owner, entry).await {
            Ok(created) => {
                transaction.commit().await.map_err(StorageError::from)?;
                Ok(Appended::Applied(created))
            }
            // A concurrent request with the same reference won the race.
            Err(LedgerError::Storage(error)) if error.is_already_exists() => {
                transaction.rollback().await.map_err(StorageError::from)?;
                let existing = self
                    .entry_by_reference(owner, entry.reference_id)
                    .await?
                    .ok_or(StorageError::NotFound)?;
                Ok(Appended::AlreadyApplied(existing))
            }
            Err(error) => {
                transaction.rollback().await.map_err(StorageError::from)?;
                Err(error)
            }
        }
    }

    /// The owner's ledger, newest first; `page.after` is the last id seen.
    pub async fn ledger_entries(
        &self,
        owner: &Owner,
        page: &gateway_storage::page::Page,
    ) -> Result<Vec<LedgerRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, kind, amount_micros, balance_after_micros, reason, reference_id, actor_user_id, \
             created_at FROM ledger_entries WHERE owner_kind = $1 AND owner_id = $2 AND ($3 = '' OR id < $3) \
             ORDER BY id DESC LIMIT $4",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(&page.after)
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(LedgerRecord {
                    entry: LedgerEntry {
                        id: row.try_get("id")?,
                        kind: row.try_get("kind")?,
                        amount_micros: row.try_get("amount_micros")?,
                        balance_after_micros: row.try_get("balance_after_micros")?,
                        reference_id: row.try_get("reference_id")?,
                    },
                    tenant_id: row.try_get("tenant_id")?,
                    reason: row.try_get("reason")?,
                    actor_user_id: row.try_get("actor_user_id")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The sum of the owner's ledger; equals [`Self::balance`] by construction.
    pub async fn ledger_sum(&self, owner: &Owner) -> Result<i64, StorageError> {
        let sum: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(amount_micros) AS BIGINT) FROM ledger_entries \
             WHERE owner_kind = $1 AND owner_id = $2",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(sum.unwrap_or(0))
    }

    async fn entry_by_reference(
        &self,
        owner: &Owner,
        reference_id: &str,
    ) -> Result<Option<LedgerEntry>, StorageError> {
        let row = sqlx::query(
            "SELECT id, kind, amount_micros, balance_after_micros, reference_id FROM ledger_entries \
             WHERE owner_kind = $1 AND owner_id = $2 AND reference_id = $3",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(reference_id)
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(LedgerEntry {
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                amount_micros: row.try_get("amount_micros")?,
                balance_after_micros: row.try_get("balance_after_micros")?,
                reference_id: row.try_get("reference_id")?,
            })
        })
        .transpose()
    }
}

/// Appends one entry inside the caller's transaction (a voucher redemption
/// credits in the same transaction that counts the use). The balance row's
/// update lock serialises concurrent entries for an owner.
pub(crate) async fn append_in(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &Owner,
    entry: &NewEntry<'_>,
) -> Result<LedgerEntry, LedgerError> {
    let now = now_micros();
    let balance_after: i64 = sqlx::query_scalar(
        "INSERT INTO balances (owner_kind, owner_id, tenant_id, balance_micros, updated_at) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (owner_kind, owner_id) DO UPDATE \
         SET balance_micros = balances.balance_micros + excluded.balance_micros, \
             updated_at = excluded.updated_at \
         RETURNING balance_micros",
    )
    .bind(owner.kind.as_str())
    .bind(&owner.id)
    .bind(&owner.tenant_id)
    .bind(entry.amount_micros)
    .bind(now)
    .fetch_one(&mut **transaction)
    .await
    .map_err(StorageError::from)?;
    if entry.forbid_negative && entry.amount_micros < 0 && balance_after < 0 {
        return Err(LedgerError::InsufficientBalance {
            balance_micros: balance_after - entry.amount_micros,
            debit_micros: -entry.amount_micros,
        });
    }
    let created = LedgerEntry {
        id: uuid::Uuid::now_v7().to_string(),
        kind: entry.kind.to_owned(),
        amount_micros: entry.amount_micros,
        balance_after_micros: balance_after,
        reference_id: entry.reference_id.to_owned(),
    };
    sqlx::query(
        "INSERT INTO ledger_entries (id, tenant_id, owner_kind, owner_id, kind, amount_micros, \
         balance_after_micros, reason, reference_id, actor_user_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&created.id)
    .bind(&owner.tenant_id)
    .bind(owner.kind.as_str())
    .bind(&owner.id)
    .bind(entry.kind)
    .bind(entry.amount_micros)
    .bind(balance_after)
    .bind(entry.reason)
    .bind(entry.reference_id)
    .bind(entry.actor_user_id)
    .bind(now)
    .execute(&mut **transaction)
    .await
    .map_err(StorageError::from)?;
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_storage::ConnectOptions;

    async fn open(url: &str) -> QuotaStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&MIGRATIONS).await.unwrap();
        QuotaStore::new(db)
    }

    fn user(id: &str) -> Owner {
        Owner {
            tenant_id: "tenant-a".to_owned(),
            kind: OwnerKind::User,
            id: id.to_owned(),
        }
    }

    fn entry(amount_micros: i64, reference_id: &str) -> NewEntry<'_> {
        NewEntry {
            kind: if amount_micros >= 0 {
                "CREDIT"
            } else {
                "DEBIT"
            },
            amount_micros,
            reason: "test",
            reference_id,
            actor_user_id: "",
            forbid_negative: true,
        }
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let (sqlite, postgres) = MIGRATIONS.versions();
        assert_eq!(sqlite, postgres);
    }

    gateway_testkit::test_on_every_backend! {
        async fn balance_is_the_sum_of_the_ledger(db) {
            let store = open(db.url()).await;
            let ada = user("ada");
            assert_eq!(store.balance(&ada).await.unwrap(), 0);
            store.append(&ada, &entry(5_000_000, "")).await.unwrap();
            store.append(&ada, &entry(-1_250_000, "")).await.unwrap();
            assert_eq!(store.balance(&ada).await.unwrap(), 3_750_000);
            assert_eq!(store.ledger_sum(&ada).await.unwrap(), 3_750_000);
            assert_eq!(store.balance(&user("bob")).await.unwrap(), 0);
        }

        async fn a_replayed_reference_applies_once(db) {
            let store = open(db.url()).await;
            let ada = user("ada");
            let first = store.append(&ada, &entry(1_000, "voucher-1")).await.unwrap();
            let Appended::Applied(applied) = first else { panic!("{first:?}") };
            let second = store.append(&ada, &entry(1_000, "voucher-1")).await.unwrap();
            assert_eq!(second, Appended::AlreadyApplied(applied));
            assert_eq!(store.balance(&ada).await.unwrap(), 1_000);
        }

        async fn a_debit_beyond_the_balance_is_refused_and_changes_nothing(db) {
            let store = open(db.url()).await;
            let ada = user("ada");
            store.append(&ada, &entry(1_000, "")).await.unwrap();
            let error = store.append(&ada, &entry(-1_001, "")).await.unwrap_err();
            assert!(matches!(
                error,
                LedgerError::InsufficientBalance { balance_micros: 1_000, debit_micros: 1_001 }
            ), "{error:?}");
            assert_eq!(store.balance(&ada).await.unwrap(), 1_000);
            assert_eq!(store.ledger_sum(&ada).await.unwrap(), 1_000);
        }

        async fn concurrent_entries_are_all_counted(db) {
            let store = open(db.url()).await;
            let mut writers = Vec::new();
            for index in 0..20_i64 {
                let store = store.clone();
                writers.push(tokio::spawn(async move {
                    let reference = format!("ref-{}", index % 10);
                    store.append(&user("ada"), &entry(100, &reference)).await.unwrap()
                }));
            }
            for writer in writers {
                writer.await.unwrap();
            }
            // Ten distinct references, each applied once.
            assert_eq!(store.balance(&user("ada")).await.unwrap(), 1_000);
            assert_eq!(store.ledger_sum(&user("ada")).await.unwrap(), 1_000);
        }
    }
}
