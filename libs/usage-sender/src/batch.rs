//! The `Ingest` request as the stream task sends it: the events are the
//! spool's records, each already one `UsageEvent`'s protobuf encoding, so a
//! batch is those bytes framed as `IngestRequest`'s repeated field. The wire
//! format is exactly `IngestRequest`'s: an event costs no decode from the
//! spool and no encode again for the stream.

use bytes::{Buf, BufMut, Bytes};
use prost::DecodeError;
use prost::encoding::{self, DecodeContext, WireType};

/// `IngestRequest.sequence`.
const SEQUENCE: u32 = 1;
/// `IngestRequest.events`.
const EVENTS: u32 = 2;

/// An `IngestRequest` whose events are encoded already.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct SpooledBatch {
    pub(crate) sequence: i64,
    pub(crate) events: Vec<Bytes>,
}

impl prost::Message for SpooledBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.sequence != 0 {
            encoding::int64::encode(SEQUENCE, &self.sequence, buf);
        }
        for event in &self.events {
            encoding::bytes::encode(EVENTS, event, buf);
        }
    }

    /// Never received: decoding is here for the framing's test.
    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            SEQUENCE => encoding::int64::merge(wire_type, &mut self.sequence, buf, ctx),
            EVENTS => encoding::bytes::merge_repeated(wire_type, &mut self.events, buf, ctx),
            _ => encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let sequence = if self.sequence == 0 {
            0
        } else {
            encoding::int64::encoded_len(SEQUENCE, &self.sequence)
        };
        sequence + encoding::bytes::encoded_len_repeated(EVENTS, &self.events)
    }

    fn clear(&mut self) {
        self.sequence = 0;
        self.events.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gateway_proto::usage::v1::{IngestRequest, UsageEvent};
    use prost::Message as _;

    use super::*;

    fn event(index: i64) -> UsageEvent {
        UsageEvent {
            event_id: format!("event-{index}"),
            tenant_id: "tenant".to_owned(),
            status: 200,
            bytes_out: index * 1_000,
            stream: index % 2 == 0,
            ..UsageEvent::default()
        }
    }

    /// The framing is `IngestRequest`'s, byte for byte: what the usage
    /// service decodes is the events the spool held.
    #[test]
    fn encodes_as_the_ingest_request_of_the_same_events() {
        for (sequence, count) in [(0, 0), (1, 1), (7, 3), (i64::MAX, 40)] {
            let events: Vec<UsageEvent> = (0..count).map(event).collect();
            let spooled = SpooledBatch {
                sequence,
                events: events
                    .iter()
                    .map(|event| Bytes::from(event.encode_to_vec()))
                    .collect(),
            };
            let bytes = spooled.encode_to_vec();
            assert_eq!(bytes.len(), spooled.encoded_len());
            let request = IngestRequest { sequence, events };
            assert_eq!(bytes, request.encode_to_vec());
            assert_eq!(IngestRequest::decode(bytes.as_slice()).unwrap(), request);
            assert_eq!(SpooledBatch::decode(bytes.as_slice()).unwrap(), spooled);
        }
    }
}
