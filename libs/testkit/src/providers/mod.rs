//! Mock LLM providers on loopback ports for the AI gateway's tests: each
//! speaks one provider's protocol (JSON and SSE), records what it was
//! sent, and misbehaves on demand (429 with Retry-After, 500, a slow first
//! byte, a stream cut mid-way, usage missing or malformed).

pub mod anthropic;
pub mod embeddings;
pub mod gemini;
pub mod openai;
pub mod responses;
pub mod tools;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The text every mock answers with; one completion token per word.
pub const TEXT: &str = "Hello from the mock provider";
/// Prompt tokens every mock reports (cached ones included), and of them
/// the cached ones.
pub const PROMPT_TOKENS: i64 = 11;
pub const CACHED_TOKENS: i64 = 3;

pub fn completion_tokens() -> i64 {
    i64::try_from(TEXT.split(' ').count()).unwrap_or(0)
}

pub(crate) type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Serves `answer` on an ephemeral loopback port.
pub(crate) async fn listen<F, Fut>(behaviour: Behaviour, answer: F) -> (SocketAddr, Control)
where
    F: Fn(http::request::Parts, serde_json::Value, Behaviour) -> Fut
        + Clone
        + Send
        + Sync
        + 'static,
    Fut: Future<Output = Response<MockBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let control = Control::new(behaviour);
    let shared = control.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (control, answer) = (shared.clone(), answer.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let (control, answer) = (control.clone(), answer.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body
                            .collect()
                            .await
                            .map(|body| body.to_bytes())
                            .unwrap_or_default();
                        let body: serde_json::Value =
                            serde_json::from_slice(&bytes).unwrap_or_default();
                        control.record(Received {
                            path: parts.uri.path().to_owned(),
                            query: parts.uri.query().unwrap_or_default().to_owned(),
                            headers: parts.headers.clone(),
                            body: body.clone(),
                        });
                        let behaviour = control.behaviour();
                        if let Behaviour::SlowFirstByte(wait) = behaviour {
                            tokio::time::sleep(wait).await;
                        }
                        Ok::<_, Infallible>(answer(parts, body, behaviour).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, control)
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An SSE body of `events`; a cut stream never ends after them.
pub(crate) fn sse(events: Vec<String>, cut: bool) -> Response<MockBody> {
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let frames = tokio_stream::iter(
        events
            .into_iter()
            .map(|event| Ok(Frame::data(Bytes::from(event)))),
    );
    let body: MockBody = if cut {
        StreamBody::new(tokio_stream::StreamExt::chain(
            frames,
            tokio_stream::pending(),
        ))
        .boxed()
    } else {
        StreamBody::new(frames).boxed()
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// The status a misbehaving mock answers with, before any protocol body.
pub(crate) fn failure(behaviour: &Behaviour) -> Option<(StatusCode, Option<u64>)> {
    match behaviour {
        Behaviour::RateLimited(seconds) => Some((StatusCode::TOO_MANY_REQUESTS, Some(*seconds))),
        Behaviour::ServerError => Some((StatusCode::INTERNAL_SERVER_ERROR, None)),
        _ => None,
    }
}

/// Adds `Retry-After` to a failure's answer.
pub(crate) fn with_retry_after(
    mut response: Response<MockBody>,
    seconds: Option<u64>,
) -> Response<MockBody> {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
    }
    response
}

/// How a mock answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// A normal answer, with usage.
    Answer,
    /// A normal answer that reports no usage.
    NoUsage,
    /// Usage with nonsense in it (negative and non-numeric counts).
    MalformedUsage,
    /// 429 with this `Retry-After` (seconds).
    RateLimited(u64),
    /// 500 with a provider error body.
    ServerError,
    /// The answer after this long.
    SlowFirstByte(Duration),
    /// A stream that stops after its first event (no usage, no end).
    CutMidStream,
    /// A stream of this many words, whatever max tokens says (a provider
    /// that overshoots), with its usage at the end (OpenAI's mock).
    Verbose(usize),
}

/// One request a mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// The query string ("" without one).
    pub query: String,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

/// What tests share with a running mock.
#[derive(Debug, Clone)]
pub struct Control {
    behaviour: Arc<Mutex<Behaviour>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Control {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour: Arc::new(Mutex::new(behaviour)),
            received: Arc::default(),
        }
    }

    /// From now on, answer like this.
    pub fn set(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, received: Received) {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(received);
    }
}
