//! Errors on the AI endpoints, in each protocol's own body and status, so
//! the official SDKs raise their own exception classes: OpenAI's
//! `{"error": {"message", "type", "code"}}`, Anthropic's `{"type": "error",
//! "error": {"type", "message"}}`, Gemini's `{"error": {"code", "message",
//! "status"}}`. The request id is in the body and in `X-Request-ID`.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::usage::Protocol;
use crate::body::EdgeBody;

/// Why a request is refused, independent of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthenticated,
    Forbidden,
    /// No reachable channel serves the model.
    UnknownModel,
    /// A path under an AI prefix that no endpoint serves.
    NoSuchEndpoint,
    TooLarge,
    RateLimited,
    /// A spend limit or the balance cannot pay for the request.
    Budget,
    Upstream,
    Unavailable,
    Timeout,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::UnknownModel | Self::NoSuchEndpoint => StatusCode::NOT_FOUND,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Budget => StatusCode::PAYMENT_REQUIRED,
            Self::Upstream => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// OpenAI's `(type, code)`.
    fn openai(self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest | Self::TooLarge => ("invalid_request_error", "invalid_request"),
            Self::Unauthenticated => ("authentication_error", "invalid_api_key"),
            Self::Forbidden => ("permission_error", "permission_denied"),
            Self::UnknownModel => ("invalid_request_error", "model_not_found"),
            Self::NoSuchEndpoint => ("invalid_request_error", "unknown_url"),
            Self::RateLimited => ("rate_limit_error", "rate_limit_exceeded"),
            Self::Budget => ("insufficient_quota", "insufficient_quota"),
            Self::Upstream | Self::Unavailable | Self::Timeout => ("api_error", "upstream_error"),
        }
    }

    /// Anthropic's error `type`.
    fn anthropic(self) -> &'static str {
        match self {
            Self::BadRequest => "invalid_request_error",
            Self::Unauthenticated => "authentication_error",
            Self::Forbidden | Self::Budget => "permission_error",
            Self::UnknownModel | Self::NoSuchEndpoint => "not_found_error",
            Self::TooLarge => "request_too_large",
            Self::RateLimited => "rate_limit_error",
            Self::Unavailable => "overloaded_error",
            Self::Upstream | Self::Timeout => "api_error",
        }
    }

    /// Gemini's (Google API) `status`.
    fn gemini(self) -> &'static str {
        match self {
            Self::BadRequest | Self::TooLarge => "INVALID_ARGUMENT",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::Forbidden => "PERMISSION_DENIED",
            Self::UnknownModel | Self::NoSuchEndpoint => "NOT_FOUND",
            Self::RateLimited | Self::Budget => "RESOURCE_EXHAUSTED",
            Self::Upstream => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::Timeout => "DEADLINE_EXCEEDED",
        }
    }
}

/// The status a protocol uses for `kind`: Gemini has no 402 and answers
/// budget refusals 429 RESOURCE_EXHAUSTED; Anthropic's permission errors
/// are 403.
pub fn status(protocol: Protocol, kind: Kind) -> StatusCode {
    match (protocol, kind) {
        (Protocol::Gemini, Kind::Budget) => StatusCode::TOO_MANY_REQUESTS,
        (Protocol::Anthropic, Kind::Budget) => StatusCode::FORBIDDEN,
        _ => kind.status(),
    }
}

/// The body of an error in `protocol`.
pub fn body(protocol: Protocol, kind: Kind, message: &str, request_id: &str) -> serde_json::Value {
    match protocol {
        Protocol::OpenAi | Protocol::Responses => {
            let (kind, code) = kind.openai();
            serde_json::json!({
                "error": {"message": message, "type": kind, "param": null, "code": code},
                "request_id": request_id,
            })
        }
        Protocol::Anthropic => serde_json::json!({
            "type": "error",
            "error": {"type": kind.anthropic(), "message": message},
            "request_id": request_id,
        }),
        Protocol::Gemini => serde_json::json!({
            "error": {
                "code": status(protocol, kind).as_u16(),
                "message": message,
                "status": kind.gemini(),
                "details": [{"@type": "type.googleapis.com/google.rpc.RequestInfo", "requestId": request_id}],
            },
        }),
    }
}

/// The whole answer, with `Retry-After` when waiting helps.
pub fn response(
    protocol: Protocol,
    kind: Kind,
    message: &str,
    request_id: &str,
    retry_after: Option<Duration>,
) -> Response<EdgeBody> {
    let mut response = json(
        status(protocol, kind),
        &body(protocol, kind, message, request_id),
        request_id,
    );
    let headers = response.headers_mut();
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// A JSON answer with the request id, the shape of every answer the AI
/// endpoints make themselves.
pub fn json(status: StatusCode, value: &serde_json::Value, request_id: &str) -> Response<EdgeBody> {
    let mut response = Response::new(crate::body::full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(crate::request_id::HEADER.clone(), value);
    }
    response
}

/// A stage's problem+json refusal (key, quota, body limit) said in the
/// protocol's own shape, keeping its status class, detail and rate-limit
/// headers.
pub fn from_halt(
    protocol: Protocol,
    halt: &Response<EdgeBody>,
    request_id: &str,
) -> Response<EdgeBody> {
    let kind = match halt.status() {
        StatusCode::UNAUTHORIZED => Kind::Unauthenticated,
        StatusCode::FORBIDDEN => Kind::Forbidden,
        StatusCode::NOT_FOUND => Kind::UnknownModel,
        StatusCode::PAYLOAD_TOO_LARGE => Kind::TooLarge,
        StatusCode::TOO_MANY_REQUESTS => Kind::RateLimited,
        StatusCode::PAYMENT_REQUIRED => Kind::Budget,
        StatusCode::SERVICE_UNAVAILABLE => Kind::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => Kind::Timeout,
        status if status.is_server_error() => Kind::Upstream,
        _ => Kind::BadRequest,
    };
    let detail = halt
        .extensions()
        .get::<crate::problem::Detail>()
        .map_or("refused", |detail| detail.0.as_str());
    let mut response = response(protocol, kind, detail, request_id, None);
    for (name, value) in halt.headers() {
        let name_str = name.as_str();
        if name == header::RETRY_AFTER
            || name_str.starts_with("ratelimit")
            || name_str.starts_with("x-ratelimit")
        {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_gets_its_own_shape() {
        let openai = body(Protocol::OpenAi, Kind::UnknownModel, "no such model", "r1");
        assert_eq!(openai["error"]["code"], "model_not_found");
        assert_eq!(openai["error"]["type"], "invalid_request_error");
        let anthropic = body(Protocol::Anthropic, Kind::RateLimited, "slow down", "r1");
        assert_eq!(anthropic["type"], "error");
        assert_eq!(anthropic["error"]["type"], "rate_limit_error");
        let gemini = body(Protocol::Gemini, Kind::Unauthenticated, "who", "r1");
        assert_eq!(gemini["error"]["status"], "UNAUTHENTICATED");
        assert_eq!(gemini["error"]["code"], 401);
    }

    #[test]
    fn budget_refusals_use_each_protocols_status() {
        let status = |protocol| response(protocol, Kind::Budget, "spent", "r", None).status();
        assert_eq!(status(Protocol::OpenAi), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(status(Protocol::Anthropic), StatusCode::FORBIDDEN);
        assert_eq!(status(Protocol::Gemini), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn a_stages_problem_keeps_its_status_detail_and_retry_after() {
        let mut halt = crate::problem::halt(StatusCode::TOO_MANY_REQUESTS, "5 per minute", "r");
        halt.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(7));
        let answer = from_halt(Protocol::Anthropic, &halt, "r");
        assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(answer.headers()[header::RETRY_AFTER], "7");
        let unknown = from_halt(
            Protocol::OpenAi,
            &crate::problem::halt(StatusCode::UNAUTHORIZED, "invalid API key", "r"),
            "r",
        );
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn rate_limits_say_when_to_retry() {
        let answer = response(
            Protocol::OpenAi,
            Kind::RateLimited,
            "slow down",
            "r-7",
            Some(Duration::from_millis(1500)),
        );
        assert_eq!(answer.headers()[header::RETRY_AFTER], "2");
        assert_eq!(answer.headers()["x-request-id"], "r-7");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
    }
}
