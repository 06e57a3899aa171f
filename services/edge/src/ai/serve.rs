//! The AI request path, stage by stage, for the OpenAI endpoints
//! (`POST /v1/chat/completions`, `GET /v1/models`), Anthropic's (`POST
//! /v1/messages`, `POST /v1/messages/count_tokens`, `GET /v1/models` with
//! an `anthropic-version` header) and Gemini's (`models/{model}:
//! generateContent`, `:streamGenerateContent`, `:countTokens`, the model
//! list), on channels of any provider:
//!
//! | # | stage | module |
//! |---|-------|--------|
//! | 1 | the key, from any place an SDK puts it | [`super::keys`] |
//! | 2 | the body, read whole (bounded) and parsed in its protocol | [`super::request`] |
//! | 3 | candidate channels for the model | [`super::channels`] |
//! | 4 | estimate and admit: tokens, cost and balance; max tokens lowered to what the budget pays for | [`super::money`], [`crate::admit`] |
//! | 5 | attempts: the body for the channel (passed through, or translated for another provider); fail over on connect errors, timeouts, 429 and 5xx, cooling the failed one | here, [`super::translate`] |
//! | 6 | the answer: JSON or SSE passed through or re-encoded, usage read | [`super::stream`], [`super::translate`] |
//! | 7 | account: Commit with real tokens and cost, one usage event | [`crate::account`] |

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use gateway_pricing::Usage;
use gateway_proto::catalog::v1 as pb;
use gateway_proto::identity::v1 as id;
use gateway_proto::quota::v1 as quota;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::billing::{Audit, Billing};
use super::canonical::Unsupported;
use super::channels::{Asker, Candidate, Channels, NoChannel};
use super::errors::{self, Kind};
use super::guard::{Guard, TopUp};
use super::money::{self, Payer};
use super::request::{self, Generation};
use super::stream::{Drain, Observed, StreamEnd, Watch};
use super::translate::{self, Translator};
use super::usage::Protocol;
use crate::account::{AiOutcome, Ended, Exchange, now_micros};
use crate::admit::{Admitted, Estimate};
use crate::auth::{Caller, KeyRequest};
use crate::body::{BoxError, EdgeBody, Seen};
use crate::forward::Failure;
use crate::pipeline::Proxy;

/// An AI endpoint the edge serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    OpenAiChat,
    /// The model list, in Anthropic's shape when the request says
    /// `anthropic-version`.
    Models,
    AnthropicMessages,
    AnthropicCountTokens,
    /// `models/{model}:generateContent` (or `:streamGenerateContent`).
    GeminiGenerate {
        stream: bool,
    },
    GeminiCountTokens,
    GeminiModels,
    /// `POST /v1/embeddings`.
    OpenAiEmbeddings,
    /// The legacy `POST /v1/completions`.
    OpenAiCompletions,
    /// `POST /v1/responses`.
    OpenAiResponses,
    /// `models/{model}:embedContent` (or `:batchEmbedContents`).
    GeminiEmbed {
        batch: bool,
    },
    /// Under an AI prefix, but nothing the edge serves.
    Unknown(Protocol),
}

/// Every AI route the edge serves, `(method, path template, endpoint)`:
/// the router and the OpenAPI document both follow this table. `{model}`
/// is one path segment (Gemini's `models/{model}:{method}`, also served
/// under `/v1/` as the same API).
pub const ROUTES: [(&str, &str, Endpoint); 18] = [
    ("POST", "/v1/chat/completions", Endpoint::OpenAiChat),
    ("GET", "/v1/models", Endpoint::Models),
    ("POST", "/v1/embeddings", Endpoint::OpenAiEmbeddings),
    ("POST", "/v1/completions", Endpoint::OpenAiCompletions),
    ("POST", "/v1/responses", Endpoint::OpenAiResponses),
    ("POST", "/v1/messages", Endpoint::AnthropicMessages),
    (
        "POST",
        "/v1/messages/count_tokens",
        Endpoint::AnthropicCountTokens,
    ),
    ("GET", "/v1beta/models", Endpoint::GeminiModels),
    (
        "POST",
        "/v1beta/models/{model}:generateContent",
        Endpoint::GeminiGenerate { stream: false },
    ),
    (
        "POST",
        "/v1beta/models/{model}:streamGenerateContent",
        Endpoint::GeminiGenerate { stream: true },
    ),
    (
        "POST",
        "/v1beta/models/{model}:countTokens",
        Endpoint::GeminiCountTokens,
    ),
    (
        "POST",
        "/v1beta/models/{model}:embedContent",
        Endpoint::GeminiEmbed { batch: false },
    ),
    (
        "POST",
        "/v1beta/models/{model}:batchEmbedContents",
        Endpoint::GeminiEmbed { batch: true },
    ),
    (
        "POST",
        "/v1/models/{model}:generateContent",
        Endpoint::GeminiGenerate { stream: false },
    ),
    (
        "POST",
        "/v1/models/{model}:streamGenerateContent",
        Endpoint::GeminiGenerate { stream: true },
    ),
    (
        "POST",
        "/v1/models/{model}:countTokens",
        Endpoint::GeminiCountTokens,
    ),
    (
        "POST",
        "/v1/models/{model}:embedContent",
        Endpoint::GeminiEmbed { batch: false },
    ),
    (
        "POST",
        "/v1/models/{model}:batchEmbedContents",
        Endpoint::GeminiEmbed { batch: true },
    ),
];

/// The AI endpoint of a request, if its path is under `/v1/` or
/// `/v1beta/` (prefixes no tenant may take as its slug).
pub fn endpoint(method: &Method, path: &str) -> Option<Endpoint> {
    if !path.starts_with("/v1") {
        return None;
    }
    let served = ROUTES
        .iter()
        .find(|(verb, template, _)| method.as_str() == *verb && matches(template, path));
    if let Some((_, _, endpoint)) = served {
        return Some(*endpoint);
    }
    if super::gemini::model_path(path).is_some() || path.starts_with("/v1beta/") {
        Some(Endpoint::Unknown(Protocol::Gemini))
    } else {
        path.starts_with("/v1/")
            .then_some(Endpoint::Unknown(Protocol::OpenAi))
    }
}

/// Whether `path` is an instance of a route's `template`.
fn matches(template: &str, path: &str) -> bool {
    match template.split_once("{model}") {
        Some((head, tail)) => path
            .strip_prefix(head)
            .and_then(|rest| rest.strip_suffix(tail))
            .is_some_and(|model| !model.is_empty() && !model.contains('/')),
        None => template == path,
    }
}

/// The request body parsed as the endpoint's protocol says.
fn parse(
    endpoint: Endpoint,
    protocol: Protocol,
    path: &str,
    bytes: &[u8],
) -> Result<Generation, String> {
    let model = super::gemini::model_path(path).map(|path| path.model);
    match (endpoint, model) {
        (Endpoint::GeminiGenerate { stream }, Some(model)) => {
            Generation::parse_gemini(bytes, &model, stream)
        }
        (Endpoint::GeminiEmbed { batch }, Some(model)) => {
            super::embeddings::parse_gemini(bytes, &model, batch).map(Generation::Embed)
        }
        (Endpoint::OpenAiEmbeddings, _) => {
            super::embeddings::parse_openai(bytes).map(Generation::Embed)
        }
        (Endpoint::OpenAiCompletions, _) => {
            super::openai::parse_completion(bytes).map(Generation::OpenAi)
        }
        _ => Generation::parse(protocol, bytes),
    }
}

/// The request as the later stages need it.
pub(super) struct Asked<'a> {
    pub(super) caller: Caller,
    pub(super) request: Generation,
    /// The client's headers (protocol headers such as
    /// `anthropic-version` go on to the provider).
    pub(super) headers: http::HeaderMap,
    pub(super) request_id: &'a str,
    pub(super) path: &'a str,
    pub(super) user_agent: String,
    pub(super) started: Instant,
    pub(super) started_micros: i64,
    /// The request body, for the audit log when the channel captures.
    pub(super) body: Bytes,
    /// The prompt's tokens as the tokenizer counts them, once.
    pub(super) prompt_tokens: i64,
    /// How the completion cache applies, if it does.
    pub(super) cache: Option<super::cached::Plan>,
    /// Served by operator channels: priced at the global prices.
    pub(super) operator: bool,
}

impl Asked<'_> {
    /// Whose prices apply: the caller's group's, else its tenant's; the
    /// global prices on operator channels.
    pub(super) fn payer(&self) -> Payer<'_> {
        if self.operator {
            Payer {
                tenant_id: "",
                group_id: None,
            }
        } else {
            payer(&self.caller.principal)
        }
    }
}

impl Proxy {
    /// An AI request, with the edge's CORS policy for browsers around it:
    /// preflights answered here, without a key.
    pub(crate) async fn serve_ai(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let Some(cors) = &self.ai.cors else {
            return self
                .ai_endpoint(endpoint, request, remote, request_id)
                .await;
        };
        if crate::cors::is_preflight(request.method(), request.headers()) {
            metrics::counter!("edge_cors_preflights_total").increment(1);
            return cors.preflight(request.headers());
        }
        let origin = request.headers().get(header::ORIGIN).cloned();
        let mut response = self
            .ai_endpoint(endpoint, request, remote, request_id)
            .await;
        cors.decorate(origin.as_ref(), response.headers_mut());
        response
    }

    async fn ai_endpoint(
        &self,
        endpoint: Endpoint,
        request: Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let protocol = match endpoint {
            Endpoint::OpenAiChat | Endpoint::OpenAiEmbeddings | Endpoint::OpenAiCompletions => {
                Protocol::OpenAi
            }
            Endpoint::OpenAiResponses => Protocol::Responses,
            Endpoint::Models => models_protocol(&request),
            Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => Protocol::Anthropic,
            Endpoint::GeminiGenerate { .. }
            | Endpoint::GeminiCountTokens
            | Endpoint::GeminiEmbed { .. }
            | Endpoint::GeminiModels => Protocol::Gemini,
            Endpoint::Unknown(protocol) => protocol,
        };
        if let Endpoint::Unknown(_) = endpoint {
            let message = format!(
                "no AI endpoint {} {}",
                request.method(),
                request.uri().path()
            );
            return errors::response(protocol, Kind::NoSuchEndpoint, &message, request_id, None);
        }
        if let Some(full) = self.usage_spool_full(request_id) {
            return errors::from_halt(protocol, &full, request_id);
        }
        let caller = match self.ai_caller(&request, remote, request_id).await {
            Ok(caller) => caller,
            Err(halt) => return errors::from_halt(protocol, &halt, request_id),
        };
        match endpoint {
            Endpoint::Models | Endpoint::GeminiModels => self.models(protocol, &caller, request_id),
            Endpoint::AnthropicCountTokens | Endpoint::GeminiCountTokens => {
                self.count_tokens(protocol, request, request_id).await
            }
            _ => {
                self.generate(endpoint, protocol, request, caller, request_id)
                    .await
            }
        }
    }

    /// Stage 1: the key, wherever the SDK put it, of any tenant.
    async fn ai_caller(
        &self,
        request: &Request<Incoming>,
        remote: SocketAddr,
        request_id: &str,
    ) -> Result<Caller, crate::problem::Halt> {
        let Some(presented) = super::keys::presented(request.headers(), request.uri().query())
        else {
            return Err(crate::problem::halt(
                StatusCode::UNAUTHORIZED,
                "an API key is required (Authorization: Bearer, x-api-key or x-goog-api-key)",
                request_id,
            ));
        };
        let key_request = KeyRequest {
            headers: request.headers(),
            remote,
            tenant_slug: None,
            request_id,
        };
        let unused =
            || crate::problem::response(StatusCode::UNAUTHORIZED, "invalid API key", request_id);
        self.auth
            .authenticate_key(presented, &key_request, &unused)
            .await
    }

    /// `GET /v1/models`: exactly the models this key can reach through
    /// the protocol's channels, in that protocol's shape.
    fn models(&self, protocol: Protocol, caller: &Caller, request_id: &str) -> Response<EdgeBody> {
        let view = self.catalog.view();
        let models = Channels::models(&view, &asker(&caller.principal, request::PROVIDERS));
        let listed = match protocol {
            Protocol::Gemini => {
                let data: Vec<serde_json::Value> = models
                    .iter()
                    .map(|model| serde_json::json!({"name": format!("models/{model}"), "displayName": model,
                        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"]}))
                    .collect();
                serde_json::json!({"models": data})
            }
            Protocol::Anthropic => {
                let data: Vec<serde_json::Value> = models
                    .iter()
                    .map(|model| serde_json::json!({"type": "model", "id": model, "display_name": model, "created_at": "1970-01-01T00:00:00Z"}))
                    .collect();
                serde_json::json!({"data": data, "has_more": false,
                    "first_id": models.first(), "last_id": models.last()})
            }
            _ => {
                let data: Vec<serde_json::Value> = models
                    .iter()
                    .map(|model| serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": "gateway"}))
                    .collect();
                serde_json::json!({"object": "list", "data": data})
            }
        };
        errors::json(StatusCode::OK, &listed, request_id)
    }

    /// Anthropic's `count_tokens` and Gemini's `countTokens`, answered by
    /// the edge with its tokenizer: no provider call and nothing billed.
    async fn count_tokens(
        &self,
        protocol: Protocol,
        request: Request<Incoming>,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let model = super::gemini::model_path(request.uri().path()).map(|path| path.model);
        let bytes = match self
            .ai_body(protocol, request.into_body(), request_id)
            .await
        {
            Ok(bytes) => bytes,
            Err(answer) => return *answer,
        };
        // Counting needs no answer length: parse as a request with one.
        let mut body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(body) = body.as_object_mut() {
            body.insert("max_tokens".to_owned(), serde_json::Value::from(1));
        }
        let parsed = match (protocol, model) {
            (Protocol::Gemini, Some(model)) => Generation::parse_gemini(&bytes, &model, false),
            _ => Generation::parse(protocol, body.to_string().as_bytes()),
        };
        match parsed {
            Ok(parsed) if protocol == Protocol::Gemini => errors::json(
                StatusCode::OK,
                &serde_json::json!({"totalTokens": parsed.prompt_tokens()}),
                request_id,
            ),
            Ok(parsed) => errors::json(
                StatusCode::OK,
                &serde_json::json!({"input_tokens": parsed.prompt_tokens()}),
                request_id,
            ),
            Err(message) => {
                errors::response(protocol, Kind::BadRequest, &message, request_id, None)
            }
        }
    }

    /// A generation (chat completions, messages), stages 2 to 7.
    /// `gemini_stream`: a Gemini request's streaming, from its path.
    async fn generate(
        &self,
        endpoint: Endpoint,
        protocol: Protocol,
        request: Request<Incoming>,
        caller: Caller,
        request_id: &str,
    ) -> Response<EdgeBody> {
        let started = (Instant::now(), now_micros());
        let path = request.uri().path().to_owned();
        let user_agent = request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let (parts, body) = request.into_parts();
        let bytes = match self.ai_body(protocol, body, request_id).await {
            Ok(bytes) => bytes,
            Err(answer) => return *answer,
        };
        let parsed = parse(endpoint, protocol, &path, &bytes);
        let generation = match parsed {
            Ok(generation) => generation,
            Err(message) => {
                return errors::response(protocol, Kind::BadRequest, &message, request_id, None);
            }
        };
        let prompt_tokens = generation.prompt_tokens();
        let asked = Asked {
            caller,
            request: generation,
            headers: parts.headers,
            request_id,
            path: &path,
            user_agent,
            started: started.0,
            started_micros: started.1,
            body: bytes,
            prompt_tokens,
            cache: None,
            operator: false,
        };
        self.chat_parsed(asked).await
    }

    async fn chat_parsed(&self, mut asked: Asked<'_>) -> Response<EdgeBody> {
        let (protocol, request_id) = (asked.request.protocol(), asked.request_id);
        let view = self.catalog.view();
        let candidates = match self.ai.channels.candidates(
            &view,
            &asker(&asked.caller.principal, asked.request.providers()),
            asked.request.model(),
        ) {
            Ok(candidates) => candidates,
            Err(NoChannel::UnknownModel) => {
                let message = format!(
                    "The model `{}` does not exist or you do not have access to it.",
                    asked.request.model()
                );
                return errors::response(protocol, Kind::UnknownModel, &message, request_id, None);
            }
            Err(NoChannel::CoolingDown(wait)) => {
                let message = "every channel serving this model is cooling down after failures";
                return errors::response(
                    protocol,
                    Kind::Unavailable,
                    message,
                    request_id,
                    Some(wait),
                );
            }
        };
        asked.cache = self.cache_plan(&asked, &candidates);
        asked.operator = candidates
            .first()
            .is_some_and(|candidate| candidate.operator);
        let (admitted, max_tokens) = match self.ai_admit(&asked, &view).await {
            Ok(admitted) => admitted,
            Err(answer) => return *answer,
        };
        let exchange = exchange(&asked, admitted);
        if let Some(answer) = self.completion_cached(&asked).await {
            return self.cache_hit(&asked, &answer, exchange);
        }
        self.ai_attempts(&asked, &candidates, exchange, max_tokens)
            .await
    }

    /// Stage 2: the whole body, within the edge's limit.
    async fn ai_body(
        &self,
        protocol: Protocol,
        body: Incoming,
        request_id: &str,
    ) -> Result<Bytes, Box<Response<EdgeBody>>> {
        let limit = usize::try_from(self.config.max_request_body_bytes).unwrap_or(usize::MAX);
        let body = crate::lingering::Lingering::new(body);
        match http_body_util::Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(error) => {
                let too_large = error
                    .downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some();
                let (kind, message) = if too_large {
                    (
                        Kind::TooLarge,
                        format!("the request body is over the {limit}-byte limit"),
                    )
                } else {
                    (
                        Kind::BadRequest,
                        "the request body could not be read".to_owned(),
                    )
                };
                Err(Box::new(errors::response(
                    protocol, kind, &message, request_id, None,
                )))
            }
        }
    }

    /// Stage 4: the estimate reserved; on a refusal for money, once more
    /// with max tokens lowered to what the caller can still pay for.
    async fn ai_admit(
        &self,
        asked: &Asked<'_>,
        view: &gateway_catalog_client::CatalogView,
    ) -> Result<(Admitted, Option<i64>), Box<Response<EdgeBody>>> {
        let (protocol, request_id) = (asked.request.protocol(), asked.request_id);
        let principal = &asked.caller.principal;
        let prompt = asked.prompt_tokens;
        let asked_max = asked.request.max_tokens();
        let completion = asked_max.unwrap_or(self.config.ai_default_max_tokens);
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: 0,
        };
        let model = asked.request.model();
        let quote = money::quote(view.prices(), asked.payer(), model, &usage).map_err(|error| {
            let message = format!("the model cannot be billed: {error}");
            Box::new(errors::response(
                protocol,
                Kind::Forbidden,
                &message,
                request_id,
                None,
            ))
        })?;
        let estimate = Estimate {
            model: model.to_owned(),
            tokens: prompt.saturating_add(completion),
            cost_micros: quote.cost_micros,
            balance_owner: balance_owner(principal),
        };
        let refused = match self
            .admission
            .admit_estimate(&asked.caller, &estimate, request_id)
            .await
        {
            Ok(admitted) => return Ok((admitted, asked_max)),
            Err(refused) => refused,
        };
        let Some(budget) = refused.budget_micros else {
            return Err(Box::new(errors::from_halt(
                protocol,
                &refused.halt,
                request_id,
            )));
        };
        let affordable = money::affordable_completion(&quote, prompt, budget).min(completion);
        self.ai_admit_fitted(asked, view, estimate, (affordable, budget))
            .await
    }

    /// Refused for money: once more with max tokens lowered to the
    /// `affordable` completion the `budget` pays for, unless that is too
    /// short an answer to be worth sending.
    async fn ai_admit_fitted(
        &self,
        asked: &Asked<'_>,
        view: &gateway_catalog_client::CatalogView,
        mut estimate: Estimate,
        (affordable, budget): (i64, i64),
    ) -> Result<(Admitted, Option<i64>), Box<Response<EdgeBody>>> {
        let (protocol, request_id) = (asked.request.protocol(), asked.request_id);
        if affordable < self.config.ai_min_completion_tokens {
            let message = "the remaining budget does not cover even a short answer to this prompt";
            return Err(Box::new(errors::response(
                protocol,
                Kind::Budget,
                message,
                request_id,
                None,
            )));
        }
        let fitted = Usage {
            prompt_tokens: asked.prompt_tokens,
            completion_tokens: affordable,
            cached_tokens: 0,
        };
        let payer = asked.payer();
        estimate.tokens = asked.prompt_tokens.saturating_add(affordable);
        estimate.cost_micros = money::quote(view.prices(), payer, asked.request.model(), &fitted)
            .map_or(budget, |quote| quote.cost_micros);
        tracing::debug!(affordable, budget, "max tokens lowered to fit the budget");
        match self
            .admission
            .admit_estimate(&asked.caller, &estimate, request_id)
            .await
        {
            Ok(admitted) => Ok((admitted, Some(affordable))),
            Err(refused) => {
                let kind = if refused.budget_micros.is_some() {
                    Kind::Budget
                } else {
                    Kind::RateLimited
                };
                let detail = refused
                    .halt
                    .extensions()
                    .get::<crate::problem::Detail>()
                    .map_or_else(|| "refused".to_owned(), |detail| detail.0.clone());
                Err(Box::new(errors::response(
                    protocol, kind, &detail, request_id, None,
                )))
            }
        }
    }

    /// Stage 5: the candidates in order until one answers, failing over
    /// while nothing has reached the client.
    async fn ai_attempts(
        &self,
        asked: &Asked<'_>,
        candidates: &[Candidate<'_>],
        exchange: Exchange,
        max_tokens: Option<i64>,
    ) -> Response<EdgeBody> {
        let (protocol, request_id) = (asked.request.protocol(), asked.request_id);
        let attempts = candidates.len().min(self.config.ai_max_attempts.max(1));
        let mut last = (Kind::Upstream, "no channel answered".to_owned(), None);
        for (attempt, candidate) in candidates.iter().take(attempts).enumerate() {
            // A channel the request cannot be translated for is skipped,
            // not failed: it is the request, not the channel.
            let outgoing = match self.outgoing(asked, candidate, max_tokens) {
                Ok(outgoing) => outgoing,
                Err(unsupported) => {
                    last = (Kind::BadRequest, unsupported.0, None);
                    continue;
                }
            };
            let provider = outgoing.protocol;
            let sent = Instant::now();
            let outcome = self.ai_send(asked, candidate, outgoing).await;
            let failed = match &outcome {
                Ok(response) => {
                    response.status() == StatusCode::TOO_MANY_REQUESTS
                        || response.status().is_server_error()
                }
                Err(_) => true,
            };
            candidate.state.stats.record(failed, sent.elapsed());
            if !failed {
                self.ai.channels.succeeded(&candidate.channel.id);
                if let Ok(response) = outcome {
                    let attempt = u32::try_from(attempt + 1).unwrap_or(u32::MAX);
                    let answered = Answered {
                        candidate,
                        provider,
                        attempts: attempt,
                        max_tokens,
                    };
                    return self.ai_answer(asked, answered, response, exchange);
                }
            }
            last = self.ai_failed(candidate, outcome);
        }
        let (kind, message, retry_after) = last;
        let ended = Ended {
            status: kind.status().as_u16(),
            error: Some(message.clone()),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            ..Ended::default()
        };
        self.accounting.finish(exchange, ended);
        errors::response(protocol, kind, &message, request_id, retry_after)
    }

    /// A failed attempt: the channel cools down; what the client hears if
    /// no other channel answers.
    fn ai_failed(
        &self,
        candidate: &Candidate<'_>,
        outcome: Result<Response<Incoming>, Failure>,
    ) -> (Kind, String, Option<std::time::Duration>) {
        let channel = &candidate.channel.id;
        let (kind, message, retry_after) = match outcome {
            Ok(response) => {
                let retry_after = retry_after(response.headers());
                let status = response.status();
                let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                    Kind::RateLimited
                } else {
                    Kind::Upstream
                };
                (kind, format!("the provider answered {status}"), retry_after)
            }
            Err(Failure::ConnectTimeout(_) | Failure::ReadTimeout(_)) => (
                Kind::Timeout,
                "the provider did not answer in time".to_owned(),
                None,
            ),
            Err(Failure::Refused(refused)) => (Kind::Upstream, refused.to_string(), None),
            Err(Failure::Connect | Failure::Upstream) => (
                Kind::Upstream,
                "the provider could not be reached".to_owned(),
                None,
            ),
        };
        let cooldown = self.ai.channels.failed(channel, retry_after);
        tracing::warn!(channel_id = channel, %message, cooldown_secs = cooldown.as_secs(), "AI channel failed; cooling down");
        metrics::counter!("edge_ai_failovers_total", "channel" => channel.clone()).increment(1);
        (kind, message, retry_after)
    }

    /// The body for a channel: the client's, edited, for a channel of its
    /// protocol; else translated.
    fn outgoing(
        &self,
        asked: &Asked<'_>,
        candidate: &Candidate<'_>,
        max_tokens: Option<i64>,
    ) -> Result<Outgoing, Unsupported> {
        let provider = candidate.channel.provider();
        let target = request::Target {
            protocol: asked.request.protocol_on(provider),
            provider,
            model: candidate.upstream_model,
        };
        let default_max = self.config.ai_default_max_tokens;
        let body = asked.request.body_for(&target, max_tokens, default_max)?;
        Ok(Outgoing {
            body,
            protocol: target.protocol,
        })
    }

    /// One attempt's upstream request to a channel.
    async fn ai_send(
        &self,
        asked: &Asked<'_>,
        candidate: &Candidate<'_>,
        outgoing: Outgoing,
    ) -> Result<Response<Incoming>, Failure> {
        let uri = asked
            .request
            .uri_for(
                outgoing.protocol,
                &candidate.channel.base_url,
                candidate.upstream_model,
            )
            .map_err(|_| Failure::Upstream)?;
        let mut upstream = Request::new(crate::body::full(outgoing.body));
        *upstream.method_mut() = Method::POST;
        *upstream.uri_mut() = uri;
        let headers = upstream.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        request::upstream_headers(
            outgoing.protocol,
            &candidate.entry.secret,
            &asked.headers,
            headers,
        );
        if let Ok(value) = HeaderValue::from_str(asked.request_id) {
            headers.insert(crate::request_id::HEADER.clone(), value);
        }
        let timeouts = candidate.channel.timeouts.as_ref();
        let connect =
            crate::policy::positive(timeouts.and_then(|timeouts| timeouts.connect.as_ref()))
                .unwrap_or(std::time::Duration::from_millis(
                    self.config.upstream_connect_timeout_ms,
                ));
        let read = self.read_timeout(candidate.channel);
        self.forwarder.send(upstream, connect, read).await
    }

    /// The channel's read timeout: for the answer's head, and for every
    /// pause of its body.
    fn read_timeout(&self, channel: &gateway_proto::catalog::v1::Channel) -> std::time::Duration {
        let timeouts = channel.timeouts.as_ref();
        crate::policy::positive(timeouts.and_then(|timeouts| timeouts.read.as_ref())).unwrap_or(
            std::time::Duration::from_millis(self.config.upstream_read_timeout_ms),
        )
    }

    /// Stage 6: the provider's answer to the client, JSON or a stream.
    fn ai_answer(
        &self,
        asked: &Asked<'_>,
        answered: Answered<'_, '_>,
        response: Response<Incoming>,
        mut exchange: Exchange,
    ) -> Response<EdgeBody> {
        let channel = answered.candidate.channel;
        exchange.capture = self.channel_capture(channel);
        if exchange.capture.is_some() {
            exchange.request_headers = crate::headers::audit(&asked.headers);
        }
        let streamed = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|kind| kind.starts_with("text/event-stream"));
        let (mut parts, body) = response.into_parts();
        crate::headers::strip_hop_by_hop(&mut parts.headers);
        // A provider that stops sending mid-answer is cut after the read
        // timeout, as on the generic path.
        let idle = self.read_timeout(channel);
        let body =
            crate::body::Deadline::new(body.map_err(BoxError::from), None, idle).boxed_unsync();
        let mut billing = self.billing(asked, answered.candidate, streamed, answered.attempts);
        billing.audit = audit(exchange.capture, asked, &parts.headers);
        billing.fill = self.cache_fill(asked, &answered);
        super::cached::mark_miss(asked.cache.as_ref(), &mut parts.headers);
        let translated = answered.provider != asked.request.protocol();
        if streamed {
            let mut watch = self.watch(asked, &answered, exchange.capture);
            watch.guard = self.guard(asked, &answered, &exchange);
            watch.collector = billing
                .fill
                .as_ref()
                .and_then(|_| super::translate::Collector::new(answered.provider));
            parts.headers.remove(header::CONTENT_LENGTH);
            let status = parts.status.as_u16();
            let on_end =
                Box::new(move |end: StreamEnd| billing.settle_stream(exchange, status, end));
            return Response::from_parts(parts, Observed::new(body, watch, on_end).boxed_unsync());
        }
        // Passed through as it comes (or re-encoded once whole), kept up
        // to a bound to read its usage once it has ended.
        let keep = usize::try_from(self.config.ai_max_answer_bytes).unwrap_or(usize::MAX);
        let body = if translated {
            let ends = translate::Ends {
                provider: answered.provider,
                client: asked.request.protocol(),
                model: answered.candidate.upstream_model.to_owned(),
                request_id: asked.request_id.to_owned(),
                limit: keep,
                embeddings: asked.request.embedding_shape(),
            };
            // Gemini reports no usage for embeddings: the count in the
            // re-encoded answer is the edge's.
            billing.outcome.estimated =
                ends.embeddings.is_some() && ends.provider == Protocol::Gemini;
            reencoded(&mut parts, body, ends)
        } else {
            body
        };
        let status = parts.status.as_u16();
        let on_end = Box::new(move |seen: Seen| billing.settle_answer(exchange, status, seen));
        let body = crate::body::Observed::reporting(body, Some(keep), on_end);
        Response::from_parts(parts, body.boxed_unsync())
    }

    /// What a stream's reader needs: the provider's protocol for usage,
    /// the drain bound, capture, and a translator for another protocol.
    fn watch(
        &self,
        asked: &Asked<'_>,
        answered: &Answered<'_, '_>,
        capture: Option<usize>,
    ) -> Watch {
        let client = asked.request.protocol();
        let translated = answered.provider != client;
        let wants_usage = !asked.request.hides_usage_chunk();
        Watch {
            protocol: answered.provider,
            hide_usage: !translated && !wants_usage,
            drain: Drain {
                time: std::time::Duration::from_secs(self.config.ai_stream_drain_secs),
                bytes: self.config.ai_stream_drain_bytes,
            },
            capture,
            translator: translated.then(|| {
                let model = answered.candidate.upstream_model;
                Translator::new(answered.provider, client, model, wants_usage)
            }),
            guard: None,
            collector: None,
        }
    }

    /// The stream budget guard for a stream whose completion tokens can be
    /// priced: its allowance is what the reservation covers.
    fn guard(
        &self,
        asked: &Asked<'_>,
        answered: &Answered<'_, '_>,
        exchange: &Exchange,
    ) -> Option<Guard> {
        if !asked.request.guards_streams() {
            return None;
        }
        let view = self.catalog.view();
        let usage = Usage {
            prompt_tokens: 0,
            completion_tokens: 1_000_000,
            cached_tokens: 0,
        };
        let payer = asked.payer();
        let quote = money::quote(view.prices(), payer, asked.request.model(), &usage).ok()?;
        let principal = &asked.caller.principal;
        let check = quota::CheckRequest {
            request_id: asked.request_id.to_owned(),
            tenant_id: principal.tenant_id.clone(),
            scopes: exchange.admitted.scopes.clone(),
            model: asked.request.model().to_owned(),
            balance_owner: exchange.admitted.balance_owner.clone(),
            ..quota::CheckRequest::default()
        };
        let top_up = TopUp {
            quota: self.admission.quota.clone(),
            check,
            micros_per_token: quote.cost_micros as f64 / 1_000_000.0,
        };
        let allowance = answered
            .max_tokens
            .or(asked.request.max_tokens())
            .unwrap_or(self.config.ai_default_max_tokens);
        Some(Guard::new(asked.prompt_tokens, allowance, top_up))
    }
}

/// A whole answer re-encoded in the client's protocol: its head made to
/// match (a provider's error status as the client's protocol says it).
fn reencoded(parts: &mut http::response::Parts, body: EdgeBody, ends: translate::Ends) -> EdgeBody {
    let provider_status = parts.status;
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|kind| kind.contains("json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if provider_status.is_success() && !json {
        // Not an answer the edge can re-encode (a proxy's HTML page, say):
        // the client hears a bad gateway, never a 200 with an error in it.
        parts.status = errors::status(ends.client, Kind::Upstream);
        let message = "the provider's answer was not JSON";
        let error = errors::body(ends.client, Kind::Upstream, message, &ends.request_id);
        return crate::body::full(Bytes::from(error.to_string()));
    }
    if !provider_status.is_success() {
        let kind = translate::error_kind(provider_status);
        parts.status = errors::status(ends.client, kind);
    }
    translate::translated(body, provider_status, ends)
}

/// The attempt that answered: its channel, the protocol the channel
/// speaks, and how many attempts it took.
pub(super) struct Answered<'c, 'v> {
    pub(super) candidate: &'c Candidate<'v>,
    pub(super) provider: Protocol,
    pub(super) attempts: u32,
    /// The max tokens sent (lowered to the budget), if any.
    pub(super) max_tokens: Option<i64>,
}

/// One attempt's body, in the protocol of the channel it goes to.
struct Outgoing {
    body: Bytes,
    protocol: Protocol,
}

impl Proxy {
    /// The channel's body capture for the audit log, if it asks for one.
    fn channel_capture(&self, channel: &gateway_proto::catalog::v1::Channel) -> Option<usize> {
        let capture = channel
            .body_capture
            .as_ref()
            .filter(|capture| capture.enabled)?;
        Some(
            usize::try_from(capture.max_bytes)
                .ok()
                .filter(|bytes| *bytes > 0)
                .unwrap_or(self.config.default_capture_bytes),
        )
    }

    fn billing(
        &self,
        asked: &Asked<'_>,
        candidate: &Candidate<'_>,
        streamed: bool,
        attempts: u32,
    ) -> Billing {
        let mut billing = self.unsent_billing(asked, streamed);
        let outcome = &mut billing.outcome;
        outcome.upstream_model = candidate.upstream_model.to_owned();
        outcome.channel_id = candidate.channel.id.clone();
        outcome.provider = provider_name(candidate.channel.provider());
        billing.attempts = attempts;
        billing
    }

    /// The billing of a request no channel has seen yet (a cache hit's,
    /// or the start of one to a channel).
    pub(super) fn unsent_billing(&self, asked: &Asked<'_>, streamed: bool) -> Billing {
        Billing {
            accounting: self.accounting.clone(),
            prices: self.catalog.view(),
            payer_tenant: asked.payer().tenant_id.to_owned(),
            payer_group: asked.payer().group_id.map(str::to_owned),
            outcome: AiOutcome {
                model: asked.request.model().to_owned(),
                stream: streamed,
                ..AiOutcome::default()
            },
            prompt_estimate: asked.prompt_tokens,
            protocol: asked.request.protocol(),
            attempts: 0,
            bytes_in: asked.body.len() as u64,
            audit: None,
            note: None,
            fill: None,
            cost_percent: 100,
        }
    }
}

fn audit(cap: Option<usize>, asked: &Asked<'_>, response: &http::HeaderMap) -> Option<Audit> {
    Some(Audit {
        cap: cap?,
        request_body: asked.body.clone(),
        response_headers: crate::headers::audit(response),
        response_content_type: response
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    })
}

fn provider_name(provider: pb::Provider) -> &'static str {
    match provider {
        pb::Provider::Openai => "openai",
        pb::Provider::OpenaiCompatible => "openai_compatible",
        pb::Provider::Anthropic => "anthropic",
        pb::Provider::Gemini => "gemini",
        pb::Provider::Unspecified => "",
    }
}

fn asker<'a>(principal: &'a id::Principal, providers: &'static [pb::Provider]) -> Asker<'a> {
    Asker {
        tenant_id: &principal.tenant_id,
        groups: &principal.groups,
        superadmin: principal.role() == id::Role::Superadmin,
        allowed_models: &principal.allowed_models,
        providers,
    }
}

/// Prices follow the caller's group: the key's, else the user's first.
fn payer(principal: &id::Principal) -> Payer<'_> {
    Payer {
        tenant_id: &principal.tenant_id,
        group_id: principal.groups.first().map(|group| group.id.as_str()),
    }
}

/// A personal key (no group) pays from its user's balance; a group key is
/// limited by the group's rules instead.
fn balance_owner(principal: &id::Principal) -> Option<quota::BalanceOwner> {
    (principal.key_group_id.is_none() && !principal.user_id.is_empty()).then(|| {
        quota::BalanceOwner {
            kind: quota::BalanceOwnerKind::User.into(),
            id: principal.user_id.clone(),
        }
    })
}

fn exchange(asked: &Asked<'_>, admitted: Admitted) -> Exchange {
    let principal = asked.caller.principal.clone();
    Exchange {
        request_id: asked.request_id.to_owned(),
        trace_id: String::new(),
        started: asked.started,
        started_micros: asked.started_micros,
        principal,
        api_id: String::new(),
        route: String::new(),
        method: "POST".to_owned(),
        path: asked.path.to_owned(),
        remote_ip: asked.caller.remote_ip.clone(),
        user_agent: asked.user_agent.clone(),
        admitted,
        capture: None,
        request_headers: Vec::new(),
        request_content_type: "application/json".to_owned(),
    }
}

/// `GET /v1/models` is every SDK's: Anthropic's says `anthropic-version`,
/// Google's (which lists at `/v1/models` too) sends its `x-goog-*`
/// headers or `?key=`; the rest is OpenAI's.
fn models_protocol(request: &Request<Incoming>) -> Protocol {
    let headers = request.headers();
    if headers.contains_key("anthropic-version") {
        Protocol::Anthropic
    } else if headers.contains_key("x-goog-api-key")
        || headers.contains_key("x-goog-api-client")
        || request
            .uri()
            .query()
            .is_some_and(|query| query.split('&').any(|pair| pair.starts_with("key=")))
    {
        Protocol::Gemini
    } else {
        Protocol::OpenAi
    }
}

fn retry_after(headers: &http::HeaderMap) -> Option<std::time::Duration> {
    let seconds = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| std::time::Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Never called: fails to compile if the AI path's future stops being
/// `Send` (rustc would otherwise report it far away, at the server loop).
#[allow(dead_code)]
fn send_check(proxy: &Proxy, request: Request<Incoming>, remote: SocketAddr) {
    fn is_send<T: Send>(_: T) {}
    is_send(proxy.serve_ai(Endpoint::OpenAiChat, request, remote, ""));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_translated_answer_that_is_not_json_is_a_bad_gateway() {
        let (mut parts, _) = Response::new(()).into_parts();
        parts
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let ends = translate::Ends {
            provider: Protocol::Anthropic,
            client: Protocol::OpenAi,
            model: "m".to_owned(),
            request_id: "r-1".to_owned(),
            limit: 1024,
            embeddings: None,
        };
        let page = crate::body::full(Bytes::from_static(b"<html>maintenance</html>"));
        let body = reencoded(&mut parts, page, ends);
        assert_eq!(parts.status, StatusCode::BAD_GATEWAY);
        assert_eq!(parts.headers[header::CONTENT_TYPE], "application/json");
        let bytes = body
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert_eq!(
            error["error"]["message"],
            "the provider's answer was not JSON"
        );
    }

    #[test]
    fn ai_paths_are_recognised_and_others_left_alone() {
        assert_eq!(
            endpoint(&Method::POST, "/v1/chat/completions"),
            Some(Endpoint::OpenAiChat)
        );
        assert_eq!(endpoint(&Method::GET, "/v1/models"), Some(Endpoint::Models));
        assert_eq!(
            endpoint(&Method::GET, "/v1/nothing"),
            Some(Endpoint::Unknown(Protocol::OpenAi))
        );
        assert_eq!(
            endpoint(&Method::GET, "/v1beta/models"),
            Some(Endpoint::GeminiModels)
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/models/gemini-x:streamGenerateContent"),
            Some(Endpoint::GeminiGenerate { stream: true })
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1beta/models/gemini-x:embedContent"),
            Some(Endpoint::GeminiEmbed { batch: false })
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1beta/models/e:batchEmbedContents"),
            Some(Endpoint::GeminiEmbed { batch: true })
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1beta/models/gemini-x:predict"),
            Some(Endpoint::Unknown(Protocol::Gemini))
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/embeddings"),
            Some(Endpoint::OpenAiEmbeddings)
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/completions"),
            Some(Endpoint::OpenAiCompletions)
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/messages/count_tokens"),
            Some(Endpoint::AnthropicCountTokens)
        );
        assert_eq!(endpoint(&Method::GET, "/acme/echo/v1"), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(
            retry_after(&headers),
            Some(std::time::Duration::from_secs(2))
        );
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
