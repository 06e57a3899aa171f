//! RFC 9457 problem details: the body of every error the edge itself
//! returns, so clients get one machine-readable shape.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};

use crate::body::EdgeBody;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// Marks a response the edge made itself (not the upstream's), for the
/// plugins' error hook.
#[derive(Debug, Clone, Copy)]
pub struct EdgeAnswer;

/// The detail of a problem the edge answered, kept on the response so a
/// protocol with its own error shape (the AI endpoints) can say the same.
#[derive(Debug, Clone)]
pub struct Detail(pub String);

/// A problem details object (<https://www.rfc-editor.org/rfc/rfc9457>).
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see status".
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// This occurrence (RFC 9457 3.1.5): a URN of the request id, which
    /// logs and usage records carry too.
    pub instance: String,
    /// The request id, also sent as `X-Request-ID`.
    pub request_id: String,
}

/// `urn:gateway:request:<id>`, the id percent-encoded where a URN needs it.
fn instance(request_id: &str) -> String {
    let mut urn = String::with_capacity(20 + request_id.len());
    urn.push_str("urn:gateway:request:");
    for byte in request_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            urn.push(char::from(byte));
        } else {
            urn.push_str(&format!("%{byte:02X}"));
        }
    }
    urn
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>, request_id: &str) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            instance: instance(request_id),
            request_id: request_id.to_owned(),
        }
    }

    /// The problem as an HTTP/1.1 response, for errors answered below
    /// hyper (a request head it could not parse).
    pub fn to_http1_bytes(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let reason = StatusCode::from_u16(self.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Error");
        let mut bytes = format!(
            "HTTP/1.1 {} {reason}\r\ncontent-type: {CONTENT_TYPE}\r\ncontent-length: {}\r\nx-request-id: {}\r\nconnection: close\r\n\r\n",
            self.status,
            body.len(),
            self.request_id
        )
        .into_bytes();
        bytes.extend_from_slice(&body);
        bytes
    }

    /// As [`Self::into_response`], boxed as the edge's body type and
    /// marked as the edge's own answer.
    pub fn into_edge_response(self) -> Response<EdgeBody> {
        let detail = Detail(self.detail.clone());
        let mut response = self
            .into_response()
            .map(|body| body.map_err(|never| match never {}).boxed_unsync());
        response.extensions_mut().insert(EdgeAnswer);
        response.extensions_mut().insert(detail);
        response
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Serialising plain strings and integers cannot fail; fall back to a
        // fixed body rather than panic if it ever did.
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| {
            br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#.to_vec()
        });
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        response
    }
}

/// A stage's answer that ends the request early (boxed: responses are
/// large, and the happy path should not pay for moving them).
pub type Halt = Box<Response<EdgeBody>>;

/// A problem response as a [`Halt`].
pub fn halt(status: StatusCode, detail: impl Into<String>, request_id: &str) -> Halt {
    Box::new(response(status, detail, request_id))
}

/// A problem response in one call: the form most stages use.
pub fn response(
    status: StatusCode,
    detail: impl Into<String>,
    request_id: &str,
) -> Response<EdgeBody> {
    Problem::new(status, detail, request_id).into_edge_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn problem_renders_as_problem_json() {
        let response = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "5 requests per minute",
            "req-1",
        )
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Too Many Requests",
                "status": 429,
                "detail": "5 requests per minute",
                "instance": "urn:gateway:request:req-1",
                "request_id": "req-1",
            })
        );
    }
}
