//! The stream task: owns the queue's receiving end and one Ingest stream at
//! a time.
//!
//! Connected, it is in one of two modes:
//! - replay: the spool is not empty, so events from the queue are appended
//!   to the spool and batches are read from it (spool order is delivery
//!   order); the cursor moves when those batches are acked;
//! - live: the spool has been caught up with, so queued events are batched
//!   straight onto the stream. If `send` overflows into the spool meanwhile,
//!   the task goes back to replay.
//!
//! When the stream breaks, unacked live batches and pending events go to
//! the spool (unacked spool batches are still there, behind the cursor);
//! until a stream is up again, the queue is drained into the spool. (Only
//! the very first connect lets the queue buffer, to spare the disk at start.) Spool I/O runs
//! on the blocking pool so a slow disk never stalls the runtime's workers.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gateway_proto::usage::v1::usage_service_client::UsageServiceClient;
use gateway_proto::usage::v1::{IngestRequest, IngestResponse, UsageEvent};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use tonic::transport::Endpoint;

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
    pub(crate) batch_max_bytes: usize,
    pub(crate) batch_linger: Duration,
    pub(crate) max_unacked_batches: usize,
    pub(crate) ack_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
}

pub(crate) struct Worker {
    settings: Settings,
    queue: mpsc::Receiver<UsageEvent>,
    /// False once every `UsageSender` is dropped and the queue is empty.
    queue_open: bool,
    spool: Arc<Spool>,
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

/// A batch written to the stream and not acked yet.
struct Batch {
    sequence: i64,
    count: usize,
    origin: Origin,
}

enum Origin {
    /// From the queue: memory is the only copy.
    Live(Vec<UsageEvent>),
    /// From the spool: acking it moves the cursor to `end`.
    Spool { end: Position },
}

/// The state of one connected stream.
struct Session {
    /// `None` once closed (shutdown), which ends the request stream.
    requests: Option<mpsc::Sender<IngestRequest>>,
    next_sequence: i64,
    in_flight: VecDeque<Batch>,
    replaying: bool,
    read_pos: Position,
    /// `Spool::appended` when replay caught up.
    spool_seen: u64,
    /// Live events not yet in a batch, with their encoded sizes.
    pending: VecDeque<(UsageEvent, usize)>,
    pending_bytes: usize,
    linger_until: Option<Instant>,
    /// Since when the oldest in-flight batch has waited for an ack.
    waiting_since: Instant,
    progressed: bool,
}

impl Worker {
    pub(crate) fn new(
        settings: Settings,
        queue: mpsc::Receiver<UsageEvent>,
        spool: Arc<Spool>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            settings,
            queue,
            queue_open: true,
            spool,
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
                        tracing::warn!(%reason, failures = self.failures, "usage stream down; spooling usage events until it is back");
                    } else {
                        tracing::debug!(%reason, failures = self.failures, "usage stream still down");
                    }
                    let delay = jittered(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    let slept = self
                        .spooling_until(&mut housekeeping, tokio::time::sleep(delay), true)
                        .await;
                    if slept.is_none() {
                        break;
                    }
                }
            }
        }
        self.finish().await;
    }

    /// Connects, runs one Ingest stream to its end, and leaves everything
    /// unacked in the spool.
    async fn stream_once(&mut self, housekeeping: &mut tokio::time::Interval) -> Outcome {
        let endpoint = self.settings.endpoint.clone();
        // The endpoint's connect timeout covers TCP only; this one also
        // covers the HTTP/2 handshake with a peer that accepts but is stuck.
        let connect = tokio::time::timeout(self.settings.connect_timeout, endpoint.connect());
        // The first connect lets the queue buffer (no disk round trip at
        // start); after a failure, the queue drains into the spool.
        let drain = self.failures > 0;
        let channel = match self.spooling_until(housekeeping, connect, drain).await {
            None => return Outcome::Shutdown,
            Some(Err(_)) => {
                return Outcome::Broken {
                    progressed: false,
                    reason: "connect: timed out".to_owned(),
                };
            }
            Some(Ok(Err(error))) => {
                return Outcome::Broken {
                    progressed: false,
                    reason: format!("connect: {}", describe(&error)),
                };
            }
            Some(Ok(Ok(channel))) => channel,
        };
        // Never fuller than the in-flight window, so `try_send` cannot fail
        // while the stream is alive.
        let (requests, outgoing) = mpsc::channel(self.settings.max_unacked_batches);
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
        let (key, value) = &self.settings.credential;
        request.metadata_mut().insert(key.clone(), value.clone());
        let mut client = UsageServiceClient::new(channel);
        let open = tokio::time::timeout(self.settings.ack_timeout, client.ingest(request));
        let mut responses = match self.spooling_until(housekeeping, open, drain).await {
            None => return Outcome::Shutdown,
            Some(Err(_)) => {
                return Outcome::Broken {
                    progressed: false,
                    reason: "Ingest: no response headers".to_owned(),
                };
            }
            Some(Ok(Err(status))) => {
                return Outcome::Broken {
                    progressed: false,
                    reason: format!("Ingest: {}: {}", status.code(), status.message()),
                };
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
            replaying: true,
            read_pos: self.spool.cursor(),
            spool_seen: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            linger_until: None,
            waiting_since: Instant::now(),
            progressed: false,
        };
        let exit = self.drive(&mut session, &mut responses, housekeeping).await;
        match exit {
            Exit::Shutdown => {
                self.close(&mut session, &mut responses).await;
                self.spool_unacked(&mut session).await;
                Outcome::Shutdown
            }
            Exit::Broken(reason) => {
                self.spool_unacked(&mut session).await;
                Outcome::Broken {
                    progressed: session.progressed,
                    reason,
                }
            }
        }
    }

    /// The connected loop: sends batches (from the spool or the queue) while
    /// the window allows, and reads acks concurrently.
    async fn drive(
        &mut self,
        session: &mut Session,
        responses: &mut tonic::Streaming<IngestResponse>,
        housekeeping: &mut tokio::time::Interval,
    ) -> Exit {
        let mut received = Vec::new();
        loop {
            if session.replaying {
                if let Err(reason) = self.replay(session).await {
                    return Exit::Broken(reason);
                }
            } else if self.spool.appended() != session.spool_seen {
                // `send` overflowed into the spool: park what is pending
                // behind those events and replay, so order holds.
                let parked = session.take_pending();
                self.spool_events(parked).await;
                session.replaying = true;
                continue;
            }
            let window_open = session.in_flight.len() < self.settings.max_unacked_batches;
            if !session.replaying
                && window_open
                && session.flush_due(&self.settings, Instant::now())
            {
                if let Err(reason) = self.flush(session) {
                    return Exit::Broken(reason);
                }
                continue;
            }
            let room = if session.replaying {
                self.settings.batch_max_events
            } else {
                self.settings
                    .batch_max_events
                    .saturating_sub(session.pending.len())
            };
            let accept = self.queue_open && room > 0;
            let linger = session
                .linger_until
                .filter(|_| window_open && !session.replaying);
            let ack_deadline = (!session.in_flight.is_empty())
                .then(|| session.waiting_since + self.settings.ack_timeout);
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
                () = sleep_until(linger), if linger.is_some() => {}
                () = sleep_until(ack_deadline), if ack_deadline.is_some() => {
                    return Exit::Broken(format!("no ack within {:?}", self.settings.ack_timeout));
                }
                _ = housekeeping.tick() => self.housekeep().await,
                // Last: a busy queue is always ready and must not starve
                // the timers above (acks come first anyway).
                count = self.queue.recv_many(&mut received, room), if accept => {
                    if count == 0 {
                        self.queue_open = false;
                    } else if session.replaying {
                        self.spool_events(std::mem::take(&mut received)).await;
                    } else {
                        session.push_pending(received.drain(..), self.settings.batch_linger);
                    }
                }
            }
        }
    }

    /// Fills the window with batches read from the spool, and switches to
    /// live once the read position reaches the spool's end.
    async fn replay(&mut self, session: &mut Session) -> Result<(), String> {
        let (max_events, max_bytes) = (
            self.settings.batch_max_events,
            self.settings.batch_max_bytes,
        );
        while session.replaying && session.in_flight.len() < self.settings.max_unacked_batches {
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
                session.replaying = false;
                session.spool_seen = read.appended;
            }
            if read.events.is_empty() {
                if read.end != from {
                    self.advance_past_skipped(session, read.end).await;
                }
                if !read.caught_up {
                    break; // Cannot happen: an empty read reads to the end.
                }
                continue;
            }
            let count = read.events.len();
            session.dispatch(
                read.events,
                Batch {
                    sequence: 0,
                    count,
                    origin: Origin::Spool { end: read.end },
                },
                &self.stats,
            )?;
        }
        Ok(())
    }

    /// A read that only skipped unreadable records still moves the cursor:
    /// with the newest in-flight spool batch if there is one (the cursor must
    /// not pass unacked records), else now.
    async fn advance_past_skipped(&self, session: &mut Session, end: Position) {
        let newest = session
            .in_flight
            .iter_mut()
            .rev()
            .find_map(|batch| match &mut batch.origin {
                Origin::Spool { end } => Some(end),
                Origin::Live(_) => None,
            });
        match newest {
            Some(newest) => *newest = end,
            None => self.commit(end).await,
        }
    }

    /// Sends the oldest pending live events as one batch.
    fn flush(&self, session: &mut Session) -> Result<(), String> {
        let mut events = Vec::new();
        let mut bytes = 0;
        while let Some((_, len)) = session.pending.front() {
            let len = *len;
            if !events.is_empty()
                && (events.len() >= self.settings.batch_max_events
                    || bytes + len > self.settings.batch_max_bytes)
            {
                break;
            }
            let Some((event, _)) = session.pending.pop_front() else {
                break;
            };
            bytes += len;
            session.pending_bytes -= len;
            events.push(event);
        }
        session.linger_until =
            (!session.pending.is_empty()).then(|| Instant::now() + self.settings.batch_linger);
        // Memory is this batch's only copy until it is acked.
        let kept = events.clone();
        session.dispatch(
            events,
            Batch {
                sequence: 0,
                count: kept.len(),
                origin: Origin::Live(kept),
            },
            &self.stats,
        )
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
        if let Origin::Spool { end } = batch.origin {
            self.commit(end).await;
        }
        Ok(())
    }

    /// Shutdown while connected: send nothing new, end the request stream,
    /// and give in-flight batches `shutdown_grace` to be acked.
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
                        "usage shutdown grace is over; spooling unacked batches"
                    );
                    break;
                }
            }
        }
    }

    /// Unacked live batches (oldest first), then pending events, go to the
    /// spool. Unacked spool batches need nothing: they are still there,
    /// behind the cursor, and the next stream replays them.
    async fn spool_unacked(&self, session: &mut Session) {
        let mut events = Vec::new();
        for batch in session.in_flight.drain(..) {
            if let Origin::Live(batch_events) = batch.origin {
                events.extend(batch_events);
            }
        }
        events.extend(session.take_pending());
        self.spool_events(events).await;
    }

    /// Awaits `future` while draining the queue into the spool (if `drain`);
    /// `None` on shutdown.
    async fn spooling_until<F: Future>(
        &mut self,
        housekeeping: &mut tokio::time::Interval,
        future: F,
        drain: bool,
    ) -> Option<F::Output> {
        tokio::pin!(future);
        let mut received = Vec::new();
        loop {
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                output = &mut future => return Some(output),
                _ = housekeeping.tick() => self.housekeep().await,
                count = self.queue.recv_many(&mut received, self.settings.batch_max_events), if drain && self.queue_open => {
                    if count == 0 {
                        self.queue_open = false;
                    } else {
                        self.spool_events(std::mem::take(&mut received)).await;
                    }
                }
            }
        }
    }

    /// Shutdown: whatever is still queued goes to the spool, then fsync.
    async fn finish(mut self) {
        // `recv` after `close` also waits out a `send` caught mid-way, so no
        // event is left behind in the channel.
        self.queue.close();
        let mut rest = Vec::new();
        while let Some(event) = self.queue.recv().await {
            rest.push(event);
        }
        self.spool_events(rest).await;
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
        Stats::set_queued(0);
        tracing::info!(
            spool_bytes = self.stats.spool_bytes(),
            "usage sender stopped"
        );
    }

    async fn housekeep(&self) {
        Stats::set_queued(self.queue.len());
        if let Some(Err(error)) = self.blocking(Spool::sync_if_due).await {
            tracing::error!(%error, "usage spool fsync failed");
        }
    }

    async fn spool_events(&self, events: Vec<UsageEvent>) {
        if !events.is_empty() {
            // `append` logs and counts what it could not keep.
            self.blocking(move |spool| spool.append(&events)).await;
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

impl Session {
    /// Numbers `batch`, keeps it in flight, and writes it to the stream.
    fn dispatch(
        &mut self,
        events: Vec<UsageEvent>,
        mut batch: Batch,
        stats: &Stats,
    ) -> Result<(), String> {
        batch.sequence = self.next_sequence;
        self.next_sequence += 1;
        if self.in_flight.is_empty() {
            self.waiting_since = Instant::now();
        }
        let request = IngestRequest {
            sequence: batch.sequence,
            events,
        };
        stats.add_sent(batch.count);
        self.in_flight.push_back(batch);
        match self
            .requests
            .as_ref()
            .map(|requests| requests.try_send(request))
        {
            Some(Ok(())) => Ok(()),
            _ => Err("the Ingest request stream closed".to_owned()),
        }
    }

    fn push_pending(&mut self, events: impl Iterator<Item = UsageEvent>, linger: Duration) {
        for event in events {
            let len = event.encoded_len();
            self.pending_bytes += len;
            self.pending.push_back((event, len));
        }
        if self.linger_until.is_none() && !self.pending.is_empty() {
            self.linger_until = Some(Instant::now() + linger);
        }
    }

    fn flush_due(&self, settings: &Settings, now: Instant) -> bool {
        !self.pending.is_empty()
            && (self.pending.len() >= settings.batch_max_events
                || self.pending_bytes >= settings.batch_max_bytes
                || self.linger_until.is_some_and(|at| now >= at))
    }

    fn take_pending(&mut self) -> Vec<UsageEvent> {
        self.pending_bytes = 0;
        self.linger_until = None;
        self.pending.drain(..).map(|(event, _)| event).collect()
    }
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
