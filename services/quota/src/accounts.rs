//! Balances and vouchers: who may read, adjust and redeem.
//!
//! A balance's owner (a user or a key) belongs to identity; quota asks
//! identity, with the caller's own credentials, whether the caller may see
//! the owner and in which tenant it is.

use gateway_auth::Caller;
use gateway_auth::directory::{DirectoryError, ForwardedCredentials, IdentityDirectory};
use gateway_storage::page::Page;

use crate::error::QuotaError;
use crate::store::{
    Appended, LedgerRecord, NewEntry, NewVoucher, Owner, OwnerKind, QuotaStore, Redeemed, Voucher,
};

/// A credit (positive) or debit (negative) an admin asks for.
#[derive(Debug, Clone, Copy)]
pub struct Adjustment<'a> {
    pub kind: OwnerKind,
    pub id: &'a str,
    pub amount_micros: i64,
    pub reason: &'a str,
    /// A repeated request with the same key applies once.
    pub idempotency_key: &'a str,
}

/// A balance as GetBalance shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceView {
    pub owner: Owner,
    pub balance_micros: i64,
    /// Held by open reservations.
    pub reserved_micros: i64,
    /// When the latest ledger entry moved it.
    pub updated_at: Option<i64>,
}

pub struct Accounts {
    store: QuotaStore,
    directory: IdentityDirectory,
}

impl Accounts {
    pub fn new(store: QuotaStore, directory: IdentityDirectory) -> Self {
        Self { store, directory }
    }

    /// The owner with its tenant, if the caller may see it.
    async fn owner(
        &self,
        kind: OwnerKind,
        id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<Owner, QuotaError> {
        if id.is_empty() {
            return Err(QuotaError::invalid("owner.id", "is required"));
        }
        let tenant = match kind {
            OwnerKind::User => self.directory.user_tenant(id, credentials).await,
            OwnerKind::Key => self.directory.key_tenant(id, credentials).await,
        };
        match tenant {
            Ok(tenant_id) => Ok(Owner {
                tenant_id,
                kind,
                id: id.to_owned(),
            }),
            Err(DirectoryError::NotFound) => Err(QuotaError::NotFound("balance owner")),
            Err(DirectoryError::Unavailable(message)) => Err(QuotaError::Unavailable(message)),
        }
    }

    pub async fn balance(
        &self,
        kind: OwnerKind,
        id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<BalanceView, QuotaError> {
        let owner = self.owner(kind, id, credentials).await?;
        let (balance_micros, updated_at) = self
            .store
            .balance_row(&owner)
            .await?
            .map_or((0, None), |(balance, updated_at)| {
                (balance, Some(updated_at))
            });
        let reserved_micros = self
            .store
            .reserved(&owner, gateway_storage::now_micros())
            .await?;
        Ok(BalanceView {
            owner,
            balance_micros,
            reserved_micros,
            updated_at,
        })
    }

    pub async fn adjust(
        &self,
        caller: &Caller,
        adjustment: &Adjustment<'_>,
        credentials: &ForwardedCredentials,
    ) -> Result<(Appended, i64), QuotaError> {
        let Adjustment {
            kind,
            id,
            amount_micros,
            reason,
            idempotency_key,
        } = *adjustment;
        if amount_micros == 0 {
            return Err(QuotaError::invalid("amount_micros", "must not be zero"));
        }
        if reason.trim().is_empty() {
            return Err(QuotaError::invalid(
                "reason",
                "is required: the ledger says why",
            ));
        }
        let owner = self.owner(kind, id, credentials).await?;
        if !caller.administers(&owner.tenant_id) {
            return Err(QuotaError::PermissionDenied(
                "adjusting a balance needs role ADMIN in its tenant",
            ));
        }
        let reference = if idempotency_key.is_empty() {
            String::new()
        } else {
            format!("adjust:{idempotency_key}")
        };
        let appended = self
            .store
            .append(
                &owner,
                &NewEntry {
                    kind: "ADJUSTMENT",
                    amount_micros,
                    reason,
                    reference_id: &reference,
                    actor_user_id: caller.user_id().unwrap_or("admin-key"),
                    forbid_negative: true,
                },
            )
            .await?;
        let balance = self.store.balance(&owner).await?;
        Ok((appended, balance))
    }

    pub async fn ledger(
        &self,
        kind: OwnerKind,
        id: &str,
        page: &Page,
        credentials: &ForwardedCredentials,
    ) -> Result<(Owner, Vec<LedgerRecord>), QuotaError> {
        let owner = self.owner(kind, id, credentials).await?;
        let entries = self.store.ledger_entries(&owner, page).await?;
        Ok((owner, entries))
    }

    pub async fn create_voucher(
        &self,
        caller: &Caller,
        tenant_id: &str,
        code: &str,
        amount_micros: i64,
        max_uses: i64,
        expire_at: Option<i64>,
    ) -> Result<(Voucher, String), QuotaError> {
        let tenant_id = match (tenant_id.is_empty(), caller.tenant_id()) {
            (false, _) => tenant_id.to_owned(),
            (true, Some(own)) => own.to_owned(),
            (true, None) => {
                return Err(QuotaError::invalid(
                    "voucher.tenant_id",
                    "is required with the admin key",
                ));
            }
        };
        if !caller.can_see_tenant(&tenant_id) {
            return Err(QuotaError::NotFound("tenant"));
        }
        if !caller.administers(&tenant_id) {
            return Err(QuotaError::PermissionDenied(
                "vouchers are created by an ADMIN of the tenant",
            ));
        }
        if amount_micros <= 0 {
            return Err(QuotaError::invalid(
                "voucher.amount_micros",
                "must be positive",
            ));
        }
        if max_uses <= 0 {
            return Err(QuotaError::invalid("voucher.max_uses", "must be positive"));
        }
        let code = code.trim();
        if !code.is_empty() && !(8..=64).contains(&code.len()) {
            return Err(QuotaError::invalid(
                "voucher.code",
                "must be 8 to 64 characters, or empty to generate one",
            ));
        }
        if expire_at.is_some_and(|at| at <= gateway_storage::now_micros()) {
            return Err(QuotaError::invalid(
                "voucher.expire_time",
                "must be in the future",
            ));
        }
        let created = self
            .store
            .create_voucher(&NewVoucher {
                tenant_id: &tenant_id,
                code,
                amount_micros,
                max_uses,
                expire_at,
                created_by: caller.user_id().unwrap_or("admin-key"),
            })
            .await
            .map_err(|error| match error {
                error if error.is_already_exists() => {
                    QuotaError::FailedPrecondition("that code is taken".to_owned())
                }
                other => other.into(),
            })?;
        Ok(created)
    }

    pub async fn voucher(&self, caller: &Caller, id: &str) -> Result<Voucher, QuotaError> {
        let voucher = match self.store.get_voucher(id).await {
            Ok(voucher) => voucher,
            Err(gateway_storage::StorageError::NotFound) => {
                return Err(QuotaError::NotFound("voucher"));
            }
            Err(error) => return Err(error.into()),
        };
        if !caller.administers(&voucher.tenant_id) {
            return Err(QuotaError::NotFound("voucher"));
        }
        Ok(voucher)
    }

    pub async fn vouchers(
        &self,
        caller: &Caller,
        tenant_id: &str,
        page: &Page,
    ) -> Result<Vec<Voucher>, QuotaError> {
        let tenant = if caller.is_superadmin() {
            (!tenant_id.is_empty()).then_some(tenant_id)
        } else {
            let own = caller.tenant_id().unwrap_or_default();
            if !tenant_id.is_empty() && tenant_id != own {
                return Err(QuotaError::NotFound("tenant"));
            }
            Some(own)
        };
        Ok(self.store.list_vouchers(tenant, page).await?)
    }

    pub async fn retire_voucher(&self, caller: &Caller, id: &str) -> Result<(), QuotaError> {
        let voucher = self.voucher(caller, id).await?;
        Ok(self.store.retire_voucher(&voucher.id).await?)
    }

    /// Redeems for the caller (or, with the admin key, for `user_id`).
    pub async fn redeem(
        &self,
        caller: &Caller,
        code: &str,
        user_id: &str,
        credentials: &ForwardedCredentials,
    ) -> Result<(Redeemed, i64), QuotaError> {
        if code.trim().is_empty() {
            return Err(QuotaError::invalid("code", "is required"));
        }
        let (user_id, tenant_id) = match caller {
            Caller::User {
                user_id: own,
                tenant_id,
                ..
            } => {
                if !user_id.is_empty() && user_id != own {
                    return Err(QuotaError::PermissionDenied(
                        "users redeem vouchers for themselves",
                    ));
                }
                (own.clone(), tenant_id.clone())
            }
            _ => {
                let owner = self.owner(OwnerKind::User, user_id, credentials).await?;
                (owner.id, owner.tenant_id)
            }
        };
        let redeemed = self
            .store
            .redeem_voucher(&tenant_id, code, &user_id)
            .await?;
        let balance = self
            .store
            .balance(&Owner {
                tenant_id,
                kind: OwnerKind::User,
                id: user_id,
            })
            .await?;
        Ok((redeemed, balance))
    }
}
