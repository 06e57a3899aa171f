//! `kill -9` of the whole `gatewayd` process under load loses no usage
//! event: every request that got a complete answer before the kill has
//! exactly one stored event once gatewayd runs again on the same data.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use gateway_testkit::crash::{KillOnDrop, assert_each_stored_once, load_then_kill};

use gateway_proto::usage::v1 as usage;
use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;

const ADMIN_KEY: &str = "crash-test-admin-key-0123456789";
const PATH: &str = "/demo/echo/load";
const ANSWERS: usize = 3_000;

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The listeners, fixed so the restarted process serves the same ports.
#[derive(Clone)]
struct Ports {
    edge: SocketAddr,
    usage: SocketAddr,
    others: Vec<(&'static str, SocketAddr)>,
}

fn start(data: &Path, ports: &Ports) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayd"));
    command
        .arg("--demo")
        .current_dir(data)
        .env_clear()
        .env("GATEWAY_EDGE_LISTEN_ADDR", ports.edge.to_string())
        .env("GATEWAY_USAGE_LISTEN_ADDR", ports.usage.to_string())
        .env("GATEWAY_BOOTSTRAP_PASSWORD", "crash-test-password")
        .env("GATEWAY_AUTH_ADMIN_KEY", ADMIN_KEY)
        // High limits: the load, not a plan, is under test.
        .env("GATEWAY_DEMO_REQUESTS_PER_MINUTE", "100000000")
        .env("GATEWAY_DEMO_REQUESTS_PER_MONTH", "100000000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (name, addr) in &ports.others {
        command.env(name, addr.to_string());
    }
    let mut child = command.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let key = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split_once("X-API-Key: ")
                .and_then(|(_, rest)| rest.split('\'').next().map(str::to_owned))
        })
        .expect("the demo's curl line");
    (child, key)
}

/// request id -> stored events, over every log of the demo API.
async fn stored(usage_addr: SocketAddr) -> Result<HashMap<String, usize>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{usage_addr}"))
        .unwrap()
        .connect()
        .await
        .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
    let mut client = UsageServiceClient::new(channel);
    let mut request = usage::ListLogsRequest {
        page_size: 1000,
        ..Default::default()
    };
    let mut counts = HashMap::new();
    loop {
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut()
            .insert("x-admin-key", ADMIN_KEY.parse().unwrap());
        let page = client.list_logs(call).await?.into_inner();
        for event in page.logs.into_iter().filter_map(|log| log.event) {
            if event.path == PATH {
                *counts.entry(event.request_id).or_insert(0) += 1;
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(counts);
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_gatewayd_loses_no_usage_event_of_an_answered_request() {
    let data = tempfile::tempdir().unwrap();
    let others = [
        "GATEWAY_IDENTITY_LISTEN_ADDR",
        "GATEWAY_CATALOG_LISTEN_ADDR",
        "GATEWAY_QUOTA_LISTEN_ADDR",
        "GATEWAY_CONSOLE_LISTEN_ADDR",
        "GATEWAY_RUNTIME_OPS_ADDR",
    ];
    let ports = Ports {
        edge: free_addr(),
        usage: free_addr(),
        others: others.into_iter().map(|name| (name, free_addr())).collect(),
    };
    let (dir, first) = (data.path().to_owned(), ports.clone());
    let answered = tokio::task::spawn_blocking(move || {
        let (child, key) = start(&dir, &first);
        let mut child = KillOnDrop(child);
        load_then_kill(first.edge, PATH, &key, ANSWERS, &mut child.0)
    })
    .await
    .unwrap();
    assert!(answered.len() >= ANSWERS, "{}", answered.len());

    let (dir, again) = (data.path().to_owned(), ports.clone());
    let restarted = tokio::task::spawn_blocking(move || start(&dir, &again).0)
        .await
        .unwrap();
    let mut restarted = KillOnDrop(restarted);
    assert_each_stored_once(&answered, || async {
        stored(ports.usage).await.unwrap_or_default()
    })
    .await;
    restarted.0.kill().unwrap();
    restarted.0.wait().unwrap();
}
