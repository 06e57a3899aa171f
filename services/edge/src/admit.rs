//! Stage: admit. Quota `Check` for every scope of the caller (key, client,
//! user, groups, tenant), or a local quota lease for keys whose only limits
//! count requests; with quota unreachable, the configured failure policy
//! (`fail_open` with the edge's floor, or `fail_closed`).

use std::sync::Arc;
use std::time::Duration;

use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use http::{Response, StatusCode};

use crate::auth::Caller;
use crate::body::EdgeBody;
use crate::config::QuotaFailure;
use crate::floor::Floor;
use crate::grpc::Authed;
use crate::leases::{FromLease, Leases};
use crate::problem::{Halt, Problem, halt};

/// How long the edge waits for quota before applying its failure policy.
const QUOTA_DEADLINE: Duration = Duration::from_millis(250);

/// What Commit must repeat; empty when there is nothing to settle.
#[derive(Debug, Default)]
pub struct Admitted {
    pub reservation_id: String,
    pub scopes: Vec<quota::Scope>,
    /// The balance that holds the estimate (AI requests), repeated at
    /// Commit.
    pub balance_owner: Option<quota::BalanceOwner>,
    /// An AI request admitted from the caller's budget lease: settled by
    /// the edge, no Commit.
    pub local: Option<crate::ai::budget::Ticket>,
}

fn scope(kind: quota::ScopeKind, id: &str, plan_id: &str) -> quota::Scope {
    quota::Scope {
        kind: kind.into(),
        id: id.to_owned(),
        plan_id: plan_id.to_owned(),
        spend_limit_micros: None,
    }
}

/// The quota scopes of a principal: its key (with plan and lifetime spend
/// cap), its client, its user, each group, and the tenant. With an
/// unregistered `X-Client-ID` value the key's plan counts per value, in a
/// client scope of its own; the key keeps its lifetime spend cap.
pub fn scopes(principal: &id::Principal, unregistered_client: Option<&str>) -> Vec<quota::Scope> {
    let key_plan = match unregistered_client {
        Some(_) => "",
        None => principal.plan_id.as_str(),
    };
    let mut scopes = vec![quota::Scope {
        spend_limit_micros: principal.spend_limit_micros,
        ..scope(quota::ScopeKind::Key, &principal.key_id, key_plan)
    }];
    if let Some(value) = unregistered_client {
        let id = format!("{}:{value}", principal.key_id);
        scopes.push(scope(quota::ScopeKind::Client, &id, &principal.plan_id));
    } else if let Some(client) = &principal.client {
        scopes.push(scope(quota::ScopeKind::Client, &client.id, &client.plan_id));
    }
    scopes.push(scope(quota::ScopeKind::User, &principal.user_id, ""));
    for group in &principal.groups {
        scopes.push(scope(quota::ScopeKind::Group, &group.id, ""));
    }
    scopes.push(scope(quota::ScopeKind::Tenant, &principal.tenant_id, ""));
    scopes
}

/// A caller without a key: its own client scope under the API's auth plan
/// (per client IP, token subject or basic user), then the tenant.
pub fn keyless_scopes(subject: &str, principal: &id::Principal) -> Vec<quota::Scope> {
    vec![
        scope(quota::ScopeKind::Client, subject, &principal.plan_id),
        scope(quota::ScopeKind::Tenant, &principal.tenant_id, ""),
    ]
}

/// What an AI request is expected to use.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub model: String,
    pub tokens: i64,
    pub cost_micros: i64,
    pub balance_owner: Option<quota::BalanceOwner>,
}

/// A refused Check: the answer to send, and for a refusal for money what
/// the caller could still spend.
pub struct Refused {
    pub halt: Halt,
    pub budget_micros: Option<i64>,
}

/// The least the caller can still spend, when money refused the request:
/// the balance left, or the remaining of an exhausted spend limit.
fn budget(answer: &quota::CheckResponse) -> Option<i64> {
    match answer.refusal_reason() {
        quota::RefusalReason::InsufficientBalance => answer.balance_micros,
        quota::RefusalReason::SpendLimit => answer
            .limits
            .iter()
            .filter(|limit| limit.exceeded && limit.dimension() == quota::LimitDimension::Spend)
            .map(|limit| limit.remaining)
            .min(),
        _ => None,
    }
}

/// The 429/402 for a refused Check.
fn refused(answer: &quota::CheckResponse, request_id: &str) -> Response<EdgeBody> {
    let mut response = crate::ratelimit::refusal(answer, request_id).into_edge_response();
    crate::ratelimit::headers(answer, response.headers_mut());
    response
}

pub struct Admission {
    pub quota: QuotaServiceClient<Authed>,
    pub leases: Arc<Leases>,
    /// AI callers' budget leases.
    pub budgets: Arc<crate::ai::budget::Budgets>,
    floor: Floor,
    failure: QuotaFailure,
    floor_per_minute: u64,
    /// Taken once: a labelled `counter!` per request allocates its key.
    admitted_by_lease: metrics::Counter,
}

impl Admission {
    pub fn new(
        quota: QuotaServiceClient<Authed>,
        failure: QuotaFailure,
        floor_per_minute: u64,
    ) -> Self {
        Self {
            leases: Arc::new(Leases::new(quota.clone())),
            budgets: {
                let budgets = Arc::new(crate::ai::budget::Budgets::new(quota.clone()));
                budgets.sweep_in_background();
                budgets
            },
            quota,
            floor: Floor::new(floor_per_minute),
            failure,
            floor_per_minute,
            admitted_by_lease: metrics::counter!("edge_admitted_total", "by" => "lease"),
        }
    }

    /// Admits the caller's request or answers why not. A key holding a
    /// lease is admitted without building its scopes.
    pub async fn admit(&self, caller: &Caller, request_id: &str) -> Result<Admitted, Halt> {
        let principal = &caller.principal;
        let unregistered = caller.unregistered_client.as_deref();
        let client = match unregistered {
            Some(value) => value,
            None => principal
                .client
                .as_ref()
                .map_or("", |client| client.id.as_str()),
        };
        let lease_key = match &caller.subject {
            Some(subject) => subject.clone(),
            None => format!("{}|{client}", principal.key_id),
        };
        let from_lease = self.leases.try_admit(&lease_key);
        if from_lease == FromLease::Admitted {
            self.admitted_by_lease.increment(1);
            return Ok(Admitted::default());
        }
        let scopes = match &caller.subject {
            Some(subject) => keyless_scopes(subject, principal),
            None => scopes(principal, unregistered),
        };
        let request = quota::CheckRequest {
            request_id: request_id.to_owned(),
            tenant_id: principal.tenant_id.clone(),
            scopes: scopes.clone(),
            ..quota::CheckRequest::default()
        };
        let answer =
            match tokio::time::timeout(QUOTA_DEADLINE, self.quota.clone().check(request)).await {
                Ok(Ok(answer)) => answer.into_inner(),
                Ok(Err(_)) | Err(_) if self.admitted_by_held_lease(from_lease, &lease_key) => {
                    return Ok(Admitted::default());
                }
                Ok(Err(_)) | Err(_) => return self.unreachable(&lease_key, request_id),
            };
        if !answer.allowed {
            if self.admitted_by_held_lease(from_lease, &lease_key) {
                return Ok(Admitted::default());
            }
            metrics::counter!("edge_refused_total", "reason" => "quota").increment(1);
            return Err(Box::new(refused(&answer, request_id)));
        }
        metrics::counter!("edge_admitted_total", "by" => "check").increment(1);
        self.leases
            .maybe_renew(&lease_key, &principal.tenant_id, &scopes, &answer);
        // Nothing to settle: skip Commit (a call per request).
        Ok(if answer.commit_required {
            Admitted {
                reservation_id: answer.reservation_id,
                scopes,
                balance_owner: None,
                local: None,
            }
        } else {
            Admitted::default()
        })
    }

    /// The request sent to quota to renew its key's lease ahead, when quota
    /// refused it or did not answer: quota cannot see what the lease still
    /// holds, so the lease admits it if it can.
    fn admitted_by_held_lease(&self, from_lease: FromLease, key: &str) -> bool {
        let admitted =
            from_lease == FromLease::CheckFirst && self.leases.admit_refused_prefetch(key);
        if admitted {
            self.admitted_by_lease.increment(1);
        }
        admitted
    }

    /// An AI request: from the caller's budget lease when it holds one
    /// with room for the whole estimate, else a `Check` reserving the
    /// estimate on every scope and holding it on the paying balance (and
    /// then, if the caller qualifies, a budget taken for the next ones). A
    /// refusal for money says how much the caller could still spend, so
    /// the request can be made to fit.
    pub async fn admit_estimate(
        &self,
        caller: &Caller,
        estimate: &Estimate,
        request_id: &str,
    ) -> Result<Admitted, Refused> {
        let principal = &caller.principal;
        let scopes = scopes(principal, caller.unregistered_client.as_deref());
        let budget_key = format!("{}|{}", principal.key_id, estimate.model);
        let (tokens, cost) = (estimate.tokens, estimate.cost_micros);
        if let Some(ticket) = self.budgets.try_admit(&budget_key, tokens, cost) {
            return Ok(Admitted {
                reservation_id: String::new(),
                scopes,
                balance_owner: estimate.balance_owner.clone(),
                local: Some(ticket),
            });
        }
        let request = quota::CheckRequest {
            request_id: request_id.to_owned(),
            tenant_id: principal.tenant_id.clone(),
            scopes: scopes.clone(),
            model: estimate.model.clone(),
            estimated_tokens: estimate.tokens,
            estimated_cost_micros: estimate.cost_micros,
            balance_owner: estimate.balance_owner.clone(),
            reservation_ttl: None,
        };
        let answer = self.check_money(request, request_id).await?;
        if answer.allowed {
            metrics::counter!("edge_admitted_total", "by" => "check").increment(1);
            let caller = crate::ai::budget::Caller {
                key: &budget_key,
                tenant_id: &principal.tenant_id,
                scopes: &scopes,
                balance_owner: estimate.balance_owner.as_ref(),
            };
            self.budgets.maybe_renew(&caller, &answer, (tokens, cost));
            return Ok(Admitted {
                reservation_id: answer.reservation_id,
                scopes,
                balance_owner: estimate.balance_owner.clone(),
                local: None,
            });
        }
        metrics::counter!("edge_refused_total", "reason" => "quota").increment(1);
        Err(Refused {
            budget_micros: budget(&answer),
            halt: Box::new(refused(&answer, request_id)),
        })
    }

    /// An AI request's `Check`. Money is never served on the floor:
    /// without quota, refuse.
    async fn check_money(
        &self,
        request: quota::CheckRequest,
        request_id: &str,
    ) -> Result<quota::CheckResponse, Refused> {
        match tokio::time::timeout(QUOTA_DEADLINE, self.quota.clone().check(request)).await {
            Ok(Ok(answer)) => Ok(answer.into_inner()),
            Ok(Err(_)) | Err(_) => Err(Refused {
                halt: halt(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "limits and balances cannot be checked right now",
                    request_id,
                ),
                budget_micros: None,
            }),
        }
    }

    /// Quota did not answer: the failure policy decides.
    fn unreachable(&self, key_id: &str, request_id: &str) -> Result<Admitted, Halt> {
        match self.failure {
            QuotaFailure::FailClosed => Err(halt(
                StatusCode::SERVICE_UNAVAILABLE,
                "rate limiting is temporarily unavailable",
                request_id,
            )),
            QuotaFailure::FailOpen => {
                metrics::counter!("edge_quota_fail_open_total").increment(1);
                if self.floor.admit(key_id) {
                    return Ok(Admitted::default());
                }
                Err(Box::new(
                    Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "Rate limit exceeded: the edge's fallback limit of {} requests per minute per key",
                            self.floor_per_minute
                        ),
                        request_id,
                    )
                    .into_edge_response(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal() -> id::Principal {
        id::Principal {
            key_id: "k1".to_owned(),
            plan_id: "p1".to_owned(),
            user_id: "u1".to_owned(),
            tenant_id: "t1".to_owned(),
            spend_limit_micros: Some(5),
            ..id::Principal::default()
        }
    }

    #[test]
    fn an_unregistered_client_id_counts_the_keys_plan_per_value() {
        let plain = scopes(&principal(), None);
        assert_eq!(plain[0].plan_id, "p1");
        assert_eq!(plain.len(), 3, "key, user, tenant");
        let per_client = scopes(&principal(), Some("app-a"));
        assert_eq!(
            per_client[0].plan_id, "",
            "the key scope keeps only its spend cap"
        );
        assert_eq!(per_client[0].spend_limit_micros, Some(5));
        assert_eq!(per_client[1].kind(), quota::ScopeKind::Client);
        assert_eq!(per_client[1].id, "k1:app-a");
        assert_eq!(per_client[1].plan_id, "p1");
    }
}
