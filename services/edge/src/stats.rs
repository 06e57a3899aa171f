//! Per-target request statistics for the ops port's `/admin/edge`:
//! requests, failures and latency percentiles computed from an HDR
//! histogram (not only Prometheus buckets).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies up to this are recorded exactly enough; longer ones saturate.
const MAX_MICROS: u64 = 3_600_000_000;

#[derive(Debug)]
pub struct TargetStats {
    requests: AtomicU64,
    failures: AtomicU64,
    /// Time to the response head, in microseconds.
    latency: Mutex<Histogram<u64>>,
}

impl Default for TargetStats {
    #[allow(clippy::expect_used)] // constant bounds, valid by construction
    fn default() -> Self {
        Self {
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            // Two significant figures: 1% error, a few KiB per target.
            latency: Mutex::new(
                Histogram::new_with_bounds(1, MAX_MICROS, 2).expect("valid histogram bounds"),
            ),
        }
    }
}

impl TargetStats {
    pub fn record(&self, failed: bool, took: Duration) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(took.as_micros())
            .unwrap_or(MAX_MICROS)
            .clamp(1, MAX_MICROS);
        let mut latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = latency.record(micros);
    }

    /// `{requests, failures, error_rate, p50_ms, p95_ms, p99_ms}`.
    pub fn snapshot(&self) -> serde_json::Value {
        let requests = self.requests.load(Ordering::Relaxed);
        let failures = self.failures.load(Ordering::Relaxed);
        let latency = self.latency.lock().unwrap_or_else(PoisonError::into_inner);
        let percentile = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
        serde_json::json!({
            "requests": requests,
            "failures": failures,
            "error_rate": if requests == 0 { 0.0 } else { failures as f64 / requests as f64 },
            "p50_ms": percentile(0.50),
            "p95_ms": percentile(0.95),
            "p99_ms": percentile(0.99),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_error_rate_come_from_what_was_recorded() {
        let stats = TargetStats::default();
        for millis in 1..=100 {
            stats.record(millis > 90, Duration::from_millis(millis));
        }
        let snapshot = stats.snapshot();
        assert_eq!(snapshot["requests"], 100);
        assert_eq!(snapshot["failures"], 10);
        assert!((snapshot["error_rate"].as_f64().unwrap() - 0.1).abs() < 1e-9);
        let p50 = snapshot["p50_ms"].as_f64().unwrap();
        let p99 = snapshot["p99_ms"].as_f64().unwrap();
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=100.5).contains(&p99), "{p99}");
    }
}
