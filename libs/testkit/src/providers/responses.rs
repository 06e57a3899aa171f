//! OpenAI's Responses API in the OpenAI mock (`/v1/responses`): a
//! response with [`super::TEXT`] and usage, or its stream of `response.*`
//! events ending in `response.completed` with the usage.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{CACHED_TOKENS, MockBody, PROMPT_TOKENS, TEXT, completion_tokens};

fn response(model: &str, status: &str, output: Value) -> Value {
    json!({"id": "resp_mock", "object": "response", "created_at": 0, "status": status,
        "model": model, "output": output, "error": null, "incomplete_details": null,
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [],
        "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": completion_tokens(),
            "total_tokens": PROMPT_TOKENS + completion_tokens(),
            "input_tokens_details": {"cached_tokens": CACHED_TOKENS},
            "output_tokens_details": {"reasoning_tokens": 0}}})
}

fn message(text: &str, status: &str) -> Value {
    let content = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    };
    json!({"type": "message", "id": "msg_mock", "role": "assistant", "status": status,
        "content": content})
}

pub fn answer(body: &Value) -> Response<MockBody> {
    let model = body["model"].as_str().unwrap_or("unknown");
    if !body["stream"].as_bool().unwrap_or(false) {
        let answer = response(model, "completed", json!([message(TEXT, "completed")]));
        return super::json(StatusCode::OK, &answer);
    }
    let mut sequence = 0;
    let mut events = Vec::new();
    let mut event = |kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(sequence);
        sequence += 1;
        events.push(format!("event: {kind}\ndata: {data}\n\n"));
    };
    event(
        "response.created",
        json!({"response": response(model, "in_progress", json!([]))}),
    );
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("", "in_progress")}),
    );
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let at = json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0});
    let with = |mut base: Value, name: &str, value: Value| {
        base[name] = value;
        base
    };
    event(
        "response.content_part.added",
        with(at.clone(), "part", part("")),
    );
    for (index, word) in TEXT.split(' ').enumerate() {
        let delta = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        event(
            "response.output_text.delta",
            with(at.clone(), "delta", json!(delta)),
        );
    }
    event(
        "response.output_text.done",
        with(at.clone(), "text", json!(TEXT)),
    );
    event("response.content_part.done", with(at, "part", part(TEXT)));
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message(TEXT, "completed")}),
    );
    let done = response(model, "completed", json!([message(TEXT, "completed")]));
    event("response.completed", json!({"response": done}));
    super::sse(events, false)
}
