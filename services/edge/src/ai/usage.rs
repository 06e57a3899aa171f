//! Token usage as each provider reports it, read from a whole JSON answer
//! or from the stream's events as they pass:
//! - OpenAI: `usage` (`prompt_tokens`, `completion_tokens`,
//!   `prompt_tokens_details.cached_tokens`), in the answer or in the last
//!   chunk of a stream that asked for `include_usage`;
//! - Anthropic: `message_start.message.usage` then `message_delta.usage`,
//!   each field the largest seen (`output_tokens` is cumulative), cache
//!   reads and writes kept;
//! - Gemini: `usageMetadata`, cumulative in every chunk: the last one wins,
//!   never a sum.
//!
//! Malformed or negative figures are ignored, never trusted.

use serde_json::Value;

/// Tokens of one exchange. `prompt` includes `cached` (OpenAI's meaning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tokens {
    pub prompt: i64,
    pub completion: i64,
    pub cached: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    OpenAi,
    Anthropic,
    Gemini,
    /// OpenAI's Responses API: a client protocol, spoken natively by
    /// OpenAI channels.
    Responses,
}

fn count(value: Option<&Value>) -> Option<i64> {
    value?.as_i64().filter(|count| *count >= 0)
}

fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// What a stream or answer has reported so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reported {
    pub tokens: Option<Tokens>,
}

impl Reported {
    /// Takes in one JSON document: a whole answer, or one stream event's
    /// data (with its SSE event name, which Anthropic sets).
    pub fn observe(&mut self, protocol: Protocol, document: &Value) {
        let seen = match protocol {
            Protocol::OpenAi => openai(document),
            Protocol::Anthropic => anthropic(document),
            Protocol::Gemini => gemini(document),
            Protocol::Responses => responses(document),
        };
        let Some(seen) = seen else { return };
        self.tokens = Some(match (protocol, self.tokens) {
            // Anthropic reports fields in two events: keep the largest.
            (Protocol::Anthropic, Some(before)) => Tokens {
                prompt: before.prompt.max(seen.prompt),
                completion: before.completion.max(seen.completion),
                cached: before.cached.max(seen.cached),
            },
            // Cumulative (Gemini) or reported once (OpenAI): the latest.
            _ => seen,
        });
    }

    /// As [`Self::observe`], from an event's data text; `[DONE]` and
    /// anything that is not JSON are skipped.
    pub fn observe_data(&mut self, protocol: Protocol, data: &str) {
        if data.is_empty() || data == "[DONE]" {
            return;
        }
        if let Ok(document) = serde_json::from_str::<Value>(data) {
            self.observe(protocol, &document);
        }
    }
}

fn openai(document: &Value) -> Option<Tokens> {
    let usage = document.get("usage").filter(|usage| usage.is_object())?;
    let prompt = count(usage.get("prompt_tokens"))?;
    let completion = count(usage.get("completion_tokens")).unwrap_or(0);
    let cached = count(at(usage, &["prompt_tokens_details", "cached_tokens"])).unwrap_or(0);
    Some(Tokens {
        prompt,
        completion,
        cached: cached.min(prompt),
    })
}

/// The Responses API: `usage` on the response, which a stream carries in
/// its `response.completed` (or `.incomplete`) event.
fn responses(document: &Value) -> Option<Tokens> {
    let usage = document
        .get("response")
        .and_then(|response| response.get("usage"))
        .or_else(|| document.get("usage"))
        .filter(|usage| usage.is_object())?;
    let prompt = count(usage.get("input_tokens"))?;
    let completion = count(usage.get("output_tokens")).unwrap_or(0);
    let cached = count(at(usage, &["input_tokens_details", "cached_tokens"])).unwrap_or(0);
    Some(Tokens {
        prompt,
        completion,
        cached: cached.min(prompt),
    })
}

/// Anthropic counts `input_tokens` without the cache: the prompt is input
/// plus cache reads plus cache writes, and the cached part is the reads.
fn anthropic(document: &Value) -> Option<Tokens> {
    let usage = match document.get("type").and_then(Value::as_str) {
        Some("message_start") => at(document, &["message", "usage"]),
        _ => document.get("usage"),
    }
    .filter(|usage| usage.is_object())?;
    let input = count(usage.get("input_tokens"));
    let output = count(usage.get("output_tokens"));
    if input.is_none() && output.is_none() {
        return None;
    }
    let read = count(usage.get("cache_read_input_tokens")).unwrap_or(0);
    let written = count(usage.get("cache_creation_input_tokens")).unwrap_or(0);
    let input = input.unwrap_or(0);
    Some(Tokens {
        prompt: input.saturating_add(read).saturating_add(written),
        completion: output.unwrap_or(0),
        cached: read,
    })
}

/// Gemini's candidates plus thoughts are what the model produced.
fn gemini(document: &Value) -> Option<Tokens> {
    let usage = document
        .get("usageMetadata")
        .filter(|usage| usage.is_object())?;
    let prompt = count(usage.get("promptTokenCount"))?;
    let candidates = count(usage.get("candidatesTokenCount")).unwrap_or(0);
    let thoughts = count(usage.get("thoughtsTokenCount")).unwrap_or(0);
    let cached = count(usage.get("cachedContentTokenCount")).unwrap_or(0);
    Some(Tokens {
        prompt,
        completion: candidates.saturating_add(thoughts),
        cached: cached.min(prompt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reported(protocol: Protocol, documents: &[Value]) -> Option<Tokens> {
        let mut reported = Reported::default();
        for document in documents {
            reported.observe(protocol, document);
        }
        reported.tokens
    }

    #[test]
    fn openai_usage_comes_from_the_answer_or_the_last_chunk() {
        let answer = json!({"usage": {"prompt_tokens": 12, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4}}});
        assert_eq!(
            reported(Protocol::OpenAi, &[answer]),
            Some(Tokens {
                prompt: 12,
                completion: 5,
                cached: 4
            })
        );
        let chunks = [
            json!({"choices": [{"delta": {"content": "hi"}}], "usage": null}),
            json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}),
        ];
        assert_eq!(
            reported(Protocol::OpenAi, &chunks),
            Some(Tokens {
                prompt: 3,
                completion: 9,
                cached: 0
            })
        );
        assert_eq!(
            reported(Protocol::OpenAi, &[json!({"usage": {"prompt_tokens": -1}})]),
            None
        );
    }

    #[test]
    fn anthropic_takes_the_largest_of_each_field_across_events() {
        let events = [
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 10,
                "cache_read_input_tokens": 6, "cache_creation_input_tokens": 2, "output_tokens": 1}}}),
            json!({"type": "content_block_delta", "delta": {"text": "x"}}),
            json!({"type": "message_delta", "usage": {"output_tokens": 42}}),
        ];
        assert_eq!(
            reported(Protocol::Anthropic, &events),
            Some(Tokens {
                prompt: 18,
                completion: 42,
                cached: 6
            })
        );
        let answer = json!({"type": "message", "usage": {"input_tokens": 5, "output_tokens": 7}});
        assert_eq!(
            reported(Protocol::Anthropic, &[answer]),
            Some(Tokens {
                prompt: 5,
                completion: 7,
                cached: 0
            })
        );
    }

    #[test]
    fn gemini_usage_is_cumulative_so_the_last_wins() {
        let chunks = [
            json!({"usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2}}),
            json!({"usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 11,
                "thoughtsTokenCount": 4, "cachedContentTokenCount": 3}}),
        ];
        assert_eq!(
            reported(Protocol::Gemini, &chunks),
            Some(Tokens {
                prompt: 8,
                completion: 15,
                cached: 3
            })
        );
    }

    #[test]
    fn data_that_is_not_json_is_skipped() {
        let mut reported = Reported::default();
        reported.observe_data(Protocol::OpenAi, "[DONE]");
        reported.observe_data(Protocol::OpenAi, "{not json");
        reported.observe_data(Protocol::Gemini, "{\"usageMetadata\": 5}");
        assert_eq!(reported.tokens, None);
    }
}
