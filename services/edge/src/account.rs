//! Stage: account. After the response has ended (or failed), the quota
//! reservation is settled and one usage event goes to the usage stream,
//! both off the request path.

use std::sync::Arc;
use std::time::Instant;

use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_proto::usage::v1 as usage;
use gateway_proto::{duration_from_micros, timestamp_from_micros};
use gateway_usage_sender::UsageSender;

use crate::admit::Admitted;
use crate::body::Seen;
use crate::grpc::Authed;

pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(0))
}

/// What the usage event needs from the request side.
pub struct Exchange {
    pub request_id: String,
    pub trace_id: String,
    pub started: Instant,
    pub started_micros: i64,
    pub principal: Arc<id::Principal>,
    pub api_id: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub remote_ip: String,
    pub user_agent: String,
    pub admitted: Admitted,
    pub capture: Option<usize>,
    pub request_headers: Vec<usage::HttpHeader>,
    pub request_content_type: String,
}

/// How an exchange ended.
#[derive(Default)]
pub struct Ended {
    pub status: u16,
    pub request: Seen,
    pub response: Seen,
    pub upstream_micros: Option<i64>,
    pub error: Option<String>,
    pub response_headers: Vec<usage::HttpHeader>,
    pub response_content_type: String,
    /// Upstream attempts made (0 when none was).
    pub attempts: u32,
    /// `HIT` or `MISS` when the API's cache was consulted.
    pub cache: Option<&'static str>,
    /// What an AI exchange used and cost.
    pub ai: Option<AiOutcome>,
}

/// The model, channel, tokens and cost of an AI exchange.
#[derive(Debug, Default, Clone)]
pub struct AiOutcome {
    pub model: String,
    pub upstream_model: String,
    pub channel_id: String,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    pub cost_micros: i64,
    pub stream: bool,
    /// The channel's provider, as the usage event names it.
    pub provider: &'static str,
    /// The tokens were counted by the edge, not reported.
    pub estimated: bool,
    pub time_to_first_token: Option<std::time::Duration>,
    pub finish_reason: String,
    /// Answered from the completion cache.
    pub cache_hit: bool,
}

/// Commit and usage, shared by every request.
#[derive(Clone)]
pub struct Accounting {
    pub usage: Option<UsageSender>,
    pub quota: QuotaServiceClient<Authed>,
    /// The access log's level; `None` = off.
    pub access_log: Option<tracing::Level>,
    pub requests: crate::request_metrics::RequestCounters,
}

/// The configured access-log level.
pub fn access_log_level(name: &str) -> Option<tracing::Level> {
    name.parse().ok()
}

fn saturating(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Accounting {
    /// Settles the reservation and sends the usage event.
    pub fn finish(&self, exchange: Exchange, ended: Ended) {
        let latency =
            saturating(u64::try_from(exchange.started.elapsed().as_micros()).unwrap_or(u64::MAX));
        self.requests.increment(
            &exchange.principal.tenant_id,
            &exchange.api_id,
            &exchange.route,
            ended.status,
        );
        if let Some(micros) = ended.upstream_micros {
            metrics::histogram!("edge_upstream_seconds").record(micros as f64 / 1e6);
        }
        let succeeded = ended.status < 500 && ended.response.complete;
        self.commit(&exchange, succeeded, ended.ai.as_ref());
        self.access_log(&exchange, &ended, latency);
        let Some(sender) = &self.usage else { return };
        sender.send(event(exchange, ended, latency));
    }

    /// Settles the reservation: an AI exchange that produced tokens is a
    /// success with what it used, whatever its status (the provider
    /// billed them).
    fn commit(&self, exchange: &Exchange, succeeded: bool, ai: Option<&AiOutcome>) {
        if exchange.admitted.reservation_id.is_empty() {
            return;
        }
        let used =
            ai.filter(|ai| ai.prompt_tokens + ai.completion_tokens > 0 || ai.cost_micros > 0);
        let outcome = if succeeded || used.is_some() {
            quota::CommitOutcome::Success
        } else {
            quota::CommitOutcome::Failure
        };
        let commit = quota::CommitRequest {
            reservation_id: exchange.admitted.reservation_id.clone(),
            outcome: outcome.into(),
            prompt_tokens: used.map_or(0, |ai| ai.prompt_tokens),
            completion_tokens: used.map_or(0, |ai| ai.completion_tokens),
            cached_tokens: used.map_or(0, |ai| ai.cached_tokens),
            cost_micros: used.map_or(0, |ai| ai.cost_micros),
            tenant_id: exchange.principal.tenant_id.clone(),
            scopes: exchange.admitted.scopes.clone(),
            balance_owner: exchange.admitted.balance_owner.clone(),
        };
        let mut quota = self.quota.clone();
        tokio::spawn(async move {
            if let Err(status) = quota.commit(commit).await {
                tracing::debug!(%status, "commit failed; the reservation will lapse");
            }
        });
    }

    /// One structured event per request, at the operator's level.
    fn access_log(&self, exchange: &Exchange, ended: &Ended, latency_micros: i64) {
        macro_rules! log_at {
            ($level:expr) => {
                tracing::event!(
                    target: "gateway_edge::access",
                    $level,
                    request_id = exchange.request_id,
                    tenant_id = exchange.principal.tenant_id,
                    api_id = exchange.api_id,
                    route = exchange.route,
                    method = exchange.method,
                    path = exchange.path,
                    status = ended.status,
                    duration_ms = latency_micros as f64 / 1000.0,
                    upstream_ms = ended.upstream_micros.map(|micros| micros as f64 / 1000.0),
                    attempts = ended.attempts,
                    cache = ended.cache,
                    bytes_in = ended.request.bytes,
                    bytes_out = ended.response.bytes,
                    remote_ip = exchange.remote_ip,
                    error = ended.error.as_deref(),
                    "access"
                )
            };
        }
        match self.access_log {
            Some(tracing::Level::ERROR) => log_at!(tracing::Level::ERROR),
            Some(tracing::Level::WARN) => log_at!(tracing::Level::WARN),
            Some(tracing::Level::INFO) => log_at!(tracing::Level::INFO),
            Some(tracing::Level::DEBUG) => log_at!(tracing::Level::DEBUG),
            Some(tracing::Level::TRACE) => log_at!(tracing::Level::TRACE),
            None => {}
        }
    }

    /// A usage event for a request refused before reaching the upstream:
    /// who was limited, where, when.
    pub fn refusal(&self, principal: &id::Principal, api_id: &str, request: Refused<'_>) {
        let Some(sender) = &self.usage else { return };
        sender.send(usage::UsageEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            time: Some(timestamp_from_micros(now_micros())),
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            key_id: principal.key_id.clone(),
            api_id: api_id.to_owned(),
            method: request.method.to_owned(),
            path: request.path.to_owned(),
            status: i32::from(request.status),
            request_id: request.request_id.to_owned(),
            error_message: request.reason.to_owned(),
            remote_ip: request.remote_ip.to_owned(),
            ..usage::UsageEvent::default()
        });
    }
}

/// A refused request, as its usage event records it.
pub struct Refused<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub request_id: &'a str,
    pub remote_ip: &'a str,
    pub reason: &'a str,
}

fn event(exchange: Exchange, ended: Ended, latency: i64) -> usage::UsageEvent {
    let bodies = exchange.capture.map(|_| usage::AuditBodies {
        request_headers: exchange.request_headers,
        request_body: ended.request.captured.unwrap_or_default(),
        request_content_type: exchange.request_content_type,
        request_truncated: ended.request.truncated,
        request_body_bytes: saturating(ended.request.bytes),
        response_headers: ended.response_headers,
        response_body: ended.response.captured.unwrap_or_default(),
        response_content_type: ended.response_content_type,
        response_truncated: ended.response.truncated,
        response_body_bytes: saturating(ended.response.bytes),
    });
    let principal = exchange.principal;
    usage::UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time: Some(timestamp_from_micros(exchange.started_micros)),
        tenant_id: principal.tenant_id.clone(),
        user_id: principal.user_id.clone(),
        key_id: principal.key_id.clone(),
        client_id: principal
            .client
            .as_ref()
            .map(|client| client.client_id.clone())
            .unwrap_or_default(),
        group_id: principal
            .groups
            .first()
            .map(|group| group.id.clone())
            .unwrap_or_default(),
        api_id: exchange.api_id,
        method: exchange.method,
        path: exchange.path,
        status: i32::from(ended.status),
        latency: Some(duration_from_micros(latency)),
        upstream_latency: ended.upstream_micros.map(duration_from_micros),
        bytes_in: saturating(ended.request.bytes),
        bytes_out: saturating(ended.response.bytes),
        request_id: exchange.request_id,
        trace_id: exchange.trace_id,
        error_message: ended.error.unwrap_or_default(),
        remote_ip: exchange.remote_ip,
        user_agent: exchange.user_agent,
        route: exchange.route,
        attempts: i32::try_from(ended.attempts).unwrap_or(i32::MAX),
        bodies,
        ..ai_fields(ended.ai)
    }
}

fn ai_fields(ai: Option<AiOutcome>) -> usage::UsageEvent {
    let Some(ai) = ai else {
        return usage::UsageEvent::default();
    };
    usage::UsageEvent {
        model: ai.model,
        upstream_model: ai.upstream_model,
        channel_id: ai.channel_id,
        prompt_tokens: ai.prompt_tokens,
        completion_tokens: ai.completion_tokens,
        cached_tokens: ai.cached_tokens,
        cost_micros: ai.cost_micros,
        stream: ai.stream,
        provider: ai.provider.to_owned(),
        estimated: ai.estimated,
        time_to_first_token: ai
            .time_to_first_token
            .map(|ttft| duration_from_micros(i64::try_from(ttft.as_micros()).unwrap_or(i64::MAX))),
        finish_reason: ai.finish_reason,
        cache_hit: ai.cache_hit,
        ..usage::UsageEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn exchange() -> Exchange {
        Exchange {
            request_id: "req-1".to_owned(),
            trace_id: String::new(),
            started: Instant::now(),
            started_micros: 0,
            principal: Arc::new(id::Principal {
                tenant_id: "t1".to_owned(),
                ..Default::default()
            }),
            api_id: "api-1".to_owned(),
            route: "orders".to_owned(),
            method: "GET".to_owned(),
            path: "/acme/shop/orders".to_owned(),
            remote_ip: "127.0.0.1".to_owned(),
            user_agent: String::new(),
            admitted: Admitted::default(),
            capture: None,
            request_headers: Vec::new(),
            request_content_type: String::new(),
        }
    }

    #[tokio::test]
    async fn one_access_log_event_per_request_at_the_configured_level() {
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        let quota = QuotaServiceClient::with_interceptor(
            channel,
            crate::grpc::authed(("x".to_owned(), "y".to_owned())),
        );
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let ended = || Ended {
            status: 200,
            attempts: 2,
            ..Ended::default()
        };
        tracing::subscriber::with_default(subscriber, || {
            let at_info = Accounting {
                usage: None,
                quota: quota.clone(),
                access_log: access_log_level("info"),
                requests: Default::default(),
            };
            at_info.finish(exchange(), ended());
            let at_debug = Accounting {
                usage: None,
                quota,
                access_log: access_log_level("debug"),
                requests: Default::default(),
            };
            at_debug.finish(exchange(), ended());
        });
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = logged
            .lines()
            .filter(|line| line.contains("gateway_edge::access"))
            .collect();
        assert_eq!(lines.len(), 1, "{logged}");
        let event: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(event["fields"]["status"], 200);
        assert_eq!(event["fields"]["attempts"], 2);
        assert_eq!(event["fields"]["route"], "orders");
        assert_eq!(access_log_level("off"), None);
    }
}
