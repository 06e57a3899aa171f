//! The edge's request path. The order of the stages is written here, and
//! only here; each stage lives in a module named after what it does:
//!
//! | # | stage | module |
//! |---|-------|--------|
//! | 1 | request id, request head: `Host`, path normalisation | [`crate::request_id`], [`crate::path`] |
//! | 2 | route: an AI endpoint ([`crate::ai::serve`], its own stages), or tenant and API from the path | here |
//! | 3 | authenticate by the route's mode: key and client id, JWT, basic, public | [`crate::auth`] |
//! | 4 | route rule of the API's compiled policy | [`crate::policy`] |
//! | 5 | access plugins, limits on the request body (413) | [`crate::plugin`], here |
//! | 6 | admit: quota `Check`, lease or floor | [`crate::admit`] |
//! | 7 | response cache: a hit is answered here | [`crate::cache`] |
//! | 8 | choose the upstream target | [`crate::policy`], [`crate::balance`] |
//! | 9 | forward: headers, pooled client, timeouts, retries | [`crate::headers`], [`crate::forward`] |
//! | 10 | shape: response transforms, plugins, envelope | [`crate::transform`] |
//! | 11 | account: `Commit` and one usage event, after the response | [`crate::account`] |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_catalog_client::CatalogCache;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use gateway_usage_sender::UsageSender;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::account::{Accounting, Ended, Exchange, Refused, now_micros};
use crate::admit::{Admission, Admitted};
use crate::auth::modes::{Keyless, Mode};
use crate::auth::{Authenticator, Caller};
use crate::body::{BoxError, Deadline, EdgeBody, Observed, Seen, Tap};
use crate::cache::{Consulted, Entry, Fill, ResponseCache};
use crate::config::Config;
use crate::forward::{Failure, Forwarder};
use crate::grpc::Authed;
use crate::headers::{self as hygiene, Outgoing};
use crate::outbound::Outbound;
use crate::plugin::{Answered, Plugins, RequestInfo};
use crate::policy::{CompiledApi, InFlight, Policies, RouteChoice};
use crate::principals::Principals;
use crate::problem::{Halt, halt, response as problem};
use crate::request_id;
use crate::retry::RetryPolicy;
use crate::tenants::Tenants;

/// Everything the request path needs, shared by all connections.
pub struct Proxy {
    pub config: Config,
    pub catalog: CatalogCache,
    pub auth: Authenticator,
    pub admission: Admission,
    pub policies: Arc<Policies>,
    pub forwarder: Arc<Forwarder>,
    pub cache: ResponseCache,
    tenants: Tenants,
    pub plugins: Plugins,
    pub(crate) accounting: Accounting,
    pub(crate) ai: crate::ai::Ai,
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

/// Whether the request carries a gateway key (`X-API-Key`, or a Bearer
/// token in the keys' `sk-` format rather than a JWT).
fn carries_key(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key")
        || crate::auth::presented_key(headers).is_some_and(|(key, _)| key.starts_with("sk-"))
}

/// The auth mode of the route a request takes (the API's when it matches
/// none: it is answered 404 later).
fn mode(api: &CompiledApi, request: &Request<Incoming>, rest: &str) -> Mode {
    if !api.auth.keyless {
        return Mode::Key;
    }
    api.mode(api.route(request.method(), rest).as_ref())
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
    /// The path below the API, as routed.
    rest: &'a str,
    path: &'a str,
    admitted: Admitted,
    max_body: u64,
    request_id: &'a str,
}

/// What a [`Proxy`] is built from, besides its config.
pub struct Wiring {
    pub principals: Arc<Principals>,
    pub catalog: CatalogCache,
    pub quota: QuotaServiceClient<Authed>,
    pub usage: Option<UsageSender>,
    pub egress: gateway_egress::EgressPolicy,
    pub tenants: Tenants,
    pub plugins: Plugins,
}

impl Proxy {
    pub fn new(config: Config, wiring: Wiring) -> Result<Self, String> {
        let Wiring {
            principals,
            catalog,
            quota,
            usage,
            egress,
            tenants,
            plugins,
        } = wiring;
        Ok(Self {
            tenants,
            plugins,
            auth: Authenticator::new(principals, config.max_client_ids_per_key),
            admission: Admission::new(
                quota.clone(),
                config.quota_failure,
                config.fail_open_requests_per_minute,
            ),
            policies: Arc::new(Policies::default()),
            forwarder: Arc::new(Forwarder::new(&config.upstream_ca_file, egress)?),
            cache: ResponseCache::new(config.cache_max_bytes, config.cache_max_body_bytes),
            ai: crate::ai::Ai::new(&config)?,
            accounting: Accounting {
                usage,
                quota,
                access_log: crate::account::access_log_level(&config.access_log),
                requests: crate::request_metrics::RequestCounters::default(),
            },
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
        // One span per request, a child of the caller's trace if it sent one;
        // the stages' spans and the outgoing calls hang under it.
        let span = tracing::info_span!(
            "edge.request",
            otel.name = "edge request",
            request_id = %request_id,
            http.method = %request.method(),
            http.status_code = tracing::field::Empty,
        );
        gateway_telemetry::set_parent_from_headers(&span, request.headers());
        let mut response = self
            .serve(request, remote, &request_id)
            .instrument(span.clone())
            .await;
        span.record("http.status_code", response.status().as_u16());
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(request_id::HEADER.clone(), value);
        }
        metrics::histogram!("edge_request_seconds").record(started.elapsed().as_secs_f64());
        Ok(response)
    }

    /// A 503 while the usage spool is at its bound and `edge.spool_full` is
    /// `refuse`: a request served now could not be billed.
    pub(crate) fn usage_spool_full(&self, request_id: &str) -> Option<Halt> {
        let usage = self.accounting.usage.as_ref()?;
        if self.config.spool_full == crate::config::SpoolFull::Drop || usage.has_room() {
            return None;
        }
        metrics::counter!("edge_usage_spool_full_refusals_total").increment(1);
        let mut refused = crate::problem::halt(
            StatusCode::SERVICE_UNAVAILABLE,
            "the usage spool is full (the usage service is away); retry later",
            request_id,
        );
        refused
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        Some(refused)
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
        if let Some(document) = crate::openapi::answer(request.method(), &path) {
            return document;
        }
        if let Some(endpoint) = crate::ai::serve::endpoint(request.method(), &path) {
            // Boxed, as is `serve_api`: each path's future is tens of KB,
            // and hyper and the tracing span move this one by value, so
            // unboxed they were copied several times per request.
            return Box::pin(self.serve_ai(endpoint, request, remote, request_id)).await;
        }
        if let Some(full) = self.usage_spool_full(request_id) {
            return *full;
        }
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
        if crate::cors::is_preflight(request.method(), request.headers())
            && let Some(answer) = self
                .preflight(tenant_slug, api_slug, request.headers())
                .await
        {
            return answer;
        }
        let (caller, api) = match self
            .identify(
                &request,
                remote,
                (tenant_slug, api_slug, rest),
                &not_found,
                request_id,
            )
            .instrument(tracing::info_span!("edge.authenticate"))
            .await
        {
            Ok(identified) => identified,
            Err(response) => return *response,
        };
        let origin = request.headers().get(header::ORIGIN).cloned();
        let mut response =
            Box::pin(self.serve_api(request, caller, &api, &path, rest, request_id)).await;
        if response
            .extensions()
            .get::<crate::problem::EdgeAnswer>()
            .is_some()
        {
            let answered = Answered {
                request_id,
                api: &api,
                status: response.status(),
            };
            self.plugins.error(&answered);
        }
        if let Some(cors) = &api.cors {
            cors.decorate(origin.as_ref(), response.headers_mut());
        }
        api.transform.secure(response.headers_mut());
        response
    }

    /// Stages 2 and 3: the API, and its caller by the route's auth mode. A
    /// request with a gateway key finds its tenant through the key; one
    /// without (JWT, basic and public routes) through the tenant slug, and
    /// only when some API of that slug takes such callers.
    async fn identify(
        &self,
        request: &Request<Incoming>,
        remote: SocketAddr,
        (tenant_slug, api_slug, rest): (&str, &str, &str),
        not_found: &(dyn Fn() -> Response<EdgeBody> + Sync),
        request_id: &str,
    ) -> Result<(Caller, Arc<CompiledApi>), Halt> {
        let headers = request.headers();
        if carries_key(headers) || !self.catalog.view().admits_keyless(api_slug) {
            let caller = self
                .auth
                .authenticate(headers, remote, tenant_slug, not_found, request_id)
                .await?;
            let api = self
                .api(&caller.principal.tenant_id, api_slug)
                .ok_or_else(|| Box::new(not_found()))?;
            return match mode(&api, request, rest) {
                Mode::Key => Ok((caller, api)),
                Mode::Public => {
                    let keyless = Keyless {
                        api_id: &api.entry.api.id,
                        tenant: (&caller.principal.tenant_id, tenant_slug),
                        headers,
                        remote,
                        request_id,
                    };
                    let public = api.auth.caller(Mode::Public, &keyless).await?;
                    Ok((public, api))
                }
                other => Err(halt(
                    StatusCode::UNAUTHORIZED,
                    format!("this route takes {}, not an API key", other.as_str()),
                    request_id,
                )),
            };
        }
        let tenant_id = self
            .tenants
            .id(tenant_slug)
            .await
            .ok_or_else(|| Box::new(not_found()))?;
        let api = self
            .api(&tenant_id, api_slug)
            .ok_or_else(|| Box::new(not_found()))?;
        let keyless = Keyless {
            api_id: &api.entry.api.id,
            tenant: (&tenant_id, tenant_slug),
            headers,
            remote,
            request_id,
        };
        let caller = api.auth.caller(mode(&api, request, rest), &keyless).await?;
        Ok((caller, api))
    }

    /// Stages 4 to 9, for a caller of a known API.
    async fn serve_api(
        &self,
        request: Request<Incoming>,
        caller: Caller,
        api: &Arc<CompiledApi>,
        path: &str,
        rest: &str,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let (tenant_slug, api_slug) = (&caller.principal.tenant_slug, &api.entry.api.slug);
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
        let info = RequestInfo {
            request_id,
            method: request.method(),
            path,
            headers: request.headers(),
            remote_ip: caller
                .remote_ip
                .parse()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
            tenant_id: &caller.principal.tenant_id,
            api,
        };
        // Stage: access (plugins, maintenance and client addresses first).
        if let Some(answer) = self.plugins.request(&info) {
            return answer;
        }
        let max_body = match self.body_limit(api, request.headers(), request_id) {
            Ok(max_body) => max_body,
            Err(response) => return *response,
        };
        let admitted = match self
            .admission
            .admit(&caller, request_id)
            .instrument(tracing::info_span!("edge.admit"))
            .await
        {
            Ok(admitted) => admitted,
            Err(response) => {
                self.record_refusal(&caller, api, &request, path, response.status(), request_id);
                return *response;
            }
        };
        let forwarding = Forwarding {
            caller,
            api,
            route: &route,
            rest,
            path,
            admitted,
            max_body,
            request_id,
        };
        self.forward(request, forwarding).await
    }

    /// A CORS preflight for an API with a CORS policy, answered here:
    /// no key, no upstream. `None` lets the request take the normal path.
    async fn preflight(
        &self,
        tenant_slug: &str,
        api_slug: &str,
        headers: &HeaderMap,
    ) -> Option<Response<EdgeBody>> {
        let tenant_id = self.tenants.id(tenant_slug).await?;
        let api = self.api(&tenant_id, api_slug)?;
        let cors = api.cors.as_ref()?;
        metrics::counter!("edge_cors_preflights_total").increment(1);
        Some(cors.preflight(headers))
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

    /// Stages 7 to 9: a target, the upstream request (retried where the
    /// policy allows), and accounting once the response has ended.
    async fn forward(
        &self,
        mut request: Request<Incoming>,
        mut forwarding: Forwarding<'_>,
    ) -> Response<EdgeBody> {
        let request_id = forwarding.request_id;
        let api = forwarding.api;
        let protocol = crate::upgrade::requested(request.headers())
            .filter(|_| request.version() == http::Version::HTTP_11);
        let client_upgrade = protocol.as_ref().map(|_| hyper::upgrade::on(&mut request));
        let (parts, body) = request.into_parts();
        let (traceparent, trace_id) = hygiene::traceparent(&parts.headers);
        let capture = self.capture(api);
        let admitted = std::mem::take(&mut forwarding.admitted);
        let principal = std::mem::take(&mut forwarding.caller.principal);
        let exchange = exchange(
            &parts,
            &forwarding,
            (principal, admitted),
            trace_id,
            capture,
        );
        let fill = match self.consult_cache(api, &parts, forwarding.rest).await {
            None => None,
            Some(Consulted::Miss(fill)) => Some(fill),
            Some(Consulted::Hit(entry)) => {
                return self
                    .cached_answer(&entry, &parts, exchange, api, request_id)
                    .await;
            }
            Some(Consulted::Absent) => return self.absent(exchange, request_id),
        };
        let cached = fill.is_some();
        let mut headers = parts.headers;
        hygiene::for_upstream(
            &mut headers,
            &Outgoing {
                key_header: &forwarding.caller.key_header,
                remote_ip: &forwarding.caller.remote_ip,
                request_id,
                traceparent: &traceparent,
                api: &api.entry,
            },
        );
        if let Some(protocol) = protocol {
            crate::upgrade::restore(&mut headers, protocol);
        }
        for (name, value) in &forwarding.caller.forward {
            match value {
                Some(value) => headers.insert(name.clone(), value.clone()),
                None => headers.remove(name),
            };
        }
        api.transform.request.apply(&mut headers);
        let retry = api
            .retry
            .as_ref()
            .filter(|retry| retry.allows_method(&parts.method));
        let outbound = match retry {
            Some(_) => Outbound::replayable(body, &headers, forwarding.max_body).await,
            None => Ok(Outbound::streaming(body, forwarding.max_body)),
        };
        let mut outbound = match outbound {
            Ok(outbound) => outbound,
            Err(status) => {
                let detail = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => format!(
                        "the request body is over the {}-byte limit",
                        forwarding.max_body
                    ),
                    _ => "the request body could not be read".to_owned(),
                };
                self.accounting.finish(
                    exchange,
                    Ended {
                        status: status.as_u16(),
                        error: Some(detail.clone()),
                        ..Ended::default()
                    },
                );
                return problem(status, detail, request_id);
            }
        };
        let timing = self.timing(api);
        let _active = api.budget.start();
        let request = Repeated {
            method: &parts.method,
            query: parts.uri.query(),
            capture,
            upgrade: std::sync::Mutex::new(client_upgrade),
            cached,
            fill: std::sync::Mutex::new(fill.flatten()),
        };
        let attempt = Attempt {
            outbound: &mut outbound,
            headers,
            timing,
            retry,
        };
        self.attempts(&forwarding, &request, attempt, exchange)
            .await
    }

    /// Attempts until one answers, the policy stops retrying, or the budget
    /// or the total timeout runs out.
    async fn attempts(
        &self,
        forwarding: &Forwarding<'_>,
        request: &Repeated<'_>,
        first: Attempt<'_>,
        exchange: Exchange,
    ) -> Response<EdgeBody> {
        let (api, request_id) = (forwarding.api, forwarding.request_id);
        let Attempt {
            outbound,
            mut headers,
            mut timing,
            retry,
        } = first;
        // The same path for every attempt; only the target changes.
        let upstream_path = api
            .transform
            .path(&forwarding.route.upstream_path(forwarding.rest));
        let mut tried = Vec::new();
        let mut _retrying = None;
        for attempt in 1_u32.. {
            let chosen = match api.choose(
                forwarding.route,
                &headers,
                &forwarding.caller.remote_ip,
                &tried,
            ) {
                Ok(chosen) => chosen,
                Err(unavailable) => return self.unavailable(exchange, unavailable, request_id),
            };
            tried.push(chosen.index);
            timing.attempts = attempt;
            let Ok(uri) =
                crate::forward::upstream_uri(&chosen.target.url, &upstream_path, request.query)
            else {
                tracing::error!(
                    api_id = api.entry.api.id,
                    target = chosen.target.url,
                    "bad upstream URL"
                );
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "the API's upstream URL is invalid",
                    request_id,
                );
            };
            let (body, tap) = outbound.body(request.capture);
            // An attempt no retry can follow (the retry below needs the
            // same three) takes the headers rather than a copy.
            let may_repeat =
                retry.is_some_and(|retry| attempt < retry.max_attempts) && outbound.can_replay();
            let upstream_headers = if may_repeat {
                headers.clone()
            } else {
                std::mem::take(&mut headers)
            };
            let upstream = request.build(uri, body, upstream_headers);
            let sent = Instant::now();
            let result = self
                .forwarder
                .send(upstream, timing.connect, timing.read_now())
                .instrument(
                    tracing::info_span!("edge.upstream", attempt, target = %chosen.target.url),
                )
                .await;
            api.record(chosen.target, breaks(&result), sent.elapsed());
            if let Some(retry) = retry
                && attempt < retry.max_attempts
                && outbound.can_replay()
                && retries(retry, &result)
                && let Some(slot) = api.budget.try_retry()
            {
                let wait = retry.backoff(attempt);
                if timing.leaves_room(wait) {
                    metrics::counter!("edge_retries_total", "api" => api.entry.api.id.clone())
                        .increment(1);
                    tracing::debug!(attempt, target = chosen.target.url, "retrying");
                    _retrying = Some(slot);
                    drop(result);
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            if let Ok(response) = &result {
                self.invalidate_on_write(api, request.method, forwarding.rest, response.status());
            }
            let attempted = Attempted {
                exchange,
                tap,
                in_flight: chosen.in_flight,
                timing,
                api,
                request_id,
                cached: request.cached,
                fill: request
                    .fill
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(),
            };
            return match result {
                Ok(response) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    self.switched(response, request, attempted)
                }
                Ok(response) => self.shaped(response, attempted).await,
                Err(failure) => self.failed(&failure, attempted, forwarding.max_body),
            };
        }
        unreachable!("the attempt loop returns")
    }

    /// A 101: the client's and the upstream's connections are spliced.
    fn switched(
        &self,
        mut response: Response<Incoming>,
        request: &Repeated<'_>,
        attempted: Attempted<'_>,
    ) -> Response<EdgeBody> {
        let client = request
            .upgrade
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(client) = client else {
            return problem(
                StatusCode::BAD_GATEWAY,
                "the upstream switched protocols unasked",
                attempted.request_id,
            );
        };
        let upstream = hyper::upgrade::on(&mut response);
        let protocol = response.headers().get(header::UPGRADE).cloned();
        crate::upgrade::splice(
            client,
            upstream,
            self.accounting.clone(),
            attempted.exchange,
            attempted.in_flight,
        );
        let (mut parts, _) = response.into_parts();
        hygiene::strip_hop_by_hop(&mut parts.headers);
        if let Some(protocol) = protocol {
            crate::upgrade::restore(&mut parts.headers, protocol);
        }
        Response::from_parts(parts, crate::body::empty())
    }

    /// An ordinary answer: kept for the cache as the upstream sent it,
    /// then shaped for the client.
    async fn shaped(
        &self,
        response: Response<Incoming>,
        attempted: Attempted<'_>,
    ) -> Response<EdgeBody> {
        let Attempted {
            exchange,
            tap,
            in_flight,
            timing,
            api,
            request_id,
            cached,
            fill,
        } = attempted;
        let mut response = response.map(|body| body.map_err(BoxError::from).boxed_unsync());
        if let Some(fill) = fill {
            response = fill.keep(response);
        }
        if cached {
            response
                .headers_mut()
                .insert(crate::cache::X_CACHE, HeaderValue::from_static("MISS"));
        }
        let response = self.shape(response, api, request_id).await;
        let cache = cached.then_some("MISS");
        self.respond(response, exchange, tap, in_flight, timing, cache)
    }

    /// Response transforms, plugins, the envelope: for every answer from
    /// the upstream or the cache.
    async fn shape(
        &self,
        mut response: Response<EdgeBody>,
        api: &CompiledApi,
        request_id: &str,
    ) -> Response<EdgeBody> {
        api.transform.response.apply(response.headers_mut());
        let answered = Answered {
            request_id,
            api,
            status: response.status(),
        };
        self.plugins.response(&answered, response.headers_mut());
        match api.transform.envelope {
            Some(max) => enveloped(response, max, request_id).await,
            None => response,
        }
    }

    /// Stage: the response cache, for an API with one and a method it
    /// caches; `None` when it does not apply.
    async fn consult_cache(
        &self,
        api: &CompiledApi,
        parts: &http::request::Parts,
        rest: &str,
    ) -> Option<Consulted> {
        let policy = api
            .cache
            .as_ref()
            .filter(|policy| policy.applies(&parts.method))?;
        let lookup = crate::cache::Lookup {
            api_id: &api.entry.api.id,
            method: &parts.method,
            path: rest,
            query: parts.uri.query(),
            headers: &parts.headers,
        };
        let wait = self.timing(api).idle;
        let consulted = self
            .cache
            .consult(policy, &lookup, wait)
            .instrument(tracing::info_span!("edge.cache"))
            .await;
        let hit = matches!(consulted, Consulted::Hit(_));
        policy.counters.record(&api.entry.api.id, hit);
        Some(consulted)
    }

    /// A cached answer, shaped and accounted like an upstream one.
    async fn cached_answer(
        &self,
        entry: &Entry,
        parts: &http::request::Parts,
        exchange: Exchange,
        api: &CompiledApi,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let response = entry.answer(&parts.method, &parts.headers);
        let response = self.shape(response, api, request_id).await;
        self.reported(response, exchange, |seen| Ended {
            response: seen,
            cache: Some("HIT"),
            ..Ended::default()
        })
    }

    /// `only-if-cached` with nothing stored (RFC 9111 §5.2.1.7).
    fn absent(&self, exchange: Exchange, request_id: &str) -> Response<EdgeBody> {
        let detail = "only-if-cached: no stored answer for this request";
        self.accounting.finish(
            exchange,
            Ended {
                status: 504,
                error: Some(detail.to_owned()),
                cache: Some("MISS"),
                ..Ended::default()
            },
        );
        problem(StatusCode::GATEWAY_TIMEOUT, detail, request_id)
    }

    /// A successful write to a path makes its cached answers stale.
    fn invalidate_on_write(
        &self,
        api: &CompiledApi,
        method: &http::Method,
        rest: &str,
        status: StatusCode,
    ) {
        let writes = matches!(
            *method,
            http::Method::POST | http::Method::PUT | http::Method::PATCH | http::Method::DELETE
        );
        if api.cache.is_some() && writes && (status.is_success() || status.is_redirection()) {
            self.cache.invalidate(&api.entry.api.id, rest);
        }
    }

    /// No answer: the problem for the failure, accounted now.
    fn failed(
        &self,
        failure: &Failure,
        attempted: Attempted<'_>,
        max_body: u64,
    ) -> Response<EdgeBody> {
        let seen = attempted.tap.take();
        let (status, detail) = failure_status(failure, &seen, max_body, &attempted.exchange);
        let ended = Ended {
            status: status.as_u16(),
            request: seen,
            error: Some(detail.clone()),
            attempts: attempted.timing.attempts,
            ..Ended::default()
        };
        self.accounting.finish(attempted.exchange, ended);
        problem(status, detail, attempted.request_id)
    }

    /// No target may take the request: 503, with Retry-After when an open
    /// breaker will let a probe through.
    fn unavailable(
        &self,
        exchange: Exchange,
        unavailable: crate::policy::Unavailable,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let detail = "no upstream target of this API is available";
        self.accounting.finish(
            exchange,
            Ended {
                status: 503,
                error: Some(detail.to_owned()),
                ..Ended::default()
            },
        );
        let mut response = problem(StatusCode::SERVICE_UNAVAILABLE, detail, request_id);
        if let Some(wait) = unavailable.retry_after {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }

    fn timing(&self, api: &CompiledApi) -> Timing {
        let connect = api.connect_timeout.unwrap_or(Duration::from_millis(
            self.config.upstream_connect_timeout_ms,
        ));
        let idle = api
            .read_timeout
            .unwrap_or(Duration::from_millis(self.config.upstream_read_timeout_ms));
        Timing {
            started: Instant::now(),
            connect,
            total: api.total_timeout,
            idle,
            attempts: 0,
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
        response: Response<EdgeBody>,
        exchange: Exchange,
        tap: Tap,
        in_flight: InFlight,
        timing: Timing,
        cache: Option<&'static str>,
    ) -> Response<EdgeBody> {
        let (started, attempts) = (timing.started, timing.attempts);
        let response = self.reported(response, exchange, move |seen| {
            drop(in_flight);
            let upstream_micros = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
            Ended {
                request: tap.take(),
                response: seen,
                upstream_micros: Some(upstream_micros),
                attempts,
                cache,
                ..Ended::default()
            }
        });
        // The body must end by the total timeout, counted from the upstream
        // request, and never pause longer than the read timeout.
        let total = timing
            .total
            .map(|total| tokio::time::Instant::from_std(started + total));
        response.map(|body| Deadline::new(body, total, timing.idle).boxed_unsync())
    }

    /// The answer on its way to the client, hop-by-hop headers dropped,
    /// accounted once its body ends with what `end` makes of it.
    fn reported(
        &self,
        response: Response<EdgeBody>,
        exchange: Exchange,
        end: impl FnOnce(Seen) -> Ended + Send + 'static,
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
        let on_end = Box::new(move |seen: Seen| {
            let ended = Ended {
                status,
                response_headers,
                response_content_type,
                ..end(seen)
            };
            accounting.finish(exchange, ended);
        });
        let body = Observed::reporting(body, capture, on_end);
        Response::from_parts(parts, body.boxed_unsync())
    }
}

/// When the upstream exchange started, and its time limits.
struct Timing {
    started: Instant,
    connect: Duration,
    /// Every attempt, and the response body, within this.
    total: Option<Duration>,
    /// The read timeout: for the response head, and between body chunks.
    idle: Duration,
    /// Upstream attempts made so far.
    attempts: u32,
}

impl Timing {
    /// The wait for the response head now: the read timeout, within what
    /// is left of the total one.
    fn read_now(&self) -> Duration {
        match self.total {
            Some(total) => self.idle.min(total.saturating_sub(self.started.elapsed())),
            None => self.idle,
        }
    }

    /// Whether waiting `wait` still leaves time for another attempt.
    fn leaves_room(&self, wait: Duration) -> bool {
        self.total
            .is_none_or(|total| self.started.elapsed() + wait < total)
    }
}

/// The parts of the request every attempt repeats.
struct Repeated<'a> {
    method: &'a http::Method,
    query: Option<&'a str>,
    capture: Option<usize>,
    /// The client's side of an upgrade it asked for, taken on a 101.
    upgrade: std::sync::Mutex<Option<hyper::upgrade::OnUpgrade>>,
    /// The cache was consulted and missed (`X-Cache: MISS`).
    cached: bool,
    /// Where the answer is stored, if it may be; taken by the answer.
    fill: std::sync::Mutex<Option<Fill>>,
}

/// The last attempt, and what its answer is accounted with.
struct Attempted<'a> {
    exchange: Exchange,
    tap: Tap,
    in_flight: InFlight,
    timing: Timing,
    api: &'a CompiledApi,
    request_id: &'a str,
    cached: bool,
    fill: Option<Fill>,
}

/// What the attempts start from and use up: the body, the upstream
/// headers, the time limits and the retry policy that may repeat them.
struct Attempt<'a> {
    outbound: &'a mut Outbound,
    headers: HeaderMap,
    timing: Timing,
    retry: Option<&'a RetryPolicy>,
}

impl Repeated<'_> {
    /// The upstream request of one attempt.
    fn build(&self, uri: http::Uri, body: EdgeBody, headers: HeaderMap) -> Request<EdgeBody> {
        let mut upstream = Request::new(body);
        *upstream.method_mut() = self.method.clone();
        *upstream.uri_mut() = uri;
        *upstream.headers_mut() = headers;
        upstream
    }
}

/// Whether an attempt's outcome counts against the target (breaker,
/// passive health): no response, or a 5xx.
fn breaks(result: &Result<Response<Incoming>, Failure>) -> bool {
    match result {
        Ok(response) => response.status().is_server_error(),
        Err(_) => true,
    }
}

/// Whether the policy retries this outcome.
fn retries(retry: &RetryPolicy, result: &Result<Response<Incoming>, Failure>) -> bool {
    match result {
        Ok(response) => retry.retries_status(response.status().as_u16()),
        Err(Failure::Connect | Failure::ConnectTimeout(_)) => retry.on_connect_failure,
        Err(Failure::ReadTimeout(_)) => retry.retries_status(504),
        Err(Failure::Refused(_) | Failure::Upstream) => false,
    }
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
    if seen.failed && !seen.complete {
        // The client's body broke (a bad chunk, a reset), not the upstream.
        return (
            StatusCode::BAD_REQUEST,
            "the request body is malformed or was cut off".to_owned(),
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

/// A JSON response of known length up to `max` bytes, wrapped in the
/// envelope; anything else unchanged.
async fn enveloped(response: Response<EdgeBody>, max: u64, request_id: &str) -> Response<EdgeBody> {
    let json = header_str(response.headers(), header::CONTENT_TYPE)
        .split(';')
        .next()
        .is_some_and(|kind| kind.trim().eq_ignore_ascii_case("application/json"));
    let length = header_str(response.headers(), header::CONTENT_LENGTH)
        .parse::<u64>()
        .ok();
    if !json || length.is_none_or(|length| length > max) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::debug!(%error, "upstream body failed before the envelope");
            return problem(StatusCode::BAD_GATEWAY, "the upstream failed", request_id);
        }
    };
    let body = match crate::transform::envelope(&bytes, request_id) {
        Some(wrapped) => bytes::Bytes::from(wrapped),
        None => bytes,
    };
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, crate::body::full(body))
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
    (principal, admitted): (Arc<gateway_proto::identity::v1::Principal>, Admitted),
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
