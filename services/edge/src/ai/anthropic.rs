//! The Anthropic Messages request as the edge needs it: the model, whether
//! it streams, its `max_tokens` (required by the protocol) and its prompt
//! (system, messages, tools) for the estimate; and the body sent to a
//! channel with the channel's model name and a max tokens the budget pays
//! for. Usage always comes with Anthropic's answers and streams.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::tokens;

/// Tokens an image block is estimated at.
const IMAGE_TOKENS: i64 = 1600;

#[derive(Debug)]
pub struct Messages {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    pub max_tokens: i64,
}

/// Why a body is not a Messages request, for the 400.
pub fn parse(bytes: &[u8]) -> Result<Messages, String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("the request body must be a JSON object".to_owned());
    };
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err("model: Field required".to_owned()),
    };
    if !matches!(body.get("messages"), Some(Value::Array(messages)) if !messages.is_empty()) {
        return Err("messages: at least one message is required".to_owned());
    }
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_i64)
        .filter(|tokens| *tokens > 0)
        .ok_or_else(|| "max_tokens: a positive integer is required".to_owned())?;
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    Ok(Messages {
        body,
        model,
        stream,
        max_tokens,
    })
}

impl Messages {
    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }

    /// The system prompt, every message's blocks and the tool definitions.
    pub fn prompt_tokens(&self) -> i64 {
        let mut total = content_tokens(self.body.get("system"));
        for message in self
            .body
            .get("messages")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            total += 3 + content_tokens(message.get("content"));
        }
        if let Some(tools) = self.body.get("tools") {
            total += tokens::count(&tools.to_string());
        }
        total
    }

    /// The body for a channel: its model name, and `max_tokens` when the
    /// budget lowered it.
    pub fn upstream_body(&self, upstream_model: &str, max_tokens: Option<i64>) -> Bytes {
        let mut body = self.body.clone();
        body.insert("model".to_owned(), Value::String(upstream_model.to_owned()));
        if let Some(max_tokens) = max_tokens {
            body.insert("max_tokens".to_owned(), Value::from(max_tokens));
        }
        Bytes::from(Value::Object(body).to_string())
    }
}

/// A string, or blocks: text counted, images estimated, tool blocks by
/// their JSON.
fn content_tokens(content: Option<&Value>) -> i64 {
    match content {
        Some(Value::String(text)) => tokens::count(text),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .map(|block| match block.get("type").and_then(Value::as_str) {
                Some("text") => block
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, tokens::count),
                Some("image" | "document") => IMAGE_TOKENS,
                Some(_) => tokens::count(&block.to_string()),
                None => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// The text of a whole answer.
pub fn answer_text(answer: &Value) -> String {
    answer
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|block| block.get("text")?.as_str())
        .collect()
}

/// The text one stream event delivered (`content_block_delta`).
pub fn event_text(event: &Value) -> String {
    event
        .get("delta")
        .and_then(|delta| delta.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_and_rewritten_for_a_channel() {
        let messages = parse(
            br#"{"model": "claude-x", "max_tokens": 300, "stream": true, "system": "Be brief.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            (
                messages.model.as_str(),
                messages.max_tokens,
                messages.stream
            ),
            ("claude-x", 300, true)
        );
        let prompt = messages.prompt_tokens();
        assert!((5..=12).contains(&prompt), "{prompt}");
        let sent: Value =
            serde_json::from_slice(&messages.upstream_body("claude-x-2025", Some(20))).unwrap();
        assert_eq!(sent["model"], "claude-x-2025");
        assert_eq!(sent["max_tokens"], 20);
        assert_eq!(sent["system"], "Be brief.");
    }

    #[test]
    fn max_tokens_is_required_as_the_protocol_says() {
        let error = parse(br#"{"model": "m", "messages": [{"role": "user", "content": "x"}]}"#)
            .unwrap_err();
        assert!(error.contains("max_tokens"), "{error}");
        assert!(
            parse(br#"{"max_tokens": 5, "messages": [{}]}"#)
                .unwrap_err()
                .contains("model")
        );
    }

    #[test]
    fn text_is_read_from_answers_and_deltas() {
        let answer: Value = serde_json::from_str(
            r#"{"content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]}"#,
        )
        .unwrap();
        assert_eq!(answer_text(&answer), "Hi!");
        let delta: Value = serde_json::from_str(
            r#"{"type": "content_block_delta", "delta": {"type": "text_delta", "text": "Hi"}}"#,
        )
        .unwrap();
        assert_eq!(event_text(&delta), "Hi");
    }
}
