//! Counters kept twice: as atomics for [`crate::UsageSender::stats`] (tests,
//! health pages) and as `metrics` series for the exporter.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use metrics::{Counter, Gauge};

pub(crate) struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    spooled: AtomicU64,
    dropped: AtomicU64,
    spool_bytes: AtomicU64,
    connected: AtomicBool,
    series: Series,
}

/// The exporter's handles, taken once: `send` runs per request, and a
/// registry lookup per call showed in the edge's allocation profile.
struct Series {
    sent: Counter,
    acked: Counter,
    rejected: Counter,
    spooled: Counter,
    dropped: Counter,
    spool_bytes: Gauge,
    connected: Gauge,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            sent: AtomicU64::default(),
            acked: AtomicU64::default(),
            rejected: AtomicU64::default(),
            spooled: AtomicU64::default(),
            dropped: AtomicU64::default(),
            spool_bytes: AtomicU64::default(),
            connected: AtomicBool::default(),
            series: Series {
                sent: metrics::counter!("usage_sender_sent_total"),
                acked: metrics::counter!("usage_sender_acked_total"),
                rejected: metrics::counter!("usage_sender_rejected_total"),
                spooled: metrics::counter!("usage_sender_spooled_total"),
                dropped: metrics::counter!("usage_sender_dropped_total"),
                spool_bytes: metrics::gauge!("usage_sender_spool_bytes"),
                connected: metrics::gauge!("usage_sender_connected"),
            },
        }
    }
}

fn widen(count: usize) -> u64 {
    u64::try_from(count).unwrap_or(u64::MAX)
}

impl Stats {
    /// Events written to an Ingest stream (a replay counts again).
    pub(crate) fn add_sent(&self, count: usize) {
        self.sent.fetch_add(widen(count), Ordering::Relaxed);
        self.series.sent.increment(widen(count));
    }

    /// Events of acked batches, rejected ones included.
    pub(crate) fn add_acked(&self, count: usize) {
        self.acked.fetch_add(widen(count), Ordering::Relaxed);
        self.series.acked.increment(widen(count));
    }

    /// Events the usage service refused as permanently invalid.
    pub(crate) fn add_rejected(&self, count: usize) {
        self.rejected.fetch_add(widen(count), Ordering::Relaxed);
        self.series.rejected.increment(widen(count));
    }

    /// Events appended to the spool.
    pub(crate) fn add_spooled(&self, count: usize) {
        self.spooled.fetch_add(widen(count), Ordering::Relaxed);
        self.series.spooled.increment(widen(count));
    }

    /// Events lost on purpose: spool full, unreadable spool records, or an
    /// event too large to ever fit a batch.
    pub(crate) fn add_dropped(&self, count: usize) {
        self.dropped.fetch_add(widen(count), Ordering::Relaxed);
        self.series.dropped.increment(widen(count));
    }

    pub(crate) fn set_spool_bytes(&self, bytes: u64) {
        self.spool_bytes.store(bytes, Ordering::Relaxed);
        self.series.spool_bytes.set(bytes as f64);
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        self.series.connected.set(if connected { 1.0 } else { 0.0 });
    }

    pub(crate) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
    pub(crate) fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
    pub(crate) fn spooled(&self) -> u64 {
        self.spooled.load(Ordering::Relaxed)
    }
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    pub(crate) fn spool_bytes(&self) -> u64 {
        self.spool_bytes.load(Ordering::Relaxed)
    }
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}
