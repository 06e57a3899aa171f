//! Audit bodies: captured request / response pairs, scrubbed of secrets,
//! Brotli-compressed and appended to segment files under
//! `{audit_dir}/{YYYY_MM_DD}/`, rotated by size. SQL keeps each record's
//! (segment, offset, length), so one record is read with one seek.
//!
//! A record is `[u32 LE payload length][u32 LE crc32 of payload][payload]`,
//! the payload being the Brotli-compressed `AuditBodies` protobuf. A small
//! pool of writer threads appends: each owns its open segments, takes every
//! job queued since its last pass, writes them, fsyncs once and answers, so
//! an ingest batch's bodies are durable before its ack (group commit).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use gateway_proto::usage::v1::{AuditBodies, HttpHeader};
use gateway_storage::calendar::utc_day_label;
use prost::Message as _;

/// Header names never stored, whatever the edge sent.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "set-cookie",
    "x-admin-key",
];

const HEADER_BYTES: usize = 8;
/// Decompressed records larger than this are refused (a corrupt or hostile
/// segment must not exhaust memory).
const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;
/// Each writer keeps at most this many day segments open (events near
/// midnight may straddle two days).
const OPEN_DAYS: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit io: {0}")]
    Io(#[from] std::io::Error),
    #[error("audit record at {segment}:{offset} is corrupt: {reason}")]
    Corrupt {
        segment: String,
        offset: u64,
        reason: &'static str,
    },
    #[error("the audit writers have stopped")]
    Stopped,
}

/// Where one record lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Relative to the audit directory: `YYYY_MM_DD/<file>`.
    pub segment: String,
    pub offset: u64,
    pub length: u64,
}

/// Removes secret headers, cuts bodies to `max_body_bytes` and masks
/// anything shaped like one of our API keys inside them.
pub fn scrub(bodies: &mut AuditBodies, max_body_bytes: usize) {
    let keep = |header: &HttpHeader| {
        let name = header.name.to_ascii_lowercase();
        !SECRET_HEADERS.contains(&name.as_str())
    };
    bodies.request_headers.retain(keep);
    bodies.response_headers.retain(keep);
    if bodies.request_body.len() > max_body_bytes {
        bodies.request_body.truncate(max_body_bytes);
        bodies.request_truncated = true;
    }
    if bodies.response_body.len() > max_body_bytes {
        bodies.response_body.truncate(max_body_bytes);
        bodies.response_truncated = true;
    }
    mask_keys(&mut bodies.request_body);
    mask_keys(&mut bodies.response_body);
    for header in bodies
        .request_headers
        .iter_mut()
        .chain(bodies.response_headers.iter_mut())
    {
        let mut value = std::mem::take(&mut header.value).into_bytes();
        mask_keys(&mut value);
        header.value = String::from_utf8_lossy(&value).into_owned();
    }
}

/// Gateway keys are `sk-` and 43 base62 characters: replace the secret part.
fn mask_keys(body: &mut [u8]) {
    const SECRET_LEN: usize = 43;
    let mut index = 0;
    while index + 3 + SECRET_LEN <= body.len() {
        if &body[index..index + 3] == b"sk-"
            && body[index + 3..index + 3 + SECRET_LEN]
                .iter()
                .all(u8::is_ascii_alphanumeric)
        {
            body[index + 3..index + 3 + SECRET_LEN].fill(b'*');
            index += 3 + SECRET_LEN;
        } else {
            index += 1;
        }
    }
}

fn compress(bodies: &AuditBodies) -> Result<Vec<u8>, std::io::Error> {
    let encoded = bodies.encode_to_vec();
    let mut compressed = Vec::with_capacity(encoded.len() / 4 + 64);
    {
        // Quality 5: most of the ratio of higher levels at a fraction of
        // their CPU; audit writes must keep up with ingest.
        let mut writer = brotli::CompressorWriter::new(&mut compressed, 4096, 5, 22);
        writer.write_all(&encoded)?;
    }
    Ok(compressed)
}

/// One record to append.
#[derive(Debug)]
pub struct Item {
    pub occurred_at: i64,
    pub bodies: AuditBodies,
}

struct Job {
    items: Vec<Item>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<Location>, AuditError>>,
}

/// The writer pool.
pub struct AuditWriters {
    dir: PathBuf,
    queues: Vec<mpsc::Sender<Job>>,
}

impl AuditWriters {
    /// Starts `count` writer threads under `dir`.
    pub fn start(dir: &Path, count: usize, segment_bytes: u64) -> Result<Self, AuditError> {
        std::fs::create_dir_all(dir)?;
        let mut queues = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let (sender, receiver) = mpsc::channel::<Job>();
            let mut writer = Writer {
                dir: dir.to_owned(),
                name: format!("w{index}"),
                segment_bytes,
                open: BTreeMap::new(),
            };
            std::thread::Builder::new()
                .name(format!("audit-writer-{index}"))
                .spawn(move || writer.run(&receiver))?;
            queues.push(sender);
        }
        Ok(Self {
            dir: dir.to_owned(),
            queues,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends every item, spread over the writers; returns their locations
    /// in order once all are durable.
    pub async fn write(&self, items: Vec<Item>) -> Result<Vec<Location>, AuditError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let writers = self.queues.len();
        let total = items.len();
        let mut shares: Vec<Vec<(usize, Item)>> = (0..writers).map(|_| Vec::new()).collect();
        for (index, item) in items.into_iter().enumerate() {
            shares[index % writers].push((index, item));
        }
        let mut pending = Vec::new();
        for (queue, share) in self.queues.iter().zip(shares) {
            if share.is_empty() {
                continue;
            }
            let (positions, items): (Vec<usize>, Vec<Item>) = share.into_iter().unzip();
            let (reply, answer) = tokio::sync::oneshot::channel();
            queue
                .send(Job { items, reply })
                .map_err(|_| AuditError::Stopped)?;
            pending.push((positions, answer));
        }
        let mut locations: Vec<Option<Location>> = vec![None; total];
        for (positions, answer) in pending {
            let written = answer.await.map_err(|_| AuditError::Stopped)??;
            for (position, location) in positions.into_iter().zip(written) {
                locations[position] = Some(location);
            }
        }
        locations
            .into_iter()
            .map(|location| location.ok_or(AuditError::Stopped))
            .collect()
    }

    /// Reads one record back.
    pub fn read(&self, location: &Location) -> Result<AuditBodies, AuditError> {
        read(&self.dir, location)
    }
}

/// Reads the record at `location` under `dir`.
pub fn read(dir: &Path, location: &Location) -> Result<AuditBodies, AuditError> {
    let corrupt = |reason| AuditError::Corrupt {
        segment: location.segment.clone(),
        offset: location.offset,
        reason,
    };
    // The segment name comes from our own index; still refuse to leave the
    // audit directory.
    if location.segment.contains("..") || location.segment.starts_with('/') {
        return Err(corrupt("segment path escapes the audit directory"));
    }
    let mut file = File::open(dir.join(&location.segment))?;
    file.seek(SeekFrom::Start(location.offset))?;
    let mut header = [0_u8; HEADER_BYTES];
    file.read_exact(&mut header)?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if u64::from(length) != location.length {
        return Err(corrupt("length differs from the index"));
    }
    let mut payload = vec![0_u8; length as usize];
    file.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut decoded = Vec::new();
    brotli::Decompressor::new(payload.as_slice(), 4096)
        .take(MAX_DECOMPRESSED_BYTES)
        .read_to_end(&mut decoded)?;
    AuditBodies::decode(decoded.as_slice()).map_err(|_| corrupt("not an AuditBodies message"))
}

struct Segment {
    relative: String,
    file: File,
    size: u64,
    dirty: bool,
}

struct Writer {
    dir: PathBuf,
    name: String,
    segment_bytes: u64,
    /// Open segment per day label.
    open: BTreeMap<String, Segment>,
}

impl Writer {
    fn run(&mut self, receiver: &mpsc::Receiver<Job>) {
        while let Ok(first) = receiver.recv() {
            let mut jobs = vec![first];
            while let Ok(job) = receiver.try_recv() {
                jobs.push(job);
            }
            let results: Vec<_> = jobs.iter().map(|job| self.append_all(&job.items)).collect();
            let synced = self.sync();
            for (job, result) in jobs.into_iter().zip(results) {
                let answer = match (&synced, result) {
                    (Ok(()), result) => result,
                    (Err(error), _) => Err(AuditError::Io(std::io::Error::new(
                        error.kind(),
                        error.to_string(),
                    ))),
                };
                let _ = job.reply.send(answer);
            }
        }
    }

    fn append_all(&mut self, items: &[Item]) -> Result<Vec<Location>, AuditError> {
        items.iter().map(|item| self.append(item)).collect()
    }

    fn append(&mut self, item: &Item) -> Result<Location, AuditError> {
        let payload = compress(&item.bodies)?;
        let length = u32::try_from(payload.len())
            .map_err(|_| AuditError::Io(std::io::Error::other("audit record over 4 GiB")))?;
        let day = utc_day_label(item.occurred_at);
        let segment = self.segment_for(&day, payload.len() as u64)?;
        let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let offset = segment.size;
        segment.file.write_all(&record)?;
        segment.size += record.len() as u64;
        segment.dirty = true;
        Ok(Location {
            segment: segment.relative.clone(),
            offset,
            length: u64::from(length),
        })
    }

    /// The day's open segment, rotated when the record would overflow it.
    fn segment_for(&mut self, day: &str, incoming: u64) -> Result<&mut Segment, AuditError> {
        let full = self.open.get(day).is_some_and(|segment| {
            segment.size > 0 && segment.size + incoming > self.segment_bytes
        });
        if full
            && let Some(segment) = self.open.remove(day)
            && segment.dirty
        {
            segment.file.sync_data()?;
        }
        if !self.open.contains_key(day) {
            if self.open.len() >= OPEN_DAYS
                && let Some((_, mut oldest)) = self.open.pop_first()
                && oldest.dirty
            {
                oldest.file.sync_data()?;
                oldest.dirty = false;
            }
            let day_dir = self.dir.join(day);
            std::fs::create_dir_all(&day_dir)?;
            // Unique per writer and start time: restarts never append to a
            // segment another process may still hold.
            let file_name = format!("{}-{}.seg", self.name, uuid::Uuid::now_v7().simple());
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(day_dir.join(&file_name))?;
            // The new directory entry must survive a crash too.
            File::open(&day_dir)?.sync_all()?;
            self.open.insert(
                day.to_owned(),
                Segment {
                    relative: format!("{day}/{file_name}"),
                    file,
                    size: 0,
                    dirty: false,
                },
            );
        }
        self.open.get_mut(day).ok_or(AuditError::Stopped)
    }

    fn sync(&mut self) -> Result<(), std::io::Error> {
        for segment in self.open.values_mut() {
            if segment.dirty {
                segment.file.sync_data()?;
                segment.dirty = false;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(request: &str) -> AuditBodies {
        AuditBodies {
            request_headers: vec![
                HttpHeader {
                    name: "Authorization".to_owned(),
                    value: "Bearer secret".to_owned(),
                },
                HttpHeader {
                    name: "content-type".to_owned(),
                    value: "application/json".to_owned(),
                },
            ],
            request_body: request.as_bytes().to_vec(),
            response_body: b"{\"ok\":true}".to_vec(),
            ..AuditBodies::default()
        }
    }

    #[test]
    fn scrubbing_drops_secret_headers_masks_keys_and_caps_bodies() {
        let key = format!("sk-{}", "a1B2".repeat(11).get(..43).unwrap_or_default());
        let mut captured = bodies(&format!(
            "{{\"note\":\"{key}\",\"pad\":\"{}\"}}",
            "x".repeat(100)
        ));
        scrub(&mut captured, 80);
        assert_eq!(captured.request_headers.len(), 1);
        assert_eq!(captured.request_headers[0].name, "content-type");
        let body = String::from_utf8(captured.request_body.clone()).unwrap();
        assert!(!body.contains(&key[3..]), "{body}");
        assert!(body.contains(&format!("sk-{}", "*".repeat(43))));
        assert_eq!(captured.request_body.len(), 80);
        assert!(captured.request_truncated && !captured.response_truncated);
    }

    #[tokio::test]
    async fn records_round_trip_across_days_writers_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let writers = AuditWriters::start(dir.path(), 2, 2048).unwrap();
        let day = 86_400 * 1_000_000;
        let items: Vec<Item> = (0..40)
            .map(|index| Item {
                occurred_at: 1_795_300_000_000_000 + (index % 2) * day,
                // Ids barely compress, so the small segments fill up.
                bodies: bodies(&format!(
                    "request {index} {}",
                    (0..20)
                        .map(|_| uuid::Uuid::now_v7().to_string())
                        .collect::<String>()
                )),
            })
            .collect();
        let locations = writers.write(items).await.unwrap();
        assert_eq!(locations.len(), 40);
        for (index, location) in locations.iter().enumerate() {
            let read = writers.read(location).unwrap();
            assert!(
                String::from_utf8_lossy(&read.request_body)
                    .starts_with(&format!("request {index} "))
            );
        }
        let days: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(days.len(), 2, "{days:?}");
        let segments = std::fs::read_dir(dir.path().join(&days[0]))
            .unwrap()
            .count();
        assert!(segments > 2, "small segments rotate: {segments}");
        // A flipped byte is caught, not decoded into garbage.
        let victim = &locations[3];
        let path = dir.path().join(&victim.segment);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(victim.offset + 10) as usize] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            writers.read(victim),
            Err(AuditError::Corrupt { .. })
        ));
    }
}
