//! A provider's stream re-encoded, event by event, in the client's
//! protocol: the provider's adapter decodes each event's JSON into
//! canonical events and the client's adapter writes them out. Nothing is
//! held back except what a protocol sends whole (Gemini's tool calls).

use serde_json::Value;

use super::{anthropic, gemini, openai, responses};
use crate::ai::canonical::Event;
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

impl Translator {
    /// From the provider's protocol to the client's, under the channel's
    /// model name; OpenAI's usage chunk only when the client asked.
    pub fn new(from: Protocol, to: Protocol, model: &str, wants_usage: bool) -> Self {
        let decoder = match from {
            Protocol::OpenAi => Decoder::OpenAi(openai::Decoder),
            Protocol::Anthropic => Decoder::Anthropic(anthropic::Decoder::default()),
            Protocol::Gemini => Decoder::Gemini(gemini::Decoder::default()),
            Protocol::Responses => Decoder::Responses,
        };
        let encoder = match to {
            Protocol::OpenAi => Encoder::OpenAi(openai::Encoder::new(model, wants_usage)),
            Protocol::Anthropic => Encoder::Anthropic(anthropic::Encoder::new(model)),
            Protocol::Gemini => Encoder::Gemini(gemini::Encoder::new(model)),
            Protocol::Responses => Encoder::Responses(responses::Encoder::new(model)),
        };
        Self { decoder, encoder }
    }

    /// One provider event's data as canonical events.
    pub fn decode(&mut self, document: &Value) -> Vec<Event> {
        match &mut self.decoder {
            Decoder::OpenAi(decoder) => decoder.events(document),
            Decoder::Anthropic(decoder) => decoder.events(document),
            Decoder::Gemini(decoder) => decoder.events(document),
            Decoder::Responses => Vec::new(),
        }
    }

    /// One provider event's data, re-encoded into `out`.
    pub fn event(&mut self, document: &Value, out: &mut Vec<u8>) {
        for event in &self.decode(document) {
            match &mut self.encoder {
                Encoder::OpenAi(encoder) => encoder.event(event, out),
                Encoder::Anthropic(encoder) => encoder.event(event, out),
                Encoder::Gemini(encoder) => encoder.event(event, out),
                Encoder::Responses(encoder) => encoder.event(event, out),
            }
        }
    }

    /// Ends the stream early (the budget ran out): finish reason `length`
    /// and the closing events, with the usage counted so far.
    pub fn cut(&mut self, tokens: Tokens, out: &mut Vec<u8>) {
        let event = Event::Finish(crate::ai::canonical::Finish::Length);
        match &mut self.encoder {
            Encoder::OpenAi(encoder) => encoder.event(&event, out),
            Encoder::Anthropic(encoder) => encoder.event(&event, out),
            Encoder::Gemini(encoder) => encoder.event(&event, out),
            Encoder::Responses(encoder) => encoder.event(&event, out),
        }
        self.end(Some(tokens), out);
    }

    /// The client protocol's closing events, with the usage the provider
    /// reported.
    pub fn end(&mut self, tokens: Option<Tokens>, out: &mut Vec<u8>) {
        match &mut self.encoder {
            Encoder::OpenAi(encoder) => encoder.end(tokens, out),
            Encoder::Anthropic(encoder) => encoder.end(tokens, out),
            Encoder::Gemini(encoder) => encoder.end(tokens, out),
            Encoder::Responses(encoder) => encoder.end(tokens, out),
        }
    }
}
