//! The edge-side catalog client: a change is visible within one second, it
//! survives a catalog restart (serving the last snapshot meanwhile), and it
//! works with two catalog replicas on one database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use gateway_catalog_client::{CatalogCache, Connection, follow};
use gateway_proto::catalog::v1 as pb;
use gateway_runtime::CancellationToken;
use gateway_testkit::TestDatabase;
use support::{ADMIN_KEY, Suite};

fn create_api(tenant_id: &str, slug: &str) -> pb::CreateApiRequest {
    pb::CreateApiRequest {
        api: Some(pb::Api {
            tenant_id: tenant_id.to_owned(),
            name: slug.to_owned(),
            slug: slug.to_owned(),
            upstreams: vec![pb::UpstreamTarget {
                url: "http://127.0.0.1:9000".to_owned(),
                weight: 1,
            }],
            upstream_auth: Some(pb::UpstreamAuth {
                header_name: "x-key".to_owned(),
                secret_hint: String::new(),
            }),
            enabled: true,
            ..Default::default()
        }),
        upstream_auth_secret: format!("secret-of-{slug}"),
    }
}

fn following(endpoint: &str, shutdown: &CancellationToken) -> CatalogCache {
    let cache = CatalogCache::new();
    tokio::spawn(follow(
        Connection {
            endpoint: endpoint.to_owned(),
            credential: ("x-admin-key", ADMIN_KEY.to_owned()),
        },
        cache.clone(),
        shutdown.clone(),
    ));
    cache
}

async fn visible_within(
    cache: &CatalogCache,
    tenant_id: &str,
    slug: &str,
    limit: Duration,
) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(entry) = cache.view().api(tenant_id, slug) {
            assert_eq!(entry.upstream_auth_secret, format!("secret-of-{slug}"));
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{slug} not visible within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn sqlite_suite() -> Suite {
    Suite::start(TestDatabase::sqlite().await, TestDatabase::sqlite().await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_visible_to_the_cache_within_one_second() {
    let suite = sqlite_suite().await;
    let tenant = suite.tenant("acme").await;
    let shutdown = CancellationToken::new();
    let cache = following(&suite.catalog_url, &shutdown);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cache.is_primed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first snapshot arrives");

    suite
        .catalog_root()
        .await
        .create_api(create_api(&tenant.id, "orders"))
        .await
        .unwrap();
    let elapsed = visible_within(&cache, &tenant.id, "orders", Duration::from_secs(1)).await;
    assert!(elapsed < Duration::from_secs(1));
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_the_last_snapshot_while_the_catalog_restarts_then_catches_up() {
    let suite = sqlite_suite().await;
    let tenant = suite.tenant("acme").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop_replica = CancellationToken::new();
    let (replica_url, replica) = suite.start_catalog_on(listener, stop_replica.clone()).await;
    let shutdown = CancellationToken::new();
    let cache = following(&replica_url, &shutdown);
    let mut root = suite.catalog_root().await;
    root.create_api(create_api(&tenant.id, "before"))
        .await
        .unwrap();
    visible_within(&cache, &tenant.id, "before", Duration::from_secs(5)).await;

    // The replica the cache follows goes away; the cache keeps serving.
    stop_replica.cancel();
    replica.await.unwrap();
    root.create_api(create_api(&tenant.id, "while-away"))
        .await
        .unwrap();
    assert!(cache.view().api(&tenant.id, "before").is_some());

    // Back on the same address: the cache resumes and catches up.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (_, _replica) = suite
        .start_catalog_on(listener, CancellationToken::new())
        .await;
    visible_within(&cache, &tenant.id, "while-away", Duration::from_secs(10)).await;
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_another_replica_reaches_the_cache_within_one_second() {
    let suite = sqlite_suite().await;
    let tenant = suite.tenant("acme").await;
    let other_replica = suite.start_catalog().await;
    let shutdown = CancellationToken::new();
    let cache = following(&other_replica, &shutdown);
    tokio::time::timeout(Duration::from_secs(5), async {
        while !cache.is_primed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the first snapshot arrives");
    // Written through the first replica, followed through the second.
    suite
        .catalog_root()
        .await
        .create_api(create_api(&tenant.id, "replicated"))
        .await
        .unwrap();
    visible_within(&cache, &tenant.id, "replicated", Duration::from_secs(1)).await;
    shutdown.cancel();
}
