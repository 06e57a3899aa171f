//! The RFC 9111 rules the edge's shared cache follows: `Cache-Control` on
//! requests and responses, what may be stored and for how long, and the
//! conditional requests (RFC 9110 §13) answered with 304.

use std::time::{Duration, SystemTime};

use http::StatusCode;
use http::header::{self, HeaderMap, HeaderValue};

/// The `Cache-Control` directives the edge acts on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Directives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub only_if_cached: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

impl Directives {
    /// Every `Cache-Control` value of `headers`; an unparsable number
    /// makes its directive count as 0 (the strict reading).
    pub fn of(headers: &HeaderMap) -> Self {
        let mut directives = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                directives.no_store = true;
                continue;
            };
            for directive in value.split(',') {
                directives.apply(directive.trim());
            }
        }
        directives
    }

    /// A request's directives; `Pragma: no-cache` counts when it sends no
    /// `Cache-Control` (RFC 9111 §5.4).
    pub fn of_request(headers: &HeaderMap) -> Self {
        let mut directives = Self::of(headers);
        if !headers.contains_key(header::CACHE_CONTROL)
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .any(|value| value.as_bytes().eq_ignore_ascii_case(b"no-cache"))
        {
            directives.no_cache = true;
        }
        directives
    }

    fn apply(&mut self, directive: &str) {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive, None),
        };
        let seconds = || {
            argument
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match name.to_ascii_lowercase().as_str() {
            "no-store" => self.no_store = true,
            // `no-cache="field"` limits only fields; storing nothing is
            // the safe reading for a shared cache.
            "no-cache" => self.no_cache = true,
            "private" => self.private = true,
            "only-if-cached" => self.only_if_cached = true,
            "max-age" => self.max_age = Some(seconds()),
            "s-maxage" => self.s_maxage = Some(seconds()),
            _ => {}
        }
    }
}

/// Statuses stored with an explicit lifetime (RFC 9110 §15.1, the
/// heuristically cacheable ones the edge serves unchanged).
fn storable_status(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 410
    )
}

/// How long a response may be served, counted from when the upstream
/// produced it; `None` when it must not be stored. `ttl` is the API's
/// lifetime, which the upstream may only shorten.
pub fn lifetime(status: StatusCode, headers: &HeaderMap, ttl: Duration) -> Option<Duration> {
    if !storable_status(status) || headers.contains_key(header::SET_COOKIE) {
        return None;
    }
    if headers
        .get_all(header::VARY)
        .iter()
        .any(|value| value.to_str().map_or(true, |vary| vary.contains('*')))
    {
        return None;
    }
    let directives = Directives::of(headers);
    if directives.no_store || directives.private || directives.no_cache {
        return None;
    }
    let upstream = match directives.s_maxage.or(directives.max_age) {
        Some(seconds) => Some(Duration::from_secs(seconds)),
        None => expires_in(headers),
    };
    let lifetime = upstream.map_or(ttl, |upstream| upstream.min(ttl));
    (!lifetime.is_zero()).then_some(lifetime)
}

/// `Expires - Date` (or `Expires - now` without a Date); an invalid
/// `Expires` means already expired (RFC 9111 §5.3).
fn expires_in(headers: &HeaderMap) -> Option<Duration> {
    let expires = headers.get(header::EXPIRES)?;
    let Some(expires) = http_date(expires) else {
        return Some(Duration::ZERO);
    };
    let date = headers
        .get(header::DATE)
        .and_then(http_date)
        .unwrap_or_else(SystemTime::now);
    Some(expires.duration_since(date).unwrap_or(Duration::ZERO))
}

fn http_date(value: &HeaderValue) -> Option<SystemTime> {
    httpdate::parse_http_date(value.to_str().ok()?).ok()
}

/// The upstream's `Age`, for a response that had already aged upstream.
pub fn upstream_age(headers: &HeaderMap) -> Duration {
    headers
        .get(header::AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

/// Whether a request's conditions are met by a stored answer with these
/// headers, so it is answered 304. `If-None-Match` wins over
/// `If-Modified-Since` (RFC 9110 §13.2.2).
pub fn not_modified(request: &HeaderMap, stored: &HeaderMap) -> bool {
    if let Some(wanted) = request.get(header::IF_NONE_MATCH) {
        let Some(etag) = stored.get(header::ETAG).and_then(|etag| etag.to_str().ok()) else {
            return false;
        };
        return wanted
            .to_str()
            .is_ok_and(|wanted| etag_matches(wanted, etag));
    }
    let (Some(since), Some(modified)) = (
        request.get(header::IF_MODIFIED_SINCE).and_then(http_date),
        stored.get(header::LAST_MODIFIED).and_then(http_date),
    ) else {
        return false;
    };
    modified <= since
}

/// Weak comparison of an `If-None-Match` list with one entity tag.
fn etag_matches(wanted: &str, etag: &str) -> bool {
    let opaque = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let etag = opaque(etag);
    wanted
        .split(',')
        .any(|candidate| candidate.trim() == "*" || opaque(candidate) == etag)
}

/// The stored headers a 304 repeats (RFC 9110 §15.4.5).
pub const NOT_MODIFIED_HEADERS: [header::HeaderName; 7] = [
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::LAST_MODIFIED,
    header::VARY,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    const TTL: Duration = Duration::from_secs(60);

    #[test]
    fn directives_are_read_case_insensitively_across_values() {
        let parsed = Directives::of(&headers(&[
            ("cache-control", "Public, MAX-AGE=\"30\""),
            ("cache-control", "s-maxage=10, no-cache"),
        ]));
        assert_eq!(parsed.max_age, Some(30));
        assert_eq!(parsed.s_maxage, Some(10));
        assert!(parsed.no_cache && !parsed.no_store);
        assert!(Directives::of_request(&headers(&[("pragma", "no-cache")])).no_cache);
        assert!(
            !Directives::of_request(&headers(&[
                ("pragma", "no-cache"),
                ("cache-control", "max-age=5")
            ]))
            .no_cache
        );
    }

    #[test]
    fn the_upstream_can_shorten_the_lifetime_or_forbid_storing() {
        let ok = StatusCode::OK;
        assert_eq!(lifetime(ok, &HeaderMap::new(), TTL), Some(TTL));
        assert_eq!(
            lifetime(ok, &headers(&[("cache-control", "max-age=5")]), TTL),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            lifetime(
                ok,
                &headers(&[("cache-control", "max-age=500, s-maxage=7")]),
                TTL
            ),
            Some(Duration::from_secs(7)),
            "s-maxage wins in a shared cache"
        );
        assert_eq!(
            lifetime(ok, &headers(&[("cache-control", "max-age=3600")]), TTL),
            Some(TTL),
            "never longer than the API's TTL"
        );
        for refusing in [
            ("cache-control", "no-store"),
            ("cache-control", "private"),
            ("cache-control", "no-cache"),
            ("cache-control", "max-age=0"),
            ("set-cookie", "session=1"),
            ("vary", "*"),
            ("expires", "0"),
        ] {
            assert_eq!(
                lifetime(ok, &headers(&[refusing]), TTL),
                None,
                "{refusing:?}"
            );
        }
        assert_eq!(
            lifetime(StatusCode::INTERNAL_SERVER_ERROR, &HeaderMap::new(), TTL),
            None
        );
        assert_eq!(
            lifetime(StatusCode::NOT_FOUND, &HeaderMap::new(), TTL),
            Some(TTL)
        );
    }

    #[test]
    fn expires_counts_from_the_date_header() {
        let answer = headers(&[
            ("date", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ("expires", "Tue, 01 Dec 2026 10:00:20 GMT"),
        ]);
        assert_eq!(
            lifetime(StatusCode::OK, &answer, TTL),
            Some(Duration::from_secs(20))
        );
    }

    #[test]
    fn conditions_are_met_by_matching_validators() {
        let stored = headers(&[
            ("etag", "\"v1\""),
            ("last-modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
        ]);
        assert!(not_modified(
            &headers(&[("if-none-match", "\"v0\", W/\"v1\"")]),
            &stored
        ));
        assert!(not_modified(&headers(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v2\"")]),
            &stored
        ));
        assert!(not_modified(
            &headers(&[("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &headers(&[("if-modified-since", "Tue, 01 Dec 2026 09:59:59 GMT")]),
            &stored
        ));
        assert!(
            !not_modified(
                &headers(&[
                    ("if-none-match", "\"v2\""),
                    ("if-modified-since", "Tue, 01 Dec 2026 10:00:00 GMT")
                ]),
                &stored
            ),
            "If-None-Match decides when present"
        );
        assert!(!not_modified(
            &headers(&[("if-none-match", "\"v1\"")]),
            &HeaderMap::new()
        ));
    }

    #[test]
    fn ages_come_from_the_upstream() {
        assert_eq!(
            upstream_age(&headers(&[("age", "12")])),
            Duration::from_secs(12)
        );
        assert_eq!(upstream_age(&headers(&[("age", "soon")])), Duration::ZERO);
    }
}
