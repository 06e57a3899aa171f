//! OpenAI chat completions <-> the canonical chat: requests, answers and
//! stream chunks, both ways.

use serde_json::{Map, Value, json};

use super::{Fields, now_secs, text_of};
use crate::ai::canonical::{
    Answer, Chat, Event, Finish, Image, Message, Part, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice, ToolResult, Unsupported, arguments_text,
};
use crate::ai::usage::{Reported, Tokens};

/// Fields that change nothing another provider would answer.
const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "stream_options",
    "safety_identifier",
    "prompt_cache_key",
];

pub fn decode_request(body: &Map<String, Value>, target: &str) -> Result<Chat, Unsupported> {
    let fields = Fields::new(body, target, IGNORED);
    let mut chat = Chat {
        model: fields.string("model"),
        stream: fields.bool("stream"),
        max_tokens: fields
            .int("max_completion_tokens")
            .or_else(|| fields.int("max_tokens")),
        temperature: fields.float("temperature"),
        top_p: fields.float("top_p"),
        stop: fields.strings("stop"),
        ..Chat::default()
    };
    if fields.int("n").is_some_and(|n| n > 1) {
        return Err(Unsupported::new(target, "n > 1"));
    }
    chat.response_format = response_format(body.get("response_format"), target)?;
    chat.tools = tools(body.get("tools"), target)?;
    chat.tool_choice = tool_choice(body.get("tool_choice"));
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        decode_message(&mut chat, message, target)?;
    }
    fields.refuse_others(&[
        "model",
        "stream",
        "max_completion_tokens",
        "max_tokens",
        "temperature",
        "top_p",
        "stop",
        "n",
        "response_format",
        "tools",
        "tool_choice",
        "messages",
    ])?;
    Ok(chat)
}

fn decode_message(chat: &mut Chat, message: &Value, target: &str) -> Result<(), Unsupported> {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user");
    let content = message.get("content");
    match role {
        "system" | "developer" => chat.system.push(text_of(content)),
        "tool" => {
            let call_id = message
                .get("tool_call_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let name = chat.tool_name(&call_id).unwrap_or_default().to_owned();
            let result = Part::ToolResult(ToolResult {
                call_id,
                name,
                content: text_of(content),
                is_error: false,
            });
            chat.push(Role::User, result);
        }
        "assistant" => {
            let text = text_of(content);
            if !text.is_empty() {
                chat.push(Role::Assistant, Part::Text(text));
            }
            for call in message
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let function = call.get("function").unwrap_or(&Value::Null);
                let call = ToolCall {
                    id: string(call.get("id")),
                    name: string(function.get("name")),
                    arguments: arguments_text(function.get("arguments")),
                };
                chat.push(Role::Assistant, Part::ToolCall(call));
            }
        }
        "user" => {
            for part in user_parts(content, target)? {
                chat.push(Role::User, part);
            }
        }
        other => {
            return Err(Unsupported::new(target, &format!("a '{other}' message")));
        }
    }
    Ok(())
}

fn user_parts(content: Option<&Value>, target: &str) -> Result<Vec<Part>, Unsupported> {
    let Some(Value::Array(parts)) = content else {
        return Ok(vec![Part::Text(text_of(content))]);
    };
    parts
        .iter()
        .map(|part| match part.get("type").and_then(Value::as_str) {
            Some("text") => Ok(Part::Text(string(part.get("text")))),
            Some("image_url") => {
                let url = part
                    .get("image_url")
                    .and_then(|image| image.get("url"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(Part::Image(Image::from_url(url)))
            }
            Some(other) => Err(Unsupported::new(
                target,
                &format!("a '{other}' content part"),
            )),
            None => Err(Unsupported::new(target, "a content part without a type")),
        })
        .collect()
}

fn response_format(
    value: Option<&Value>,
    target: &str,
) -> Result<Option<ResponseFormat>, Unsupported> {
    let Some(format) = value.filter(|value| !value.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::Json)),
        Some("json_schema") => {
            let schema = format.get("json_schema").unwrap_or(&Value::Null);
            Ok(Some(ResponseFormat::JsonSchema {
                name: string(schema.get("name")),
                schema: schema.get("schema").cloned().unwrap_or(Value::Null),
            }))
        }
        _ => Err(Unsupported::new(target, "this response_format")),
    }
}

fn tools(value: Option<&Value>, target: &str) -> Result<Vec<Tool>, Unsupported> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|tool| {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(Unsupported::new(target, "a tool that is not a function"));
            }
            let function = tool.get("function").unwrap_or(&Value::Null);
            Ok(super::declared_tool(function, &["parameters"]))
        })
        .collect()
}

fn tool_choice(value: Option<&Value>) -> Option<ToolChoice> {
    match value? {
        Value::String(mode) => match mode.as_str() {
            "none" => Some(ToolChoice::None),
            "required" => Some(ToolChoice::Required),
            _ => Some(ToolChoice::Auto),
        },
        choice => choice
            .get("function")
            .and_then(|function| function.get("name"))
            .and_then(Value::as_str)
            .map(|name| ToolChoice::Named(name.to_owned())),
    }
}

fn string(value: Option<&Value>) -> String {
    value.and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The body for an OpenAI or OpenAI-compatible channel. `max_field` is
/// `max_completion_tokens` for OpenAI itself, `max_tokens` for servers
/// that speak the older name.
pub fn encode_request(chat: &Chat, model: &str, max_field: &str) -> Value {
    let mut messages: Vec<Value> = chat
        .system
        .iter()
        .map(|text| json!({"role": "system", "content": text}))
        .collect();
    for message in &chat.messages {
        encode_message(message, &mut messages);
    }
    let mut body = Map::new();
    body.insert("model".to_owned(), json!(model));
    body.insert("messages".to_owned(), json!(messages));
    let fields = &mut body;
    if let Some(max) = chat.max_tokens {
        fields.insert(max_field.to_owned(), json!(max));
    }
    optional(fields, "temperature", chat.temperature);
    optional(fields, "top_p", chat.top_p);
    if !chat.stop.is_empty() {
        fields.insert("stop".to_owned(), json!(chat.stop));
    }
    if chat.stream {
        fields.insert("stream".to_owned(), json!(true));
        fields.insert("stream_options".to_owned(), json!({"include_usage": true}));
    }
    encode_tools(chat, fields);
    match &chat.response_format {
        Some(ResponseFormat::Json) => {
            fields.insert("response_format".to_owned(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { name, schema }) => {
            let format =
                json!({"type": "json_schema", "json_schema": {"name": name, "schema": schema}});
            fields.insert("response_format".to_owned(), format);
        }
        None => {}
    }
    Value::Object(body)
}

fn encode_tools(chat: &Chat, fields: &mut Map<String, Value>) {
    if !chat.tools.is_empty() {
        let tools: Vec<Value> = chat
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {"name": tool.name,
                "description": tool.description, "parameters": tool.parameters}})
            })
            .collect();
        fields.insert("tools".to_owned(), json!(tools));
    }
    if let Some(choice) = &chat.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(name) => json!({"type": "function", "function": {"name": name}}),
        };
        fields.insert("tool_choice".to_owned(), choice);
    }
}

fn optional(fields: &mut Map<String, Value>, name: &str, value: Option<f64>) {
    if let Some(value) = value {
        fields.insert(name.to_owned(), json!(value));
    }
}

/// One canonical turn as OpenAI messages: tool results become `tool`
/// messages, an assistant's calls its `tool_calls`.
fn encode_message(message: &Message, out: &mut Vec<Value>) {
    let mut content = Vec::new();
    let mut calls = Vec::new();
    for part in &message.parts {
        match part {
            Part::Text(text) => content.push(json!({"type": "text", "text": text})),
            Part::Image(image) => {
                content.push(json!({"type": "image_url", "image_url": {"url": image.url()}}));
            }
            Part::ToolCall(call) => calls.push(json!({"id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}})),
            Part::ToolResult(result) => out.push(json!({"role": "tool",
                "tool_call_id": result.call_id, "content": result.content})),
        }
    }
    let role = match message.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    // One text part as a plain string, as clients write it; several
    // parts stay parts.
    let content = match content.as_slice() {
        [] => Value::Null,
        [one] if one["type"] == "text" => one["text"].clone(),
        _ => json!(content),
    };
    if content.is_null() && calls.is_empty() {
        return;
    }
    let mut turn = json!({"role": role, "content": content});
    if !calls.is_empty() {
        turn["tool_calls"] = json!(calls);
    }
    out.push(turn);
}

pub fn finish_from(reason: &str) -> Finish {
    match reason {
        "length" => Finish::Length,
        "tool_calls" | "function_call" => Finish::ToolCalls,
        "content_filter" => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
        Finish::ContentFilter => "content_filter",
    }
}

pub fn decode_answer(answer: &Value) -> Answer {
    let choice = &answer["choices"][0];
    let message = &choice["message"];
    let mut parts = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|text| !text.is_empty()) {
        parts.push(Part::Text(text.to_owned()));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        parts.push(Part::ToolCall(ToolCall {
            id: string(call.get("id")),
            name: string(call["function"].get("name")),
            arguments: arguments_text(call["function"].get("arguments")),
        }));
    }
    let mut reported = Reported::default();
    reported.observe(crate::ai::usage::Protocol::OpenAi, answer);
    Answer {
        id: string(answer.get("id")),
        model: string(answer.get("model")),
        parts,
        finish: choice["finish_reason"]
            .as_str()
            .map_or(Finish::Stop, finish_from),
        usage: reported.tokens,
    }
}

fn usage(tokens: Tokens) -> Value {
    json!({"prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion,
        "total_tokens": tokens.prompt.saturating_add(tokens.completion),
        "prompt_tokens_details": {"cached_tokens": tokens.cached}})
}

pub fn encode_answer(answer: &Answer, model: &str) -> Value {
    let calls: Vec<Value> = answer
        .parts
        .iter()
        .filter_map(|part| match part {
            Part::ToolCall(call) => Some(json!({"id": call.id, "type": "function",
                "function": {"name": call.name, "arguments": call.arguments}})),
            _ => None,
        })
        .collect();
    let text = answer.text();
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = json!(calls);
    }
    json!({"id": chat_id(&answer.id), "object": "chat.completion", "created": now_secs(),
        "model": model, "choices": [{"index": 0, "message": message, "logprobs": null,
        "finish_reason": finish_name(answer.finish)}],
        "usage": usage(answer.usage.unwrap_or_default())})
}

fn chat_id(id: &str) -> String {
    if id.is_empty() {
        format!("chatcmpl-{}", uuid::Uuid::now_v7().simple())
    } else {
        id.to_owned()
    }
}

/// Reads OpenAI chunks as canonical events.
#[derive(Default)]
pub struct Decoder;

impl Decoder {
    pub fn events(&mut self, chunk: &Value) -> Vec<Event> {
        let mut events = Vec::new();
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|text| !text.is_empty()) {
            events.push(Event::Text(text.to_owned()));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap_or(0) as usize;
            let function = &call["function"];
            if let Some(name) = function["name"].as_str() {
                events.push(Event::ToolCallStart {
                    index,
                    id: string(call.get("id")),
                    name: name.to_owned(),
                });
            }
            if let Some(delta) = function["arguments"]
                .as_str()
                .filter(|delta| !delta.is_empty())
            {
                events.push(Event::ToolCallArguments {
                    index,
                    delta: delta.to_owned(),
                });
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            events.push(Event::Finish(finish_from(reason)));
        }
        events
    }
}

/// Writes canonical events as OpenAI chunks, ending with the usage chunk
/// (when the client asked for it) and `[DONE]`.
pub struct Encoder {
    id: String,
    model: String,
    created: u64,
    started: bool,
    finish: Option<Finish>,
    wants_usage: bool,
}

impl Encoder {
    pub fn new(model: &str, wants_usage: bool) -> Self {
        Self {
            id: chat_id(""),
            model: model.to_owned(),
            created: now_secs(),
            started: false,
            finish: None,
            wants_usage,
        }
    }

    fn chunk(&self, delta: Value, finish: Option<Finish>, out: &mut Vec<u8>) {
        let chunk = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null,
                "finish_reason": finish.map(finish_name)}]});
        super::sse_data(None, &chunk, out);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            self.chunk(json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    pub fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        self.start(out);
        match event {
            Event::Text(text) => self.chunk(json!({"content": text}), None, out),
            Event::ToolCallStart { index, id, name } => self.chunk(
                json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                    "function": {"name": name, "arguments": ""}}]}),
                None,
                out,
            ),
            Event::ToolCallArguments { index, delta } => self.chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": delta}}]}),
                None,
                out,
            ),
            Event::Finish(finish) => self.finish = Some(*finish),
        }
    }

    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        self.start(out);
        self.chunk(json!({}), Some(self.finish.unwrap_or_default()), out);
        if self.wants_usage {
            let chunk = json!({"id": self.id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": [],
                "usage": usage(tokens.unwrap_or_default())});
            super::sse_data(None, &chunk, out);
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}
