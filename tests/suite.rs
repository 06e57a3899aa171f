//! The suite starts on SQLite and on PostgreSQL, serves health and
//! reflection on every gRPC service, answers UNIMPLEMENTED for RPCs that are
//! not built yet, and stops cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use gateway_e2e::{Backend, TestSuite};
use gateway_proto::identity::v1::ListTenantsRequest;
use gateway_proto::identity::v1::identity_service_client::IdentityServiceClient;
use gateway_proto::usage::v1::ListLogsRequest;
use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
use http_body_util::{BodyExt as _, Empty};
use tokio_stream::StreamExt as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn every_service_serves_health_and_reflection(backend: Backend) {
    let Some(suite) = TestSuite::start(backend).await else {
        return;
    };
    for (endpoint, service) in suite.grpc_services() {
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel.clone());
        for name in [service, ""] {
            let status = health
                .check(HealthCheckRequest {
                    service: name.to_owned(),
                })
                .await
                .unwrap()
                .into_inner()
                .status();
            assert_eq!(status, ServingStatus::Serving, "{endpoint} {name:?}");
        }
        let unknown = health
            .check(HealthCheckRequest {
                service: "no.such.Service".to_owned(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);

        let mut listed = list_services(channel).await;
        listed.sort();
        let mut expected = vec![
            service.to_owned(),
            "grpc.health.v1.Health".to_owned(),
            "grpc.reflection.v1.ServerReflection".to_owned(),
            "grpc.reflection.v1alpha.ServerReflection".to_owned(),
        ];
        expected.sort();
        assert_eq!(
            listed, expected,
            "reflection on {endpoint} lists only what it serves"
        );
    }
    suite.stop().await.unwrap();
}

async fn list_services(channel: tonic::transport::Channel) -> Vec<String> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_and_reflection_on_sqlite() {
    every_service_serves_health_and_reflection(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_and_reflection_on_postgres() {
    every_service_serves_health_and_reflection(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_refuses_calls_without_credentials() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let mut usage = UsageServiceClient::new(suite.channel(suite.addresses.usage).await);
    let status = usage
        .list_logs(ListLogsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_refuses_admin_calls_without_credentials() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let mut identity = IdentityServiceClient::new(suite.channel(suite.addresses.identity).await);
    let status = identity
        .list_tenants(ListTenantsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_answers_problem_json_with_the_request_id() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();

    let request = http::Request::get(format!(
        "http://{}/acme/orders/v1/items?page=2",
        suite.addresses.edge
    ))
    .header("x-request-id", "e2e-request-1")
    .body(Empty::new())
    .unwrap();
    let response = client.request(request).await.unwrap();
    // No API key: refused before anything else is looked at.
    assert_eq!(response.status(), http::StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["x-request-id"], "e2e-request-1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["request_id"], "e2e-request-1");

    // A malformed caller id is replaced, never echoed.
    let request = http::Request::get(format!("http://{}/x", suite.addresses.edge))
        .header("x-request-id", "<script>")
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(generated, "<script>");
    assert_eq!(generated.len(), 36);
    suite.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_not_serving_when_shutdown_begins() {
    let suite = TestSuite::start(Backend::Sqlite).await.unwrap();
    let channel = suite.channel(suite.addresses.quota).await;
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: gateway_quota::GRPC_SERVICE_NAME.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let stopping = tokio::spawn(suite.stop());
    let next = watch.next().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    drop(watch);
    stopping.await.unwrap().unwrap();
}
