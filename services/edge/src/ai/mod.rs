//! The AI gateway: the OpenAI, Anthropic and Gemini endpoints served from
//! channels of any provider (passed through to channels of the client's
//! protocol, translated through [`canonical`] to the others), with the
//! pieces they are built from: channel selection with cooldowns, each
//! protocol's error bodies, keys from wherever SDKs put them, money (the
//! estimate and what a budget pays for), the tokenizer, the SSE parser,
//! streams passed through with their usage read, and the usage each
//! provider reports.

pub mod anthropic;
mod billing;
pub mod budget;
pub mod cache;
mod cached;
pub mod canonical;
pub mod channels;
pub mod embeddings;
pub mod errors;
pub mod gemini;
pub mod guard;
pub mod keys;
pub mod money;
pub mod openai;
pub mod request;
pub mod responses;
pub mod serve;
pub mod sse;
pub mod stream;
pub mod tokens;
pub mod translate;
pub mod usage;

/// The AI path's state, shared by every request.
pub struct Ai {
    pub channels: channels::Channels,
    /// CORS on the AI endpoints, from the edge's configuration.
    pub cors: Option<crate::cors::Cors>,
    pub cache: std::sync::Arc<cache::CompletionCache>,
}

impl Ai {
    pub fn new(config: &crate::config::Config) -> Result<Self, String> {
        Ok(Self {
            channels: channels::Channels::default(),
            cors: crate::cors::Cors::for_ai(
                &config.ai_cors_allowed_origins,
                config.ai_cors_max_age_secs,
            ),
            cache: std::sync::Arc::new(cache::CompletionCache::new(config)?),
        })
    }
}
