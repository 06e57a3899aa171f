//! Protocol translation: each protocol's adapter decodes its requests,
//! answers and stream events into the canonical model
//! ([`crate::ai::canonical`]) and encodes them from it. A request whose
//! chosen channel speaks the client's protocol is passed through as it is;
//! only a channel of another provider goes through here.

mod answer;
pub mod anthropic;
pub mod gemini;
pub mod openai;
pub mod responses;
mod stream;

use serde_json::{Map, Value};

pub use answer::{Ends, error_kind, translated};
pub use stream::{Collector, Translator, replay};

use super::canonical::{Answer, Chat, Tool, Unsupported};
use super::usage::Protocol;

/// The client's request in the canonical model, for a channel of
/// `target` (named in a refusal).
pub fn decode_request(
    protocol: Protocol,
    body: &Map<String, Value>,
    target: &str,
) -> Result<Chat, Unsupported> {
    match protocol {
        Protocol::OpenAi => openai::decode_request(body, target),
        Protocol::Anthropic => anthropic::decode_request(body, target),
        Protocol::Gemini => gemini::decode_request(body, target),
        Protocol::Responses => responses::decode_request(body, target),
    }
}

/// The body for a channel speaking `protocol`.
pub fn encode_request(
    protocol: Protocol,
    chat: &Chat,
    model: &str,
    openai_max_field: &str,
) -> Result<Value, Unsupported> {
    match protocol {
        Protocol::OpenAi => Ok(openai::encode_request(chat, model, openai_max_field)),
        Protocol::Anthropic => anthropic::encode_request(chat, model),
        Protocol::Gemini => gemini::encode_request(chat),
        // Only OpenAI speaks it, and takes it as the client sent it.
        Protocol::Responses => Err(Unsupported::new("OpenAI", "a translated Responses request")),
    }
}

pub fn decode_answer(protocol: Protocol, answer: &Value) -> Answer {
    match protocol {
        Protocol::OpenAi => openai::decode_answer(answer),
        Protocol::Anthropic => anthropic::decode_answer(answer),
        Protocol::Gemini => gemini::decode_answer(answer),
        Protocol::Responses => responses::decode_answer(answer),
    }
}

/// The answer in the client's protocol, under `model`.
pub fn encode_answer(protocol: Protocol, answer: &Answer, model: &str) -> Value {
    match protocol {
        Protocol::OpenAi => openai::encode_answer(answer, model),
        Protocol::Anthropic => anthropic::encode_answer(answer, model),
        Protocol::Gemini => gemini::encode_answer(answer, model),
        Protocol::Responses => responses::encode_answer(answer, model),
    }
}

/// A provider's error body (every protocol has `error.message`), as the
/// message to repeat to the client.
pub fn error_message(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    body["error"]["message"].as_str().map(str::to_owned)
}

/// A request's top-level fields, read for decoding: every field the
/// decoder does not read or know to be harmless is refused, so nothing
/// that changes the answer is dropped on the way to another provider.
pub(crate) struct Fields<'a> {
    body: &'a Map<String, Value>,
    target: &'a str,
    ignored: &'a [&'a str],
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a Map<String, Value>, target: &'a str, ignored: &'a [&'a str]) -> Self {
        Self {
            body,
            target,
            ignored,
        }
    }

    pub fn string(&self, name: &str) -> String {
        self.body
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.body
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.body.get(name).and_then(Value::as_i64)
    }

    pub fn float(&self, name: &str) -> Option<f64> {
        self.body.get(name).and_then(Value::as_f64)
    }

    /// A string or a list of strings.
    pub fn strings(&self, name: &str) -> Vec<String> {
        strings(self.body.get(name))
    }

    /// Refuses the first field that is neither `read` nor ignorable.
    pub fn refuse_others(&self, read: &[&str]) -> Result<(), Unsupported> {
        let other = self.body.iter().find(|(name, value)| {
            !value.is_null()
                && !read.contains(&name.as_str())
                && !self.ignored.contains(&name.as_str())
        });
        match other {
            Some((name, _)) => Err(Unsupported::new(self.target, &format!("'{name}'"))),
            None => Ok(()),
        }
    }
}

/// A tool as every protocol declares one: a name, a description, and the
/// arguments' schema under the first of `schema_fields` present (an
/// object without properties when none is).
pub(crate) fn declared_tool(declaration: &Value, schema_fields: &[&str]) -> Tool {
    let text = |name: &str| declaration[name].as_str().unwrap_or_default().to_owned();
    Tool {
        name: text("name"),
        description: text("description"),
        parameters: schema_fields
            .iter()
            .find_map(|field| declaration.get(*field))
            .cloned()
            .unwrap_or_else(|| serde_json::json!({"type": "object"})),
    }
}

pub fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// Text content: a string, or the text of a list of parts or blocks.
pub fn text_of(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// One SSE event: `event:` when the protocol names its events, then the
/// JSON data.
pub(crate) fn sse_data(event: Option<&str>, data: &Value, out: &mut Vec<u8>) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests;
