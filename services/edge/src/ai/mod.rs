//! The AI gateway: the OpenAI, Anthropic and Gemini endpoints served
//! from channels of the same provider, with the
//! pieces they are built from: channel selection with cooldowns, each
//! protocol's error bodies, keys from wherever SDKs put them, money (the
//! estimate and what a budget pays for), the tokenizer, the SSE parser,
//! streams passed through with their usage read, and the usage each
//! provider reports.

pub mod anthropic;
pub mod channels;
pub mod errors;
pub mod gemini;
pub mod keys;
pub mod money;
pub mod openai;
pub mod request;
pub mod serve;
pub mod sse;
pub mod stream;
pub mod tokens;
pub mod usage;

/// The AI path's state, shared by every request.
#[derive(Default)]
pub struct Ai {
    pub channels: channels::Channels,
}
