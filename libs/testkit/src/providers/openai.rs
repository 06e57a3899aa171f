//! A mock of OpenAI's `POST /v1/chat/completions` (JSON, and SSE with the
//! usage chunk when `stream_options.include_usage` is set). It answers
//! with the model it was sent and [`super::TEXT`]; usage is
//! [`super::PROMPT_TOKENS`] prompt tokens ([`super::CACHED_TOKENS`] of
//! them cached) and one completion token per word.

use std::net::SocketAddr;

use http::{Response, StatusCode};

use super::{Behaviour, Control, MockBody, TEXT, completion_tokens};

/// Starts the mock on an ephemeral loopback port.
pub async fn start(behaviour: Behaviour) -> (SocketAddr, Control) {
    super::listen(behaviour, |parts, body, behaviour| async move {
        answer(&parts, &body, &behaviour)
    })
    .await
}

fn answer(
    parts: &http::request::Parts,
    body: &serde_json::Value,
    behaviour: &Behaviour,
) -> Response<MockBody> {
    if parts.uri.path().ends_with("/models") {
        return super::json(
            StatusCode::OK,
            &serde_json::json!({"object": "list", "data": []}),
        );
    }
    if let Some((status, retry_after)) = super::failure(behaviour) {
        let code = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_exceeded"
        } else {
            "server_error"
        };
        let body = serde_json::json!({"error": {"message": format!("mock {code}"), "type": code, "code": code}});
        return super::with_retry_after(super::json(status, &body), retry_after);
    }
    if parts.uri.path().ends_with("/embeddings") {
        return super::embeddings::openai(body);
    }
    if parts.uri.path().ends_with("/responses") {
        return super::responses::answer(body);
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let streams = body["stream"].as_bool().unwrap_or(false);
    if !parts.uri.path().ends_with("/chat/completions") {
        return legacy_completion(&model, body, behaviour);
    }
    if let Some(tool) = super::tools::openai_call(body) {
        return super::tools::openai(&model, &tool, streams, behaviour);
    }
    if let (true, Behaviour::Verbose(words)) = (streams, behaviour) {
        return verbose(&model, *words);
    }
    if streams {
        let usage = body["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false);
        return stream(&model, usage, behaviour);
    }
    let mut answer = serde_json::json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": TEXT}}],
    });
    if let Some(usage) = usage(behaviour) {
        answer["usage"] = usage;
    }
    super::json(StatusCode::OK, &answer)
}

fn usage(behaviour: &Behaviour) -> Option<serde_json::Value> {
    match behaviour {
        Behaviour::NoUsage | Behaviour::CutMidStream => None,
        Behaviour::MalformedUsage => Some(serde_json::json!({
            "prompt_tokens": -5, "completion_tokens": "many"})),
        _ => Some(serde_json::json!({
            "prompt_tokens": super::PROMPT_TOKENS,
            "completion_tokens": completion_tokens(),
            "total_tokens": super::PROMPT_TOKENS + completion_tokens(),
            "prompt_tokens_details": {"cached_tokens": super::CACHED_TOKENS},
        })),
    }
}

/// One chunk per word, a finish chunk, the usage chunk (when asked), then
/// `[DONE]`; a cut stream stops after the first chunk and never ends.
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
    let mut events = Vec::new();
    for (index, word) in TEXT.split(' ').enumerate() {
        let text = if index == 0 {
            word.to_owned()
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
    let cut = *behaviour == Behaviour::CutMidStream;
    if cut {
        events.truncate(1);
    }
    super::sse(events, cut)
}

/// The legacy `/v1/completions`: `choices[].text`, JSON or a stream of one
/// chunk per word, with the usage chunk when asked.
fn legacy_completion(
    model: &str,
    body: &serde_json::Value,
    behaviour: &Behaviour,
) -> Response<MockBody> {
    let choice = |text: &str, finish: serde_json::Value| {
        serde_json::json!({"id": "cmpl-mock", "object": "text_completion", "created": 0,
            "model": model, "choices": [{"index": 0, "text": text, "finish_reason": finish}]})
    };
    if !body["stream"].as_bool().unwrap_or(false) {
        let mut answer = choice(TEXT, serde_json::json!("stop"));
        if let Some(usage) = usage(behaviour) {
            answer["usage"] = usage;
        }
        return super::json(StatusCode::OK, &answer);
    }
    let mut events: Vec<String> = TEXT
        .split(' ')
        .enumerate()
        .map(|(index, word)| {
            let text = if index == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            format!("data: {}\n\n", choice(&text, serde_json::Value::Null))
        })
        .collect();
    events.push(format!(
        "data: {}\n\n",
        choice("", serde_json::json!("stop"))
    ));
    let asked = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    if asked && let Some(usage) = usage(behaviour) {
        let last = serde_json::json!({"id": "cmpl-mock", "object": "text_completion",
            "created": 0, "model": model, "choices": [], "usage": usage});
        events.push(format!("data: {last}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());
    super::sse(events, false)
}

/// `words` chunks of one word each, then the finish and usage chunks.
fn verbose(model: &str, words: usize) -> Response<MockBody> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let chunk = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut events: Vec<String> = (0..words)
        .map(|_| {
            chunk(
                serde_json::json!({"content": " word"}),
                serde_json::Value::Null,
            )
        })
        .collect();
    events.push(chunk(serde_json::json!({}), serde_json::json!("stop")));
    let produced = i64::try_from(words).unwrap_or(i64::MAX);
    let usage = serde_json::json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
        "created": 0, "model": model, "choices": [], "usage": {"prompt_tokens": super::PROMPT_TOKENS,
        "completion_tokens": produced, "total_tokens": super::PROMPT_TOKENS + produced}});
    events.push(format!("data: {usage}\n\n"));
    events.push("data: [DONE]\n\n".to_owned());
    super::sse(events, false)
}
