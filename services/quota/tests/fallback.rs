//! The fallback when Redis goes away and comes back. A test binary of its
//! own, so that no other test loads the machine while it times answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_quota::limiter::redis::RedisLimiter;
use gateway_quota::limiter::{Algorithm, Backend, Check, Limit, Limiter, Window};
use tokio::net::TcpListener;
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

fn redis_limiter(url: &str, prefix: &str) -> Limiter {
    Limiter::with_redis(
        RedisLimiter::new(url, prefix, Duration::from_millis(20)).unwrap(),
        Duration::from_millis(200),
    )
}

/// A TCP proxy in front of Redis that the test can cut and restore, as if
/// Redis stopped and started.
struct Proxy {
    addr: std::net::SocketAddr,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(addr: std::net::SocketAddr, upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, tasks }
    }

    async fn stop(mut self) -> std::net::SocketAddr {
        self.tasks.shutdown().await;
        self.addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_stops_answers_come_from_memory_within_fifty_ms_and_redis_resumes() {
    let Some(url) = gateway_testkit::server_url(gateway_testkit::REDIS_URL_ENV) else {
        return;
    };
    let upstream: std::net::SocketAddr =
        tokio::net::lookup_host(url.trim_start_matches("redis://").trim_end_matches('/'))
            .await
            .unwrap()
            .next()
            .unwrap();
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), upstream).await;
    let prefix = format!("gwtest-{}", uuid::Uuid::now_v7().simple());
    let through_proxy = format!("redis://{}", proxy.addr);
    let limiter = redis_limiter(&through_proxy, &prefix);
    let health = limiter.redis_health().expect("redis is configured");
    let per_hour = limit(1_000, Window::Hour, Algorithm::FixedWindow, 0);
    // The first call also connects and loads the script, which can take
    // longer than the 20 ms budget on a busy machine: wait for Redis to
    // answer once before cutting it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (decision, backend) = limiter.check("t", &[check("k", &per_hour, 0)], T0).await;
        if backend == Backend::Redis {
            assert!(decision.allowed);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never answered"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (decision, backend) = limiter.check("t", &[check("k", &per_hour, 10)], T0).await;
    assert!(decision.allowed);
    assert_eq!(backend, Backend::Redis);

    let addr = proxy.stop().await;
    for attempt in 0..20 {
        let started = tokio::time::Instant::now();
        let (decision, backend) = limiter
            .check("t", &[check("k", &per_hour, 1)], T0 + SECOND)
            .await;
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_millis(50),
            "attempt {attempt} took {elapsed:?}"
        );
        assert!(decision.allowed);
        assert_eq!(backend, Backend::MemoryFallback, "attempt {attempt}");
    }
    assert_eq!(limiter.backend(), Backend::MemoryFallback);
    assert!(!*health.borrow(), "health reports the fallback");

    // Redis is back: after the breaker's pause, counting is shared again,
    // and what was counted in Redis before the outage is still there.
    let _proxy = Proxy::start(addr, upstream).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let decision = loop {
        let (decision, backend) = limiter
            .check("t", &[check("k", &per_hour, 1)], T0 + 2 * SECOND)
            .await;
        if backend == Backend::Redis {
            break decision;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "redis never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(decision.outcomes[0].remaining, 1_000 - 10 - 1);
    assert!(*health.borrow(), "health reports redis again");
    let other_instance = redis_limiter(&url, &prefix);
    let (shared, _) = other_instance
        .check("t", &[check("k", &per_hour, 0)], T0 + 3 * SECOND)
        .await;
    assert_eq!(
        shared.outcomes[0].remaining,
        1_000 - 11,
        "another replica sees the same count"
    );
}
