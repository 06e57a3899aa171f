//! An in-test usage service: stores event ids in a map and acks each batch
//! after storing it; can be stopped and restarted on the same port.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_proto::usage::v1::usage_service_server::{UsageService, UsageServiceServer};
use gateway_proto::usage::v1::{IngestRequest, IngestResponse, RejectedEvent, UsageEvent};
use gateway_usage_sender::{SenderConfig, SenderError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status, Streaming};

pub const ADMIN_KEY: &str = "test-admin-key";

#[derive(Default)]
pub struct Store {
    /// event_id -> times stored (a replay counts again).
    pub events: HashMap<String, u32>,
    /// Contract breaches seen by the server (batch numbering).
    pub violations: Vec<String>,
}

#[derive(Clone)]
struct FakeUsage {
    store: Arc<Mutex<Store>>,
    stop: CancellationToken,
    ack_delay: Duration,
}

#[tonic::async_trait]
impl UsageService for FakeUsage {
    async fn ingest(
        &self,
        request: Request<Streaming<IngestRequest>>,
    ) -> Result<Response<BoxStream<IngestResponse>>, Status> {
        let key = request
            .metadata()
            .get("x-admin-key")
            .and_then(|value| value.to_str().ok());
        if key != Some(ADMIN_KEY) {
            return Err(Status::unauthenticated("bad admin key"));
        }
        let mut inbound = request.into_inner();
        let (acks, outbound) = mpsc::channel(16);
        let store = self.store.clone();
        let stop = self.stop.clone();
        let ack_delay = self.ack_delay;
        tokio::spawn(async move {
            let mut expected = 1;
            loop {
                let message = tokio::select! {
                    // A stopping server ends its streams, like a failing store.
                    () = stop.cancelled() => {
                        let _ = acks.send(Err(Status::unavailable("stopping"))).await;
                        return;
                    }
                    message = inbound.message() => message,
                };
                let Ok(Some(batch)) = message else { return };
                if !ack_delay.is_zero() {
                    tokio::time::sleep(ack_delay).await;
                }
                let mut response = IngestResponse {
                    sequence: batch.sequence,
                    ..IngestResponse::default()
                };
                {
                    let mut store = store.lock().unwrap();
                    if batch.sequence != expected {
                        store
                            .violations
                            .push(format!("batch {} where {expected} was due", batch.sequence));
                    }
                    expected = batch.sequence + 1;
                    for event in batch.events {
                        if event.tenant_id.is_empty() {
                            response.rejected.push(RejectedEvent {
                                event_id: event.event_id,
                                reason: "tenant_id: required".to_owned(),
                            });
                            continue;
                        }
                        let count = store.events.entry(event.event_id).or_insert(0);
                        *count += 1;
                        if *count == 1 {
                            response.stored_count += 1;
                        } else {
                            response.duplicate_count += 1;
                        }
                    }
                }
                if acks.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(outbound))))
    }
}

pub struct FakeServer {
    pub port: u16,
    store: Arc<Mutex<Store>>,
    ack_delay: Duration,
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl FakeServer {
    pub async fn start(ack_delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut server = Self {
            port,
            store: Arc::default(),
            ack_delay,
            running: None,
        };
        server.serve(listener);
        server
    }

    pub async fn start_on(port: u16, ack_delay: Duration) -> Self {
        let mut server = Self {
            port,
            store: Arc::default(),
            ack_delay,
            running: None,
        };
        server.restart().await;
        server
    }

    fn serve(&mut self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let service = UsageServiceServer::new(FakeUsage {
            store: self.store.clone(),
            stop: stop.clone(),
            ack_delay: self.ack_delay,
        });
        let signal = stop.clone();
        let handle = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal.cancelled())
                .await
                .unwrap();
        });
        self.running = Some((stop, handle));
    }

    /// Ends every stream with UNAVAILABLE and closes the port.
    pub async fn stop(&mut self) {
        if let Some((stop, handle)) = self.running.take() {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(20), handle)
                .await
                .expect("the fake server stops")
                .unwrap();
        }
    }

    /// Serves again on the same port (and the same store).
    pub async fn restart(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                // The old socket may linger for a moment.
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot rebind port {}: {error}", self.port),
            }
        };
        self.serve(listener);
    }

    pub fn ids(&self) -> HashSet<String> {
        self.store.lock().unwrap().events.keys().cloned().collect()
    }

    pub fn stored(&self) -> usize {
        self.store.lock().unwrap().events.len()
    }

    pub fn duplicates(&self) -> usize {
        self.store
            .lock()
            .unwrap()
            .events
            .values()
            .filter(|c| **c > 1)
            .count()
    }

    pub fn violations(&self) -> Vec<String> {
        self.store.lock().unwrap().violations.clone()
    }
}

/// A port nothing listens on (for a usage service that is down).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn config(port: u16, spool_dir: &Path) -> SenderConfig {
    let mut config = SenderConfig::new(format!("http://127.0.0.1:{port}"), ADMIN_KEY, spool_dir);
    config.connect_timeout = Duration::from_secs(1);
    config
}

pub fn event(index: usize) -> UsageEvent {
    UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: "tenant-1".to_owned(),
        user_id: "user-1".to_owned(),
        key_id: "key-1".to_owned(),
        model: "gpt-test".to_owned(),
        method: "POST".to_owned(),
        path: "/v1/chat/completions".to_owned(),
        status: 200,
        prompt_tokens: i64::try_from(index).unwrap(),
        completion_tokens: 7,
        request_id: format!("request-{index}"),
        ..UsageEvent::default()
    }
}

/// Polls `check` until it holds; fails after `within`.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a sender on a spool whose previous sender was just aborted in this
/// process. A dead process frees the spool lock at once; here the aborted
/// task's blocking spool job and connection task drop their handles a moment
/// later, so a busy lock is retried for a bounded time.
pub async fn start_after_crash(
    config: SenderConfig,
    shutdown: CancellationToken,
) -> (gateway_usage_sender::UsageSender, JoinHandle<()>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match gateway_usage_sender::UsageSender::start(config.clone(), shutdown.clone()) {
            Ok(started) => return started,
            Err(SenderError::Spool { source, .. })
                if source.kind() == std::io::ErrorKind::ResourceBusy
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("restart after a crash: {error}"),
        }
    }
}
