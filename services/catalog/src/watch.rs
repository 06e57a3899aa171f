//! `WatchSnapshot`: a full snapshot when the client has nothing usable,
//! then every change in version order, live; heartbeats when idle.

use std::sync::Arc;
use std::time::Duration;

use gateway_proto::catalog::v1 as pb;
use gateway_proto::catalog::v1::watch_snapshot_response::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::catalog::Registry;
use crate::error::CatalogError;

/// How often a watcher looks for other replicas' changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// A client further behind than this gets a full snapshot instead.
const MAX_REPLAY: i64 = 10_000;
const BATCH: i64 = 200;

pub fn spawn(
    catalog: Arc<Registry>,
    from_version: i64,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<pb::WatchSnapshotResponse, CatalogError>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(error) = run(&catalog, from_version, &shutdown, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    receiver
}

fn event(event: Event) -> Result<pb::WatchSnapshotResponse, CatalogError> {
    Ok(pb::WatchSnapshotResponse { event: Some(event) })
}

async fn run(
    catalog: &Registry,
    from_version: i64,
    shutdown: &CancellationToken,
    sender: &mpsc::Sender<Result<pb::WatchSnapshotResponse, CatalogError>>,
) -> Result<(), CatalogError> {
    let changed = catalog.changed();
    let current = catalog.store().current_version().await?;
    let oldest = catalog.store().oldest_change().await?;
    let behind_log = oldest > 0 && from_version < oldest - 1;
    let mut version = from_version;
    if from_version <= 0
        || from_version > current
        || behind_log
        || current - from_version > MAX_REPLAY
    {
        let snapshot = catalog.snapshot().await?;
        version = snapshot.version;
        if sender.send(event(Event::Snapshot(snapshot))).await.is_err() {
            return Ok(());
        }
    } else if from_version == current {
        let heartbeat = heartbeat(version);
        if sender
            .send(event(Event::Heartbeat(heartbeat)))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let changes = catalog.store().changes_after(version, BATCH).await?;
        for change in &changes {
            let change = catalog.change_at(change).await?;
            version = change.version;
            if sender.send(event(Event::Change(change))).await.is_err() {
                return Ok(());
            }
            last_sent = tokio::time::Instant::now();
        }
        if !changes.is_empty() {
            continue;
        }
        if last_sent.elapsed() >= HEARTBEAT_INTERVAL {
            if sender
                .send(event(Event::Heartbeat(heartbeat(version))))
                .await
                .is_err()
            {
                return Ok(());
            }
            last_sent = tokio::time::Instant::now();
        }
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(POLL_INTERVAL) => {}
            () = sender.closed() => return Ok(()),
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

fn heartbeat(version: i64) -> pb::SnapshotHeartbeat {
    pb::SnapshotHeartbeat {
        version,
        time: Some(gateway_proto::timestamp_from_micros(
            gateway_storage::now_micros(),
        )),
    }
}
