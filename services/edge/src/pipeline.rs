//! The edge's request path. The order of the stages is written here, and
//! only here; each stage lives in a module named after what it does:
//!
//! | # | stage | module |
//! |---|-------|--------|
//! | 1 | request id, request head: `Host`, path normalisation | [`crate::request_id`], [`crate::path`] |
//! | 2 | route: tenant and API from the path | here |
//! | 3 | authenticate: key, client id | [`crate::auth`] |
//! | 4 | route rule of the API's compiled policy | [`crate::policy`] |
//! | 5 | limits on the request body (413) | here |
//! | 6 | admit: quota `Check`, lease or floor | [`crate::admit`] |
//! | 7 | choose the upstream target | [`crate::policy`], [`crate::balance`] |
//! | 8 | forward: headers, pooled client, timeouts | [`crate::headers`], [`crate::forward`] |
//! | 9 | account: `Commit` and one usage event, after the response | [`crate::account`] |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_catalog_client::CatalogCache;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_usage_sender::UsageSender;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use crate::account::{Accounting, Ended, Exchange, Refused, now_micros};
use crate::admit::{Admission, Admitted};
use crate::auth::{Authenticator, Caller};
use crate::body::{BoxError, Deadline, EdgeBody, Observed, Seen, Tap};
use crate::config::Config;
use crate::forward::{Failure, Forwarder};
use crate::grpc::Authed;
use crate::headers::{self as hygiene, Outgoing};
use crate::policy::{Chosen, CompiledApi, InFlight, Policies, RouteChoice};
use crate::principals::Principals;
use crate::problem::{Halt, halt, response as problem};
use crate::request_id;

/// Everything the request path needs, shared by all connections.
pub struct Proxy {
    pub config: Config,
    pub catalog: CatalogCache,
    pub auth: Authenticator,
    pub admission: Admission,
    pub policies: Policies,
    forwarder: Forwarder,
    accounting: Accounting,
}

/// `(tenant slug, api slug, rest of the path)`; the rest keeps its leading
/// slash ("/" when empty).
fn split(path: &str) -> Option<(&str, &str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (tenant, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let (api, rest) = match rest.find('/') {
        Some(index) => (&rest[..index], &rest[index..]),
        None => (rest, "/"),
    };
    (!tenant.is_empty() && !api.is_empty()).then_some((tenant, api, rest))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> &str {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

/// Stage 1: the request head, and the normalised path.
fn head(request: &Request<Incoming>, request_id: &str) -> Result<String, Halt> {
    if request.version() == http::Version::HTTP_11 && !request.headers().contains_key(header::HOST)
    {
        return Err(halt(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header",
            request_id,
        ));
    }
    crate::path::normalize(request.uri().path())
        .map(std::borrow::Cow::into_owned)
        .map_err(|error| halt(StatusCode::BAD_REQUEST, error.to_string(), request_id))
}

/// What the forward stage needs besides the request.
struct Forwarding<'a> {
    caller: Caller,
    api: &'a CompiledApi,
    route: &'a RouteChoice<'a>,
    chosen: Chosen<'a>,
    /// The path below the API, as routed.
    rest: &'a str,
    path: &'a str,
    admitted: Admitted,
    max_body: u64,
    request_id: &'a str,
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
        Ok(Self {
            auth: Authenticator::new(principals, config.max_client_ids_per_key),
            admission: Admission::new(
                quota.clone(),
                config.quota_failure,
                config.fail_open_requests_per_minute,
            ),
            policies: Policies::default(),
            forwarder: Forwarder::new(&config.upstream_ca_file, egress)?,
            accounting: Accounting { usage, quota },
            catalog,
            config,
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
        let path = match head(&request, request_id) {
            Ok(path) => path,
            Err(response) => return *response,
        };
        let Some((tenant_slug, api_slug, rest)) = split(&path) else {
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
        let caller = match self
            .auth
            .authenticate(
                request.headers(),
                remote,
                tenant_slug,
                &not_found,
                request_id,
            )
            .await
        {
            Ok(caller) => caller,
            Err(response) => return *response,
        };
        let Some(api) = self.api(&caller.principal.tenant_id, api_slug) else {
            return not_found();
        };
        let Some(route) = api.route(request.method(), rest) else {
            return problem(
                StatusCode::NOT_FOUND,
                format!(
                    "no route of {tenant_slug}/{api_slug} matches {} {rest}",
                    request.method()
                ),
                request_id,
            );
        };
        let max_body = match self.body_limit(&api, request.headers(), request_id) {
            Ok(max_body) => max_body,
            Err(response) => return *response,
        };
        let admitted = match self.admission.admit(&caller, request_id).await {
            Ok(admitted) => admitted,
            Err(response) => {
                self.record_refusal(
                    &caller,
                    &api,
                    &request,
                    &path,
                    response.status(),
                    request_id,
                );
                return *response;
            }
        };
        let Some(chosen) = api.choose(&route, request.headers(), &caller.remote_ip, &|_| true)
        else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "no upstream target of this API is available",
                request_id,
            );
        };
        let forwarding = Forwarding {
            caller,
            api: &api,
            route: &route,
            chosen,
            rest,
            path: &path,
            admitted,
            max_body,
            request_id,
        };
        self.forward(request, forwarding).await
    }

    /// Stage 2: the API, enabled, with its compiled policy.
    fn api(&self, tenant_id: &str, api_slug: &str) -> Option<Arc<CompiledApi>> {
        let view = self.catalog.view();
        let entry = view
            .api(tenant_id, api_slug)
            .filter(|entry| entry.api.enabled)?;
        Some(self.policies.get(entry))
    }

    /// Stage 5: the body limit; a declared length over it is a 413 now.
    fn body_limit(
        &self,
        api: &CompiledApi,
        headers: &HeaderMap,
        request_id: &str,
    ) -> Result<u64, Halt> {
        let max_body = match api.entry.api.max_request_body_bytes {
            bytes if bytes > 0 => u64::try_from(bytes).unwrap_or(u64::MAX),
            _ => self.config.max_request_body_bytes,
        };
        let declared = header_str(headers, header::CONTENT_LENGTH)
            .parse::<u64>()
            .ok();
        if declared.is_some_and(|length| length > max_body) {
            return Err(Box::new(too_large(max_body, request_id)));
        }
        Ok(max_body)
    }

    fn record_refusal(
        &self,
        caller: &Caller,
        api: &CompiledApi,
        request: &Request<Incoming>,
        path: &str,
        status: StatusCode,
        request_id: &str,
    ) {
        self.accounting.refusal(
            &caller.principal,
            &api.entry.api.id,
            Refused {
                method: request.method().as_str(),
                path,
                status: status.as_u16(),
                request_id,
                remote_ip: &caller.remote_ip,
                reason: "refused by quota",
            },
        );
    }

    /// Stages 8 and 9: the upstream request, and accounting once the
    /// response has ended.
    async fn forward(
        &self,
        request: Request<Incoming>,
        mut forwarding: Forwarding<'_>,
    ) -> Response<EdgeBody> {
        let request_id = forwarding.request_id;
        let target = &forwarding.chosen.target.url;
        let upstream_path = forwarding.route.upstream_path(forwarding.rest);
        let uri = match crate::forward::upstream_uri(target, &upstream_path, request.uri().query())
        {
            Ok(uri) => uri,
            Err(error) => {
                tracing::error!(%error, api_id = forwarding.api.entry.api.id, "bad upstream URL");
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "the API's upstream URL is invalid",
                    request_id,
                );
            }
        };
        let (parts, body) = request.into_parts();
        let (traceparent, trace_id) = hygiene::traceparent(&parts.headers);
        let capture = self.capture(forwarding.api);
        let admitted = std::mem::take(&mut forwarding.admitted);
        let principal = std::mem::take(&mut forwarding.caller.principal);
        let exchange = exchange(
            &parts,
            &forwarding,
            (principal, admitted),
            trace_id,
            capture,
        );
        let mut headers = parts.headers;
        hygiene::for_upstream(
            &mut headers,
            &Outgoing {
                key_header: &forwarding.caller.key_header,
                remote_ip: &forwarding.caller.remote_ip,
                request_id,
                traceparent: &traceparent,
                api: &forwarding.api.entry,
            },
        );
        let tap = Tap::default();
        let body = Observed::tapped(
            Limited::new(
                body,
                usize::try_from(forwarding.max_body).unwrap_or(usize::MAX),
            ),
            capture,
            tap.clone(),
        );
        let mut upstream = Request::new(body.boxed_unsync());
        *upstream.method_mut() = parts.method;
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;

        let api = forwarding.api;
        let connect = api.connect_timeout.unwrap_or(Duration::from_millis(
            self.config.upstream_connect_timeout_ms,
        ));
        let idle = api
            .read_timeout
            .unwrap_or(Duration::from_millis(self.config.upstream_read_timeout_ms));
        // The head must come within the read timeout and the total one.
        let read = api.total_timeout.map_or(idle, |total| idle.min(total));
        let started = Instant::now();
        match self.forwarder.send(upstream, connect, read).await {
            Ok(response) => {
                let timing = Timing {
                    started,
                    total: api.total_timeout,
                    idle,
                };
                self.respond(response, exchange, tap, forwarding.chosen.in_flight, timing)
            }
            Err(failure) => {
                let seen = tap.take();
                let (status, detail) =
                    failure_status(&failure, &seen, forwarding.max_body, &exchange);
                let ended = Ended {
                    status: status.as_u16(),
                    request: seen,
                    error: Some(detail.clone()),
                    ..Ended::default()
                };
                self.accounting.finish(exchange, ended);
                problem(status, detail, request_id)
            }
        }
    }

    fn capture(&self, api: &CompiledApi) -> Option<usize> {
        api.entry
            .api
            .body_capture
            .as_ref()
            .filter(|capture| capture.enabled)
            .map(|capture| {
                usize::try_from(capture.max_bytes)
                    .ok()
                    .filter(|bytes| *bytes > 0)
                    .unwrap_or(self.config.default_capture_bytes)
            })
    }

    /// The upstream's response on its way to the client: hop-by-hop
    /// headers dropped, the body timed and accounted when it ends.
    fn respond(
        &self,
        response: Response<Incoming>,
        exchange: Exchange,
        tap: Tap,
        in_flight: InFlight,
        timing: Timing,
    ) -> Response<EdgeBody> {
        let (mut parts, body) = response.into_parts();
        hygiene::strip_hop_by_hop(&mut parts.headers);
        let status = parts.status.as_u16();
        let response_headers = if exchange.capture.is_some() {
            hygiene::audit(&parts.headers)
        } else {
            Vec::new()
        };
        let response_content_type = header_str(&parts.headers, header::CONTENT_TYPE).to_owned();
        let capture = exchange.capture;
        let accounting = self.accounting.clone();
        let started = timing.started;
        let on_end = Box::new(move |seen: Seen| {
            drop(in_flight);
            let upstream_micros = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
            let ended = Ended {
                status,
                request: tap.take(),
                response: seen,
                upstream_micros: Some(upstream_micros),
                error: None,
                response_headers,
                response_content_type,
            };
            accounting.finish(exchange, ended);
        });
        let body = Observed::reporting(body.map_err(BoxError::from), capture, on_end);
        // The body must end by the total timeout, counted from the upstream
        // request, and never pause longer than the read timeout.
        let total = timing
            .total
            .map(|total| tokio::time::Instant::from_std(started + total));
        Response::from_parts(
            parts,
            Deadline::new(body, total, timing.idle).boxed_unsync(),
        )
    }
}

/// When the upstream exchange started, and its time limits.
struct Timing {
    started: Instant,
    total: Option<Duration>,
    idle: Duration,
}

/// The status and detail for a request that got no response.
fn failure_status(
    failure: &Failure,
    seen: &Seen,
    max_body: u64,
    exchange: &Exchange,
) -> (StatusCode, String) {
    if seen.bytes >= max_body && !seen.complete {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the {max_body}-byte limit"),
        );
    }
    match failure {
        Failure::Refused(refused) => {
            metrics::counter!("edge_egress_refused_total", "tenant" => exchange.principal.tenant_id.clone(), "api" => exchange.api_id.clone()).increment(1);
            tracing::warn!(
                tenant_id = exchange.principal.tenant_id,
                api_id = exchange.api_id,
                class = %refused.class,
                "upstream connection refused by the egress policy"
            );
            (StatusCode::BAD_GATEWAY, refused.to_string())
        }
        Failure::ConnectTimeout(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the upstream did not accept a connection within {} ms",
                after.as_millis()
            ),
        ),
        Failure::Connect => (
            StatusCode::BAD_GATEWAY,
            "the upstream refused the connection".to_owned(),
        ),
        Failure::ReadTimeout(after) => (
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the upstream did not answer within {} ms",
                after.as_millis()
            ),
        ),
        Failure::Upstream => (StatusCode::BAD_GATEWAY, "the upstream failed".to_owned()),
    }
}

fn too_large(max_body: u64, request_id: &str) -> Response<EdgeBody> {
    problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is over the {max_body}-byte limit"),
        request_id,
    )
}

/// The request side of the usage event.
fn exchange(
    parts: &http::request::Parts,
    forwarding: &Forwarding<'_>,
    (principal, admitted): (gateway_proto::identity::v1::Principal, Admitted),
    trace_id: String,
    capture: Option<usize>,
) -> Exchange {
    let headers = &parts.headers;
    Exchange {
        request_id: forwarding.request_id.to_owned(),
        trace_id,
        started: Instant::now(),
        started_micros: now_micros(),
        principal,
        api_id: forwarding.api.entry.api.id.clone(),
        route: forwarding.route.name().to_owned(),
        method: parts.method.to_string(),
        path: forwarding.path.to_owned(),
        remote_ip: forwarding.caller.remote_ip.clone(),
        user_agent: header_str(headers, header::USER_AGENT).to_owned(),
        admitted,
        capture,
        request_headers: if capture.is_some() {
            hygiene::audit(headers)
        } else {
            Vec::new()
        },
        request_content_type: header_str(headers, header::CONTENT_TYPE).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_tenant_api_and_rest() {
        assert_eq!(
            split("/acme/echo/v1/items"),
            Some(("acme", "echo", "/v1/items"))
        );
        assert_eq!(split("/acme/echo"), Some(("acme", "echo", "/")));
        assert_eq!(split("/acme/echo/"), Some(("acme", "echo", "/")));
        assert_eq!(split("/acme"), None);
        assert_eq!(split("/"), None);
    }
}
