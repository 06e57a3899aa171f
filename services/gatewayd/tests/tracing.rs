//! The edge's traces through the real `gatewayd` binary: a request with a
//! caller's `traceparent` yields an edge span under the caller's, stage
//! spans under it, and quota's server span under the edge's admit stage,
//! all exported over OTLP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

struct Collector(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn call(edge: SocketAddr, key: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&edge, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!(
        "GET /demo/echo/traced HTTP/1.1\r\nHost: {edge}\r\nX-API-Key: {key}\r\n\
         traceparent: 00-{TRACE_ID}-{CALLER_SPAN}-01\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.get(9..12)?.parse().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// An `edge request` span with `edge.admit` and `edge.upstream` children and
/// a quota `Check` under the admit. The demo may need a few calls before it
/// answers 200, all in the same trace, so spans are matched by parent: by
/// name alone, the admit of one call was paired with another's request.
fn complete_chain(by_id: &HashMap<String, Span>) -> Option<(Span, Span, Span, Span)> {
    let child = |parent: &Span, named: &dyn Fn(&str) -> bool| {
        by_id
            .values()
            .find(|span| span.parent_span_id == parent.span_id && named(&span.name))
            .cloned()
    };
    by_id
        .values()
        .filter(|span| span.name == "edge request")
        .find_map(|request| {
            let admit = child(request, &|name| name == "edge.admit")?;
            let upstream = child(request, &|name| name == "edge.upstream")?;
            let quota = child(&admit, &|name| name.contains("Check"))?;
            Some((request.clone(), admit, upstream, quota))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_span_parents_its_stages_and_the_quota_call() {
    let collector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector_addr = collector.local_addr().unwrap();
    let (sender, mut spans) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(collector)),
    );
    let data = tempfile::tempdir().unwrap();
    let edge = free_addr();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayd"));
    command
        .arg("--demo")
        .current_dir(data.path())
        .env_clear()
        .env("GATEWAY_RUNTIME_OPS_ADDR", free_addr().to_string())
        .env("GATEWAY_EDGE_LISTEN_ADDR", edge.to_string())
        .env("GATEWAY_BOOTSTRAP_PASSWORD", "tracing-test-password")
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{collector_addr}"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // Every listener on a free port: the console's default, 8000, may be taken.
    for service in ["identity", "catalog", "quota", "usage", "console"] {
        command.env(
            format!("GATEWAY_{}_LISTEN_ADDR", service.to_uppercase()),
            free_addr().to_string(),
        );
    }
    let mut child = command.spawn().unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let key = tokio::task::spawn_blocking(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.split_once("X-API-Key: ")
                    .and_then(|(_, rest)| rest.split('\'').next().map(str::to_owned))
            })
            .expect("the demo's curl line")
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let key = key.clone();
        let status = tokio::task::spawn_blocking(move || call(edge, &key))
            .await
            .unwrap();
        if status == Some(200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo never answered: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Spans arrive in batches; collect this trace's until the chain is there.
    let mut by_id: HashMap<String, Span> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let chain = loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(span)) = tokio::time::timeout(remaining, spans.recv()).await else {
            panic!(
                "no complete trace; got {:?}",
                by_id.values().map(|span| &span.name).collect::<Vec<_>>()
            );
        };
        if hex(&span.trace_id) != TRACE_ID {
            continue;
        }
        by_id.insert(hex(&span.span_id), span);
        if let Some(chain) = complete_chain(&by_id) {
            break chain;
        }
    };
    let (request, admit, upstream, quota) = chain;
    assert_eq!(hex(&request.parent_span_id), CALLER_SPAN);
    assert_eq!(admit.parent_span_id, request.span_id);
    assert_eq!(upstream.parent_span_id, request.span_id);
    assert_eq!(quota.parent_span_id, admit.span_id);
    let _ = child.kill();
    let _ = child.wait();
}
