//! An incremental Server-Sent Events parser (WHATWG HTML §9.2) for streams
//! passed through event by event: bytes arrive in chunks split anywhere,
//! each complete event comes out with its exact bytes (so it is forwarded
//! unchanged, or dropped) and its parsed `event` and `data` fields. Only
//! the tail of an unfinished event is held, up to a bound.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field; empty = "message".
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
    /// The event's bytes as received, through its blank line.
    pub raw: Bytes,
}

/// More than `max_event_bytes` arrived without an event ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an SSE event is longer than {0} bytes")]
pub struct TooLong(pub usize);

pub struct Parser {
    pending: BytesMut,
    /// Where the scan for the current event's end resumes, and whether
    /// that position begins a line.
    scanned: usize,
    line_start: bool,
    max_event_bytes: usize,
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            pending: BytesMut::new(),
            scanned: 0,
            line_start: true,
            max_event_bytes,
        }
    }

    /// Feeds a chunk; returns the events it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLong> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.event_end() {
            let raw = self.pending.split_to(end).freeze();
            self.scanned = 0;
            self.line_start = true;
            events.push(parse(raw));
        }
        if self.pending.len() > self.max_event_bytes {
            return Err(TooLong(self.max_event_bytes));
        }
        Ok(events)
    }

    /// Bytes held for an event that has not ended yet.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// The end (exclusive) of the first complete event: a line end at the
    /// start of a line (each `\n`, `\r\n` or `\r`).
    fn event_end(&mut self) -> Option<usize> {
        let bytes = &self.pending[..];
        let mut index = self.scanned;
        while index < bytes.len() {
            let byte = bytes[index];
            if byte != b'\n' && byte != b'\r' {
                self.line_start = false;
                index += 1;
                continue;
            }
            // A `\r` at the very end may be half of `\r\n`: wait for more.
            if byte == b'\r' && index + 1 == bytes.len() {
                break;
            }
            let next = if byte == b'\r' && bytes[index + 1] == b'\n' {
                index + 2
            } else {
                index + 1
            };
            if self.line_start {
                return Some(next);
            }
            self.line_start = true;
            index = next;
        }
        self.scanned = index;
        None
    }
}

/// The fields of one event's bytes (a comment-only block has no data).
fn parse(raw: Bytes) -> Event {
    let text = String::from_utf8_lossy(&raw);
    let mut event = String::new();
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']).filter(|line| !line.is_empty()) {
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut event),
            "data" => match &mut data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => data = Some(value.to_owned()),
            },
            _ => {}
        }
    }
    Event {
        event,
        data: data.unwrap_or_default(),
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new(1 << 20);
        chunks
            .iter()
            .flat_map(|chunk| parser.push(chunk).unwrap())
            .collect()
    }

    #[test]
    fn events_split_anywhere_come_out_whole_with_their_bytes() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n: ping\n\n";
        let whole = all(&[stream]);
        for split in 1..stream.len() {
            let (head, tail) = stream.split_at(split);
            assert_eq!(all(&[head, tail]), whole, "split at {split}");
        }
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event, "message_start");
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(
            &whole[0].raw[..],
            b"event: message_start\ndata: {\"a\":1}\n\n"
        );
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].data, "", "a comment-only block");
        let raw: Vec<u8> = whole.iter().flat_map(|event| event.raw.to_vec()).collect();
        assert_eq!(raw, stream, "nothing lost or added");
    }

    #[test]
    fn every_line_ending_is_understood() {
        for stream in [&b"data: a\r\n\r\ndata: b\r\rdata: c\n\n"[..]] {
            let events = all(&[stream]);
            let data: Vec<&str> = events.iter().map(|event| event.data.as_str()).collect();
            assert_eq!(data, ["a", "b", "c"]);
            for split in 1..stream.len() {
                let (head, tail) = stream.split_at(split);
                assert_eq!(all(&[head, tail]), events, "split at {split}");
            }
        }
    }

    #[test]
    fn an_unfinished_event_is_held_and_bounded() {
        let mut parser = Parser::new(16);
        assert!(parser.push(b"data: partial").unwrap().is_empty());
        assert_eq!(parser.pending(), b"data: partial");
        assert_eq!(parser.push(b" and much more").unwrap_err(), TooLong(16));
    }
}
