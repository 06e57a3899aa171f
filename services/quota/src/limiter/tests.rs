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
    let release: Vec<Adjustment> = reserve
        .iter()
        .map(|reserved| Adjustment {
            key: reserved.key.clone(),
            limit: reserved.limit.clone(),
            delta: -reserved.cost,
            admitted_at: T0,
        })
        .collect();
    limiter.adjust(&release, &[], "", T0 + 2 * SECOND);
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
    assert_eq!(limiter.sweep(T0 + SECOND), 0);
    assert_eq!(limiter.sweep(T0 + MINUTE), 2);
    assert!(limiter.is_empty());
}

const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::Gcra,
    Algorithm::FixedWindow,
    Algorithm::SlidingWindow,
    Algorithm::SlidingLog,
];

fn adjustment(key: &str, limit: &Limit, delta: i64, admitted_at: i64) -> Adjustment {
    Adjustment {
        key: key.to_owned(),
        limit: limit.clone(),
        delta,
        admitted_at,
    }
}

#[test]
fn every_algorithm_gives_back_a_released_reservation() {
    for algorithm in ALGORITHMS {
        let limiter = MemoryLimiter::new();
        let tokens = limit(1_000, Window::Minute, algorithm);
        assert!(admitted(&limiter, &[check("t", tokens.clone(), 800)], T0));
        assert!(
            !admitted(&limiter, &[check("t", tokens.clone(), 800)], T0 + 1),
            "{algorithm:?}"
        );
        limiter.adjust(&[adjustment("t", &tokens, -800, T0)], &[], "", T0 + 2);
        assert!(
            admitted(&limiter, &[check("t", tokens, 1_000)], T0 + 3),
            "{algorithm:?}: the whole limit is free again"
        );
    }
}

#[test]
fn every_algorithm_counts_usage_beyond_the_estimate_even_past_the_limit() {
    for algorithm in ALGORITHMS {
        let limiter = MemoryLimiter::new();
        let tokens = limit(1_000, Window::Minute, algorithm);
        assert!(admitted(&limiter, &[check("t", tokens.clone(), 100)], T0));
        // The response used 1,100 tokens, not 100.
        limiter.adjust(&[adjustment("t", &tokens, 1_000, T0)], &[], "", T0 + 1);
        let refused = limiter.check(&[check("t", tokens, 1)], T0 + 2);
        assert!(!refused.allowed, "{algorithm:?}");
        assert_eq!(refused.outcomes[0].remaining, 0, "{algorithm:?}");
    }
}

#[test]
fn a_give_back_after_the_window_ended_changes_nothing() {
    let limiter = MemoryLimiter::new();
    let per_minute = limit(10, Window::Minute, Algorithm::FixedWindow);
    assert!(admitted(
        &limiter,
        &[check("t", per_minute.clone(), 10)],
        T0
    ));
    // The next window has its own count: a late refund must not free it.
    assert!(admitted(
        &limiter,
        &[check("t", per_minute.clone(), 10)],
        T0 + MINUTE
    ));
    limiter.adjust(
        &[adjustment("t", &per_minute, -10, T0)],
        &[],
        "",
        T0 + MINUTE + 1,
    );
    assert!(!admitted(
        &limiter,
        &[check("t", per_minute, 1)],
        T0 + MINUTE + 2
    ));
}

fn held(holder: &str, slots: &[Slot], until: i64) -> Admission<'static> {
    // Leaked for the test's lifetime: admissions borrow their parts.
    let slots: &'static [Slot] = Box::leak(slots.to_vec().into_boxed_slice());
    let holder: &'static str = Box::leak(holder.to_owned().into_boxed_str());
    Admission {
        checks: &[],
        slots,
        holder,
        hold_until: until,
        record: None,
    }
}

#[test]
fn concurrency_slots_hold_until_released_or_expired() {
    let limiter = MemoryLimiter::new();
    let slot = [Slot {
        key: "c".to_owned(),
        max: 2,
    }];
    assert!(limiter.admit(&held("r1", &slot, T0 + MINUTE), T0).allowed);
    let second = limiter.admit(&held("r2", &slot, T0 + SECOND), T0);
    assert!(second.allowed);
    assert_eq!(second.outcomes[0].remaining, 0);
    let third = limiter.admit(&held("r3", &slot, T0 + MINUTE), T0);
    assert!(!third.allowed);
    assert_eq!(third.outcomes[0].retry_after, SLOT_RETRY_MICROS);
    // r1 settles: its slot frees at once.
    limiter.adjust(&[], &["c".to_owned()], "r1", T0 + 1);
    assert!(
        limiter
            .admit(&held("r3", &slot, T0 + MINUTE), T0 + 2)
            .allowed
    );
    // r2 is never settled: its hold lapses.
    assert!(
        !limiter
            .admit(&held("r4", &slot, T0 + MINUTE), T0 + 3)
            .allowed
    );
    assert!(
        limiter
            .admit(&held("r4", &slot, T0 + MINUTE), T0 + SECOND)
            .allowed
    );
}

#[test]
fn a_record_is_claimed_once_and_a_lease_expires_once() {
    let limiter = MemoryLimiter::new();
    let record = |id: &'static str, lease_expire_at| Admission {
        checks: &[],
        slots: &[],
        holder: id,
        hold_until: 0,
        record: Some(NewRecord {
            id,
            payload: "payload",
            keep_until: T0 + MINUTE,
            lease_expire_at,
        }),
    };
    assert!(limiter.admit(&record("r", None), T0).allowed);
    assert_eq!(
        limiter.claim("r", ClaimMode::Settle, T0),
        Claimed::Open("payload".to_owned())
    );
    assert_eq!(limiter.claim("r", ClaimMode::Settle, T0), Claimed::Settled);
    assert_eq!(
        limiter.claim("other", ClaimMode::Settle, T0),
        Claimed::Unknown
    );

    assert!(limiter.admit(&record("l", Some(T0 + SECOND)), T0).allowed);
    assert!(limiter.due_leases(T0).is_empty());
    assert_eq!(limiter.due_leases(T0 + SECOND), vec!["l".to_owned()]);
    assert_eq!(
        limiter.claim("l", ClaimMode::Expire, T0 + SECOND),
        Claimed::Open("payload".to_owned())
    );
    assert!(limiter.due_leases(T0 + SECOND).is_empty());
    // A late release still sees what the lease covered.
    assert_eq!(
        limiter.claim("l", ClaimMode::Settle, T0 + 2 * SECOND),
        Claimed::Expired("payload".to_owned())
    );
    assert_eq!(
        limiter.claim("l", ClaimMode::Settle, T0 + 2 * SECOND),
        Claimed::Settled
    );
    // Tombstones go after a while.
    limiter.sweep(T0 + 2 * SECOND + TOMBSTONE_MICROS + 1);
    assert_eq!(limiter.claim("l", ClaimMode::Settle, T0), Claimed::Unknown);
}
