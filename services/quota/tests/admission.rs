//! Check, Commit, Lease and ReleaseLease against real stores: SQLite and
//! PostgreSQL for balances, memory and Redis for counters, with a paused
//! clock where time matters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_proto::quota::v1 as pb;
use gateway_quota::admission::{Admissions, Clock, Settings};
use gateway_quota::limiter::Limiter;
use gateway_quota::limiter::redis::RedisLimiter;
use gateway_quota::resolve::LimitsCache;
use gateway_quota::store::limits::{LimitConfig, PLAN, RULE};
use gateway_quota::store::{NewEntry, Owner, OwnerKind, QuotaStore};
use gateway_storage::{ConnectOptions, Database};
use gateway_testkit::{TestDatabase, test_on_every_backend};
use prost::Message as _;
use tokio::task::JoinSet;

const SECOND: i64 = 1_000_000;
/// 2026-11-22T06:00:00Z, a minute boundary.
const T0: i64 = 1_795_327_200 * SECOND;
const TENANT: &str = "tenant-a";

async fn store(db: &TestDatabase) -> QuotaStore {
    let options = ConnectOptions {
        max_connections: 8,
        ..ConnectOptions::default()
    };
    let database = Database::connect(db.url(), &options).await.unwrap();
    database
        .migrate(&gateway_quota::store::MIGRATIONS)
        .await
        .unwrap();
    QuotaStore::new(database)
}

fn redis_url() -> Option<String> {
    gateway_testkit::server_url(gateway_testkit::REDIS_URL_ENV)
}

/// A Redis limiter with a generous timeout: these tests are about counting,
/// not latency, so load must not divert them to the fallback.
fn redis_limiter(url: &str, prefix: &str) -> Limiter {
    Limiter::with_redis(
        RedisLimiter::new(url, prefix, Duration::from_secs(5)).unwrap(),
        Duration::from_millis(200),
    )
}

fn prefix() -> String {
    format!("gwtest-{}", uuid::Uuid::now_v7().simple())
}

/// One quota replica's admission side.
struct Service {
    admissions: Arc<Admissions>,
    limits: Arc<LimitsCache>,
}

async fn service(store: &QuotaStore, limiter: Limiter, clock: &Clock) -> Service {
    let limits = LimitsCache::load(store.clone()).await.unwrap();
    let admissions = Arc::new(
        Admissions::new(
            Arc::clone(&limits),
            Arc::new(limiter),
            store.clone(),
            Settings::default(),
        )
        .with_clock(clock.clone()),
    );
    Service { admissions, limits }
}

async fn insert_plan(store: &QuotaStore, plan: pb::Plan) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert_limit_config(&LimitConfig {
            kind: PLAN,
            id: id.clone(),
            tenant_id: TENANT.to_owned(),
            unique_key: id.clone(),
            group_id: String::new(),
            spec: plan.encode_to_vec(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    id
}

async fn insert_rule(store: &QuotaStore, tenant_id: &str, rule: pb::RateLimitRule) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert_limit_config(&LimitConfig {
            kind: RULE,
            id: id.clone(),
            tenant_id: tenant_id.to_owned(),
            unique_key: id.clone(),
            group_id: rule.group_id.clone(),
            spec: rule.encode_to_vec(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    id
}

fn key_scope(key_id: &str, plan_id: &str) -> pb::Scope {
    pb::Scope {
        kind: pb::ScopeKind::Key.into(),
        id: key_id.to_owned(),
        plan_id: plan_id.to_owned(),
        spend_limit_micros: None,
    }
}

fn check(scopes: Vec<pb::Scope>, tokens: i64, cost: i64) -> pb::CheckRequest {
    pb::CheckRequest {
        request_id: "req".to_owned(),
        tenant_id: TENANT.to_owned(),
        scopes,
        model: String::new(),
        estimated_tokens: tokens,
        estimated_cost_micros: cost,
        balance_owner: None,
        reservation_ttl: None,
    }
}

fn commit(
    reservation_id: &str,
    scopes: Vec<pb::Scope>,
    success: bool,
    tokens: i64,
    cost: i64,
) -> pb::CommitRequest {
    pb::CommitRequest {
        reservation_id: reservation_id.to_owned(),
        outcome: if success {
            pb::CommitOutcome::Success
        } else {
            pb::CommitOutcome::Failure
        }
        .into(),
        prompt_tokens: tokens,
        completion_tokens: 0,
        cached_tokens: 0,
        cost_micros: cost,
        tenant_id: TENANT.to_owned(),
        scopes,
        balance_owner: None,
    }
}

fn user_owner(id: &str) -> pb::BalanceOwner {
    pb::BalanceOwner {
        kind: pb::BalanceOwnerKind::User.into(),
        id: id.to_owned(),
    }
}

async fn credit(store: &QuotaStore, user_id: &str, amount: i64) {
    store
        .append(
            &Owner {
                tenant_id: TENANT.to_owned(),
                kind: OwnerKind::User,
                id: user_id.to_owned(),
            },
            &NewEntry {
                kind: "ADJUSTMENT",
                amount_micros: amount,
                reason: "test credit",
                reference_id: "",
                actor_user_id: "admin",
                forbid_negative: false,
            },
        )
        .await
        .unwrap();
}

async fn balance(store: &QuotaStore, user_id: &str) -> i64 {
    store
        .balance(&Owner {
            tenant_id: TENANT.to_owned(),
            kind: OwnerKind::User,
            id: user_id.to_owned(),
        })
        .await
        .unwrap()
}

/// Behaviour every limiter backend must share, at a paused clock.
async fn checks_and_commits_count_exactly(service: &Service, store: &QuotaStore, clock: &Clock) {
    // Five requests per minute: the sixth is refused with the limit named.
    let plan = insert_plan(
        store,
        pb::Plan {
            name: "five".to_owned(),
            requests_per_minute: Some(5),
            tokens_per_minute: Some(1_000),
            max_concurrency: Some(3),
            ..pb::Plan::default()
        },
    )
    .await;
    service.limits.refresh().await.unwrap();
    let admissions = &service.admissions;
    let scopes = vec![key_scope("k1", &plan)];
    let mut reservations = Vec::new();
    for _ in 0..3 {
        let admitted = admissions
            .check(&check(scopes.clone(), 100, 0))
            .await
            .unwrap();
        assert!(admitted.allowed, "{admitted:?}");
        reservations.push(admitted.reservation_id);
    }
    // Three in flight: the concurrency limit refuses a fourth.
    let busy = admissions
        .check(&check(scopes.clone(), 100, 0))
        .await
        .unwrap();
    assert!(!busy.allowed);
    assert_eq!(busy.refusal_reason(), pb::RefusalReason::Concurrency);
    assert_eq!(busy.limits[0].name, "concurrent requests");
    // Settling frees the slot and returns unused tokens; twice is a no-op.
    let settled = admissions
        .commit(&commit(&reservations[0], scopes.clone(), true, 40, 0))
        .await
        .unwrap();
    assert!(!settled.already_committed && !settled.reservation_expired);
    let again = admissions
        .commit(&commit(&reservations[0], scopes.clone(), true, 40, 0))
        .await
        .unwrap();
    assert!(again.already_committed);
    for id in &reservations[1..] {
        admissions
            .commit(&commit(id, scopes.clone(), false, 0, 0))
            .await
            .unwrap();
    }
    // 3 requests and 40 tokens counted.
    let fourth = admissions
        .check(&check(scopes.clone(), 960, 0))
        .await
        .unwrap();
    assert!(fourth.allowed, "{fourth:?}");
    let tokens = fourth
        .limits
        .iter()
        .find(|status| status.dimension() == pb::LimitDimension::Tokens)
        .unwrap();
    assert_eq!(tokens.remaining, 0);
    let requests = fourth
        .limits
        .iter()
        .find(|status| status.name == "requests per minute")
        .unwrap();
    assert_eq!((requests.limit, requests.remaining), (5, 1));
    admissions
        .commit(&commit(&fourth.reservation_id, scopes.clone(), false, 0, 0))
        .await
        .unwrap();
    assert!(
        admissions
            .check(&check(scopes.clone(), 0, 0))
            .await
            .unwrap()
            .allowed
    );
    let refused = admissions
        .check(&check(scopes.clone(), 0, 0))
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.refusal_reason(), pb::RefusalReason::RateLimited);
    assert!(refused.reservation_id.is_empty());
    let first = &refused.limits[0];
    assert!(first.exceeded);
    assert_eq!(first.name, "requests per minute");
    assert_eq!(first.remaining, 0);
    assert!(first.reset_time.is_some());
    let wait = refused.retry_after.unwrap();
    assert!(wait.seconds > 0 && wait.seconds <= 60, "{wait:?}");
    // A minute later the window has moved on.
    clock.advance(Duration::from_secs(120));
    assert!(
        admissions
            .check(&check(scopes, 0, 0))
            .await
            .unwrap()
            .allowed
    );
}

fn lease_balance(owner: &str, requested: i64) -> pb::LeaseBalanceRequest {
    pb::LeaseBalanceRequest {
        edge_id: "edge-1".to_owned(),
        tenant_id: TENANT.to_owned(),
        balance_owner: Some(user_owner(owner)),
        requested_micros: requested,
        ttl: None,
    }
}

fn release_balance(lease_id: &str, used: i64) -> pb::ReleaseBalanceLeaseRequest {
    pb::ReleaseBalanceLeaseRequest {
        lease_id: lease_id.to_owned(),
        used_micros: used,
    }
}

/// A balance lease holds a tenth of what is available, keeps Checks off
/// it, and its release debits what was used once; an unreleased lease
/// lapses, and a late release still debits.
async fn balance_leases_hold_and_debit_once(store: &QuotaStore, clock: &Clock) {
    let admissions = service(store, Limiter::memory(), clock).await.admissions;
    credit(store, "u1", 1_000_000).await;
    let lease = admissions
        .lease_balance(&lease_balance("u1", 500_000))
        .await
        .unwrap();
    assert_eq!(
        lease.granted_micros, 100_000,
        "a tenth of what is available"
    );
    let mut spend_all = check(Vec::new(), 0, 950_000);
    spend_all.balance_owner = Some(user_owner("u1"));
    assert!(
        !admissions.check(&spend_all).await.unwrap().allowed,
        "the lease is held"
    );
    let released = admissions
        .release_balance_lease(&release_balance(&lease.lease_id, 30_000))
        .await
        .unwrap();
    assert_eq!(released.balance_micros, 970_000);
    let again = admissions
        .release_balance_lease(&release_balance(&lease.lease_id, 30_000))
        .await
        .unwrap();
    assert_eq!(again.balance_micros, 970_000, "released once");
    assert_eq!(balance(store, "u1").await, 970_000);

    // Never released: the hold lapses, a late release still debits.
    let lapsed = admissions
        .lease_balance(&lease_balance("u1", 50_000))
        .await
        .unwrap();
    assert_eq!(lapsed.granted_micros, 50_000);
    clock.advance(Duration::from_secs(11));
    let mut nearly_all = check(Vec::new(), 0, 960_000);
    nearly_all.balance_owner = Some(user_owner("u1"));
    let answer = admissions.check(&nearly_all).await.unwrap();
    assert!(answer.allowed, "the lapsed hold is free again");
    admissions
        .release_balance_lease(&release_balance(&lapsed.lease_id, 10_000))
        .await
        .unwrap();
    assert_eq!(balance(store, "u1").await, 960_000);

    // Too little to lease: nothing granted; bad ids are refused.
    credit(store, "u2", 5).await;
    let none = admissions
        .lease_balance(&lease_balance("u2", 100))
        .await
        .unwrap();
    assert!(none.lease_id.is_empty() && none.granted_micros == 0);
    let bad = admissions
        .release_balance_lease(&release_balance("b.nothing", 1))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("lease_id"), "{bad}");
    assert!(
        admissions
            .lease_balance(&lease_balance("u1", 0))
            .await
            .is_err()
    );
}

test_on_every_backend! {
    async fn balance_leases_on_every_store(db) {
        let store = store(&db).await;
        let clock = Clock::paused(T0);
        balance_leases_hold_and_debit_once(&store, &clock).await;
    }

    async fn checks_and_commits_on_the_memory_limiter(db) {
        let store = store(&db).await;
        let clock = Clock::paused(T0);
        let service = service(&store, Limiter::memory(), &clock).await;
        checks_and_commits_count_exactly(&service, &store, &clock).await;
    }

    async fn balances_hold_exactly_under_concurrent_checks(db) {
        let store = store(&db).await;
        let clock = Clock::paused(T0);
        let admissions = service(&store, Limiter::memory(), &clock).await.admissions;
        credit(&store, "u1", 1_000_000).await;
        let mut tasks = JoinSet::new();
        for _ in 0..40 {
            let admissions = Arc::clone(&admissions);
            tasks.spawn(async move {
                let mut request = check(Vec::new(), 0, 100_000);
                request.balance_owner = Some(user_owner("u1"));
                admissions.check(&request).await.unwrap()
            });
        }
        let mut admitted = Vec::new();
        while let Some(answer) = tasks.join_next().await {
            let answer = answer.unwrap();
            if answer.allowed {
                admitted.push(answer.reservation_id);
            } else {
                assert_eq!(answer.refusal_reason(), pb::RefusalReason::InsufficientBalance);
            }
        }
        assert_eq!(admitted.len(), 10, "1,000,000 covers exactly ten holds of 100,000");
        // Each request cost half its estimate; a replay debits nothing more.
        for id in &admitted {
            let mut settle = commit(id, Vec::new(), true, 0, 50_000);
            settle.balance_owner = Some(user_owner("u1"));
            admissions.commit(&settle).await.unwrap();
            let replay = admissions.commit(&settle).await.unwrap();
            assert_eq!(replay.balance_micros, Some(balance(&store, "u1").await));
        }
        assert_eq!(balance(&store, "u1").await, 500_000);
        assert_eq!(
            store
                .reserved(
                    &Owner { tenant_id: TENANT.to_owned(), kind: OwnerKind::User, id: "u1".to_owned() },
                    T0,
                )
                .await
                .unwrap(),
            0
        );
        // A failed request releases its hold and debits nothing.
        let mut request = check(Vec::new(), 0, 400_000);
        request.balance_owner = Some(user_owner("u1"));
        let held = admissions.check(&request).await.unwrap();
        assert_eq!(held.balance_micros, Some(100_000));
        let mut failed = commit(&held.reservation_id, Vec::new(), false, 0, 0);
        failed.balance_owner = Some(user_owner("u1"));
        assert_eq!(admissions.commit(&failed).await.unwrap().balance_micros, Some(500_000));
        // A reservation never committed stops holding at its expiry.
        let lapsing = admissions.check(&request).await.unwrap();
        assert!(lapsing.allowed);
        let mut more = check(Vec::new(), 0, 200_000);
        more.balance_owner = Some(user_owner("u1"));
        assert!(!admissions.check(&more).await.unwrap().allowed);
        clock.advance(Duration::from_secs(301));
        assert!(admissions.check(&more).await.unwrap().allowed);
    }

    async fn spend_limits_never_go_over_under_concurrent_reservations(db) {
        let store = store(&db).await;
        let plan = insert_plan(&store, pb::Plan {
            name: "spend".to_owned(),
            spend_per_day_micros: Some(1_000_000),
            ..pb::Plan::default()
        }).await;
        let clock = Clock::paused(T0);
        let admissions = service(&store, Limiter::memory(), &clock).await.admissions;
        let spent = concurrent_spend(&admissions, &plan, 100, 30_000).await;
        assert_eq!(spent, 33 * 30_000);
    }
}

/// Runs `count` concurrent checks of `estimate` against the plan, commits
/// each admitted one at its estimate, and returns the total admitted.
async fn concurrent_spend(
    admissions: &Arc<Admissions>,
    plan: &str,
    count: usize,
    estimate: i64,
) -> i64 {
    let mut tasks = JoinSet::new();
    for index in 0..count {
        let admissions = Arc::clone(admissions);
        let plan = plan.to_owned();
        tasks.spawn(async move {
            // Every request on the same key: one shared daily spend limit.
            let scopes = vec![key_scope("k1", &plan)];
            let answer = admissions
                .check(&check(scopes.clone(), 0, estimate))
                .await
                .unwrap();
            if !answer.allowed {
                assert_eq!(
                    answer.refusal_reason(),
                    pb::RefusalReason::SpendLimit,
                    "{index}"
                );
                return 0;
            }
            admissions
                .commit(&commit(&answer.reservation_id, scopes, true, 0, estimate))
                .await
                .unwrap();
            estimate
        });
    }
    let mut spent = 0;
    while let Some(cost) = tasks.join_next().await {
        spent += cost.unwrap();
    }
    assert!(
        spent <= 1_000_000,
        "spent {spent} over a limit of 1,000,000"
    );
    spent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_and_commits_on_the_redis_limiter() {
    let Some(url) = redis_url() else { return };
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let clock = Clock::paused(T0);
    let service = service(&store, redis_limiter(&url, &prefix()), &clock).await;
    checks_and_commits_count_exactly(&service, &store, &clock).await;
}

/// Two quota replicas (separate limiters and caches, one SQL store, one
/// Redis): 200 concurrent Checks against 50 per minute admit exactly 50.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sharing_redis_admit_exactly_fifty_of_two_hundred() {
    let Some(url) = redis_url() else { return };
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let plan = insert_plan(
        &store,
        pb::Plan {
            name: "fifty".to_owned(),
            requests_per_minute: Some(50),
            ..pb::Plan::default()
        },
    )
    .await;
    let prefix = prefix();
    let clock = Clock::paused(T0);
    let replicas = [
        service(&store, redis_limiter(&url, &prefix), &clock)
            .await
            .admissions,
        service(&store, redis_limiter(&url, &prefix), &clock)
            .await
            .admissions,
    ];
    let mut tasks = JoinSet::new();
    for index in 0..200 {
        let admissions = Arc::clone(&replicas[index % 2]);
        let plan = plan.clone();
        tasks.spawn(async move {
            let answer = admissions
                .check(&check(vec![key_scope("k1", &plan)], 0, 0))
                .await
                .unwrap();
            assert_eq!(answer.backend(), pb::LimiterBackend::Redis);
            answer.allowed
        });
    }
    let mut admitted = 0;
    while let Some(allowed) = tasks.join_next().await {
        admitted += usize::from(allowed.unwrap());
    }
    assert_eq!(admitted, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_limits_never_go_over_across_redis_replicas() {
    let Some(url) = redis_url() else { return };
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let plan = insert_plan(
        &store,
        pb::Plan {
            name: "spend".to_owned(),
            spend_per_day_micros: Some(1_000_000),
            ..pb::Plan::default()
        },
    )
    .await;
    let prefix = prefix();
    let clock = Clock::paused(T0);
    let first = service(&store, redis_limiter(&url, &prefix), &clock).await;
    let second = service(&store, redis_limiter(&url, &prefix), &clock).await;
    let (a, b) = tokio::join!(
        concurrent_spend(&first.admissions, &plan, 50, 30_000),
        concurrent_spend(&second.admissions, &plan, 50, 30_000),
    );
    assert_eq!(a + b, 33 * 30_000, "the two replicas share one budget");
}

/// The weighted sliding window, with time paused and moved by hand.
async fn sliding_window_weighs_the_previous_minute(limiter: Limiter) {
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let plan = insert_plan(
        &store,
        pb::Plan {
            name: "sliding".to_owned(),
            requests_per_minute: Some(10),
            algorithm: pb::LimitAlgorithm::SlidingWindow.into(),
            ..pb::Plan::default()
        },
    )
    .await;
    let clock = Clock::paused(T0 + 50 * SECOND);
    let admissions = service(&store, limiter, &clock).await.admissions;
    let scopes = vec![key_scope("k1", &plan)];
    let admitted = |count: usize| {
        let admissions = Arc::clone(&admissions);
        let scopes = scopes.clone();
        async move {
            let mut admitted = 0;
            for _ in 0..count {
                admitted += usize::from(
                    admissions
                        .check(&check(scopes.clone(), 0, 0))
                        .await
                        .unwrap()
                        .allowed,
                );
            }
            admitted
        }
    };
    // Ten late in the first minute.
    assert_eq!(admitted(12).await, 10);
    // 15 s into the next minute, 45/60 of them still count: ceil(7.5) = 8.
    clock.advance(Duration::from_secs(25));
    assert_eq!(admitted(5).await, 2);
    let refused = admissions
        .check(&check(scopes.clone(), 0, 0))
        .await
        .unwrap();
    assert!(!refused.allowed);
    let wait = refused.retry_after.unwrap();
    assert!(wait.seconds > 0 && wait.seconds <= 45, "{wait:?}");
    // 45 s in, a quarter still counts: ceil(2.5) + 2 = 5, so five more.
    clock.advance(Duration::from_secs(30));
    assert_eq!(admitted(8).await, 5);
    // Two minutes on, nothing of it counts.
    clock.advance(Duration::from_secs(120));
    assert_eq!(admitted(12).await, 10);
}

#[tokio::test]
async fn sliding_window_with_paused_time_on_memory() {
    sliding_window_weighs_the_previous_minute(Limiter::memory()).await;
}

#[tokio::test]
async fn sliding_window_with_paused_time_on_redis() {
    let Some(url) = redis_url() else { return };
    sliding_window_weighs_the_previous_minute(redis_limiter(&url, &prefix())).await;
}

/// Leases take a slice up front, give back what was not used, and come
/// back whole when never released.
async fn leases_take_and_return(limiter: Limiter) {
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let plan = insert_plan(
        &store,
        pb::Plan {
            name: "lease".to_owned(),
            requests_per_minute: Some(1_000),
            ..pb::Plan::default()
        },
    )
    .await;
    let small = insert_plan(
        &store,
        pb::Plan {
            name: "small".to_owned(),
            requests_per_minute: Some(5),
            ..pb::Plan::default()
        },
    )
    .await;
    let clock = Clock::paused(T0);
    let admissions = service(&store, limiter, &clock).await.admissions;
    let lease = |amount: i64| pb::LeaseRequest {
        edge_id: "edge-1".to_owned(),
        tenant_id: TENANT.to_owned(),
        scopes: vec![key_scope("k1", &plan)],
        dimension: pb::LimitDimension::Requests.into(),
        requested_amount: amount,
        ttl: Some(prost_types::Duration {
            seconds: 5,
            nanos: 0,
        }),
    };
    let granted = admissions.lease(&lease(500)).await.unwrap();
    assert_eq!(granted.granted_amount, 100, "10% of the 1,000 remaining");
    assert_eq!(granted.limits[0].remaining, 900);
    let expire = granted.expire_time.unwrap();
    assert_eq!(expire.seconds, (T0 / SECOND) + 5);
    let released = admissions
        .release_lease(&pb::ReleaseLeaseRequest {
            lease_id: granted.lease_id.clone(),
            used_amount: 30,
        })
        .await
        .unwrap();
    assert_eq!(released.returned_amount, 70);
    let replay = admissions
        .release_lease(&pb::ReleaseLeaseRequest {
            lease_id: granted.lease_id,
            used_amount: 30,
        })
        .await
        .unwrap();
    assert_eq!(replay.returned_amount, 0, "a release applies once");
    // 30 were used: 970 remain, so the next lease is 97.
    let second = admissions.lease(&lease(500)).await.unwrap();
    assert_eq!(second.granted_amount, 97);
    assert_eq!(second.limits[0].remaining, 873);
    // Never released: the sweeper returns it after expiry, not before.
    assert_eq!(admissions.expire_leases(clock.now()).await, 0);
    clock.advance(Duration::from_secs(6));
    assert_eq!(admissions.expire_leases(clock.now()).await, 1);
    assert_eq!(admissions.expire_leases(clock.now()).await, 0);
    let third = admissions.lease(&lease(1)).await.unwrap();
    assert_eq!(third.limits[0].remaining, 969);
    // A release after the sweeper still counts what the edge used.
    let late = admissions
        .release_lease(&pb::ReleaseLeaseRequest {
            lease_id: second.lease_id,
            used_amount: 9,
        })
        .await
        .unwrap();
    assert_eq!(late.returned_amount, 0);
    let fourth = admissions.lease(&lease(1)).await.unwrap();
    assert_eq!(fourth.limits[0].remaining, 969 - 1 - 9);
    // Small limits are never leased: the edge checks each request.
    let mut tiny = lease(1);
    tiny.scopes = vec![key_scope("k9", &small)];
    let none = admissions.lease(&tiny).await.unwrap();
    assert!(none.lease_id.is_empty());
    assert_eq!((none.granted_amount, none.limits[0].remaining), (0, 5));
}

#[tokio::test]
async fn leases_on_memory() {
    leases_take_and_return(Limiter::memory()).await;
}

#[tokio::test]
async fn leases_on_redis() {
    let Some(url) = redis_url() else { return };
    leases_take_and_return(redis_limiter(&url, &prefix())).await;
}

#[tokio::test]
async fn group_rules_apply_and_other_tenants_plans_do_not_and_refusals_cost_nothing() {
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let roomy = insert_plan(
        &store,
        pb::Plan {
            name: "roomy".to_owned(),
            requests_per_minute: Some(100),
            ..pb::Plan::default()
        },
    )
    .await;
    insert_rule(
        &store,
        TENANT,
        pb::RateLimitRule {
            group_id: "g1".to_owned(),
            name: "team".to_owned(),
            dimension: pb::LimitDimension::Requests.into(),
            window: pb::LimitWindow::Minute.into(),
            limit: 2,
            algorithm: pb::LimitAlgorithm::Gcra.into(),
            enabled: true,
            ..pb::RateLimitRule::default()
        },
    )
    .await;
    // Another tenant's rule on a group id this tenant also names.
    insert_rule(
        &store,
        "tenant-b",
        pb::RateLimitRule {
            group_id: "g1".to_owned(),
            name: "theirs".to_owned(),
            dimension: pb::LimitDimension::Requests.into(),
            window: pb::LimitWindow::Minute.into(),
            limit: 1,
            enabled: true,
            ..pb::RateLimitRule::default()
        },
    )
    .await;
    let clock = Clock::paused(T0);
    let admissions = service(&store, Limiter::memory(), &clock).await.admissions;
    let scopes = vec![
        key_scope("k1", &roomy),
        pb::Scope {
            kind: pb::ScopeKind::Group.into(),
            id: "g1".to_owned(),
            plan_id: String::new(),
            spend_limit_micros: None,
        },
    ];
    for _ in 0..2 {
        let answer = admissions
            .check(&check(scopes.clone(), 0, 0))
            .await
            .unwrap();
        assert!(answer.allowed);
        assert_eq!(answer.limits.len(), 2, "the plan and this tenant's rule");
    }
    let refused = admissions
        .check(&check(scopes.clone(), 0, 0))
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.limits[0].name, "rule 'team'");
    assert_eq!(refused.limits[0].source(), pb::LimitSource::Rule);
    // The refused request did not count against the key's plan.
    let key_only = admissions
        .check(&check(vec![key_scope("k1", &roomy)], 0, 0))
        .await
        .unwrap();
    assert_eq!(key_only.limits[0].remaining, 97);
    // A plan id of another tenant applies nothing.
    let mut foreign = check(vec![key_scope("k2", &roomy)], 0, 0);
    foreign.tenant_id = "tenant-b".to_owned();
    assert!(admissions.check(&foreign).await.unwrap().limits.is_empty());
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let db = TestDatabase::sqlite().await;
    let store = store(&db).await;
    let clock = Clock::paused(T0);
    let admissions = service(&store, Limiter::memory(), &clock).await.admissions;
    let error = admissions
        .check(&check(Vec::new(), -1, 0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("estimated_tokens"), "{error}");
    let mut no_tenant = check(Vec::new(), 0, 0);
    no_tenant.tenant_id.clear();
    assert!(admissions.check(&no_tenant).await.is_err());
    let unscoped = check(vec![pb::Scope::default()], 0, 0);
    assert!(
        admissions
            .check(&unscoped)
            .await
            .unwrap_err()
            .to_string()
            .contains("scopes[0].kind")
    );
    let error = admissions
        .commit(&commit("not-an-id", Vec::new(), true, 0, 0))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("reservation_id"), "{error}");
    let error = admissions
        .release_lease(&pb::ReleaseLeaseRequest {
            lease_id: "x".to_owned(),
            used_amount: 0,
        })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("lease_id"), "{error}");
}
