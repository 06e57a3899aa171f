//! The OpenAI chat completions request as the edge needs it: the model,
//! whether it streams and asked for usage, its max tokens and its prompt
//! (for the estimate); and the body sent to a channel, with the channel's
//! model name, usage asked for on streams, and a max tokens the budget
//! pays for.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::tokens;

/// Tokens an image part is estimated at (OpenAI's low-detail cost).
const IMAGE_TOKENS: i64 = 85;

#[derive(Debug)]
pub struct Chat {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk (`stream_options.include_usage`).
    pub wants_usage: bool,
    pub max_tokens: Option<i64>,
    /// `max_completion_tokens` when the client used it, else `max_tokens`.
    max_field: &'static str,
    /// The legacy `/v1/completions` (a `prompt`, no messages).
    pub legacy: bool,
}

/// Why a body is not a chat request, for the 400.
pub fn parse(bytes: &[u8]) -> Result<Chat, String> {
    let (body, model) = object_with_model(bytes)?;
    if !matches!(body.get("messages"), Some(Value::Array(messages)) if !messages.is_empty()) {
        return Err("'messages' must be a non-empty array".to_owned());
    }
    common(body, model, false)
}

/// A legacy completions request: a `prompt` (a string or strings).
pub fn parse_completion(bytes: &[u8]) -> Result<Chat, String> {
    let (body, model) = object_with_model(bytes)?;
    let prompt_ok = match body.get("prompt") {
        Some(Value::String(_)) => true,
        Some(Value::Array(prompts)) => !prompts.is_empty() && prompts.iter().all(Value::is_string),
        _ => false,
    };
    if !prompt_ok {
        return Err("'prompt' must be a string or a non-empty array of strings".to_owned());
    }
    common(body, model, true)
}

fn object_with_model(bytes: &[u8]) -> Result<(Map<String, Value>, String), String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("the request body must be a JSON object".to_owned());
    };
    match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => {
            let model = model.clone();
            Ok((body, model))
        }
        _ => Err("'model' is required".to_owned()),
    }
}

/// What chat and legacy completions share: streaming, usage, max tokens.
fn common(body: Map<String, Value>, model: String, legacy: bool) -> Result<Chat, String> {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let wants_usage = body
        .get("stream_options")
        .and_then(|options| options.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (max_field, max_tokens) = match body.get("max_completion_tokens") {
        Some(value) => ("max_completion_tokens", Some(value)),
        None => ("max_tokens", body.get("max_tokens")),
    };
    let max_tokens = match max_tokens {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_i64()
                .filter(|tokens| *tokens > 0)
                .ok_or_else(|| format!("'{max_field}' must be a positive integer"))?,
        ),
    };
    Ok(Chat {
        body,
        model,
        stream,
        wants_usage,
        max_tokens,
        max_field,
        legacy,
    })
}

impl Chat {
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The prompt's tokens as OpenAI counts chat messages: each message's
    /// text plus a few tokens of framing, images at a fixed estimate, and
    /// the tool definitions.
    pub fn prompt_tokens(&self) -> i64 {
        if self.legacy {
            let prompts = super::translate::strings(self.body.get("prompt"));
            return prompts.iter().map(|prompt| tokens::count(prompt)).sum();
        }
        let mut total = 3;
        for message in self.messages() {
            total += 3;
            for field in ["role", "name"] {
                if let Some(text) = message.get(field).and_then(Value::as_str) {
                    total += tokens::count(text);
                }
            }
            total += content_tokens(message.get("content"));
            if let Some(calls) = message.get("tool_calls") {
                total += tokens::count(&calls.to_string());
            }
        }
        if let Some(tools) = self.body.get("tools") {
            total += tokens::count(&tools.to_string());
        }
        total
    }

    fn messages(&self) -> impl Iterator<Item = &Map<String, Value>> {
        self.body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object)
    }

    /// The body for a channel: its model name, usage asked for on a
    /// stream, and `max_tokens` when the budget lowered it.
    pub fn upstream_body(&self, upstream_model: &str, max_tokens: Option<i64>) -> Bytes {
        let mut body = self.body.clone();
        body.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        if self.stream {
            let options = body
                .entry("stream_options")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(options) = options {
                options.insert("include_usage".to_owned(), Value::Bool(true));
            }
        }
        if let Some(max_tokens) = max_tokens {
            body.insert(self.max_field.to_owned(), Value::from(max_tokens));
        }
        Bytes::from(Value::Object(body).to_string())
    }
}

fn content_tokens(content: Option<&Value>) -> i64 {
    match content {
        Some(Value::String(text)) => tokens::count(text),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => part
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, tokens::count),
                Some("image_url" | "input_image") => IMAGE_TOKENS,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// The text an answer delivered (non-streamed), for an estimate when the
/// provider reported no usage.
pub fn answer_text(answer: &Value) -> String {
    answer
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|choice| {
            let text = choice
                .get("message")
                .and_then(|message| message.get("content"));
            text.or_else(|| choice.get("text"))?.as_str()
        })
        .collect::<Vec<_>>()
        .join("")
}

/// The text one stream chunk delivered.
pub fn chunk_text(chunk: &Value) -> String {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|choice| {
            let text = choice.get("delta").and_then(|delta| delta.get("content"));
            text.or_else(|| choice.get("text"))?.as_str()
        })
        .collect::<Vec<_>>()
        .join("")
}

/// The chunk a stream with `include_usage` ends with: no choices, only
/// usage; hidden from a client that did not ask for it.
pub fn is_usage_chunk(chunk: &Value) -> bool {
    chunk
        .get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && chunk.get("usage").is_some_and(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_and_rewritten_for_a_channel() {
        let chat = parse(
            br#"{"model": "gpt-x", "stream": true, "max_tokens": 500,
                "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": [{"type": "text", "text": "Hello there"},
                                                          {"type": "image_url", "image_url": {"url": "data:"}}]}]}"#,
        )
        .unwrap();
        assert_eq!(chat.model, "gpt-x");
        assert!(chat.stream && !chat.wants_usage);
        assert_eq!(chat.max_tokens, Some(500));
        let prompt = chat.prompt_tokens();
        assert!((90..=110).contains(&prompt), "{prompt}");
        let sent: Value =
            serde_json::from_slice(&chat.upstream_body("gpt-x-2025", Some(40))).unwrap();
        assert_eq!(sent["model"], "gpt-x-2025");
        assert_eq!(sent["stream_options"]["include_usage"], true);
        assert_eq!(sent["max_tokens"], 40);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        assert!(parse(b"[]").unwrap_err().contains("JSON object"));
        assert!(
            parse(br#"{"messages": [{}]}"#)
                .unwrap_err()
                .contains("model")
        );
        assert!(
            parse(br#"{"model": "m", "messages": []}"#)
                .unwrap_err()
                .contains("messages")
        );
        let error =
            parse(br#"{"model": "m", "messages": [{}], "max_completion_tokens": -1}"#).unwrap_err();
        assert!(error.contains("max_completion_tokens"), "{error}");
    }

    #[test]
    fn the_usage_chunk_is_told_apart() {
        let usage: Value =
            serde_json::from_str(r#"{"choices": [], "usage": {"prompt_tokens": 1}}"#).unwrap();
        let content: Value =
            serde_json::from_str(r#"{"choices": [{"delta": {"content": "hi"}}], "usage": null}"#)
                .unwrap();
        assert!(is_usage_chunk(&usage) && !is_usage_chunk(&content));
        assert_eq!(chunk_text(&content), "hi");
    }
}
