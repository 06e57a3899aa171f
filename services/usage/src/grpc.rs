//! The tonic adapter for `gateway.usage.v1.UsageService`: the Ingest
//! stream, and queries limited to what the caller may see (USER their own
//! records, ADMIN their tenant's, SUPERADMIN all).

use std::sync::Arc;

use gateway_auth::{Access, Caller};
use gateway_proto::usage::v1 as pb;
use gateway_proto::usage::v1::usage_service_server::UsageService;
use gateway_proto::{duration_from_micros, micros_from_timestamp, timestamp_from_micros};
use gateway_storage::calendar::utc_day_start;
use gateway_storage::page::Page;
use gateway_storage::{StorageError, now_micros};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::audit::{AuditWriters, Location};
use crate::ingest::Ingestor;
use crate::store::{LogFilter, LogRow, StatsScope, UsageStore};

pub struct UsageGrpc {
    store: UsageStore,
    ingestor: Arc<Ingestor>,
    audit: Arc<AuditWriters>,
}

impl UsageGrpc {
    pub fn new(store: UsageStore, ingestor: Arc<Ingestor>, audit: Arc<AuditWriters>) -> Self {
        Self {
            store,
            ingestor,
            audit,
        }
    }
}

/// Who may call each RPC; finer filtering is the service's.
pub fn access_policy(method: &str) -> Option<Access> {
    Some(match method {
        "Ingest" => Access::Superadmin,
        "ListLogs" | "GetLog" | "GetLogBodies" | "GetStats" => Access::Authenticated,
        _ => return None,
    })
}

type GrpcResult<T> = Result<Response<T>, Status>;

fn storage_status(error: StorageError) -> Status {
    match error {
        StorageError::NotFound => Status::not_found("log not found"),
        StorageError::Unavailable(_) => {
            tracing::error!(%error, "usage store unavailable");
            Status::unavailable("the usage store is temporarily unavailable")
        }
        error => {
            tracing::error!(%error, "usage query failed");
            Status::internal("internal error")
        }
    }
}

/// The (tenant, user) a caller is limited to; empty = unrestricted.
fn visible(caller: &Caller) -> Result<(String, String), Status> {
    if caller.is_superadmin() {
        return Ok((String::new(), String::new()));
    }
    // Deny by default: a caller with no tenant and user sees nothing.
    let (Some(tenant), Some(user)) = (caller.tenant_id(), caller.user_id()) else {
        return Err(Status::permission_denied("no tenant to read usage of"));
    };
    let user = if caller.administers(tenant) { "" } else { user };
    Ok((tenant.to_owned(), user.to_owned()))
}

/// Narrows a requested filter value to what the caller may see; None when
/// the request asks for something outside it (answered as nothing).
fn narrow(requested: &str, allowed: &str) -> Option<String> {
    match (requested, allowed) {
        (requested, "") => Some(requested.to_owned()),
        ("", allowed) => Some(allowed.to_owned()),
        (requested, allowed) if requested == allowed => Some(allowed.to_owned()),
        _ => None,
    }
}

fn can_see(caller: &Caller, row: &LogRow) -> bool {
    visible(caller).is_ok_and(|(tenant, user)| {
        (tenant.is_empty() || row.record.tenant_id == tenant)
            && (user.is_empty() || row.record.user_id == user)
    })
}

fn log_to_proto(row: LogRow) -> pb::LogRecord {
    let record = row.record;
    pb::LogRecord {
        event: Some(pb::UsageEvent {
            event_id: record.event_id,
            time: Some(timestamp_from_micros(record.occurred_at_micros)),
            tenant_id: record.tenant_id,
            user_id: record.user_id,
            key_id: record.key_id,
            client_id: record.client_id,
            group_id: record.group_id,
            api_id: record.api_id,
            model: record.model,
            upstream_model: record.upstream_model,
            channel_id: record.channel_id,
            method: record.method,
            path: record.path,
            status: record.status,
            latency: Some(duration_from_micros(record.latency_micros)),
            upstream_latency: (record.upstream_latency_micros > 0)
                .then(|| duration_from_micros(record.upstream_latency_micros)),
            bytes_in: record.bytes_in,
            bytes_out: record.bytes_out,
            prompt_tokens: record.prompt_tokens,
            completion_tokens: record.completion_tokens,
            cached_tokens: record.cached_tokens,
            cost_micros: record.cost_micros,
            request_id: record.request_id,
            trace_id: record.trace_id,
            stream: record.stream,
            error_message: record.error_message,
            remote_ip: record.remote_ip,
            user_agent: record.user_agent,
            route: record.route,
            attempts: record.attempts,
            provider: record.provider,
            estimated: record.estimated,
            time_to_first_token: (record.ttft_micros > 0)
                .then(|| duration_from_micros(record.ttft_micros)),
            finish_reason: record.finish_reason,
            cache_hit: record.cache_hit,
            bodies: None,
        }),
        has_bodies: row.has_bodies,
        ingest_time: Some(timestamp_from_micros(row.ingested_at)),
    }
}

/// Page tokens carry the last row's (event time, event id).
fn cursor_of(row: &LogRow) -> String {
    format!("{}|{}", row.record.occurred_at_micros, row.record.event_id)
}

fn parse_cursor(after: &str) -> Result<Option<(i64, String)>, Status> {
    if after.is_empty() {
        return Ok(None);
    }
    let bad = || Status::invalid_argument("page_token: not a token this service issued");
    let (time, id) = after.split_once('|').ok_or_else(bad)?;
    Ok(Some((time.parse().map_err(|_| bad())?, id.to_owned())))
}

impl UsageGrpc {
    /// Stores each batch of `inbound` and acks it, in order, each ack only
    /// once its batch is durable. Up to `Ingestor::pipeline_depth` batches
    /// are stored at once (PostgreSQL commits them in parallel); no more
    /// is read until one is stored (backpressure).
    fn ingest_batches<S>(&self, inbound: S) -> ReceiverStream<Result<pb::IngestResponse, Status>>
    where
        S: tokio_stream::Stream<Item = Result<pb::IngestRequest, Status>> + Send + Unpin + 'static,
    {
        // Small: acks wait for the client to read them, and the next batch
        // is read only after the previous ack is queued.
        let (acks, receiver) = tokio::sync::mpsc::channel(4);
        let ingestor = Arc::clone(&self.ingestor);
        tokio::spawn(store_in_order(ingestor, inbound, acks));
        ReceiverStream::new(receiver)
    }
}

type Acks = tokio::sync::mpsc::Sender<Result<pb::IngestResponse, Status>>;

async fn store_in_order<S>(ingestor: Arc<Ingestor>, mut inbound: S, acks: Acks)
where
    S: tokio_stream::Stream<Item = Result<pb::IngestRequest, Status>> + Send + Unpin + 'static,
{
    let depth = ingestor.pipeline_depth();
    let mut storing = futures_util::stream::FuturesOrdered::new();
    let mut expected = 1_i64;
    let mut open = true;
    let mut refusal = None;
    while open || !storing.is_empty() {
        tokio::select! {
            biased;
            Some((sequence, stored)) = storing.next(), if !storing.is_empty() => {
                if !ack(&acks, sequence, stored).await {
                    return;
                }
            }
            next = inbound.next(), if open && storing.len() < depth => match next {
                Some(Ok(batch)) if batch.sequence == expected => {
                    expected += 1;
                    let ingestor = Arc::clone(&ingestor);
                    storing.push_back(async move {
                        (batch.sequence, ingestor.store_batch(batch.events).await)
                    });
                }
                // A gap: the batches before it are still acked, then
                // the stream ends with the refusal.
                Some(Ok(batch)) => {
                    refusal = Some(Status::invalid_argument(format!(
                        "sequence: expected {expected}, got {}",
                        batch.sequence
                    )));
                    open = false;
                }
                // The batches being stored are still acked: the client
                // may be half-closed, waiting for them.
                None => open = false,
                Some(Err(status)) => {
                    tracing::debug!(%status, "ingest stream ended by the client");
                    return;
                }
            },
        }
    }
    if let Some(refused) = refusal {
        let _ = acks.send(Err(refused)).await;
    }
}

/// Sends the ack of a stored batch, or ends the stream on a failed one
/// (the client resends what is unacked); false when the stream is over.
async fn ack(
    acks: &Acks,
    sequence: i64,
    stored: Result<pb::IngestResponse, crate::ingest::IngestError>,
) -> bool {
    match stored {
        Ok(mut ack) => {
            ack.sequence = sequence;
            acks.send(Ok(ack)).await.is_ok()
        }
        Err(error) => {
            tracing::error!(%error, "could not store a usage batch; ending the stream so the client resends");
            let unavailable = Status::unavailable("usage storage failed; resend unacked batches");
            let _ = acks.send(Err(unavailable)).await;
            false
        }
    }
}

#[tonic::async_trait]
impl UsageService for UsageGrpc {
    async fn ingest(
        &self,
        request: Request<Streaming<pb::IngestRequest>>,
    ) -> GrpcResult<tonic::codegen::BoxStream<pb::IngestResponse>> {
        Ok(Response::new(Box::pin(
            self.ingest_batches(request.into_inner()),
        )))
    }

    async fn list_logs(
        &self,
        request: Request<pb::ListLogsRequest>,
    ) -> GrpcResult<pb::ListLogsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let page = Page::new(request.page_size, &request.page_token)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let before = parse_cursor(&page.after)?;
        let (tenant, user) = visible(&caller)?;
        let (Some(tenant_id), Some(user_id)) = (
            narrow(&request.tenant_id, &tenant),
            narrow(&request.user_id, &user),
        ) else {
            return Ok(Response::new(pb::ListLogsResponse::default()));
        };
        let (min_status, max_status) = match request.status {
            Some(status) => (Some(status), Some(status)),
            None => (request.min_status, request.max_status),
        };
        let filter = LogFilter {
            tenant_id,
            user_id,
            key_id: request.key_id,
            model: request.model,
            api_id: request.api_id,
            channel_id: request.channel_id,
            min_status,
            max_status,
            start: request.start_time.as_ref().map(micros_from_timestamp),
            end: request.end_time.as_ref().map(micros_from_timestamp),
        };
        let rows = self
            .store
            .list_logs(&filter, before, page.fetch_limit())
            .await
            .map_err(storage_status)?;
        let mut rows: Vec<(String, LogRow)> =
            rows.into_iter().map(|row| (cursor_of(&row), row)).collect();
        let next_page_token = page.finish(&mut rows, |(cursor, _)| cursor);
        Ok(Response::new(pb::ListLogsResponse {
            logs: rows.into_iter().map(|(_, row)| log_to_proto(row)).collect(),
            next_page_token,
        }))
    }

    async fn get_log(&self, request: Request<pb::GetLogRequest>) -> GrpcResult<pb::GetLogResponse> {
        let caller = Caller::of(&request);
        let row = self
            .store
            .log(&request.get_ref().id)
            .await
            .map_err(storage_status)?;
        if !can_see(&caller, &row) {
            return Err(Status::not_found("log not found"));
        }
        Ok(Response::new(pb::GetLogResponse {
            log: Some(log_to_proto(row)),
        }))
    }

    async fn get_log_bodies(
        &self,
        request: Request<pb::GetLogBodiesRequest>,
    ) -> GrpcResult<pb::GetLogBodiesResponse> {
        let caller = Caller::of(&request);
        let id = &request.get_ref().id;
        let row = self.store.log(id).await.map_err(storage_status)?;
        if !can_see(&caller, &row) {
            return Err(Status::not_found("log not found"));
        }
        let entry = self
            .store
            .audit_entry(id)
            .await
            .map_err(|error| match error {
                StorageError::NotFound => Status::not_found("no bodies were captured for this log"),
                error => storage_status(error),
            })?;
        let location = Location {
            segment: entry.segment,
            offset: u64::try_from(entry.offset).unwrap_or(0),
            length: u64::try_from(entry.length).unwrap_or(0),
        };
        let audit = Arc::clone(&self.audit);
        let bodies = tokio::task::spawn_blocking(move || audit.read(&location))
            .await
            .map_err(|_| Status::internal("internal error"))?
            .map_err(|error| match error {
                crate::audit::AuditError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
                    Status::not_found("the bodies of this log were removed by retention")
                }
                error => {
                    tracing::error!(%error, "could not read audit bodies");
                    Status::internal("internal error")
                }
            })?;
        Ok(Response::new(pb::GetLogBodiesResponse {
            bodies: Some(bodies),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<pb::GetStatsRequest>,
    ) -> GrpcResult<pb::GetStatsResponse> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        let (tenant, user) = visible(&caller)?;
        let (Some(tenant_id), Some(user_id)) = (
            narrow(&request.tenant_id, &tenant),
            narrow(&request.user_id, &user),
        ) else {
            return Ok(Response::new(pb::GetStatsResponse::default()));
        };
        let scope = match (tenant_id.is_empty(), user_id.is_empty()) {
            (_, false) => StatsScope::User { tenant_id, user_id },
            (false, true) => StatsScope::Tenant(tenant_id),
            (true, true) => StatsScope::Global,
        };
        let now = now_micros();
        let today = utc_day_start(now);
        let start = request
            .start_time
            .as_ref()
            .map_or(today, micros_from_timestamp);
        let end = request
            .end_time
            .as_ref()
            .map_or(now.saturating_add(1), micros_from_timestamp);
        if start > end {
            return Err(Status::invalid_argument(
                "start_time: must not be after end_time",
            ));
        }
        let top = match request.top_limit {
            0 => 10,
            limit if limit < 0 => {
                return Err(Status::invalid_argument("top_limit: must not be negative"));
            }
            limit => i64::from(limit.min(100)),
        };
        let stats = self
            .store
            .stats(&scope, start, end, today, top)
            .await
            .map_err(storage_status)?;
        Ok(Response::new(pb::GetStatsResponse {
            spend_micros: stats.spend_micros,
            request_count: stats.request_count,
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.completion_tokens,
            error_count: stats.error_count,
            today_spend_micros: stats.today_spend_micros,
            today_request_count: stats.today_request_count,
            top_keys: stats
                .top_keys
                .into_iter()
                .map(|key| pb::KeyStats {
                    key_id: key.key_id,
                    user_id: key.user_id,
                    spend_micros: key.spend_micros,
                    request_count: key.request_count,
                    total_tokens: key.total_tokens,
                })
                .collect(),
            top_models: stats
                .top_models
                .into_iter()
                .map(|model| pb::ModelStats {
                    model: model.model,
                    request_count: model.request_count,
                    prompt_tokens: model.prompt_tokens,
                    completion_tokens: model.completion_tokens,
                    spend_micros: model.spend_micros,
                })
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use gateway_auth::Role;
    use gateway_storage::{ConnectOptions, Database};

    const DAY: i64 = 86_400 * 1_000_000;

    struct Fixture {
        grpc: UsageGrpc,
        store: UsageStore,
        _audit_dir: tempfile::TempDir,
    }

    async fn fixture(url: &str) -> Fixture {
        let db = Database::connect(url, &ConnectOptions::default())
            .await
            .unwrap();
        db.migrate(&crate::store::MIGRATIONS).await.unwrap();
        let store = UsageStore::new(db);
        let audit_dir = tempfile::tempdir().unwrap();
        let audit = Arc::new(AuditWriters::start(audit_dir.path(), 2, 1 << 20).unwrap());
        let ingestor = Arc::new(Ingestor::new(store.clone(), Arc::clone(&audit), 1024));
        Fixture {
            grpc: UsageGrpc::new(store.clone(), ingestor, audit),
            store,
            _audit_dir: audit_dir,
        }
    }

    fn as_caller<T>(message: T, caller: Caller) -> Request<T> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(caller);
        request
    }

    fn user(tenant: &str, user: &str, role: Role) -> Caller {
        Caller::User {
            user_id: user.to_owned(),
            tenant_id: tenant.to_owned(),
            role,
        }
    }

    /// Events at `now - index minutes` for tenants a / b, users u1 / u2.
    fn event(index: i64, tenant: &str, user: &str, now: i64) -> pb::UsageEvent {
        pb::UsageEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            time: Some(timestamp_from_micros(now - index * 60_000_000)),
            tenant_id: tenant.to_owned(),
            user_id: user.to_owned(),
            key_id: format!("key-{user}-{}", index % 3),
            model: if index % 2 == 0 { "gpt-4o" } else { "claude" }.to_owned(),
            status: if index % 5 == 0 { 500 } else { 200 },
            prompt_tokens: 10,
            completion_tokens: 5,
            cost_micros: 100 * (index + 1),
            bodies: (index % 4 == 0).then(|| pb::AuditBodies {
                request_headers: vec![pb::HttpHeader {
                    name: "Authorization".to_owned(),
                    value: "Bearer sk-secret".to_owned(),
                }],
                request_body: format!("{{\"prompt\":\"hello {index}\"}}").into_bytes(),
                response_body: vec![b'z'; 4096],
                ..pb::AuditBodies::default()
            }),
            ..pb::UsageEvent::default()
        }
    }

    async fn ingest(fixture: &Fixture, events: Vec<pb::UsageEvent>) -> pb::IngestResponse {
        fixture.grpc.ingestor.store_batch(events).await.unwrap()
    }

    async fn list(
        fixture: &Fixture,
        caller: Caller,
        filter: pb::ListLogsRequest,
    ) -> Vec<pb::LogRecord> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = fixture
                .grpc
                .list_logs(as_caller(
                    pb::ListLogsRequest {
                        page_size: 7,
                        page_token: token.clone(),
                        ..filter.clone()
                    },
                    caller.clone(),
                ))
                .await
                .unwrap()
                .into_inner();
            all.extend(page.logs);
            if page.next_page_token.is_empty() {
                return all;
            }
            token = page.next_page_token;
        }
    }

    gateway_testkit::test_on_every_backend! {
        async fn a_nul_byte_is_stored_replaced_not_refused(db) {
            let fixture = fixture(db.url()).await;
            let mut poisoned = event(0, "tenant-a", "u1", now_micros());
            poisoned.model = "gpt\0-4o".to_owned();
            poisoned.bodies = None;
            let ack = ingest(&fixture, vec![poisoned.clone(), event(1, "tenant-a", "u1", now_micros())]).await;
            assert_eq!((ack.stored_count, ack.rejected.len()), (2, 0));
            let row = fixture.grpc.store.log(&poisoned.event_id).await.unwrap();
            assert_eq!(row.record.model, "gpt\u{FFFD}-4o");
        }
    }

    gateway_testkit::test_on_every_backend! {
        async fn logs_stats_and_bodies_are_scoped_by_role(db) {
            let fixture = fixture(db.url()).await;
            let now = now_micros();
            let mut events = Vec::new();
            for index in 0..20 {
                events.push(event(index, "tenant-a", if index % 2 == 0 { "u1" } else { "u2" }, now));
            }
            for index in 0..6 {
                events.push(event(index, "tenant-b", "u9", now));
            }
            let mut invalid = event(0, "", "u1", now);
            invalid.event_id = "not-a-uuid".to_owned();
            events.push(invalid);
            let ack = ingest(&fixture, events.clone()).await;
            assert_eq!((ack.stored_count, ack.duplicate_count), (26, 0));
            assert_eq!(ack.rejected.len(), 1);
            assert!(ack.rejected[0].reason.starts_with("event_id:"));
            // A replay is acked, stored once.
            let replay = ingest(&fixture, events[..5].to_vec()).await;
            assert_eq!((replay.stored_count, replay.duplicate_count), (0, 5));

            let superadmin = Caller::AdminKey;
            let admin_a = user("tenant-a", "admin-a", Role::Admin);
            let admin_b = user("tenant-b", "admin-b", Role::Admin);
            let u1 = user("tenant-a", "u1", Role::User);

            let everything = list(&fixture, superadmin.clone(), pb::ListLogsRequest::default()).await;
            assert_eq!(everything.len(), 26);
            let times: Vec<_> = everything
                .iter()
                .map(|log| micros_from_timestamp(log.event.as_ref().unwrap().time.as_ref().unwrap()))
                .collect();
            assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "newest first");
            assert_eq!(list(&fixture, admin_a.clone(), pb::ListLogsRequest::default()).await.len(), 20);
            let own = list(&fixture, u1.clone(), pb::ListLogsRequest::default()).await;
            assert_eq!(own.len(), 10);
            assert!(own.iter().all(|log| log.event.as_ref().unwrap().user_id == "u1"));
            // Asking for another tenant or user answers nothing, both ways.
            let across = pb::ListLogsRequest { tenant_id: "tenant-b".to_owned(), ..Default::default() };
            assert!(list(&fixture, admin_a.clone(), across).await.is_empty());
            let across = pb::ListLogsRequest { tenant_id: "tenant-a".to_owned(), ..Default::default() };
            assert!(list(&fixture, admin_b.clone(), across).await.is_empty());
            let other_user = pb::ListLogsRequest { user_id: "u2".to_owned(), ..Default::default() };
            assert!(list(&fixture, u1.clone(), other_user).await.is_empty());
            // Filters.
            let errors = pb::ListLogsRequest { min_status: Some(500), max_status: Some(599), ..Default::default() };
            assert_eq!(list(&fixture, admin_a.clone(), errors).await.len(), 4);
            let model = pb::ListLogsRequest { model: "claude".to_owned(), ..Default::default() };
            assert_eq!(list(&fixture, admin_a.clone(), model).await.len(), 10);
            let recent = pb::ListLogsRequest {
                start_time: Some(timestamp_from_micros(now - 5 * 60_000_000 + 1)),
                ..Default::default()
            };
            assert_eq!(list(&fixture, admin_a.clone(), recent).await.len(), 5);
            let key = pb::ListLogsRequest { key_id: "key-u1-0".to_owned(), status: Some(200), ..Default::default() };
            assert!(list(&fixture, admin_a.clone(), key).await.iter().all(|log| {
                let event = log.event.as_ref().unwrap();
                event.key_id == "key-u1-0" && event.status == 200
            }));

            // One log and its bodies: the owner and the admin see them, the
            // other tenant and another user get NOT_FOUND.
            let with_bodies = events[4].event_id.clone();
            let log = fixture
                .grpc
                .get_log(as_caller(pb::GetLogRequest { id: with_bodies.clone() }, u1.clone()))
                .await
                .unwrap()
                .into_inner()
                .log
                .unwrap();
            assert!(log.has_bodies);
            let bodies = fixture
                .grpc
                .get_log_bodies(as_caller(pb::GetLogBodiesRequest { id: with_bodies.clone() }, admin_a.clone()))
                .await
                .unwrap()
                .into_inner()
                .bodies
                .unwrap();
            assert_eq!(bodies.request_body, b"{\"prompt\":\"hello 4\"}");
            assert!(bodies.request_headers.is_empty(), "authorization is never stored");
            assert_eq!(bodies.response_body.len(), 1024, "cut to max_body_bytes");
            assert!(bodies.response_truncated);
            for stranger in [admin_b.clone(), user("tenant-a", "u2", Role::User)] {
                let code = fixture
                    .grpc
                    .get_log_bodies(as_caller(pb::GetLogBodiesRequest { id: with_bodies.clone() }, stranger.clone()))
                    .await
                    .unwrap_err()
                    .code();
                assert_eq!(code, tonic::Code::NotFound);
                let code = fixture
                    .grpc
                    .get_log(as_caller(pb::GetLogRequest { id: with_bodies.clone() }, stranger))
                    .await
                    .unwrap_err()
                    .code();
                assert_eq!(code, tonic::Code::NotFound);
            }
            let no_bodies = fixture
                .grpc
                .get_log_bodies(as_caller(pb::GetLogBodiesRequest { id: events[1].event_id.clone() }, superadmin.clone()))
                .await
                .unwrap_err();
            assert_eq!(no_bodies.code(), tonic::Code::NotFound);

            // Stats: per user, per tenant, global, over a range.
            let range = pb::GetStatsRequest {
                start_time: Some(timestamp_from_micros(now - DAY)),
                end_time: Some(timestamp_from_micros(now + 1)),
                ..Default::default()
            };
            let stats = |caller: Caller, request: pb::GetStatsRequest| {
                let grpc = &fixture.grpc;
                async move { grpc.get_stats(as_caller(request, caller)).await.unwrap().into_inner() }
            };
            let global = stats(superadmin.clone(), range.clone()).await;
            assert_eq!(global.request_count, 26);
            let tenant_a_spend: i64 = (0..20).map(|index| 100 * (index + 1)).sum();
            let tenant_b_spend: i64 = (0..6).map(|index| 100 * (index + 1)).sum();
            assert_eq!(global.spend_micros, tenant_a_spend + tenant_b_spend);
            let tenant = stats(admin_a.clone(), range.clone()).await;
            assert_eq!((tenant.request_count, tenant.spend_micros), (20, tenant_a_spend));
            assert_eq!(tenant.error_count, 4);
            assert_eq!((tenant.prompt_tokens, tenant.completion_tokens), (200, 100));
            assert_eq!(tenant.top_models.len(), 2);
            assert_eq!(tenant.top_models[0].request_count, 10);
            assert!(tenant.top_keys.windows(2).all(|pair| pair[0].spend_micros >= pair[1].spend_micros));
            assert_eq!(tenant.top_keys.len(), 6);
            let mine = stats(u1.clone(), range.clone()).await;
            assert_eq!(mine.request_count, 10);
            assert!(mine.top_keys.iter().all(|key| key.user_id == "u1"));
            // Another tenant's stats: nothing, both ways.
            let across = pb::GetStatsRequest { tenant_id: "tenant-b".to_owned(), ..range.clone() };
            assert_eq!(stats(admin_a.clone(), across).await.request_count, 0);
            let across = pb::GetStatsRequest { tenant_id: "tenant-a".to_owned(), ..range.clone() };
            assert_eq!(stats(admin_b.clone(), across).await.request_count, 0);
            let top_one = pb::GetStatsRequest { top_limit: 1, ..range };
            assert_eq!(stats(superadmin, top_one).await.top_keys.len(), 1);
            let anonymous = fixture
                .grpc
                .get_stats(as_caller(pb::GetStatsRequest::default(), Caller::Anonymous))
                .await
                .unwrap_err();
            assert_eq!(anonymous.code(), tonic::Code::PermissionDenied);
            drop(fixture.store);
        }

        async fn retention_removes_old_events_and_day_directories(db) {
            let fixture = fixture(db.url()).await;
            // Noon of yesterday (UTC): events minutes apart stay in one
            // day's directory whatever the time of the run.
            let now = now_micros() / DAY * DAY - DAY / 2;
            let old: Vec<_> = (0..3).map(|index| {
                let mut event = event(index * 4, "tenant-a", "u1", now - 40 * DAY);
                event.bodies.get_or_insert_with(Default::default).request_body = b"old".to_vec();
                event
            }).collect();
            let fresh: Vec<_> = (0..2).map(|index| event(index * 4, "tenant-a", "u1", now)).collect();
            ingest(&fixture, old.clone()).await;
            ingest(&fixture, fresh.clone()).await;
            let dir = fixture.grpc.audit.dir().to_owned();
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
            let (events, days) = crate::retention::sweep_once(&fixture.store, &dir, now - 30 * DAY)
                .await
                .unwrap();
            assert_eq!((events, days), (3, 1));
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
            let left = list(&fixture, Caller::AdminKey, pb::ListLogsRequest::default()).await;
            assert_eq!(left.len(), 2);
            assert_eq!(
                fixture
                    .grpc
                    .get_log_bodies(as_caller(pb::GetLogBodiesRequest { id: old[0].event_id.clone() }, Caller::AdminKey))
                    .await
                    .unwrap_err()
                    .code(),
                tonic::Code::NotFound
            );
        }

        async fn the_ingest_stream_acks_in_order_and_refuses_gaps(db) {
            let fixture = fixture(db.url()).await;
            let now = now_micros();
            let batches: Vec<pb::IngestRequest> = (1..=3)
                .map(|sequence| pb::IngestRequest {
                    sequence,
                    events: (0..10).map(|index| event(index, "tenant-a", "u1", now)).collect(),
                })
                .collect();
            let (sender, receiver) = tokio::sync::mpsc::channel(4);
            for batch in batches {
                sender.send(batch).await.unwrap();
            }
            // A gap: sequence 5 after 3.
            sender.send(pb::IngestRequest { sequence: 5, events: Vec::new() }).await.unwrap();
            drop(sender);
            let acks = fixture
                .grpc
                .ingest_batches(tokio_stream::wrappers::ReceiverStream::new(receiver).map(Ok))
                .collect::<Vec<_>>()
                .await;
            let sequences: Vec<_> = acks.iter().filter_map(|ack| ack.as_ref().ok()).map(|ack| ack.sequence).collect();
            assert_eq!(sequences, [1, 2, 3]);
            assert_eq!(acks[3].as_ref().unwrap_err().code(), tonic::Code::InvalidArgument);
            assert_eq!(fixture.store.count().await.unwrap(), 30);
        }
    }
}
