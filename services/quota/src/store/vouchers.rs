//! Vouchers: codes that credit a user's balance, each user at most once,
//! at most `max_uses` users in all, safe under concurrent redemption.

use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use rand::Rng as _;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;
use sqlx::any::AnyRow;

use super::{LedgerEntry, LedgerError, NewEntry, Owner, OwnerKind, QuotaStore, append_in};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    pub id: String,
    pub tenant_id: String,
    /// The code's last four characters.
    pub code_hint: String,
    pub amount_micros: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub expire_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewVoucher<'a> {
    pub tenant_id: &'a str,
    /// Empty: generate one (24 characters of an unambiguous alphabet).
    pub code: &'a str,
    pub amount_micros: i64,
    pub max_uses: i64,
    pub expire_at: Option<i64>,
    pub created_by: &'a str,
}

/// A successful redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    pub voucher: Voucher,
    pub entry: LedgerEntry,
}

#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    #[error("no such voucher")]
    NotFound,
    #[error("the voucher has expired")]
    Expired,
    #[error("the voucher has been used up")]
    Exhausted,
    #[error("this user has already redeemed the voucher")]
    AlreadyRedeemed,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

const COLUMNS: &str =
    "id, tenant_id, code_hint, amount_micros, max_uses, uses, expire_at, created_by, created_at";

fn voucher(row: &AnyRow) -> Result<Voucher, StorageError> {
    Ok(Voucher {
        id: row.try_get("id")?,
        tenant_id: row.try_get("tenant_id")?,
        code_hint: row.try_get("code_hint")?,
        amount_micros: row.try_get("amount_micros")?,
        max_uses: row.try_get("max_uses")?,
        uses: row.try_get("uses")?,
        expire_at: row.try_get("expire_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

fn code_hash(tenant_id: &str, code: &str) -> String {
    // Scoped by tenant: the same code in two tenants is two vouchers.
    let digest = Sha256::digest(format!("{tenant_id}\n{}", code.trim()).as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// 24 characters without look-alikes (no 0/O, 1/I/L): ~115 bits.
fn generate_code() -> String {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

impl QuotaStore {
    /// Creates a voucher; the code is in the result and nowhere else.
    pub async fn create_voucher(
        &self,
        new: &NewVoucher<'_>,
    ) -> Result<(Voucher, String), StorageError> {
        let code = if new.code.trim().is_empty() {
            generate_code()
        } else {
            new.code.trim().to_owned()
        };
        let voucher = Voucher {
            id: uuid::Uuid::now_v7().to_string(),
            tenant_id: new.tenant_id.to_owned(),
            code_hint: gateway_secrets::hint(&code),
            amount_micros: new.amount_micros,
            max_uses: new.max_uses,
            uses: 0,
            expire_at: new.expire_at,
            created_by: new.created_by.to_owned(),
            created_at: now_micros(),
        };
        sqlx::query(
            "INSERT INTO vouchers (id, tenant_id, code_sha256, code_hint, amount_micros, max_uses, uses, expire_at, \
             created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9)",
        )
        .bind(&voucher.id)
        .bind(&voucher.tenant_id)
        .bind(code_hash(new.tenant_id, &code))
        .bind(&voucher.code_hint)
        .bind(voucher.amount_micros)
        .bind(voucher.max_uses)
        .bind(voucher.expire_at)
        .bind(&voucher.created_by)
        .bind(voucher.created_at)
        .execute(self.db.pool())
        .await?;
        Ok((voucher, code))
    }

    pub async fn get_voucher(&self, id: &str) -> Result<Voucher, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vouchers WHERE id = $1"
        )))
        .bind(id)
        .fetch_one(self.db.pool())
        .await?;
        voucher(&row)
    }

    pub async fn list_vouchers(
        &self,
        tenant_id: Option<&str>,
        page: &Page,
    ) -> Result<Vec<Voucher>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM vouchers WHERE id > $1 AND ($2 = '*' OR tenant_id = $2) ORDER BY id LIMIT $3"
        )))
        .bind(&page.after)
        .bind(tenant_id.unwrap_or("*"))
        .bind(page.fetch_limit())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(voucher).collect()
    }

    /// Deletes a voucher that nobody has redeemed yet (a redeemed one is
    /// part of the ledger's history).
    pub async fn delete_unused_voucher(&self, id: &str) -> Result<bool, StorageError> {
        let result = sqlx::query("DELETE FROM vouchers WHERE id = $1 AND uses = 0")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Stops further redemptions: an unused voucher is deleted, a used one
    /// is capped at its uses (its credits and history stay).
    pub async fn retire_voucher(&self, id: &str) -> Result<(), StorageError> {
        if self.delete_unused_voucher(id).await? {
            return Ok(());
        }
        let result = sqlx::query("UPDATE vouchers SET max_uses = uses WHERE id = $1")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        if result.rows_affected() == 0 {
            return Err(StorageError::NotFound);
        }
        Ok(())
    }

    /// Redeems `code` for `user_id` of `tenant_id`, crediting their balance,
    /// all in one transaction.
    pub async fn redeem_voucher(
        &self,
        tenant_id: &str,
        code: &str,
        user_id: &str,
    ) -> Result<Redeemed, VoucherError> {
        let now = now_micros();
        let mut transaction = self.db.begin_write().await?;
        let outcome = redeem_in(&mut transaction, tenant_id, code, user_id, now).await;
        match outcome {
            Ok(redeemed) => {
                transaction.commit().await.map_err(StorageError::from)?;
                Ok(redeemed)
            }
            Err(error) => {
                transaction.rollback().await.map_err(StorageError::from)?;
                Err(error)
            }
        }
    }
}

async fn redeem_in(
    transaction: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: &str,
    code: &str,
    user_id: &str,
    now: i64,
) -> Result<Redeemed, VoucherError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM vouchers WHERE code_sha256 = $1 AND tenant_id = $2"
    )))
    .bind(code_hash(tenant_id, code))
    .bind(tenant_id)
    .fetch_optional(&mut **transaction)
    .await
    .map_err(StorageError::from)?;
    let found = row
        .as_ref()
        .map(voucher)
        .transpose()?
        .ok_or(VoucherError::NotFound)?;
    if found.expire_at.is_some_and(|expire_at| expire_at <= now) {
        return Err(VoucherError::Expired);
    }
    // The primary key refuses a second redemption by this user; checked
    // before counting the use so a repeat does not look like exhaustion.
    let entry_id = uuid::Uuid::now_v7().to_string();
    let claimed = sqlx::query(
        "INSERT INTO voucher_redemptions (voucher_id, user_id, ledger_entry_id, redeemed_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&found.id)
    .bind(user_id)
    .bind(&entry_id)
    .bind(now)
    .execute(&mut **transaction)
    .await
    .map_err(StorageError::from);
    match claimed {
        Ok(_) => {}
        Err(error) if error.is_already_exists() => return Err(VoucherError::AlreadyRedeemed),
        Err(error) => return Err(error.into()),
    }
    // The row lock of this update orders concurrent redemptions: the use
    // count can never pass max_uses.
    let counted =
        sqlx::query("UPDATE vouchers SET uses = uses + 1 WHERE id = $1 AND uses < max_uses")
            .bind(&found.id)
            .execute(&mut **transaction)
            .await
            .map_err(StorageError::from)?;
    if counted.rows_affected() == 0 {
        return Err(VoucherError::Exhausted);
    }
    let owner = Owner {
        tenant_id: tenant_id.to_owned(),
        kind: OwnerKind::User,
        id: user_id.to_owned(),
    };
    let reference = format!("voucher:{}", found.id);
    let entry = append_in(
        transaction,
        &owner,
        &NewEntry {
            kind: "VOUCHER",
            amount_micros: found.amount_micros,
            reason: "voucher redeemed",
            reference_id: &reference,
            actor_user_id: user_id,
            forbid_negative: false,
        },
    )
    .await?;
    Ok(Redeemed {
        voucher: Voucher {
            uses: found.uses + 1,
            ..found
        },
        entry,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use gateway_storage::{ConnectOptions, Database};

    async fn open(url: &str) -> QuotaStore {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&super::super::MIGRATIONS).await.unwrap();
        QuotaStore::new(db)
    }

    fn voucher(amount_micros: i64, max_uses: i64) -> NewVoucher<'static> {
        NewVoucher {
            tenant_id: "tenant-a",
            code: "",
            amount_micros,
            max_uses,
            expire_at: None,
            created_by: "admin",
        }
    }

    fn user(id: &str) -> Owner {
        Owner {
            tenant_id: "tenant-a".to_owned(),
            kind: OwnerKind::User,
            id: id.to_owned(),
        }
    }

    gateway_testkit::test_on_every_backend! {
        async fn a_voucher_credits_a_user_once(db) {
            let store = open(db.url()).await;
            let (created, code) = store.create_voucher(&voucher(5_000_000, 10)).await.unwrap();
            assert_eq!(code.len(), 24);
            assert!(code.ends_with(&created.code_hint));
            let redeemed = store.redeem_voucher("tenant-a", &code, "ada").await.unwrap();
            assert_eq!((redeemed.entry.amount_micros, redeemed.voucher.uses), (5_000_000, 1));
            assert_eq!(store.balance(&user("ada")).await.unwrap(), 5_000_000);
            assert!(matches!(store.redeem_voucher("tenant-a", &code, "ada").await, Err(VoucherError::AlreadyRedeemed)));
            assert!(matches!(store.redeem_voucher("tenant-b", &code, "eve").await, Err(VoucherError::NotFound)));
            assert!(matches!(store.redeem_voucher("tenant-a", "WRONGCODE", "bob").await, Err(VoucherError::NotFound)));
            assert_eq!(store.balance(&user("ada")).await.unwrap(), 5_000_000);
            assert!(!store.delete_unused_voucher(&created.id).await.unwrap(), "a redeemed voucher stays");
        }

        async fn concurrent_double_redemption_credits_once(db) {
            let store = open(db.url()).await;
            let (_, code) = store.create_voucher(&voucher(1_000, 100)).await.unwrap();
            let code = Arc::new(code);
            let mut attempts = Vec::new();
            for _ in 0..10 {
                let (store, code) = (store.clone(), Arc::clone(&code));
                attempts.push(tokio::spawn(async move { store.redeem_voucher("tenant-a", &code, "ada").await.is_ok() }));
            }
            let mut credited = 0;
            for attempt in attempts {
                credited += usize::from(attempt.await.unwrap());
            }
            assert_eq!(credited, 1);
            assert_eq!(store.balance(&user("ada")).await.unwrap(), 1_000);
            assert_eq!(store.ledger_sum(&user("ada")).await.unwrap(), 1_000);
        }

        async fn concurrent_redemptions_never_pass_max_uses(db) {
            let store = open(db.url()).await;
            let (created, code) = store.create_voucher(&voucher(1_000, 3)).await.unwrap();
            let code = Arc::new(code);
            let mut attempts = Vec::new();
            for index in 0..10 {
                let (store, code) = (store.clone(), Arc::clone(&code));
                attempts.push(tokio::spawn(async move {
                    store.redeem_voucher("tenant-a", &code, &format!("user-{index}")).await
                }));
            }
            let mut credited = 0;
            for attempt in attempts {
                match attempt.await.unwrap() {
                    Ok(_) => credited += 1,
                    Err(VoucherError::Exhausted) => {}
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(credited, 3);
            assert_eq!(store.get_voucher(&created.id).await.unwrap().uses, 3);
        }

        async fn expired_vouchers_are_refused_and_unused_ones_can_be_deleted(db) {
            let store = open(db.url()).await;
            let expired = NewVoucher { expire_at: Some(now_micros() - 1), ..voucher(1, 1) };
            let (_, code) = store.create_voucher(&expired).await.unwrap();
            assert!(matches!(store.redeem_voucher("tenant-a", &code, "ada").await, Err(VoucherError::Expired)));
            let (unused, _) = store.create_voucher(&NewVoucher { code: "SPRING-SALE", ..voucher(1, 1) }).await.unwrap();
            let page = Page::new(0, "").unwrap();
            assert_eq!(store.list_vouchers(Some("tenant-a"), &page).await.unwrap().len(), 2);
            assert!(store.delete_unused_voucher(&unused.id).await.unwrap());
            // Codes are stored only as hashes.
            let stored: Vec<String> = sqlx::query_scalar("SELECT code_sha256 FROM vouchers")
                .fetch_all(store.database().pool())
                .await
                .unwrap();
            assert!(stored.iter().all(|hash| hash.len() == 64 && !hash.contains("SPRING")));
        }
    }
}
