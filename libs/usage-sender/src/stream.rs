//! The stream task: reads the spool from its cursor onto one Ingest stream
//! at a time, and moves the cursor as batches are acked.
//!
//! Every event is in the spool before the task sees it (see `journal.rs`):
//! the spool is the queue. Connected, the task fills its window of
//! unacked batches with reads from where it got to, and once it has read
//! everything it waits for the journal's wake-up. A broken stream loses
//! nothing: the unacked batches are still behind the cursor, and the next
//! stream (or the next process, after a crash) reads them again; the
//! server is idempotent by event id. Spool I/O runs on the blocking pool
//! so a slow disk never stalls the runtime's workers.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use gateway_proto::usage::v1::IngestResponse;
use http::uri::PathAndQuery;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::batch::SpooledBatch;
use crate::spool::{Position, Spool};
use crate::stats::Stats;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Gauges and the `Interval` fsync check.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);
/// While the service stays away, repeat the warning every this many failed
/// attempts (about every eight minutes at the maximum backoff).
const WARN_EVERY_FAILURES: u32 = 100;

pub(crate) struct Settings {
    pub(crate) endpoint: Endpoint,
    pub(crate) connect_timeout: Duration,
    pub(crate) credential: (AsciiMetadataKey, AsciiMetadataValue),
    pub(crate) batch_max_events: usize,
    pub(crate) batch_linger: Duration,
    pub(crate) batch_max_bytes: usize,
    pub(crate) max_unacked_batches: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
}

pub(crate) struct Worker {
    settings: Settings,
    spool: Arc<Spool>,
    appended: Arc<Notify>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    /// Consecutive failed streams, for log levels.
    failures: u32,
}

/// How one stream ended.
enum Outcome {
    Shutdown,
    Broken { progressed: bool, reason: String },
}

/// Why the connected loop stopped.
enum Exit {
    Shutdown,
    Broken(String),
}

/// A batch written to the stream and not acked yet; acking it moves the
/// cursor to `end`.
struct Batch {
    sequence: i64,
    count: usize,
    end: Position,
}

/// The state of one connected stream.
struct Session {
    /// `None` once closed (shutdown), which ends the request stream.
    requests: Option<mpsc::Sender<SpooledBatch>>,
    next_sequence: i64,
    in_flight: VecDeque<Batch>,
    read_pos: Position,
    /// Everything appended had been read, as of `spool_seen`.
    caught_up: bool,
    /// `Spool::appended` when the reads caught up.
    spool_seen: u64,
    /// Caught up, with new events gathering until then (`batch_linger`).
    linger_until: Option<Instant>,
    /// Since when the oldest in-flight batch has waited for an ack.
    waiting_since: Instant,
    progressed: bool,
}

impl Worker {
    pub(crate) fn new(
        settings: Settings,
        spool: Arc<Spool>,
        appended: Arc<Notify>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            settings,
            spool,
            appended,
            stats,
            shutdown,
            failures: 0,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_EVERY);
        housekeeping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut backoff = MIN_BACKOFF;
        loop {
            match self.stream_once(&mut housekeeping).await {
                Outcome::Shutdown => break,
                Outcome::Broken { progressed, reason } => {
                    self.stats.set_connected(false);
                    if progressed {
                        backoff = MIN_BACKOFF;
                        self.failures = 0;
                    }
                    self.failures = self.failures.saturating_add(1);
                    if self.failures % WARN_EVERY_FAILURES == 1 {
                        tracing::warn!(%reason, failures = self.failures, "usage stream down; usage events wait in the spool until it is back");
                    } else {
                        tracing::debug!(%reason, failures = self.failures, "usage stream still down");
                    }
                    let delay = jittered(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    let slept = self
                        .until(&mut housekeeping, tokio::time::sleep(delay))
                        .await;
                    if slept.is_none() {
                        break;
                    }
                }
            }
        }
        self.finish().await;
    }

    /// Connects and runs one Ingest stream to its end.
    async fn stream_once(&mut self, housekeeping: &mut tokio::time::Interval) -> Outcome {
        let endpoint = self.settings.endpoint.clone();
        // The endpoint's connect timeout covers TCP only; this one also
        // covers the HTTP/2 handshake with a peer that accepts but is stuck.
        let connect = tokio::time::timeout(self.settings.connect_timeout, endpoint.connect());
        let channel = match self.until(housekeeping, connect).await {
            None => return Outcome::Shutdown,
            Some(Err(_)) => return broken("connect: timed out".to_owned()),
            Some(Ok(Err(error))) => return broken(format!("connect: {}", describe(&error))),
            Some(Ok(Ok(channel))) => channel,
        };
        // Never fuller than the in-flight window, so `try_send` cannot fail
        // while the stream is alive.
        let (requests, outgoing) = mpsc::channel(self.settings.max_unacked_batches);
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
        let (key, value) = &self.settings.credential;
        request.metadata_mut().insert(key.clone(), value.clone());
        let open = tokio::time::timeout(self.settings.ack_timeout, open_ingest(channel, request));
        let mut responses = match self.until(housekeeping, open).await {
            None => return Outcome::Shutdown,
            Some(Err(_)) => return broken("Ingest: no response headers".to_owned()),
            Some(Ok(Err(status))) => {
                return broken(format!("Ingest: {}: {}", status.code(), status.message()));
            }
            Some(Ok(Ok(response))) => response.into_inner(),
        };
        self.stats.set_connected(true);
        if self.failures > 0 {
            tracing::info!("usage stream connected again");
        }
        let mut session = Session {
            requests: Some(requests),
            next_sequence: 1,
            in_flight: VecDeque::new(),
            read_pos: self.spool.cursor(),
            caught_up: false,
            spool_seen: 0,
            linger_until: None,
            waiting_since: Instant::now(),
            progressed: false,
        };
        match self.drive(&mut session, &mut responses, housekeeping).await {
            Exit::Shutdown => {
                self.close(&mut session, &mut responses).await;
                Outcome::Shutdown
            }
            Exit::Broken(reason) => Outcome::Broken {
                progressed: session.progressed,
                reason,
            },
        }
    }

    /// The connected loop: keeps the window full of spool reads and reads
    /// acks concurrently.
    async fn drive(
        &mut self,
        session: &mut Session,
        responses: &mut tonic::Streaming<IngestResponse>,
        housekeeping: &mut tokio::time::Interval,
    ) -> Exit {
        loop {
            if session.caught_up && self.spool.appended() != session.spool_seen {
                self.linger_or_read(session);
            }
            if !session.caught_up
                && let Err(reason) = self.read_more(session).await
            {
                return Exit::Broken(reason);
            }
            let ack_deadline = (!session.in_flight.is_empty())
                .then(|| session.waiting_since + self.settings.ack_timeout);
            let window_full = session.in_flight.len() >= self.settings.max_unacked_batches;
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Exit::Shutdown,
                message = responses.message() => match message {
                    Ok(Some(ack)) => {
                        if let Err(reason) = self.on_ack(session, ack).await {
                            return Exit::Broken(reason);
                        }
                    }
                    Ok(None) => return Exit::Broken("the usage service ended the stream".to_owned()),
                    Err(status) => {
                        return Exit::Broken(format!("{}: {}", status.code(), status.message()));
                    }
                },
                () = sleep_until(ack_deadline), if ack_deadline.is_some() => {
                    return Exit::Broken(format!("no ack within {:?}", self.settings.ack_timeout));
                }
                _ = housekeeping.tick() => self.housekeep().await,
                () = sleep_until(session.linger_until), if session.linger_until.is_some() => {}
                // More was appended; with a full window, acks come first.
                () = self.appended.notified(), if session.caught_up && !window_full => {}
            }
        }
    }

    /// New events after catching up: read them once a full batch waits or
    /// the linger is over, else start (or keep) lingering.
    fn linger_or_read(&self, session: &mut Session) {
        let pending = self.spool.appended() - session.spool_seen;
        let now = Instant::now();
        let until = *session
            .linger_until
            .get_or_insert(now + self.settings.batch_linger);
        if pending >= self.settings.batch_max_events as u64 || now >= until {
            session.caught_up = false;
            session.linger_until = None;
        }
    }

    /// Fills the window with batches read from the spool, until the window
    /// is full or the read position reaches the spool's end.
    async fn read_more(&mut self, session: &mut Session) -> Result<(), String> {
        let (max_events, max_bytes) = (
            self.settings.batch_max_events,
            self.settings.batch_max_bytes,
        );
        while !session.caught_up && session.in_flight.len() < self.settings.max_unacked_batches {
            let from = session.read_pos;
            let read = match self
                .blocking(move |spool| spool.read(from, max_events, max_bytes))
                .await
            {
                Some(Ok(read)) => read,
                Some(Err(error)) => return Err(format!("reading the usage spool: {error}")),
                None => return Err("reading the usage spool failed".to_owned()),
            };
            session.read_pos = read.end;
            if read.caught_up {
                session.caught_up = true;
                session.spool_seen = read.appended;
            }
            if read.events.is_empty() {
                if read.end != from {
                    self.advance_past_skipped(session, read.end).await;
                }
                continue;
            }
            let count = read.events.len();
            session.dispatch(read.events, count, read.end, &self.stats)?;
        }
        Ok(())
    }

    /// A read that only skipped unreadable records still moves the cursor:
    /// with the newest in-flight batch if there is one (the cursor must not
    /// pass unacked records), else now.
    async fn advance_past_skipped(&self, session: &mut Session, end: Position) {
        match session.in_flight.back_mut() {
            Some(newest) => newest.end = end,
            None => self.commit(end).await,
        }
    }

    async fn on_ack(&self, session: &mut Session, ack: IngestResponse) -> Result<(), String> {
        let expected = session.in_flight.front().map(|batch| batch.sequence);
        if expected != Some(ack.sequence) {
            return Err(format!(
                "ack for batch {} while expecting {expected:?}",
                ack.sequence
            ));
        }
        let Some(batch) = session.in_flight.pop_front() else {
            return Err("ack with nothing in flight".to_owned());
        };
        for rejected in &ack.rejected {
            tracing::warn!(
                event_id = %rejected.event_id,
                reason = %rejected.reason,
                "usage service rejected a usage event; dropped"
            );
        }
        self.stats.add_acked(batch.count);
        self.stats.add_rejected(ack.rejected.len());
        session.progressed = true;
        session.waiting_since = Instant::now();
        self.commit(batch.end).await;
        Ok(())
    }

    /// Shutdown while connected: send nothing new, end the request stream,
    /// and give in-flight batches `shutdown_grace` to be acked (the rest
    /// stay behind the cursor for the next start).
    async fn close(&self, session: &mut Session, responses: &mut tonic::Streaming<IngestResponse>) {
        session.requests = None;
        let deadline = Instant::now() + self.settings.shutdown_grace;
        while !session.in_flight.is_empty() {
            tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(ack)) => {
                        if let Err(reason) = self.on_ack(session, ack).await {
                            tracing::warn!(%reason, "usage stream broke during shutdown");
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                },
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        unacked_batches = session.in_flight.len(),
                        "usage shutdown grace is over; unacked batches stay in the spool"
                    );
                    break;
                }
            }
        }
    }

    /// Awaits `future` while keeping house; `None` on shutdown.
    async fn until<F: Future>(
        &mut self,
        housekeeping: &mut tokio::time::Interval,
        future: F,
    ) -> Option<F::Output> {
        tokio::pin!(future);
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                output = &mut future => return Some(output),
                _ = housekeeping.tick() => self.housekeep().await,
            }
        }
    }

    /// Shutdown: from now on every append is fsynced, and what is there is.
    async fn finish(self) {
        let synced = self
            .blocking(|spool| {
                spool.sync_every_append();
                spool.sync_now()
            })
            .await;
        if let Some(Err(error)) = synced {
            tracing::error!(%error, "usage spool fsync at shutdown failed");
        }
        self.stats.set_connected(false);
        tracing::info!(
            spool_bytes = self.stats.spool_bytes(),
            "usage sender stopped"
        );
    }

    async fn housekeep(&self) {
        if let Some(Err(error)) = self.blocking(Spool::sync_if_due).await {
            tracing::error!(%error, "usage spool fsync failed");
        }
    }

    async fn commit(&self, end: Position) {
        if let Some(Err(error)) = self.blocking(move |spool| spool.commit(end)).await {
            // The old cursor stays: those events are replayed again later.
            tracing::warn!(%error, "usage spool cursor update failed");
        }
    }

    async fn blocking<R, F>(&self, job: F) -> Option<R>
    where
        F: FnOnce(&Spool) -> R + Send + 'static,
        R: Send + 'static,
    {
        let spool = Arc::clone(&self.spool);
        match tokio::task::spawn_blocking(move || job(&spool)).await {
            Ok(result) => Some(result),
            Err(error) => {
                tracing::error!(%error, "usage spool task failed");
                None
            }
        }
    }
}

fn broken(reason: String) -> Outcome {
    Outcome::Broken {
        progressed: false,
        reason,
    }
}

impl Session {
    /// Numbers a batch, keeps it in flight, and writes it to the stream.
    fn dispatch(
        &mut self,
        events: Vec<Bytes>,
        count: usize,
        end: Position,
        stats: &Stats,
    ) -> Result<(), String> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.in_flight.is_empty() {
            self.waiting_since = Instant::now();
        }
        stats.add_sent(count);
        self.in_flight.push_back(Batch {
            sequence,
            count,
            end,
        });
        let request = SpooledBatch { sequence, events };
        match self
            .requests
            .as_ref()
            .map(|requests| requests.try_send(request))
        {
            Some(Ok(())) => Ok(()),
            _ => Err("the Ingest request stream closed".to_owned()),
        }
    }
}

/// `UsageService/Ingest`, as the generated client calls it, with batches
/// whose events are encoded already.
async fn open_ingest(
    channel: Channel,
    request: tonic::Request<ReceiverStream<SpooledBatch>>,
) -> Result<tonic::Response<tonic::Streaming<IngestResponse>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|error| tonic::Status::unavailable(format!("channel not ready: {error}")))?;
    let codec = tonic_prost::ProstCodec::<SpooledBatch, IngestResponse>::default();
    let path = PathAndQuery::from_static("/gateway.usage.v1.UsageService/Ingest");
    grpc.streaming(request, path, codec).await
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Up to +20%, so many edges do not reconnect in step; the clock's
/// nanoseconds are random enough for that.
fn jittered(delay: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    delay + delay.mul_f64(f64::from(nanos % 1000) / 5000.0)
}

/// An error with its sources (tonic's transport error alone says only
/// "transport error").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
