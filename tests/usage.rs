//! The usage pipeline end to end: the edge's sender library against the
//! real usage service, which is killed and restarted mid-stream, and a
//! sender restarted with a spooled backlog. Every event must be stored
//! exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_auth::AuthConfig;
use gateway_proto::timestamp_from_micros;
use gateway_proto::usage::v1 as pb;
use gateway_runtime::CancellationToken;
use gateway_runtime::process::RuntimeConfig;
use gateway_storage::{ConnectOptions, Database};
use gateway_testkit::TestDatabase;
use gateway_usage::{Config, Usage};
use gateway_usage_sender::{SenderConfig, UsageSender};

const ADMIN_KEY: &str = "e2e-usage-admin-key-0123";

/// One usage service "process": its own runtime on its own thread, so a
/// kill drops every task and connection at once, mid-stream.
struct Service {
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn start_usage(addr: SocketAddr, database_url: &str, audit_dir: &std::path::Path) -> Service {
    let config = Config {
        database_url: database_url.to_owned(),
        audit_dir: audit_dir.display().to_string(),
        ..Config::default()
    };
    let auth = AuthConfig {
        admin_key: ADMIN_KEY.into(),
        jwt_secret: "an-e2e-only-jwt-secret-of-32-bytes!!".into(),
        ..AuthConfig::default()
    };
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let (ready, is_ready) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let usage = Usage::open(&config, &auth).await.unwrap();
            // The port was just freed by the killed process: retry the bind.
            let listener = loop {
                match tokio::net::TcpListener::bind(addr).await {
                    Ok(listener) => break listener,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            };
            let _ = ready.send(());
            let runtime_config = RuntimeConfig::default();
            tokio::select! {
                _ = usage.serve(listener, CancellationToken::new(), &runtime_config) => {}
                _ = killed => {}
            }
        });
        // Like a killed process: no draining, every task dropped.
        runtime.shutdown_background();
    });
    is_ready.await.unwrap();
    Service {
        kill: Some(kill),
        thread: Some(thread),
    }
}

impl Service {
    async fn kill(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            tokio::task::spawn_blocking(move || thread.join().unwrap())
                .await
                .unwrap();
        }
    }
}

fn event(index: usize) -> pb::UsageEvent {
    pb::UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time: Some(timestamp_from_micros(gateway_storage::now_micros())),
        tenant_id: "tenant-a".to_owned(),
        key_id: format!("key-{}", index % 7),
        model: "gpt-4o".to_owned(),
        status: 200,
        prompt_tokens: 3,
        cost_micros: 5,
        bodies: index.is_multiple_of(50).then(|| pb::AuditBodies {
            request_body: format!("request {index}").into_bytes(),
            ..pb::AuditBodies::default()
        }),
        ..pb::UsageEvent::default()
    }
}

async fn stored_ids(database_url: &str) -> Vec<String> {
    let db = Database::connect(database_url, &ConnectOptions::default())
        .await
        .unwrap();
    let ids = sqlx::query_scalar("SELECT event_id FROM usage_events")
        .fetch_all(db.pool())
        .await
        .unwrap();
    db.close().await;
    ids
}

/// Polls until `expected` events are stored (or the deadline passes).
async fn wait_for(database_url: &str, expected: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ids = stored_ids(database_url).await;
        if ids.len() >= expected || tokio::time::Instant::now() > deadline {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn free_addr() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn sender_config(addr: SocketAddr, spool: &std::path::Path) -> SenderConfig {
    let mut config = SenderConfig::new(format!("http://{addr}"), ADMIN_KEY, spool);
    config.batch_max_events = 200;
    config
}

async fn ten_thousand_events_survive_a_killed_usage_service(db: TestDatabase) {
    let audit = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let service = start_usage(addr, db.url(), audit.path()).await;
    let shutdown = CancellationToken::new();
    let (sender, task) =
        UsageSender::start(sender_config(addr, spool.path()), shutdown.clone()).unwrap();
    let mut sent = HashSet::new();
    let mut service = Some(service);
    for index in 0..10_000 {
        let event = event(index);
        sent.insert(event.event_id.clone());
        sender.send(event);
        if index % 100 == 99 {
            // The edge sends as requests complete, not all at once.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if index == 4_000 {
            // Wait until a good share is stored, then kill the service.
            wait_for(db.url(), 2_000).await;
            service.take().unwrap().kill().await;
        }
        if index == 6_000 {
            service = Some(start_usage(addr, db.url(), audit.path()).await);
        }
    }
    let ids = wait_for(db.url(), 10_000).await;
    let stored: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), stored.len(), "no event is stored twice");
    assert_eq!(stored.len(), 10_000, "stats: {:?}", sender.stats());
    assert_eq!(stored, sent, "every sent event is stored");
    let stats = sender.stats();
    assert_eq!(stats.dropped, 0);
    assert!(
        stats.spooled > 0,
        "the outage sent events through the spool: {stats:?}"
    );
    shutdown.cancel();
    task.await.unwrap();
    service.unwrap().kill().await;
}

async fn a_restarted_sender_replays_its_spool(db: TestDatabase) {
    let audit = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    // The usage service is down: everything goes to the spool.
    let shutdown = CancellationToken::new();
    let (sender, task) =
        UsageSender::start(sender_config(addr, spool.path()), shutdown.clone()).unwrap();
    let mut sent = HashSet::new();
    for index in 0..2_000 {
        let event = event(index);
        sent.insert(event.event_id.clone());
        sender.send(event);
    }
    // The edge restarts: its sender stops with events only in the spool.
    shutdown.cancel();
    task.await.unwrap();
    let stats = sender.stats();
    assert!(stats.spooled_bytes > 0 && stats.acked == 0, "{stats:?}");
    drop(sender);

    let service = start_usage(addr, db.url(), audit.path()).await;
    let shutdown = CancellationToken::new();
    let (sender, task) =
        UsageSender::start(sender_config(addr, spool.path()), shutdown.clone()).unwrap();
    let ids = wait_for(db.url(), 2_000).await;
    let stored: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), stored.len());
    assert_eq!(stored, sent, "stats: {:?}", sender.stats());
    shutdown.cancel();
    task.await.unwrap();
    service.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_killed_usage_service_on_sqlite() {
    ten_thousand_events_survive_a_killed_usage_service(TestDatabase::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_survive_a_killed_usage_service_on_postgres() {
    let Some(db) = TestDatabase::postgres().await else {
        return;
    };
    ten_thousand_events_survive_a_killed_usage_service(db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sender_replays_its_spool_on_sqlite() {
    a_restarted_sender_replays_its_spool(TestDatabase::sqlite().await).await;
}
