//! Embeddings: OpenAI's `POST /v1/embeddings` and Gemini's
//! `models/{model}:embedContent` / `:batchEmbedContents`, served by OpenAI,
//! OpenAI-compatible and Gemini channels (translated between the two
//! shapes; Anthropic has no embeddings), priced by input tokens.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::canonical::Unsupported;
use super::tokens;
use super::usage::Protocol;

#[derive(Debug)]
pub struct Embed {
    body: Map<String, Value>,
    pub model: String,
    pub protocol: Protocol,
    /// Gemini's batch call (an OpenAI request always is one).
    pub batch: bool,
    /// The texts to embed, in order.
    pub inputs: Vec<String>,
    /// Token ids given instead of text (OpenAI), counted as given.
    token_inputs: i64,
    pub dimensions: Option<i64>,
}

/// `input`: a string, a list of strings, or token ids (a list of
/// integers, or of such lists).
pub fn parse_openai(bytes: &[u8]) -> Result<Embed, String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("the request body must be a JSON object".to_owned());
    };
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err("'model' is required".to_owned()),
    };
    let (inputs, token_inputs) = match body.get("input") {
        Some(Value::String(text)) => (vec![text.clone()], 0),
        Some(Value::Array(items)) if !items.is_empty() => openai_items(items)?,
        _ => return Err("'input' must be a string or a non-empty array".to_owned()),
    };
    let dimensions = body.get("dimensions").and_then(Value::as_i64);
    Ok(Embed {
        body,
        model,
        protocol: Protocol::OpenAi,
        batch: true,
        inputs,
        token_inputs,
        dimensions,
    })
}

fn openai_items(items: &[Value]) -> Result<(Vec<String>, i64), String> {
    if items.iter().all(Value::is_string) {
        let texts = items.iter().filter_map(Value::as_str).map(str::to_owned);
        return Ok((texts.collect(), 0));
    }
    let count = |item: &Value| match item {
        Value::Number(_) => Some(1),
        Value::Array(ids) if ids.iter().all(Value::is_number) => i64::try_from(ids.len()).ok(),
        _ => None,
    };
    items
        .iter()
        .map(count)
        .sum::<Option<i64>>()
        .map(|tokens| (Vec::new(), tokens))
        .ok_or_else(|| "'input' mixes text and token ids".to_owned())
}

/// `:embedContent` (`{"content": ...}`) or `:batchEmbedContents`
/// (`{"requests": [{"content": ...}, ...]}`).
pub fn parse_gemini(bytes: &[u8], model: &str, batch: bool) -> Result<Embed, String> {
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(bytes) else {
        return Err("Invalid JSON payload: the request body must be a JSON object".to_owned());
    };
    let (inputs, dimensions) = if batch {
        let Some(Value::Array(requests)) = body.get("requests").filter(|requests| {
            requests
                .as_array()
                .is_some_and(|requests| !requests.is_empty())
        }) else {
            return Err("* BatchEmbedContentsRequest.requests: is empty".to_owned());
        };
        let inputs = requests
            .iter()
            .map(|request| parts_text(&request["content"]));
        let dimensions = requests
            .first()
            .and_then(|request| request["outputDimensionality"].as_i64());
        (inputs.collect(), dimensions)
    } else {
        let Some(content) = body.get("content") else {
            return Err("* EmbedContentRequest.content: content is not specified".to_owned());
        };
        let dimensions = body.get("outputDimensionality").and_then(Value::as_i64);
        (vec![parts_text(content)], dimensions)
    };
    Ok(Embed {
        body,
        model: model.to_owned(),
        protocol: Protocol::Gemini,
        batch,
        inputs,
        token_inputs: 0,
        dimensions,
    })
}

fn parts_text(content: &Value) -> String {
    content["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

impl Embed {
    pub fn prompt_tokens(&self) -> i64 {
        self.inputs
            .iter()
            .map(|text| tokens::count(text))
            .sum::<i64>()
            + self.token_inputs
    }

    /// The body for a channel speaking `target`, under its model name.
    pub fn upstream_body(&self, target: Protocol, model: &str) -> Result<Bytes, Unsupported> {
        let body = match (self.protocol, target) {
            (Protocol::OpenAi, Protocol::OpenAi) => {
                let mut body = self.body.clone();
                body.insert("model".to_owned(), json!(model));
                Value::Object(body)
            }
            (Protocol::Gemini, Protocol::Gemini) => self.gemini_native(model),
            (Protocol::OpenAi, Protocol::Gemini) => self.to_gemini(model)?,
            (Protocol::Gemini, Protocol::OpenAi) => self.to_openai(model)?,
            (_, Protocol::Anthropic) | (Protocol::Anthropic, _) => {
                return Err(Unsupported::new("Anthropic", "embeddings"));
            }
            (_, Protocol::Responses) | (Protocol::Responses, _) => {
                return Err(Unsupported::new(
                    "OpenAI",
                    "embeddings in the Responses API",
                ));
            }
        };
        Ok(Bytes::from(body.to_string()))
    }

    /// A Gemini batch names the model in each request: the channel's.
    fn gemini_native(&self, model: &str) -> Value {
        let mut body = self.body.clone();
        if let Some(Value::Array(requests)) = body.get_mut("requests") {
            for request in requests.iter_mut().filter_map(Value::as_object_mut) {
                request.insert("model".to_owned(), json!(format!("models/{model}")));
            }
        }
        Value::Object(body)
    }

    fn to_gemini(&self, model: &str) -> Result<Value, Unsupported> {
        const TARGET: &str = "Gemini";
        if self.token_inputs > 0 {
            return Err(Unsupported::new(TARGET, "token ids as input"));
        }
        let format = self.body.get("encoding_format").and_then(Value::as_str);
        if format.is_some_and(|format| format != "float") {
            return Err(Unsupported::new(TARGET, "encoding_format other than float"));
        }
        let requests: Vec<Value> = self
            .inputs
            .iter()
            .map(|text| {
                let mut request = json!({"model": format!("models/{model}"),
                    "content": {"parts": [{"text": text}]}});
                if let Some(dimensions) = self.dimensions {
                    request["outputDimensionality"] = json!(dimensions);
                }
                request
            })
            .collect();
        Ok(json!({"requests": requests}))
    }

    fn to_openai(&self, model: &str) -> Result<Value, Unsupported> {
        let asks_task =
            |request: &Value| request.get("taskType").is_some_and(|task| !task.is_null());
        let requests = self.body.get("requests").and_then(Value::as_array);
        let tasked = match requests {
            Some(requests) => requests.iter().any(asks_task),
            None => asks_task(&Value::Object(self.body.clone())),
        };
        if tasked {
            return Err(Unsupported::new("OpenAI", "taskType"));
        }
        let mut body = json!({"model": model, "input": self.inputs});
        if let Some(dimensions) = self.dimensions {
            body["dimensions"] = json!(dimensions);
        }
        Ok(body)
    }

    /// Where on a channel speaking `target` the request goes, after the
    /// channel's base URL.
    pub fn upstream_path(&self, target: Protocol, model: &str) -> String {
        match target {
            Protocol::Gemini if self.protocol == Protocol::Gemini && !self.batch => {
                format!("/v1beta/models/{model}:embedContent")
            }
            Protocol::Gemini => format!("/v1beta/models/{model}:batchEmbedContents"),
            _ => "/embeddings".to_owned(),
        }
    }

    /// What re-encoding the answer needs, owned.
    pub fn shape(&self) -> Shape {
        Shape {
            protocol: self.protocol,
            batch: self.batch,
            prompt_tokens: self.prompt_tokens(),
        }
    }
}

/// The client's side of an embeddings exchange, for re-encoding the
/// provider's answer.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// The client's protocol.
    protocol: Protocol,
    batch: bool,
    /// The edge's count: Gemini reports none, OpenAI's clients expect it.
    prompt_tokens: i64,
}

impl Shape {
    /// A provider's answer in the client's shape.
    pub fn translate_answer(&self, answer: &Value, model: &str) -> Value {
        let vectors: Vec<Value> = match self.protocol {
            // From OpenAI's shape, for a Gemini client.
            Protocol::Gemini => answer["data"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| item["embedding"].clone())
                .collect(),
            _ => match answer.get("embeddings") {
                Some(Value::Array(embeddings)) => embeddings
                    .iter()
                    .map(|item| item["values"].clone())
                    .collect(),
                _ => vec![answer["embedding"]["values"].clone()],
            },
        };
        // OpenAI's count kept for billing, where Gemini's shape has room.
        let reported = answer["usage"]["prompt_tokens"].as_i64();
        let usage = json!({"promptTokenCount": reported, "totalTokenCount": reported});
        match self.protocol {
            Protocol::Gemini if self.batch => {
                let embeddings: Vec<Value> = vectors
                    .into_iter()
                    .map(|values| json!({"values": values}))
                    .collect();
                json!({"embeddings": embeddings, "usageMetadata": usage})
            }
            Protocol::Gemini => {
                json!({"embedding": {"values": vectors.into_iter().next()}, "usageMetadata": usage})
            }
            _ => {
                let data: Vec<Value> = vectors
                    .into_iter()
                    .enumerate()
                    .map(|(index, embedding)| json!({"object": "embedding", "index": index, "embedding": embedding}))
                    .collect();
                let prompt = self.prompt_tokens;
                json!({"object": "list", "data": data, "model": model,
                    "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_read_from_either_shape_and_bad_ones_refused() {
        let openai = parse_openai(br#"{"model": "e", "input": ["a b", "c"]}"#).unwrap();
        assert_eq!(openai.inputs, ["a b", "c"]);
        assert!(openai.prompt_tokens() >= 3);
        let ids = parse_openai(br#"{"model": "e", "input": [[1, 2, 3], [4]]}"#).unwrap();
        assert_eq!(ids.prompt_tokens(), 4);
        assert!(
            ids.upstream_body(Protocol::Gemini, "g").is_err(),
            "token ids"
        );
        assert!(parse_openai(br#"{"model": "e", "input": ["a", 1]}"#).is_err());
        assert!(parse_openai(br#"{"model": "e"}"#).is_err());
        let batch = br#"{"requests": [{"content": {"parts": [{"text": "x"}]}, "outputDimensionality": 8}]}"#;
        let gemini = parse_gemini(batch, "g", true).unwrap();
        assert_eq!((gemini.inputs.len(), gemini.dimensions), (1, Some(8)));
        assert!(parse_gemini(br#"{"requests": []}"#, "g", true).is_err());
        assert!(parse_gemini(br#"{}"#, "g", false).is_err());
    }

    #[test]
    fn each_shape_is_sent_to_the_other_provider_and_answered_back() {
        let openai = parse_openai(br#"{"model": "e", "input": "hi", "dimensions": 4}"#).unwrap();
        let sent: Value =
            serde_json::from_slice(&openai.upstream_body(Protocol::Gemini, "g-1").unwrap())
                .unwrap();
        assert_eq!(sent["requests"][0]["model"], "models/g-1");
        assert_eq!(sent["requests"][0]["outputDimensionality"], 4);
        assert!(
            openai
                .upstream_path(Protocol::Gemini, "g-1")
                .ends_with(":batchEmbedContents")
        );
        let answer = json!({"embeddings": [{"values": [0.5, 1.0]}]});
        let back = openai.shape().translate_answer(&answer, "g-1");
        assert_eq!(back["data"][0]["embedding"], json!([0.5, 1.0]));
        assert_eq!(back["object"], "list");

        let single =
            parse_gemini(br#"{"content": {"parts": [{"text": "hi"}]}}"#, "e", false).unwrap();
        let sent: Value =
            serde_json::from_slice(&single.upstream_body(Protocol::OpenAi, "e-1").unwrap())
                .unwrap();
        assert_eq!(sent, json!({"model": "e-1", "input": ["hi"]}));
        let answer = json!({"data": [{"embedding": [0.25]}], "usage": {"prompt_tokens": 2}});
        let back = single.shape().translate_answer(&answer, "e-1");
        assert_eq!(back["embedding"]["values"], json!([0.25]));
        assert_eq!(back["usageMetadata"]["promptTokenCount"], 2);
        let tasked = br#"{"content": {"parts": [{"text": "hi"}]}, "taskType": "RETRIEVAL_QUERY"}"#;
        let tasked = parse_gemini(tasked, "e", false).unwrap();
        assert!(tasked.upstream_body(Protocol::OpenAi, "e-1").is_err());
        assert!(single.upstream_body(Protocol::Anthropic, "c").is_err());
    }
}
