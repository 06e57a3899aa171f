//! An API's CORS policy, compiled. The edge answers preflights itself,
//! without a key and without the upstream, and adds the CORS headers to
//! actual responses; a disallowed origin gets no CORS headers at all.

use gateway_proto::catalog::v1 as pb;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};

use crate::body::EdgeBody;

const DEFAULT_METHODS: &str = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";

#[derive(Debug, Clone)]
pub struct Cors {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<Method>,
    headers: Vec<String>,
    expose: Option<HeaderValue>,
    credentials: bool,
    max_age: Option<u64>,
}

/// A preflight: OPTIONS with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// `*`, or a browser origin: `http(s)://host[:port]` with nothing after.
pub fn is_origin(value: &str) -> bool {
    if value == "*" {
        return true;
    }
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && !rest.chars().any(char::is_whitespace)
        && value.parse::<http::Uri>().is_ok()
}

fn joined(values: &[String]) -> Option<HeaderValue> {
    (!values.is_empty())
        .then(|| HeaderValue::from_str(&values.join(", ")).ok())
        .flatten()
}

impl Cors {
    pub fn compile(policy: Option<&pb::CorsPolicy>) -> Option<Self> {
        let policy = policy.filter(|policy| policy.enabled)?;
        Some(Self {
            any_origin: policy.allowed_origins.iter().any(|origin| origin == "*"),
            origins: policy.allowed_origins.clone(),
            methods: policy
                .allowed_methods
                .iter()
                .filter_map(|method| Method::from_bytes(method.as_bytes()).ok())
                .collect(),
            headers: policy
                .allowed_headers
                .iter()
                .map(|name| name.to_ascii_lowercase())
                .collect(),
            expose: joined(&policy.expose_headers),
            credentials: policy.allow_credentials,
            max_age: policy
                .max_age
                .as_ref()
                .and_then(|age| u64::try_from(age.seconds).ok()),
        })
    }

    /// The AI endpoints' policy, from the edge's configuration: the
    /// request ids and rate-limit headers SDKs read are exposed.
    pub fn for_ai(origins: &[String], max_age_secs: u64) -> Option<Self> {
        Self::compile(Some(&pb::CorsPolicy {
            enabled: !origins.is_empty(),
            allowed_origins: origins.to_vec(),
            allowed_methods: vec!["GET".to_owned(), "POST".to_owned()],
            allowed_headers: Vec::new(),
            expose_headers: ["x-request-id", "retry-after", "request-id"]
                .map(str::to_owned)
                .to_vec(),
            allow_credentials: false,
            max_age: Some(prost_types::Duration {
                seconds: i64::try_from(max_age_secs).unwrap_or(i64::MAX),
                nanos: 0,
            }),
        }))
    }

    fn allows_origin(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|allowed| allowed == origin)
    }

    /// `Access-Control-Allow-Origin`: `*` only for any origin without
    /// credentials, else the origin itself.
    fn allow_origin(&self, origin: &HeaderValue, headers: &mut HeaderMap) {
        let value = if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
    }

    /// The edge's answer to a preflight: 204, with the CORS headers only
    /// when origin, method and headers are all allowed.
    pub fn preflight(&self, request: &HeaderMap) -> Response<EdgeBody> {
        let mut response =
            Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *response.status_mut() = StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = request.get(header::ORIGIN) else {
            return response;
        };
        let method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|value| Method::from_bytes(value.as_bytes()).ok());
        let asked: Vec<String> = request
            .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        let method_ok =
            method.is_some_and(|method| self.methods.is_empty() || self.methods.contains(&method));
        let headers_ok =
            self.headers.is_empty() || asked.iter().all(|name| self.headers.contains(name));
        let origin_ok = origin
            .to_str()
            .is_ok_and(|origin| self.allows_origin(origin));
        if !(origin_ok && method_ok && headers_ok) {
            return response;
        }
        headers.remove(header::VARY);
        self.allow_origin(origin, headers);
        let methods = if self.methods.is_empty() {
            HeaderValue::from_static(DEFAULT_METHODS)
        } else {
            joined(
                &self
                    .methods
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            )
            .unwrap_or(HeaderValue::from_static(DEFAULT_METHODS))
        };
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        // No list configured: what the browser asked for is allowed.
        let allowed = if self.headers.is_empty() {
            &asked
        } else {
            &self.headers
        };
        if let Some(value) = joined(allowed) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        if let Some(age) = self.max_age {
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
        response
    }

    /// Adds the CORS headers to an actual response for an allowed origin.
    pub fn decorate(&self, origin: Option<&HeaderValue>, response: &mut HeaderMap) {
        response.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin.filter(|origin| {
            origin
                .to_str()
                .is_ok_and(|origin| self.allows_origin(origin))
        }) else {
            return;
        };
        response.remove(header::VARY);
        self.allow_origin(origin, response);
        if let Some(expose) = &self.expose {
            response.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: &[&str], credentials: bool) -> Cors {
        Cors::compile(Some(&pb::CorsPolicy {
            enabled: true,
            allowed_origins: origins.iter().map(|origin| (*origin).to_owned()).collect(),
            allowed_methods: vec!["GET".to_owned(), "POST".to_owned()],
            allowed_headers: vec!["Content-Type".to_owned(), "X-API-Key".to_owned()],
            expose_headers: vec!["X-Request-ID".to_owned()],
            allow_credentials: credentials,
            max_age: Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            }),
        }))
        .unwrap()
    }

    fn preflight(origin: &str, method: &str, headers: &str) -> HeaderMap {
        let mut request = HeaderMap::new();
        request.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        request.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_str(method).unwrap(),
        );
        request.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_str(headers).unwrap(),
        );
        request
    }

    #[test]
    fn origins_are_told_from_urls() {
        for origin in ["*", "https://app.example", "http://localhost:5173"] {
            assert!(is_origin(origin), "{origin}");
        }
        for bad in [
            "app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://user@app.example",
            "ftp://app.example",
            "https://app example",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn the_ai_policy_allows_what_sdks_send_and_exposes_request_ids() {
        assert!(Cors::for_ai(&[], 600).is_none(), "no origins: no CORS");
        let cors = Cors::for_ai(&["https://chat.example".to_owned()], 600).unwrap();
        let asked = preflight(
            "https://chat.example",
            "POST",
            "authorization, content-type, x-stainless-os",
        );
        let answer = cors.preflight(&asked);
        let headers = answer.headers();
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://chat.example"
        );
        assert_eq!(
            headers[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "authorization, content-type, x-stainless-os"
        );
        assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
        let mut response = HeaderMap::new();
        cors.decorate(asked.get(header::ORIGIN), &mut response);
        assert!(
            response[header::ACCESS_CONTROL_EXPOSE_HEADERS]
                .to_str()
                .unwrap()
                .contains("x-request-id")
        );
    }

    #[test]
    fn an_allowed_preflight_gets_every_cors_header() {
        let answer = cors(&["https://app.example"], true).preflight(&preflight(
            "https://app.example",
            "POST",
            "content-type, x-api-key",
        ));
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let headers = answer.headers();
        assert_eq!(
            headers["access-control-allow-origin"],
            "https://app.example"
        );
        assert_eq!(headers["access-control-allow-credentials"], "true");
        assert_eq!(headers["access-control-allow-methods"], "GET, POST");
        assert_eq!(
            headers["access-control-allow-headers"],
            "content-type, x-api-key"
        );
        assert_eq!(headers["access-control-max-age"], "600");
        assert_eq!(headers["vary"], "Origin");
    }

    #[test]
    fn a_disallowed_origin_method_or_header_gets_none() {
        let policy = cors(&["https://app.example"], false);
        for request in [
            preflight("https://evil.example", "POST", "content-type"),
            preflight("https://app.example", "DELETE", "content-type"),
            preflight("https://app.example", "POST", "x-secret"),
        ] {
            let answer = policy.preflight(&request);
            assert!(
                answer
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none()
            );
        }
    }

    #[test]
    fn any_origin_is_a_star_only_without_credentials() {
        let mut response = HeaderMap::new();
        let origin = HeaderValue::from_static("https://x.example");
        cors(&["*"], false).decorate(Some(&origin), &mut response);
        assert_eq!(response["access-control-allow-origin"], "*");
        assert_eq!(response["access-control-expose-headers"], "X-Request-ID");
        let mut response = HeaderMap::new();
        cors(&["*"], true).decorate(Some(&origin), &mut response);
        assert_eq!(response["access-control-allow-origin"], "https://x.example");
        let mut response = HeaderMap::new();
        cors(&["https://app.example"], false).decorate(Some(&origin), &mut response);
        assert!(response.get("access-control-allow-origin").is_none());
        assert_eq!(response["vary"], "Origin");
    }
}
