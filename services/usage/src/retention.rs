//! Retention: events, their audit index rows and whole day directories of
//! audit segments older than the configured days are removed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_runtime::CancellationToken;
use gateway_storage::calendar::utc_day_label;
use gateway_storage::now_micros;

use crate::store::UsageStore;

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// Rows per delete statement: short transactions, no long locks.
const DELETE_CHUNK: i64 = 5_000;

/// Runs a sweep every `interval` until `shutdown`.
pub async fn sweep(
    store: UsageStore,
    audit_dir: PathBuf,
    retention_days: u32,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let cutoff = now_micros() - i64::from(retention_days) * MICROS_PER_DAY;
        match sweep_once(&store, &audit_dir, cutoff).await {
            Ok((events, days)) if events > 0 || days > 0 => {
                tracing::info!(events, days, "retention removed old usage");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention sweep failed; retrying later"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Removes what happened before `cutoff`; returns (events, day dirs).
pub async fn sweep_once(
    store: &UsageStore,
    audit_dir: &Path,
    cutoff: i64,
) -> Result<(u64, usize), Box<dyn std::error::Error + Send + Sync>> {
    let mut events = 0;
    loop {
        let deleted = store.delete_before(cutoff, DELETE_CHUNK).await?;
        events += deleted;
        if deleted < DELETE_CHUNK as u64 {
            break;
        }
    }
    // A day directory goes once its whole day is before the cutoff.
    let keep_from = utc_day_label(cutoff);
    let mut days = 0;
    if let Ok(entries) = std::fs::read_dir(audit_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_day = name.len() == 10 && name.bytes().filter(|byte| *byte == b'_').count() == 2;
            if is_day && name < keep_from && entry.path().is_dir() {
                std::fs::remove_dir_all(entry.path())?;
                days += 1;
            }
        }
    }
    Ok((events, days))
}
