//! The four rate-limit algorithms, as pure functions of (state, limit,
//! cost, now). Each says what it guarantees.

use std::collections::VecDeque;

use super::window::Window;

/// Which algorithm a limit counts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Algorithm {
    /// Generic cell rate algorithm: a token bucket of `burst` that refills
    /// at `limit` per window, kept as one timestamp (the theoretical
    /// arrival time). Guarantee: over any interval of length `t`, at most
    /// `burst + limit * t / window` is admitted; no boundary bursts.
    Gcra,
    /// A counter per aligned window. Guarantee: at most `limit` per window;
    /// across a window edge up to `2 * limit` can pass in one window length.
    FixedWindow,
    /// The current window's counter plus the previous window's, weighted by
    /// how much of it the sliding window still covers (Cloudflare's
    /// approximation). Guarantee: exact when the previous window's traffic
    /// was evenly spread; otherwise off by at most the previous window's
    /// count times the overlap error, which in practice stays within a few
    /// percent, with two counters of memory.
    SlidingWindow,
    /// Every admitted request's time and cost within the last window.
    /// Guarantee: exact over every sliding window; memory grows with the
    /// number of requests admitted per window.
    SlidingLog,
}

/// What is counted for one limit key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Fixed {
        window_start: i64,
        used: i64,
    },
    Sliding {
        window_start: i64,
        current: i64,
        previous: i64,
    },
    Log {
        entries: VecDeque<(i64, i64)>,
        total: i64,
    },
    /// The theoretical arrival time, in microseconds times `limit` (scaled
    /// so that limits far above one per microsecond stay exact).
    Gcra {
        tat_scaled: i128,
    },
}

/// One limit to evaluate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limit {
    pub limit: i64,
    pub window: Window,
    pub algorithm: Algorithm,
    /// GCRA bucket size; 0 means `limit`.
    pub burst: i64,
}

/// The answer for one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    /// What is left after this request (if admitted) or now (if not).
    pub remaining: i64,
    /// When the limit is fully available again (microseconds).
    pub reset_at: i64,
    /// How long until this request would fit (0 when admitted).
    pub retry_after: i64,
}

impl Limit {
    /// Day and month limits always count per calendar window.
    fn effective_algorithm(&self) -> Algorithm {
        if self.window.is_calendar() {
            Algorithm::FixedWindow
        } else {
            self.algorithm
        }
    }

    /// Evaluates `cost` against `state` at `now`; returns the outcome and
    /// the state to store if the request is admitted.
    pub fn evaluate(&self, state: Option<&State>, cost: i64, now: i64) -> (Outcome, State) {
        let cost = cost.max(0);
        match self.effective_algorithm() {
            Algorithm::FixedWindow => self.fixed(state, cost, now),
            Algorithm::SlidingWindow => self.sliding(state, cost, now),
            Algorithm::SlidingLog => self.log(state, cost, now),
            Algorithm::Gcra => self.gcra(state, cost, now),
        }
    }

    /// Moves the count of a request admitted at `admitted_at` by `delta`
    /// (settling a reservation or a lease). A negative delta gives back, but
    /// only what still counts (an expired window is left alone); a positive
    /// one is recorded at `now` even past the limit, since that usage has
    /// already happened. Returns the state to store, if any changed.
    pub fn adjust(
        &self,
        state: Option<&State>,
        delta: i64,
        admitted_at: i64,
        now: i64,
    ) -> Option<State> {
        if delta > 0 {
            return Some(self.force(state, delta, now));
        }
        let refund = delta.checked_neg()?;
        if refund == 0 {
            return None;
        }
        let length = self.window.length(admitted_at);
        let mut state = state?.clone();
        match &mut state {
            State::Fixed { window_start, used } => {
                if *window_start != self.window.bounds(admitted_at).0 {
                    return None;
                }
                *used = (*used - refund).max(0);
            }
            State::Sliding {
                window_start,
                current,
                previous,
            } => {
                let admitted_window = self.window.bounds(admitted_at).0;
                if admitted_window == *window_start {
                    *current = (*current - refund).max(0);
                } else if admitted_window == *window_start - length {
                    *previous = (*previous - refund).max(0);
                } else {
                    return None;
                }
            }
            State::Log { entries, total } => {
                if admitted_at <= now - length {
                    return None;
                }
                // A negative entry at the admission time: it leaves the log
                // exactly when the amount it cancels does.
                let at = entries.partition_point(|(time, _)| *time <= admitted_at);
                entries.insert(at, (admitted_at, -refund));
                *total -= refund;
            }
            State::Gcra { tat_scaled } => {
                let now_scaled = i128::from(now) * i128::from(self.limit.max(1));
                *tat_scaled =
                    (*tat_scaled - i128::from(refund) * i128::from(length)).max(now_scaled);
            }
        }
        Some(state)
    }

    /// Counts `amount` at `now` without checking the limit.
    fn force(&self, state: Option<&State>, amount: i64, now: i64) -> State {
        match self.effective_algorithm() {
            Algorithm::FixedWindow => {
                let (start, _) = self.window.bounds(now);
                let used = match state {
                    Some(State::Fixed { window_start, used }) if *window_start == start => *used,
                    _ => 0,
                };
                State::Fixed {
                    window_start: start,
                    used: used.saturating_add(amount),
                }
            }
            Algorithm::SlidingWindow => {
                let (start, end) = self.window.bounds(now);
                let (current, previous) = rolled(state, start, end - start);
                State::Sliding {
                    window_start: start,
                    current: current.saturating_add(amount),
                    previous,
                }
            }
            Algorithm::SlidingLog => {
                let (mut entries, mut total) = self.pruned(state, now);
                entries.push_back((now, amount));
                total = total.saturating_add(amount);
                State::Log { entries, total }
            }
            Algorithm::Gcra => {
                let length = i128::from(self.window.length(now));
                let now_scaled = i128::from(now) * i128::from(self.limit.max(1));
                let tat = match state {
                    Some(State::Gcra { tat_scaled }) => (*tat_scaled).max(now_scaled),
                    _ => now_scaled,
                };
                State::Gcra {
                    tat_scaled: tat + i128::from(amount) * length,
                }
            }
        }
    }

    /// The log's entries still inside the window at `now`, and their sum.
    fn pruned(&self, state: Option<&State>, now: i64) -> (VecDeque<(i64, i64)>, i64) {
        let length = self.window.length(now);
        let (mut entries, mut total) = match state {
            Some(State::Log { entries, total }) => (entries.clone(), *total),
            _ => (VecDeque::new(), 0),
        };
        while let Some(&(at, entry_cost)) = entries.front() {
            if at > now - length {
                break;
            }
            entries.pop_front();
            total -= entry_cost;
        }
        (entries, total)
    }

    /// True once `state` no longer limits anything at `now`, so it can be
    /// dropped to bound memory.
    pub fn is_expired(&self, state: &State, now: i64) -> bool {
        let (start, _) = self.window.bounds(now);
        let length = self.window.length(now);
        match state {
            State::Fixed { window_start, .. } => *window_start < start,
            State::Sliding { window_start, .. } => *window_start < start - length,
            State::Log { entries, .. } => entries.back().is_none_or(|(at, _)| *at <= now - length),
            State::Gcra { tat_scaled } => {
                *tat_scaled <= i128::from(now) * i128::from(self.limit.max(1))
            }
        }
    }

    fn fixed(&self, state: Option<&State>, cost: i64, now: i64) -> (Outcome, State) {
        let (start, end) = self.window.bounds(now);
        let used = match state {
            Some(State::Fixed { window_start, used }) if *window_start == start => *used,
            _ => 0,
        };
        let allowed = used.saturating_add(cost) <= self.limit;
        let after = if allowed { used + cost } else { used };
        let outcome = Outcome {
            allowed,
            remaining: (self.limit - after).max(0),
            reset_at: end,
            retry_after: if allowed { 0 } else { end - now },
        };
        (
            outcome,
            State::Fixed {
                window_start: start,
                used: after,
            },
        )
    }

    fn sliding(&self, state: Option<&State>, cost: i64, now: i64) -> (Outcome, State) {
        let (start, end) = self.window.bounds(now);
        let length = end - start;
        let (current, previous) = rolled(state, start, length);
        // The share of the previous window the sliding window still covers,
        // rounded up so the estimate never undercounts.
        let overlap = end - now;
        let weighted_previous = ceil_div(
            i128::from(previous) * i128::from(overlap),
            i128::from(length),
        );
        let estimate = weighted_previous.saturating_add(current);
        let allowed = estimate.saturating_add(cost) <= self.limit;
        let after = if allowed { current + cost } else { current };
        let retry_after = if allowed {
            0
        } else {
            // The previous window's weight shrinks with time: wait until it
            // leaves room, or for the next window if it never does.
            let room = self.limit - current - cost;
            if room >= 0 && previous > 0 {
                let overlap_needed = i128::from(room) * i128::from(length) / i128::from(previous);
                (overlap - i64::try_from(overlap_needed).unwrap_or(overlap)).clamp(1, end - now)
            } else {
                end - now
            }
        };
        let outcome = Outcome {
            allowed,
            remaining: (self.limit - weighted_previous - after).max(0),
            reset_at: end + length,
            retry_after,
        };
        (
            outcome,
            State::Sliding {
                window_start: start,
                current: after,
                previous,
            },
        )
    }

    fn log(&self, state: Option<&State>, cost: i64, now: i64) -> (Outcome, State) {
        let length = self.window.length(now);
        let (mut entries, mut total) = self.pruned(state, now);
        let allowed = total.saturating_add(cost) <= self.limit;
        if allowed && cost > 0 {
            entries.push_back((now, cost));
            total += cost;
        }
        let retry_after = if allowed {
            0
        } else {
            // The first moment enough old entries have expired.
            let mut freed = 0;
            let mut wait = length;
            for &(at, entry_cost) in &entries {
                freed += entry_cost;
                if total - freed + cost <= self.limit {
                    wait = at + length - now;
                    break;
                }
            }
            wait.max(1)
        };
        let reset_at = entries.back().map_or(now, |(at, _)| at + length);
        let outcome = Outcome {
            allowed,
            remaining: (self.limit - total).max(0),
            reset_at,
            retry_after,
        };
        (outcome, State::Log { entries, total })
    }

    fn gcra(&self, state: Option<&State>, cost: i64, now: i64) -> (Outcome, State) {
        let limit = i128::from(self.limit.max(1));
        let length = i128::from(self.window.length(now));
        let burst = i128::from(if self.burst > 0 {
            self.burst
        } else {
            self.limit.max(1)
        });
        let now_scaled = i128::from(now) * limit;
        let tat = match state {
            Some(State::Gcra { tat_scaled }) => (*tat_scaled).max(now_scaled),
            _ => now_scaled,
        };
        // Each unit advances the arrival time by window/limit, which is
        // `length` in scaled units; the bucket holds `burst` units.
        let new_tat = tat + i128::from(cost) * length;
        let capacity = burst * length;
        let allowed = self.limit > 0 && new_tat - now_scaled <= capacity;
        let (stored, used) = if allowed {
            (new_tat, new_tat - now_scaled)
        } else {
            (tat, tat - now_scaled)
        };
        let to_micros = |scaled: i128| i64::try_from(scaled / limit).unwrap_or(i64::MAX);
        let outcome = Outcome {
            allowed,
            remaining: i64::try_from((capacity - used).max(0) / length.max(1)).unwrap_or(0),
            reset_at: to_micros(stored),
            retry_after: if allowed {
                0
            } else {
                to_micros(new_tat - capacity - now_scaled).max(1)
            },
        };
        (outcome, State::Gcra { tat_scaled: stored })
    }
}

/// The sliding window's (current, previous) counts as seen from the window
/// starting at `start`.
fn rolled(state: Option<&State>, start: i64, length: i64) -> (i64, i64) {
    match state {
        Some(State::Sliding {
            window_start,
            current,
            previous,
        }) if *window_start == start => (*current, *previous),
        Some(State::Sliding {
            window_start,
            current,
            ..
        }) if *window_start == start - length => (0, *current),
        _ => (0, 0),
    }
}

fn ceil_div(numerator: i128, denominator: i128) -> i64 {
    let quotient = numerator / denominator + i128::from(numerator % denominator != 0);
    i64::try_from(quotient).unwrap_or(i64::MAX)
}
