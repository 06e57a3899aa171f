//! The one internal shape of a chat request, its answer and its stream
//! events. Each protocol's adapter (`translate/<protocol>.rs`) decodes
//! into it and encodes from it, so any inbound protocol reaches a channel
//! of any provider: N adapters, not N x N translators.
//!
//! It holds what every protocol can say; a request that uses something
//! the target provider cannot express is refused by the encoder with an
//! [`Unsupported`], never silently dropped.

use super::usage::Tokens;

/// A chat request.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Chat {
    pub model: String,
    /// System instructions, as text (every protocol keeps them apart or
    /// first).
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    pub max_tokens: Option<i64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub response_format: Option<ResponseFormat>,
    /// Not part of what is asked (the completion cache serves either way).
    #[serde(skip)]
    pub stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Role {
    User,
    Assistant,
}

/// One turn: a role and its parts in order. Tool results are user turns
/// (Anthropic's and Gemini's view; OpenAI's `tool` messages map to them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Part {
    Text(String),
    Image(Image),
    /// The model asked for a tool; `arguments` is JSON text.
    ToolCall(ToolCall),
    ToolResult(ToolResult),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Image {
    Url(String),
    Base64 { media_type: String, data: String },
}

impl Image {
    /// An image URL; a `data:` URL is its base64 content.
    pub fn from_url(url: &str) -> Self {
        url.strip_prefix("data:")
            .and_then(|data| data.split_once(";base64,"))
            .map_or_else(
                || Self::Url(url.to_owned()),
                |(media_type, data)| Self::Base64 {
                    media_type: media_type.to_owned(),
                    data: data.to_owned(),
                },
            )
    }

    /// As a URL (base64 content as a `data:` URL).
    pub fn url(&self) -> String {
        match self {
            Self::Url(url) => url.clone(),
            Self::Base64 { media_type, data } => format!("data:{media_type};base64,{data}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// JSON text of an object.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolResult {
    /// The call it answers.
    pub call_id: String,
    /// The tool's name (Gemini needs it; adapters find it from the call).
    pub name: String,
    pub content: String,
    pub is_error: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ResponseFormat {
    /// Any JSON object.
    Json,
    /// JSON matching this schema.
    JsonSchema {
        name: String,
        schema: serde_json::Value,
    },
}

/// Why an answer ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Finish {
    #[default]
    Stop,
    /// Max tokens reached.
    Length,
    ToolCalls,
    ContentFilter,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answer {
    pub id: String,
    pub model: String,
    /// Text and tool calls, in order.
    pub parts: Vec<Part>,
    pub finish: Finish,
    pub usage: Option<Tokens>,
}

/// One step of a streamed answer. Tool calls are numbered in the order
/// they start; their arguments arrive as JSON text deltas. Usage is not an
/// event: the stream's reader keeps it and hands it to the encoder's end.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Text(String),
    ToolCallStart {
        index: usize,
        id: String,
        name: String,
    },
    ToolCallArguments {
        index: usize,
        delta: String,
    },
    Finish(Finish),
}

/// A request feature the target provider cannot express (a 400 in the
/// client's protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

impl Unsupported {
    pub fn new(provider: &str, feature: &str) -> Self {
        Self(format!("{feature} cannot be sent to a {provider} channel"))
    }
}

impl Chat {
    /// Adds a part to the conversation: to the last turn when it has the
    /// same role (Anthropic and Gemini want turns to alternate, and tool
    /// results to share one turn), else as a new turn.
    pub fn push(&mut self, role: Role, part: Part) {
        match self.messages.last_mut() {
            Some(last) if last.role == role => last.parts.push(part),
            _ => self.messages.push(Message {
                role,
                parts: vec![part],
            }),
        }
    }

    /// The tool a result answers, by the call's id, for protocols that
    /// name results by tool rather than by call.
    pub fn tool_name(&self, call_id: &str) -> Option<&str> {
        self.messages
            .iter()
            .flat_map(|message| &message.parts)
            .find_map(|part| match part {
                Part::ToolCall(call) if call.id == call_id => Some(call.name.as_str()),
                _ => None,
            })
    }
}

impl Answer {
    /// The answer's text, every text part joined.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// JSON text of an object, for tool arguments given as objects; anything
/// else becomes `{}` rather than an invalid call.
pub fn arguments_text(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(text)) => text.clone(),
        Some(value @ serde_json::Value::Object(_)) => value.to_string(),
        _ => "{}".to_owned(),
    }
}

/// Arguments as an object, for protocols that send them as one.
pub fn arguments_object(text: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value @ serde_json::Value::Object(_)) => value,
        _ => serde_json::Value::Object(serde_json::Map::new()),
    }
}
