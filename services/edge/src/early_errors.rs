//! Problem bodies for the errors hyper answers itself. When hyper cannot
//! parse a request head (400, 414, 431) it writes a bare response before
//! the edge ever sees a request. This stream wrapper recognises that
//! response on its way out, by what every edge response has and it lacks
//! (an `x-request-id`), and writes a problem+json response in its place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::problem::Problem;

pin_project_lite::pin_project! {
    pub struct EarlyErrors<S> {
        #[pin]
        inner: S,
        // The replacement still to be written.
        pending: Vec<u8>,
        written: usize,
    }
}

impl<S> EarlyErrors<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// hyper's own error response: an HTTP/1.1 head with no body and no
/// request id. Returns its status.
fn automatic_response(buf: &[u8]) -> Option<u16> {
    let head = buf.strip_prefix(b"HTTP/1.1 4")?;
    if !buf.ends_with(b"\r\n\r\n") || buf.len() > 512 {
        return None;
    }
    let text = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if text.contains("\r\nx-request-id:") || !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let digits = std::str::from_utf8(head.get(..2)?).ok()?;
    format!("4{digits}").parse().ok()
}

fn replacement(status: u16) -> Vec<u8> {
    let detail = match status {
        431 => "the request head is too large",
        414 => "the request URI is too long",
        _ => "the request head is malformed",
    };
    let status = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let request_id = uuid::Uuid::now_v7().to_string();
    Problem::new(status, detail, &request_id).to_http1_bytes()
}

impl<S: AsyncWrite> EarlyErrors<S> {
    /// Writes what is pending; Ready(Ok) once nothing is.
    fn drain(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        while *this.written < this.pending.len() {
            let n = std::task::ready!(
                this.inner
                    .as_mut()
                    .poll_write(cx, &this.pending[*this.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *this.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead> AsyncRead for EarlyErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<S: AsyncWrite> AsyncWrite for EarlyErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        if let Some(status) = automatic_response(buf) {
            let this = self.as_mut().project();
            *this.pending = replacement(status);
            *this.written = 0;
            // Best effort now; flush and shutdown finish it.
            let _ = self.as_mut().drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let [only] = bufs
            && automatic_response(only).is_some()
        {
            return self.poll_write(cx, only);
        }
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.as_mut().drain(cx))?;
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_error_heads_are_recognised() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:00:00 GMT\r\n\r\n";
        assert_eq!(automatic_response(bare), Some(431));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nx-request-id: abc\r\n\r\n";
        assert_eq!(automatic_response(ours), None);
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(automatic_response(with_body), None);
        assert_eq!(
            automatic_response(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
    }

    #[tokio::test]
    async fn a_bare_error_head_goes_out_as_problem_json() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, server) = tokio::io::duplex(4096);
        let mut wrapped = EarlyErrors::new(server);
        wrapped
            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        wrapped.shutdown().await.unwrap();
        drop(wrapped);
        let mut seen = String::new();
        let mut client = client;
        client.read_to_string(&mut seen).await.unwrap();
        assert!(seen.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{seen}");
        assert!(seen.contains("content-type: application/problem+json"));
        assert!(seen.contains("\"detail\":\"the request head is malformed\""));
    }
}
