//! Balance holds: what open reservations keep of a balance, so concurrent
//! requests can never spend the same money twice.

use gateway_storage::StorageError;

use super::{LedgerError, NewEntry, Owner, QuotaStore, append_in};

/// What holding part of a balance did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Held; `available_micros` is what is left for other requests.
    Held { available_micros: i64 },
    /// The balance minus the live holds cannot cover the amount.
    Insufficient { available_micros: i64 },
}

impl QuotaStore {
    /// Holds `amount` of the owner's balance for `reservation` until
    /// `expire_at`, if what is available covers it (and is positive: a
    /// request paid from a balance needs money, whatever its estimate).
    ///
    /// The balance row's lock (an upsert that changes nothing; BEGIN
    /// IMMEDIATE on SQLite) serialises concurrent holds of one owner.
    pub async fn hold(
        &self,
        owner: &Owner,
        reservation: &str,
        amount: i64,
        expire_at: i64,
        now: i64,
    ) -> Result<Hold, StorageError> {
        let mut transaction = self.db.begin_write().await?;
        let balance: i64 = sqlx::query_scalar(
            "INSERT INTO balances (owner_kind, owner_id, tenant_id, balance_micros, updated_at) \
             VALUES ($1, $2, $3, 0, $4) \
             ON CONFLICT (owner_kind, owner_id) DO UPDATE SET balance_micros = balances.balance_micros \
             RETURNING balance_micros",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(&owner.tenant_id)
        .bind(now)
        .fetch_one(&mut *transaction)
        .await?;
        sqlx::query(
            "DELETE FROM balance_holds WHERE owner_kind = $1 AND owner_id = $2 AND expire_at <= $3",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        let held = held_in(&mut transaction, owner).await?;
        let available = balance - held;
        if available < amount.max(1) {
            transaction.rollback().await?;
            return Ok(Hold::Insufficient {
                available_micros: available,
            });
        }
        sqlx::query(
            "INSERT INTO balance_holds (reservation_id, owner_kind, owner_id, amount_micros, expire_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(reservation)
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(amount)
        .bind(expire_at)
        .bind(now)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(Hold::Held {
            available_micros: available - amount,
        })
    }

    /// Drops a hold (a refused or failed request).
    pub async fn release_hold(&self, reservation: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM balance_holds WHERE reservation_id = $1")
            .bind(reservation)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Settles a reservation's money: drops its hold and debits `cost`
    /// (once: `reference` is the ledger entry's idempotency key). The debit
    /// may take the balance below zero, since the usage already happened.
    /// Returns the balance after.
    pub async fn settle(
        &self,
        owner: &Owner,
        reservation: &str,
        reference: &str,
        cost: i64,
    ) -> Result<i64, LedgerError> {
        let mut transaction = self.db.begin_write().await?;
        sqlx::query("DELETE FROM balance_holds WHERE reservation_id = $1")
            .bind(reservation)
            .execute(&mut *transaction)
            .await
            .map_err(StorageError::from)?;
        if cost > 0 {
            let entry = NewEntry {
                kind: "USAGE",
                amount_micros: -cost,
                reason: "usage",
                reference_id: reference,
                actor_user_id: "",
                forbid_negative: false,
            };
            match append_in(&mut transaction, owner, &entry).await {
                Ok(created) => {
                    transaction.commit().await.map_err(StorageError::from)?;
                    return Ok(created.balance_after_micros);
                }
                // A replayed Commit: the debit is already there.
                Err(LedgerError::Storage(error)) if error.is_already_exists() => {
                    transaction.rollback().await.map_err(StorageError::from)?;
                    return Ok(self.balance(owner).await?);
                }
                Err(error) => {
                    transaction.rollback().await.map_err(StorageError::from)?;
                    return Err(error);
                }
            }
        }
        transaction.commit().await.map_err(StorageError::from)?;
        Ok(self.balance(owner).await?)
    }

    /// What live holds keep of the owner's balance.
    pub async fn reserved(&self, owner: &Owner, now: i64) -> Result<i64, StorageError> {
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(SUM(amount_micros) AS BIGINT) FROM balance_holds \
             WHERE owner_kind = $1 AND owner_id = $2 AND expire_at > $3",
        )
        .bind(owner.kind.as_str())
        .bind(&owner.id)
        .bind(now)
        .fetch_one(self.db.pool())
        .await?;
        Ok(held.unwrap_or(0))
    }

    /// Deletes lapsed holds; returns how many.
    pub async fn purge_expired_holds(&self, now: i64) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM balance_holds WHERE expire_at <= $1")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}

async fn held_in(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: &Owner,
) -> Result<i64, StorageError> {
    let held: Option<i64> = sqlx::query_scalar(
        "SELECT CAST(SUM(amount_micros) AS BIGINT) FROM balance_holds \
         WHERE owner_kind = $1 AND owner_id = $2",
    )
    .bind(owner.kind.as_str())
    .bind(&owner.id)
    .fetch_one(&mut **transaction)
    .await?;
    Ok(held.unwrap_or(0))
}
