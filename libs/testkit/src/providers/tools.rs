//! Tool use in the mocks: a request that declares tools, and whose last
//! turn is not a tool's result, is answered with a call to the first tool
//! with [`ARGUMENTS`] (streamed as two argument deltas); once the result
//! comes back, the mock answers with [`super::TEXT`]. That makes a whole
//! tool-call round trip, in every protocol.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::{Behaviour, MockBody};

/// The arguments every mock calls its tool with.
pub const ARGUMENTS: &str = r#"{"city":"Paris"}"#;
const HALVES: [&str; 2] = [r#"{"city":"#, r#""Paris"}"#];
/// Completion tokens a call is reported at.
pub const CALL_TOKENS: i64 = 7;

/// The tool an OpenAI request should be answered with a call to.
pub fn openai_call(body: &Value) -> Option<String> {
    let name = body["tools"][0]["function"]["name"].as_str()?;
    let last = body["messages"].as_array()?.last()?;
    (last["role"] != "tool").then(|| name.to_owned())
}

pub fn anthropic_call(body: &Value) -> Option<String> {
    let name = body["tools"][0]["name"].as_str()?;
    let last = body["messages"].as_array()?.last()?;
    let answered = last["content"]
        .as_array()
        .is_some_and(|blocks| blocks.iter().any(|block| block["type"] == "tool_result"));
    (!answered).then(|| name.to_owned())
}

pub fn gemini_call(body: &Value) -> Option<String> {
    let name = body["tools"][0]["functionDeclarations"][0]["name"].as_str()?;
    let last = body["contents"].as_array()?.last()?;
    let answered = last["parts"].as_array().is_some_and(|parts| {
        parts
            .iter()
            .any(|part| part.get("functionResponse").is_some())
    });
    (!answered).then(|| name.to_owned())
}

fn openai_usage() -> Value {
    json!({"prompt_tokens": super::PROMPT_TOKENS, "completion_tokens": CALL_TOKENS,
        "total_tokens": super::PROMPT_TOKENS + CALL_TOKENS})
}

pub fn openai(model: &str, tool: &str, stream: bool, behaviour: &Behaviour) -> Response<MockBody> {
    if !stream {
        let call = json!({"id": "call_mock", "type": "function",
            "function": {"name": tool, "arguments": ARGUMENTS}});
        let answer = json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 0,
            "model": model, "choices": [{"index": 0, "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": null, "tool_calls": [call]}}],
            "usage": openai_usage()});
        return super::json(StatusCode::OK, &answer);
    }
    let chunk = |delta: Value, finish: Value| {
        let chunk = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk",
            "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {chunk}\n\n")
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_mock",
            "type": "function", "function": {"name": tool, "arguments": ""}}]}),
        Value::Null,
    )];
    for half in HALVES {
        let delta = json!({"tool_calls": [{"index": 0, "function": {"arguments": half}}]});
        events.push(chunk(delta, Value::Null));
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    let last = json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 0,
        "model": model, "choices": [], "usage": openai_usage()});
    events.push(format!("data: {last}\n\n"));
    events.push("data: [DONE]\n\n".to_owned());
    super::sse(events, *behaviour == Behaviour::CutMidStream)
}

pub fn anthropic(model: &str, tool: &str, stream: bool) -> Response<MockBody> {
    let usage = json!({"input_tokens": super::PROMPT_TOKENS, "output_tokens": CALL_TOKENS});
    if !stream {
        let answer = json!({"id": "msg_mock", "type": "message", "role": "assistant",
            "model": model, "stop_reason": "tool_use", "stop_sequence": null,
            "content": [{"type": "tool_use", "id": "toolu_mock", "name": tool,
                "input": {"city": "Paris"}}], "usage": usage});
        return super::json(StatusCode::OK, &answer);
    }
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_mock",
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": super::PROMPT_TOKENS, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_mock", "name": tool, "input": {}}}),
        ),
    ];
    for half in HALVES {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta",
            "index": 0, "delta": {"type": "input_json_delta", "partial_json": half}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    events.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": null},
        "usage": {"output_tokens": CALL_TOKENS}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    super::sse(events, false)
}

pub fn gemini(model: &str, tool: &str, stream: bool) -> Response<MockBody> {
    let answer = json!({"candidates": [{"content": {"role": "model",
        "parts": [{"functionCall": {"name": tool, "args": {"city": "Paris"}}}]},
        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": super::PROMPT_TOKENS,
            "candidatesTokenCount": CALL_TOKENS,
            "totalTokenCount": super::PROMPT_TOKENS + CALL_TOKENS},
        "modelVersion": model});
    if stream {
        return super::sse(vec![format!("data: {answer}\r\n\r\n")], false);
    }
    super::json(StatusCode::OK, &answer)
}
