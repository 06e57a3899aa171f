//! A body wrapper that counts bytes, optionally keeps the first bytes for
//! the audit log, and reports once when the body ends (or is dropped
//! unfinished), so usage is recorded after the response, off the request
//! path.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the edge sends.
pub type EdgeBody = UnsyncBoxBody<Bytes, BoxError>;

/// A whole body of `bytes`, as the edge's body type.
pub fn full(bytes: Bytes) -> EdgeBody {
    http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
        http_body_util::Full::new(bytes),
        |never| -> BoxError { match never {} },
    ))
}

/// An empty body, as the edge's body type.
pub fn empty() -> EdgeBody {
    full(Bytes::new())
}

/// What passed through one body.
#[derive(Debug, Default)]
pub struct Seen {
    pub bytes: u64,
    /// The first `cap` bytes, when capturing.
    pub captured: Option<Vec<u8>>,
    pub truncated: bool,
    /// The body reached its end (false: the peer went away, or an error).
    pub complete: bool,
    /// The body's stream failed: malformed framing (a bad chunk size), a
    /// reset, or a limit cut it.
    pub failed: bool,
}

type OnEnd = Box<dyn FnOnce(Seen) + Send>;

/// Shared view of a body's progress, for bodies whose end is reported
/// elsewhere (the request body is read by the upstream client).
#[derive(Debug, Default, Clone)]
pub struct Tap(Arc<Mutex<Seen>>);

impl Tap {
    pub fn take(&self) -> Seen {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

pin_project_lite::pin_project! {
    pub struct Observed<B> {
        #[pin]
        inner: B,
        seen: Seen,
        cap: usize,
        tap: Option<Tap>,
        on_end: Option<OnEnd>,
    }

    impl<B> PinnedDrop for Observed<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                on_end(std::mem::take(this.seen));
            }
        }
    }
}

impl<B> Observed<B> {
    /// Reports to `on_end` once the body ends or is dropped; keeps up to
    /// `capture` bytes (`None`: keep nothing).
    pub fn reporting(inner: B, capture: Option<usize>, on_end: OnEnd) -> Self {
        Self::new(inner, capture, None, Some(on_end))
    }

    /// Mirrors progress into `tap` as it goes.
    pub fn tapped(inner: B, capture: Option<usize>, tap: Tap) -> Self {
        Self::new(inner, capture, Some(tap), None)
    }

    fn new(inner: B, capture: Option<usize>, tap: Option<Tap>, on_end: Option<OnEnd>) -> Self {
        Self {
            inner,
            seen: Seen {
                captured: capture.map(|_| Vec::new()),
                ..Seen::default()
            },
            cap: capture.unwrap_or(0),
            tap,
            on_end,
        }
    }
}

impl<B> Body for Observed<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen.bytes += data.len() as u64;
                    if let Some(captured) = &mut this.seen.captured {
                        let room = this.cap.saturating_sub(captured.len());
                        if data.len() > room {
                            this.seen.truncated = true;
                        }
                        captured.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
            }
            Poll::Ready(None) => {
                this.seen.complete = true;
                if let Some(on_end) = this.on_end.take() {
                    on_end(std::mem::take(this.seen));
                }
            }
            Poll::Ready(Some(Err(_))) => this.seen.failed = true,
            Poll::Pending => {}
        }
        if let (Some(tap), Poll::Ready(_)) = (this.tap.as_ref(), &polled) {
            let mut shared = tap.0.lock().unwrap_or_else(PoisonError::into_inner);
            shared.bytes = this.seen.bytes;
            shared.truncated = this.seen.truncated;
            shared.complete = this.seen.complete;
            shared.failed = this.seen.failed;
            shared.captured.clone_from(&this.seen.captured);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// Cuts a response body that is still streaming at its deadline (an
    /// API's total upstream timeout) or that goes quiet for longer than
    /// the read timeout, with an error the client sees as a broken stream.
    /// Timers are armed only when needed: the total one when there is a
    /// total timeout, the quiet one only while the body is waiting, so a
    /// body that arrives whole registers no timer at all.
    pub struct Deadline<B> {
        #[pin]
        inner: B,
        total: Option<Pin<Box<tokio::time::Sleep>>>,
        quiet: Option<Pin<Box<tokio::time::Sleep>>>,
        idle: Duration,
        // When the last frame arrived (or the body started).
        last: tokio::time::Instant,
    }
}

impl<B> Deadline<B> {
    /// `total`: when the body must have ended, if ever; `idle`: the longest
    /// gap between two frames.
    pub fn new(inner: B, total: Option<tokio::time::Instant>, idle: Duration) -> Self {
        Self {
            inner,
            total: total.map(|at| Box::pin(tokio::time::sleep_until(at))),
            quiet: None,
            idle,
            last: tokio::time::Instant::now(),
        }
    }
}

impl<B> Body for Deadline<B>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        if let Some(total) = this.total.as_mut()
            && total.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Some(Err(
                "the upstream exchange exceeded its total timeout".into(),
            )));
        }
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => *this.last = tokio::time::Instant::now(),
            Poll::Pending => {
                let due = *this.last + *this.idle;
                let quiet = this
                    .quiet
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                if quiet.deadline() != due {
                    quiet.as_mut().reset(due);
                }
                if quiet.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(
                        "the upstream body paused for longer than the read timeout".into(),
                    )));
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
