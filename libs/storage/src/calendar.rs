//! UTC calendar arithmetic on Unix day numbers, for calendar windows
//! (quota's day and month limits) and day-partitioned storage (usage's
//! audit segments).

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The UTC date of a Unix time in microseconds.
pub fn utc_date(micros: i64) -> (i64, i64, i64) {
    civil_from_days(micros.div_euclid(MICROS_PER_DAY))
}

/// `YYYY_MM_DD` of a Unix time in microseconds (sorts as the dates do).
pub fn utc_day_label(micros: i64) -> String {
    let (year, month, day) = utc_date(micros);
    format!("{year:04}_{month:02}_{day:02}")
}

/// Microseconds at 00:00 UTC of the day containing `micros`.
pub fn utc_day_start(micros: i64) -> i64 {
    micros.div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_labels_follow_the_utc_date() {
        // 2026-11-22T23:59:59.999999Z and one microsecond later.
        let last = (days_from_civil(2026, 11, 23) * 86_400) * 1_000_000 - 1;
        assert_eq!(utc_day_label(last), "2026_11_22");
        assert_eq!(utc_day_label(last + 1), "2026_11_23");
        assert_eq!(
            utc_day_start(last),
            days_from_civil(2026, 11, 22) * MICROS_PER_DAY
        );
        assert_eq!(utc_day_label(0), "1970_01_01");
    }
}
