//! The limiter on both backends: one suite for memory and Redis, and exact
//! counting across two instances sharing Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use gateway_quota::limiter::redis::RedisLimiter;
use gateway_quota::limiter::{
    Adjustment, Admission, Algorithm, Backend, Check, ClaimMode, Claimed, Limit, Limiter,
    NewRecord, Slot, Stored, Window,
};
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

/// A plain connection, to look at or write keys the way another version
/// of the scripts would.
async fn raw_connection(url: &str) -> deadpool_redis::redis::aio::MultiplexedConnection {
    let client = deadpool_redis::redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
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

/// Reservations: limits, slots and the record admitted together; a claim
/// settles once; adjustments give back and count more; the same on every
/// backend.
async fn reservations_settle_exactly_once(limiter: &Limiter, tenant: &str) {
    for algorithm in [
        Algorithm::Gcra,
        Algorithm::FixedWindow,
        Algorithm::SlidingWindow,
        Algorithm::SlidingLog,
    ] {
        let tokens = limit(1_000, Window::Minute, algorithm, 0);
        let key = format!("tokens-{algorithm:?}");
        let slot_key = format!("slot-{algorithm:?}");
        let slots = [Slot {
            key: slot_key.clone(),
            max: 1,
        }];
        let checks = [check(&key, &tokens, 800)];
        let id = format!("res-{algorithm:?}");
        let stored = limiter.backend().stored();
        let admission = Admission {
            checks: &checks,
            slots: &slots,
            holder: &id,
            hold_until: T0 + 60 * SECOND,
            record: Some(NewRecord {
                id: &id,
                payload: "estimate=800",
                keep_until: T0 + 120 * SECOND,
                lease_expire_at: None,
            }),
        };
        let (admitted, _) = limiter.admit(tenant, &admission, T0).await;
        assert!(admitted.allowed, "{algorithm:?}");
        assert_eq!(admitted.outcomes.len(), 2);
        // The slot is taken and the tokens are reserved.
        let second_id = format!("{id}-2");
        let (refused, _) = limiter
            .admit(
                tenant,
                &Admission {
                    holder: &second_id,
                    record: None,
                    ..admission
                },
                T0 + 1,
            )
            .await;
        assert!(!refused.allowed);
        assert!(!refused.outcomes[0].allowed && !refused.outcomes[1].allowed);

        let claimed = limiter
            .claim(stored, tenant, &id, ClaimMode::Settle, T0 + 2)
            .await
            .unwrap();
        assert_eq!(claimed, Claimed::Open("estimate=800".to_owned()));
        assert_eq!(
            limiter
                .claim(stored, tenant, &id, ClaimMode::Settle, T0 + 3)
                .await
                .unwrap(),
            Claimed::Settled
        );
        // Actual use was 300: 500 goes back, and the slot frees.
        let settle = [Adjustment {
            key: key.clone(),
            limit: tokens.clone(),
            delta: -500,
            admitted_at: T0,
        }];
        limiter
            .adjust(
                stored,
                tenant,
                &settle,
                std::slice::from_ref(&slot_key),
                &id,
                T0 + 4,
            )
            .await;
        let (after, _) = limiter
            .admit(
                tenant,
                &Admission {
                    checks: &[check(&key, &tokens, 700)],
                    holder: &second_id,
                    record: None,
                    ..admission
                },
                T0 + 5,
            )
            .await;
        assert!(
            after.allowed,
            "{algorithm:?}: 300 used, 700 free, slot free"
        );
        assert_eq!(after.outcomes[0].remaining, 0, "{algorithm:?}");
    }
    assert_eq!(
        limiter
            .claim(
                limiter.backend().stored(),
                tenant,
                "never",
                ClaimMode::Settle,
                T0
            )
            .await
            .unwrap(),
        Claimed::Unknown
    );
}

#[tokio::test]
async fn the_memory_backend_settles_reservations() {
    reservations_settle_exactly_once(&Limiter::memory(), "tenant-a").await;
}

#[tokio::test]
async fn the_redis_backend_settles_reservations() {
    let Some(url) = redis_url() else { return };
    let limiter = redis_limiter(&url, &prefix());
    reservations_settle_exactly_once(&limiter, "tenant-a").await;
    assert_eq!(limiter.backend(), Backend::Redis);
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

/// A window counter expires when its window stops mattering (the fixed
/// window's end; the sliding window's end plus one length, as the next
/// window's "previous"), the same instant whenever in the window it is
/// computed. So the expiry is set by the write that starts a window and
/// left alone by later writes in it.
#[tokio::test]
async fn a_window_counter_expiry_is_set_when_its_window_starts() {
    use deadpool_redis::redis::AsyncCommands as _;
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let limiter = redis_limiter(&url, &prefix);
    let mut connection = raw_connection(&url).await;
    let windows = [
        ("fixed", Algorithm::FixedWindow, 61_000),
        ("sliding", Algorithm::SlidingWindow, 121_000),
    ];
    for (name, algorithm, expected_ms) in windows {
        let per_minute = limit(1_000, Window::Minute, algorithm, 0);
        let key = format!("{prefix}:v1:{{tenant-a}}:{name}");
        let mut ttl_at = async |at: i64| {
            let checks = [check(name, &per_minute, 1)];
            assert!(limiter.check("tenant-a", &checks, at).await.0.allowed);
            connection.pttl::<_, i64>(&key).await.unwrap()
        };
        // T0 starts a minute: the first write sets the expiry, the one
        // 30 s later keeps it, the one in the next minute sets it anew.
        for at in [T0, T0 + 30 * SECOND, T0 + 60 * SECOND] {
            let ttl = ttl_at(at).await;
            assert!(
                (expected_ms - 5_000..=expected_ms).contains(&ttl),
                "{name} at +{} s: ttl {ttl} ms, expected about {expected_ms}",
                (at - T0) / SECOND
            );
        }
    }
}

/// A small deterministic generator, so a failing sequence repeats.
struct Steps(u64);

impl Steps {
    fn next(&mut self, below: i64) -> i64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        i64::try_from(self.0 >> 33).unwrap() % below
    }
}

fn adjustment(check: &Check, delta: i64, admitted_at: i64) -> Adjustment {
    Adjustment {
        key: check.key.clone(),
        limit: check.limit.clone(),
        delta,
        admitted_at,
    }
}

/// Redis derives window outcomes from the counts its script returns, with
/// the memory backend's code: both must answer every admission alike,
/// refusals and their remaining, reset and retry-after included.
#[tokio::test]
async fn the_redis_backend_answers_every_admission_as_memory_does() {
    let Some(url) = redis_url() else { return };
    let redis = redis_limiter(&url, &prefix());
    let memory = Limiter::memory();
    let limits = [
        limit(20, Window::Minute, Algorithm::FixedWindow, 0),
        limit(20, Window::Minute, Algorithm::SlidingWindow, 0),
        limit(10, Window::Minute, Algorithm::SlidingLog, 0),
        limit(20, Window::Minute, Algorithm::Gcra, 5),
        limit(60, Window::Day, Algorithm::SlidingWindow, 0),
        limit(30, Window::Lifetime, Algorithm::FixedWindow, 0),
    ];
    let slots = [Slot {
        key: "slot".to_owned(),
        max: 3,
    }];
    let mut steps = Steps(7);
    let mut now = T0;
    let mut refusals = std::collections::HashMap::<String, usize>::new();
    let mut admitted = Vec::new();
    for step in 0..400 {
        now += steps.next(2 * SECOND);
        let chosen = usize::try_from(steps.next(6)).unwrap();
        let checks: Vec<Check> = (0..=chosen % 3)
            .map(|offset| {
                let index = (chosen + offset * 2) % limits.len();
                check(&format!("limit-{index}"), &limits[index], steps.next(4))
            })
            .collect();
        let holder = format!("holder-{step}");
        let admission = Admission {
            checks: &checks,
            slots: &slots,
            holder: &holder,
            hold_until: now + steps.next(10) * SECOND,
            record: None,
        };
        let (from_memory, _) = memory.admit("tenant-a", &admission, now).await;
        let (from_redis, backend) = redis.admit("tenant-a", &admission, now).await;
        assert_eq!(backend, Backend::Redis);
        assert_eq!(from_redis, from_memory, "step {step}: {checks:?}");
        if from_memory.allowed {
            admitted.push((now, checks.clone(), holder.clone()));
        }
        // Now and then settle an earlier admission: give back or count more.
        if steps.next(3) == 0 && !admitted.is_empty() {
            let index = usize::try_from(steps.next(i64::try_from(admitted.len()).unwrap()));
            let (at, settled, holder) = admitted.swap_remove(index.unwrap());
            let adjustments: Vec<Adjustment> = settled
                .iter()
                .map(|check| adjustment(check, steps.next(7) - 3, at))
                .collect();
            let slots = ["slot".to_owned()];
            for (limiter, stored) in [(&memory, Stored::Memory), (&redis, Stored::Redis)] {
                limiter
                    .adjust(stored, "tenant-a", &adjustments, &slots, &holder, now)
                    .await;
            }
        }
        let keys = checks
            .iter()
            .map(|check| check.key.as_str())
            .chain(["slot"]);
        for (key, outcome) in keys.zip(&from_memory.outcomes) {
            *refusals.entry(key.to_owned()).or_default() += usize::from(!outcome.allowed);
        }
    }
    // Both verdicts, often: the sequence runs every limit into refusals.
    assert_eq!(refusals.len(), limits.len() + 1, "{refusals:?}");
    assert!(
        refusals.values().all(|count| (5..300).contains(count)),
        "{refusals:?}"
    );
    // A cost above the whole limit, on a log with no entries yet; then a
    // give-back larger than what counts.
    for (index, limit) in limits.iter().enumerate() {
        let checks = [check(&format!("untouched-{index}"), limit, limit.limit + 1)];
        let (from_memory, _) = memory.check("tenant-b", &checks, now).await;
        let (from_redis, backend) = redis.check("tenant-b", &checks, now).await;
        assert_eq!((from_redis, backend), (from_memory, Backend::Redis));
        let checks = [check(&format!("small-{index}"), limit, 1)];
        let refund = [adjustment(&checks[0], -3, now)];
        for (limiter, stored) in [(&memory, Stored::Memory), (&redis, Stored::Redis)] {
            assert!(limiter.check("tenant-b", &checks, now).await.0.allowed);
            limiter
                .adjust(stored, "tenant-b", &refund, &[], "", now + 1)
                .await;
        }
        let (from_memory, _) = memory.check("tenant-b", &checks, now + 2).await;
        let (from_redis, _) = redis.check("tenant-b", &checks, now + 2).await;
        assert_eq!(from_redis, from_memory, "{limit:?}");
    }
}

/// During a rollout replicas running the previous script share these
/// counters. It stored numbers as Lua printed them; a count it left must
/// still count.
#[tokio::test]
async fn a_counter_the_previous_script_wrote_still_counts() {
    let Some(url) = redis_url() else { return };
    let prefix = prefix();
    let limiter = redis_limiter(&url, &prefix);
    let mut connection = raw_connection(&url).await;
    let per_minute = limit(10, Window::Minute, Algorithm::FixedWindow, 0);
    let (start, _) = per_minute.window.bounds(T0);
    // The previous script's write: numbers, which Lua turns into text.
    let _: i64 = deadpool_redis::redis::Script::new(
        "redis.call('HSET', KEYS[1], 's', tonumber(ARGV[1]), 'u', tonumber(ARGV[2])) return 1",
    )
    .key(format!("{prefix}:v1:{{tenant-a}}:fixed"))
    .arg(start)
    .arg(7)
    .invoke_async(&mut connection)
    .await
    .unwrap();
    let checks = [check("fixed", &per_minute, 1)];
    let first = limiter.check("tenant-a", &checks, T0).await.0;
    assert!(first.allowed);
    assert_eq!(first.outcomes[0].remaining, 2);
    assert!(limiter.check("tenant-a", &checks, T0).await.0.allowed);
    assert!(limiter.check("tenant-a", &checks, T0).await.0.allowed);
    assert!(!limiter.check("tenant-a", &checks, T0).await.0.allowed);
}
