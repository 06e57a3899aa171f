//! The request path: `/{tenant_slug}/{api_slug}/{path}?{query}` is
//! authenticated by API key, limited by quota, forwarded to the API's
//! upstream with bodies streaming both ways, and reported to usage once the
//! response has ended.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway_catalog_client::CatalogCache;
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_proto::usage::v1 as usage;
use gateway_proto::{duration_from_micros, micros_from_duration, timestamp_from_micros};
use gateway_usage_sender::UsageSender;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use sha2::Digest as _;

use crate::body::{Deadline, Observed, Seen, Tap};
use crate::client_ids::ClientIds;
use crate::config::{Config, QuotaFailure};
use crate::egress::GuardedConnector;
use crate::floor::Floor;
use crate::grpc::Authed;
use crate::leases::Leases;
use crate::principals::Principals;
use crate::problem::Problem;
use crate::request_id;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How long the edge waits for quota before applying its failure policy.
const QUOTA_DEADLINE: Duration = Duration::from_millis(250);

/// Everything the request path needs, shared by all connections.
pub struct Proxy {
    pub config: Config,
    pub principals: Arc<Principals>,
    pub catalog: CatalogCache,
    pub quota: QuotaServiceClient<Authed>,
    pub usage: Option<UsageSender>,
    pub client: Client<HttpsConnector<GuardedConnector>, EdgeBody>,
    pub floor: Floor,
    pub leases: Arc<Leases>,
    client_ids: ClientIds,
    next_target: AtomicUsize,
}

fn problem(status: StatusCode, detail: impl Into<String>, request_id: &str) -> Response<EdgeBody> {
    boxed(Problem::new(status, detail, request_id))
}

/// The key from `X-API-Key` or `Authorization: Bearer`, and which header
/// carried it (stripped before forwarding).
fn presented_key(headers: &HeaderMap) -> Option<(String, HeaderName)> {
    if let Some(value) = headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
    {
        return Some((
            value.trim().to_owned(),
            HeaderName::from_static("x-api-key"),
        ));
    }
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| (token.trim().to_owned(), header::AUTHORIZATION))
}

fn sha256_hex(key: &str) -> String {
    let digest = sha2::Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// `(tenant slug, api slug, rest of the path)`; the rest keeps its leading
/// slash ("/" when empty).
fn route(path: &str) -> Option<(&str, &str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (tenant, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (api, rest) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    (!tenant.is_empty() && !api.is_empty()).then_some((tenant, api, rest))
}

/// The quota scopes of a principal: its key (with plan and lifetime spend
/// cap), its client, its user, each group, and the tenant. With an
/// unregistered `X-Client-ID` value the key's plan counts per value, in a
/// client scope of its own; the key keeps its lifetime spend cap.
fn scopes(principal: &id::Principal, unregistered_client: Option<&str>) -> Vec<quota::Scope> {
    let scope = |kind: quota::ScopeKind, id: &str, plan_id: &str| quota::Scope {
        kind: kind.into(),
        id: id.to_owned(),
        plan_id: plan_id.to_owned(),
        spend_limit_micros: None,
    };
    let key_plan = match unregistered_client {
        Some(_) => "",
        None => principal.plan_id.as_str(),
    };
    let mut scopes = vec![quota::Scope {
        spend_limit_micros: principal.spend_limit_micros,
        ..scope(quota::ScopeKind::Key, &principal.key_id, key_plan)
    }];
    if let Some(value) = unregistered_client {
        let id = format!("{}:{value}", principal.key_id);
        scopes.push(scope(quota::ScopeKind::Client, &id, &principal.plan_id));
    } else if let Some(client) = &principal.client {
        scopes.push(scope(quota::ScopeKind::Client, &client.id, &client.plan_id));
    }
    scopes.push(scope(quota::ScopeKind::User, &principal.user_id, ""));
    for group in &principal.groups {
        scopes.push(scope(quota::ScopeKind::Group, &group.id, ""));
    }
    scopes.push(scope(quota::ScopeKind::Tenant, &principal.tenant_id, ""));
    scopes
}

/// The 429/402 for a refused Check.
fn refused(answer: &quota::CheckResponse, request_id: &str) -> Response<EdgeBody> {
    let mut response = boxed(crate::ratelimit::refusal(answer, request_id));
    crate::ratelimit::headers(answer, response.headers_mut());
    response
}

fn boxed(problem: Problem) -> Response<EdgeBody> {
    problem
        .into_response()
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

fn gateway_storage_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(0))
}

/// A W3C traceparent for the upstream: the caller's, or a new one.
fn traceparent(headers: &HeaderMap) -> (String, String) {
    if let Some(value) = headers
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
    {
        let parts: Vec<&str> = value.split('-').collect();
        if parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16 {
            return (value.to_owned(), parts[1].to_owned());
        }
    }
    let trace = uuid::Uuid::now_v7().simple().to_string();
    let span = &uuid::Uuid::now_v7().simple().to_string()[16..];
    (format!("00-{trace}-{span}-01"), trace)
}

/// A positive protobuf duration as a std one.
fn proto_duration(duration: Option<&prost_types::Duration>) -> Option<Duration> {
    let micros = micros_from_duration(duration?);
    (micros > 0).then(|| Duration::from_micros(u64::try_from(micros).unwrap_or(0)))
}

/// What the usage event needs from the request side.
struct Exchange {
    request_id: String,
    trace_id: String,
    started: Instant,
    started_micros: i64,
    principal: id::Principal,
    api_id: String,
    method: String,
    path: String,
    remote_ip: String,
    user_agent: String,
    reservation_id: String,
    scopes: Vec<quota::Scope>,
    capture: Option<usize>,
    request_headers: Vec<usage::HttpHeader>,
    request_content_type: String,
}

impl Proxy {
    pub fn new(
        config: Config,
        principals: Arc<Principals>,
        catalog: CatalogCache,
        quota: QuotaServiceClient<Authed>,
        usage: Option<UsageSender>,
        egress: gateway_egress::EgressPolicy,
    ) -> Result<Self, String> {
        let connect_timeout = Duration::from_millis(config.upstream_connect_timeout_ms);
        let connector = GuardedConnector::new(egress, |connector| {
            connector.set_nodelay(true);
            connector.enforce_http(false);
            connector.set_connect_timeout(Some(connect_timeout));
        });
        let tls = crate::tls::client_config(&config.upstream_ca_file)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        let floor = Floor::new(config.fail_open_requests_per_minute);
        let leases = Arc::new(Leases::new(quota.clone()));
        let client_ids = ClientIds::new(config.max_client_ids_per_key);
        Ok(Self {
            config,
            principals,
            catalog,
            quota,
            usage,
            client,
            floor,
            leases,
            client_ids,
            next_target: AtomicUsize::new(0),
        })
    }

    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        remote: SocketAddr,
    ) -> Result<Response<EdgeBody>, Infallible> {
        let request_id = request_id::from_headers(request.headers());
        let started = Instant::now();
        let mut response = self.serve(request, remote, &request_id).await;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(request_id::HEADER, value);
        }
        metrics::histogram!("edge_request_seconds").record(started.elapsed().as_secs_f64());
        Ok(response)
    }

    async fn serve(
        &self,
        request: Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Response<EdgeBody> {
        if request.version() == http::Version::HTTP_11
            && !request.headers().contains_key(header::HOST)
        {
            return problem(
                StatusCode::BAD_REQUEST,
                "an HTTP/1.1 request needs a Host header",
                request_id,
            );
        }
        let path = match crate::path::normalize(request.uri().path()) {
            Ok(path) => path.into_owned(),
            Err(error) => return problem(StatusCode::BAD_REQUEST, error.to_string(), request_id),
        };
        let Some((tenant_slug, api_slug, rest)) = route(&path) else {
            return problem(
                StatusCode::NOT_FOUND,
                "expected /{tenant}/{api}/{path}",
                request_id,
            );
        };
        let not_found = || {
            problem(
                StatusCode::NOT_FOUND,
                format!("no API {tenant_slug}/{api_slug}"),
                request_id,
            )
        };
        let Some((key, key_header)) = presented_key(request.headers()) else {
            return problem(
                StatusCode::UNAUTHORIZED,
                "an API key is required (X-API-Key or Authorization: Bearer)",
                request_id,
            );
        };
        let client_id = request
            .headers()
            .get("x-client-id")
            .map(|value| value.to_str().unwrap_or_default().trim().to_owned());
        if client_id
            .as_deref()
            .is_some_and(|value| !crate::client_ids::valid(value))
        {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "X-Client-ID must be 1 to {} visible ASCII characters",
                    crate::client_ids::MAX_LEN
                ),
                request_id,
            );
        }
        let remote_ip = remote.ip().to_string();
        let answer = match self
            .principals
            .authenticate(&sha256_hex(&key), client_id.as_deref(), Some(&remote_ip))
            .await
        {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(%error, "cannot authenticate: identity unreachable");
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication is temporarily unavailable",
                    request_id,
                );
            }
        };
        let mut unregistered_client = None;
        let principal = match (answer.status, answer.principal) {
            (id::KeyStatus::Active, Some(principal)) => principal,
            // Identity checks the key before the client id: the key is
            // usable, and its plan counts per client id value.
            (id::KeyStatus::ClientUnknown, Some(principal)) => {
                unregistered_client = client_id.clone();
                principal
            }
            (id::KeyStatus::Unknown | id::KeyStatus::Unspecified, _) | (_, None) => {
                return problem(StatusCode::UNAUTHORIZED, "invalid API key", request_id);
            }
            (status, Some(principal)) => {
                // A key of another tenant learns nothing about this path.
                if principal.tenant_slug != tenant_slug {
                    return not_found();
                }
                let detail = match status {
                    id::KeyStatus::Expired => "the API key has expired",
                    id::KeyStatus::Frozen => "the API key is frozen",
                    id::KeyStatus::UserDisabled => "the key's user is disabled",
                    _ => "the API key may not be used from here",
                };
                return problem(StatusCode::FORBIDDEN, detail, request_id);
            }
        };
        // Enforced on cached principals too.
        if principal
            .expire_time
            .as_ref()
            .is_some_and(|expire| expire.seconds < gateway_storage_now_secs())
        {
            return problem(StatusCode::FORBIDDEN, "the API key has expired", request_id);
        }
        if principal.tenant_slug != tenant_slug {
            return not_found();
        }
        if let Some(value) = &unregistered_client
            && let Err(cap) = self.client_ids.admit(
                &principal.key_id,
                value,
                u64::try_from(gateway_storage_now_secs()).unwrap_or(0),
            )
        {
            let mut response = problem(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "Rate limit exceeded: this key has used its {} distinct X-Client-ID values for today",
                    cap.cap
                ),
                request_id,
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(cap.retry_after_secs));
            return response;
        }
        let view = self.catalog.view();
        let Some(entry) = view
            .api(&principal.tenant_id, api_slug)
            .filter(|entry| entry.api.enabled)
        else {
            return not_found();
        };
        let api = Arc::clone(entry);
        drop(view);

        let max_body = match api.api.max_request_body_bytes {
            bytes if bytes > 0 => u64::try_from(bytes).unwrap_or(u64::MAX),
            _ => self.config.max_request_body_bytes,
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > max_body) {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is over the {max_body}-byte limit"),
                request_id,
            );
        }

        let (reservation_id, scopes) = match self
            .check(&principal, unregistered_client.as_deref(), request_id)
            .await
        {
            Ok(admitted) => admitted,
            Err(response) => {
                // Refusals are usage too: who was limited, where, when.
                self.record_refusal(
                    &principal,
                    &api.api.id,
                    &request,
                    response.status().as_u16(),
                    request_id,
                    &remote_ip,
                );
                return *response;
            }
        };

        let target = {
            let targets: Vec<_> = api
                .api
                .upstreams
                .iter()
                .filter(|target| target.weight > 0)
                .collect();
            let total: usize = targets.iter().map(|target| target.weight as usize).sum();
            let mut pick = self.next_target.fetch_add(1, Ordering::Relaxed) % total.max(1);
            targets
                .iter()
                .find(|target| {
                    let weight = target.weight as usize;
                    if pick < weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .map(|target| target.url.clone())
        };
        let Some(target) = target else {
            return problem(
                StatusCode::BAD_GATEWAY,
                "the API has no upstream",
                request_id,
            );
        };
        let query = request.uri().query().map(str::to_owned);
        let uri = match upstream_uri(&target, rest, query.as_deref()) {
            Ok(uri) => uri,
            Err(error) => {
                tracing::error!(%error, api_id = api.api.id, "bad upstream URL");
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "the API's upstream URL is invalid",
                    request_id,
                );
            }
        };

        let (parts, body) = request.into_parts();
        let (traceparent, trace_id) = traceparent(&parts.headers);
        let capture = api
            .api
            .body_capture
            .as_ref()
            .filter(|capture| capture.enabled)
            .map(|capture| {
                usize::try_from(capture.max_bytes)
                    .ok()
                    .filter(|bytes| *bytes > 0)
                    .unwrap_or(self.config.default_capture_bytes)
            });
        let exchange = Exchange {
            request_id: request_id.to_owned(),
            trace_id,
            started: Instant::now(),
            started_micros: now_micros(),
            principal,
            api_id: api.api.id.clone(),
            method: parts.method.to_string(),
            path: path.clone(),
            remote_ip: remote_ip.clone(),
            user_agent: parts
                .headers
                .get(header::USER_AGENT)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            reservation_id,
            scopes,
            capture,
            request_headers: if capture.is_some() {
                audit_headers(&parts.headers)
            } else {
                Vec::new()
            },
            request_content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
        };

        let mut headers = parts.headers;
        let host = headers.get(header::HOST).cloned();
        strip_hop_by_hop(&mut headers);
        headers.remove(&key_header);
        headers.remove(header::HOST);
        headers.remove("x-client-id");
        let forwarded_for = match headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
        {
            Some(previous) => format!("{previous}, {remote_ip}"),
            None => remote_ip.clone(),
        };
        if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
            headers.insert("x-forwarded-for", value);
        }
        headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        if let Some(host) = host {
            headers.insert("x-forwarded-host", host);
        }
        if let Ok(value) = HeaderValue::from_str(request_id) {
            headers.insert(request_id::HEADER, value);
        }
        if let Ok(value) = HeaderValue::from_str(&traceparent) {
            headers.insert("traceparent", value);
        }
        if let Some(auth) = &api.api.upstream_auth
            && !auth.header_name.is_empty()
            && let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(auth.header_name.as_bytes()),
                HeaderValue::from_str(&api.upstream_auth_secret),
            )
        {
            headers.insert(name, value);
        }

        let request_tap = Tap::default();
        let body = Observed::tapped(
            Limited::new(body, usize::try_from(max_body).unwrap_or(usize::MAX)),
            capture,
            request_tap.clone(),
        );
        let mut upstream = Request::new(body.boxed_unsync());
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;

        let timeouts = api.api.timeouts.as_ref();
        let total = proto_duration(timeouts.and_then(|timeouts| timeouts.total.as_ref()));
        let read = proto_duration(timeouts.and_then(|timeouts| timeouts.read.as_ref()))
            .unwrap_or(Duration::from_millis(self.config.upstream_read_timeout_ms));
        // The head must come within the read timeout and the total one.
        let read = total.map_or(read, |total| read.min(total));
        let upstream_started = Instant::now();
        let answer = tokio::time::timeout(read, self.client.request(upstream)).await;
        let response = match answer {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                let seen = request_tap.take();
                let too_large = seen.bytes >= max_body && !seen.complete;
                let (status, detail) = if too_large {
                    (
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("the request body is over the {max_body}-byte limit"),
                    )
                } else if let Some(refused) = crate::egress::refused(&error) {
                    metrics::counter!("edge_egress_refused_total", "tenant" => exchange.principal.tenant_id.clone(), "api" => exchange.api_id.clone()).increment(1);
                    tracing::warn!(
                        tenant_id = exchange.principal.tenant_id,
                        api_id = exchange.api_id,
                        class = %refused.class,
                        "upstream connection refused by the egress policy"
                    );
                    (StatusCode::BAD_GATEWAY, refused.to_string())
                } else if error.is_connect() {
                    (
                        StatusCode::BAD_GATEWAY,
                        "the upstream refused the connection".to_owned(),
                    )
                } else {
                    (StatusCode::BAD_GATEWAY, "the upstream failed".to_owned())
                };
                tracing::debug!(%error, "upstream request failed");
                self.finish(
                    exchange,
                    status.as_u16(),
                    seen,
                    Seen::default(),
                    None,
                    Some(detail.clone()),
                );
                return problem(status, detail, request_id);
            }
            Err(_) => {
                let detail = format!("the upstream did not answer within {} ms", read.as_millis());
                self.finish(
                    exchange,
                    504,
                    request_tap.take(),
                    Seen::default(),
                    None,
                    Some(detail.clone()),
                );
                return problem(StatusCode::GATEWAY_TIMEOUT, detail, request_id);
            }
        };

        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let status = parts.status.as_u16();
        let response_headers = if capture.is_some() {
            audit_headers(&parts.headers)
        } else {
            Vec::new()
        };
        let response_content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let sender = self.usage.clone();
        let quota = self.quota.clone();
        let on_end = Box::new(move |seen: Seen| {
            let upstream_micros =
                i64::try_from(upstream_started.elapsed().as_micros()).unwrap_or(i64::MAX);
            finish_exchange(
                sender,
                quota,
                exchange,
                status,
                request_tap.take(),
                seen,
                Some(upstream_micros),
                None,
                (response_headers, response_content_type),
            );
        });
        let body = Observed::reporting(body.map_err(BoxError::from), capture, on_end);
        match total {
            // The body must end by the total timeout, counted from the
            // upstream request.
            Some(total) => {
                let deadline = tokio::time::Instant::from_std(upstream_started + total);
                Response::from_parts(parts, Deadline::new(body, deadline).boxed_unsync())
            }
            None => Response::from_parts(parts, body.boxed_unsync()),
        }
    }

    /// Quota's answer: the reservation id and the scopes Commit must repeat
    /// (both empty when there is nothing to commit), or the response to
    /// send. A key holding a lease is admitted without building its scopes.
    async fn check(
        &self,
        principal: &id::Principal,
        unregistered_client: Option<&str>,
        request_id: &str,
    ) -> Result<(String, Vec<quota::Scope>), Box<Response<EdgeBody>>> {
        let client = match unregistered_client {
            Some(value) => value,
            None => principal
                .client
                .as_ref()
                .map_or("", |client| client.id.as_str()),
        };
        let lease_key = format!("{}|{client}", principal.key_id);
        if self.leases.try_admit(&lease_key) {
            metrics::counter!("edge_admitted_total", "by" => "lease").increment(1);
            return Ok((String::new(), Vec::new()));
        }
        let scopes = scopes(principal, unregistered_client);
        let request = quota::CheckRequest {
            request_id: request_id.to_owned(),
            tenant_id: principal.tenant_id.clone(),
            scopes: scopes.clone(),
            ..quota::CheckRequest::default()
        };
        let answer = tokio::time::timeout(QUOTA_DEADLINE, self.quota.clone().check(request)).await;
        match answer {
            Ok(Ok(answer)) => {
                let answer = answer.into_inner();
                if answer.allowed {
                    metrics::counter!("edge_admitted_total", "by" => "check").increment(1);
                    self.leases
                        .maybe_renew(&lease_key, &principal.tenant_id, &scopes, &answer);
                    // Nothing to settle: skip Commit (a call per request).
                    Ok(if answer.commit_required {
                        (answer.reservation_id, scopes)
                    } else {
                        (String::new(), Vec::new())
                    })
                } else {
                    metrics::counter!("edge_refused_total", "reason" => "quota").increment(1);
                    Err(Box::new(refused(&answer, request_id)))
                }
            }
            Ok(Err(_)) | Err(_) => match self.config.quota_failure {
                QuotaFailure::FailClosed => Err(Box::new(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "rate limiting is temporarily unavailable",
                    request_id,
                ))),
                QuotaFailure::FailOpen => {
                    metrics::counter!("edge_quota_fail_open_total").increment(1);
                    if self.floor.admit(&principal.key_id) {
                        Ok((String::new(), Vec::new()))
                    } else {
                        Err(Box::new(problem(
                            StatusCode::TOO_MANY_REQUESTS,
                            format!(
                                "rate limit exceeded: the edge's fallback limit of {} requests per minute per key",
                                self.config.fail_open_requests_per_minute
                            ),
                            request_id,
                        )))
                    }
                }
            },
        }
    }

    /// A usage event for a request refused before reaching the upstream.
    fn record_refusal(
        &self,
        principal: &id::Principal,
        api_id: &str,
        request: &Request<Incoming>,
        status: u16,
        request_id: &str,
        remote_ip: &str,
    ) {
        let Some(sender) = &self.usage else { return };
        sender.send(usage::UsageEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            time: Some(timestamp_from_micros(now_micros())),
            tenant_id: principal.tenant_id.clone(),
            user_id: principal.user_id.clone(),
            key_id: principal.key_id.clone(),
            api_id: api_id.to_owned(),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            status: i32::from(status),
            request_id: request_id.to_owned(),
            error_message: "refused by quota".to_owned(),
            remote_ip: remote_ip.to_owned(),
            ..usage::UsageEvent::default()
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        exchange: Exchange,
        status: u16,
        request: Seen,
        response: Seen,
        upstream_micros: Option<i64>,
        error: Option<String>,
    ) {
        finish_exchange(
            self.usage.clone(),
            self.quota.clone(),
            exchange,
            status,
            request,
            response,
            upstream_micros,
            error,
            (Vec::new(), String::new()),
        );
    }
}

/// Settles the reservation and sends the usage event, off the request path.
#[allow(clippy::too_many_arguments)]
fn finish_exchange(
    sender: Option<UsageSender>,
    quota: QuotaServiceClient<Authed>,
    exchange: Exchange,
    status: u16,
    request: Seen,
    response: Seen,
    upstream_micros: Option<i64>,
    error: Option<String>,
    (response_headers, response_content_type): (Vec<usage::HttpHeader>, String),
) {
    let latency = i64::try_from(exchange.started.elapsed().as_micros()).unwrap_or(i64::MAX);
    metrics::counter!("edge_requests_total", "tenant" => exchange.principal.tenant_id.clone(), "api" => exchange.api_id.clone(), "status" => status.to_string()).increment(1);
    if let Some(micros) = upstream_micros {
        metrics::histogram!("edge_upstream_seconds").record(micros as f64 / 1e6);
    }
    let succeeded = status < 500 && response.complete;
    if !exchange.reservation_id.is_empty() {
        let commit = quota::CommitRequest {
            reservation_id: exchange.reservation_id.clone(),
            outcome: if succeeded {
                quota::CommitOutcome::Success
            } else {
                quota::CommitOutcome::Failure
            }
            .into(),
            tenant_id: exchange.principal.tenant_id.clone(),
            scopes: exchange.scopes.clone(),
            ..quota::CommitRequest::default()
        };
        let mut quota = quota;
        tokio::spawn(async move {
            if let Err(status) = quota.commit(commit).await {
                tracing::debug!(%status, "commit failed; the reservation will lapse");
            }
        });
    }
    let Some(sender) = sender else { return };
    let bodies = exchange.capture.map(|_| usage::AuditBodies {
        request_headers: exchange.request_headers,
        request_body: request.captured.unwrap_or_default(),
        request_content_type: exchange.request_content_type,
        request_truncated: request.truncated,
        request_body_bytes: i64::try_from(request.bytes).unwrap_or(i64::MAX),
        response_headers,
        response_body: response.captured.unwrap_or_default(),
        response_content_type,
        response_truncated: response.truncated,
        response_body_bytes: i64::try_from(response.bytes).unwrap_or(i64::MAX),
    });
    let principal = exchange.principal;
    sender.send(usage::UsageEvent {
        event_id: uuid::Uuid::now_v7().to_string(),
        time: Some(timestamp_from_micros(exchange.started_micros)),
        tenant_id: principal.tenant_id,
        user_id: principal.user_id,
        key_id: principal.key_id,
        client_id: principal
            .client
            .map(|client| client.client_id)
            .unwrap_or_default(),
        group_id: principal
            .groups
            .first()
            .map(|group| group.id.clone())
            .unwrap_or_default(),
        api_id: exchange.api_id,
        method: exchange.method,
        path: exchange.path,
        status: i32::from(status),
        latency: Some(duration_from_micros(latency)),
        upstream_latency: upstream_micros.map(duration_from_micros),
        bytes_in: i64::try_from(request.bytes).unwrap_or(i64::MAX),
        bytes_out: i64::try_from(response.bytes).unwrap_or(i64::MAX),
        request_id: exchange.request_id,
        trace_id: exchange.trace_id,
        error_message: error.unwrap_or_default(),
        remote_ip: exchange.remote_ip,
        user_agent: exchange.user_agent,
        bodies,
        ..usage::UsageEvent::default()
    });
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

fn audit_headers(headers: &HeaderMap) -> Vec<usage::HttpHeader> {
    headers
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "authorization" | "proxy-authorization" | "x-api-key" | "cookie" | "set-cookie"
            )
        })
        .map(|(name, value)| usage::HttpHeader {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

/// The upstream URI: the target's base path, then the rest of the request
/// path, then the query as sent.
fn upstream_uri(target: &str, rest: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let base: Uri = target.parse()?;
    let base_path = base.path().trim_end_matches('/');
    let path_and_query = match query {
        Some(query) => format!("{base_path}{rest}?{query}"),
        None => format!("{base_path}{rest}"),
    };
    let mut parts = base.into_parts();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_tenant_api_and_rest() {
        assert_eq!(
            route("/acme/echo/v1/items"),
            Some(("acme", "echo", "/v1/items"))
        );
        assert_eq!(route("/acme/echo"), Some(("acme", "echo", "/")));
        assert_eq!(route("/acme/echo/"), Some(("acme", "echo", "/")));
        assert_eq!(route("/acme"), None);
        assert_eq!(route("/"), None);
    }

    #[test]
    fn upstream_uris_keep_the_base_path_and_the_query() {
        let uri =
            upstream_uri("http://127.0.0.1:9000/base/", "/v1/items", Some("a=1&b=2")).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9000/base/v1/items?a=1&b=2"
        );
        let uri = upstream_uri("http://upstream", "/", None).unwrap();
        assert_eq!(uri.to_string(), "http://upstream/");
    }

    #[test]
    fn keys_come_from_either_header_and_hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-abc"));
        assert_eq!(presented_key(&headers).unwrap().0, "sk-abc");
        headers.insert("x-api-key", HeaderValue::from_static("sk-def"));
        assert_eq!(presented_key(&headers).unwrap().0, "sk-def");
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut headers);
        assert!(headers.get("x-private").is_none() && headers.get("te").is_none());
        assert!(headers.get("x-api-key").is_some());
    }
}
