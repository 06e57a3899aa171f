//! Times on the command line: RFC 3339 (`2026-12-01T00:00:00Z`), a date
//! (`2026-12-01`, midnight UTC) or an age (`90s`, `30m`, `24h`, `7d`).

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

use crate::error::{CliError, CliResult};

pub fn parse(text: &str) -> CliResult<Timestamp> {
    let text = text.trim();
    if let Some(age) = age_seconds(text) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|now| now.as_secs())
            .unwrap_or_default();
        let seconds = i64::try_from(now).unwrap_or(i64::MAX).saturating_sub(age);
        return Ok(Timestamp { seconds, nanos: 0 });
    }
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    Timestamp::from_str(&full).map_err(|_| {
        CliError::usage(format!(
            "{text:?} is not a time: use RFC 3339, a date (2026-12-01) or an age (24h, 7d)"
        ))
    })
}

fn age_seconds(text: &str) -> Option<i64> {
    let unit = text.chars().last()?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let count: i64 = text[..text.len() - 1].parse().ok()?;
    count.checked_mul(scale).filter(|seconds| *seconds >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_dates_and_ages() {
        assert_eq!(
            parse("2026-12-01T00:00:10Z").unwrap().seconds,
            1_796_083_210
        );
        assert_eq!(parse("2026-12-01").unwrap().seconds, 1_796_083_200);
        let day_ago = parse("1d").unwrap().seconds;
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        assert!((now - 86_400 - day_ago).abs() <= 2);
        assert!(parse("yesterday").is_err());
        assert!(parse("-5m").is_err());
    }
}
