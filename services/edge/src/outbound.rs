//! The request body on its way upstream: streamed once, or, when small and
//! a retry may need it, kept in memory so another attempt can send it
//! again. A body too large to keep is never retried.

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;

use crate::body::{BoxError, EdgeBody, Observed, Tap};
use crate::lingering::Lingering;
use crate::retry::MAX_REPLAY_BYTES;

pub enum Outbound {
    /// Sent once; `None` after it has been.
    Stream(Option<Incoming>, u64),
    Replay(Bytes),
}

impl Outbound {
    pub fn streaming(body: Incoming, max_body: u64) -> Self {
        Self::Stream(Some(body), max_body)
    }

    /// Keeps the body when it is known to be small (a declared length up
    /// to [`MAX_REPLAY_BYTES`], or none at all); streams it otherwise. A
    /// body over `max_body` is a 413, one that cannot be read a 400.
    pub async fn replayable(
        body: Incoming,
        headers: &HeaderMap,
        max_body: u64,
    ) -> Result<Self, StatusCode> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let small = match declared {
            Some(length) => length <= MAX_REPLAY_BYTES.min(max_body),
            None => body.is_end_stream(),
        };
        if !small {
            return Ok(Self::streaming(body, max_body));
        }
        let limit = usize::try_from(MAX_REPLAY_BYTES.min(max_body)).unwrap_or(usize::MAX);
        match Limited::new(Lingering::new(body), limit).collect().await {
            Ok(collected) => Ok(Self::Replay(collected.to_bytes())),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                Err(StatusCode::PAYLOAD_TOO_LARGE)
            }
            Err(_) => Err(StatusCode::BAD_REQUEST),
        }
    }

    pub fn can_replay(&self) -> bool {
        matches!(self, Self::Replay(_))
    }

    /// The body for the next attempt, and a tap on what it sends.
    pub fn body(&mut self, capture: Option<usize>) -> (EdgeBody, Tap) {
        let tap = Tap::default();
        let body = match self {
            Self::Replay(bytes) => {
                let full = Full::new(bytes.clone()).map_err(|never| -> BoxError { match never {} });
                Observed::tapped(full, capture, tap.clone()).boxed_unsync()
            }
            Self::Stream(body, max_body) => match body.take() {
                Some(body) => {
                    let limit = usize::try_from(*max_body).unwrap_or(usize::MAX);
                    let limited = Limited::new(Lingering::new(body), limit);
                    Observed::tapped(limited, capture, tap.clone()).boxed_unsync()
                }
                None => Full::new(Bytes::new())
                    .map_err(|never| -> BoxError { match never {} })
                    .boxed_unsync(),
            },
        };
        (body, tap)
    }
}
