//! `X-Request-ID`: taken from the caller when well-formed, else generated.

use http::{HeaderMap, HeaderName};

/// A static name: inserting a `&str` name that is not a standard header
/// allocates it anew on every request.
pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's id if it is 1 to 128 characters of `[A-Za-z0-9._:-]`
/// (safe to log and to echo), else a new UUIDv7.
pub fn from_headers(headers: &HeaderMap) -> String {
    headers
        .get(&HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_well_formed(value))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

fn is_well_formed(value: &str) -> bool {
    (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn well_formed_caller_id_is_kept_and_others_replaced() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER.clone(), HeaderValue::from_static("abc-123_x.y:z"));
        assert_eq!(from_headers(&headers), "abc-123_x.y:z");

        headers.insert(HEADER.clone(), HeaderValue::from_static("has space"));
        let generated = from_headers(&headers);
        assert_ne!(generated, "has space");
        assert!(uuid::Uuid::parse_str(&generated).is_ok());

        headers.insert(
            HEADER.clone(),
            HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        );
        assert_eq!(from_headers(&headers).len(), 36);
        assert_eq!(from_headers(&HeaderMap::new()).len(), 36);
    }
}
