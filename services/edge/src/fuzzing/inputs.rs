//! Fuzz entry points for what a client, an operator or the disk hands the
//! edge: request headers, JWTs, the configuration, the usage spool's
//! records and AI request bodies.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use gateway_proto::catalog::v1 as pb;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use crate::ai::request::{Generation, Target};
use crate::ai::usage::Protocol;

/// The HS256 secret of the fuzzed JWT policy; the corpus holds tokens
/// signed with it, so the claims path is reached too.
pub const JWT_SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret!";

/// `data` as header lines (`name: value`, split at the first colon, as
/// hyper hands them over), then through every header reader of the edge.
pub fn headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for line in data.split(|byte| *byte == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|byte| *byte == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(value.trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    read_headers(&headers);
    let _ = crate::cache::control::lifetime(StatusCode::OK, &headers, Duration::from_secs(60));
    let _ = crate::cache::control::upstream_age(&headers);
    let _ = crate::cache::control::not_modified(&headers, &headers);
    crate::headers::strip_hop_by_hop(&mut headers);
}

fn read_headers(headers: &HeaderMap) {
    let request_id = crate::request_id::from_headers(headers);
    let _ = crate::headers::audit(headers);
    let _ = crate::headers::traceparent(headers);
    let _ = crate::auth::presented_key(headers);
    let _ = crate::ai::keys::presented(headers, Some("alt=sse&key=k"));
    let _ = crate::auth::client_id(headers, &request_id);
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let _ = crate::auth::basic::credentials(value);
    }
    if let Some(origin) = headers.get(http::header::ORIGIN) {
        let _ = crate::cors::is_origin(origin.to_str().unwrap_or_default());
    }
    let _ = crate::cors::is_preflight(&Method::OPTIONS, headers);
    let _ = crate::cache::control::Directives::of(headers);
    let _ = crate::cache::control::Directives::of_request(headers);
}

/// `data` as a bearer token for an API's JWT policy and for the services'
/// admin tokens.
pub fn jwt(data: &[u8]) {
    static POLICY: OnceLock<crate::auth::jwt::JwtVerifier> = OnceLock::new();
    static ADMIN: OnceLock<gateway_auth::Verifier> = OnceLock::new();
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let policy = POLICY.get_or_init(|| {
        crate::auth::jwt::JwtVerifier::compile(&pb::JwtAuth {
            algorithms: vec!["HS256".to_owned(), "RS256".to_owned(), "EdDSA".to_owned()],
            hs256_secret: JWT_SECRET.to_owned(),
            forward_claims: HashMap::from([
                ("sub".to_owned(), "x-user".to_owned()),
                ("roles".to_owned(), "x-roles".to_owned()),
            ]),
            ..pb::JwtAuth::default()
        })
    });
    let _ = policy.verify(token);
    let admin = ADMIN.get_or_init(|| {
        let verifier = gateway_auth::Verifier::new("gateway", None);
        verifier.set_shared_secret(JWT_SECRET.as_bytes());
        verifier
    });
    let _ = admin.verify(token);
}

/// `data` as a config file (TOML), then after a NUL byte as environment
/// lines (`NAME=value`), loaded as the standalone edge loads its own.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, env) = text.split_once('\0').unwrap_or((text, ""));
    let env: HashMap<String, String> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let path = std::path::Path::new("fuzz.toml");
    let _ = gateway_runtime::config::load_text::<crate::BinaryConfig>(Some((path, file)), &env);
}

/// `data` as a usage spool segment: what a restart would replay must be
/// whole records that encode back to the same bytes' events.
pub fn spool(data: &[u8]) {
    use gateway_usage_sender::fuzzing::{encode_segment, replay_segment};
    let (valid, events) = replay_segment(data);
    assert!(valid <= data.len() as u64, "read past the end");
    let encoded = match encode_segment(&events) {
        Ok(encoded) => encoded,
        Err(error) => panic!("decoded events do not encode: {error}"),
    };
    let (again, replayed) = replay_segment(&encoded);
    assert_eq!(again, encoded.len() as u64, "a re-encoded segment is torn");
    assert_eq!(replayed, events, "events change on a round trip");
}

/// `data` as a request body of each protocol, as the AI endpoints decode
/// it, then estimated and encoded for a channel of every protocol.
pub fn ai_request(data: &[u8]) {
    let mut requests = Vec::new();
    for protocol in [Protocol::OpenAi, Protocol::Anthropic, Protocol::Responses] {
        requests.extend(Generation::parse(protocol, data).ok());
    }
    for stream in [false, true] {
        requests.extend(Generation::parse_gemini(data, "gemini-x", stream).ok());
    }
    for request in &requests {
        let _ = (request.model(), request.stream(), request.max_tokens());
        let _ = request.prompt_tokens();
        let _ = request.canonical();
        for (protocol, provider) in [
            (Protocol::OpenAi, pb::Provider::Openai),
            (Protocol::Anthropic, pb::Provider::Anthropic),
            (Protocol::Gemini, pb::Provider::Gemini),
        ] {
            let target = Target {
                protocol,
                provider,
                model: "m",
            };
            let _ = request.body_for(&target, Some(16), 4096);
            let _ = request.uri_for(protocol, "http://127.0.0.1:1/v1", "m");
        }
    }
}
