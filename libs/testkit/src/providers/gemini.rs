//! A mock of Gemini's `models/{model}:generateContent` and
//! `:streamGenerateContent?alt=sse` (each chunk a whole response with the
//! cumulative `usageMetadata`). Same text and token figures as the other
//! mocks.

use std::net::SocketAddr;

use http::{Response, StatusCode};

use super::{Behaviour, CACHED_TOKENS, Control, MockBody, PROMPT_TOKENS, TEXT, completion_tokens};

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
    if let Some((status, retry_after)) = super::failure(behaviour) {
        let (code, name) = if status == StatusCode::TOO_MANY_REQUESTS {
            (429, "RESOURCE_EXHAUSTED")
        } else {
            (500, "INTERNAL")
        };
        let body =
            serde_json::json!({"error": {"code": code, "message": "mock failure", "status": name}});
        return super::with_retry_after(super::json(status, &body), retry_after);
    }
    let path = parts.uri.path();
    let model = path
        .rsplit_once("/models/")
        .and_then(|(_, rest)| rest.split_once(':'))
        .map_or("unknown", |(model, _)| model)
        .to_owned();
    if let Some(embedded) = super::embeddings::gemini(path, body) {
        return embedded;
    }
    let streams = path.ends_with(":streamGenerateContent");
    if let Some(tool) = super::tools::gemini_call(body) {
        return super::tools::gemini(&model, &tool, streams);
    }
    if streams {
        return stream(&model, behaviour);
    }
    super::json(
        StatusCode::OK,
        &response(&model, TEXT, completion_tokens(), behaviour),
    )
}

fn response(model: &str, text: &str, candidates: i64, behaviour: &Behaviour) -> serde_json::Value {
    let mut response = serde_json::json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP", "index": 0}],
        "modelVersion": model,
    });
    match behaviour {
        Behaviour::NoUsage | Behaviour::CutMidStream => {}
        Behaviour::MalformedUsage => {
            response["usageMetadata"] =
                serde_json::json!({"promptTokenCount": "x", "candidatesTokenCount": -2});
        }
        _ => {
            response["usageMetadata"] = serde_json::json!({
                "promptTokenCount": PROMPT_TOKENS,
                "candidatesTokenCount": candidates,
                "cachedContentTokenCount": CACHED_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + candidates,
            });
        }
    }
    response
}

fn stream(model: &str, behaviour: &Behaviour) -> Response<MockBody> {
    let mut events = Vec::new();
    for (index, word) in TEXT.split(' ').enumerate() {
        let text = if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        let so_far = i64::try_from(index + 1).unwrap_or(0);
        let mut chunk = response(model, &text, so_far, behaviour);
        if index + 1 < TEXT.split(' ').count() {
            chunk["candidates"][0]
                .as_object_mut()
                .map(|candidate| candidate.remove("finishReason"));
        }
        events.push(format!("data: {chunk}\r\n\r\n"));
    }
    let cut = *behaviour == Behaviour::CutMidStream;
    if cut {
        events.truncate(1);
    }
    super::sse(events, cut)
}
