//! The limiter on a real three-master Redis Cluster started on loopback
//! ports: exact across two replicas, and a master killed mid-test answered
//! by the memory fallback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_quota::limiter::redis::RedisLimiter;
use gateway_quota::limiter::{Algorithm, Backend, Check, Limit, Limiter, Window};
use gateway_testkit::redis_cluster::RedisCluster;
use tokio::task::JoinSet;

const SECOND: i64 = 1_000_000;
const T0: i64 = 1_795_327_200 * SECOND;
/// The limit; each test makes four times as many concurrent checks.
const N: usize = 50;

fn per_hour() -> Limit {
    Limit {
        limit: i64::try_from(N).unwrap(),
        window: Window::Hour,
        algorithm: Algorithm::SlidingWindow,
        burst: 0,
    }
}

fn checks() -> Vec<Check> {
    vec![
        Check {
            key: "key:k1:requests".to_owned(),
            limit: per_hour(),
            cost: 1,
        },
        // A second limit of the same request: a cluster runs the script
        // only when all its keys share a slot, as the tenant tag intends.
        Check {
            key: "tenant:requests".to_owned(),
            limit: Limit {
                limit: 1_000_000,
                ..per_hour()
            },
            cost: 1,
        },
    ]
}

/// Two replicas, each a limiter with its own memory fallback, as two quota
/// processes have. The timeout is generous: accuracy is under test here.
fn replicas(cluster: &RedisCluster, prefix: &str) -> [Arc<Limiter>; 2] {
    let replica = || {
        let redis = RedisLimiter::cluster(&cluster.urls(), prefix, Duration::from_secs(2)).unwrap();
        Arc::new(Limiter::with_redis(redis, Duration::from_secs(60)))
    };
    [replica(), replica()]
}

/// Waits until a replica's first call (connecting, discovering the slots,
/// loading the script) has gone to Redis, with an uncounted check.
async fn warm(limiter: &Limiter, tenant: &str) {
    let free = [Check {
        key: "warm".to_owned(),
        limit: per_hour(),
        cost: 0,
    }];
    for _ in 0..100 {
        if limiter.check(tenant, &free, T0).await.1 == Backend::Redis {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the cluster never answered");
}

/// `4 * N` concurrent checks spread over `replicas`; returns how many were
/// admitted and by which backend each answer came.
async fn admit_concurrently(
    replicas: &[Arc<Limiter>; 2],
    tenant: &str,
    calls: usize,
) -> Vec<(bool, Backend)> {
    let mut tasks = JoinSet::new();
    for index in 0..calls {
        let limiter = Arc::clone(&replicas[index % 2]);
        let tenant = tenant.to_owned();
        tasks.spawn(async move { limiter.check(&tenant, &checks(), T0 + SECOND).await });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        let (decision, backend) = answer.unwrap();
        answers.push((decision.allowed, backend));
    }
    answers
}

fn prefix() -> String {
    format!("gwtest-{}", uuid::Uuid::now_v7().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_a_cluster_admit_exactly_n_of_four_n() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let replicas = replicas(&cluster, &prefix());
    // Tenants in different slots, on different masters, count apart.
    for tenant in ["tenant-a", "tenant-b", "tenant-c"] {
        for replica in &replicas {
            warm(replica, tenant).await;
        }
        let answers = admit_concurrently(&replicas, tenant, 4 * N).await;
        assert!(
            answers
                .iter()
                .all(|(_, backend)| *backend == Backend::Redis)
        );
        let admitted = answers.iter().filter(|(allowed, _)| *allowed).count();
        assert_eq!(admitted, N, "{tenant}");
    }
    let masters: std::collections::HashSet<u16> = ["tenant-a", "tenant-b", "tenant-c"]
        .iter()
        .map(|tenant| cluster.master_of(&format!("{{{tenant}}}")))
        .collect();
    assert!(masters.len() > 1, "the tenants all landed on one master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_test_is_answered_by_the_fallback() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let tenant = "tenant-a";
    let replicas = replicas(&cluster, &prefix());
    for replica in &replicas {
        warm(replica, tenant).await;
    }
    let first = admit_concurrently(&replicas, tenant, N / 2).await;
    assert!(first.iter().all(|answer| *answer == (true, Backend::Redis)));

    cluster.kill_master_of(&format!("{{{tenant}}}"));
    let started = tokio::time::Instant::now();
    let second = admit_concurrently(&replicas, tenant, 4 * N).await;
    // Every check was answered, quickly, without an error reaching the
    // caller; the failed calls opened each replica's breaker.
    assert!(started.elapsed() < Duration::from_secs(10));
    for replica in &replicas {
        assert_eq!(replica.backend(), Backend::MemoryFallback);
    }
    // The documented floor: while Redis is away each replica counts alone,
    // so at most the limit per replica on top of what Redis had admitted.
    let admitted = second.iter().filter(|(allowed, _)| *allowed).count();
    assert!(admitted <= 2 * N, "{admitted} admitted after the kill");
    assert!(admitted >= N, "the fallback refused what it should admit");
}
