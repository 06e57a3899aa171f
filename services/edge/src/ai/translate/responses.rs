//! OpenAI's Responses API as a client protocol: its requests decoded into
//! the canonical chat (for channels of other providers and OpenAI-
//! compatible servers), and canonical answers and stream events encoded
//! as Responses objects and `response.*` events. OpenAI channels take
//! Responses requests natively, so nothing is ever translated into it.

use serde_json::{Map, Value, json};

use super::{Fields, now_secs, sse_data, text_of};
use crate::ai::canonical::{
    Answer, Chat, Event, Finish, Image, Part, ResponseFormat, Role, Tool, ToolCall, ToolChoice,
    ToolResult, Unsupported, arguments_text,
};
use crate::ai::usage::Tokens;

const IGNORED: &[&str] = &[
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "safety_identifier",
    "prompt_cache_key",
    "truncation",
];

pub fn decode_request(body: &Map<String, Value>, target: &str) -> Result<Chat, Unsupported> {
    let fields = Fields::new(body, target, IGNORED);
    let mut chat = Chat {
        model: fields.string("model"),
        stream: fields.bool("stream"),
        max_tokens: fields.int("max_output_tokens"),
        temperature: fields.float("temperature"),
        top_p: fields.float("top_p"),
        ..Chat::default()
    };
    let instructions = fields.string("instructions");
    if !instructions.is_empty() {
        chat.system.push(instructions);
    }
    chat.response_format = text_format(body.get("text"), target)?;
    chat.tools = tools(body.get("tools"), target)?;
    chat.tool_choice = body.get("tool_choice").and_then(tool_choice);
    match body.get("input") {
        Some(Value::String(text)) => chat.push(Role::User, Part::Text(text.clone())),
        Some(Value::Array(items)) => {
            for item in items {
                decode_item(&mut chat, item, target)?;
            }
        }
        _ => return Err(Unsupported::new(target, "a request without input")),
    }
    fields.refuse_others(&[
        "model",
        "stream",
        "max_output_tokens",
        "temperature",
        "top_p",
        "instructions",
        "text",
        "tools",
        "tool_choice",
        "input",
    ])?;
    Ok(chat)
}

fn decode_item(chat: &mut Chat, item: &Value, target: &str) -> Result<(), Unsupported> {
    let string = |name: &str| item[name].as_str().unwrap_or_default().to_owned();
    match item["type"].as_str().unwrap_or("message") {
        "message" => {
            let role = item["role"].as_str().unwrap_or("user");
            if matches!(role, "system" | "developer") {
                chat.system.push(text_of(item.get("content")));
                return Ok(());
            }
            let role = if role == "assistant" {
                Role::Assistant
            } else {
                Role::User
            };
            for part in content_parts(item.get("content"), target)? {
                chat.push(role, part);
            }
        }
        "function_call" => {
            let call = ToolCall {
                id: string("call_id"),
                name: string("name"),
                arguments: arguments_text(item.get("arguments")),
            };
            chat.push(Role::Assistant, Part::ToolCall(call));
        }
        "function_call_output" => {
            let call_id = string("call_id");
            let name = chat.tool_name(&call_id).unwrap_or_default().to_owned();
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                other => text_of(other),
            };
            let result = ToolResult {
                call_id,
                name,
                content: output,
                is_error: false,
            };
            chat.push(Role::User, Part::ToolResult(result));
        }
        other => return Err(Unsupported::new(target, &format!("a '{other}' input item"))),
    }
    Ok(())
}

fn content_parts(content: Option<&Value>, target: &str) -> Result<Vec<Part>, Unsupported> {
    let Some(Value::Array(parts)) = content else {
        return Ok(vec![Part::Text(text_of(content))]);
    };
    parts
        .iter()
        .map(|part| match part["type"].as_str().unwrap_or_default() {
            "input_text" | "output_text" | "text" => Ok(Part::Text(
                part["text"].as_str().unwrap_or_default().to_owned(),
            )),
            "input_image" => {
                let url = part["image_url"].as_str().unwrap_or_default();
                Ok(Part::Image(Image::from_url(url)))
            }
            other => Err(Unsupported::new(
                target,
                &format!("a '{other}' content part"),
            )),
        })
        .collect()
}

fn text_format(text: Option<&Value>, target: &str) -> Result<Option<ResponseFormat>, Unsupported> {
    let Some(format) = text.and_then(|text| text.get("format")) else {
        return Ok(None);
    };
    match format["type"].as_str() {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ResponseFormat::Json)),
        Some("json_schema") => Ok(Some(ResponseFormat::JsonSchema {
            name: format["name"].as_str().unwrap_or("response").to_owned(),
            schema: format.get("schema").cloned().unwrap_or(Value::Null),
        })),
        Some(_) => Err(Unsupported::new(target, "this text.format")),
    }
}

fn tools(value: Option<&Value>, target: &str) -> Result<Vec<Tool>, Unsupported> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|tool| {
            if tool["type"] != "function" {
                return Err(Unsupported::new(target, "a built-in tool"));
            }
            Ok(super::declared_tool(tool, &["parameters"]))
        })
        .collect()
}

fn tool_choice(choice: &Value) -> Option<ToolChoice> {
    match choice {
        Value::String(mode) => Some(match mode.as_str() {
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => ToolChoice::Auto,
        }),
        choice => choice["name"]
            .as_str()
            .map(|name| ToolChoice::Named(name.to_owned())),
    }
}

fn usage(tokens: Tokens) -> Value {
    json!({"input_tokens": tokens.prompt, "output_tokens": tokens.completion,
        "total_tokens": tokens.prompt.saturating_add(tokens.completion),
        "input_tokens_details": {"cached_tokens": tokens.cached},
        "output_tokens_details": {"reasoning_tokens": 0}})
}

fn id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// A response object around `output`.
fn response(id: &str, model: &str, output: Vec<Value>, end: Option<(Finish, Tokens)>) -> Value {
    let (status, incomplete, usage) = match end {
        Some((Finish::Length, tokens)) => (
            "incomplete",
            json!({"reason": "max_output_tokens"}),
            usage(tokens),
        ),
        Some((_, tokens)) => ("completed", Value::Null, usage(tokens)),
        None => ("in_progress", Value::Null, Value::Null),
    };
    json!({"id": id, "object": "response", "created_at": now_secs(), "status": status,
        "model": model, "output": output, "incomplete_details": incomplete, "error": null,
        "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
}

fn message_item(id: &str, text: &str, done: bool) -> Value {
    let content = if done {
        json!([{"type": "output_text", "text": text, "annotations": []}])
    } else {
        json!([])
    };
    json!({"type": "message", "id": id, "role": "assistant", "content": content,
        "status": if done { "completed" } else { "in_progress" }})
}

fn call_item(id: &str, call: &ToolCall, done: bool) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call.id, "name": call.name,
        "arguments": if done { call.arguments.as_str() } else { "" },
        "status": if done { "completed" } else { "in_progress" }})
}

/// A whole response as a canonical answer (for completeness: OpenAI
/// channels answer Responses clients natively).
pub fn decode_answer(answer: &Value) -> Answer {
    let mut parts = Vec::new();
    for item in answer["output"].as_array().into_iter().flatten() {
        match item["type"].as_str() {
            Some("message") => {
                let text = crate::ai::responses::answer_text(&json!({"output": [item]}));
                if !text.is_empty() {
                    parts.push(Part::Text(text));
                }
            }
            Some("function_call") => parts.push(Part::ToolCall(ToolCall {
                id: item["call_id"].as_str().unwrap_or_default().to_owned(),
                name: item["name"].as_str().unwrap_or_default().to_owned(),
                arguments: arguments_text(item.get("arguments")),
            })),
            _ => {}
        }
    }
    let called = parts.iter().any(|part| matches!(part, Part::ToolCall(_)));
    let finish = match answer["status"].as_str() {
        Some("incomplete") => Finish::Length,
        _ if called => Finish::ToolCalls,
        _ => Finish::Stop,
    };
    let mut reported = crate::ai::usage::Reported::default();
    reported.observe(crate::ai::usage::Protocol::Responses, answer);
    Answer {
        id: answer["id"].as_str().unwrap_or_default().to_owned(),
        model: answer["model"].as_str().unwrap_or_default().to_owned(),
        parts,
        finish,
        usage: reported.tokens,
    }
}

pub fn encode_answer(answer: &Answer, model: &str) -> Value {
    let mut output = Vec::new();
    let text = answer.text();
    if !text.is_empty() {
        output.push(message_item(&id("msg"), &text, true));
    }
    for part in &answer.parts {
        if let Part::ToolCall(call) = part {
            output.push(call_item(&id("fc"), call, true));
        }
    }
    let end = (answer.finish, answer.usage.unwrap_or_default());
    response(&id("resp"), model, output, Some(end))
}

/// What the stream has opened: one output item at a time.
enum Item {
    Message { id: String, text: String },
    Call { id: String, call: ToolCall },
}

/// Writes canonical events as the Responses stream: `response.created`,
/// then per output item `output_item.added`, its deltas and
/// `output_item.done`, and `response.completed` (or `.incomplete`) with
/// the usage.
pub struct Encoder {
    id: String,
    model: String,
    sequence: u64,
    started: bool,
    open: Option<(usize, Item)>,
    done: Vec<Value>,
    finish: Option<Finish>,
}

impl Encoder {
    pub fn new(model: &str) -> Self {
        Self {
            id: id("resp"),
            model: model.to_owned(),
            sequence: 0,
            started: false,
            open: None,
            done: Vec::new(),
            finish: None,
        }
    }

    fn emit(&mut self, kind: &str, mut data: Value, out: &mut Vec<u8>) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        sse_data(Some(kind), &data, out);
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let created = response(&self.id, &self.model, Vec::new(), None);
        self.emit("response.created", json!({"response": created}), out);
        let progress = response(&self.id, &self.model, Vec::new(), None);
        self.emit("response.in_progress", json!({"response": progress}), out);
    }

    /// Closes the open item, if any.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some((index, item)) = self.open.take() else {
            return;
        };
        let done = match &item {
            Item::Message { id, text } => {
                let part = json!({"type": "output_text", "text": text, "annotations": []});
                let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                let mut text_done = base.clone();
                text_done["text"] = json!(text);
                self.emit("response.output_text.done", text_done, out);
                let mut part_done = base;
                part_done["part"] = part;
                self.emit("response.content_part.done", part_done, out);
                message_item(id, text, true)
            }
            Item::Call { id, call } => {
                let arguments = json!({"item_id": id, "output_index": index,
                    "arguments": call.arguments});
                self.emit("response.function_call_arguments.done", arguments, out);
                call_item(id, call, true)
            }
        };
        let item_done = json!({"output_index": index, "item": done});
        self.emit("response.output_item.done", item_done, out);
        self.done.push(done);
    }

    /// Opens a new output item.
    fn open(&mut self, item: Item, out: &mut Vec<u8>) {
        self.close(out);
        let index = self.done.len();
        let added = match &item {
            Item::Message { id, .. } => message_item(id, "", false),
            Item::Call { id, call } => call_item(id, call, false),
        };
        self.emit(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
            out,
        );
        if let Item::Message { id, .. } = &item {
            let part = json!({"item_id": id, "output_index": index, "content_index": 0,
                "part": {"type": "output_text", "text": "", "annotations": []}});
            self.emit("response.content_part.added", part, out);
        }
        self.open = Some((index, item));
    }

    pub fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        self.start(out);
        match event {
            Event::Text(delta) => {
                if !matches!(self.open, Some((_, Item::Message { .. }))) {
                    let message = Item::Message {
                        id: id("msg"),
                        text: String::new(),
                    };
                    self.open(message, out);
                }
                if let Some((index, Item::Message { id, text })) = self.open.as_mut() {
                    text.push_str(delta);
                    let data = json!({"item_id": id, "output_index": index,
                        "content_index": 0, "delta": delta});
                    self.emit("response.output_text.delta", data, out);
                }
            }
            Event::ToolCallStart {
                id: call_id, name, ..
            } => {
                let call = ToolCall {
                    id: call_id.clone(),
                    name: name.clone(),
                    arguments: String::new(),
                };
                self.open(Item::Call { id: id("fc"), call }, out);
            }
            Event::ToolCallArguments { delta, .. } => {
                if let Some((index, Item::Call { id, call })) = self.open.as_mut() {
                    call.arguments.push_str(delta);
                    let data = json!({"item_id": id, "output_index": index, "delta": delta});
                    self.emit("response.function_call_arguments.delta", data, out);
                }
            }
            Event::Finish(finish) => self.finish = Some(*finish),
        }
    }

    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        self.start(out);
        self.close(out);
        let finish = self.finish.unwrap_or_default();
        let end = Some((finish, tokens.unwrap_or_default()));
        let done = response(&self.id, &self.model, std::mem::take(&mut self.done), end);
        let kind = if finish == Finish::Length {
            "response.incomplete"
        } else {
            "response.completed"
        };
        self.emit(kind, json!({"response": done}), out);
    }
}
