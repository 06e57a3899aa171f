//! The console's pages, one module per section, and what they share:
//! paging, times, money input.

use maud::{Markup, html};
use serde::Deserialize;

pub mod account;
pub mod ai;
pub mod api_edit;
pub mod api_errors;
pub mod api_more;
pub mod apis;
pub mod dashboard;
pub mod keys;
pub mod limits;
pub mod logs;
pub mod money;
pub mod people;
pub mod playground;

/// `?page=` of a paginated list: the services' page token.
#[derive(Debug, Default, Deserialize)]
pub struct Paging {
    #[serde(default)]
    pub page: String,
}

/// The link to a list's next page, when there is one.
pub fn pager(path: &str, next: &str) -> Markup {
    let separator = if path.contains('?') { '&' } else { '?' };
    html! {
        @if !next.is_empty() {
            nav.pager aria-label="Pages" {
                a href=(format!("{path}{separator}page={}", encode(next))) rel="next" { "Next page →" }
            }
        }
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS UTC`, or "never".
pub fn time(timestamp: Option<&prost_types::Timestamp>) -> String {
    let Some(timestamp) = timestamp.filter(|time| time.seconds > 0) else {
        return "never".to_owned();
    };
    gateway_proto::utc_text(timestamp.seconds)
}

/// Micro-dollars from a USD amount as typed ("5", "5.25", "$0.0001").
pub fn micros(usd: &str) -> Option<i64> {
    let usd = usd.trim().trim_start_matches('$');
    let (whole, fraction) = usd.split_once('.').unwrap_or((usd, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.len() > 6 {
        return None;
    }
    let digits = |text: &str| text.is_empty() || text.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_amounts_become_micro_dollars_exactly() {
        assert_eq!(micros("5"), Some(5_000_000));
        assert_eq!(micros("$0.0001"), Some(100));
        assert_eq!(micros("1.5"), Some(1_500_000));
        assert_eq!(micros(".25"), Some(250_000));
        for bad in ["", ".", "1.2345678", "-1", "1e3", "abc"] {
            assert_eq!(micros(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_read_as_utc_dates() {
        let at = |seconds| time(Some(&prost_types::Timestamp { seconds, nanos: 0 }));
        assert_eq!(at(0), "never");
        assert_eq!(at(1_796_256_000), "2026-12-03 00:00:00 UTC");
        assert_eq!(at(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn page_tokens_are_encoded() {
        assert_eq!(encode("a b/c=="), "a%20b%2Fc%3D%3D");
        assert!(pager("/keys", "").into_string().is_empty());
    }
}
