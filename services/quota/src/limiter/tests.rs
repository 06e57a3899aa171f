use std::sync::Arc;

use super::*;

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
/// 2026-11-22T06:00:00Z, a minute boundary.
const T0: i64 = 1_795_327_200 * SECOND;

fn limit(limit: i64, window: Window, algorithm: Algorithm) -> Limit {
    Limit {
        limit,
        window,
        algorithm,
        burst: 0,
    }
}

fn check(key: &str, limit: Limit, cost: i64) -> Check {
    Check {
        key: key.to_owned(),
        limit,
        cost,
    }
}

fn admitted(limiter: &MemoryLimiter, checks: &[Check], now: i64) -> bool {
    limiter.check(checks, now).allowed
}

#[test]
fn fixed_window_admits_exactly_the_limit_per_window() {
    let limiter = MemoryLimiter::new();
    let per_minute = limit(5, Window::Minute, Algorithm::FixedWindow);
    for second in 0..5 {
        assert!(admitted(
            &limiter,
            &[check("k", per_minute.clone(), 1)],
            T0 + second * SECOND
        ));
    }
    let refused = limiter.check(&[check("k", per_minute.clone(), 1)], T0 + 10 * SECOND);
    assert!(!refused.allowed);
    assert_eq!(refused.outcomes[0].remaining, 0);
    assert_eq!(refused.outcomes[0].retry_after, 50 * SECOND);
    assert_eq!(refused.outcomes[0].reset_at, T0 + MINUTE);
    assert!(admitted(
        &limiter,
        &[check("k", per_minute, 1)],
        T0 + MINUTE
    ));
}

#[test]
fn sliding_window_weighs_the_previous_window() {
    let limiter = MemoryLimiter::new();
    let per_minute = limit(10, Window::Minute, Algorithm::SlidingWindow);
    // Ten requests late in the first minute.
    for _ in 0..10 {
        assert!(admitted(
            &limiter,
            &[check("k", per_minute.clone(), 1)],
            T0 + 50 * SECOND
        ));
    }
    // 15 s into the next minute the previous window still weighs 45/60:
    // 7.5 -> 8 counted, so two more fit, not ten (a fixed window would
    // admit ten).
    let now = T0 + MINUTE + 15 * SECOND;
    assert!(admitted(
        &limiter,
        &[check("k", per_minute.clone(), 1)],
        now
    ));
    assert!(admitted(
        &limiter,
        &[check("k", per_minute.clone(), 1)],
        now
    ));
    let refused = limiter.check(&[check("k", per_minute.clone(), 1)], now);
    assert!(!refused.allowed);
    assert!(refused.outcomes[0].retry_after > 0 && refused.outcomes[0].retry_after <= 45 * SECOND);
    // By the end of that minute the previous window no longer counts.
    let late = T0 + 2 * MINUTE - SECOND;
    let admitted_late = (0..10)
        .filter(|_| admitted(&limiter, &[check("k", per_minute.clone(), 1)], late))
        .count();
    assert_eq!(
        admitted_late, 7,
        "ten minus the three already in this window, minus 1/60 of ten rounded up"
    );
}

#[test]
fn sliding_log_is_exact_over_any_window() {
    let limiter = MemoryLimiter::new();
    let per_minute = limit(3, Window::Minute, Algorithm::SlidingLog);
    for second in [0, 20, 40] {
        assert!(admitted(
            &limiter,
            &[check("k", per_minute.clone(), 1)],
            T0 + second * SECOND
        ));
    }
    let refused = limiter.check(&[check("k", per_minute.clone(), 1)], T0 + 59 * SECOND);
    assert!(!refused.allowed);
    assert_eq!(
        refused.outcomes[0].retry_after, SECOND,
        "the first entry expires at 60 s"
    );
    assert!(admitted(
        &limiter,
        &[check("k", per_minute.clone(), 1)],
        T0 + 60 * SECOND + 1
    ));
    assert!(!admitted(
        &limiter,
        &[check("k", per_minute, 1)],
        T0 + 61 * SECOND
    ));
}

#[test]
fn gcra_allows_a_burst_then_paces_requests() {
    let limiter = MemoryLimiter::new();
    // 60 per minute (one per second) with a burst of 3.
    let paced = Limit {
        limit: 60,
        window: Window::Minute,
        algorithm: Algorithm::Gcra,
        burst: 3,
    };
    for _ in 0..3 {
        assert!(admitted(&limiter, &[check("k", paced.clone(), 1)], T0));
    }
    let refused = limiter.check(&[check("k", paced.clone(), 1)], T0);
    assert!(!refused.allowed);
    assert_eq!(refused.outcomes[0].retry_after, SECOND);
    assert!(admitted(
        &limiter,
        &[check("k", paced.clone(), 1)],
        T0 + SECOND
    ));
    assert!(!admitted(
        &limiter,
        &[check("k", paced.clone(), 1)],
        T0 + SECOND + SECOND / 2
    ));
    // Over a long run the rate is the limit, whatever the burst.
    let admitted_in_a_minute = (0..600)
        .filter(|tenth| {
            admitted(
                &limiter,
                &[check("k", paced.clone(), 1)],
                T0 + 10 * SECOND + tenth * SECOND / 10,
            )
        })
        .count();
    assert!(
        (60..=63).contains(&admitted_in_a_minute),
        "{admitted_in_a_minute}"
    );
}

#[test]
fn gcra_is_exact_for_limits_far_above_one_per_microsecond() {
    let limiter = MemoryLimiter::new();
    let tokens = Limit {
        limit: 100_000_000_000,
        window: Window::Minute,
        algorithm: Algorithm::Gcra,
        burst: 0,
    };
    assert!(admitted(
        &limiter,
        &[check("k", tokens.clone(), 99_999_999_999)],
        T0
    ));
    assert!(admitted(&limiter, &[check("k", tokens.clone(), 1)], T0));
    assert!(!admitted(&limiter, &[check("k", tokens, 1)], T0));
}

#[test]
fn day_and_month_limits_are_calendar_windows_whatever_the_algorithm() {
    let limiter = MemoryLimiter::new();
    let per_day = limit(2, Window::Day, Algorithm::SlidingLog);
    let late = T0 + 17 * 3600 * SECOND + 59 * MINUTE; // 23:59 UTC
    assert!(admitted(&limiter, &[check("k", per_day.clone(), 2)], late));
    assert!(!admitted(&limiter, &[check("k", per_day.clone(), 1)], late));
    // One minute later it is a new UTC day.
    assert!(admitted(&limiter, &[check("k", per_day, 2)], late + MINUTE));
}

#[test]
fn a_refused_request_consumes_nothing_anywhere() {
    let limiter = MemoryLimiter::new();
    let generous = limit(100, Window::Minute, Algorithm::FixedWindow);
    let strict = limit(1, Window::Minute, Algorithm::FixedWindow);
    let both = [
        check("key", generous.clone(), 1),
        check("user", strict.clone(), 1),
    ];
    assert!(admitted(&limiter, &both, T0));
    let refused = limiter.check(&both, T0);
    assert!(!refused.allowed);
    assert!(
        refused.outcomes[0].allowed,
        "the key limit alone would admit"
    );
    // The key limit did not count the refused request.
    let key_only = limiter.check(&[check("key", generous, 1)], T0);
    assert_eq!(key_only.outcomes[0].remaining, 98);
}

#[test]
fn tokens_and_spend_count_by_cost_and_refunds_give_back() {
    let limiter = MemoryLimiter::new();
    let tokens = limit(1_000, Window::Minute, Algorithm::SlidingLog);
    let spend = limit(5_000_000, Window::Day, Algorithm::FixedWindow);
    let reserve = [
        check("tokens", tokens.clone(), 800),
        check("spend", spend.clone(), 4_000_000),
    ];
    assert!(admitted(&limiter, &reserve, T0));
    assert!(!admitted(
        &limiter,
        &[check("tokens", tokens.clone(), 300)],
        T0 + SECOND
    ));
    // The request failed: its reservation is released.
    for reserved in &reserve {
        limiter.refund(reserved, T0, T0 + 2 * SECOND);
    }
    assert!(admitted(
        &limiter,
        &[
            check("tokens", tokens, 1_000),
            check("spend", spend, 5_000_000)
        ],
        T0 + 3 * SECOND
    ));
}

#[test]
fn concurrent_checks_admit_exactly_the_limit() {
    let limiter = Arc::new(MemoryLimiter::new());
    let per_minute = limit(50, Window::Minute, Algorithm::SlidingWindow);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            let per_minute = per_minute.clone();
            std::thread::spawn(move || {
                (0..25)
                    .filter(|_| {
                        limiter
                            .check(&[check("k", per_minute.clone(), 1)], T0)
                            .allowed
                    })
                    .count()
            })
        })
        .collect();
    let total: usize = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    assert_eq!(total, 50, "200 concurrent checks against a limit of 50");
}

#[test]
fn expired_state_is_swept() {
    let limiter = MemoryLimiter::new();
    let per_minute = limit(5, Window::Minute, Algorithm::FixedWindow);
    limiter.check(
        &[
            check("a", per_minute.clone(), 1),
            check("b", per_minute.clone(), 1),
        ],
        T0,
    );
    assert_eq!(limiter.sweep(T0 + SECOND, |_| Some(per_minute.clone())), 0);
    assert_eq!(limiter.sweep(T0 + MINUTE, |_| Some(per_minute.clone())), 2);
    assert!(limiter.is_empty());
}
