//! `WatchKeys`: a resumable stream of the change log.
//!
//! Each watcher polls the log (so writes through any replica on the same
//! database arrive) and is woken at once by writes through this replica.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::error::IdentityError;
use crate::store::{Change, IdentityStore};

/// How often a watcher looks for other replicas' changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// An idle stream still sends an empty message this often, so clients and
/// proxies can tell a quiet stream from a dead one.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
const BATCH: i64 = 500;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBatch {
    pub changes: Vec<Change>,
    /// Drop every cached principal and continue from `version`.
    pub reset: bool,
    pub version: i64,
}

/// Starts a watcher task; it ends when the receiver is dropped, on
/// `shutdown`, or after sending a store error.
pub fn spawn(
    store: IdentityStore,
    changed: Arc<Notify>,
    from_version: i64,
    shutdown: CancellationToken,
) -> mpsc::Receiver<Result<WatchBatch, IdentityError>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        if let Err(error) = run(&store, &changed, from_version, &shutdown, &sender).await {
            let _ = sender.send(Err(error)).await;
        }
    });
    receiver
}

async fn run(
    store: &IdentityStore,
    changed: &Notify,
    from_version: i64,
    shutdown: &CancellationToken,
    sender: &mpsc::Sender<Result<WatchBatch, IdentityError>>,
) -> Result<(), IdentityError> {
    let current = store.current_version().await?;
    let oldest = store.oldest_version().await?;
    let mut version = from_version;
    let too_old = oldest > 0 && from_version < oldest - 1;
    if from_version <= 0 || from_version > current || too_old {
        let batch = WatchBatch {
            changes: Vec::new(),
            reset: from_version > 0,
            version: current,
        };
        if sender.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
        version = current;
    }
    let mut last_sent = tokio::time::Instant::now();
    loop {
        // Register for wake-ups before reading, so a write between the read
        // and the wait is not missed.
        let notified = changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let changes = store.changes_after(version, BATCH).await?;
        if let Some(last) = changes.last() {
            version = last.version;
            let batch = WatchBatch {
                changes,
                reset: false,
                version,
            };
            if sender.send(Ok(batch)).await.is_err() {
                return Ok(());
            }
            last_sent = tokio::time::Instant::now();
            continue;
        }
        if last_sent.elapsed() >= HEARTBEAT_INTERVAL {
            let heartbeat = WatchBatch {
                changes: Vec::new(),
                reset: false,
                version,
            };
            if sender.send(Ok(heartbeat)).await.is_err() {
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
