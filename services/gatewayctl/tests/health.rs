//! `gatewayctl health` against a running suite, and against nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use gateway_e2e::{Backend, TestSuite, url};

fn gatewayctl(args: &[String]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gatewayctl"))
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_every_service_serving() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let args = vec![
        "--identity-url".to_owned(),
        url(suite.addresses.identity),
        "--catalog-url".to_owned(),
        url(suite.addresses.catalog),
        "--quota-url".to_owned(),
        url(suite.addresses.quota),
        "--usage-url".to_owned(),
        url(suite.addresses.usage),
        "health".to_owned(),
    ];
    let (success, stdout) = tokio::task::spawn_blocking(move || gatewayctl(&args))
        .await
        .unwrap();
    assert!(success, "{stdout}");
    assert_eq!(stdout.matches("SERVING").count(), 4, "{stdout}");

    // A service that is down: usage pointed at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let args = vec![
        "--identity-url".to_owned(),
        url(suite.addresses.identity),
        "--catalog-url".to_owned(),
        url(suite.addresses.catalog),
        "--quota-url".to_owned(),
        url(suite.addresses.quota),
        "--usage-url".to_owned(),
        url(closed),
        "--timeout-ms".to_owned(),
        "500".to_owned(),
        "health".to_owned(),
    ];
    let (success, stdout) = tokio::task::spawn_blocking(move || gatewayctl(&args))
        .await
        .unwrap();
    assert!(!success, "an unreachable service fails the check: {stdout}");
    assert!(
        stdout.contains("usage") && stdout.contains("UNREACHABLE"),
        "{stdout}"
    );
    suite.stop().await.unwrap();
}
