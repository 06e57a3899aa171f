//! Anthropic Messages <-> the canonical chat: requests, answers and stream
//! events, both ways.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{Fields, sse_data, text_of};
use crate::ai::canonical::{
    Answer, Chat, Event, Finish, Image, Part, Role, Tool, ToolCall, ToolChoice, ToolResult,
    Unsupported, arguments_object,
};
use crate::ai::usage::{Protocol, Reported, Tokens};

const IGNORED: &[&str] = &["metadata", "service_tier"];
/// Sent when the canonical request names no max tokens (the edge always
/// sets one; Anthropic requires it).
const DEFAULT_MAX_TOKENS: i64 = 4096;

pub fn decode_request(body: &Map<String, Value>, target: &str) -> Result<Chat, Unsupported> {
    let fields = Fields::new(body, target, IGNORED);
    let mut chat = Chat {
        model: fields.string("model"),
        stream: fields.bool("stream"),
        max_tokens: fields.int("max_tokens"),
        temperature: fields.float("temperature"),
        top_p: fields.float("top_p"),
        stop: fields.strings("stop_sequences"),
        ..Chat::default()
    };
    let system = text_of(body.get("system"));
    if !system.is_empty() {
        chat.system.push(system);
    }
    chat.tools = tools(body.get("tools"), target)?;
    chat.tool_choice = body.get("tool_choice").and_then(tool_choice);
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let role = match message.get("role").and_then(Value::as_str) {
            Some("assistant") => Role::Assistant,
            _ => Role::User,
        };
        for part in blocks(message.get("content"), target)? {
            chat.push(role, part);
        }
    }
    fill_result_names(&mut chat);
    fields.refuse_others(&[
        "model",
        "stream",
        "max_tokens",
        "temperature",
        "top_p",
        "stop_sequences",
        "system",
        "tools",
        "tool_choice",
        "messages",
    ])?;
    Ok(chat)
}

/// Anthropic names a tool result by its call only; Gemini needs the name.
fn fill_result_names(chat: &mut Chat) {
    let names: HashMap<String, String> = chat
        .messages
        .iter()
        .flat_map(|message| &message.parts)
        .filter_map(|part| match part {
            Part::ToolCall(call) => Some((call.id.clone(), call.name.clone())),
            _ => None,
        })
        .collect();
    for part in chat
        .messages
        .iter_mut()
        .flat_map(|message| &mut message.parts)
    {
        if let Part::ToolResult(result) = part
            && let Some(name) = names.get(&result.call_id)
        {
            result.name.clone_from(name);
        }
    }
}

fn blocks(content: Option<&Value>, target: &str) -> Result<Vec<Part>, Unsupported> {
    let Some(Value::Array(blocks)) = content else {
        return Ok(vec![Part::Text(text_of(content))]);
    };
    blocks
        .iter()
        .map(|block| block_part(block, target))
        .collect()
}

fn block_part(block: &Value, target: &str) -> Result<Part, Unsupported> {
    let string = |name: &str| block[name].as_str().unwrap_or_default().to_owned();
    match block["type"].as_str().unwrap_or_default() {
        "text" => Ok(Part::Text(string("text"))),
        "image" => {
            let source = &block["source"];
            match source["type"].as_str() {
                Some("base64") => Ok(Part::Image(Image::Base64 {
                    media_type: source["media_type"].as_str().unwrap_or_default().to_owned(),
                    data: source["data"].as_str().unwrap_or_default().to_owned(),
                })),
                Some("url") => Ok(Part::Image(Image::Url(
                    source["url"].as_str().unwrap_or_default().to_owned(),
                ))),
                _ => Err(Unsupported::new(target, "this image source")),
            }
        }
        "tool_use" => Ok(Part::ToolCall(ToolCall {
            id: string("id"),
            name: string("name"),
            arguments: block
                .get("input")
                .map_or_else(|| "{}".to_owned(), Value::to_string),
        })),
        "tool_result" => Ok(Part::ToolResult(ToolResult {
            call_id: string("tool_use_id"),
            name: String::new(),
            content: text_of(block.get("content")),
            is_error: block["is_error"].as_bool().unwrap_or(false),
        })),
        other => Err(Unsupported::new(
            target,
            &format!("a '{other}' content block"),
        )),
    }
}

fn tools(value: Option<&Value>, target: &str) -> Result<Vec<Tool>, Unsupported> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|tool| {
            if tool.get("type").is_some_and(|kind| kind != "custom") {
                return Err(Unsupported::new(target, "a server tool"));
            }
            Ok(super::declared_tool(tool, &["input_schema"]))
        })
        .collect()
}

fn tool_choice(choice: &Value) -> Option<ToolChoice> {
    match choice["type"].as_str()? {
        "any" => Some(ToolChoice::Required),
        "none" => Some(ToolChoice::None),
        "tool" => Some(ToolChoice::Named(choice["name"].as_str()?.to_owned())),
        _ => Some(ToolChoice::Auto),
    }
}

pub fn encode_request(chat: &Chat, model: &str) -> Result<Value, Unsupported> {
    const PROVIDER: &str = "Anthropic";
    if chat.response_format.is_some() {
        return Err(Unsupported::new(PROVIDER, "response_format (JSON mode)"));
    }
    if chat
        .temperature
        .is_some_and(|temperature| temperature > 1.0)
    {
        return Err(Unsupported::new(PROVIDER, "a temperature above 1"));
    }
    let messages: Vec<Value> = chat
        .messages
        .iter()
        .map(|message| {
            let role = match message.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let content: Vec<Value> = message.parts.iter().map(encode_part).collect();
            json!({"role": role, "content": content})
        })
        .collect();
    let mut body = Map::new();
    body.insert("model".to_owned(), json!(model));
    body.insert("messages".to_owned(), json!(messages));
    let max_tokens = chat.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".to_owned(), json!(max_tokens));
    if !chat.system.is_empty() {
        body.insert("system".to_owned(), json!(chat.system.join("\n\n")));
    }
    for (name, value) in [("temperature", chat.temperature), ("top_p", chat.top_p)] {
        if let Some(value) = value {
            body.insert(name.to_owned(), json!(value));
        }
    }
    if !chat.stop.is_empty() {
        body.insert("stop_sequences".to_owned(), json!(chat.stop));
    }
    if chat.stream {
        body.insert("stream".to_owned(), json!(true));
    }
    if !chat.tools.is_empty() {
        let tools: Vec<Value> = chat
            .tools
            .iter()
            .map(|tool| {
                json!({"name": tool.name, "description": tool.description,
                "input_schema": tool.parameters})
            })
            .collect();
        body.insert("tools".to_owned(), json!(tools));
    }
    if let Some(choice) = &chat.tool_choice {
        let choice = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Named(name) => json!({"type": "tool", "name": name}),
        };
        body.insert("tool_choice".to_owned(), choice);
    }
    Ok(Value::Object(body))
}

fn encode_part(part: &Part) -> Value {
    match part {
        Part::Text(text) => json!({"type": "text", "text": text}),
        Part::Image(Image::Url(url)) => {
            json!({"type": "image", "source": {"type": "url", "url": url}})
        }
        Part::Image(Image::Base64 { media_type, data }) => json!({"type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data}}),
        Part::ToolCall(call) => json!({"type": "tool_use", "id": call.id, "name": call.name,
            "input": arguments_object(&call.arguments)}),
        Part::ToolResult(result) => json!({"type": "tool_result",
            "tool_use_id": result.call_id, "content": result.content,
            "is_error": result.is_error}),
    }
}

pub fn finish_from(reason: &str) -> Finish {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => Finish::Length,
        "tool_use" => Finish::ToolCalls,
        "refusal" => Finish::ContentFilter,
        _ => Finish::Stop,
    }
}

fn finish_name(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop => "end_turn",
        Finish::Length => "max_tokens",
        Finish::ToolCalls => "tool_use",
        Finish::ContentFilter => "refusal",
    }
}

pub fn decode_answer(answer: &Value) -> Answer {
    let parts = answer["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| block_part(block, "").ok())
        .filter(|part| !matches!(part, Part::Text(text) if text.is_empty()))
        .collect();
    let mut reported = Reported::default();
    reported.observe(Protocol::Anthropic, answer);
    Answer {
        id: answer["id"].as_str().unwrap_or_default().to_owned(),
        model: answer["model"].as_str().unwrap_or_default().to_owned(),
        parts,
        finish: answer["stop_reason"]
            .as_str()
            .map_or(Finish::Stop, finish_from),
        usage: reported.tokens,
    }
}

/// Anthropic's `input_tokens` leaves out cache reads.
fn usage(tokens: Tokens) -> Value {
    json!({"input_tokens": tokens.prompt.saturating_sub(tokens.cached), "output_tokens": tokens.completion,
        "cache_read_input_tokens": tokens.cached, "cache_creation_input_tokens": 0})
}

fn message_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", uuid::Uuid::now_v7().simple())
    }
}

pub fn encode_answer(answer: &Answer, model: &str) -> Value {
    let content: Vec<Value> = answer.parts.iter().map(encode_part).collect();
    json!({"id": message_id(&answer.id), "type": "message", "role": "assistant",
        "model": model, "content": content, "stop_reason": finish_name(answer.finish),
        "stop_sequence": null, "usage": usage(answer.usage.unwrap_or_default())})
}

/// Reads Anthropic's stream events as canonical events; tool calls are
/// numbered in the order their blocks start.
#[derive(Default)]
pub struct Decoder {
    tools: HashMap<u64, usize>,
}

impl Decoder {
    pub fn events(&mut self, event: &Value) -> Vec<Event> {
        let block = event["index"].as_u64().unwrap_or(0);
        match event["type"].as_str().unwrap_or_default() {
            "content_block_start" => {
                let started = &event["content_block"];
                match started["type"].as_str() {
                    Some("tool_use") => {
                        let index = self.tools.len();
                        self.tools.insert(block, index);
                        vec![Event::ToolCallStart {
                            index,
                            id: started["id"].as_str().unwrap_or_default().to_owned(),
                            name: started["name"].as_str().unwrap_or_default().to_owned(),
                        }]
                    }
                    _ => text_event(&started["text"]),
                }
            }
            "content_block_delta" => {
                let delta = &event["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => text_event(&delta["text"]),
                    Some("input_json_delta") => {
                        let partial = delta["partial_json"].as_str().unwrap_or_default();
                        match self.tools.get(&block) {
                            Some(index) if !partial.is_empty() => vec![Event::ToolCallArguments {
                                index: *index,
                                delta: partial.to_owned(),
                            }],
                            _ => Vec::new(),
                        }
                    }
                    _ => Vec::new(),
                }
            }
            "message_delta" => event["delta"]["stop_reason"]
                .as_str()
                .map(|reason| vec![Event::Finish(finish_from(reason))])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn text_event(text: &Value) -> Vec<Event> {
    match text.as_str() {
        Some(text) if !text.is_empty() => vec![Event::Text(text.to_owned())],
        _ => Vec::new(),
    }
}

/// What the open content block holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    Tool(usize),
}

/// Writes canonical events as Anthropic's stream: `message_start`, one
/// content block per text run or tool call, then `message_delta` with the
/// stop reason and usage, and `message_stop`.
pub struct Encoder {
    model: String,
    started: bool,
    open: Option<(u64, Block)>,
    next_block: u64,
    finish: Option<Finish>,
}

impl Encoder {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            started: false,
            open: None,
            next_block: 0,
            finish: None,
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = json!({"type": "message_start", "message": {"id": message_id(""),
            "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}}});
        sse_data(Some("message_start"), &message, out);
    }

    /// Opens a block of this kind unless it is the open one.
    fn open(&mut self, block: Block, start: Value, out: &mut Vec<u8>) -> u64 {
        if let Some((index, open)) = self.open
            && open == block
        {
            return index;
        }
        self.close(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, block));
        let event = json!({"type": "content_block_start", "index": index, "content_block": start});
        sse_data(Some("content_block_start"), &event, out);
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            let event = json!({"type": "content_block_stop", "index": index});
            sse_data(Some("content_block_stop"), &event, out);
        }
    }

    fn delta(index: u64, delta: Value, out: &mut Vec<u8>) {
        let event = json!({"type": "content_block_delta", "index": index, "delta": delta});
        sse_data(Some("content_block_delta"), &event, out);
    }

    pub fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        self.start(out);
        match event {
            Event::Text(text) => {
                let index = self.open(Block::Text, json!({"type": "text", "text": ""}), out);
                Self::delta(index, json!({"type": "text_delta", "text": text}), out);
            }
            Event::ToolCallStart { index, id, name } => {
                let start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                self.open(Block::Tool(*index), start, out);
            }
            Event::ToolCallArguments { index, delta } => {
                if let Some((block, Block::Tool(open))) = self.open
                    && open == *index
                {
                    let delta = json!({"type": "input_json_delta", "partial_json": delta});
                    Self::delta(block, delta, out);
                }
            }
            Event::Finish(finish) => self.finish = Some(*finish),
        }
    }

    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let finish = self.finish.unwrap_or_default();
        let delta = json!({"type": "message_delta",
            "delta": {"stop_reason": finish_name(finish), "stop_sequence": null},
            "usage": usage(tokens.unwrap_or_default())});
        sse_data(Some("message_delta"), &delta, out);
        sse_data(Some("message_stop"), &json!({"type": "message_stop"}), out);
    }
}
