//! `kill -9` of the standalone edge binary under load loses no usage event:
//! every request that got a complete answer before the kill has exactly
//! one stored event once an edge runs again on the same spool. (The same
//! for the whole gatewayd process is services/gatewayd/tests/crash.rs.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod edge_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_e2e::{
    ADMIN_KEY, Backend, Credentials, LOOPBACK_UPSTREAMS, TestSuite, free_addr, url,
    workspace_binary,
};
use gateway_proto::usage::v1 as usage;
use gateway_testkit::crash::{KillOnDrop, assert_each_stored_once, load_then_kill};

const PATH: &str = "/acme/echo/load";
const ANSWERS: usize = 3_000;

fn start_edge(suite: &TestSuite, edge: SocketAddr, spool: &Path) -> Child {
    let mut command = Command::new(workspace_binary("gateway-edge"));
    command
        .env_clear()
        .env("GATEWAY_EDGE_LISTEN_ADDR", edge.to_string())
        .env("GATEWAY_RUNTIME_OPS_ADDR", free_addr().to_string())
        .env("GATEWAY_EDGE_IDENTITY_URL", url(suite.addresses.identity))
        .env("GATEWAY_EDGE_CATALOG_URL", url(suite.addresses.catalog))
        .env("GATEWAY_EDGE_QUOTA_URL", url(suite.addresses.quota))
        .env("GATEWAY_EDGE_USAGE_URL", url(suite.addresses.usage))
        .env("GATEWAY_EDGE_SPOOL_DIR", spool.display().to_string())
        .env("GATEWAY_AUTH_ADMIN_KEY", ADMIN_KEY)
        .env("GATEWAY_EGRESS_ALLOW", LOOPBACK_UPSTREAMS)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().unwrap()
}

/// Waits until the edge answers `path` with something but 404/503 (its
/// catalog and keys are loaded).
fn wait_served(edge: SocketAddr, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway_testkit::crash::call(edge, PATH, key).is_none() {
        assert!(Instant::now() < deadline, "the edge never served {PATH}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// request id -> stored events of `PATH`.
async fn stored(suite: &TestSuite) -> HashMap<String, usize> {
    let mut client = suite.usage_as(Credentials::admin_key()).await;
    let mut request = usage::ListLogsRequest {
        page_size: 1000,
        ..Default::default()
    };
    let mut counts = HashMap::new();
    loop {
        let page = client
            .list_logs(request.clone())
            .await
            .unwrap()
            .into_inner();
        for event in page.logs.into_iter().filter_map(|log| log.event) {
            if event.path == PATH {
                *counts.entry(event.request_id).or_insert(0) += 1;
            }
        }
        if page.next_page_token.is_empty() {
            return counts;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_edge_loses_no_usage_event_of_an_answered_request() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let tenant = suite.tenant("acme").await;
    let upstream = edge_support::start_upstream().await;
    edge_support::register_api(&suite, &tenant, upstream).await;
    let (_, key) = edge_support::create_key(&suite, &tenant, "load", "").await;
    let spool = tempfile::tempdir().unwrap();
    let edge = free_addr();

    let (dir, first_key) = (spool.path().to_owned(), key.clone());
    let child = start_edge(&suite, edge, &dir);
    let answered = tokio::task::spawn_blocking(move || {
        let mut child = KillOnDrop(child);
        wait_served(edge, &first_key);
        load_then_kill(edge, PATH, &first_key, ANSWERS, &mut child.0)
    })
    .await
    .unwrap();
    assert!(answered.len() >= ANSWERS);

    let _restarted = KillOnDrop(start_edge(&suite, edge, spool.path()));
    assert_each_stored_once(&answered, || stored(&suite)).await;
    suite.stop().await.unwrap();
}
