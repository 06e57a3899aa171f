//! One keep-alive connection: takes the next scheduled request, sends it,
//! records the latency from its scheduled start.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};

use crate::options::Options;

pub struct Worker {
    options: Arc<Options>,
    measure_from: Instant,
    histogram: Histogram<u64>,
    errors: u64,
}

impl Worker {
    pub fn new(options: Arc<Options>, measure_from: Instant) -> anyhow::Result<Self> {
        Ok(Self {
            options,
            measure_from,
            // Up to one minute in microseconds, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            errors: 0,
        })
    }

    /// Runs until the dispatcher is done; returns the latencies and the
    /// count of failed requests (non-2xx or a broken connection).
    pub async fn run(
        mut self,
        scheduled: Arc<Mutex<mpsc::UnboundedReceiver<Instant>>>,
    ) -> anyhow::Result<(Histogram<u64>, u64)> {
        let mut connection = None;
        loop {
            let Some(at) = scheduled.lock().await.recv().await else {
                return Ok((self.histogram, self.errors));
            };
            let ok = match self.send(&mut connection).await {
                Ok(ok) => ok,
                Err(_) => {
                    connection = None;
                    false
                }
            };
            if at >= self.measure_from {
                self.record(at, ok);
            }
        }
    }

    fn record(&mut self, at: Instant, ok: bool) {
        if !ok {
            self.errors += 1;
            return;
        }
        let micros = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    async fn send(
        &self,
        connection: &mut Option<SendRequest<Empty<Bytes>>>,
    ) -> anyhow::Result<bool> {
        let sender = match connection {
            Some(sender) if sender.is_ready() => sender,
            _ => connection.insert(self.connect().await?),
        };
        let mut request = http::Request::get(self.options.target.clone())
            .header(http::header::HOST, self.options.authority.as_str())
            .body(Empty::<Bytes>::new())?;
        request.headers_mut().extend(
            self.options
                .headers
                .iter()
                .cloned()
                .map(|(k, v)| (Some(k), v)),
        );
        let response = sender.send_request(request).await?;
        let ok = response.status().is_success();
        response.into_body().collect().await?;
        Ok(ok)
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Empty<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(&self.options.authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(sender)
    }
}
