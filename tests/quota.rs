//! Quota's balances and vouchers through the whole suite: owners are
//! resolved with identity, tenants are isolated both ways, and a voucher
//! redeemed concurrently credits once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use gateway_e2e::{Backend, Credentials, TestSuite, eventually};
use gateway_proto::quota::v1 as pb;
use tonic::Code;

fn user(id: &str) -> Option<pb::BalanceOwner> {
    Some(pb::BalanceOwner {
        kind: pb::BalanceOwnerKind::User.into(),
        id: id.to_owned(),
    })
}

fn adjust(id: &str, amount_micros: i64, key: &str) -> pb::AdjustBalanceRequest {
    pb::AdjustBalanceRequest {
        owner: user(id),
        amount_micros,
        reason: "top-up".to_owned(),
        idempotency_key: key.to_owned(),
    }
}

async fn balances_are_adjusted_once_per_key_and_isolated_by_tenant(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    let mut admin = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    let mut user_client = suite.quota_as(Credentials::bearer(&acme.user_token)).await;

    let first = eventually(|| {
        let mut admin = admin.clone();
        let request = adjust(&acme.user_id, 5_000_000, "invoice-1");
        async move { admin.adjust_balance(request).await }
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(first.balance_micros, 5_000_000);
    let replay = admin
        .adjust_balance(adjust(&acme.user_id, 5_000_000, "invoice-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        replay.balance_micros, 5_000_000,
        "the same idempotency key applies once"
    );
    let overdraw = admin
        .adjust_balance(adjust(&acme.user_id, -6_000_000, ""))
        .await
        .unwrap_err();
    assert_eq!(overdraw.code(), Code::FailedPrecondition);
    admin
        .adjust_balance(adjust(&acme.user_id, -1_000_000, ""))
        .await
        .unwrap();

    let own = user_client
        .get_balance(pb::GetBalanceRequest {
            owner: user(&acme.user_id),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.balance_micros, 4_000_000);
    let ledger = user_client
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            owner: user(&acme.user_id),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let amounts: Vec<i64> = ledger.iter().map(|entry| entry.amount_micros).collect();
    assert_eq!(amounts, [-1_000_000, 5_000_000], "newest first");

    // A user sees only their own balance; an admin nothing of another tenant.
    let peer = user_client
        .get_balance(pb::GetBalanceRequest {
            owner: user(&acme.admin_id),
        })
        .await
        .unwrap_err();
    assert_eq!(peer.code(), Code::NotFound);
    assert_eq!(
        user_client
            .adjust_balance(adjust(&acme.user_id, 1, ""))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let mut other_admin = suite
        .quota_as(Credentials::bearer(&globex.admin_token))
        .await;
    for (client, target) in [
        (&mut admin, &globex.user_id),
        (&mut other_admin, &acme.user_id),
    ] {
        assert_eq!(
            client
                .get_balance(pb::GetBalanceRequest {
                    owner: user(target)
                })
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        assert_eq!(
            client
                .adjust_balance(adjust(target, 1, ""))
                .await
                .unwrap_err()
                .code(),
            Code::NotFound
        );
        let ledger = client
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                owner: user(target),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(ledger.code(), Code::NotFound);
    }
    let status = user_client
        .get_backend_status(pb::GetBackendStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let expected = if suite.config.quota.redis_url.is_empty() {
        pb::LimiterBackend::Memory
    } else {
        pb::LimiterBackend::Redis
    };
    assert_eq!(status.active_backend(), expected);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_are_adjusted_once_per_key_and_isolated_by_tenant_on_sqlite() {
    balances_are_adjusted_once_per_key_and_isolated_by_tenant(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn balances_are_adjusted_once_per_key_and_isolated_by_tenant_on_postgres() {
    balances_are_adjusted_once_per_key_and_isolated_by_tenant(Backend::Postgres).await;
}

async fn vouchers_credit_once_and_stay_in_their_tenant(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    let admin = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    let create = pb::CreateVoucherRequest {
        voucher: Some(pb::Voucher {
            amount_micros: 2_000_000,
            max_uses: 5,
            ..Default::default()
        }),
    };
    let created = eventually(|| {
        let mut admin = admin.clone();
        let create = create.clone();
        async move { admin.create_voucher(create).await }
    })
    .await
    .unwrap()
    .into_inner()
    .voucher
    .unwrap();
    let code = created.code.clone();
    assert_eq!(code.len(), 24);
    let mut admin = admin;
    let listed = admin
        .list_vouchers(pb::ListVouchersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .vouchers;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].code,
        code[20..],
        "reads show only the last four characters"
    );

    // Ten concurrent redemptions by one user credit once.
    let mut attempts = Vec::new();
    for _ in 0..10 {
        let mut client = suite.quota_as(Credentials::bearer(&acme.user_token)).await;
        let code = code.clone();
        attempts.push(tokio::spawn(async move {
            client
                .redeem_voucher(pb::RedeemVoucherRequest {
                    code,
                    user_id: String::new(),
                })
                .await
        }));
    }
    let mut credited = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(response) => {
                credited += 1;
                assert_eq!(response.into_inner().balance_micros, 2_000_000);
            }
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(credited, 1);

    // Another tenant's user cannot redeem it, nor its admin see it.
    let mut outsider = suite
        .quota_as(Credentials::bearer(&globex.user_token))
        .await;
    let refused = eventually(|| {
        let mut outsider = outsider.clone();
        let code = code.clone();
        async move {
            outsider
                .redeem_voucher(pb::RedeemVoucherRequest {
                    code,
                    user_id: String::new(),
                })
                .await
        }
    })
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let mut other_admin = suite
        .quota_as(Credentials::bearer(&globex.admin_token))
        .await;
    assert_eq!(
        other_admin
            .get_voucher(pb::GetVoucherRequest {
                id: created.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other_admin
            .delete_voucher(pb::DeleteVoucherRequest {
                id: created.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(
        other_admin
            .list_vouchers(pb::ListVouchersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .vouchers
            .is_empty()
    );
    let _ = &mut outsider;

    // Retired: nobody else can redeem it; what was credited stays.
    admin
        .delete_voucher(pb::DeleteVoucherRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    let mut admin_as_redeemer = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    let late = admin_as_redeemer
        .redeem_voucher(pb::RedeemVoucherRequest {
            code: code.clone(),
            user_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    let balance = admin
        .get_balance(pb::GetBalanceRequest {
            owner: user(&acme.user_id),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(balance.balance_micros, 2_000_000);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_credit_once_and_stay_in_their_tenant_on_sqlite() {
    vouchers_credit_once_and_stay_in_their_tenant(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vouchers_credit_once_and_stay_in_their_tenant_on_postgres() {
    vouchers_credit_once_and_stay_in_their_tenant(Backend::Postgres).await;
}

#[test]
fn every_quota_rpc_has_an_access_rule() {
    let names = gateway_proto::rpc_names("QuotaService");
    assert!(!names.is_empty());
    for name in &names {
        assert!(
            gateway_quota::access_policy(name).is_some(),
            "{name} has no access rule"
        );
    }
}

async fn group(suite: &TestSuite, tenant_id: &str, name: &str) -> String {
    use gateway_proto::identity::v1 as id;
    suite
        .identity_as(Credentials::admin_key())
        .await
        .create_group(id::CreateGroupRequest {
            group: Some(id::Group {
                tenant_id: tenant_id.to_owned(),
                name: name.to_owned(),
                priority: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .group
        .unwrap()
        .id
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

async fn plans_and_rules_are_validated_managed_by_admins_and_isolated(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    let acme_group = group(&suite, &acme.id, "vip").await;
    let globex_group = group(&suite, &globex.id, "vip").await;
    let admin = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    let starter = pb::Plan {
        name: "starter".to_owned(),
        requests_per_minute: Some(5),
        requests_per_month: Some(100),
        ..Default::default()
    };
    let plan = eventually(|| {
        let mut admin = admin.clone();
        let plan = starter.clone();
        async move {
            admin
                .create_plan(pb::CreatePlanRequest { plan: Some(plan) })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .plan
    .unwrap();
    let mut admin = admin;
    assert_eq!(
        (plan.tenant_id.as_str(), plan.requests_per_minute),
        (acme.id.as_str(), Some(5))
    );
    assert_eq!(
        admin
            .create_plan(pb::CreatePlanRequest {
                plan: Some(starter.clone())
            })
            .await
            .unwrap_err()
            .code(),
        Code::FailedPrecondition
    );
    let zero = pb::Plan {
        name: "zero".to_owned(),
        tokens_per_day: Some(0),
        ..Default::default()
    };
    let status = admin
        .create_plan(pb::CreatePlanRequest { plan: Some(zero) })
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("plan.tokens_per_day:"),
        "{}",
        status.message()
    );
    let raised = admin
        .update_plan(pb::UpdatePlanRequest {
            plan: Some(pb::Plan {
                id: plan.id.clone(),
                requests_per_minute: Some(50),
                requests_per_month: None,
                ..Default::default()
            }),
            update_mask: mask(&["requests_per_minute", "requests_per_month"]),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(
        (
            raised.requests_per_minute,
            raised.requests_per_month,
            raised.name.as_str()
        ),
        (Some(50), None, "starter")
    );

    let rule = |group_id: &str| pb::RateLimitRule {
        group_id: group_id.to_owned(),
        name: "team tokens".to_owned(),
        dimension: pb::LimitDimension::Tokens.into(),
        window: pb::LimitWindow::Day.into(),
        limit: 1_000_000,
        enabled: true,
        ..Default::default()
    };
    let created = admin
        .create_rate_limit_rule(pb::CreateRateLimitRuleRequest {
            rate_limit_rule: Some(rule(&acme_group)),
        })
        .await
        .unwrap()
        .into_inner()
        .rate_limit_rule
        .unwrap();
    let foreign = admin
        .create_rate_limit_rule(pb::CreateRateLimitRuleRequest {
            rate_limit_rule: Some(rule(&globex_group)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        foreign.code(),
        Code::InvalidArgument,
        "another tenant's group is unknown here"
    );
    let lifetime = pb::RateLimitRule {
        window: pb::LimitWindow::Lifetime.into(),
        ..rule(&acme_group)
    };
    let status = admin
        .create_rate_limit_rule(pb::CreateRateLimitRuleRequest {
            rate_limit_rule: Some(lifetime),
        })
        .await
        .unwrap_err();
    assert!(status.message().starts_with("rate_limit_rule.window:"));
    let listed = admin
        .list_rate_limit_rules(pb::ListRateLimitRulesRequest {
            group_id: acme_group.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rate_limit_rules;
    assert_eq!(listed.len(), 1);

    // Users read their tenant's plans and rules; they cannot change them.
    let mut user = suite.quota_as(Credentials::bearer(&acme.user_token)).await;
    assert_eq!(
        user.list_plans(pb::ListPlansRequest::default())
            .await
            .unwrap()
            .into_inner()
            .plans
            .len(),
        1
    );
    assert_eq!(
        user.delete_plan(pb::DeletePlanRequest {
            id: plan.id.clone()
        })
        .await
        .unwrap_err()
        .code(),
        Code::PermissionDenied
    );

    // The other tenant sees and changes nothing of this one, and back.
    let mut other = suite
        .quota_as(Credentials::bearer(&globex.admin_token))
        .await;
    assert_eq!(
        other
            .get_plan(pb::GetPlanRequest {
                id: plan.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other
            .delete_plan(pb::DeletePlanRequest {
                id: plan.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other
            .get_rate_limit_rule(pb::GetRateLimitRuleRequest {
                id: created.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        other
            .update_rate_limit_rule(pb::UpdateRateLimitRuleRequest {
                rate_limit_rule: Some(pb::RateLimitRule {
                    id: created.id.clone(),
                    limit: 1,
                    ..Default::default()
                }),
                update_mask: mask(&["limit"]),
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(
        other
            .list_plans(pb::ListPlansRequest::default())
            .await
            .unwrap()
            .into_inner()
            .plans
            .is_empty()
    );
    assert_eq!(
        other
            .list_plans(pb::ListPlansRequest {
                tenant_id: acme.id.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let theirs = other
        .create_plan(pb::CreatePlanRequest {
            plan: Some(pb::Plan {
                name: "theirs".to_owned(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap();
    assert_eq!(
        admin
            .get_plan(pb::GetPlanRequest {
                id: theirs.id.clone()
            })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert_eq!(
        admin
            .delete_plan(pb::DeletePlanRequest { id: theirs.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );

    admin
        .delete_rate_limit_rule(pb::DeleteRateLimitRuleRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap();
    admin
        .delete_plan(pb::DeletePlanRequest {
            id: plan.id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        admin
            .get_plan(pb::GetPlanRequest { id: plan.id })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_rules_are_validated_managed_by_admins_and_isolated_on_sqlite() {
    plans_and_rules_are_validated_managed_by_admins_and_isolated(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_and_rules_are_validated_managed_by_admins_and_isolated_on_postgres() {
    plans_and_rules_are_validated_managed_by_admins_and_isolated(Backend::Postgres).await;
}

fn key_scope(key_id: &str, plan_id: &str) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Key.into(),
        id: key_id.to_owned(),
        plan_id: plan_id.to_owned(),
        spend_limit_micros: None,
    }
}

/// What the edge does per request: Check, then Commit, with the admin key;
/// tenant admins cannot; plan changes apply at once; balances hold and
/// debit once.
async fn quota_checks_and_commits_over_grpc_with_the_edges_credential(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let redis_configured = !suite.config.quota.redis_url.is_empty();
    let acme = suite.tenant("acme").await;
    let admin = suite.quota_as(Credentials::bearer(&acme.admin_token)).await;
    let plan = eventually(|| {
        let mut admin = admin.clone();
        async move {
            admin
                .create_plan(pb::CreatePlanRequest {
                    plan: Some(pb::Plan {
                        name: "three".to_owned(),
                        requests_per_minute: Some(3),
                        ..Default::default()
                    }),
                })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .plan
    .unwrap();
    let mut admin = admin;
    let mut edge = suite.quota_as(Credentials::admin_key()).await;
    let request = |cost: i64| pb::CheckRequest {
        request_id: "e2e".to_owned(),
        tenant_id: acme.id.clone(),
        scopes: vec![key_scope("key-1", &plan.id)],
        estimated_cost_micros: cost,
        ..Default::default()
    };
    assert_eq!(
        admin.check(request(0)).await.unwrap_err().code(),
        Code::PermissionDenied,
        "only the edge (superadmin) checks"
    );
    let expected_backend = if redis_configured {
        pb::LimiterBackend::Redis
    } else {
        pb::LimiterBackend::Memory
    };
    for _ in 0..3 {
        let answer = edge.check(request(0)).await.unwrap().into_inner();
        assert!(answer.allowed);
        assert_eq!(answer.backend(), expected_backend);
    }
    let refused = edge.check(request(0)).await.unwrap().into_inner();
    assert!(!refused.allowed);
    assert_eq!(refused.refusal_reason(), pb::RefusalReason::RateLimited);
    assert_eq!(refused.limits[0].name, "requests per minute");
    assert!(refused.retry_after.is_some());

    // Raising the plan applies to the very next Check.
    admin
        .update_plan(pb::UpdatePlanRequest {
            plan: Some(pb::Plan {
                id: plan.id.clone(),
                requests_per_minute: Some(10),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["requests_per_minute".to_owned()],
            }),
        })
        .await
        .unwrap();
    assert!(edge.check(request(0)).await.unwrap().into_inner().allowed);

    // A balance pays: the estimate is held, Commit debits the actual cost.
    admin
        .adjust_balance(adjust(&acme.user_id, 1_000_000, "top-up-1"))
        .await
        .unwrap();
    let mut paid = request(400_000);
    paid.balance_owner = user(&acme.user_id);
    let held = edge.check(paid.clone()).await.unwrap().into_inner();
    assert!(held.allowed);
    assert_eq!(held.balance_micros, Some(600_000));
    let mut user_client = suite.quota_as(Credentials::bearer(&acme.user_token)).await;
    let balance = user_client
        .get_balance(pb::GetBalanceRequest {
            owner: user(&acme.user_id),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (balance.balance_micros, balance.reserved_micros),
        (1_000_000, 400_000)
    );
    let settle = pb::CommitRequest {
        reservation_id: held.reservation_id.clone(),
        outcome: pb::CommitOutcome::Success.into(),
        prompt_tokens: 10,
        completion_tokens: 20,
        cost_micros: 250_000,
        tenant_id: acme.id.clone(),
        scopes: paid.scopes.clone(),
        balance_owner: user(&acme.user_id),
        ..Default::default()
    };
    let committed = edge.commit(settle.clone()).await.unwrap().into_inner();
    assert_eq!(committed.balance_micros, Some(750_000));
    let replay = edge.commit(settle).await.unwrap().into_inner();
    assert!(replay.already_committed || replay.balance_micros == Some(750_000));
    let ledger = user_client
        .list_ledger_entries(pb::ListLedgerEntriesRequest {
            owner: user(&acme.user_id),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(ledger[0].kind(), pb::LedgerEntryKind::Usage);
    assert_eq!(ledger[0].amount_micros, -250_000);
    assert_eq!(ledger[0].reference_id, held.reservation_id);
    let balance = user_client
        .get_balance(pb::GetBalanceRequest {
            owner: user(&acme.user_id),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (balance.balance_micros, balance.reserved_micros),
        (750_000, 0)
    );

    let mut too_much = request(900_000);
    too_much.balance_owner = user(&acme.user_id);
    let refused = edge.check(too_much).await.unwrap().into_inner();
    assert_eq!(
        refused.refusal_reason(),
        pb::RefusalReason::InsufficientBalance
    );
    let bad = edge
        .commit(pb::CommitRequest {
            reservation_id: "bogus".to_owned(),
            tenant_id: acme.id.clone(),
            outcome: pb::CommitOutcome::Success.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // With Redis configured, its health has a name of its own.
    if redis_configured {
        let mut health = tonic_health::pb::health_client::HealthClient::new(
            suite.channel(suite.addresses.quota).await,
        );
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: gateway_quota::REDIS_HEALTH_NAME.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_checks_and_commits_over_grpc_with_the_edges_credential_on_sqlite() {
    quota_checks_and_commits_over_grpc_with_the_edges_credential(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_checks_and_commits_over_grpc_with_the_edges_credential_on_postgres_and_redis() {
    quota_checks_and_commits_over_grpc_with_the_edges_credential(Backend::Postgres).await;
}
