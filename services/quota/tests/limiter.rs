//! The limiter on both backends: one suite for memory and Redis, and exact
//! counting across two instances sharing Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_quota::limiter::redis::RedisLimiter;
use gateway_quota::limiter::{Algorithm, Backend, Check, Limit, Limiter, Window};
use tokio::task::JoinSet;

const SECOND: i64 = 1_000_000;
const T0: i64 = 1_795_327_200 * SECOND;

fn limit(limit: i64, window: Window, algorithm: Algorithm, burst: i64) -> Limit {
    Limit {
        limit,
        window,
        algorithm,
        burst,
    }
}

fn check(key: &str, limit: &Limit, cost: i64) -> Check {
    Check {
        key: key.to_owned(),
        limit: limit.clone(),
        cost,
    }
}

fn redis_url() -> Option<String> {
    gateway_testkit::server_url(gateway_testkit::REDIS_URL_ENV)
}

/// A fresh key space per test, so tests never see each other's counters.
fn prefix() -> String {
    format!("gwtest-{}", uuid::Uuid::now_v7().simple())
}

/// Semantics, not latency, are under test here (the fallback's timing has
/// its own test binary): a generous timeout keeps every check on Redis.
fn redis_limiter(url: &str, prefix: &str) -> Limiter {
    Limiter::with_redis(
        RedisLimiter::new(url, prefix, Duration::from_secs(2)).unwrap(),
        Duration::from_millis(200),
    )
}

/// Behaviour every backend must share.
async fn the_algorithms_count_exactly(limiter: &Limiter, tenant: &str) {
    let fixed = limit(5, Window::Minute, Algorithm::FixedWindow, 0);
    for second in 0..5 {
        assert!(
            limiter
                .check(tenant, &[check("fixed", &fixed, 1)], T0 + second * SECOND)
                .await
                .0
                .allowed
        );
    }
    let (refused, _) = limiter
        .check(tenant, &[check("fixed", &fixed, 1)], T0 + 10 * SECOND)
        .await;
    assert!(!refused.allowed);
    assert_eq!(
        (
            refused.outcomes[0].remaining,
            refused.outcomes[0].retry_after
        ),
        (0, 50 * SECOND)
    );
    assert!(
        limiter
            .check(tenant, &[check("fixed", &fixed, 1)], T0 + 60 * SECOND)
            .await
            .0
            .allowed
    );

    // A refused multi-limit check consumes nothing.
    let generous = limit(100, Window::Minute, Algorithm::SlidingWindow, 0);
    let strict = limit(1, Window::Hour, Algorithm::FixedWindow, 0);
    let both = [check("generous", &generous, 1), check("strict", &strict, 1)];
    assert!(limiter.check(tenant, &both, T0).await.0.allowed);
    assert!(!limiter.check(tenant, &both, T0).await.0.allowed);
    let (alone, _) = limiter
        .check(tenant, &[check("generous", &generous, 1)], T0)
        .await;
    assert_eq!(alone.outcomes[0].remaining, 98);

    let log = limit(3, Window::Minute, Algorithm::SlidingLog, 0);
    for second in [0, 20, 40] {
        assert!(
            limiter
                .check(tenant, &[check("log", &log, 1)], T0 + second * SECOND)
                .await
                .0
                .allowed
        );
    }
    let (refused, _) = limiter
        .check(tenant, &[check("log", &log, 1)], T0 + 59 * SECOND)
        .await;
    assert_eq!(
        (refused.allowed, refused.outcomes[0].retry_after),
        (false, SECOND)
    );
    assert!(
        limiter
            .check(tenant, &[check("log", &log, 1)], T0 + 60 * SECOND + 1)
            .await
            .0
            .allowed
    );

    let gcra = limit(60, Window::Minute, Algorithm::Gcra, 3);
    for _ in 0..3 {
        assert!(
            limiter
                .check(tenant, &[check("gcra", &gcra, 1)], T0)
                .await
                .0
                .allowed
        );
    }
    let (refused, _) = limiter.check(tenant, &[check("gcra", &gcra, 1)], T0).await;
    assert_eq!(
        (refused.allowed, refused.outcomes[0].retry_after),
        (false, SECOND)
    );
    assert!(
        limiter
            .check(tenant, &[check("gcra", &gcra, 1)], T0 + SECOND)
            .await
            .0
            .allowed
    );

    let month = limit(1_000_000, Window::Month, Algorithm::Gcra, 0);
    assert!(
        limiter
            .check(tenant, &[check("spend", &month, 999_999)], T0)
            .await
            .0
            .allowed
    );
    assert!(
        !limiter
            .check(tenant, &[check("spend", &month, 2)], T0)
            .await
            .0
            .allowed
    );
}

#[tokio::test]
async fn the_memory_backend_counts_exactly() {
    let limiter = Limiter::memory();
    the_algorithms_count_exactly(&limiter, "tenant-a").await;
    assert_eq!(limiter.backend(), Backend::Memory);
}

#[tokio::test]
async fn the_redis_backend_counts_exactly() {
    let Some(url) = redis_url() else { return };
    let limiter = redis_limiter(&url, &prefix());
    the_algorithms_count_exactly(&limiter, "tenant-a").await;
    assert_eq!(limiter.backend(), Backend::Redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_admit_exactly_fifty_of_two_hundred() {
    use gateway_quota::limiter::redis::RedisLimiterError;
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    // Accuracy, not latency, is under test: the Redis limiters are called
    // directly (no fallback), with a generous timeout.
    let instance = || Arc::new(RedisLimiter::new(&url, &prefix, Duration::from_secs(5)).unwrap());
    let instances = [instance(), instance()];
    let per_minute = limit(50, Window::Minute, Algorithm::SlidingWindow, 0);
    let mut checks = JoinSet::new();
    for index in 0..200 {
        let limiter = Arc::clone(&instances[index % 2]);
        let per_minute = per_minute.clone();
        checks.spawn(async move {
            let checks = [check("key:k1", &per_minute, 1)];
            loop {
                match limiter.check("tenant-a", &checks, T0).await {
                    Ok(decision) => return decision.allowed,
                    // Failing to get a connection means the script never
                    // ran: retrying cannot count twice.
                    Err(RedisLimiterError::Pool(_)) => tokio::task::yield_now().await,
                    Err(error) => panic!("redis check failed: {error}"),
                }
            }
        });
    }
    let mut admitted = 0;
    while let Some(allowed) = checks.join_next().await {
        admitted += usize::from(allowed.unwrap());
    }
    assert_eq!(admitted, 50);
}
