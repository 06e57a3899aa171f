//! OpenAI's Responses API request (`POST /v1/responses`) as the edge needs
//! it: the model, whether it streams, its `max_output_tokens` and its
//! input (for the estimate); and the body for an OpenAI channel, which
//! takes it natively, with the channel's model and a max the budget pays
//! for. Usage comes in the answer's `usage` or in `response.completed`.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::tokens;

#[derive(Debug)]
pub struct Request {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<i64>,
}

pub fn parse(bytes: &[u8]) -> Result<Request, String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("the request body must be a JSON object".to_owned());
    };
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err("'model' is required".to_owned()),
    };
    let input_ok = match body.get("input") {
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Array(items)) => !items.is_empty(),
        _ => false,
    };
    if !input_ok {
        return Err("'input' must be a string or a non-empty array of items".to_owned());
    }
    let max_tokens = match body.get("max_output_tokens") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .filter(|tokens| *tokens > 0)
                .ok_or_else(|| "'max_output_tokens' must be a positive integer".to_owned())?,
        ),
    };
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(Request {
        body,
        model,
        stream,
        max_tokens,
    })
}

impl Request {
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The instructions, every input item's text and the tools.
    pub fn prompt_tokens(&self) -> i64 {
        let text = |value: Option<&Value>| super::translate::text_of(value);
        let mut total = tokens::count(&text(self.body.get("instructions")));
        match self.body.get("input") {
            Some(Value::String(input)) => total += tokens::count(input),
            Some(Value::Array(items)) => {
                for item in items {
                    total += 3 + tokens::count(&text(item.get("content")));
                    for field in ["arguments", "output"] {
                        if let Some(Value::String(value)) = item.get(field) {
                            total += tokens::count(value);
                        }
                    }
                }
            }
            _ => {}
        }
        if let Some(tools) = self.body.get("tools") {
            total += tokens::count(&tools.to_string());
        }
        total
    }

    /// The body for an OpenAI channel: its model name, and
    /// `max_output_tokens` when the budget lowered it.
    pub fn upstream_body(&self, upstream_model: &str, max_tokens: Option<i64>) -> Bytes {
        let mut body = self.body.clone();
        body.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        if let Some(max_tokens) = max_tokens {
            body.insert("max_output_tokens".to_owned(), Value::from(max_tokens));
        }
        Bytes::from(Value::Object(body).to_string())
    }
}

/// The text of a whole response: every `output_text` part.
pub fn answer_text(answer: &Value) -> String {
    answer["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|item| item["content"].as_array().into_iter().flatten())
        .filter(|part| part["type"] == "output_text")
        .filter_map(|part| part["text"].as_str())
        .collect()
}

/// The text one stream event delivered.
pub fn event_text(event: &Value) -> String {
    if event["type"] == "response.output_text.delta" {
        return event["delta"].as_str().unwrap_or_default().to_owned();
    }
    String::new()
}
