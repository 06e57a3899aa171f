//! Gemini `generateContent` <-> the canonical chat: requests, answers and
//! stream chunks, both ways. Gemini names tool results by the tool, not by
//! the call, and its calls often carry no id: ids are made up in call
//! order (`call_0`, ...) and results matched to the first unanswered call
//! of their tool.

use serde_json::{Map, Value, json};

use super::{Fields, sse_data, strings};
use crate::ai::canonical::{
    Answer, Chat, Event, Finish, Image, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    ToolResult, Unsupported, arguments_object,
};
use crate::ai::usage::{Protocol, Reported, Tokens};

/// Gemini's own safety filter settings: other providers have theirs.
const IGNORED: &[&str] = &["safetySettings"];
const CONFIG_READ: &[&str] = &[
    "maxOutputTokens",
    "temperature",
    "topP",
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "candidateCount",
];

pub fn decode_request(body: &Map<String, Value>, target: &str) -> Result<Chat, Unsupported> {
    let fields = Fields::new(body, target, IGNORED);
    let mut chat = Chat::default();
    decode_config(&mut chat, body.get("generationConfig"), target)?;
    if let Some(system) = body.get("systemInstruction") {
        chat.system.push(parts_text(&system["parts"]));
    }
    chat.tools = tools(body.get("tools"), target)?;
    chat.tool_choice = body
        .get("toolConfig")
        .and_then(|config| tool_choice(&config["functionCallingConfig"]));
    let mut calls = Calls::default();
    for content in body
        .get("contents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = match content["role"].as_str() {
            Some("model") => Role::Assistant,
            _ => Role::User,
        };
        for part in content["parts"].as_array().into_iter().flatten() {
            if let Some(part) = decode_part(part, &mut calls, target)? {
                chat.push(role, part);
            }
        }
    }
    fields.refuse_others(&[
        "contents",
        "systemInstruction",
        "tools",
        "toolConfig",
        "generationConfig",
    ])?;
    Ok(chat)
}

fn decode_config(chat: &mut Chat, config: Option<&Value>, target: &str) -> Result<(), Unsupported> {
    let Some(Value::Object(config)) = config else {
        return Ok(());
    };
    if let Some((name, _)) = config
        .iter()
        .find(|(name, value)| !value.is_null() && !CONFIG_READ.contains(&name.as_str()))
    {
        return Err(Unsupported::new(
            target,
            &format!("generationConfig.{name}"),
        ));
    }
    if config
        .get("candidateCount")
        .and_then(Value::as_i64)
        .is_some_and(|count| count > 1)
    {
        return Err(Unsupported::new(target, "candidateCount > 1"));
    }
    chat.max_tokens = config.get("maxOutputTokens").and_then(Value::as_i64);
    chat.temperature = config.get("temperature").and_then(Value::as_f64);
    chat.top_p = config.get("topP").and_then(Value::as_f64);
    chat.stop = strings(config.get("stopSequences"));
    if config.get("responseMimeType").and_then(Value::as_str) == Some("application/json") {
        let schema = config
            .get("responseJsonSchema")
            .or_else(|| config.get("responseSchema"));
        chat.response_format = Some(match schema {
            Some(schema) => ResponseFormat::JsonSchema {
                name: "response".to_owned(),
                schema: schema.clone(),
            },
            None => ResponseFormat::Json,
        });
    }
    Ok(())
}

/// Calls seen so far, to give them ids and match results to them.
#[derive(Default)]
struct Calls {
    seen: Vec<(String, String, bool)>,
}

impl Calls {
    fn call(&mut self, id: Option<&str>, name: &str) -> String {
        let id = id
            .filter(|id| !id.is_empty())
            .map_or_else(|| format!("call_{}", self.seen.len()), str::to_owned);
        self.seen.push((id.clone(), name.to_owned(), false));
        id
    }

    fn answer(&mut self, id: Option<&str>, name: &str) -> String {
        let found = self
            .seen
            .iter_mut()
            .find(|(seen_id, seen_name, answered)| match id {
                Some(id) if !id.is_empty() => seen_id == id,
                _ => seen_name == name && !*answered,
            });
        match found {
            Some((seen_id, _, answered)) => {
                *answered = true;
                seen_id.clone()
            }
            None => id.unwrap_or(name).to_owned(),
        }
    }
}

fn decode_part(part: &Value, calls: &mut Calls, target: &str) -> Result<Option<Part>, Unsupported> {
    if let Some(text) = part["text"].as_str() {
        let thought = part["thought"].as_bool().unwrap_or(false);
        return Ok((!thought).then(|| Part::Text(text.to_owned())));
    }
    if let Some(data) = part.get("inlineData") {
        return Ok(Some(Part::Image(Image::Base64 {
            media_type: data["mimeType"].as_str().unwrap_or_default().to_owned(),
            data: data["data"].as_str().unwrap_or_default().to_owned(),
        })));
    }
    if let Some(file) = part.get("fileData") {
        let uri = file["fileUri"].as_str().unwrap_or_default();
        return Ok(Some(Part::Image(Image::Url(uri.to_owned()))));
    }
    if let Some(call) = part.get("functionCall") {
        let name = call["name"].as_str().unwrap_or_default();
        return Ok(Some(Part::ToolCall(ToolCall {
            id: calls.call(call["id"].as_str(), name),
            name: name.to_owned(),
            arguments: call
                .get("args")
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        })));
    }
    if let Some(response) = part.get("functionResponse") {
        let name = response["name"].as_str().unwrap_or_default();
        let content = &response["response"];
        // A tool's answer wrapped as {"content": ...} or {"result": ...}
        // is unwrapped; anything else goes as its JSON.
        let inner = content.get("content").or_else(|| content.get("result"));
        return Ok(Some(Part::ToolResult(ToolResult {
            call_id: calls.answer(response["id"].as_str(), name),
            name: name.to_owned(),
            content: match inner {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => content.to_string(),
            },
            is_error: content.get("error").is_some(),
        })));
    }
    let kind = part
        .as_object()
        .and_then(|part| part.keys().next().cloned());
    Err(Unsupported::new(
        target,
        &format!("a '{}' part", kind.unwrap_or_default()),
    ))
}

fn parts_text(parts: &Value) -> String {
    parts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| part["text"].as_str())
        .collect::<Vec<_>>()
        .join("")
}

fn tools(value: Option<&Value>, target: &str) -> Result<Vec<Tool>, Unsupported> {
    let mut tools = Vec::new();
    for tool in value.and_then(Value::as_array).into_iter().flatten() {
        let Some(declarations) = tool.get("functionDeclarations").and_then(Value::as_array) else {
            return Err(Unsupported::new(target, "a tool that is not a function"));
        };
        for declaration in declarations {
            tools.push(super::declared_tool(
                declaration,
                &["parametersJsonSchema", "parameters"],
            ));
        }
    }
    Ok(tools)
}

fn tool_choice(config: &Value) -> Option<ToolChoice> {
    let allowed = strings(config.get("allowedFunctionNames"));
    match config["mode"].as_str()? {
        "NONE" => Some(ToolChoice::None),
        "ANY" if allowed.len() == 1 => Some(ToolChoice::Named(allowed[0].clone())),
        "ANY" => Some(ToolChoice::Required),
        _ => Some(ToolChoice::Auto),
    }
}

pub fn encode_request(chat: &Chat) -> Result<Value, Unsupported> {
    let mut contents = Vec::new();
    for message in &chat.messages {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let parts = message
            .parts
            .iter()
            .map(encode_part)
            .collect::<Result<Vec<_>, _>>()?;
        contents.push(json!({"role": role, "parts": parts}));
    }
    let mut body = Map::new();
    body.insert("contents".to_owned(), json!(contents));
    if !chat.system.is_empty() {
        let text = chat.system.join("\n\n");
        body.insert(
            "systemInstruction".to_owned(),
            json!({"parts": [{"text": text}]}),
        );
    }
    if !chat.tools.is_empty() {
        let declarations: Vec<Value> = chat
            .tools
            .iter()
            .map(|tool| {
                json!({"name": tool.name, "description": tool.description,
                "parametersJsonSchema": tool.parameters})
            })
            .collect();
        body.insert(
            "tools".to_owned(),
            json!([{"functionDeclarations": declarations}]),
        );
    }
    if let Some(choice) = &chat.tool_choice {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Named(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body.insert(
            "toolConfig".to_owned(),
            json!({"functionCallingConfig": config}),
        );
    }
    body.insert(
        "generationConfig".to_owned(),
        Value::Object(encode_config(chat)),
    );
    Ok(Value::Object(body))
}

fn encode_config(chat: &Chat) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(max) = chat.max_tokens {
        config.insert("maxOutputTokens".to_owned(), json!(max));
    }
    for (name, value) in [("temperature", chat.temperature), ("topP", chat.top_p)] {
        if let Some(value) = value {
            config.insert(name.to_owned(), json!(value));
        }
    }
    if !chat.stop.is_empty() {
        config.insert("stopSequences".to_owned(), json!(chat.stop));
    }
    match &chat.response_format {
        Some(ResponseFormat::Json) => {
            config.insert("responseMimeType".to_owned(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.insert("responseMimeType".to_owned(), json!("application/json"));
            config.insert("responseJsonSchema".to_owned(), schema.clone());
        }
        None => {}
    }
    config
}

fn encode_part(part: &Part) -> Result<Value, Unsupported> {
    Ok(match part {
        Part::Text(text) => json!({"text": text}),
        Part::Image(Image::Base64 { media_type, data }) => {
            json!({"inlineData": {"mimeType": media_type, "data": data}})
        }
        Part::Image(Image::Url(_)) => {
            return Err(Unsupported::new(
                "Gemini",
                "an image by URL (send it as base64 data)",
            ));
        }
        Part::ToolCall(call) => json!({"functionCall": {"name": call.name,
            "args": arguments_object(&call.arguments)}}),
        Part::ToolResult(result) => {
            let response = match serde_json::from_str::<Value>(&result.content) {
                Ok(object @ Value::Object(_)) => object,
                _ => json!({"content": result.content}),
            };
            json!({"functionResponse": {"name": result.name, "response": response}})
        }
    })
}

fn finish_from(reason: &str, called: bool) -> Finish {
    match reason {
        "MAX_TOKENS" => Finish::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            Finish::ContentFilter
        }
        _ if called => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::ToolCalls => "STOP",
        Finish::Length => "MAX_TOKENS",
        Finish::ContentFilter => "SAFETY",
    }
}

/// The parts of a response's first candidate, as canonical parts.
fn answer_parts(response: &Value, calls: &mut Calls) -> Vec<Part> {
    response["candidates"][0]["content"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|part| decode_part(part, calls, "").ok().flatten())
        .filter(|part| matches!(part, Part::Text(_) | Part::ToolCall(_)))
        .collect()
}

pub fn decode_answer(answer: &Value) -> Answer {
    let parts = answer_parts(answer, &mut Calls::default());
    let called = parts.iter().any(|part| matches!(part, Part::ToolCall(_)));
    let mut reported = Reported::default();
    reported.observe(Protocol::Gemini, answer);
    Answer {
        id: answer["responseId"].as_str().unwrap_or_default().to_owned(),
        model: answer["modelVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        parts,
        finish: answer["candidates"][0]["finishReason"]
            .as_str()
            .map_or(Finish::Stop, |reason| finish_from(reason, called)),
        usage: reported.tokens,
    }
}

fn usage(tokens: Tokens) -> Value {
    json!({"promptTokenCount": tokens.prompt, "candidatesTokenCount": tokens.completion,
        "totalTokenCount": tokens.prompt.saturating_add(tokens.completion),
        "cachedContentTokenCount": tokens.cached})
}

fn response_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub fn encode_answer(answer: &Answer, model: &str) -> Value {
    let parts = answer
        .parts
        .iter()
        .filter_map(|part| encode_part(part).ok())
        .collect::<Vec<_>>();
    json!({"candidates": [{"content": {"role": "model", "parts": parts},
        "finishReason": finish_name(answer.finish), "index": 0}],
        "usageMetadata": usage(answer.usage.unwrap_or_default()),
        "modelVersion": model, "responseId": response_id()})
}

/// Reads Gemini's stream chunks (each a whole response) as canonical
/// events; a call arrives whole, as a start and all its arguments.
#[derive(Default)]
pub struct Decoder {
    calls: Calls,
}

impl Decoder {
    pub fn events(&mut self, chunk: &Value) -> Vec<Event> {
        let mut events = Vec::new();
        for part in answer_parts(chunk, &mut self.calls) {
            match part {
                Part::Text(text) if !text.is_empty() => events.push(Event::Text(text)),
                Part::ToolCall(call) => {
                    let index = self.calls.seen.len() - 1;
                    events.push(Event::ToolCallStart {
                        index,
                        id: call.id,
                        name: call.name,
                    });
                    events.push(Event::ToolCallArguments {
                        index,
                        delta: call.arguments,
                    });
                }
                _ => {}
            }
        }
        if let Some(reason) = chunk["candidates"][0]["finishReason"].as_str() {
            let called = !self.calls.seen.is_empty();
            events.push(Event::Finish(finish_from(reason, called)));
        }
        events
    }
}

/// The most tool calls one streamed answer is re-encoded with.
const MAX_CALLS: usize = 128;

/// Writes canonical events as Gemini's stream: a chunk per text delta;
/// tool calls, which Gemini sends whole, gathered and sent in the last
/// chunk with the finish reason and usage.
pub struct Encoder {
    model: String,
    id: String,
    calls: Vec<(String, String)>,
    finish: Option<Finish>,
}

impl Encoder {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            id: response_id(),
            calls: Vec::new(),
            finish: None,
        }
    }

    fn chunk(&self, parts: Value, tail: Option<(Finish, Tokens)>, out: &mut Vec<u8>) {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        let mut chunk = json!({"modelVersion": self.model, "responseId": self.id});
        if let Some((finish, tokens)) = tail {
            candidate["finishReason"] = json!(finish_name(finish));
            chunk["usageMetadata"] = usage(tokens);
        }
        chunk["candidates"] = json!([candidate]);
        sse_data(None, &chunk, out);
    }

    pub fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        match event {
            Event::Text(text) => self.chunk(json!([{"text": text}]), None, out),
            // A provider's index past any real answer's is ignored rather
            // than allocated for.
            Event::ToolCallStart { index, .. } | Event::ToolCallArguments { index, .. }
                if *index >= MAX_CALLS => {}
            Event::ToolCallStart { index, name, .. } => {
                if self.calls.len() <= *index {
                    self.calls
                        .resize(*index + 1, (String::new(), String::new()));
                }
                self.calls[*index].0.clone_from(name);
            }
            Event::ToolCallArguments { index, delta } => {
                if let Some(call) = self.calls.get_mut(*index) {
                    call.1.push_str(delta);
                }
            }
            Event::Finish(finish) => self.finish = Some(*finish),
        }
    }

    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        let mut parts: Vec<Value> = self
            .calls
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, arguments)| {
                json!({"functionCall": {"name": name, "args": arguments_object(arguments)}})
            })
            .collect();
        if parts.is_empty() {
            parts.push(json!({"text": ""}));
        }
        let tail = (self.finish.unwrap_or_default(), tokens.unwrap_or_default());
        self.chunk(json!(parts), Some(tail), out);
    }
}
