//! The tonic adapter for `gateway.quota.v1.QuotaService`.

use std::sync::Arc;

use gateway_auth::directory::ForwardedCredentials;
use gateway_auth::{Access, Caller};
use gateway_proto::quota::v1 as pb;
use gateway_proto::quota::v1::quota_service_server::QuotaService;
use gateway_proto::timestamp_from_micros;
use gateway_storage::page::Page;
use tonic::{Request, Response, Status};

use crate::accounts::Accounts;
use crate::admission::Admissions;
use crate::limiter::{Backend, Limiter};
use crate::plans::Plans;
use crate::store::{LedgerEntry, OwnerKind, Voucher};

pub struct QuotaGrpc {
    accounts: Arc<Accounts>,
    plans: Arc<Plans>,
    limiter: Arc<Limiter>,
    admissions: Arc<Admissions>,
}

impl QuotaGrpc {
    pub fn new(
        accounts: Arc<Accounts>,
        plans: Arc<Plans>,
        limiter: Arc<Limiter>,
        admissions: Arc<Admissions>,
    ) -> Self {
        Self {
            accounts,
            plans,
            limiter,
            admissions,
        }
    }
}

/// Who may call each RPC; finer checks are the service's. An RPC missing
/// here is refused.
pub fn access_policy(method: &str) -> Option<Access> {
    Some(match method {
        "GetBalance" | "ListLedgerEntries" | "RedeemVoucher" | "GetBackendStatus" | "GetPlan"
        | "ListPlans" | "GetRateLimitRule" | "ListRateLimitRules" => Access::Authenticated,
        "AdjustBalance"
        | "CreateVoucher"
        | "GetVoucher"
        | "ListVouchers"
        | "DeleteVoucher"
        | "CreatePlan"
        | "UpdatePlan"
        | "DeletePlan"
        | "CreateRateLimitRule"
        | "UpdateRateLimitRule"
        | "DeleteRateLimitRule" => Access::Admin,
        // The edge's RPCs.
        "Check" | "Commit" | "Lease" | "ReleaseLease" | "LeaseBalance" | "ReleaseBalanceLease" => {
            Access::Superadmin
        }
        _ => return None,
    })
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn owner_of(owner: Option<&pb::BalanceOwner>) -> Result<(OwnerKind, String), Status> {
    let owner = owner.ok_or_else(|| Status::invalid_argument("owner: is required"))?;
    let kind = match pb::BalanceOwnerKind::try_from(owner.kind) {
        Ok(pb::BalanceOwnerKind::User) => OwnerKind::User,
        Ok(pb::BalanceOwnerKind::Key) => OwnerKind::Key,
        _ => return Err(Status::invalid_argument("owner.kind: must be USER or KEY")),
    };
    Ok((kind, owner.id.clone()))
}

fn owner_to_proto(kind: OwnerKind, id: &str) -> pb::BalanceOwner {
    pb::BalanceOwner {
        kind: match kind {
            OwnerKind::User => pb::BalanceOwnerKind::User,
            OwnerKind::Key => pb::BalanceOwnerKind::Key,
        }
        .into(),
        id: id.to_owned(),
    }
}

fn entry_kind(kind: &str) -> pb::LedgerEntryKind {
    match kind {
        "ADJUSTMENT" => pb::LedgerEntryKind::Adjustment,
        "VOUCHER" => pb::LedgerEntryKind::Voucher,
        "USAGE" | "DEBIT" => pb::LedgerEntryKind::Usage,
        _ => pb::LedgerEntryKind::Unspecified,
    }
}

fn entry_to_proto(
    entry: LedgerEntry,
    tenant_id: &str,
    owner: pb::BalanceOwner,
    reason: String,
    actor_user_id: String,
    created_at: Option<i64>,
) -> pb::LedgerEntry {
    pb::LedgerEntry {
        id: entry.id,
        tenant_id: tenant_id.to_owned(),
        owner: Some(owner),
        kind: entry_kind(&entry.kind).into(),
        amount_micros: entry.amount_micros,
        balance_after_micros: entry.balance_after_micros,
        reason,
        reference_id: entry.reference_id,
        actor_user_id,
        create_time: created_at.map(timestamp_from_micros),
    }
}

/// Reads show the code's last four characters: the full code is returned
/// once, by CreateVoucher, and stored only as a hash.
fn voucher_to_proto(voucher: Voucher, code: Option<String>) -> pb::Voucher {
    pb::Voucher {
        id: voucher.id,
        tenant_id: voucher.tenant_id,
        code: code.unwrap_or(voucher.code_hint),
        amount_micros: voucher.amount_micros,
        max_uses: i32::try_from(voucher.max_uses).unwrap_or(i32::MAX),
        use_count: i32::try_from(voucher.uses).unwrap_or(i32::MAX),
        expire_time: voucher.expire_at.map(timestamp_from_micros),
        create_time: Some(timestamp_from_micros(voucher.created_at)),
    }
}

fn page(page_size: i32, page_token: &str) -> Result<Page, Status> {
    Page::new(page_size, page_token).map_err(|error| Status::invalid_argument(error.to_string()))
}

#[tonic::async_trait]
impl QuotaService for QuotaGrpc {
    async fn create_plan(
        &self,
        request: Request<pb::CreatePlanRequest>,
    ) -> GrpcResult<pb::CreatePlanResponse> {
        let caller = Caller::of(&request);
        let plan = request
            .into_inner()
            .plan
            .ok_or_else(|| Status::invalid_argument("plan: is required"))?;
        let plan = self.plans.create_plan(&caller, plan).await?;
        Ok(Response::new(pb::CreatePlanResponse { plan: Some(plan) }))
    }

    async fn get_plan(
        &self,
        request: Request<pb::GetPlanRequest>,
    ) -> GrpcResult<pb::GetPlanResponse> {
        let caller = Caller::of(&request);
        let plan = self.plans.plan(&caller, &request.into_inner().id).await?;
        Ok(Response::new(pb::GetPlanResponse { plan: Some(plan) }))
    }

    async fn list_plans(
        &self,
        request: Request<pb::ListPlansRequest>,
    ) -> GrpcResult<pb::ListPlansResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut plans = self.plans.plans(&caller, &request.tenant_id, &page).await?;
        let next_page_token = page.finish(&mut plans, |plan| plan.id.as_str());
        Ok(Response::new(pb::ListPlansResponse {
            plans,
            next_page_token,
        }))
    }

    async fn update_plan(
        &self,
        request: Request<pb::UpdatePlanRequest>,
    ) -> GrpcResult<pb::UpdatePlanResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let plan = request
            .plan
            .ok_or_else(|| Status::invalid_argument("plan: is required"))?;
        let mask = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let plan = self.plans.update_plan(&caller, plan, &mask).await?;
        Ok(Response::new(pb::UpdatePlanResponse { plan: Some(plan) }))
    }

    async fn delete_plan(
        &self,
        request: Request<pb::DeletePlanRequest>,
    ) -> GrpcResult<pb::DeletePlanResponse> {
        let caller = Caller::of(&request);
        self.plans
            .delete_plan(&caller, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::DeletePlanResponse {}))
    }

    async fn create_rate_limit_rule(
        &self,
        request: Request<pb::CreateRateLimitRuleRequest>,
    ) -> GrpcResult<pb::CreateRateLimitRuleResponse> {
        let caller = Caller::of(&request);
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let rule = request
            .into_inner()
            .rate_limit_rule
            .ok_or_else(|| Status::invalid_argument("rate_limit_rule: is required"))?;
        let rule = self.plans.create_rule(&caller, rule, &credentials).await?;
        Ok(Response::new(pb::CreateRateLimitRuleResponse {
            rate_limit_rule: Some(rule),
        }))
    }

    async fn get_rate_limit_rule(
        &self,
        request: Request<pb::GetRateLimitRuleRequest>,
    ) -> GrpcResult<pb::GetRateLimitRuleResponse> {
        let caller = Caller::of(&request);
        let rule = self.plans.rule(&caller, &request.into_inner().id).await?;
        Ok(Response::new(pb::GetRateLimitRuleResponse {
            rate_limit_rule: Some(rule),
        }))
    }

    async fn list_rate_limit_rules(
        &self,
        request: Request<pb::ListRateLimitRulesRequest>,
    ) -> GrpcResult<pb::ListRateLimitRulesResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut rules = self
            .plans
            .rules(&caller, &request.tenant_id, &request.group_id, &page)
            .await?;
        let next_page_token = page.finish(&mut rules, |rule| rule.id.as_str());
        Ok(Response::new(pb::ListRateLimitRulesResponse {
            rate_limit_rules: rules,
            next_page_token,
        }))
    }

    async fn update_rate_limit_rule(
        &self,
        request: Request<pb::UpdateRateLimitRuleRequest>,
    ) -> GrpcResult<pb::UpdateRateLimitRuleResponse> {
        let caller = Caller::of(&request);
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let rule = request
            .rate_limit_rule
            .ok_or_else(|| Status::invalid_argument("rate_limit_rule: is required"))?;
        let mask = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let rule = self
            .plans
            .update_rule(&caller, rule, &mask, &credentials)
            .await?;
        Ok(Response::new(pb::UpdateRateLimitRuleResponse {
            rate_limit_rule: Some(rule),
        }))
    }

    async fn delete_rate_limit_rule(
        &self,
        request: Request<pb::DeleteRateLimitRuleRequest>,
    ) -> GrpcResult<pb::DeleteRateLimitRuleResponse> {
        let caller = Caller::of(&request);
        self.plans
            .delete_rule(&caller, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::DeleteRateLimitRuleResponse {}))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> GrpcResult<pb::GetBalanceResponse> {
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let (kind, id) = owner_of(request.get_ref().owner.as_ref())?;
        let view = self.accounts.balance(kind, &id, &credentials).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            owner: Some(owner_to_proto(view.owner.kind, &view.owner.id)),
            balance_micros: view.balance_micros,
            reserved_micros: view.reserved_micros,
            update_time: view.updated_at.map(timestamp_from_micros),
        }))
    }

    async fn adjust_balance(
        &self,
        request: Request<pb::AdjustBalanceRequest>,
    ) -> GrpcResult<pb::AdjustBalanceResponse> {
        let caller = Caller::of(&request);
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let (kind, id) = owner_of(request.owner.as_ref())?;
        let (appended, balance) = self
            .accounts
            .adjust(
                &caller,
                &crate::accounts::Adjustment {
                    kind,
                    id: &id,
                    amount_micros: request.amount_micros,
                    reason: &request.reason,
                    idempotency_key: &request.idempotency_key,
                },
                &credentials,
            )
            .await?;
        let entry = match appended {
            crate::store::Appended::Applied(entry)
            | crate::store::Appended::AlreadyApplied(entry) => entry,
        };
        Ok(Response::new(pb::AdjustBalanceResponse {
            entry: Some(entry_to_proto(
                entry,
                "",
                owner_to_proto(kind, &id),
                request.reason,
                caller.user_id().unwrap_or_default().to_owned(),
                None,
            )),
            balance_micros: balance,
        }))
    }

    async fn list_ledger_entries(
        &self,
        request: Request<pb::ListLedgerEntriesRequest>,
    ) -> GrpcResult<pb::ListLedgerEntriesResponse> {
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let (kind, id) = owner_of(request.owner.as_ref())?;
        let page = page(request.page_size, &request.page_token)?;
        let (owner, mut records) = self.accounts.ledger(kind, &id, &page, &credentials).await?;
        let next_page_token = page.finish(&mut records, |record| record.entry.id.as_str());
        let entries = records
            .into_iter()
            .map(|record| {
                entry_to_proto(
                    record.entry,
                    &record.tenant_id,
                    owner_to_proto(owner.kind, &owner.id),
                    record.reason,
                    record.actor_user_id,
                    Some(record.created_at),
                )
            })
            .collect();
        Ok(Response::new(pb::ListLedgerEntriesResponse {
            entries,
            next_page_token,
        }))
    }

    async fn create_voucher(
        &self,
        request: Request<pb::CreateVoucherRequest>,
    ) -> GrpcResult<pb::CreateVoucherResponse> {
        let caller = Caller::of(&request);
        let voucher = request
            .into_inner()
            .voucher
            .ok_or_else(|| Status::invalid_argument("voucher: is required"))?;
        let (created, code) = self
            .accounts
            .create_voucher(
                &caller,
                &voucher.tenant_id,
                &voucher.code,
                voucher.amount_micros,
                i64::from(voucher.max_uses),
                voucher
                    .expire_time
                    .as_ref()
                    .map(gateway_proto::micros_from_timestamp),
            )
            .await?;
        Ok(Response::new(pb::CreateVoucherResponse {
            voucher: Some(voucher_to_proto(created, Some(code))),
        }))
    }

    async fn get_voucher(
        &self,
        request: Request<pb::GetVoucherRequest>,
    ) -> GrpcResult<pb::GetVoucherResponse> {
        let caller = Caller::of(&request);
        let voucher = self
            .accounts
            .voucher(&caller, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::GetVoucherResponse {
            voucher: Some(voucher_to_proto(voucher, None)),
        }))
    }

    async fn list_vouchers(
        &self,
        request: Request<pb::ListVouchersRequest>,
    ) -> GrpcResult<pb::ListVouchersResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = page(request.page_size, &request.page_token)?;
        let mut vouchers = self
            .accounts
            .vouchers(&caller, &request.tenant_id, &page)
            .await?;
        let next_page_token = page.finish(&mut vouchers, |voucher| voucher.id.as_str());
        Ok(Response::new(pb::ListVouchersResponse {
            vouchers: vouchers
                .into_iter()
                .map(|voucher| voucher_to_proto(voucher, None))
                .collect(),
            next_page_token,
        }))
    }

    async fn delete_voucher(
        &self,
        request: Request<pb::DeleteVoucherRequest>,
    ) -> GrpcResult<pb::DeleteVoucherResponse> {
        let caller = Caller::of(&request);
        self.accounts
            .retire_voucher(&caller, &request.into_inner().id)
            .await?;
        Ok(Response::new(pb::DeleteVoucherResponse {}))
    }

    async fn redeem_voucher(
        &self,
        request: Request<pb::RedeemVoucherRequest>,
    ) -> GrpcResult<pb::RedeemVoucherResponse> {
        let caller = Caller::of(&request);
        let credentials = ForwardedCredentials::from_metadata(request.metadata());
        let request = request.into_inner();
        let (redeemed, balance) = self
            .accounts
            .redeem(&caller, &request.code, &request.user_id, &credentials)
            .await?;
        let owner = owner_to_proto(
            OwnerKind::User,
            caller.user_id().unwrap_or(&request.user_id),
        );
        Ok(Response::new(pb::RedeemVoucherResponse {
            amount_micros: redeemed.entry.amount_micros,
            balance_micros: balance,
            entry: Some(entry_to_proto(
                redeemed.entry,
                &redeemed.voucher.tenant_id,
                owner,
                "voucher redeemed".to_owned(),
                String::new(),
                None,
            )),
        }))
    }

    async fn check(&self, request: Request<pb::CheckRequest>) -> GrpcResult<pb::CheckResponse> {
        Ok(Response::new(
            self.admissions.check(request.get_ref()).await?,
        ))
    }

    async fn commit(&self, request: Request<pb::CommitRequest>) -> GrpcResult<pb::CommitResponse> {
        Ok(Response::new(
            self.admissions.commit(request.get_ref()).await?,
        ))
    }

    async fn lease(&self, request: Request<pb::LeaseRequest>) -> GrpcResult<pb::LeaseResponse> {
        Ok(Response::new(
            self.admissions.lease(request.get_ref()).await?,
        ))
    }

    async fn release_lease(
        &self,
        request: Request<pb::ReleaseLeaseRequest>,
    ) -> GrpcResult<pb::ReleaseLeaseResponse> {
        Ok(Response::new(
            self.admissions.release_lease(request.get_ref()).await?,
        ))
    }

    async fn lease_balance(
        &self,
        request: Request<pb::LeaseBalanceRequest>,
    ) -> GrpcResult<pb::LeaseBalanceResponse> {
        Ok(Response::new(
            self.admissions.lease_balance(request.get_ref()).await?,
        ))
    }

    async fn release_balance_lease(
        &self,
        request: Request<pb::ReleaseBalanceLeaseRequest>,
    ) -> GrpcResult<pb::ReleaseBalanceLeaseResponse> {
        Ok(Response::new(
            self.admissions
                .release_balance_lease(request.get_ref())
                .await?,
        ))
    }

    async fn get_backend_status(
        &self,
        _request: Request<pb::GetBackendStatusRequest>,
    ) -> GrpcResult<pb::GetBackendStatusResponse> {
        let backend = self.limiter.backend();
        Ok(Response::new(pb::GetBackendStatusResponse {
            active_backend: match backend {
                Backend::Redis => pb::LimiterBackend::Redis,
                Backend::Memory | Backend::MemoryFallback => pb::LimiterBackend::Memory,
            }
            .into(),
            redis_configured: backend != Backend::Memory,
            redis_healthy: backend == Backend::Redis,
            since_time: None,
            detail: backend.as_str().to_owned(),
        }))
    }
}
