//! Helpers shared by the edge's end-to-end tests: a local upstream, an
//! HTTP client, API and key fixtures, and a second edge beside the suite's.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use gateway_e2e::{Credentials, TenantFixture, TestSuite, eventually};
use gateway_proto::catalog::v1 as cat;
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// A local upstream: echoes the request body back, and reports in headers
/// the path, query and the headers the edge sent.
pub async fn start_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                    let seen = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .map(|value| value.to_str().unwrap_or_default().to_owned())
                            .unwrap_or_else(|| "<none>".to_owned())
                    };
                    let mut response = Response::builder()
                        .status(200)
                        .header("x-upstream-method", request.method().as_str())
                        .header("x-upstream-path", request.uri().path())
                        .header("x-upstream-query", request.uri().query().unwrap_or(""));
                    for name in [
                        "x-upstream-token",
                        "x-api-key",
                        "authorization",
                        "x-forwarded-for",
                        "x-forwarded-host",
                        "x-request-id",
                        "traceparent",
                        "x-user-id",
                    ] {
                        response = response.header(format!("x-seen-{name}"), seen(name));
                    }
                    Ok::<_, Infallible>(response.body(request.into_body()).unwrap())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

pub type HttpClient = Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::combinators::BoxBody<Bytes, Infallible>,
>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn call(
    client: &HttpClient,
    edge: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: http_body_util::combinators::BoxBody<Bytes, Infallible>,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{edge}{path}"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = client.request(request.body(body).unwrap()).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .unwrap_or_else(|error| panic!("{method} {path} ({}): {error}", parts.status));
    (parts.status, parts.headers, body.to_bytes())
}

pub fn empty() -> http_body_util::combinators::BoxBody<Bytes, Infallible> {
    Full::new(Bytes::new()).boxed()
}

/// An API pointing at the upstream, with an injected upstream header.
pub async fn register_api(
    suite: &TestSuite,
    tenant: &TenantFixture,
    upstream: SocketAddr,
) -> String {
    let catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    eventually(|| {
        let mut catalog = catalog.clone();
        async move {
            catalog
                .create_api(cat::CreateApiRequest {
                    api: Some(cat::Api {
                        name: "Echo".to_owned(),
                        slug: "echo".to_owned(),
                        upstreams: vec![cat::UpstreamTarget {
                            url: format!("http://{upstream}/base"),
                            weight: 1,
                        }],
                        upstream_auth: Some(cat::UpstreamAuth {
                            header_name: "X-Upstream-Token".to_owned(),
                            secret_hint: String::new(),
                        }),
                        enabled: true,
                        ..Default::default()
                    }),
                    upstream_auth_secret: "upstream-secret-1234".to_owned(),
                })
                .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .api
    .unwrap()
    .id
}

/// Creates `plan` as `tenant`'s admin.
pub async fn create_plan(
    suite: &TestSuite,
    tenant: &TenantFixture,
    plan: quota::Plan,
) -> quota::Plan {
    suite
        .quota_as(Credentials::bearer(&tenant.admin_token))
        .await
        .create_plan(quota::CreatePlanRequest { plan: Some(plan) })
        .await
        .unwrap()
        .into_inner()
        .plan
        .unwrap()
}

pub async fn create_key(
    suite: &TestSuite,
    tenant: &TenantFixture,
    name: &str,
    plan_id: &str,
) -> (String, String) {
    let mut identity = suite
        .identity_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let created = identity
        .create_api_key(id::CreateApiKeyRequest {
            api_key: Some(id::ApiKey {
                name: name.to_owned(),
                plan_id: plan_id.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    (created.api_key.unwrap().id, created.key)
}

/// A second edge beside the suite's, wired to its services as the admin
/// key, with `tweak` applied to its config; it stops with `shutdown`.
pub struct SideEdge {
    pub addr: SocketAddr,
    pub serving: tokio::task::JoinHandle<()>,
    /// The edge's `/admin/edge` view.
    pub admin: gateway_runtime::ops::View,
    _spool: tempfile::TempDir,
}

pub async fn side_edge(
    suite: &TestSuite,
    shutdown: &gateway_runtime::CancellationToken,
    grace: Duration,
    tweak: impl FnOnce(&mut gateway_edge::Config),
) -> SideEdge {
    let egress = gateway_egress::EgressPolicy::strict()
        .allow_entry(gateway_e2e::LOOPBACK_UPSTREAMS)
        .unwrap();
    side_edge_with_egress(suite, shutdown, grace, egress, tweak).await
}

/// As [`side_edge`], with its own egress policy.
pub async fn side_edge_with_egress(
    suite: &TestSuite,
    shutdown: &gateway_runtime::CancellationToken,
    grace: Duration,
    egress: gateway_egress::EgressPolicy,
    tweak: impl FnOnce(&mut gateway_edge::Config),
) -> SideEdge {
    side_edge_with_plugins(suite, shutdown, grace, egress, Vec::new(), tweak).await
}

/// As [`side_edge`], with its own egress policy and extra plugins.
pub async fn side_edge_with_plugins(
    suite: &TestSuite,
    shutdown: &gateway_runtime::CancellationToken,
    grace: Duration,
    egress: gateway_egress::EgressPolicy,
    plugins: Vec<Box<dyn gateway_edge::plugin::EdgePlugin>>,
    tweak: impl FnOnce(&mut gateway_edge::Config),
) -> SideEdge {
    let url = |addr: SocketAddr| format!("http://{addr}");
    let spool = tempfile::tempdir().unwrap();
    let mut config = gateway_edge::Config {
        identity_url: url(suite.addresses.identity),
        catalog_url: url(suite.addresses.catalog),
        quota_url: url(suite.addresses.quota),
        usage_url: url(suite.addresses.usage),
        spool_dir: spool.path().display().to_string(),
        ..gateway_edge::Config::default()
    };
    tweak(&mut config);
    let auth = gateway_auth::AuthConfig {
        admin_key: gateway_e2e::ADMIN_KEY.into(),
        ..gateway_auth::AuthConfig::default()
    };
    let edge = gateway_edge::Edge::with_plugins(config, &auth, egress, plugins, shutdown).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = edge.admin_view();
    let serving = tokio::spawn(edge.serve(listener, shutdown.clone(), grace));
    SideEdge {
        addr,
        serving,
        admin,
        _spool: spool,
    }
}

/// Registers API `slug` of `tenant` on `url`, as the tenant's admin.
pub async fn create_api(
    suite: &TestSuite,
    tenant: &TenantFixture,
    slug: &str,
    url: &str,
) -> Result<cat::Api, tonic::Status> {
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&tenant.admin_token))
        .await;
    catalog
        .create_api(cat::CreateApiRequest {
            api: Some(cat::Api {
                name: slug.to_owned(),
                slug: slug.to_owned(),
                upstreams: vec![cat::UpstreamTarget {
                    url: url.to_owned(),
                    weight: 1,
                }],
                enabled: true,
                ..Default::default()
            }),
            upstream_auth_secret: String::new(),
        })
        .await
        .map(|created| created.into_inner().api.unwrap())
}

/// Calls `path` until it answers something other than 404 (the API has
/// reached the edge's snapshot), and returns that answer.
pub async fn first_served(
    client: &HttpClient,
    edge: SocketAddr,
    path: &str,
    key: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let answer = call(client, edge, "GET", path, Some(key), empty()).await;
        if answer.0 != StatusCode::NOT_FOUND {
            return answer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path} never reached the edge"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The problem+json body of an answer, after checking its shape.
pub fn problem_of(
    (status, headers, body): &(StatusCode, http::HeaderMap, Bytes),
    expected: StatusCode,
) -> serde_json::Value {
    assert_eq!(*status, expected, "{}", String::from_utf8_lossy(body));
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(problem["status"], expected.as_u16());
    assert!(problem["instance"].as_str().is_some(), "{problem}");
    problem
}

/// An upstream that answers at once, then trickles its body: one chunk,
/// then another after `pause`.
pub async fn start_trickle_upstream(pause: Duration) -> SocketAddr {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    use tokio_stream::StreamExt as _;
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
                        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(2);
                        tokio::spawn(async move {
                            let _ = sender.send(Bytes::from_static(b"first ")).await;
                            tokio::time::sleep(pause).await;
                            let _ = sender.send(Bytes::from_static(b"second")).await;
                        });
                        let frames = tokio_stream::wrappers::ReceiverStream::new(receiver)
                            .map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
                        Ok::<_, Infallible>(Response::new(StreamBody::new(frames)))
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An upstream that answers every request with the status in the returned
/// cell (200 to begin with), naming itself in `x-upstream-path`.
pub async fn start_switchable_upstream()
-> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU16>) {
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = std::sync::Arc::new(AtomicU16::new(200));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shared = std::sync::Arc::clone(&status);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let status = std::sync::Arc::clone(&shared);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let code = status.load(Ordering::Relaxed);
                    async move {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(code)
                                .header("x-upstream-path", request.uri().path())
                                .body(Full::new(Bytes::from_static(b"switchable")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, status)
}

/// A loopback address where nothing listens (connections are refused).
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// An upstream that answers every request with `{"id":1}` as JSON.
pub async fn start_json_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(br#"{"id":1}"#)))
                            .unwrap(),
                    )
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An upstream that accepts `Upgrade: echo` with 101 and then echoes every
/// byte back on the upgraded connection.
pub async fn start_upgrade_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|mut request: Request<Incoming>| async move {
                        let upgrade = hyper::upgrade::on(&mut request);
                        tokio::spawn(async move {
                            if let Ok(upgraded) = upgrade.await {
                                let mut io = TokioIo::new(upgraded);
                                let (mut reader, mut writer) = tokio::io::split(&mut io);
                                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                            }
                        });
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "echo")
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// `(status, headers, body)` of a bodiless request with a key and extra
/// headers.
pub async fn send(
    client: &HttpClient,
    edge: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, bytes::Bytes) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{edge}{path}"))
        .header("x-api-key", key);
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

/// The tenant's usage events, polled until `done` accepts them (15 s at
/// most).
pub async fn usage_events_until(
    suite: &TestSuite,
    tenant: &TenantFixture,
    done: impl Fn(&[gateway_proto::usage::v1::UsageEvent]) -> bool,
) -> Vec<gateway_proto::usage::v1::UsageEvent> {
    let mut usage = suite
        .usage_as(Credentials::bearer(&tenant.admin_token))
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let events: Vec<_> = usage
            .list_logs(gateway_proto::usage::v1::ListLogsRequest {
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .logs
            .into_iter()
            .filter_map(|log| log.event)
            .collect();
        if done(&events) || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An upstream for the response cache: counts every request it serves
/// (`x-count`, and the body), sends validators, and by path: `/nostore`
/// (no-store), `/cookie` (Set-Cookie), `/short` (max-age=1), `/slow`
/// (answers after 300 ms). Writes answer 201.
pub async fn start_cache_upstream() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>)
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let served = std::sync::Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = std::sync::Arc::clone(&served);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    async move {
                        let path = request.uri().path().to_owned();
                        if request.method() != http::Method::GET {
                            return Ok::<_, Infallible>(
                                Response::builder()
                                    .status(201)
                                    .body(Full::new(Bytes::from("created")))
                                    .unwrap(),
                            );
                        }
                        if path.ends_with("/slow") {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let mut response = Response::builder()
                            .header("x-count", n.to_string())
                            .header("etag", "\"e1\"")
                            .header("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT")
                            .header("content-type", "text/plain");
                        if path.ends_with("/nostore") {
                            response = response.header("cache-control", "no-store");
                        } else if path.ends_with("/cookie") {
                            response = response.header("set-cookie", "session=1");
                        } else if path.ends_with("/short") {
                            response = response.header("cache-control", "max-age=1");
                        }
                        Ok(response
                            .body(Full::new(Bytes::from(n.to_string())))
                            .unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, count)
}
