//! The real `gateway-identity` binary: configured by environment, exports
//! its spans over OTLP as children of the caller's W3C `traceparent`, and
//! stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A minimal OTLP collector that forwards every span it receives.
struct Collector {
    spans: mpsc::UnboundedSender<Span>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    let _ = self.spans.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_exports_spans_under_the_callers_trace_and_stops_on_sigterm() {
    let collector_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector_listener.local_addr().unwrap();
    let (spans_sender, mut spans) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector {
                spans: spans_sender,
            }))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(
                collector_listener,
            )),
    );

    let data = tempfile::tempdir().unwrap();
    let grpc_port = free_port();
    // Whatever the binary writes by default (its master key file) goes
    // under the temporary directory, never into the source tree.
    let child = Command::new(env!("CARGO_BIN_EXE_gateway-identity"))
        .current_dir(data.path())
        .env_clear()
        .env(
            "GATEWAY_IDENTITY_LISTEN_ADDR",
            format!("127.0.0.1:{grpc_port}"),
        )
        .env(
            "GATEWAY_IDENTITY_DATABASE_URL",
            format!("sqlite://{}/identity.db", data.path().display()),
        )
        .env(
            "GATEWAY_RUNTIME_OPS_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("GATEWAY_BOOTSTRAP_PASSWORD", "process-test-password")
        .env(
            "GATEWAY_SECRETS_MASTER_KEY_FILE",
            data.path().join("master.key").display().to_string(),
        )
        .env("GATEWAY_TELEMETRY_LOG_FORMAT", "json")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let endpoint = format!("http://127.0.0.1:{grpc_port}");
    gateway_testkit::wait_for_grpc_health(&endpoint, "", Duration::from_secs(20)).await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: "gateway.identity.v1.IdentityService".to_owned(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .unwrap(),
    );
    HealthClient::new(channel).check(request).await.unwrap();

    // SIGTERM: the process drains, flushes its spans and exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        exit.status.success(),
        "{}",
        String::from_utf8_lossy(&exit.stderr)
    );
    let logs = String::from_utf8_lossy(&exit.stderr);
    assert!(
        logs.contains("\"received SIGTERM, shutting down\""),
        "{logs}"
    );
    assert!(
        !logs.contains("process-test-password"),
        "the password must never be logged"
    );

    // The readiness polls made spans of their own; ours is the one in the
    // caller's trace.
    let span = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let span = spans.recv().await.expect("collector open");
            if hex(&span.trace_id) == TRACE_ID {
                return span;
            }
        }
    })
    .await
    .expect("a span of the caller's trace reaches the collector");
    assert_eq!(span.name, "grpc.health.v1.Health/Check");
    assert_eq!(hex(&span.parent_span_id), PARENT_SPAN_ID);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
