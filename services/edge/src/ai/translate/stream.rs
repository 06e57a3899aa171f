//! A provider's stream re-encoded, event by event, in the client's
//! protocol: the provider's adapter decodes each event's JSON into
//! canonical events and the client's adapter writes them out. Nothing is
//! held back except what a protocol sends whole (Gemini's tool calls).

use serde_json::Value;

use super::{anthropic, gemini, openai, responses};
use crate::ai::canonical::{Answer, Event, Finish, Part, ToolCall};
use crate::ai::usage::{Protocol, Tokens};

enum Decoder {
    OpenAi(openai::Decoder),
    Anthropic(anthropic::Decoder),
    Gemini(gemini::Decoder),
    /// No provider streams the Responses API to a client of another
    /// protocol (OpenAI channels get it natively).
    Responses,
}

enum Encoder {
    OpenAi(openai::Encoder),
    Anthropic(anthropic::Encoder),
    Gemini(gemini::Encoder),
    Responses(responses::Encoder),
}

pub struct Translator {
    decoder: Decoder,
    encoder: Encoder,
}

impl Decoder {
    fn new(from: Protocol) -> Self {
        match from {
            Protocol::OpenAi => Self::OpenAi(openai::Decoder),
            Protocol::Anthropic => Self::Anthropic(anthropic::Decoder::default()),
            Protocol::Gemini => Self::Gemini(gemini::Decoder::default()),
            Protocol::Responses => Self::Responses,
        }
    }

    fn events(&mut self, document: &Value) -> Vec<Event> {
        match self {
            Self::OpenAi(decoder) => decoder.events(document),
            Self::Anthropic(decoder) => decoder.events(document),
            Self::Gemini(decoder) => decoder.events(document),
            Self::Responses => Vec::new(),
        }
    }
}

impl Encoder {
    fn new(to: Protocol, model: &str, wants_usage: bool) -> Self {
        match to {
            Protocol::OpenAi => Self::OpenAi(openai::Encoder::new(model, wants_usage)),
            Protocol::Anthropic => Self::Anthropic(anthropic::Encoder::new(model)),
            Protocol::Gemini => Self::Gemini(gemini::Encoder::new(model)),
            Protocol::Responses => Self::Responses(responses::Encoder::new(model)),
        }
    }

    fn event(&mut self, event: &Event, out: &mut Vec<u8>) {
        match self {
            Self::OpenAi(encoder) => encoder.event(event, out),
            Self::Anthropic(encoder) => encoder.event(event, out),
            Self::Gemini(encoder) => encoder.event(event, out),
            Self::Responses(encoder) => encoder.event(event, out),
        }
    }

    fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        match self {
            Self::OpenAi(encoder) => encoder.end(tokens, out),
            Self::Anthropic(encoder) => encoder.end(tokens, out),
            Self::Gemini(encoder) => encoder.end(tokens, out),
            Self::Responses(encoder) => encoder.end(tokens, out),
        }
    }
}

impl Translator {
    /// From the provider's protocol to the client's, under the channel's
    /// model name; OpenAI's usage chunk only when the client asked.
    pub fn new(from: Protocol, to: Protocol, model: &str, wants_usage: bool) -> Self {
        Self {
            decoder: Decoder::new(from),
            encoder: Encoder::new(to, model, wants_usage),
        }
    }

    /// One provider event's data as canonical events.
    pub fn decode(&mut self, document: &Value) -> Vec<Event> {
        self.decoder.events(document)
    }

    /// One provider event's data, re-encoded into `out`.
    pub fn event(&mut self, document: &Value, out: &mut Vec<u8>) {
        for event in &self.decode(document) {
            self.encoder.event(event, out);
        }
    }

    /// Ends the stream early (the budget ran out): finish reason `length`
    /// and the closing events, with the usage counted so far.
    pub fn cut(&mut self, tokens: Tokens, out: &mut Vec<u8>) {
        self.encoder.event(&Event::Finish(Finish::Length), out);
        self.end(Some(tokens), out);
    }

    /// The client protocol's closing events, with the usage the provider
    /// reported.
    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        self.encoder.end(tokens, out);
    }
}

/// A whole answer as a stream in the client's protocol: a cached answer
/// served to a streamed request.
pub fn replay(to: Protocol, model: &str, wants_usage: bool, answer: &Answer) -> Vec<u8> {
    let mut encoder = Encoder::new(to, model, wants_usage);
    let mut out = Vec::new();
    let mut calls = 0;
    for part in &answer.parts {
        match part {
            Part::Text(text) => encoder.event(&Event::Text(text.clone()), &mut out),
            Part::ToolCall(call) => {
                let start = Event::ToolCallStart {
                    index: calls,
                    id: call.id.clone(),
                    name: call.name.clone(),
                };
                encoder.event(&start, &mut out);
                let arguments = Event::ToolCallArguments {
                    index: calls,
                    delta: call.arguments.clone(),
                };
                encoder.event(&arguments, &mut out);
                calls += 1;
            }
            Part::Image(_) | Part::ToolResult(_) => {}
        }
    }
    encoder.event(&Event::Finish(answer.finish), &mut out);
    encoder.end(answer.usage, &mut out);
    out
}

/// A provider's stream gathered into a whole answer as it passes, for the
/// completion cache.
pub struct Collector {
    decoder: Decoder,
    answer: Answer,
    /// Where each tool call (by its stream index) is in the answer's parts.
    calls: Vec<(usize, usize)>,
    finished: bool,
}

impl Collector {
    /// `None` for a protocol whose streams the edge does not decode.
    pub fn new(from: Protocol) -> Option<Self> {
        (from != Protocol::Responses).then(|| Self {
            decoder: Decoder::new(from),
            answer: Answer::default(),
            calls: Vec::new(),
            finished: false,
        })
    }

    /// One provider event's data.
    pub fn take(&mut self, document: &Value) {
        for event in self.decoder.events(document) {
            self.add(event);
        }
    }

    fn add(&mut self, event: Event) {
        let parts = &mut self.answer.parts;
        match event {
            Event::Text(text) => match parts.last_mut() {
                Some(Part::Text(last)) => last.push_str(&text),
                _ => parts.push(Part::Text(text)),
            },
            Event::ToolCallStart { index, id, name } => {
                self.calls.push((index, parts.len()));
                parts.push(Part::ToolCall(ToolCall {
                    id,
                    name,
                    arguments: String::new(),
                }));
            }
            Event::ToolCallArguments { index, delta } => {
                let at = self.calls.iter().rev().find(|(call, _)| *call == index);
                if let Some(Part::ToolCall(call)) = at.and_then(|(_, at)| parts.get_mut(*at)) {
                    call.arguments.push_str(&delta);
                }
            }
            Event::Finish(finish) => {
                self.answer.finish = finish;
                self.finished = true;
            }
        }
    }

    /// The whole answer with its usage, if the stream said how it ended.
    pub fn answer(mut self, tokens: Option<Tokens>) -> Option<Answer> {
        self.answer.usage = tokens;
        self.finished.then_some(self.answer)
    }
}
