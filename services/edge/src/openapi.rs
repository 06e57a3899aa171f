//! `GET /openapi.json`: the OpenAPI 3.1 document of what the edge serves
//! (kept in the repository as `services/edge/openapi.json`), answered
//! without a key so SDK generators and API explorers can read it. Tests
//! hold it to the router: every route the edge serves is in it, and
//! nothing else.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::body::EdgeBody;

/// Where the edge serves the document.
pub const PATH: &str = "/openapi.json";

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The methods the generic path `/{tenant}/{api}/{path}` is documented
/// with (it forwards any method to the tenant's upstream).
pub const GENERIC_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The document path of the generic proxy.
pub const GENERIC_PATH: &str = "/{tenant}/{api}/{path}";

/// The answer to `GET` or `HEAD /openapi.json`, `None` for any other
/// request.
pub fn answer(method: &Method, path: &str) -> Option<Response<EdgeBody>> {
    if path != PATH || !(method == Method::GET || method == Method::HEAD) {
        return None;
    }
    let body = if method == Method::HEAD {
        crate::body::empty()
    } else {
        crate::body::full(Bytes::from_static(DOCUMENT.as_bytes()))
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Some(response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, path)` of every operation the document describes.
    fn documented() -> BTreeSet<(String, String)> {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap_or_default();
        let mut operations = BTreeSet::new();
        let paths = document.get("paths").and_then(serde_json::Value::as_object);
        for (path, item) in paths.into_iter().flatten() {
            let methods = item.as_object().into_iter().flatten();
            for (method, _) in methods.filter(|(key, _)| is_method(key)) {
                operations.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        operations
    }

    fn is_method(key: &str) -> bool {
        [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ]
        .contains(&key)
    }

    /// `(METHOD, path)` of every route the edge serves.
    fn served() -> BTreeSet<(String, String)> {
        let ai = crate::ai::serve::ROUTES
            .iter()
            .map(|(method, path, _)| ((*method).to_owned(), (*path).to_owned()));
        let generic = GENERIC_METHODS
            .iter()
            .map(|method| ((*method).to_owned(), GENERIC_PATH.to_owned()));
        let own = [("GET".to_owned(), PATH.to_owned())];
        ai.chain(generic).chain(own).collect()
    }

    #[test]
    fn the_document_is_openapi_3_1() {
        let document: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(document["openapi"], "3.1.0");
        assert!(document["components"]["securitySchemes"].is_object());
    }

    #[test]
    fn every_served_route_is_documented_and_nothing_else() {
        let (documented, served) = (documented(), served());
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "served but not in openapi.json: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(
            extra.is_empty(),
            "in openapi.json but not served: {extra:?}"
        );
    }

    #[test]
    fn every_ai_route_reaches_its_endpoint() {
        for (method, template, endpoint) in crate::ai::serve::ROUTES {
            let path = template.replace("{model}", "gemini-test");
            let method = Method::from_bytes(method.as_bytes()).unwrap_or_default();
            assert_eq!(
                crate::ai::serve::endpoint(&method, &path),
                Some(endpoint),
                "{path}"
            );
        }
    }

    #[test]
    fn only_get_and_head_of_the_path_are_answered() {
        assert!(answer(&Method::GET, PATH).is_some());
        assert!(answer(&Method::HEAD, PATH).is_some());
        assert!(answer(&Method::POST, PATH).is_none());
        assert!(answer(&Method::GET, "/openapi.yaml").is_none());
    }
}
