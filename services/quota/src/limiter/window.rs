//! Limit windows. Minute and hour windows are fixed lengths aligned to the
//! Unix epoch (so every replica and Redis agree on their edges); day and
//! month windows follow the UTC calendar.

use gateway_storage::calendar::{civil_from_days, days_from_civil};

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
    /// Never resets (a key's lifetime spend limit).
    Lifetime,
}

/// The end of the lifetime window: far in the future, yet exact as an f64
/// (Redis scripts compute in doubles) and a power of two below `i64::MAX`.
pub const LIFETIME_END: i64 = 1 << 62;

impl Window {
    /// `[start, end)` of the window containing `now` (microseconds).
    pub fn bounds(self, now: i64) -> (i64, i64) {
        match self {
            Self::Minute => aligned(now, 60 * MICROS_PER_SECOND),
            Self::Hour => aligned(now, 3_600 * MICROS_PER_SECOND),
            Self::Day => aligned(now, MICROS_PER_DAY),
            Self::Lifetime => (0, LIFETIME_END),
            Self::Month => {
                let day = now.div_euclid(MICROS_PER_DAY);
                let (year, month, _) = civil_from_days(day);
                let start = days_from_civil(year, month, 1);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                let end = days_from_civil(next_year, next_month, 1);
                (start * MICROS_PER_DAY, end * MICROS_PER_DAY)
            }
        }
    }

    /// The length of the window containing `now`.
    pub fn length(self, now: i64) -> i64 {
        let (start, end) = self.bounds(now);
        end - start
    }

    /// Calendar windows are fixed windows whatever algorithm a rule names:
    /// "per day" means the UTC day, not the last 24 hours.
    pub fn is_calendar(self) -> bool {
        matches!(self, Self::Day | Self::Month | Self::Lifetime)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Minute => "per minute",
            Self::Hour => "per hour",
            Self::Day => "per day (UTC)",
            Self::Month => "per month (UTC)",
            Self::Lifetime => "lifetime",
        }
    }
}

fn aligned(now: i64, length: i64) -> (i64, i64) {
    let start = now.div_euclid(length) * length;
    (start, start + length)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(year: i64, month: i64, day: i64, seconds: i64) -> i64 {
        (days_from_civil(year, month, day) * 86_400 + seconds) * MICROS_PER_SECOND
    }

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in (-800_000..800_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }

    #[test]
    fn month_windows_follow_the_utc_calendar() {
        // 2024 is a leap year: February has 29 days.
        let (start, end) = Window::Month.bounds(at(2024, 2, 15, 12 * 3600));
        assert_eq!((start, end), (at(2024, 2, 1, 0), at(2024, 3, 1, 0)));
        assert_eq!(Window::Month.length(at(2024, 2, 1, 0)), 29 * MICROS_PER_DAY);
        // December rolls over into the next year.
        let (start, end) = Window::Month.bounds(at(2026, 12, 31, 86_399));
        assert_eq!((start, end), (at(2026, 12, 1, 0), at(2027, 1, 1, 0)));
        // The last microsecond of a month is still in it.
        assert_eq!(
            Window::Month.bounds(at(2026, 12, 1, 0) - 1).1,
            at(2026, 12, 1, 0)
        );
    }

    #[test]
    fn day_minute_and_hour_windows_align_to_utc() {
        let now = at(2026, 11, 22, 6 * 3600 + 25 * 60 + 7);
        assert_eq!(
            Window::Day.bounds(now),
            (at(2026, 11, 22, 0), at(2026, 11, 23, 0))
        );
        assert_eq!(
            Window::Hour.bounds(now),
            (at(2026, 11, 22, 6 * 3600), at(2026, 11, 22, 7 * 3600))
        );
        assert_eq!(
            Window::Minute.bounds(now).0,
            at(2026, 11, 22, 6 * 3600 + 25 * 60)
        );
        assert!(Window::Day.is_calendar() && !Window::Minute.is_calendar());
    }
}
