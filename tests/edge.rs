//! The edge end to end: the whole suite in-process plus a local upstream.
//! A tenant registers an API, a plan and keys over gRPC; calls go through
//! the edge with authentication, limits and usage, on SQLite with memory
//! limits and on PostgreSQL with Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_e2e::{Backend, Credentials, TestSuite, eventually};
use gateway_proto::catalog::v1 as cat;
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use gateway_proto::usage::v1 as usage;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

mod edge_support;

use edge_support::*;

async fn the_edge_serves_a_tenant_api_end_to_end(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let upstream = start_upstream().await;
    let edge = suite.addresses.edge;
    let client = http_client();
    let acme = suite.tenant("acme").await;
    let globex = suite.tenant("globex").await;
    let api_id = register_api(&suite, &acme, upstream).await;
    register_api(&suite, &globex, upstream).await;
    let plan = create_plan(
        &suite,
        &acme,
        quota::Plan {
            name: "demo".to_owned(),
            requests_per_minute: Some(5),
            requests_per_month: Some(100),
            ..Default::default()
        },
    )
    .await;
    let (free_key_id, free_key) = create_key(&suite, &acme, "free", "").await;
    let (_, limited_key) = create_key(&suite, &acme, "limited", &plan.id).await;
    let (_, globex_key) = create_key(&suite, &globex, "globex", "").await;

    // The API reaches the edge through the catalog snapshot stream.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = call(
            &client,
            edge,
            "GET",
            "/acme/echo/ping",
            Some(&free_key),
            empty(),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API never reached the edge: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // GET passes through with path and query; the caller's key is
    // stripped, the upstream's injected, forwarding headers set.
    let mut request = Request::get(format!("http://{edge}/acme/echo/v1/items?page=2&sort=desc"))
        .header("x-api-key", &free_key)
        .header("x-request-id", "e2e-edge-1")
        .body(empty())
        .unwrap();
    request
        .headers_mut()
        .insert("user-agent", "e2e".parse().unwrap());
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(headers["x-upstream-path"], "/base/v1/items");
    assert_eq!(headers["x-upstream-query"], "page=2&sort=desc");
    assert_eq!(headers["x-seen-x-upstream-token"], "upstream-secret-1234");
    assert_eq!(headers["x-seen-x-api-key"], "<none>");
    assert_eq!(headers["x-seen-x-forwarded-for"], "127.0.0.1");
    assert_eq!(headers["x-seen-x-request-id"], "e2e-edge-1");
    assert_eq!(headers["x-request-id"], "e2e-edge-1");
    assert!(
        headers["x-seen-traceparent"]
            .to_str()
            .unwrap()
            .starts_with("00-")
    );

    // POST streams a body both ways, in chunks, without buffering it whole.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..64)
        .map(|index| {
            Ok(Frame::data(Bytes::from(vec![
                b'a' + (index % 26) as u8;
                16 * 1024
            ])))
        })
        .collect();
    let streamed = StreamBody::new(tokio_stream::iter(chunks)).boxed();
    let (status, headers, body) = call(
        &client,
        edge,
        "POST",
        "/acme/echo/upload",
        Some(&free_key),
        streamed,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-upstream-method"], "POST");
    assert_eq!(body.len(), 64 * 16 * 1024);
    assert_eq!(body[16 * 1024], b'b');

    // Five a minute: the sixth is 429 problem+json, with Retry-After and
    // the limit named.
    for attempt in 0..5 {
        let (status, _, _) = call(
            &client,
            edge,
            "GET",
            "/acme/echo/limited",
            Some(&limited_key),
            empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "attempt {attempt}");
    }
    let (status, headers, body) = call(
        &client,
        edge,
        "GET",
        "/acme/echo/limited",
        Some(&limited_key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/problem+json");
    let wait: i64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-remaining"], "0");
    // The reset is the refusing limit's: the same wait, within the minute.
    assert_eq!(headers["ratelimit-reset"], headers["retry-after"]);
    assert_eq!(
        headers["ratelimit-policy"],
        "\"requests-per-minute\";q=5;w=60"
    );
    assert_eq!(
        headers["ratelimit"].to_str().unwrap(),
        format!("\"requests-per-minute\";r=0;t={wait}")
    );
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 429);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("Rate limit exceeded: requests per minute"),
        "{problem}"
    );
    assert_eq!(
        problem["instance"],
        format!(
            "urn:gateway:request:{}",
            problem["request_id"].as_str().unwrap()
        )
    );
    assert!(problem["request_id"].as_str().is_some());

    // Tenant isolation, both ways: another tenant's key gets exactly what
    // an unknown API gets.
    let (status, _, unknown) = call(
        &client,
        edge,
        "GET",
        "/acme/nope/x",
        Some(&free_key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, foreign) = call(
        &client,
        edge,
        "GET",
        "/acme/echo/x",
        Some(&globex_key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let detail = |body: &Bytes| {
        let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
        problem["detail"].as_str().unwrap().replace("nope", "echo")
    };
    assert_eq!(detail(&unknown), detail(&foreign));
    let (status, _, _) = call(
        &client,
        edge,
        "GET",
        "/globex/echo/x",
        Some(&free_key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(
        &client,
        edge,
        "GET",
        "/globex/echo/x",
        Some(&globex_key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        &client,
        edge,
        "GET",
        "/acme/echo/x",
        Some("sk-not-a-key"),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Usage events arrive: the tenant admin sees its calls, not globex's.
    let mut usage_client = suite.usage_as(Credentials::bearer(&acme.admin_token)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let logs = loop {
        let logs = usage_client
            .list_logs(usage::ListLogsRequest {
                page_size: 100,
                api_id: api_id.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .logs;
        if logs.len() >= 8 || Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(logs.len() >= 8, "{} usage events", logs.len());
    assert!(
        logs.iter()
            .all(|log| log.event.as_ref().unwrap().tenant_id == acme.id)
    );
    let traced = logs
        .iter()
        .find(|log| log.event.as_ref().unwrap().request_id == "e2e-edge-1")
        .expect("the GET is logged with its request id");
    let event = traced.event.as_ref().unwrap();
    assert_eq!((event.method.as_str(), event.status), ("GET", 200));
    assert_eq!(event.key_id, free_key_id);
    assert_eq!(event.path, "/acme/echo/v1/items");
    let upload = logs
        .iter()
        .find(|log| log.event.as_ref().unwrap().method == "POST")
        .unwrap();
    assert_eq!(upload.event.as_ref().unwrap().bytes_in, 64 * 16 * 1024);
    assert_eq!(upload.event.as_ref().unwrap().bytes_out, 64 * 16 * 1024);

    // A frozen key is refused within a second (WatchKeys evicts it).
    let mut identity = suite
        .identity_as(Credentials::bearer(&acme.admin_token))
        .await;
    identity
        .freeze_api_key(id::FreezeApiKeyRequest { id: free_key_id })
        .await
        .unwrap();
    let frozen_at = Instant::now();
    loop {
        let (status, _, _) = call(
            &client,
            edge,
            "GET",
            "/acme/echo/x",
            Some(&free_key),
            empty(),
        )
        .await;
        if status == StatusCode::FORBIDDEN {
            break;
        }
        assert!(
            frozen_at.elapsed() < Duration::from_secs(1),
            "still {status} after a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_a_tenant_api_on_sqlite_and_memory() {
    the_edge_serves_a_tenant_api_end_to_end(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_serves_a_tenant_api_on_postgres_and_redis() {
    the_edge_serves_a_tenant_api_end_to_end(Backend::Postgres).await;
}

/// A key whose only limits count requests admits from quota leases, renewed
/// ahead of running out while the current lease still admits, each going
/// back with its used count: across every renewal the edge admits exactly
/// the day's limit, then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_leases_renew_ahead_and_admit_exactly_the_limit() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    register_api(&suite, &acme, upstream).await;
    let plan = create_plan(
        &suite,
        &acme,
        quota::Plan {
            name: "daily".to_owned(),
            requests_per_day: Some(600),
            ..Default::default()
        },
    )
    .await;
    let (_, key) = create_key(&suite, &acme, "daily", &plan.id).await;
    let client = http_client();
    let edge = suite.addresses.edge;
    // A lease being swapped can hold the last units for a moment: count
    // until refusals are all that is left.
    let (mut admitted, mut refused_in_a_row) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while refused_in_a_row < 20 {
        assert!(Instant::now() < deadline, "{admitted} admitted so far");
        let (status, _, _) = call(&client, edge, "GET", "/acme/echo/", Some(&key), empty()).await;
        refused_in_a_row = if status == StatusCode::TOO_MANY_REQUESTS {
            refused_in_a_row + 1
        } else {
            0
        };
        match status {
            StatusCode::OK => admitted += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            // The API is still on its way to the edge.
            StatusCode::NOT_FOUND if admitted == 0 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected {other} after {admitted} admitted"),
        }
    }
    assert_eq!(admitted, 600);
}

/// Quota unreachable with `fail_open`: a second edge pointed at a dead
/// quota still serves (with its own floor), the rest of the suite live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quota_down_fail_open_still_serves_on_sqlite() {
    with_quota_down_fail_open_still_serves(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_quota_down_fail_open_still_serves_on_postgres() {
    with_quota_down_fail_open_still_serves(Backend::Postgres).await;
}

async fn with_quota_down_fail_open_still_serves(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    register_api(&suite, &acme, upstream).await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_quota = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let shutdown = gateway_runtime::CancellationToken::new();
    let open = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
        config.quota_url.clone_from(&dead_quota);
        config.quota_failure = gateway_edge::QuotaFailure::FailOpen;
    })
    .await;
    let addr = open.addr;
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _, _) = call(&client, addr, "GET", "/acme/echo/x", Some(&key), empty()).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never served: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same with fail_closed: 503 problem+json.
    let closed = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
        config.quota_url = dead_quota;
        config.quota_failure = gateway_edge::QuotaFailure::FailClosed;
    })
    .await;
    let closed_addr = closed.addr;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, headers, _) = call(
            &client,
            closed_addr,
            "GET",
            "/acme/echo/x",
            Some(&key),
            empty(),
        )
        .await;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(headers["content-type"], "application/problem+json");
            break;
        }
        assert!(Instant::now() < deadline, "never refused: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let _ = open.serving.await;
    let _ = closed.serving.await;
    suite.stop().await.unwrap();
}

/// `gatewayd --demo`: the seeded key calls the built-in echo upstream, and
/// the demo plan's sixth request in a minute is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_seeds_a_working_api_plan_and_key() {
    // As `gatewayd --demo`: the egress policy opens exactly the echo.
    let demo_config = gatewayd::demo::DemoConfig::default();
    let upstream = gatewayd::demo::Upstream::prepare(&demo_config)
        .await
        .unwrap();
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.egress.allow.clear();
        upstream.allow_in(&mut config.egress);
    })
    .await
    .unwrap();
    let demo = gatewayd::demo::seed(
        &suite.addresses,
        gateway_e2e::ADMIN_KEY,
        &demo_config,
        &upstream,
    )
    .await
    .unwrap();
    assert!(demo.curl.contains(&demo.key) && demo.curl.contains("/demo/echo/hello"));
    let client = http_client();
    let edge = suite.addresses.edge;
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let (status, _, body) = call(
            &client,
            edge,
            "GET",
            "/demo/echo/hello?name=world",
            Some(&demo.key),
            empty(),
        )
        .await;
        if status == StatusCode::OK {
            break body;
        }
        assert_eq!(status, StatusCode::NOT_FOUND, "only the snapshot may lag");
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (echo["path"].as_str(), echo["query"].as_str()),
        (Some("/hello"), Some("name=world"))
    );
    for _ in 0..4 {
        let (status, _, _) = call(
            &client,
            edge,
            "GET",
            "/demo/echo/x",
            Some(&demo.key),
            empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, _) = call(
        &client,
        edge,
        "GET",
        "/demo/echo/x",
        Some(&demo.key),
        empty(),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.contains_key("retry-after"));
    // Seeding again reuses what exists and issues a new key.
    let again = gatewayd::demo::seed(
        &suite.addresses,
        gateway_e2e::ADMIN_KEY,
        &demo_config,
        &upstream,
    )
    .await
    .unwrap();
    assert_ne!(again.key, demo.key);
    suite.stop().await.unwrap();
}

/// An upstream that waits before answering.
async fn start_slow_upstream(delay: Duration) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |_request: Request<Incoming>| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"late"))))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Bodies over the limit get 413, a refused upstream 502, a slow one 504:
/// all problem+json with the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_refused_and_slow_upstreams_map_to_problems() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let upstream = start_upstream().await;
    let slow = start_slow_upstream(Duration::from_secs(3)).await;
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    for (slug, target, read_ms, max_body) in [
        ("small", upstream, 0, 1024),
        ("down", closed, 0, 0),
        ("slow", slow, 300, 0),
    ] {
        eventually(|| {
            let mut catalog = catalog.clone();
            async move {
                catalog
                    .create_api(cat::CreateApiRequest {
                        api: Some(cat::Api {
                            name: slug.to_owned(),
                            slug: slug.to_owned(),
                            upstreams: vec![cat::UpstreamTarget {
                                url: format!("http://{target}"),
                                weight: 1,
                            }],
                            timeouts: (read_ms > 0).then(|| cat::Timeouts {
                                read: Some(prost_types::Duration {
                                    seconds: 0,
                                    nanos: read_ms * 1_000_000,
                                }),
                                ..Default::default()
                            }),
                            max_request_body_bytes: max_body,
                            enabled: true,
                            ..Default::default()
                        }),
                        upstream_auth_secret: String::new(),
                    })
                    .await
            }
        })
        .await
        .unwrap();
    }
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&client, edge, "GET", "/acme/small/", Some(&key), empty())
        .await
        .0
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "the APIs never reached the edge");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expect_problem =
        |status: StatusCode, headers: &http::HeaderMap, body: &Bytes, expected: StatusCode| {
            assert_eq!(status, expected, "{}", String::from_utf8_lossy(body));
            assert_eq!(headers["content-type"], "application/problem+json");
            let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
            assert_eq!(problem["status"], expected.as_u16());
            assert_eq!(
                problem["request_id"].as_str().unwrap(),
                headers["x-request-id"].to_str().unwrap()
            );
        };
    // Declared too large: refused before anything is read.
    let (status, headers, body) = call(
        &client,
        edge,
        "POST",
        "/acme/small/",
        Some(&key),
        Full::new(Bytes::from(vec![b'x'; 2048])).boxed(),
    )
    .await;
    expect_problem(status, &headers, &body, StatusCode::PAYLOAD_TOO_LARGE);
    // Streamed without a length: cut off once over the limit. A 413 when
    // the edge sees the overflow first; when the upstream has already
    // answered (it streams its echo), its answer is cut instead, and never
    // arrives whole: after its head, or before the head left the edge.
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..8)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'y'; 512]))))
        .collect();
    let request = Request::post(format!("http://{edge}/acme/small/"))
        .header("x-api-key", &key)
        .body(StreamBody::new(tokio_stream::iter(chunks)).boxed())
        .unwrap();
    let answer = match client.request(request).await {
        Ok(answer) => Some(answer),
        Err(cut) if cut_before_the_head(&cut) => None,
        Err(other) => panic!("{other:?}"),
    };
    if let Some(answer) = answer {
        let (parts, body) = answer.into_parts();
        match body.collect().await {
            Ok(body) => expect_problem(
                parts.status,
                &parts.headers,
                &body.to_bytes(),
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            Err(cut) => assert_eq!(parts.status, StatusCode::OK, "{cut}"),
        }
    }
    // Within the limit: passes.
    let (status, _, body) = call(
        &client,
        edge,
        "POST",
        "/acme/small/",
        Some(&key),
        Full::new(Bytes::from(vec![b'z'; 1000])).boxed(),
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 1000));
    let (status, headers, body) =
        call(&client, edge, "GET", "/acme/down/", Some(&key), empty()).await;
    expect_problem(status, &headers, &body, StatusCode::BAD_GATEWAY);
    let started = Instant::now();
    let (status, headers, body) =
        call(&client, edge, "GET", "/acme/slow/", Some(&key), empty()).await;
    expect_problem(status, &headers, &body, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    suite.stop().await.unwrap();
}

/// The connection closed before an answer's head arrived: how a cut
/// answer looks when it is cut before the edge wrote anything.
fn cut_before_the_head(error: &hyper_util::client::legacy::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_incomplete_message)
}

/// A CA and a leaf certificate for 127.0.0.1, made with the openssl CLI.
fn certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl CLI is installed");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=e2e-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "1",
        "-extfile",
        "ext.cnf",
    ]);
}

/// An https upstream answering "tls ok".
async fn start_tls_upstream(dir: &std::path::Path) -> SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("leaf.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"tls ok"))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// https upstreams are verified: trusted through `upstream_ca_file`, an
/// untrusted certificate is a 502.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_against_the_configured_roots() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let pki = tempfile::tempdir().unwrap();
    certificates(pki.path());
    let upstream = start_tls_upstream(pki.path()).await;
    let acme = suite.tenant("acme").await;
    let catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    eventually(|| {
        let mut catalog = catalog.clone();
        async move {
            catalog
                .create_api(cat::CreateApiRequest {
                    api: Some(cat::Api {
                        name: "tls".to_owned(),
                        slug: "tls".to_owned(),
                        upstreams: vec![cat::UpstreamTarget {
                            url: format!("https://localhost:{}", upstream.port()),
                            weight: 1,
                        }],
                        enabled: true,
                        ..Default::default()
                    }),
                    upstream_auth_secret: String::new(),
                })
                .await
        }
    })
    .await
    .unwrap();
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let shutdown = gateway_runtime::CancellationToken::new();
    let client = http_client();
    let mut edges = Vec::new();
    for trusted in [true, false] {
        let edge = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
            if trusted {
                config.upstream_ca_file = pki.path().join("ca.pem").display().to_string();
            }
        })
        .await;
        let addr = edge.addr;
        edges.push(edge);
        let expected = if trusted {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        let body = loop {
            let (status, _, body) =
                call(&client, addr, "GET", "/acme/tls/", Some(&key), empty()).await;
            if status == expected {
                break body;
            }
            assert_eq!(status, StatusCode::NOT_FOUND, "only the snapshot may lag");
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if trusted {
            assert_eq!(&body[..], b"tls ok");
        }
    }
    shutdown.cancel();
    for edge in edges {
        let _ = edge.serving.await;
    }
    suite.stop().await.unwrap();
}

/// h2c (HTTP/2 without TLS) is served like HTTP/1.1; a client that does not
/// finish its request head in time is dropped, and an oversized head is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_served_and_slow_or_oversized_heads_are_refused() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let acme = suite.tenant("acme").await;
    register_api(&suite, &acme, upstream).await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let shutdown = gateway_runtime::CancellationToken::new();
    let edge = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
        config.header_read_timeout_ms = 300;
        config.max_header_bytes = 16 * 1024;
    })
    .await;
    let addr = edge.addr;

    let h2: Client<_, http_body_util::combinators::BoxBody<Bytes, Infallible>> =
        Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, headers, _) =
            call(&h2, addr, "GET", "/acme/echo/h2", Some(&key), empty()).await;
        if status == StatusCode::OK {
            assert_eq!(headers["x-upstream-path"], "/base/h2");
            break;
        }
        assert!(Instant::now() < deadline, "h2c never served: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A head that never completes: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /acme/echo/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(closed.is_ok(), "a slow client must be dropped");

    // A head over max_header_bytes: refused, never proxied.
    let mut big = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /acme/echo/ HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    // The edge answers and closes; a hang is a failure. The kernel may
    // reset the connection over the unread rest of the head, losing the
    // answer, so only what did arrive is checked.
    let ended = tokio::time::timeout(Duration::from_secs(5), big.read_to_end(&mut answer)).await;
    assert!(
        ended.is_ok(),
        "an oversized head must not leave the connection hanging"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty()
            || (answer.starts_with("HTTP/1.1 431")
                && answer.contains("content-type: application/problem+json")),
        "{answer}"
    );

    // A malformed head (read whole, so nothing is reset): hyper's 400,
    // answered as problem+json.
    for (head, detail) in [
        (
            "GET /acme/echo/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_owned(),
            "the request head is malformed",
        ),
        (
            "GET /acme/echo/ HTTP/1.1\r\nX-API-Key: k\r\n\r\n".to_owned(),
            "an HTTP/1.1 request needs a Host header",
        ),
    ] {
        let mut bad = tokio::net::TcpStream::connect(addr).await.unwrap();
        bad.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0_u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), bad.read(&mut answer))
            .await
            .expect("an answer to a bad head")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer[..read]);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            answer.contains("content-type: application/problem+json"),
            "{answer}"
        );
        assert!(answer.contains(detail), "{answer}");
    }
    shutdown.cancel();
    let _ = edge.serving.await;
    suite.stop().await.unwrap();
}

/// An API that captures bodies has them in the audit log, cut to its cap
/// and without the caller's key; a total timeout cuts a slow exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_bodies_reach_the_audit_log() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let upstream = start_upstream().await;
    let slow = start_slow_upstream(Duration::from_secs(3)).await;
    let trickle = start_trickle_upstream(Duration::from_secs(3)).await;
    let catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    for (slug, target, total_ms) in [
        ("audited", upstream, 0),
        ("bounded", slow, 400),
        ("trickle", trickle, 400),
    ] {
        eventually(|| {
            let mut catalog = catalog.clone();
            async move {
                catalog
                    .create_api(cat::CreateApiRequest {
                        api: Some(cat::Api {
                            name: slug.to_owned(),
                            slug: slug.to_owned(),
                            upstreams: vec![cat::UpstreamTarget {
                                url: format!("http://{target}"),
                                weight: 1,
                            }],
                            body_capture: Some(cat::BodyCapture {
                                enabled: true,
                                max_bytes: 16,
                            }),
                            timeouts: (total_ms > 0).then(|| cat::Timeouts {
                                total: Some(prost_types::Duration {
                                    seconds: 0,
                                    nanos: total_ms * 1_000_000,
                                }),
                                ..Default::default()
                            }),
                            enabled: true,
                            ..Default::default()
                        }),
                        upstream_auth_secret: String::new(),
                    })
                    .await
            }
        })
        .await
        .unwrap();
    }
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let client = http_client();
    let edge = suite.addresses.edge;
    let deadline = Instant::now() + Duration::from_secs(15);
    let body = "{\"prompt\":\"a long request body that is cut\"}";
    loop {
        let (status, _, _) = call(
            &client,
            edge,
            "POST",
            "/acme/audited/chat",
            Some(&key),
            Full::new(Bytes::from(body)).boxed(),
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "never served: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let (status, _, _) = call(&client, edge, "GET", "/acme/bounded/", Some(&key), empty()).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The head came in time but the body did not: the stream is cut at the
    // total timeout instead of waiting for the upstream.
    let started = Instant::now();
    let response = client
        .request(
            Request::get(format!("http://{edge}/acme/trickle/"))
                .header("x-api-key", &key)
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.into_body().collect().await.is_err(),
        "the body is cut"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let mut usage_client = suite.usage_as(Credentials::bearer(&acme.admin_token)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let log = loop {
        let logs = usage_client
            .list_logs(usage::ListLogsRequest {
                page_size: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .logs;
        if let Some(log) = logs
            .into_iter()
            .find(|log| log.has_bodies && log.event.as_ref().unwrap().method == "POST")
        {
            break log;
        }
        assert!(Instant::now() < deadline, "no captured log arrived");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let bodies = usage_client
        .get_log_bodies(usage::GetLogBodiesRequest {
            id: log.event.unwrap().event_id,
        })
        .await
        .unwrap()
        .into_inner()
        .bodies
        .unwrap();
    assert_eq!(bodies.request_body, &body.as_bytes()[..16]);
    assert!(bodies.request_truncated);
    assert_eq!(bodies.request_body_bytes, body.len() as i64);
    assert_eq!(
        bodies.response_body,
        &body.as_bytes()[..16],
        "the echo's answer"
    );
    assert!(
        bodies
            .request_headers
            .iter()
            .all(|header| header.name != "x-api-key")
    );
    assert!(
        bodies
            .request_headers
            .iter()
            .any(|header| header.name == "content-length")
    );
    suite.stop().await.unwrap();
}

/// Shutdown drains: a request in flight when shutdown begins completes;
/// metrics count requests by tenant, API and status, with latencies and
/// principal cache hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests_and_metrics_count_them() {
    // The process-wide recorder (the ops port's /metrics) records from now.
    let _ = gateway_runtime::metrics::handle();
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let acme = suite.tenant("acme").await;
    let slow = start_slow_upstream(Duration::from_millis(800)).await;
    let catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    let api_id = eventually(|| {
        let mut catalog = catalog.clone();
        async move {
            catalog
                .create_api(cat::CreateApiRequest {
                    api: Some(cat::Api {
                        name: "slowish".to_owned(),
                        slug: "slowish".to_owned(),
                        upstreams: vec![cat::UpstreamTarget {
                            url: format!("http://{slow}"),
                            weight: 1,
                        }],
                        enabled: true,
                        ..Default::default()
                    }),
                    upstream_auth_secret: String::new(),
                })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .api
    .unwrap()
    .id;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    let shutdown = gateway_runtime::CancellationToken::new();
    let edge = side_edge(&suite, &shutdown, Duration::from_secs(5), |_| {}).await;
    let addr = edge.addr;
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(15);
    while call(&client, addr, "GET", "/acme/slowish/", Some(&key), empty())
        .await
        .0
        != StatusCode::OK
    {
        assert!(Instant::now() < deadline, "never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_flight = {
        let client = client.clone();
        let key = key.clone();
        tokio::spawn(async move {
            call(
                &client,
                addr,
                "GET",
                "/acme/slowish/late",
                Some(&key),
                empty(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"late"[..]),
        "the in-flight request finished"
    );
    tokio::time::timeout(Duration::from_secs(10), edge.serving)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections after the drain"
    );

    let metrics = gateway_runtime::metrics::render();
    let served = metrics
        .lines()
        .find(|line| {
            line.starts_with("edge_requests_total")
                && line.contains(&api_id)
                && line.contains("status=\"200\"")
        })
        .unwrap_or_else(|| panic!("no request count for the API in:\n{metrics}"));
    let count: f64 = served.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 2.0, "{served}");
    assert!(
        metrics.contains("edge_upstream_seconds_bucket"),
        "upstream latency histogram"
    );
    assert!(
        metrics.contains("edge_request_seconds_bucket"),
        "request latency histogram"
    );
    assert!(
        metrics.contains("edge_principal_cache_total{result=\"hit\"}"),
        "cache hits"
    );
    suite.stop().await.unwrap();
}

/// With usage away long enough to fill the spool, the edge refuses new
/// requests (503 with Retry-After) rather than serve what it cannot bill;
/// with `spool_full = "drop"` it serves, and the events are dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_usage_spool_refuses_traffic_unless_told_to_drop() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let tenant = suite.tenant("acme").await;
    let upstream = start_upstream().await;
    // Captured bodies make each event about 120 KB.
    let catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let api = cat::Api {
        name: "Big".to_owned(),
        slug: "big".to_owned(),
        upstreams: vec![cat::UpstreamTarget {
            url: format!("http://{upstream}"),
            weight: 1,
        }],
        enabled: true,
        body_capture: Some(cat::BodyCapture {
            enabled: true,
            max_bytes: 65_536,
        }),
        ..Default::default()
    };
    eventually(|| {
        let (mut catalog, api) = (catalog.clone(), api.clone());
        async move {
            let request = cat::CreateApiRequest {
                api: Some(api),
                upstream_auth_secret: String::new(),
            };
            catalog.create_api(request).await
        }
    })
    .await
    .unwrap();
    let (_, key) = create_key(&suite, &tenant, "big", "").await;
    let client = http_client();
    let body = Bytes::from(vec![b'x'; 60_000]);
    for policy in [
        gateway_edge::SpoolFull::Refuse,
        gateway_edge::SpoolFull::Drop,
    ] {
        let shutdown = gateway_runtime::CancellationToken::new();
        let edge = side_edge(&suite, &shutdown, Duration::from_secs(1), |config| {
            config.usage_url = format!("http://{}", closed_port());
            config.spool_max_bytes = 4 << 20;
            config.spool_full = policy;
        })
        .await;
        first_served(&client, edge.addr, "/acme/big/x", &key).await;
        let mut refused = None;
        for _ in 0..100 {
            let full = Full::new(body.clone()).boxed();
            let answer = call(&client, edge.addr, "POST", "/acme/big/x", Some(&key), full).await;
            if answer.0 != StatusCode::OK {
                refused = Some(answer);
                break;
            }
        }
        if policy == gateway_edge::SpoolFull::Refuse {
            let answer = refused.expect("the spool filled before 100 requests");
            let problem = problem_of(&answer, StatusCode::SERVICE_UNAVAILABLE);
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains("usage spool is full"), "{problem}");
            assert_eq!(answer.1["retry-after"], "5");
        } else {
            let status = refused.map(|answer| answer.0);
            assert_eq!(status, None, "drop serves through a full spool");
        }
        shutdown.cancel();
        let _ = edge.serving.await;
    }
    suite.stop().await.unwrap();
}
