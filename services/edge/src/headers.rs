//! Header hygiene between client and upstream: hop-by-hop headers go, the
//! caller's credentials go, forwarding headers and the trace context are
//! set, and the API's upstream credential is injected.

use gateway_catalog_client::ApiEntry;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::request_id;

// Static names: looking up or inserting by a `&str` parses the name on
// every request, and allocates one that is not a standard header.
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static X_CLIENT_ID: HeaderName = HeaderName::from_static("x-client-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Headers that describe one connection, not the message (RFC 9110 7.6.1).
fn hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Headers never written to the audit log.
const SECRET: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "cookie",
    "set-cookie",
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The names a Connection header lists go too. Removed by `&str`: a
    // name parsed into a `HeaderName` ("keep-alive" from every nginx
    // answer) would be allocated.
    let connection: Vec<HeaderValue> = headers
        .get_all(header::CONNECTION)
        .iter()
        .cloned()
        .collect();
    for value in &connection {
        for name in value.to_str().unwrap_or_default().split(',') {
            headers.remove(name.trim());
        }
    }
    // One pass over the few names present, rather than a hashed lookup
    // for each of the nine, which are usually absent.
    let hop_by_hop = hop_by_hop();
    if headers.keys().any(|name| hop_by_hop.contains(&name)) {
        for name in hop_by_hop {
            headers.remove(name);
        }
    }
}

/// Headers as the audit log keeps them: without credentials.
pub fn audit(headers: &HeaderMap) -> Vec<gateway_proto::usage::v1::HttpHeader> {
    headers
        .iter()
        .filter(|(name, _)| !SECRET.contains(&name.as_str()))
        .map(|(name, value)| gateway_proto::usage::v1::HttpHeader {
            name: name.as_str().to_owned(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
        })
        .collect()
}

/// A W3C traceparent for the upstream, and its trace id. When the edge is
/// traced, it names the edge's current span as the parent; otherwise the
/// caller's is passed on, or a new one made.
pub fn traceparent(headers: &HeaderMap) -> (String, String) {
    let mut traced = HeaderMap::new();
    gateway_telemetry::inject_context(&mut traced);
    if let (Some(value), Some(trace_id)) = (
        traced
            .get(&TRACEPARENT)
            .and_then(|value| value.to_str().ok()),
        gateway_telemetry::trace_id_of_current_span(),
    ) {
        return (value.to_owned(), trace_id);
    }
    if let Some(value) = headers
        .get(&TRACEPARENT)
        .and_then(|value| value.to_str().ok())
    {
        let parts: Vec<&str> = value.split('-').collect();
        if parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16 {
            return (value.to_owned(), parts[1].to_owned());
        }
    }
    new_traceparent()
}

/// `00-{32 hex trace id}-{16 hex span id}-01`, written into one buffer
/// (formatting three strings cost a request about 1,500 instructions).
fn new_traceparent() -> (String, String) {
    let mut digits = uuid::Uuid::encode_buffer();
    let mut value = String::with_capacity(55);
    value.push_str("00-");
    value.push_str(uuid::Uuid::now_v7().simple().encode_lower(&mut digits));
    value.push('-');
    // The random end of a second id: its front is the same clock.
    value.push_str(&uuid::Uuid::now_v7().simple().encode_lower(&mut digits)[16..]);
    value.push_str("-01");
    let trace = value[3..35].to_owned();
    (value, trace)
}

/// What the upstream request's headers are made from.
pub struct Outgoing<'a> {
    pub key_header: &'a HeaderName,
    pub remote_ip: &'a str,
    pub request_id: &'a str,
    pub traceparent: &'a str,
    pub api: &'a ApiEntry,
}

/// Turns the client's headers into the upstream request's.
pub fn for_upstream(headers: &mut HeaderMap, outgoing: &Outgoing<'_>) {
    let host = headers.remove(header::HOST);
    strip_hop_by_hop(headers);
    headers.remove(outgoing.key_header);
    headers.remove(&X_CLIENT_ID);
    let forwarded_for = match headers
        .get(&X_FORWARDED_FOR)
        .and_then(|value| value.to_str().ok())
    {
        Some(previous) => format!("{previous}, {}", outgoing.remote_ip),
        None => outgoing.remote_ip.to_owned(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Ok(value) = HeaderValue::from_str(outgoing.request_id) {
        headers.insert(request_id::HEADER.clone(), value);
    }
    if let Ok(value) = HeaderValue::from_str(outgoing.traceparent) {
        headers.insert(TRACEPARENT.clone(), value);
    }
    if let Some(auth) = &outgoing.api.api.upstream_auth
        && !auth.header_name.is_empty()
        && let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(auth.header_name.as_bytes()),
            HeaderValue::from_str(&outgoing.api.upstream_auth_secret),
        )
    {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_callers_key_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("x-api-key", HeaderValue::from_static("sk-caller"));
        headers.insert("host", HeaderValue::from_static("edge.example"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let api = ApiEntry {
            api: gateway_proto::catalog::v1::Api {
                upstream_auth: Some(gateway_proto::catalog::v1::UpstreamAuth {
                    header_name: "X-Upstream-Token".to_owned(),
                    secret_hint: String::new(),
                }),
                ..Default::default()
            },
            upstream_auth_secret: "s3cret".to_owned(),
        };
        let key_header = HeaderName::from_static("x-api-key");
        for_upstream(
            &mut headers,
            &Outgoing {
                key_header: &key_header,
                remote_ip: "127.0.0.1",
                request_id: "req-1",
                traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                api: &api,
            },
        );
        assert!(headers.get("x-private").is_none() && headers.get("te").is_none());
        assert!(headers.get("x-api-key").is_none() && headers.get("host").is_none());
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-host"], "edge.example");
        assert_eq!(headers["x-upstream-token"], "s3cret");
        assert_eq!(headers["x-request-id"], "req-1");
    }

    #[test]
    fn hop_by_hop_strip_takes_listed_names_in_any_case_and_keeps_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("Keep-Alive, X-Hop,,  "),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert_eq!(headers["content-type"], "text/plain");

        let mut plain = HeaderMap::new();
        plain.insert("content-length", HeaderValue::from_static("2"));
        plain.insert("x-other", HeaderValue::from_static("kept"));
        let before = plain.clone();
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain, before);
    }

    #[test]
    fn a_new_traceparent_is_well_formed_and_names_its_trace() {
        let (value, trace) = traceparent(&HeaderMap::new());
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!((parts[0], parts[3]), ("00", "01"));
        assert_eq!(parts[1], trace);
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16));
        assert!(
            value[3..]
                .bytes()
                .all(|b| b == b'-' || b.is_ascii_hexdigit())
        );
        assert_ne!(traceparent(&HeaderMap::new()).1, trace);
    }

    #[test]
    fn audit_headers_leave_credentials_out() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer x"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        let kept = audit(&headers);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].name, "content-type");
    }
}
