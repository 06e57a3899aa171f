//! A mock of Anthropic's `POST /v1/messages` (JSON, and the SSE event
//! sequence the SDK expects: `message_start` with the input usage,
//! `content_block_*`, `message_delta` with the output usage,
//! `message_stop`). Same text and token figures as the other mocks: the
//! input tokens are the prompt without its cached part.

use std::net::SocketAddr;

use http::{Response, StatusCode};

use super::{Behaviour, CACHED_TOKENS, Control, MockBody, PROMPT_TOKENS, TEXT, completion_tokens};

/// Starts the mock on an ephemeral loopback port.
pub async fn start(behaviour: Behaviour) -> (SocketAddr, Control) {
    super::listen(behaviour, |_parts, body, behaviour| async move {
        answer(&body, &behaviour)
    })
    .await
}

fn answer(body: &serde_json::Value, behaviour: &Behaviour) -> Response<MockBody> {
    if let Some((status, retry_after)) = super::failure(behaviour) {
        let kind = if status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_error"
        } else {
            "api_error"
        };
        let body = serde_json::json!({"type": "error", "error": {"type": kind, "message": format!("mock {kind}")}});
        return super::with_retry_after(super::json(status, &body), retry_after);
    }
    let model = body["model"].as_str().unwrap_or("unknown").to_owned();
    let streams = body["stream"].as_bool().unwrap_or(false);
    if let Some(tool) = super::tools::anthropic_call(body) {
        return super::tools::anthropic(&model, &tool, streams);
    }
    if streams {
        return stream(&model, behaviour);
    }
    let mut answer = serde_json::json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": TEXT}],
        "stop_reason": "end_turn", "stop_sequence": null,
    });
    answer["usage"] = usage(behaviour, completion_tokens());
    super::json(StatusCode::OK, &answer)
}

fn usage(behaviour: &Behaviour, output: i64) -> serde_json::Value {
    match behaviour {
        Behaviour::NoUsage => serde_json::json!({}),
        Behaviour::MalformedUsage => {
            serde_json::json!({"input_tokens": "a few", "output_tokens": -1})
        }
        _ => serde_json::json!({
            "input_tokens": PROMPT_TOKENS - CACHED_TOKENS,
            "cache_read_input_tokens": CACHED_TOKENS,
            "cache_creation_input_tokens": 0,
            "output_tokens": output,
        }),
    }
}

fn stream(model: &str, behaviour: &Behaviour) -> Response<MockBody> {
    let event = |name: &str, data: serde_json::Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![event(
        "message_start",
        serde_json::json!({"type": "message_start", "message": {
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": usage(behaviour, 1)}}),
    )];
    events.push(event(
        "content_block_start",
        serde_json::json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(event("ping", serde_json::json!({"type": "ping"})));
    for (index, word) in TEXT.split(' ').enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        events.push(event(
            "content_block_delta",
            serde_json::json!({"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": text}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        serde_json::json!({"type": "content_block_stop", "index": 0}),
    ));
    let output = match behaviour {
        Behaviour::NoUsage => serde_json::json!({}),
        _ => serde_json::json!({"output_tokens": completion_tokens()}),
    };
    events.push(event(
        "message_delta",
        serde_json::json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": output}),
    ));
    events.push(event(
        "message_stop",
        serde_json::json!({"type": "message_stop"}),
    ));
    let cut = *behaviour == Behaviour::CutMidStream;
    if cut {
        events.truncate(3);
    }
    super::sse(events, cut)
}
