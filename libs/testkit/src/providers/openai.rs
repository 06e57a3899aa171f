//! A mock of OpenAI's `POST /v1/chat/completions` (JSON, and SSE with the
//! usage chunk when `stream_options.include_usage` is set) and `GET
//! /v1/models`. It answers with the model it was sent and a fixed text;
//! usage is 11 prompt tokens and one completion token per word of the
//! text, 3 of the prompt cached.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::{Behaviour, Control, Received};

/// The answer's text; one completion token per word.
pub const TEXT: &str = "Hello from the mock provider";
pub const PROMPT_TOKENS: i64 = 11;
pub const CACHED_TOKENS: i64 = 3;

pub fn completion_tokens() -> i64 {
    i64::try_from(TEXT.split(' ').count()).unwrap_or(0)
}

type MockBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// Starts the mock on an ephemeral loopback port.
pub async fn start(behaviour: Behaviour) -> (SocketAddr, Control) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let control = Control::new(behaviour);
    let shared = control.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let control = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let control = control.clone();
                    async move { Ok::<_, Infallible>(answer(request, &control).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, control)
}

async fn answer(request: Request<Incoming>, control: &Control) -> Response<MockBody> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    control.record(Received {
        path: parts.uri.path().to_owned(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if parts.uri.path().ends_with("/models") {
        return json(
            StatusCode::OK,
            &serde_json::json!({"object": "list", "data": []}),
        );
    }
    let behaviour = control.behaviour();
    match behaviour {
        Behaviour::RateLimited(seconds) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded");
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(seconds));
            return response;
        }
        Behaviour::ServerError => return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        Behaviour::SlowFirstByte(wait) => tokio::time::sleep(wait).await,
        _ => {}
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    if body["stream"].as_bool().unwrap_or(false) {
        let usage = body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        return stream(&model, usage, &behaviour);
    }
    let mut answer = serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": TEXT}}],
    });
    if let Some(usage) = usage(&behaviour) {
        answer["usage"] = usage;
    }
    json(StatusCode::OK, &answer)
}

fn usage(behaviour: &Behaviour) -> Option<serde_json::Value> {
    match behaviour {
        Behaviour::NoUsage | Behaviour::CutMidStream => None,
        Behaviour::MalformedUsage => Some(serde_json::json!({
            "prompt_tokens": -5, "completion_tokens": "many"})),
        _ => Some(serde_json::json!({
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion_tokens(),
            "total_tokens": PROMPT_TOKENS + completion_tokens(),
            "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS},
        })),
    }
}

/// One chunk per word, then the usage chunk (when asked), then `[DONE]`;
/// a cut stream stops after the first chunk without ending properly.
fn stream(model: &str, include_usage: bool, behaviour: &Behaviour) -> Response<MockBody> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let mut chunk = serde_json::json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = serde_json::Value::Null;
        }
        format!("data: {chunk}\n\n")
    };
    let words: Vec<&str> = TEXT.split(' ').collect();
    let mut events = Vec::new();
    for (index, word) in words.iter().enumerate() {
        let text = if index == 0 {
            (*word).to_owned()
        } else {
            format!(" {word}")
        };
        events.push(chunk(
            serde_json::json!({"content": text}),
            serde_json::Value::Null,
        ));
    }
    events.push(chunk(serde_json::json!({}), serde_json::json!("stop")));
    if include_usage && let Some(usage) = usage(behaviour) {
        let last = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 0, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    if *behaviour == Behaviour::CutMidStream {
        events.truncate(1);
    }
    let cut = *behaviour == Behaviour::CutMidStream;
    let frames = tokio_stream::iter(
        events
            .into_iter()
            .map(|event| Ok(Frame::data(Bytes::from(event)))),
    );
    let body: MockBody = if cut {
        // Never ends: the edge must give up on its own read timeout or
        // the client's going away.
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

fn json(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, code: &str) -> Response<MockBody> {
    json(
        status,
        &serde_json::json!({"error": {"message": format!("mock {code}"), "type": code, "code": code}}),
    )
}
