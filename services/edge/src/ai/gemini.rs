//! The Gemini `generateContent` request as the edge needs it: the model
//! (from the path), whether it streams (`:streamGenerateContent`), its
//! `generationConfig.maxOutputTokens` and its prompt (system instruction,
//! contents, tools); and the body sent to a channel with a max output the
//! budget pays for. The model is in the path, so the body is sent as is.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::tokens;

/// Tokens an inline image or file part is estimated at.
const MEDIA_TOKENS: i64 = 258;

#[derive(Debug)]
pub struct Generate {
    body: Map<String, Value>,
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<i64>,
}

/// A Gemini model path: `/v1beta/models/{model}:{method}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPath {
    pub model: String,
    pub method: String,
}

/// `models/{model}:{method}` after the version prefix (the current SDKs
/// call `/v1beta/...`; `/v1/models/...:method` is the same API).
pub fn model_path(path: &str) -> Option<ModelPath> {
    let rest = path
        .strip_prefix("/v1beta/models/")
        .or_else(|| path.strip_prefix("/v1/models/"))?;
    let (model, method) = rest.rsplit_once(':')?;
    (!model.is_empty() && !model.contains('/')).then(|| ModelPath {
        model: model.to_owned(),
        method: method.to_owned(),
    })
}

pub fn parse(bytes: &[u8], model: &str, stream: bool) -> Result<Generate, String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("Invalid JSON payload: the request body must be a JSON object".to_owned());
    };
    if !matches!(body.get("contents"), Some(Value::Array(contents)) if !contents.is_empty()) {
        return Err("* GenerateContentRequest.contents: contents is not specified".to_owned());
    }
    let max_tokens = match body
        .get("generationConfig")
        .and_then(|config| config.get("maxOutputTokens"))
    {
        None | Some(Value::Null) => None,
        Some(value) => Some(value.as_i64().filter(|tokens| *tokens > 0).ok_or_else(|| {
            "generationConfig.maxOutputTokens must be a positive integer".to_owned()
        })?),
    };
    Ok(Generate {
        body,
        model: model.to_owned(),
        stream,
        max_tokens,
    })
}

impl Generate {
    pub fn prompt_tokens(&self) -> i64 {
        let mut total = self
            .body
            .get("systemInstruction")
            .map_or(0, |instruction| parts_tokens(instruction.get("parts")));
        for content in self
            .body
            .get("contents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            total += 3 + parts_tokens(content.get("parts"));
        }
        if let Some(tools) = self.body.get("tools") {
            total += tokens::count(&tools.to_string());
        }
        total
    }

    /// The body for a channel, with `maxOutputTokens` when the budget
    /// lowered it.
    pub fn upstream_body(&self, max_tokens: Option<i64>) -> Bytes {
        let mut body = self.body.clone();
        if let Some(max_tokens) = max_tokens {
            let config = body
                .entry("generationConfig")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(config) = config {
                config.insert("maxOutputTokens".to_owned(), Value::from(max_tokens));
            }
        }
        Bytes::from(Value::Object(body).to_string())
    }

    pub fn body(&self) -> &Map<String, Value> {
        &self.body
    }
}

/// `/v1beta/models/{model}:{method}` for the channel's model name.
pub fn upstream_path(upstream_model: &str, stream: bool) -> String {
    let method = if stream {
        "streamGenerateContent"
    } else {
        "generateContent"
    };
    format!("/v1beta/models/{upstream_model}:{method}")
}

fn parts_tokens(parts: Option<&Value>) -> i64 {
    parts
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|part| match part.get("text").and_then(Value::as_str) {
            Some(text) => tokens::count(text),
            None if part.get("inlineData").is_some() || part.get("fileData").is_some() => {
                MEDIA_TOKENS
            }
            None => tokens::count(&part.to_string()),
        })
        .sum()
}

/// The text of an answer or of one stream chunk (each chunk is a whole
/// `GenerateContentResponse`).
pub fn answer_text(answer: &Value) -> String {
    answer
        .get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|candidate| candidate.get("content")?.get("parts")?.as_array())
        .flatten()
        .filter_map(|part| part.get("text")?.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_are_read_from_both_versions() {
        assert_eq!(
            model_path("/v1beta/models/gemini-x:streamGenerateContent"),
            Some(ModelPath {
                model: "gemini-x".to_owned(),
                method: "streamGenerateContent".to_owned()
            })
        );
        assert_eq!(
            model_path("/v1/models/gemini-x:countTokens")
                .unwrap()
                .method,
            "countTokens"
        );
        assert_eq!(model_path("/v1beta/models"), None);
        assert_eq!(model_path("/v1beta/models/a/b:generateContent"), None);
    }

    #[test]
    fn a_request_is_read_and_rewritten_for_a_channel() {
        let generate = parse(
            br#"{"systemInstruction": {"parts": [{"text": "Be brief."}]},
                 "contents": [{"role": "user", "parts": [{"text": "Hello there"}]}],
                 "generationConfig": {"maxOutputTokens": 200, "temperature": 0.2}}"#,
            "gemini-x",
            true,
        )
        .unwrap();
        assert_eq!(generate.max_tokens, Some(200));
        assert!((5..=12).contains(&generate.prompt_tokens()));
        let sent: Value = serde_json::from_slice(&generate.upstream_body(Some(30))).unwrap();
        assert_eq!(sent["generationConfig"]["maxOutputTokens"], 30);
        assert_eq!(sent["generationConfig"]["temperature"], 0.2);
        assert_eq!(
            upstream_path("gemini-x-2", generate.stream),
            "/v1beta/models/gemini-x-2:streamGenerateContent"
        );
        assert!(
            parse(br#"{"contents": []}"#, "m", false)
                .unwrap_err()
                .contains("contents")
        );
    }

    #[test]
    fn text_is_read_from_candidates() {
        let answer: Value = serde_json::from_str(
            r#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}, {"text": "!"}]}}]}"#,
        )
        .unwrap();
        assert_eq!(answer_text(&answer), "Hi!");
    }
}
