//! Request handling at the edge: path normalisation before routing, the
//! per-month limit's message and headers, and `X-Client-ID` limits for
//! registered and unregistered clients.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use gateway_e2e::{Backend, Credentials, TenantFixture, TestSuite};
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use http::StatusCode;

mod edge_support;

use edge_support::*;

async fn plan(
    suite: &TestSuite,
    tenant: &TenantFixture,
    per_minute: Option<i64>,
    per_month: Option<i64>,
) -> String {
    let plan = quota::Plan {
        name: format!("plan-{per_minute:?}-{per_month:?}"),
        requests_per_minute: per_minute,
        requests_per_month: per_month,
        ..Default::default()
    };
    create_plan(suite, tenant, plan).await.id
}

/// `(status, headers, body)` of a GET with a key and an optional client id.
async fn get(
    client: &HttpClient,
    edge: std::net::SocketAddr,
    path: &str,
    key: &str,
    client_id: Option<&str>,
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let headers: Vec<(&str, &str)> = client_id
        .map(|id| ("x-client-id", id))
        .into_iter()
        .collect();
    send(client, edge, "GET", path, key, &headers).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_routing_and_escapes_refused() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    create_api(&suite, &acme, "echo", &format!("http://{upstream}/base"))
        .await
        .unwrap();
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/echo/", &key).await;

    for (path, upstream_path) in [
        ("/acme/echo/v1/../v2/items", "/base/v2/items"),
        ("/acme//echo///v1//items", "/base/v1/items"),
        ("/acme/echo/./v1/./items", "/base/v1/items"),
        ("/acme/echo/v1/items/..", "/base/v1/"),
        ("/acme/echo/file%2etxt", "/base/file%2etxt"),
    ] {
        let (status, headers, _) = get(&client, edge, path, &key, None).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(headers["x-upstream-path"], upstream_path, "{path}");
    }
    for (path, detail) in [
        (
            "/acme/echo/../../../etc/passwd",
            "the path climbs above the API's root",
        ),
        ("/acme/echo/..", "the path climbs above the API's root"),
        (
            "/acme/../globex/echo/x",
            "the path climbs above the API's root",
        ),
        (
            "/acme/echo/%2e%2e/%2e%2e/etc/passwd",
            "the path contains an encoded dot segment (%2E)",
        ),
        (
            "/acme/echo/..%2fetc%2fpasswd",
            "the path contains an encoded slash or backslash (%2F, %5C)",
        ),
        (
            "/acme/echo/a%5Cb",
            "the path contains an encoded slash or backslash (%2F, %5C)",
        ),
    ] {
        let answer = get(&client, edge, path, &key, None).await;
        let problem = problem_of(&answer, StatusCode::BAD_REQUEST);
        assert_eq!(problem["detail"], detail, "{path}");
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monthly_limit_says_monthly_rate_limit_exceeded() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    create_api(&suite, &acme, "echo", &format!("http://{upstream}/"))
        .await
        .unwrap();
    let plan_id = plan(&suite, &acme, None, Some(3)).await;
    let (_, key) = create_key(&suite, &acme, "monthly", &plan_id).await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let first = first_served(&client, edge, "/acme/echo/1", &key).await;
    assert_eq!(first.0, StatusCode::OK);
    for attempt in 2..=3 {
        let (status, _, _) = get(&client, edge, "/acme/echo/n", &key, None).await;
        assert_eq!(status, StatusCode::OK, "request {attempt}");
    }
    let refused = get(&client, edge, "/acme/echo/4", &key, None).await;
    let problem = problem_of(&refused, StatusCode::TOO_MANY_REQUESTS);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("Monthly rate limit exceeded: requests per month"),
        "{detail}"
    );
    let headers = &refused.1;
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    assert_eq!(headers["ratelimit-policy"], "\"requests-per-month\";q=3");
    let reset: i64 = headers["ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // The month ends within 31 days, and Retry-After says the same.
    assert!((1..=31 * 86_400).contains(&reset), "{reset}");
    assert_eq!(headers["retry-after"], headers["ratelimit-reset"]);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_count_the_keys_plan_per_value_up_to_a_cap() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    create_api(&suite, &acme, "echo", &format!("http://{upstream}/"))
        .await
        .unwrap();
    let two_a_minute = plan(&suite, &acme, Some(2), None).await;
    let one_a_minute = plan(&suite, &acme, Some(1), None).await;
    let (_, key) = create_key(&suite, &acme, "shared", &two_a_minute).await;
    // A registered client keeps its own plan.
    let mut identity = suite
        .identity_as(Credentials::bearer(&acme.admin_token))
        .await;
    identity
        .create_client(id::CreateClientRequest {
            client: Some(id::Client {
                name: "Registered".to_owned(),
                client_id: "registered-app".to_owned(),
                plan_id: one_a_minute,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let shutdown = gateway_runtime::CancellationToken::new();
    let edge = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
        config.max_client_ids_per_key = 3;
    })
    .await;
    let client = http_client();
    // The registered client: its own plan of one a minute, while the key's
    // two a minute would still admit.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = get(
            &client,
            edge.addr,
            "/acme/echo/",
            &key,
            Some("registered-app"),
        )
        .await;
        if status != StatusCode::NOT_FOUND {
            assert_eq!(status, StatusCode::OK);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the API never reached the edge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = get(
        &client,
        edge.addr,
        "/acme/echo/",
        &key,
        Some("registered-app"),
    )
    .await;
    problem_of(&refused, StatusCode::TOO_MANY_REQUESTS);

    // Each unregistered value has the key's two a minute of its own.
    for value in ["app-a", "app-b"] {
        for attempt in 0..2 {
            let (status, _, _) = get(&client, edge.addr, "/acme/echo/", &key, Some(value)).await;
            assert_eq!(status, StatusCode::OK, "{value} attempt {attempt}");
        }
        let refused = get(&client, edge.addr, "/acme/echo/", &key, Some(value)).await;
        let problem = problem_of(&refused, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("Rate limit exceeded"),
            "{problem}"
        );
    }
    // A third unregistered value fits the cap of three; a fourth does not.
    let (status, _, _) = get(&client, edge.addr, "/acme/echo/", &key, Some("app-c")).await;
    assert_eq!(status, StatusCode::OK);
    let capped = get(&client, edge.addr, "/acme/echo/", &key, Some("app-d")).await;
    let problem = problem_of(&capped, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("3 distinct X-Client-ID values"),
        "{problem}"
    );
    assert!(capped.1.contains_key("retry-after"));
    // A malformed value is a 400.
    let bad = get(&client, edge.addr, "/acme/echo/", &key, Some("has space")).await;
    problem_of(&bad, StatusCode::BAD_REQUEST);
    shutdown.cancel();
    let _ = edge.serving.await;
    suite.stop().await.unwrap();
}
