//! A response body on its way to the client that is also kept, so the
//! answer is stored once it has ended whole. A body over the size cap, one
//! with trailers, or one that fails is passed on and not stored.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};

use super::Stored;

pin_project_lite::pin_project! {
    pub struct Filling<B> {
        #[pin]
        inner: B,
        pending: Option<Pending>,
    }
}

/// What is kept so far, and where it goes when the body ends.
pub(super) struct Pending {
    pub(super) stored: Stored,
    pub(super) body: BytesMut,
    pub(super) max: u64,
}

impl<B> Filling<B> {
    pub(super) fn new(inner: B, pending: Pending) -> Self {
        Self {
            inner,
            pending: Some(pending),
        }
    }
}

impl<B> Body for Filling<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let kept = match (frame.data_ref(), this.pending.as_mut()) {
                    (Some(data), Some(pending)) => {
                        pending.body.extend_from_slice(data);
                        pending.body.len() as u64 <= pending.max
                    }
                    // Trailers cannot be replayed from the cache.
                    _ => false,
                };
                if !kept {
                    *this.pending = None;
                } else if this.inner.is_end_stream() {
                    // hyper stops polling a body that says it has ended.
                    finish(this.pending);
                }
            }
            Poll::Ready(None) => finish(this.pending),
            Poll::Ready(Some(Err(_))) => *this.pending = None,
            Poll::Pending => {}
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

fn finish(pending: &mut Option<Pending>) {
    if let Some(pending) = pending.take() {
        pending.stored.store(pending.body.freeze());
    }
}
