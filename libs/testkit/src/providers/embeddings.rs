//! Embeddings in the mocks: OpenAI's `/v1/embeddings` and Gemini's
//! `:embedContent` / `:batchEmbedContents`, one [`VECTOR`] per input.
//! OpenAI reports [`super::PROMPT_TOKENS`] as usage; Gemini reports none,
//! as the real API.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::MockBody;

/// The vector every input gets.
pub const VECTOR: [f64; 3] = [0.25, -0.5, 0.75];

pub fn openai(body: &Value) -> Response<MockBody> {
    let inputs = match &body["input"] {
        Value::Array(inputs) => inputs.len(),
        _ => 1,
    };
    let data: Vec<Value> = (0..inputs)
        .map(|index| json!({"object": "embedding", "index": index, "embedding": VECTOR}))
        .collect();
    let answer = json!({"object": "list", "data": data, "model": body["model"],
        "usage": {"prompt_tokens": super::PROMPT_TOKENS, "total_tokens": super::PROMPT_TOKENS}});
    super::json(StatusCode::OK, &answer)
}

pub fn gemini(path: &str, body: &Value) -> Option<Response<MockBody>> {
    let answer = if path.ends_with(":batchEmbedContents") {
        let requests = body["requests"].as_array().map_or(0, Vec::len);
        let embeddings: Vec<Value> = (0..requests).map(|_| json!({"values": VECTOR})).collect();
        json!({"embeddings": embeddings})
    } else if path.ends_with(":embedContent") {
        json!({"embedding": {"values": VECTOR}})
    } else {
        return None;
    };
    Some(super::json(StatusCode::OK, &answer))
}
