//! The answer to a refused quota Check: a 429 (or 402) problem naming the
//! limit, with `Retry-After` and the IETF RateLimit header fields
//! (draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy` and
//! `RateLimit`), plus the older `RateLimit-Limit/-Remaining/-Reset` trio
//! that Kong-era clients read. Every figure comes from the limit that
//! refused, so they agree with each other.

use gateway_proto::quota::v1 as quota;
use http::{HeaderValue, StatusCode, header};

use crate::problem::Problem;

fn seconds_ceil(duration: &prost_types::Duration) -> i64 {
    duration.seconds + i64::from(duration.nanos > 0)
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(0))
}

/// The window's length in seconds, where it has a fixed one.
fn window_secs(window: quota::LimitWindow) -> Option<i64> {
    match window {
        quota::LimitWindow::Minute => Some(60),
        quota::LimitWindow::Hour => Some(3_600),
        quota::LimitWindow::Day => Some(86_400),
        _ => None,
    }
}

/// The limit the headers describe: the exceeded one that keeps the caller
/// waiting longest (its wait is `Retry-After`), else the tightest.
fn headline(limits: &[quota::LimitStatus]) -> Option<&quota::LimitStatus> {
    limits
        .iter()
        .filter(|limit| limit.exceeded)
        .max_by_key(|limit| limit.retry_after.as_ref().map_or(0, seconds_ceil))
        .or_else(|| limits.first())
}

/// Seconds until `limit` admits again: its wait when exceeded, else its
/// reset; never more than one window.
fn reset_secs(limit: &quota::LimitStatus, now: i64) -> Option<i64> {
    let reset = match (&limit.retry_after, &limit.reset_time) {
        (Some(wait), _) if limit.exceeded => seconds_ceil(wait),
        (_, Some(reset)) => reset.seconds - now,
        _ => return None,
    };
    let cap = window_secs(limit.window()).unwrap_or(i64::MAX);
    Some(reset.clamp(0, cap))
}

/// The detail seed-000 users know: "Rate limit exceeded" for per-minute
/// request limits, "Monthly rate limit exceeded" for per-month ones.
fn detail(answer: &quota::CheckResponse, limit: Option<&quota::LimitStatus>) -> String {
    match (answer.refusal_reason(), limit) {
        (quota::RefusalReason::InsufficientBalance, _) => {
            "the balance cannot cover this request".to_owned()
        }
        (quota::RefusalReason::Concurrency, Some(limit)) => format!(
            "too many requests in flight: the limit is {} at once",
            limit.limit
        ),
        (_, Some(limit)) => {
            let lead = if limit.window() == quota::LimitWindow::Month {
                "Monthly rate limit exceeded"
            } else {
                "Rate limit exceeded"
            };
            format!("{lead}: {} (limit {})", limit.name, limit.limit)
        }
        (_, None) => "Rate limit exceeded".to_owned(),
    }
}

/// A policy name for the RateLimit fields: an sf-string, so quote-safe.
fn policy_name(limit: &quota::LimitStatus) -> String {
    let window = match limit.window() {
        quota::LimitWindow::Minute => "minute",
        quota::LimitWindow::Hour => "hour",
        quota::LimitWindow::Day => "day",
        quota::LimitWindow::Month => "month",
        quota::LimitWindow::Lifetime => "lifetime",
        quota::LimitWindow::Unspecified => "concurrent",
    };
    let dimension = match limit.dimension() {
        quota::LimitDimension::Tokens => "tokens",
        quota::LimitDimension::Spend => "spend",
        _ => "requests",
    };
    format!("{dimension}-per-{window}")
}

/// The problem response for a refused Check.
pub fn refusal(answer: &quota::CheckResponse, request_id: &str) -> Problem {
    let limit = headline(&answer.limits);
    let status = match answer.refusal_reason() {
        quota::RefusalReason::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
        _ => StatusCode::TOO_MANY_REQUESTS,
    };
    Problem::new(status, detail(answer, limit), request_id)
}

/// Adds `Retry-After` and the RateLimit fields for a refused Check.
pub fn headers(answer: &quota::CheckResponse, headers: &mut http::HeaderMap) {
    if let Some(wait) = &answer.retry_after {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(seconds_ceil(wait).max(1)),
        );
    }
    let Some(limit) = headline(&answer.limits) else {
        return;
    };
    let name = policy_name(limit);
    let mut policy = format!("\"{name}\";q={}", limit.limit);
    if let Some(window) = window_secs(limit.window()) {
        policy.push_str(&format!(";w={window}"));
    }
    let mut current = format!("\"{name}\";r={}", limit.remaining);
    let reset = reset_secs(limit, now_secs());
    if let Some(reset) = reset {
        current.push_str(&format!(";t={reset}"));
        headers.insert("ratelimit-reset", HeaderValue::from(reset));
    }
    headers.insert("ratelimit-limit", HeaderValue::from(limit.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(limit.remaining));
    for (field, value) in [("ratelimit-policy", policy), ("ratelimit", current)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(field, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute_limit(exceeded: bool, retry: i64, reset_in: i64) -> quota::LimitStatus {
        quota::LimitStatus {
            name: "requests per minute".to_owned(),
            dimension: quota::LimitDimension::Requests.into(),
            window: quota::LimitWindow::Minute.into(),
            limit: 5,
            remaining: 0,
            reset_time: Some(prost_types::Timestamp {
                seconds: now_secs() + reset_in,
                nanos: 0,
            }),
            retry_after: exceeded.then_some(prost_types::Duration {
                seconds: retry,
                nanos: 0,
            }),
            exceeded,
            ..quota::LimitStatus::default()
        }
    }

    fn refused(limits: Vec<quota::LimitStatus>, retry: i64) -> quota::CheckResponse {
        quota::CheckResponse {
            allowed: false,
            limits,
            refusal_reason: quota::RefusalReason::RateLimited.into(),
            retry_after: Some(prost_types::Duration {
                seconds: retry,
                nanos: 0,
            }),
            ..quota::CheckResponse::default()
        }
    }

    #[test]
    fn a_sliding_minute_refusal_resets_within_the_minute_and_agrees_with_retry_after() {
        // A sliding window is fully replenished up to two windows on; the
        // refusing limit admits again after its retry_after.
        let answer = refused(vec![minute_limit(true, 57, 117)], 57);
        let mut map = http::HeaderMap::new();
        headers(&answer, &mut map);
        assert_eq!(map["retry-after"], "57");
        assert_eq!(map["ratelimit-reset"], "57");
        assert_eq!(map["ratelimit"], "\"requests-per-minute\";r=0;t=57");
        assert_eq!(map["ratelimit-policy"], "\"requests-per-minute\";q=5;w=60");
        let not_exceeded = minute_limit(false, 0, 117);
        assert_eq!(reset_secs(&not_exceeded, now_secs()), Some(60));
    }

    #[test]
    fn the_headers_follow_the_limit_that_refused() {
        let mut month = minute_limit(true, 86_000, 86_000);
        month.window = quota::LimitWindow::Month.into();
        month.name = "requests per month".to_owned();
        month.limit = 3;
        let answer = refused(vec![minute_limit(true, 20, 20), month], 86_000);
        let mut map = http::HeaderMap::new();
        headers(&answer, &mut map);
        assert_eq!(map["ratelimit-limit"], "3");
        assert_eq!(map["ratelimit-reset"], "86000");
        assert_eq!(map["ratelimit-policy"], "\"requests-per-month\";q=3");
        let problem = refusal(&answer, "req-1");
        assert!(
            problem
                .detail
                .starts_with("Monthly rate limit exceeded: requests per month")
        );
    }

    #[test]
    fn per_minute_refusals_say_rate_limit_exceeded() {
        let answer = refused(vec![minute_limit(true, 5, 5)], 5);
        let problem = refusal(&answer, "req-1");
        assert_eq!(problem.status, 429);
        assert_eq!(
            problem.detail,
            "Rate limit exceeded: requests per minute (limit 5)"
        );
    }
}
