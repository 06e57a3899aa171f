//! The edge's usage event sender.
//!
//! The on-disk spool is the queue. [`UsageSender::send`] is called once
//! per request and appends the event to the spool right away, concurrent
//! calls sharing one write (see `journal.rs`; the page cache, or the disk
//! under [`FsyncPolicy::Always`]). One background task (see `stream.rs`)
//! reads the spool onto a long-lived `UsageService/Ingest` stream and moves
//! the spool's persisted cursor as the usage service acks. So a process
//! killed right after answering loses no event: the next start replays
//! whatever was not acked, in order, whether the service was up or away.
//!
//! Delivery is at least once: the server is idempotent by `event_id`, so a
//! replay after a crash or a broken stream is harmless. Events are lost only
//! on purpose, and counted in `usage_sender_dropped_total`:
//! - the spool is full (`spool_max_bytes`): new events are dropped, with an
//!   error log (rate-limited), until acks make room (the edge refuses new
//!   traffic before that happens, see [`UsageSender::has_room`]);
//! - an event is larger than `batch_max_bytes` and so could never be sent;
//! - a spool record is unreadable (disk corruption);
//! - a disk write fails.
//!
//! The usage service may also reject an event as permanently invalid; the
//! sender logs it at warn and drops it (`usage_sender_rejected_total`).
//!
//! Metrics: `usage_sender_spool_bytes`,
//! `usage_sender_connected` (gauges); `usage_sender_sent_total`,
//! `usage_sender_acked_total`, `usage_sender_rejected_total`,
//! `usage_sender_spooled_total`, `usage_sender_dropped_total` (counters).

mod batch;
mod journal;
mod spool;

/// The spool's record decoder, for the edge's fuzz targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::spool::{encode_segment, replay_segment};
}
mod stats;
mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway_proto::usage::v1::UsageEvent;
use prost::Message as _;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use crate::journal::Journal;
use crate::spool::{Spool, SpoolOptions};
use crate::stats::Stats;

/// What [`UsageSender::has_room`] keeps free below the spool's bound, so
/// requests already admitted still find room for their events.
pub const ROOM_BYTES: u64 = 1 << 20;

/// When the spool is fsynced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append (each group of concurrent `send`s): nothing
    /// answered is lost to a power cut, at a disk flush per write.
    Always,
    /// At most this long after an append (and at rotation and shutdown): a
    /// power cut may lose that much; a process crash loses nothing.
    Interval(Duration),
    /// Left to the OS, except at shutdown.
    Never,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        Self::Interval(Duration::from_secs(1))
    }
}

/// How the sender reaches the usage service and where it spools.
#[derive(Clone)]
pub struct SenderConfig {
    /// The usage service's gRPC endpoint, e.g. `http://usage:50051`.
    pub endpoint: String,
    /// Metadata header sent with every Ingest call: `("x-admin-key", key)`
    /// by default (Ingest is for superadmins); e.g.
    /// `("authorization", "Bearer ...")` for a JWT.
    pub credential: (String, String),
    pub connect_timeout: Duration,
    /// The spool directory; one sender at a time (it is locked).
    pub spool_dir: PathBuf,
    /// Past this, new events are dropped (and counted) rather than spooled.
    pub spool_max_bytes: u64,
    /// Spool segment size: a segment is deleted once all of it is acked.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
    pub batch_max_events: usize,
    /// Once the stream has caught up with the spool, how long new events
    /// may gather before the next read (unless a full batch is waiting):
    /// every event is already on disk, so waiting costs no safety, and at
    /// low rates it spares the usage service a transaction per event.
    pub batch_linger: Duration,
    /// Bound on a batch's encoded events, under the server's max message
    /// size (tonic's default is 4 MiB). A single event larger than this is
    /// dropped by `send`: it could never be delivered.
    pub batch_max_bytes: usize,
    pub max_unacked_batches: usize,
    /// A stream with batches in flight and no ack for this long is
    /// abandoned and its batches resent on a new one.
    pub ack_timeout: Duration,
    /// On shutdown, how long to wait for in-flight acks before spooling.
    pub shutdown_grace: Duration,
}

impl SenderConfig {
    /// The defaults, authenticating with `x-admin-key: admin_key`.
    pub fn new(
        endpoint: impl Into<String>,
        admin_key: impl Into<String>,
        spool_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            endpoint: endpoint.into(),
            credential: ("x-admin-key".to_owned(), admin_key.into()),
            connect_timeout: Duration::from_secs(2),
            spool_dir: spool_dir.into(),
            spool_max_bytes: 1 << 30,
            segment_bytes: 8 << 20,
            fsync: FsyncPolicy::default(),
            batch_max_events: 500,
            batch_linger: Duration::from_millis(10),
            batch_max_bytes: 3 << 20,
            // As many as the usage service stores at once on PostgreSQL.
            max_unacked_batches: 16,
            ack_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for SenderConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SenderConfig")
            .field("endpoint", &self.endpoint)
            .field("credential", &(&self.credential.0, "[redacted]"))
            .field("connect_timeout", &self.connect_timeout)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("segment_bytes", &self.segment_bytes)
            .field("fsync", &self.fsync)
            .field("batch_max_events", &self.batch_max_events)
            .field("batch_linger", &self.batch_linger)
            .field("batch_max_bytes", &self.batch_max_bytes)
            .field("max_unacked_batches", &self.max_unacked_batches)
            .field("ack_timeout", &self.ack_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("invalid usage endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("invalid usage credential header: {0}")]
    Credential(String),
    #[error("invalid usage sender config: {0}")]
    Config(&'static str),
    #[error("usage sender must start inside a tokio runtime")]
    NoRuntime,
    #[error("cannot open the usage spool at {dir}: {source}")]
    Spool {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A snapshot of the sender's counters (since start).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Bytes of spool segment files on disk.
    pub spooled_bytes: u64,
    /// Events written to a stream (replays count again).
    pub sent: u64,
    /// Events in acked batches.
    pub acked: u64,
    /// Events the usage service rejected as invalid (dropped).
    pub rejected: u64,
    /// Events appended to the spool (every event `send` kept).
    pub spooled: u64,
    /// Events dropped: spool full, too large, unreadable, or write error.
    pub dropped: u64,
    /// An Ingest stream is open.
    pub connected: bool,
}

/// The handle the edge keeps; cheap to clone.
#[derive(Clone)]
pub struct UsageSender {
    journal: Arc<Journal>,
    stats: Arc<Stats>,
    max_event_bytes: usize,
    spool_max_bytes: u64,
}

impl UsageSender {
    /// Opens the spool (synchronously, so a bad directory fails here) and
    /// spawns the stream task, which runs until `shutdown` is cancelled and
    /// everything unacked is in the spool. Await the handle before exit.
    pub fn start(
        config: SenderConfig,
        shutdown: CancellationToken,
    ) -> Result<(UsageSender, tokio::task::JoinHandle<()>), SenderError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| SenderError::NoRuntime)?;
        if config.batch_max_events == 0
            || config.batch_max_bytes == 0
            || config.max_unacked_batches == 0
            || config.segment_bytes == 0
        {
            return Err(SenderError::Config(
                "batch_max_events, batch_max_bytes, max_unacked_batches and segment_bytes must be positive",
            ));
        }
        let endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())
            .map_err(|error| SenderError::Endpoint {
                endpoint: config.endpoint.clone(),
                reason: error.to_string(),
            })?
            .connect_timeout(config.connect_timeout)
            .tcp_nodelay(true)
            // Notices a peer that vanished without closing the connection.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        let (name, value) = &config.credential;
        let credential = (
            AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| SenderError::Credential(format!("bad header name {name:?}")))?,
            AsciiMetadataValue::try_from(value.as_str())
                .map_err(|_| SenderError::Credential(format!("bad value for {name}")))?,
        );

        let stats = Arc::new(Stats::default());
        let spool = Spool::open(
            SpoolOptions {
                dir: config.spool_dir.clone(),
                max_bytes: config.spool_max_bytes,
                segment_bytes: config.segment_bytes,
                fsync: config.fsync,
            },
            stats.clone(),
        )
        .map_err(|source| SenderError::Spool {
            dir: config.spool_dir.clone(),
            source,
        })?;
        let spool = Arc::new(spool);
        let appended = Arc::new(Notify::new());
        let worker = stream::Worker::new(
            stream::Settings {
                endpoint,
                connect_timeout: config.connect_timeout,
                credential,
                batch_max_events: config.batch_max_events,
                batch_linger: config.batch_linger,
                batch_max_bytes: config.batch_max_bytes,
                max_unacked_batches: config.max_unacked_batches,
                ack_timeout: config.ack_timeout,
                shutdown_grace: config.shutdown_grace,
            },
            spool.clone(),
            appended.clone(),
            stats.clone(),
            shutdown,
        );
        let task = runtime.spawn(worker.run());
        Ok((
            UsageSender {
                journal: Arc::new(Journal::new(spool, appended)),
                stats,
                max_event_bytes: config.batch_max_bytes,
                spool_max_bytes: config.spool_max_bytes,
            },
            task,
        ))
    }

    /// Appends `event` to the spool and returns once it is there, never
    /// waiting on the network: at most one write to the page cache shared
    /// with concurrent calls (plus an fsync under [`FsyncPolicy::Always`]).
    pub fn send(&self, event: UsageEvent) {
        let bytes = event.encoded_len();
        if bytes > self.max_event_bytes {
            tracing::error!(
                event_id = %event.event_id,
                bytes,
                max = self.max_event_bytes,
                "usage event is larger than a batch may be; dropped"
            );
            self.stats.add_dropped(1);
            return;
        }
        self.journal.push(event);
    }

    /// Whether the spool can take more: below its bound by at least
    /// [`ROOM_BYTES`] (an event with bodies captured in full, many times
    /// over). The edge refuses new traffic otherwise (unless configured to
    /// drop), since unbilled traffic is lost money.
    pub fn has_room(&self) -> bool {
        self.stats.spool_bytes() + ROOM_BYTES <= self.spool_max_bytes
    }

    pub fn stats(&self) -> SenderStats {
        SenderStats {
            spooled_bytes: self.stats.spool_bytes(),
            sent: self.stats.sent(),
            acked: self.stats.acked(),
            rejected: self.stats.rejected(),
            spooled: self.stats.spooled(),
            dropped: self.stats.dropped(),
            connected: self.stats.connected(),
        }
    }
}
