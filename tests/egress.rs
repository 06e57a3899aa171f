//! The egress policy end to end: internal upstream addresses are refused
//! when a tenant registers them and when the edge connects, names that
//! resolve to loopback included; the allow-list opens exactly what it
//! names; redirects are passed back, never followed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use gateway_e2e::{Backend, Credentials, TestSuite};
use gateway_egress::EgressPolicy;
use gateway_proto::catalog::v1 as cat;
use http::{Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::Code;

mod edge_support;

use edge_support::*;

/// Every special-purpose class, in the spellings an attacker would try.
const INTERNAL_URLS: &[&str] = &[
    "http://127.0.0.1:9090/metrics",
    "http://0x7f.1/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]/",
    "http://localhost:9090/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00::1]/",
    "http://0.0.0.0/",
    "http://[::]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://192.0.2.1/",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_at_registration() {
    let upstream = start_upstream().await;
    // Only the one upstream is open.
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.egress.allow = vec![upstream.to_string()];
    })
    .await
    .unwrap();
    let acme = suite.tenant("acme").await;
    for (index, url) in INTERNAL_URLS.iter().enumerate() {
        let refused = create_api(&suite, &acme, &format!("api-{index}"), url)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{url}");
        assert!(
            refused.message().contains("api.upstreams[0].url")
                && refused.message().contains("egress policy"),
            "{url}: {}",
            refused.message()
        );
    }
    // A channel's base URL too.
    let mut catalog = suite
        .catalog_as(Credentials::bearer(&acme.admin_token))
        .await;
    let refused = catalog
        .create_channel(cat::CreateChannelRequest {
            channel: Some(cat::Channel {
                name: "metadata".to_owned(),
                provider: cat::Provider::OpenaiCompatible.into(),
                base_url: "http://169.254.169.254/v1".to_owned(),
                models: vec!["gpt-4o".to_owned()],
                weight: 1,
                enabled: true,
                ..Default::default()
            }),
            secret: "sk-provider-1234".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("channel.base_url"), "{refused}");
    // What the allow-list names is accepted, and nothing beside it.
    create_api(&suite, &acme, "open", &format!("http://{upstream}/base"))
        .await
        .unwrap();
    let neighbour = format!("http://127.0.0.1:{}/", upstream.port() + 1);
    assert!(
        create_api(&suite, &acme, "beside", &neighbour)
            .await
            .is_err()
    );
    suite.stop().await.unwrap();
}

/// An upstream that redirects every request to `target`.
async fn start_redirecting_upstream(target: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let target = target.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_| {
                    let response = Response::builder()
                        .status(302)
                        .header("location", target.clone())
                        .body(http_body_util::Empty::<bytes::Bytes>::new())
                        .unwrap();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_internal_addresses_when_it_connects() {
    // The suite's catalog and edge open loopback (the tests' upstreams);
    // a second edge opens exactly one upstream.
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let upstream = start_upstream().await;
    let internal = start_upstream().await;
    let redirecting = start_redirecting_upstream(format!("http://{internal}/secret")).await;
    let acme = suite.tenant("acme").await;
    let (_, key) = create_key(&suite, &acme, "k", "").await;
    for (slug, url) in [
        ("open", format!("http://{upstream}/base")),
        ("literal", format!("http://{internal}/base")),
        // A name: the catalog cannot judge it; the edge checks what it
        // resolves to.
        (
            "named",
            format!("http://localhost:{}/base", internal.port()),
        ),
        ("redirect", format!("http://{redirecting}/")),
    ] {
        create_api(&suite, &acme, slug, &url).await.unwrap();
    }
    let shutdown = gateway_runtime::CancellationToken::new();
    let policy = EgressPolicy::strict()
        .allowing(upstream)
        .allowing(redirecting);
    let edge =
        side_edge_with_egress(&suite, &shutdown, Duration::from_secs(1), policy, |_| {}).await;
    let client = http_client();

    let served = first_served(&client, edge.addr, "/acme/open/x", &key).await;
    assert_eq!(served.0, StatusCode::OK);
    assert_eq!(served.1["x-upstream-path"], "/base/x");
    for path in ["/acme/literal/metrics", "/acme/named/metrics"] {
        let answer = first_served(&client, edge.addr, path, &key).await;
        let problem = problem_of(&answer, StatusCode::BAD_GATEWAY);
        let detail = problem["detail"].as_str().unwrap();
        assert_eq!(
            detail, "the upstream address is not allowed by the egress policy",
            "{path}"
        );
        assert!(!String::from_utf8_lossy(&answer.2).contains("127.0.0.1"));
    }
    // The redirect comes back to the client as it was sent.
    let redirected = first_served(&client, edge.addr, "/acme/redirect/", &key).await;
    assert_eq!(redirected.0, StatusCode::FOUND);
    assert_eq!(
        redirected.1["location"].to_str().unwrap(),
        format!("http://{internal}/secret")
    );
    shutdown.cancel();
    let _ = edge.serving.await;
    suite.stop().await.unwrap();
}
