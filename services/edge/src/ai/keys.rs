//! Where AI clients put their key: `x-api-key` (Anthropic), `Authorization:
//! Bearer` (OpenAI), `x-goog-api-key` or the `?key=` query parameter
//! (Gemini). The query parameter is removed before anything is forwarded
//! or logged.

use http::header::{self, HeaderMap, HeaderName};

/// Every header that may carry a caller's key; all are removed before the
/// request goes to a provider.
pub const KEY_HEADERS: [&str; 3] = ["x-api-key", "authorization", "x-goog-api-key"];

/// The key and where it came from (`None` header: the query).
pub fn presented(headers: &HeaderMap, query: Option<&str>) -> Option<(String, HeaderName)> {
    if let Some(found) = crate::auth::presented_key(headers) {
        return Some(found);
    }
    if let Some(key) = headers
        .get("x-goog-api-key")
        .and_then(|value| value.to_str().ok())
    {
        return Some((
            key.trim().to_owned(),
            HeaderName::from_static("x-goog-api-key"),
        ));
    }
    let key = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .filter(|key| !key.is_empty())?;
    Some((percent_decode(key), header::AUTHORIZATION))
}

/// The query string without its `key` parameter (and without a leading
/// `?` when nothing is left).
pub fn without_key(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && !pair.starts_with("key=") && *pair != "key")
        .collect::<Vec<_>>()
        .join("&")
}

/// Keys are ASCII; `%XX` escapes are undone, anything malformed kept.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |offset: usize| {
            bytes
                .get(index + offset)
                .and_then(|byte| char::from(*byte).to_digit(16))
        };
        match (bytes[index], hex(1), hex(2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn each_providers_place_is_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            presented(&headers, Some("alt=sse&key=sk-q%2Dx")).unwrap().0,
            "sk-q-x"
        );
        headers.insert("x-goog-api-key", HeaderValue::from_static("sk-goog"));
        assert_eq!(presented(&headers, Some("key=sk-q")).unwrap().0, "sk-goog");
        headers.insert(
            "authorization",
            HeaderValue::from_static("Bearer sk-bearer"),
        );
        assert_eq!(presented(&headers, None).unwrap().0, "sk-bearer");
        headers.insert("x-api-key", HeaderValue::from_static("sk-anthropic"));
        assert_eq!(presented(&headers, None).unwrap().0, "sk-anthropic");
        assert!(presented(&HeaderMap::new(), Some("alt=sse")).is_none());
    }

    #[test]
    fn the_query_key_is_never_forwarded() {
        assert_eq!(without_key("alt=sse&key=sk-1"), "alt=sse");
        assert_eq!(without_key("key=sk-1"), "");
        assert_eq!(without_key("a=1&key=x&b=2"), "a=1&b=2");
    }
}
