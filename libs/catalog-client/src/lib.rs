//! The edge's local copy of the catalog.
//!
//! [`CatalogCache`] holds an indexed, immutable [`CatalogView`] behind an
//! `ArcSwap`: request handlers load it without locks and never wait for an
//! update, and an update swaps in a new view. [`follow`] keeps it current
//! from `WatchSnapshot`, reconnecting with backoff; while the catalog is
//! away the edge keeps serving the last view it had.

mod view;

pub use view::{ApiEntry, CatalogView, price_table};

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use gateway_proto::catalog::v1 as pb;
use gateway_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use gateway_proto::catalog::v1::watch_snapshot_response::Event;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;

/// The current catalog view, shared by every request handler.
#[derive(Clone)]
pub struct CatalogCache {
    view: Arc<ArcSwap<CatalogView>>,
    version: watch::Sender<i64>,
}

impl Default for CatalogCache {
    fn default() -> Self {
        Self::new()
    }
}

impl CatalogCache {
    /// An empty cache (version 0) until the first snapshot arrives.
    pub fn new() -> Self {
        Self {
            view: Arc::new(ArcSwap::from_pointee(CatalogView::default())),
            version: watch::channel(0).0,
        }
    }

    /// The current view; cheap, lock-free, and consistent for as long as
    /// the caller holds it.
    pub fn view(&self) -> Arc<CatalogView> {
        self.view.load_full()
    }

    pub fn version(&self) -> i64 {
        *self.version.borrow()
    }

    /// Resolves once the cache holds `version` or newer.
    pub async fn wait_for_version(&self, version: i64) {
        let mut receiver = self.version.subscribe();
        let _ = receiver.wait_for(|current| *current >= version).await;
    }

    /// True once a first snapshot has been loaded (readiness).
    pub fn is_primed(&self) -> bool {
        self.view.load().primed
    }

    fn replace(&self, view: CatalogView) {
        let version = view.version;
        self.view.store(Arc::new(view));
        self.version.send_replace(version);
    }
}

/// How the follower reaches the catalog.
#[derive(Clone)]
pub struct Connection {
    pub endpoint: String,
    /// `x-admin-key` or `authorization: Bearer ...`: snapshots carry secrets,
    /// so the catalog serves them to superadmins only.
    pub credential: (&'static str, String),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("credential", &"[redacted]")
            .finish()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows `WatchSnapshot` into `cache` until `shutdown`, reconnecting with
/// exponential backoff and resuming from the version it holds.
pub async fn follow(connection: Connection, cache: CatalogCache, shutdown: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let outcome = tokio::select! {
            outcome = stream_once(&connection, &cache) => outcome,
            () = shutdown.cancelled() => return,
        };
        match outcome {
            Ok(progressed) => {
                tracing::info!(
                    version = cache.version(),
                    "catalog stream ended; reconnecting"
                );
                if progressed {
                    backoff = MIN_BACKOFF;
                }
            }
            Err(error) => {
                tracing::warn!(%error, version = cache.version(), "catalog stream failed; serving the last snapshot");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One stream, from connect to its end. `Ok(true)` if anything was applied.
async fn stream_once(connection: &Connection, cache: &CatalogCache) -> Result<bool, String> {
    let channel = tonic::transport::Endpoint::from_shared(connection.endpoint.clone())
        .map_err(|error| error.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let mut request = tonic::Request::new(pb::WatchSnapshotRequest {
        from_version: cache.version(),
    });
    let (key, value) = &connection.credential;
    let value = MetadataValue::try_from(value.as_str())
        .map_err(|_| "credential is not valid metadata".to_owned())?;
    request.metadata_mut().insert(*key, value);
    let mut stream = CatalogServiceClient::new(channel)
        .watch_snapshot(request)
        .await
        .map_err(|status| format!("{}: {}", status.code(), status.message()))?
        .into_inner();
    let mut progressed = false;
    while let Some(message) = stream.next().await {
        let message =
            message.map_err(|status| format!("{}: {}", status.code(), status.message()))?;
        match message.event {
            Some(Event::Snapshot(snapshot)) => {
                cache.replace(CatalogView::from_snapshot(snapshot));
                progressed = true;
            }
            Some(Event::Change(change)) => {
                let current = cache.view();
                if change.version <= current.version {
                    continue; // Already applied (a resumed stream may repeat).
                }
                if change.version != current.version + 1 {
                    // A gap: resume from what we hold.
                    return Err(format!(
                        "change {} after version {}",
                        change.version, current.version
                    ));
                }
                cache.replace(current.apply(change));
                progressed = true;
            }
            Some(Event::Heartbeat(_)) | None => {}
        }
    }
    Ok(progressed)
}
