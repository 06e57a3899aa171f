//! The API policies the edge enforces, end to end against real upstream
//! servers: route rules with per-route upstreams and rewrites, load
//! balancing, the connect and read timeouts, retries, circuit breakers and
//! health (active probes and passive ejection).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_e2e::{Backend, Credentials, TenantFixture, TestSuite};
use gateway_proto::catalog::v1 as cat;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;

mod edge_support;

use edge_support::*;

async fn register(suite: &TestSuite, tenant: &TenantFixture, api: cat::Api) {
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    catalog
        .create_api(cat::CreateApiRequest {
            api: Some(cat::Api {
                name: api.slug.clone(),
                enabled: true,
                ..api
            }),
            upstream_auth_secret: String::new(),
        })
        .await
        .unwrap();
}

fn target(addr: SocketAddr, base: &str, weight: i32) -> cat::UpstreamTarget {
    cat::UpstreamTarget {
        url: format!("http://{addr}{base}"),
        weight,
    }
}

fn rule(name: &str, kind: cat::MatchKind, pattern: &str) -> cat::RouteRule {
    cat::RouteRule {
        name: name.to_owned(),
        match_kind: kind.into(),
        pattern: pattern.to_owned(),
        ..Default::default()
    }
}

fn upstream_path(answer: &(StatusCode, http::HeaderMap, bytes::Bytes)) -> String {
    assert_eq!(
        answer.0,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.2)
    );
    answer.1["x-upstream-path"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_choose_upstreams_and_rewrite_paths() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (main, orders) = (start_upstream().await, start_upstream().await);
    let acme = suite.tenant("acme").await;
    let mut users = rule("users", cat::MatchKind::Parameterised, "/users/{id}/orders");
    users.methods = vec!["GET".to_owned()];
    users.rewrite = "/v2/users/{id}".to_owned();
    let mut items = rule("items", cat::MatchKind::Regex, "/items/(?P<sku>[0-9]+)");
    items.rewrite = "/catalog/{sku}".to_owned();
    let mut orders_rule = rule("orders", cat::MatchKind::Prefix, "/orders");
    orders_rule.upstreams = vec![target(orders, "/orders-svc", 1)];
    let mut everything = rule("fallback", cat::MatchKind::Prefix, "/");
    everything.priority = -1;
    everything.methods = vec!["DELETE".to_owned()];
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "shop".to_owned(),
            upstreams: vec![target(main, "/main", 1)],
            routes: vec![
                rule("health", cat::MatchKind::Exact, "/health"),
                users,
                items,
                orders_rule,
                everything,
            ],
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let first = first_served(&client, edge, "/acme/shop/health", &key).await;
    assert_eq!(upstream_path(&first), "/main/health");

    let get = |path: &'static str| send(&client, edge, "GET", path, &key, &[]);
    assert_eq!(
        upstream_path(&get("/acme/shop/users/42/orders?page=2").await),
        "/main/v2/users/42"
    );
    assert_eq!(
        upstream_path(&get("/acme/shop/items/12").await),
        "/main/catalog/12"
    );
    assert_eq!(
        upstream_path(&get("/acme/shop/orders/7").await),
        "/orders-svc/orders/7"
    );
    assert_eq!(
        upstream_path(&get("/acme/shop/orders").await),
        "/orders-svc/orders"
    );
    let deleted = send(&client, edge, "DELETE", "/acme/shop/anything", &key, &[]).await;
    assert_eq!(upstream_path(&deleted), "/main/anything");
    for (method, path) in [
        ("POST", "/acme/shop/users/42/orders"),
        ("GET", "/acme/shop/items/abc"),
        ("GET", "/acme/shop/ordersx"),
        ("GET", "/acme/shop/health/deep"),
    ] {
        let answer = send(&client, edge, method, path, &key, &[]).await;
        let problem = problem_of(&answer, StatusCode::NOT_FOUND);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .starts_with("no route of acme/shop matches"),
            "{method} {path}: {problem}"
        );
    }
    // The matched route's name is in the usage event.
    let has_routes = |events: &[gateway_proto::usage::v1::UsageEvent]| {
        let routes: std::collections::HashSet<&str> =
            events.iter().map(|event| event.route.as_str()).collect();
        ["users", "items", "orders", "health"]
            .iter()
            .all(|name| routes.contains(name))
    };
    let events = usage_events_until(&suite, &acme, has_routes).await;
    assert!(has_routes(&events), "{events:?}");
    suite.stop().await.unwrap();
}

/// How many of `rounds` requests each upstream base path received.
async fn spread(
    client: &HttpClient,
    edge: SocketAddr,
    path: &str,
    key: &str,
    rounds: usize,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..rounds {
        let answer = send(client, edge, "GET", path, key, headers).await;
        let base = upstream_path(&answer).split('/').nth(1).unwrap().to_owned();
        *counts.entry(base).or_insert(0) += 1;
    }
    counts
}

/// An API of one upstream sent without a weight (proto3's 0) is served:
/// the catalog accepts it, so the edge must not treat it as drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_upstream_without_a_weight_is_served() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    let api = cat::Api {
        slug: "lone".to_owned(),
        upstreams: vec![target(upstream, "/lone", 0)],
        ..Default::default()
    };
    register(&suite, &acme, api).await;
    let (_, key) = create_key(&suite, &acme, "lone", "").await;
    let client = http_client();
    let answer = first_served(&client, suite.addresses.edge, "/acme/lone/x", &key).await;
    assert_eq!(upstream_path(&answer), "/lone/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancing_follows_the_apis_algorithm() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstreams = [
        start_upstream().await,
        start_upstream().await,
        start_upstream().await,
    ];
    let acme = suite.tenant("acme").await;
    let targets = |weights: [i32; 3]| {
        upstreams
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(index, (addr, weight))| target(*addr, &format!("/t{index}"), weight))
            .collect::<Vec<_>>()
    };
    for (slug, algorithm, weights, hash_header) in [
        (
            "weighted",
            cat::LoadBalancingAlgorithm::Weighted,
            [3, 1, 0],
            "",
        ),
        ("rr", cat::LoadBalancingAlgorithm::RoundRobin, [5, 1, 1], ""),
        ("random", cat::LoadBalancingAlgorithm::Random, [1, 1, 0], ""),
        (
            "sticky",
            cat::LoadBalancingAlgorithm::ConsistentHash,
            [1, 1, 1],
            "X-User",
        ),
        (
            "least",
            cat::LoadBalancingAlgorithm::LeastRequests,
            [1, 1, 0],
            "",
        ),
    ] {
        register(
            &suite,
            &acme,
            cat::Api {
                slug: slug.to_owned(),
                upstreams: targets(weights),
                load_balancing: Some(cat::LoadBalancing {
                    algorithm: algorithm.into(),
                    hash_header: hash_header.to_owned(),
                }),
                ..Default::default()
            },
        )
        .await;
    }
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    for slug in ["weighted", "rr", "random", "sticky", "least"] {
        first_served(&client, edge, &format!("/acme/{slug}/"), &key).await;
    }

    // Smooth weighted round robin is exact over whole cycles; weight 0
    // drains.
    let weighted = spread(&client, edge, "/acme/weighted/", &key, 40, &[]).await;
    assert_eq!(weighted.get("t0"), Some(&30), "{weighted:?}");
    assert_eq!(weighted.get("t1"), Some(&10), "{weighted:?}");
    assert_eq!(weighted.get("t2"), None, "{weighted:?}");
    // Round robin ignores weights.
    let rr = spread(&client, edge, "/acme/rr/", &key, 30, &[]).await;
    assert!(rr.values().all(|count| *count == 10), "{rr:?}");
    // Random and least-requests use both live targets, never the drained.
    for slug in ["random", "least"] {
        let counts = spread(&client, edge, &format!("/acme/{slug}/"), &key, 60, &[]).await;
        assert!(
            !counts.contains_key("t2") && counts.len() == 2,
            "{slug}: {counts:?}"
        );
    }
    // Consistent hashing: a user keeps its target; users spread out.
    let mut seen = std::collections::HashSet::new();
    for user in 0..12 {
        let user = format!("user-{user}");
        let counts = spread(
            &client,
            edge,
            "/acme/sticky/",
            &key,
            4,
            &[("x-user", &user)],
        )
        .await;
        assert_eq!(counts.len(), 1, "{user} moved: {counts:?}");
        seen.extend(counts.into_keys());
    }
    assert!(seen.len() >= 2, "{seen:?}");
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_and_read_timeouts_answer_504_and_cut_quiet_bodies() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    // Accepts TCP (the kernel's backlog) but never speaks TLS.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trickle = start_trickle_upstream(Duration::from_secs(2)).await;
    let acme = suite.tenant("acme").await;
    let timeouts = |connect_ms: u64, read_ms: u64| cat::Timeouts {
        connect: Some(prost_types::Duration {
            seconds: 0,
            nanos: i32::try_from(connect_ms * 1_000_000).unwrap(),
        }),
        read: Some(prost_types::Duration {
            seconds: 0,
            nanos: i32::try_from(read_ms * 1_000_000).unwrap(),
        }),
        total: None,
    };
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "mute".to_owned(),
            upstreams: vec![cat::UpstreamTarget {
                url: format!("https://{}/", mute.local_addr().unwrap()),
                weight: 1,
            }],
            timeouts: Some(timeouts(200, 900)),
            ..Default::default()
        },
    )
    .await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "trickle".to_owned(),
            upstreams: vec![target(trickle, "/", 1)],
            timeouts: Some(timeouts(900, 500)),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let started = std::time::Instant::now();
    let answer = first_served(&client, edge, "/acme/mute/", &key).await;
    let problem = problem_of(&answer, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        problem["detail"],
        "the upstream did not accept a connection within 200 ms"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // The head and first chunk come at once; the body then pauses for 2 s,
    // past the 500 ms read timeout: the stream is cut.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let response = loop {
        let request = Request::get(format!("http://{edge}/acme/trickle/"))
            .header("x-api-key", &key)
            .body(empty())
            .unwrap();
        let response = client.request(request).await.unwrap();
        if response.status() != StatusCode::NOT_FOUND {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .expect("the quiet body is cut, not waited for");
    assert!(body.is_err(), "the body should end in an error");
    suite.stop().await.unwrap();
}

fn millis(ms: u64) -> Option<prost_types::Duration> {
    Some(prost_types::Duration {
        seconds: i64::try_from(ms / 1000).unwrap(),
        nanos: i32::try_from((ms % 1000) * 1_000_000).unwrap(),
    })
}

fn round_robin() -> Option<cat::LoadBalancing> {
    Some(cat::LoadBalancing {
        algorithm: cat::LoadBalancingAlgorithm::RoundRobin.into(),
        hash_header: String::new(),
    })
}

/// `(status, upstream base)` of one call; the base is "-" for answers the
/// edge made itself.
async fn hit(
    client: &HttpClient,
    edge: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
) -> (StatusCode, String) {
    let (status, headers, _) = send(client, edge, method, path, key, &[]).await;
    let base = headers
        .get("x-upstream-path")
        .and_then(|value| value.to_str().ok())
        .and_then(|path| path.split('/').nth(1))
        .unwrap_or("-")
        .to_owned();
    (status, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_fail_over_to_another_target_only_where_safe() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let good = start_upstream().await;
    let (failing, failing_status) = start_switchable_upstream().await;
    failing_status.store(503, std::sync::atomic::Ordering::Relaxed);
    let dead = closed_port();
    let acme = suite.tenant("acme").await;
    let retry = |statuses: Vec<i32>, on_connect: bool| {
        Some(cat::RetryPolicy {
            max_attempts: 3,
            retry_on_statuses: statuses,
            retry_on_connect_failure: on_connect,
            initial_backoff: millis(5),
            max_backoff: millis(20),
            retry_non_idempotent: false,
        })
    };
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "statuses".to_owned(),
            upstreams: vec![target(failing, "/bad", 1), target(good, "/good", 1)],
            load_balancing: round_robin(),
            retry: retry(vec![503], false),
            ..Default::default()
        },
    )
    .await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "connect".to_owned(),
            upstreams: vec![target(dead, "/dead", 1), target(good, "/good", 1)],
            load_balancing: round_robin(),
            retry: retry(Vec::new(), true),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/statuses/", &key).await;
    first_served(&client, edge, "/acme/connect/", &key).await;
    for slug in ["statuses", "connect"] {
        for round in 0..8 {
            let (status, base) = hit(&client, edge, "GET", &format!("/acme/{slug}/"), &key).await;
            assert_eq!(
                (status, base.as_str()),
                (StatusCode::OK, "good"),
                "{slug} round {round}"
            );
        }
    }
    // POST is not idempotent: the failing target's 503 reaches the client.
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(hit(&client, edge, "POST", "/acme/statuses/", &key).await);
    }
    assert!(
        answers.contains(&(StatusCode::SERVICE_UNAVAILABLE, "bad".to_owned())),
        "{answers:?}"
    );
    assert!(
        answers.contains(&(StatusCode::OK, "good".to_owned())),
        "{answers:?}"
    );
    // Usage events record the attempts (a retried GET took two).
    let both = |events: &[gateway_proto::usage::v1::UsageEvent]| {
        let attempts: Vec<i32> = events
            .iter()
            .filter(|event| event.method == "GET" && event.status == 200)
            .map(|event| event.attempts)
            .collect();
        attempts.contains(&2) && attempts.contains(&1)
    };
    let events = usage_events_until(&suite, &acme, both).await;
    assert!(both(&events), "{events:?}");
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opens_on_failures_and_closes_after_a_good_probe() {
    use std::sync::atomic::Ordering;
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (flaky, flaky_status) = start_switchable_upstream().await;
    let acme = suite.tenant("acme").await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "flaky".to_owned(),
            upstreams: vec![target(flaky, "/flaky", 1)],
            circuit_breaker: Some(cat::CircuitBreaker {
                enabled: true,
                consecutive_failures: 3,
                open_duration: millis(700),
                half_open_requests: 1,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/flaky/", &key).await;
    flaky_status.store(500, Ordering::Relaxed);
    for _ in 0..3 {
        assert_eq!(
            hit(&client, edge, "GET", "/acme/flaky/", &key).await,
            (StatusCode::INTERNAL_SERVER_ERROR, "flaky".to_owned())
        );
    }
    // Open: the edge answers without calling the upstream.
    let open = send(&client, edge, "GET", "/acme/flaky/", &key, &[]).await;
    let problem = problem_of(&open, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        problem["detail"],
        "no upstream target of this API is available"
    );
    assert_eq!(open.1["retry-after"], "1");
    // After open_duration one probe goes through; a good one closes it.
    flaky_status.store(200, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(800)).await;
    for _ in 0..3 {
        assert_eq!(
            hit(&client, edge, "GET", "/acme/flaky/", &key).await,
            (StatusCode::OK, "flaky".to_owned())
        );
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_targets_get_no_traffic_until_they_recover() {
    use std::sync::atomic::Ordering;
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let good = start_upstream().await;
    let (probed, probed_status) = start_switchable_upstream().await;
    let (failing, failing_status) = start_switchable_upstream().await;
    let acme = suite.tenant("acme").await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "probed".to_owned(),
            upstreams: vec![target(probed, "/probed", 1), target(good, "/good", 1)],
            load_balancing: round_robin(),
            health_check: Some(cat::HealthCheck {
                enabled: true,
                path: "/healthz".to_owned(),
                interval: millis(100),
                timeout: millis(500),
                healthy_threshold: 1,
                unhealthy_threshold: 1,
                expected_statuses: vec![200],
            }),
            ..Default::default()
        },
    )
    .await;
    // Probes almost never run here: only passive detection acts.
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "passive".to_owned(),
            upstreams: vec![target(failing, "/failing", 1), target(good, "/good", 1)],
            load_balancing: round_robin(),
            health_check: Some(cat::HealthCheck {
                enabled: true,
                path: "/healthz".to_owned(),
                interval: millis(3_600_000),
                timeout: millis(500),
                healthy_threshold: 1,
                unhealthy_threshold: 2,
                expected_statuses: Vec::new(),
            }),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/probed/", &key).await;
    first_served(&client, edge, "/acme/passive/", &key).await;

    probed_status.store(503, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..6 {
        assert_eq!(
            hit(&client, edge, "GET", "/acme/probed/", &key).await.1,
            "good"
        );
    }
    probed_status.store(200, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bases = std::collections::HashSet::new();
    for _ in 0..4 {
        bases.insert(hit(&client, edge, "GET", "/acme/probed/", &key).await.1);
    }
    assert!(bases.contains("probed"), "{bases:?}");

    failing_status.store(500, Ordering::Relaxed);
    let mut failures = 0;
    for _ in 0..6 {
        if hit(&client, edge, "GET", "/acme/passive/", &key).await.0 != StatusCode::OK {
            failures += 1;
        }
    }
    assert_eq!(failures, 2, "ejected after two consecutive failures");
    for _ in 0..6 {
        assert_eq!(
            hit(&client, edge, "GET", "/acme/passive/", &key).await.1,
            "good"
        );
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflights_are_answered_by_the_edge_and_transforms_apply() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    let edits = |set: &[(&str, &str)], remove: &[&str], rename: &[(&str, &str)]| {
        Some(cat::HeaderTransform {
            set: set
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            remove: remove.iter().map(|name| (*name).to_owned()).collect(),
            rename: rename
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    };
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "web".to_owned(),
            upstreams: vec![target(upstream, "/svc", 1)],
            cors: Some(cat::CorsPolicy {
                enabled: true,
                allowed_origins: vec!["https://app.example".to_owned()],
                allowed_methods: vec!["GET".to_owned(), "POST".to_owned()],
                allowed_headers: vec!["content-type".to_owned(), "x-api-key".to_owned()],
                expose_headers: vec!["x-request-id".to_owned()],
                allow_credentials: true,
                max_age: Some(prost_types::Duration {
                    seconds: 600,
                    nanos: 0,
                }),
            }),
            transform: Some(cat::TransformPolicy {
                // The upstream echoes x-upstream-token back as x-seen-x-upstream-token.
                request_headers: edits(&[("x-upstream-token", "from-transform")], &[], &[]),
                response_headers: edits(
                    &[("x-served-by", "edge")],
                    &["x-seen-traceparent"],
                    &[("x-upstream-method", "x-method")],
                ),
                strip_path_prefix: "/public".to_owned(),
                add_path_prefix: "/v2".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/web/", &key).await;

    // A preflight: no key, never reaches the upstream.
    let preflight = |origin: &'static str| {
        Request::builder()
            .method("OPTIONS")
            .uri(format!("http://{edge}/acme/web/public/items"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key")
            .body(empty())
            .unwrap()
    };
    let allowed = client
        .request(preflight("https://app.example"))
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert_eq!(headers["access-control-allow-methods"], "GET, POST");
    assert_eq!(headers["access-control-max-age"], "600");
    assert!(headers.get("x-upstream-path").is_none(), "not proxied");
    let refused = client
        .request(preflight("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::NO_CONTENT);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // The actual request: CORS headers, and every transform.
    let answer = send(
        &client,
        edge,
        "GET",
        "/acme/web/public/items",
        &key,
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(answer.0, StatusCode::OK);
    let headers = &answer.1;
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(headers["access-control-expose-headers"], "x-request-id");
    assert_eq!(headers["x-upstream-path"], "/svc/v2/items");
    assert_eq!(headers["x-seen-x-upstream-token"], "from-transform");
    assert_eq!(headers["x-served-by"], "edge");
    assert_eq!(headers["x-method"], "GET");
    assert!(
        headers.get("x-upstream-method").is_none() && headers.get("x-seen-traceparent").is_none()
    );
    let other = send(
        &client,
        edge,
        "GET",
        "/acme/web/x",
        &key,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert!(other.1.get("access-control-allow-origin").is_none());

    suite.stop().await.unwrap();
}

fn cache_policy(vary: &[&str]) -> Option<cat::CachePolicy> {
    Some(cat::CachePolicy {
        enabled: true,
        ttl: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        vary_headers: vary.iter().map(|name| (*name).to_owned()).collect(),
        ..Default::default()
    })
}

type Answer = (StatusCode, http::HeaderMap, bytes::Bytes);

fn cache_result(answer: &Answer) -> (&str, String) {
    assert!(
        answer.0.is_success() || answer.0 == StatusCode::NOT_MODIFIED,
        "{answer:?}"
    );
    (
        answer.1["x-cache"].to_str().unwrap(),
        String::from_utf8_lossy(&answer.2).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_cache_follows_http_caching_rules_and_stays_within_the_tenant() {
    use std::sync::atomic::Ordering;
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let (upstream, served) = start_cache_upstream().await;
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    for tenant in [&acme, &globex] {
        register(
            &suite,
            tenant,
            cat::Api {
                slug: "cached".to_owned(),
                upstreams: vec![target(upstream, "/", 1)],
                cache: cache_policy(&["accept-language"]),
                ..Default::default()
            },
        )
        .await;
    }
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let shutdown = gateway_runtime::CancellationToken::new();
    let edge = side_edge(&suite, &shutdown, Duration::from_secs(1), |_| {}).await;
    let client = http_client();
    let get = |path: &'static str, headers: &'static [(&'static str, &'static str)]| {
        let (client, key) = (client.clone(), key.clone());
        async move { send(&client, edge.addr, "GET", path, &key, headers).await }
    };
    let first = first_served(&client, edge.addr, "/acme/cached/items", &key).await;
    assert_eq!(cache_result(&first), ("MISS", "1".to_owned()));
    let again = get("/acme/cached/items", &[]).await;
    assert_eq!(cache_result(&again), ("HIT", "1".to_owned()));
    assert!(again.1.contains_key("age") && again.1["etag"] == "\"e1\"");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "the hit never reached the upstream"
    );

    // The vary header and the query are part of the key.
    assert_eq!(
        cache_result(&get("/acme/cached/items", &[("accept-language", "fr")]).await).0,
        "MISS"
    );
    assert_eq!(
        cache_result(&get("/acme/cached/items", &[("accept-language", "fr")]).await).0,
        "HIT"
    );
    assert_eq!(
        cache_result(&get("/acme/cached/items?page=2", &[]).await).0,
        "MISS"
    );

    // Validators: 304 from the cache; HEAD from the stored GET.
    let conditional = get("/acme/cached/items", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(conditional.0, StatusCode::NOT_MODIFIED);
    assert_eq!(conditional.1["x-cache"], "HIT");
    assert!(conditional.2.is_empty());
    let head = send(&client, edge.addr, "HEAD", "/acme/cached/items", &key, &[]).await;
    assert_eq!(
        (head.0, head.1["x-cache"].to_str().unwrap()),
        (StatusCode::OK, "HIT")
    );

    // A successful write makes the path stale under every query.
    let before = served.load(Ordering::SeqCst);
    let written = send(&client, edge.addr, "POST", "/acme/cached/items", &key, &[]).await;
    assert_eq!(written.0, StatusCode::CREATED);
    assert_eq!(
        cache_result(&get("/acme/cached/items", &[]).await).0,
        "MISS"
    );
    assert_eq!(
        cache_result(&get("/acme/cached/items?page=2", &[]).await).0,
        "MISS"
    );
    assert_eq!(served.load(Ordering::SeqCst), before + 3);

    // What the upstream or the client forbids is never served from the cache.
    for path in ["/acme/cached/nostore", "/acme/cached/cookie"] {
        let path: &'static str = path;
        assert_eq!(cache_result(&get(path, &[]).await).0, "MISS");
        assert_eq!(cache_result(&get(path, &[]).await).0, "MISS", "{path}");
    }
    let refreshed = get("/acme/cached/items", &[("cache-control", "no-cache")]).await;
    assert_eq!(cache_result(&refreshed).0, "MISS");
    let only = get("/acme/cached/never", &[("cache-control", "only-if-cached")]).await;
    problem_of(&only, StatusCode::GATEWAY_TIMEOUT);

    // The upstream's max-age shortens the API's TTL: expired after 1 s.
    assert_eq!(
        cache_result(&get("/acme/cached/short", &[]).await).0,
        "MISS"
    );
    assert_eq!(cache_result(&get("/acme/cached/short", &[]).await).0, "HIT");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        cache_result(&get("/acme/cached/short", &[]).await).0,
        "MISS"
    );

    // Concurrent misses make one upstream request.
    let before = served.load(Ordering::SeqCst);
    let concurrent: Vec<_> = (0..5)
        .map(|_| tokio::spawn(get("/acme/cached/slow", &[])))
        .collect();
    let mut answers = Vec::new();
    for answer in concurrent {
        answers.push(answer.await.unwrap());
    }
    assert_eq!(served.load(Ordering::SeqCst), before + 1, "coalesced");
    let results: Vec<_> = answers.iter().map(cache_result).collect();
    assert!(
        results.iter().all(|(_, body)| *body == results[0].1),
        "{results:?}"
    );
    assert_eq!(
        results
            .iter()
            .filter(|(result, _)| *result == "MISS")
            .count(),
        1,
        "{results:?}"
    );

    // Another tenant's API of the same slug and upstream: its own entries.
    let (_, other_key) = create_key(&suite, &globex, "k", "").await;
    let theirs = first_served(&client, edge.addr, "/globex/cached/items", &other_key).await;
    assert_eq!(cache_result(&theirs).0, "MISS");

    // Hits are admitted by quota like any request.
    let two = create_plan(
        &suite,
        &acme,
        gateway_proto::quota::v1::Plan {
            name: "two".to_owned(),
            requests_per_minute: Some(2),
            ..Default::default()
        },
    )
    .await;
    let (_, limited) = create_key(&suite, &acme, "limited", &two.id).await;
    for _ in 0..2 {
        let answer = send(
            &client,
            edge.addr,
            "GET",
            "/acme/cached/items",
            &limited,
            &[],
        )
        .await;
        assert_eq!(cache_result(&answer).0, "HIT");
    }
    let refused = send(
        &client,
        edge.addr,
        "GET",
        "/acme/cached/items",
        &limited,
        &[],
    )
    .await;
    problem_of(&refused, StatusCode::TOO_MANY_REQUESTS);

    // The hit ratio, on the ops port's view.
    let view = (edge.admin)();
    let api = view["apis"]
        .as_object()
        .unwrap()
        .values()
        .find(|api| api["slug"] == "cached" && api["tenant_id"] == acme.id.as_str())
        .unwrap();
    let hits = api["cache"]["hits"].as_u64().unwrap();
    assert!(hits >= 8, "{view}");
    assert!(api["cache"]["hit_ratio"].as_f64().unwrap() > 0.3, "{view}");
    assert!(view["cache"]["entries"].as_u64().unwrap() >= 3, "{view}");

    // Only GET and HEAD can be cached.
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    let refused = catalog
        .create_api(cat::CreateApiRequest {
            api: Some(cat::Api {
                name: "posts".to_owned(),
                slug: "posts".to_owned(),
                upstreams: vec![target(upstream, "/", 1)],
                cache: Some(cat::CachePolicy {
                    enabled: true,
                    methods: vec!["POST".to_owned()],
                    ..Default::default()
                }),
                enabled: true,
                ..Default::default()
            }),
            upstream_auth_secret: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("api.cache.methods"), "{refused}");
    shutdown.cancel();
    suite.stop().await.unwrap();
}

/// A test plugin: refuses `X-Block: yes`, stamps responses, counts errors.
struct Stamp(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl gateway_edge::plugin::EdgePlugin for Stamp {
    fn name(&self) -> &str {
        "stamp"
    }

    fn on_request(
        &self,
        request: &gateway_edge::plugin::RequestInfo<'_>,
    ) -> Option<http::Response<gateway_edge::body::EdgeBody>> {
        (request
            .headers
            .get("x-block")
            .is_some_and(|value| value == "yes"))
        .then(|| {
            gateway_edge::problem::response(
                StatusCode::FORBIDDEN,
                "blocked by plugin",
                request.request_id,
            )
        })
    }

    fn on_response(
        &self,
        _answered: &gateway_edge::plugin::Answered<'_>,
        headers: &mut http::HeaderMap,
    ) {
        headers.insert("x-stamp", http::HeaderValue::from_static("yes"));
    }

    fn on_error(&self, _answered: &gateway_edge::plugin::Answered<'_>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_ip_lists_and_plugins_act_before_quota_and_upstream() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    let access = |maintenance: bool, allow: &[&str], deny: &[&str]| {
        Some(cat::AccessPolicy {
            maintenance,
            maintenance_message: if maintenance {
                "back at 10:00 UTC".to_owned()
            } else {
                String::new()
            },
            maintenance_retry_after: millis(120_000),
            allow_cidrs: allow.iter().map(|cidr| (*cidr).to_owned()).collect(),
            deny_cidrs: deny.iter().map(|cidr| (*cidr).to_owned()).collect(),
        })
    };
    for (slug, policy) in [
        ("down", access(true, &[], &[])),
        ("denied", access(false, &[], &["127.0.0.0/8"])),
        ("elsewhere", access(false, &["10.0.0.0/8"], &[])),
        ("open", access(false, &["127.0.0.1"], &["10.0.0.0/8"])),
    ] {
        register(
            &suite,
            &acme,
            cat::Api {
                slug: slug.to_owned(),
                upstreams: vec![target(upstream, "/", 1)],
                access: policy,
                ..Default::default()
            },
        )
        .await;
    }
    let one = create_plan(
        &suite,
        &acme,
        gateway_proto::quota::v1::Plan {
            name: "one".to_owned(),
            requests_per_minute: Some(1),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", &one.id).await;
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let shutdown = gateway_runtime::CancellationToken::new();
    let egress = gateway_egress::EgressPolicy::strict()
        .allow_entry("127.0.0.1")
        .unwrap();
    let plugins: Vec<Box<dyn gateway_edge::plugin::EdgePlugin>> =
        vec![Box::new(Stamp(std::sync::Arc::clone(&errors)))];
    let edge = side_edge_with_plugins(
        &suite,
        &shutdown,
        Duration::from_secs(1),
        egress,
        plugins,
        |_| {},
    )
    .await;
    let client = http_client();
    // None of these spends the key's one request a minute.
    let down = first_served(&client, edge.addr, "/acme/down/", &key).await;
    let problem = problem_of(&down, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(problem["detail"], "back at 10:00 UTC");
    assert_eq!(down.1["retry-after"], "120");
    for slug in ["denied", "elsewhere"] {
        let answer = first_served(&client, edge.addr, &format!("/acme/{slug}/"), &key).await;
        problem_of(&answer, StatusCode::FORBIDDEN);
    }
    let blocked = send(
        &client,
        edge.addr,
        "GET",
        "/acme/open/",
        &key,
        &[("x-block", "yes")],
    )
    .await;
    let problem = problem_of(&blocked, StatusCode::FORBIDDEN);
    assert_eq!(problem["detail"], "blocked by plugin");
    let open = first_served(&client, edge.addr, "/acme/open/", &key).await;
    assert_eq!(
        open.0,
        StatusCode::OK,
        "the plan's one request was not spent before"
    );
    assert_eq!(open.1["x-stamp"], "yes");
    let limited = send(&client, edge.addr, "GET", "/acme/open/", &key, &[]).await;
    problem_of(&limited, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        errors.load(std::sync::atomic::Ordering::Relaxed) >= 5,
        "the error hook saw the refusals"
    );
    shutdown.cancel();
    let _ = edge.serving.await;
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_and_the_json_envelope_shape_responses() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let json = start_json_upstream().await;
    let acme = suite.tenant("acme").await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "json".to_owned(),
            upstreams: vec![target(json, "/", 1)],
            transform: Some(cat::TransformPolicy {
                security_headers: Some(cat::SecurityHeaders {
                    hsts_max_age: Some(prost_types::Duration {
                        seconds: 86_400,
                        nanos: 0,
                    }),
                    hsts_include_subdomains: false,
                    nosniff: true,
                    frame_options: "SAMEORIGIN".to_owned(),
                    referrer_policy: "no-referrer".to_owned(),
                    content_security_policy: "default-src 'none'".to_owned(),
                }),
                json_envelope: Some(cat::JsonEnvelope {
                    enabled: true,
                    max_bytes: 1024,
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let (status, headers, body) = first_served(&client, edge, "/acme/json/item", &key).await;
    assert_eq!(status, StatusCode::OK);
    let wrapped: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(wrapped["data"], serde_json::json!({"id": 1}));
    assert_eq!(
        wrapped["meta"]["request_id"],
        headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(headers["content-length"], body.len().to_string());
    assert_eq!(headers["strict-transport-security"], "max-age=86400");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["content-security-policy"], "default-src 'none'");
    // Before the key names the tenant, no API's policy applies.
    let (status, headers, _) = send(&client, edge, "GET", "/acme/json/", "wrong-key", &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers.get("x-frame-options").is_none(),
        "no API is known before the key"
    );
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_admitted_at_the_handshake_then_spliced() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upgrade_upstream().await;
    let acme = suite.tenant("acme").await;
    register(
        &suite,
        &acme,
        cat::Api {
            slug: "ws".to_owned(),
            upstreams: vec![target(upstream, "/", 1)],
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let edge = suite.addresses.edge;
    let handshake = |key: &str| {
        format!(
            "GET /acme/ws/chat HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
        )
    };
    // Without a valid key the handshake is refused like any request.
    let mut refused = tokio::net::TcpStream::connect(edge).await.unwrap();
    refused
        .write_all(handshake("sk-wrong").as_bytes())
        .await
        .unwrap();
    let mut head = vec![0_u8; 1024];
    let read = refused.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..read]).starts_with("HTTP/1.1 401"));

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut tunnel = loop {
        let mut stream = tokio::net::TcpStream::connect(edge).await.unwrap();
        stream.write_all(handshake(&key).as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0_u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        if head.starts_with("HTTP/1.1 101") {
            assert!(
                head.to_ascii_lowercase().contains("upgrade: echo"),
                "{head}"
            );
            break stream;
        }
        assert!(std::time::Instant::now() < deadline, "{head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tunnel.write_all(b"ping through the edge").await.unwrap();
    let mut echoed = vec![0_u8; 21];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the edge");
    drop(tunnel);

    // One usage event when the tunnel closes, with the bytes both ways.
    let tunnel = |events: &[gateway_proto::usage::v1::UsageEvent]| {
        events.iter().any(|event| event.status == 101)
    };
    let events = usage_events_until(&suite, &acme, tunnel).await;
    let event = events
        .iter()
        .find(|event| event.status == 101)
        .expect("no usage event for the tunnel");
    assert_eq!((event.bytes_in, event.bytes_out), (21, 21));
    suite.stop().await.unwrap();
}

const HS256_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes";

fn jwt(
    claims: serde_json::Value,
    algorithm: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, key).unwrap()
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// `(status, headers, body)` of a GET with these headers and no key.
async fn anonymous(
    client: &HttpClient,
    edge: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let mut request = Request::builder().uri(format!("http://{edge}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client
        .request(request.body(empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_authenticate_by_key_jwt_basic_or_not_at_all() {
    use ed25519_dalek::pkcs8::EncodePrivateKey as _;
    use ed25519_dalek::pkcs8::spki::EncodePublicKey as _;
    use jsonwebtoken::{Algorithm, EncodingKey};
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    let two = create_plan(
        &suite,
        &acme,
        gateway_proto::quota::v1::Plan {
            name: "two".to_owned(),
            requests_per_minute: Some(2),
            ..Default::default()
        },
    )
    .await;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public_pem = signing
        .verifying_key()
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap();
    let ed_key = EncodingKey::from_ed_der(signing.to_pkcs8_der().unwrap().as_bytes());
    let hs_key = EncodingKey::from_secret(HS256_SECRET.as_bytes());
    let with_mode = |name: &str, mode: cat::AuthMode| cat::RouteRule {
        auth_mode: mode.into(),
        ..rule(name, cat::MatchKind::Prefix, &format!("/{name}"))
    };
    let auth = cat::ApiAuth {
        mode: cat::AuthMode::Key.into(),
        jwt: Some(cat::JwtAuth {
            algorithms: vec!["HS256".to_owned(), "EdDSA".to_owned()],
            public_keys_pem: vec![public_pem],
            hs256_secret: HS256_SECRET.to_owned(),
            issuer: "https://issuer.example".to_owned(),
            audiences: vec!["orders".to_owned()],
            forward_claims: [("sub".to_owned(), "x-user-id".to_owned())]
                .into_iter()
                .collect(),
            ..Default::default()
        }),
        basic: Some(cat::BasicAuth {
            users: vec![cat::BasicUser {
                username: "ops".to_owned(),
                password: "ops-password-123".to_owned(),
                ..Default::default()
            }],
            realm: String::new(),
        }),
        plan_id: two.id.clone(),
    };
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    let created = catalog
        .create_api(cat::CreateApiRequest {
            api: Some(cat::Api {
                name: "mixed".to_owned(),
                slug: "mixed".to_owned(),
                upstreams: vec![target(upstream, "/", 1)],
                routes: vec![
                    with_mode("jwt", cat::AuthMode::Jwt),
                    with_mode("basic", cat::AuthMode::Basic),
                    with_mode("public", cat::AuthMode::Public),
                    rule("rest", cat::MatchKind::Prefix, "/"),
                ],
                auth: Some(auth.clone()),
                enabled: true,
                ..Default::default()
            }),
            upstream_auth_secret: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .api
        .unwrap();
    // Secrets and hashes never come back.
    let shown = created.auth.as_ref().unwrap();
    let shown_jwt = shown.jwt.as_ref().unwrap();
    assert!(shown_jwt.hs256_secret.is_empty() && shown_jwt.sealed_hs256_secret.is_empty());
    assert_eq!(shown_jwt.hs256_secret_hint, "ytes");
    let shown_user = &shown.basic.as_ref().unwrap().users[0];
    assert!(shown_user.password.is_empty() && shown_user.password_hash.is_empty());

    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    first_served(&client, edge, "/acme/mixed/rest", &key).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |sub: &str, aud: &str, exp: u64| serde_json::json!({"sub": sub, "iss": "https://issuer.example", "aud": aud, "exp": exp});

    // JWT: HS256 and EdDSA tokens pass; the subject goes upstream, the
    // token does not; expired, wrong audience and missing tokens are 401.
    let token = jwt(
        claims("user-7", "orders", now + 60),
        Algorithm::HS256,
        &hs_key,
    );
    let bearer = format!("Bearer {token}");
    let passed = anonymous(
        &client,
        edge,
        "/acme/mixed/jwt/a",
        &[("authorization", &bearer), ("x-user-id", "spoofed")],
    )
    .await;
    assert_eq!(passed.0, StatusCode::OK, "{passed:?}");
    assert_eq!(passed.1["x-seen-x-user-id"], "user-7");
    assert_eq!(passed.1["x-seen-authorization"], "<none>");
    let ed = format!(
        "Bearer {}",
        jwt(
            claims("user-8", "orders", now + 60),
            Algorithm::EdDSA,
            &ed_key
        )
    );
    let passed = anonymous(
        &client,
        edge,
        "/acme/mixed/jwt/a",
        &[("authorization", &ed)],
    )
    .await;
    assert_eq!(passed.1["x-seen-x-user-id"], "user-8");
    for (authorization, detail) in [
        (
            format!(
                "Bearer {}",
                jwt(claims("u", "orders", now - 600), Algorithm::HS256, &hs_key)
            ),
            "expired",
        ),
        (
            format!(
                "Bearer {}",
                jwt(claims("u", "billing", now + 60), Algorithm::HS256, &hs_key)
            ),
            "audience",
        ),
        (
            format!(
                "Bearer {}",
                jwt(
                    claims("u", "orders", now + 60),
                    Algorithm::HS256,
                    &EncodingKey::from_secret(b"a different secret of 32 bytes!!")
                )
            ),
            "signature",
        ),
    ] {
        let refused = anonymous(
            &client,
            edge,
            "/acme/mixed/jwt/a",
            &[("authorization", &authorization)],
        )
        .await;
        let problem = problem_of(&refused, StatusCode::UNAUTHORIZED);
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{problem}"
        );
        assert!(
            refused.1["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    problem_of(
        &anonymous(&client, edge, "/acme/mixed/jwt/a", &[]).await,
        StatusCode::UNAUTHORIZED,
    );
    let keyed = send(&client, edge, "GET", "/acme/mixed/jwt/a", &key, &[]).await;
    let problem = problem_of(&keyed, StatusCode::UNAUTHORIZED);
    assert!(
        problem["detail"].as_str().unwrap().contains("JWT"),
        "{problem}"
    );

    // Basic: the user's password passes and is not forwarded.
    let good = basic("ops", "ops-password-123");
    let passed = anonymous(
        &client,
        edge,
        "/acme/mixed/basic/a",
        &[("authorization", &good)],
    )
    .await;
    assert_eq!(passed.0, StatusCode::OK, "{passed:?}");
    assert_eq!(passed.1["x-seen-authorization"], "<none>");
    for authorization in [
        basic("ops", "wrong-password"),
        basic("root", "ops-password-123"),
    ] {
        let refused = anonymous(
            &client,
            edge,
            "/acme/mixed/basic/a",
            &[("authorization", &authorization)],
        )
        .await;
        problem_of(&refused, StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.1["www-authenticate"],
            "Basic realm=\"mixed\", charset=\"UTF-8\""
        );
    }

    // Public: no credential, limited per client IP by the API's plan.
    for _ in 0..2 {
        assert_eq!(
            anonymous(&client, edge, "/acme/mixed/public/a", &[])
                .await
                .0,
            StatusCode::OK
        );
    }
    problem_of(
        &anonymous(&client, edge, "/acme/mixed/public/a", &[]).await,
        StatusCode::TOO_MANY_REQUESTS,
    );

    // Key routes still need a key.
    problem_of(
        &anonymous(&client, edge, "/acme/mixed/rest", &[]).await,
        StatusCode::UNAUTHORIZED,
    );
    assert_eq!(
        send(&client, edge, "GET", "/acme/mixed/rest", &key, &[])
            .await
            .0,
        StatusCode::OK
    );
    // Another tenant's slug with the same path is not found.
    problem_of(
        &anonymous(&client, edge, "/nobody/mixed/public/a", &[]).await,
        StatusCode::NOT_FOUND,
    );

    // A public route without a plan, or JWT without settings, is refused.
    for (api_auth, field) in [
        (
            cat::ApiAuth {
                mode: cat::AuthMode::Public.into(),
                ..Default::default()
            },
            "api.auth.plan_id",
        ),
        (
            cat::ApiAuth {
                mode: cat::AuthMode::Jwt.into(),
                ..Default::default()
            },
            "api.auth.jwt",
        ),
        (
            cat::ApiAuth {
                mode: cat::AuthMode::Jwt.into(),
                jwt: Some(cat::JwtAuth {
                    algorithms: vec!["HS256".to_owned()],
                    hs256_secret: "short".to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "api.auth.jwt.hs256_secret",
        ),
    ] {
        let refused = catalog
            .create_api(cat::CreateApiRequest {
                api: Some(cat::Api {
                    name: "bad".to_owned(),
                    slug: "bad".to_owned(),
                    upstreams: vec![target(upstream, "/", 1)],
                    auth: Some(api_auth),
                    enabled: true,
                    ..Default::default()
                }),
                upstream_auth_secret: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(field), "{refused}");
    }
    suite.stop().await.unwrap();
}
