//! The on-disk spool: where events wait while the usage service is away.
//!
//! Layout of `spool_dir`:
//! - `NNNNNNNNNNNNNNNNNNNN.spool`: append-only segments (ids increase by 1),
//!   a sequence of records `[u32 LE length][u32 LE crc32(payload)][payload]`
//!   where the payload is one `UsageEvent` protobuf. A segment is rotated
//!   once the next record would take it past `segment_bytes`.
//! - `cursor`: segment id + byte offset of the first unacked record, plus a
//!   crc, replaced atomically (write `cursor.tmp`, rename).
//! - `LOCK`: held (advisory `flock`) while a sender owns the directory, so
//!   two senders never append to the same segment.
//!
//! A stale or unreadable cursor only makes the sender replay events the
//! server already has (idempotent by event id); segments are deleted only
//! after the cursor has moved past them, so no order of crashes loses an
//! acked-but-unreplayed record.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gateway_proto::usage::v1::UsageEvent;
use prost::Message;

use crate::FsyncPolicy;
use crate::stats::Stats;

/// Length + crc.
const HEADER: u64 = 8;
/// A drained segment at least this large is swapped for a fresh one.
const DRAINED_ROTATE_BYTES: u64 = 1 << 20;
/// Sanity bound: a longer length field is garbage, not a record.
const MAX_RECORD: usize = 256 << 20;
const SEGMENT_SUFFIX: &str = ".spool";
const CURSOR: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const LOCK: &str = "LOCK";
/// At most one "spool full" error log per this period; the counter has the
/// exact number.
const FULL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A read's bounds, and the payload bytes it has taken so far.
struct Limits {
    max_events: usize,
    max_bytes: usize,
    bytes: usize,
}

impl Limits {
    /// What to set aside for reading `available` more bytes of a segment:
    /// no more than the batch can still take, at most a MiB up front.
    fn room(&self, available: u64) -> usize {
        let available = usize::try_from(available).unwrap_or(usize::MAX);
        available
            .min(self.max_bytes.saturating_sub(self.bytes))
            .min(1 << 20)
    }
}

/// A place in the spool: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

pub(crate) struct SpoolOptions {
    pub(crate) dir: PathBuf,
    pub(crate) max_bytes: u64,
    pub(crate) segment_bytes: u64,
    pub(crate) fsync: FsyncPolicy,
}

/// What one `append` did with its events.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Appended {
    pub(crate) spooled: usize,
    pub(crate) dropped: usize,
}

/// Records read from the spool, in order.
#[derive(Debug)]
pub(crate) struct ReadBatch {
    /// Each a `UsageEvent`'s protobuf encoding, as the record holds it.
    pub(crate) events: Vec<Bytes>,
    /// Where the next read starts; the cursor value once these are acked.
    pub(crate) end: Position,
    /// Unreadable records passed over (and counted as dropped).
    pub(crate) skipped: usize,
    /// `end` is the end of everything appended so far.
    pub(crate) caught_up: bool,
    /// [`Spool::appended`] as of this read.
    pub(crate) appended: u64,
}

pub(crate) struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    stats: Arc<Stats>,
    /// Records appended since open: lets the stream task notice, without
    /// the lock, that `send` overflowed into the spool.
    appended: AtomicU64,
    /// Where this process's appends begin. A record from here on is bytes
    /// prost encoded from an event in this process, so with its crc intact
    /// it decodes; one from before (an earlier run, maybe another version)
    /// is decoded at read to prove it, and dropped if it fails, rather than
    /// sent to fail the usage service's decode of the whole batch.
    written_here: Position,
    state: Mutex<State>,
    /// Holds the directory's advisory lock for as long as the spool lives.
    _lock: File,
}

struct State {
    fsync: FsyncPolicy,
    /// The write segment, opened in append mode.
    file: File,
    /// End of the data (nothing is buffered outside the lock).
    write: Position,
    /// Segment id -> bytes, for the size bound and for deletion.
    segments: BTreeMap<u64, u64>,
    total: u64,
    cursor: Position,
    unsynced: bool,
    /// A segment was started without syncing the directory (a drained
    /// rotation): the next fsync of its data syncs the directory too.
    dir_unsynced: bool,
    last_sync: Instant,
    /// Records encoded here, then written with one `write_all`.
    scratch: Vec<u8>,
    last_full_log: Option<Instant>,
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`: takes the directory
    /// lock, drops consumed segments, and truncates a torn record at the
    /// tail (a crash mid-append).
    pub(crate) fn open(options: SpoolOptions, stats: Arc<Stats>) -> io::Result<Self> {
        let SpoolOptions {
            dir,
            max_bytes,
            segment_bytes,
            fsync,
        } = options;
        fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK))?;
        lock.try_lock().map_err(|error| match error {
            TryLockError::WouldBlock => io::Error::new(
                ErrorKind::ResourceBusy,
                format!("{} is in use by another usage sender", dir.display()),
            ),
            TryLockError::Error(error) => error,
        })?;
        remove_if_present(&dir.join(CURSOR_TMP))?;

        let mut segments = list_segments(&dir)?;
        let first = segments.keys().next().copied();
        let mut cursor = read_cursor(&dir).unwrap_or(Position {
            segment: first.unwrap_or(1),
            offset: 0,
        });
        // Fully acked; a crash came between the cursor write and their removal.
        let consumed: Vec<u64> = segments
            .range(..cursor.segment)
            .map(|(id, _)| *id)
            .collect();
        for id in consumed {
            remove_if_present(&segment_path(&dir, id))?;
            segments.remove(&id);
        }
        if !segments.contains_key(&cursor.segment) {
            // Its segment was drained and deleted: resume at the next one.
            cursor = Position {
                segment: segments
                    .keys()
                    .next()
                    .copied()
                    .unwrap_or(cursor.segment.max(1)),
                offset: 0,
            };
        }
        let last = match segments.last_key_value() {
            Some((id, _)) => *id,
            None => {
                File::create_new(segment_path(&dir, cursor.segment))?;
                segments.insert(cursor.segment, 0);
                cursor.segment
            }
        };
        segments.insert(last, recover_tail(&segment_path(&dir, last), last)?);
        if let Some(len) = segments.get(&cursor.segment).copied()
            && cursor.offset > len
        {
            tracing::warn!(
                segment = cursor.segment,
                offset = cursor.offset,
                len,
                "usage spool cursor is past its segment's end; clamping"
            );
            cursor.offset = len;
        }
        let file = OpenOptions::new()
            .append(true)
            .open(segment_path(&dir, last))?;
        let write = Position {
            segment: last,
            offset: segments.get(&last).copied().unwrap_or_default(),
        };
        let total = segments.values().sum();
        write_cursor(&dir, cursor, !matches!(fsync, FsyncPolicy::Never))?;
        stats.set_spool_bytes(total);
        if cursor < write {
            tracing::info!(
                spool_bytes = total,
                dir = %dir.display(),
                "usage spool holds events to replay"
            );
        }
        Ok(Self {
            dir,
            max_bytes,
            segment_bytes: segment_bytes.max(1),
            stats,
            appended: AtomicU64::new(0),
            written_here: write,
            state: Mutex::new(State {
                fsync,
                file,
                write,
                segments,
                total,
                cursor,
                unsynced: false,
                dir_unsynced: false,
                last_sync: Instant::now(),
                scratch: Vec::new(),
                last_full_log: None,
            }),
            _lock: lock,
        })
    }

    /// Appends `events` in order. Events that do not fit `max_bytes` are
    /// dropped and counted; so are events lost to a write error.
    pub(crate) fn append(&self, events: &[UsageEvent]) -> Appended {
        let mut outcome = Appended::default();
        if events.is_empty() {
            return outcome;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut full = 0;
        if let Err(error) = self.append_locked(state, events, &mut outcome.spooled, &mut full) {
            let lost = events.len() - outcome.spooled - full;
            tracing::error!(%error, lost, dir = %self.dir.display(), "usage spool write failed; events dropped");
        } else if matches!(state.fsync, FsyncPolicy::Always)
            && let Err(error) = self.sync_locked(state)
        {
            tracing::error!(%error, "usage spool fsync failed");
        }
        outcome.dropped = events.len() - outcome.spooled;
        if full > 0
            && state
                .last_full_log
                .is_none_or(|at| at.elapsed() >= FULL_LOG_EVERY)
        {
            state.last_full_log = Some(Instant::now());
            tracing::error!(
                dropped = full,
                spool_bytes = state.total,
                max_bytes = self.max_bytes,
                "usage spool is full; dropping usage events"
            );
        }
        if outcome.spooled > 0 {
            state.unsynced = true;
            self.appended
                .fetch_add(outcome.spooled as u64, Ordering::Release);
        }
        self.stats.add_spooled(outcome.spooled);
        self.stats.add_dropped(outcome.dropped);
        self.stats.set_spool_bytes(state.total);
        outcome
    }

    fn append_locked(
        &self,
        state: &mut State,
        events: &[UsageEvent],
        spooled: &mut usize,
        full: &mut usize,
    ) -> io::Result<()> {
        let mut buffered = 0;
        for event in events {
            let len = event.encoded_len();
            let record = HEADER + len as u64;
            let pending = state.scratch.len() as u64;
            if len > MAX_RECORD || state.total + pending + record > self.max_bytes {
                *full += 1;
                continue;
            }
            let used = state.write.offset + pending;
            if used > 0 && used + record > self.segment_bytes {
                write_scratch(state)?;
                *spooled += buffered;
                buffered = 0;
                self.rotate(state, true)?;
            }
            encode_record(event, len, &mut state.scratch)?;
            buffered += 1;
        }
        write_scratch(state)?;
        *spooled += buffered;
        Ok(())
    }

    /// Starts the next segment. A full one is synced first (and the new
    /// one's directory entry) unless the policy is `Never`. A drained one
    /// (`full` false) is not: it is about to be deleted, and its empty
    /// successor lost in a power cut is found missing on open and passed
    /// over. Those fsyncs ran under the lock that `send` takes, and they
    /// stalled the request path by up to 100 ms (the open-loop benchmark).
    fn rotate(&self, state: &mut State, full: bool) -> io::Result<()> {
        let sync = full && !matches!(state.fsync, FsyncPolicy::Never);
        if sync {
            state.file.sync_data()?;
        }
        let id = state.write.segment + 1;
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(segment_path(&self.dir, id))?;
        if sync {
            sync_dir(&self.dir)?;
        } else if !matches!(state.fsync, FsyncPolicy::Never) {
            state.dir_unsynced = true;
        }
        state.file = file;
        state.write = Position {
            segment: id,
            offset: 0,
        };
        state.segments.insert(id, 0);
        Ok(())
    }

    /// Reads up to `max_events` records (and `max_bytes` of payload, but at
    /// least one) from `from` on. The file reads happen outside the lock, so
    /// `send` can keep appending meanwhile.
    pub(crate) fn read(
        &self,
        from: Position,
        max_events: usize,
        max_bytes: usize,
    ) -> io::Result<ReadBatch> {
        let (end, appended, segments) = {
            let state = self.lock();
            let segments: Vec<(u64, u64)> = state
                .segments
                .range(from.segment..)
                .map(|(id, len)| (*id, *len))
                .collect();
            (state.write, self.appended.load(Ordering::Acquire), segments)
        };
        let mut batch = ReadBatch {
            events: Vec::new(),
            end: from,
            skipped: 0,
            caught_up: false,
            appended,
        };
        let mut limits = Limits {
            max_events: max_events.max(1),
            max_bytes,
            bytes: 0,
        };
        for (id, size) in segments {
            if id > batch.end.segment {
                batch.end = Position {
                    segment: id,
                    offset: 0,
                };
            }
            if batch.end.offset < size && !self.read_segment(id, size, &mut batch, &mut limits)? {
                break;
            }
        }
        batch.caught_up = batch.end >= end;
        if batch.skipped > 0 {
            self.stats.add_dropped(batch.skipped);
        }
        Ok(batch)
    }

    /// Reads the records of segment `id` (`size` bytes long) from
    /// `batch.end` on into `batch`; `false` once the batch is full.
    fn read_segment(
        &self,
        id: u64,
        size: u64,
        batch: &mut ReadBatch,
        limits: &mut Limits,
    ) -> io::Result<bool> {
        let file = match File::open(segment_path(&self.dir, id)) {
            Ok(file) => file,
            Err(error) if error.kind() == ErrorKind::NotFound => {
                tracing::error!(segment = id, "usage spool segment vanished; skipping it");
                batch.skipped += 1;
                batch.end.offset = size;
                return Ok(true);
            }
            Err(error) => return Err(error),
        };
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(batch.end.offset))?;
        // One allocation for the records this read can take; each record's
        // payload is then a slice of it.
        let mut arena = BytesMut::with_capacity(limits.room(size - batch.end.offset));
        while batch.end.offset < size {
            if batch.events.len() >= limits.max_events {
                return Ok(false);
            }
            let Some(len) = read_record(&mut reader, &mut arena, size - batch.end.offset)? else {
                tracing::error!(
                    segment = id,
                    offset = batch.end.offset,
                    "unreadable usage spool record; skipping the rest of the segment"
                );
                batch.skipped += 1;
                batch.end.offset = size;
                break;
            };
            if !batch.events.is_empty() && limits.bytes + arena.len() > limits.max_bytes {
                return Ok(false);
            }
            let payload = arena.split().freeze();
            if self.sendable(&payload, batch.end, limits.max_bytes) {
                limits.bytes += payload.len();
                batch.events.push(payload);
            } else {
                batch.skipped += 1;
            }
            batch.end.offset += len;
        }
        Ok(true)
    }

    /// Whether the record at `at` may be sent: it fits a batch, and it is a
    /// valid event (decoded to prove it when it is older than this process).
    fn sendable(&self, payload: &[u8], at: Position, max_bytes: usize) -> bool {
        if at >= self.written_here && payload.len() <= max_bytes {
            return true;
        }
        match UsageEvent::decode(payload) {
            Ok(_) if payload.len() <= max_bytes => true,
            Ok(event) => {
                tracing::error!(event_id = %event.event_id, bytes = payload.len(), "spooled usage event is larger than a batch may be; dropped");
                false
            }
            Err(error) => {
                tracing::error!(%error, segment = at.segment, offset = at.offset, "undecodable usage spool record; dropped");
                false
            }
        }
    }

    /// Everything before `upto` is acked: persist the cursor there and delete
    /// the segments wholly before it.
    pub(crate) fn commit(&self, upto: Position) -> io::Result<()> {
        let mut guard = self.lock();
        let state = &mut *guard;
        if upto <= state.cursor {
            return Ok(());
        }
        state.cursor = upto.min(state.write);
        // Drained: a fresh segment lets this one go too. Not after every
        // ack (every event goes through the spool): once it holds a MiB,
        // or when space is short.
        let worth = state.write.offset >= DRAINED_ROTATE_BYTES || state.total * 2 > self.max_bytes;
        if state.cursor == state.write && state.write.offset > 0 && worth {
            match self.rotate(state, false) {
                Ok(()) => state.cursor = state.write,
                Err(error) => tracing::warn!(%error, "usage spool could not start a new segment"),
            }
        }
        write_cursor(
            &self.dir,
            state.cursor,
            matches!(state.fsync, FsyncPolicy::Always),
        )?;
        let consumed: Vec<(u64, u64)> = state
            .segments
            .range(..state.cursor.segment)
            .map(|(id, len)| (*id, *len))
            .collect();
        for (id, len) in consumed {
            match remove_if_present(&segment_path(&self.dir, id)) {
                Ok(()) => {
                    state.segments.remove(&id);
                    state.total -= len;
                }
                // Left in the map: the next commit tries again.
                Err(error) => {
                    tracing::warn!(%error, segment = id, "could not delete a consumed usage spool segment")
                }
            }
        }
        self.stats.set_spool_bytes(state.total);
        Ok(())
    }

    /// The first unacked record, as persisted.
    pub(crate) fn cursor(&self) -> Position {
        self.lock().cursor
    }

    /// Records appended since open (a change detector).
    pub(crate) fn appended(&self) -> u64 {
        self.appended.load(Ordering::Acquire)
    }

    /// Bytes of segment files on disk.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> u64 {
        self.lock().total
    }

    /// `Interval` policy: fsync if there are unsynced appends and the
    /// interval has passed. The fsync runs on a duplicate handle outside the
    /// lock, so a slow disk does not hold up `send`.
    pub(crate) fn sync_if_due(&self) -> io::Result<()> {
        let (file, dir_too) = {
            let mut state = self.lock();
            let FsyncPolicy::Interval(every) = state.fsync else {
                return Ok(());
            };
            if !state.unsynced || state.last_sync.elapsed() < every {
                return Ok(());
            }
            state.unsynced = false;
            state.last_sync = Instant::now();
            (
                state.file.try_clone()?,
                std::mem::take(&mut state.dir_unsynced),
            )
        };
        let mut result = file.sync_data();
        if result.is_ok() && dir_too {
            result = sync_dir(&self.dir);
        }
        if result.is_err() {
            let mut state = self.lock();
            state.unsynced = true;
            state.dir_unsynced |= dir_too;
        }
        result
    }

    /// `Always`: the data, and the directory after a drained rotation.
    fn sync_locked(&self, state: &mut State) -> io::Result<()> {
        state.file.sync_data()?;
        if state.dir_unsynced {
            sync_dir(&self.dir)?;
            state.dir_unsynced = false;
        }
        Ok(())
    }

    /// fsync now, whatever the policy (shutdown).
    pub(crate) fn sync_now(&self) -> io::Result<()> {
        let mut state = self.lock();
        state.file.sync_data()?;
        sync_dir(&self.dir)?;
        state.unsynced = false;
        state.dir_unsynced = false;
        state.last_sync = Instant::now();
        Ok(())
    }

    /// After the stream task has stopped, nothing syncs on an interval any
    /// more, so a late `send` that lands here is synced as it is written.
    pub(crate) fn sync_every_append(&self) {
        let mut state = self.lock();
        if matches!(state.fsync, FsyncPolicy::Interval(_)) {
            state.fsync = FsyncPolicy::Always;
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing under this lock panics; if something did, the state is
        // still consistent enough to keep spooling.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a restart replays from a segment holding `data`: the length of its
/// whole records (the rest is a torn tail, cut off) and the events decoded
/// from them (undecodable records skipped), as `recover_tail` and `read` do.
pub fn replay_segment(data: &[u8]) -> (u64, Vec<UsageEvent>) {
    let total = data.len() as u64;
    let mut reader = io::Cursor::new(data);
    let mut valid = 0;
    let mut payload = BytesMut::new();
    let mut events = Vec::new();
    // Reading from memory cannot fail with anything but a short read.
    while let Ok(Some(len)) = read_record(&mut reader, &mut payload, total - valid) {
        valid += len;
        if let Ok(event) = UsageEvent::decode(payload.as_ref()) {
            events.push(event);
        }
    }
    (valid, events)
}

/// `events` as the records of a segment.
pub fn encode_segment(events: &[UsageEvent]) -> io::Result<Vec<u8>> {
    let mut segment = Vec::new();
    for event in events {
        encode_record(event, event.encoded_len(), &mut segment)?;
    }
    Ok(segment)
}

fn encode_record(event: &UsageEvent, len: usize, scratch: &mut Vec<u8>) -> io::Result<()> {
    let len32 = u32::try_from(len).map_err(io::Error::other)?;
    scratch.extend_from_slice(&len32.to_le_bytes());
    let crc_at = scratch.len();
    scratch.extend_from_slice(&[0; 4]);
    let payload_at = scratch.len();
    event.encode(scratch).map_err(io::Error::other)?;
    let crc = crc32fast::hash(&scratch[payload_at..]);
    scratch[crc_at..payload_at].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Writes the encoded records; on failure cuts the file back to the last
/// whole record, so a partial write never sits in front of later records.
fn write_scratch(state: &mut State) -> io::Result<()> {
    if state.scratch.is_empty() {
        return Ok(());
    }
    let result = state.file.write_all(&state.scratch);
    let written = state.scratch.len() as u64;
    state.scratch.clear();
    match result {
        Ok(()) => {
            state.write.offset += written;
            *state.segments.entry(state.write.segment).or_default() += written;
            state.total += written;
            Ok(())
        }
        Err(error) => {
            let _ = state.file.set_len(state.write.offset);
            Err(error)
        }
    }
}

/// Reads one record of at most `remaining` bytes into `payload`; its full
/// length, or `None` if it is torn or corrupt.
fn read_record(
    reader: &mut impl Read,
    payload: &mut BytesMut,
    remaining: u64,
) -> io::Result<Option<u64>> {
    if remaining < HEADER {
        return Ok(None);
    }
    let mut header = [0u8; HEADER as usize];
    if !read_full(reader, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let len_usize = len as usize;
    if u64::from(len) > remaining - HEADER || len_usize > MAX_RECORD {
        return Ok(None);
    }
    payload.clear();
    payload.resize(len_usize, 0);
    if !read_full(reader, payload)? || crc32fast::hash(payload) != crc {
        return Ok(None);
    }
    Ok(Some(HEADER + u64::from(len)))
}

/// `read_exact`, with a short read as `false` rather than an error.
fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buffer) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// Length of the whole records at the start of segment `id`; anything after
/// them (a record torn by a crash) is cut off.
fn recover_tail(path: &Path, id: u64) -> io::Result<u64> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let mut reader = BufReader::new(&file);
    let mut valid = 0;
    let mut payload = BytesMut::new();
    while valid < len {
        match read_record(&mut reader, &mut payload, len - valid)? {
            Some(record) => valid += record,
            None => break,
        }
    }
    if valid < len {
        tracing::warn!(
            segment = id,
            valid_bytes = valid,
            dropped_bytes = len - valid,
            "usage spool ends in a torn record; truncating it"
        );
        file.set_len(valid)?;
        file.sync_all()?;
    }
    Ok(valid)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> io::Result<BTreeMap<u64, u64>> {
    let mut segments = BTreeMap::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|name| name.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|stem| stem.parse::<u64>().ok())
        else {
            continue;
        };
        segments.insert(id, entry.metadata()?.len());
    }
    Ok(segments)
}

/// `[u64 LE segment][u64 LE offset][u32 LE crc32 of the 16 bytes before]`.
fn write_cursor(dir: &Path, cursor: Position, sync: bool) -> io::Result<()> {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&cursor.segment.to_le_bytes());
    bytes[8..16].copy_from_slice(&cursor.offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(CURSOR_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(&bytes)?;
    if sync {
        file.sync_data()?;
    }
    fs::rename(&tmp, dir.join(CURSOR))
}

/// The persisted cursor; `None` if absent or unreadable (then replay starts
/// at the oldest segment: duplicates, never loss).
fn read_cursor(dir: &Path) -> Option<Position> {
    let bytes = match fs::read(dir.join(CURSOR)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(%error, "usage spool cursor unreadable; replaying from the oldest segment");
            return None;
        }
    };
    let parsed = <[u8; 20]>::try_from(bytes.as_slice())
        .ok()
        .and_then(|bytes| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[..8]);
            let segment = u64::from_le_bytes(word);
            word.copy_from_slice(&bytes[8..16]);
            let offset = u64::from_le_bytes(word);
            let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
            (crc32fast::hash(&bytes[..16]) == crc).then_some(Position { segment, offset })
        });
    if parsed.is_none() {
        tracing::warn!("usage spool cursor is corrupt; replaying from the oldest segment");
    }
    parsed
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Makes created and renamed entries durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn event(index: usize) -> UsageEvent {
        UsageEvent {
            event_id: format!("event-{index:05}"),
            tenant_id: "tenant".to_owned(),
            path: "/v1/chat/completions".to_owned(),
            status: 200,
            ..UsageEvent::default()
        }
    }

    fn options(dir: &Path, segment_bytes: u64, max_bytes: u64) -> SpoolOptions {
        SpoolOptions {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            fsync: FsyncPolicy::Always,
        }
    }

    fn open(dir: &Path, segment_bytes: u64) -> (Spool, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let spool = Spool::open(options(dir, segment_bytes, 1 << 30), stats.clone()).unwrap();
        (spool, stats)
    }

    fn ids(events: &[UsageEvent]) -> Vec<String> {
        events.iter().map(|event| event.event_id.clone()).collect()
    }

    fn decoded(payloads: &[Bytes]) -> Vec<UsageEvent> {
        payloads
            .iter()
            .map(|payload| UsageEvent::decode(payload.as_ref()).unwrap())
            .collect()
    }

    /// Reads everything from the cursor on, `chunk` events at a time.
    fn read_all(spool: &Spool, chunk: usize) -> (Vec<UsageEvent>, Position) {
        let mut position = spool.cursor();
        let mut events = Vec::new();
        loop {
            let batch = spool.read(position, chunk, usize::MAX).unwrap();
            assert_eq!(batch.skipped, 0);
            position = batch.end;
            events.extend(decoded(&batch.events));
            if batch.caught_up {
                return (events, position);
            }
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "spool"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn round_trip_across_segment_rotation() {
        let dir = tempfile::tempdir().unwrap();
        // About four records per segment.
        let (spool, stats) = open(dir.path(), 200);
        let events: Vec<UsageEvent> = (0..50).map(event).collect();
        for chunk in events.chunks(7) {
            assert_eq!(spool.append(chunk).spooled, chunk.len());
        }
        assert!(segment_files(dir.path()).len() > 5, "segments rotate");
        assert_eq!(stats.spooled(), 50);
        assert_eq!(stats.spool_bytes(), spool.bytes());

        let (read, end) = read_all(&spool, 3);
        assert_eq!(read, events);
        spool.commit(end).unwrap();
        // The last segment stays until it is worth swapping (see commit).
        assert!(spool.bytes() < 200, "consumed segments are deleted");
        assert_eq!(segment_files(dir.path()).len(), 1);

        // Appends after a drain land in the fresh segment and read back.
        spool.append(&[event(99)]);
        let (read, _) = read_all(&spool, 10);
        assert_eq!(ids(&read), vec!["event-00099".to_owned()]);
    }

    #[test]
    fn read_respects_the_byte_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, stats) = open(dir.path(), 1 << 20);
        spool.append(&(0..10).map(event).collect::<Vec<_>>());
        let one = event(0).encoded_len();
        let batch = spool.read(spool.cursor(), 100, one * 2 + 1).unwrap();
        assert_eq!(
            ids(&decoded(&batch.events)),
            vec!["event-00000".to_owned(), "event-00001".to_owned()]
        );
        assert!(!batch.caught_up);

        // A record larger than any batch could be is dropped, not stuck.
        let batch = spool.read(batch.end, 100, one - 1).unwrap();
        assert!(batch.events.is_empty() && batch.caught_up);
        assert_eq!((batch.skipped, stats.dropped()), (8, 8));
    }

    #[test]
    fn cursor_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = open(dir.path(), 300);
            spool.append(&(0..10).map(event).collect::<Vec<_>>());
            let batch = spool.read(spool.cursor(), 4, usize::MAX).unwrap();
            assert_eq!(batch.events.len(), 4);
            spool.commit(batch.end).unwrap();
            // Read further without acking: must come back after a restart.
            let unacked = spool.read(batch.end, 3, usize::MAX).unwrap();
            assert_eq!(unacked.events.len(), 3);
        }
        let (spool, _) = open(dir.path(), 300);
        let (read, _) = read_all(&spool, 100);
        assert_eq!(read, (4..10).map(event).collect::<Vec<_>>());
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = open(dir.path(), 1 << 20);
            spool.append(&(0..10).map(event).collect::<Vec<_>>());
        }
        let segment = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&segment).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let (spool, _) = open(dir.path(), 1 << 20);
        spool.append(&[event(10)]);
        let (read, _) = read_all(&spool, 100);
        let mut expected: Vec<UsageEvent> = (0..9).map(event).collect();
        expected.push(event(10));
        assert_eq!(
            read, expected,
            "the torn record is gone, later appends follow"
        );
    }

    #[test]
    fn corrupt_tail_crc_is_truncated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = open(dir.path(), 1 << 20);
            spool.append(&(0..5).map(event).collect::<Vec<_>>());
        }
        let segment = segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&segment).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&segment, bytes).unwrap();
        let (spool, _) = open(dir.path(), 1 << 20);
        let (read, _) = read_all(&spool, 100);
        assert_eq!(read, (0..4).map(event).collect::<Vec<_>>());
    }

    #[test]
    fn size_bound_drops_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(Stats::default());
        let record = HEADER + event(0).encoded_len() as u64;
        let spool = Spool::open(options(dir.path(), 1 << 20, record * 5), stats.clone()).unwrap();
        let outcome = spool.append(&(0..8).map(event).collect::<Vec<_>>());
        assert_eq!(
            outcome,
            Appended {
                spooled: 5,
                dropped: 3
            }
        );
        assert_eq!(spool.append(&[event(8)]).dropped, 1);
        assert_eq!(stats.dropped(), 4);
        assert_eq!(stats.spooled(), 5);
        assert!(spool.bytes() <= record * 5);

        // Draining makes room again.
        let (read, end) = read_all(&spool, 100);
        assert_eq!(read, (0..5).map(event).collect::<Vec<_>>());
        spool.commit(end).unwrap();
        assert_eq!(spool.append(&[event(9)]).spooled, 1);
    }

    #[test]
    fn a_second_spool_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_spool, _) = open(dir.path(), 1 << 20);
        let error = Spool::open(
            options(dir.path(), 1 << 20, 1 << 30),
            Arc::new(Stats::default()),
        )
        .err()
        .unwrap();
        assert_eq!(error.kind(), ErrorKind::ResourceBusy);
    }

    #[test]
    fn corrupt_cursor_replays_from_the_oldest_segment() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = open(dir.path(), 1 << 20);
            spool.append(&(0..4).map(event).collect::<Vec<_>>());
            let batch = spool.read(spool.cursor(), 2, usize::MAX).unwrap();
            spool.commit(batch.end).unwrap();
        }
        fs::write(dir.path().join(CURSOR), b"garbage").unwrap();
        let (spool, _) = open(dir.path(), 1 << 20);
        let (read, _) = read_all(&spool, 100);
        assert_eq!(read, (0..4).map(event).collect::<Vec<_>>());
    }

    /// A record an earlier run left is decoded before it is sent: one whose
    /// crc holds but whose payload is no event (another version, a bug) is
    /// dropped and counted, not sent to fail the service's decode of the
    /// whole batch.
    #[test]
    fn an_earlier_runs_undecodable_record_is_dropped_at_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut segment = encode_segment(&[event(0)]).unwrap();
        let garbage = [0xff_u8, 0xff, 0xff];
        segment.extend_from_slice(&(garbage.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc32fast::hash(&garbage).to_le_bytes());
        segment.extend_from_slice(&garbage);
        segment.extend(encode_segment(&[event(1)]).unwrap());
        fs::write(segment_path(dir.path(), 1), segment).unwrap();

        let (spool, stats) = open(dir.path(), 1 << 20);
        spool.append(&[event(2)]);
        let batch = spool.read(spool.cursor(), 100, usize::MAX).unwrap();
        assert_eq!(
            decoded(&batch.events),
            (0..3).map(event).collect::<Vec<_>>()
        );
        assert!(batch.caught_up);
        assert_eq!((batch.skipped, stats.dropped()), (1, 1));
    }
}
