//! A generation request in its own protocol, behind one interface for the
//! AI path's stages: what it asks for (model, stream, max tokens, prompt
//! size), the body and headers for a channel of the same provider, and
//! where the delivered text is in its answers and stream events.

use bytes::Bytes;
use gateway_proto::catalog::v1 as pb;
use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::canonical::Unsupported;
use super::usage::Protocol;
use super::{anthropic, embeddings, gemini, openai, responses, translate};

/// The body of a request that has none to translate.
static EMPTY: std::sync::LazyLock<serde_json::Map<String, serde_json::Value>> =
    std::sync::LazyLock::new(serde_json::Map::new);

/// The `anthropic-version` sent when the client names none.
const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Debug)]
pub enum Generation {
    OpenAi(openai::Chat),
    Anthropic(anthropic::Messages),
    Gemini(gemini::Generate),
    /// Embeddings, OpenAI's or Gemini's.
    Embed(embeddings::Embed),
    /// OpenAI's Responses API.
    Responses(responses::Request),
}

/// The channel an attempt goes to: the protocol it speaks, its provider
/// and its name for the model.
pub struct Target<'a> {
    pub protocol: Protocol,
    pub provider: pb::Provider,
    pub model: &'a str,
}

impl Generation {
    pub fn parse(protocol: Protocol, bytes: &[u8]) -> Result<Self, String> {
        match protocol {
            Protocol::OpenAi => openai::parse(bytes).map(Self::OpenAi),
            Protocol::Anthropic => anthropic::parse(bytes).map(Self::Anthropic),
            Protocol::Gemini => Err("a Gemini request names its model in the path".to_owned()),
            Protocol::Responses => responses::parse(bytes).map(Self::Responses),
        }
    }

    /// A Gemini request: its model and streaming are in the path.
    pub fn parse_gemini(bytes: &[u8], model: &str, stream: bool) -> Result<Self, String> {
        gemini::parse(bytes, model, stream).map(Self::Gemini)
    }

    pub fn protocol(&self) -> Protocol {
        match self {
            Self::OpenAi(_) => Protocol::OpenAi,
            Self::Anthropic(_) => Protocol::Anthropic,
            Self::Gemini(_) => Protocol::Gemini,
            Self::Embed(embed) => embed.protocol,
            Self::Responses(_) => Protocol::Responses,
        }
    }

    pub fn model(&self) -> &str {
        match self {
            Self::OpenAi(chat) => &chat.model,
            Self::Anthropic(messages) => &messages.model,
            Self::Gemini(generate) => &generate.model,
            Self::Embed(embed) => &embed.model,
            Self::Responses(request) => &request.model,
        }
    }

    pub fn stream(&self) -> bool {
        match self {
            Self::OpenAi(chat) => chat.stream,
            Self::Anthropic(messages) => messages.stream,
            Self::Gemini(generate) => generate.stream,
            Self::Embed(_) => false,
            Self::Responses(request) => request.stream,
        }
    }

    /// The max tokens the client asked for, if any; an embedding produces
    /// none.
    pub fn max_tokens(&self) -> Option<i64> {
        match self {
            Self::OpenAi(chat) => chat.max_tokens,
            Self::Anthropic(messages) => Some(messages.max_tokens),
            Self::Gemini(generate) => generate.max_tokens,
            Self::Embed(_) => Some(0),
            Self::Responses(request) => request.max_tokens,
        }
    }

    pub fn prompt_tokens(&self) -> i64 {
        match self {
            Self::OpenAi(chat) => chat.prompt_tokens(),
            Self::Anthropic(messages) => messages.prompt_tokens(),
            Self::Gemini(generate) => generate.prompt_tokens(),
            Self::Embed(embed) => embed.prompt_tokens(),
            Self::Responses(request) => request.prompt_tokens(),
        }
    }

    /// Streams of chat answers are watched by the budget guard (a legacy
    /// completion's stream has no finish event the guard could write).
    pub fn guards_streams(&self) -> bool {
        match self {
            Self::OpenAi(chat) => !chat.legacy,
            Self::Anthropic(_) | Self::Gemini(_) | Self::Responses(_) => true,
            Self::Embed(_) => false,
        }
    }

    /// An embedding's shape, to re-encode a provider's answer for it.
    pub fn embedding_shape(&self) -> Option<embeddings::Shape> {
        match self {
            Self::Embed(embed) => Some(embed.shape()),
            _ => None,
        }
    }

    /// The protocol a channel of `provider` is sent this request in: the
    /// client's own where the provider speaks it (OpenAI channels take
    /// Responses requests natively), else the provider's.
    pub fn protocol_on(&self, provider: pb::Provider) -> Protocol {
        match self {
            Self::Responses(_) if provider == pb::Provider::Openai => Protocol::Responses,
            _ => protocol_of(provider),
        }
    }

    /// The providers whose channels can serve it: any for a chat (through
    /// translation), those with embeddings for an embedding.
    pub fn providers(&self) -> &'static [pb::Provider] {
        match self {
            Self::Embed(_) => EMBEDDING_PROVIDERS,
            Self::OpenAi(chat) if chat.legacy => COMPLETION_PROVIDERS,
            _ => PROVIDERS,
        }
    }

    /// OpenAI's usage chunk is asked for on every stream; a client that
    /// did not ask does not see it.
    pub fn hides_usage_chunk(&self) -> bool {
        matches!(self, Self::OpenAi(chat) if !chat.wants_usage)
    }

    /// The body for a channel of the client's protocol: the client's,
    /// with the channel's model name and a max tokens the budget pays for.
    pub fn upstream_body(&self, upstream_model: &str, max_tokens: Option<i64>) -> Bytes {
        match self {
            Self::OpenAi(chat) => chat.upstream_body(upstream_model, max_tokens),
            Self::Anthropic(messages) => messages.upstream_body(upstream_model, max_tokens),
            Self::Gemini(generate) => generate.upstream_body(max_tokens),
            Self::Embed(embed) => embed
                .upstream_body(embed.protocol, upstream_model)
                .unwrap_or_default(),
            Self::Responses(request) => request.upstream_body(upstream_model, max_tokens),
        }
    }

    /// The body for `target`: [`Self::upstream_body`] for a channel of the
    /// client's protocol, else translated (a chat through the canonical
    /// model). `default_max` fills the max tokens Anthropic requires.
    pub fn body_for(
        &self,
        target: &Target<'_>,
        max_tokens: Option<i64>,
        default_max: i64,
    ) -> Result<Bytes, Unsupported> {
        if let Self::Embed(embed) = self {
            return embed.upstream_body(target.protocol, target.model);
        }
        if target.protocol == self.protocol() {
            return Ok(self.upstream_body(target.model, max_tokens));
        }
        if matches!(self, Self::OpenAi(chat) if chat.legacy) {
            let label = provider_label(target.provider);
            return Err(Unsupported::new(label, "a legacy completions request"));
        }
        let label = provider_label(target.provider);
        let mut chat = translate::decode_request(self.protocol(), self.body(), label)?;
        chat.stream = self.stream();
        chat.max_tokens = max_tokens.or(self.max_tokens());
        if target.protocol == Protocol::Anthropic {
            // Anthropic requires it; the estimate reserved this many.
            chat.max_tokens = chat.max_tokens.or(Some(default_max));
        }
        let max_field = if target.provider == pb::Provider::Openai {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        let body = translate::encode_request(target.protocol, &chat, target.model, max_field)?;
        Ok(Bytes::from(body.to_string()))
    }

    /// The request in the canonical model, for the completion cache: a
    /// chat (not an embedding or a legacy completion) that the canonical
    /// model says whole.
    pub fn canonical(&self) -> Option<super::canonical::Chat> {
        match self {
            Self::Embed(_) => return None,
            Self::OpenAi(chat) if chat.legacy => return None,
            _ => {}
        }
        let decoded = translate::decode_request(self.protocol(), self.body(), "a cached");
        let mut chat = decoded.ok()?;
        chat.model = self.model().to_owned();
        chat.max_tokens = self.max_tokens();
        Some(chat)
    }

    /// The client's request body, for translation to another protocol.
    fn body(&self) -> &serde_json::Map<String, serde_json::Value> {
        match self {
            Self::OpenAi(chat) => chat.body(),
            Self::Anthropic(messages) => messages.body(),
            Self::Gemini(generate) => generate.body(),
            Self::Responses(request) => request.body(),
            Self::Embed(_) => &EMPTY,
        }
    }

    /// Where on a channel speaking `protocol` the request goes.
    pub fn uri_for(
        &self,
        protocol: Protocol,
        base: &str,
        upstream_model: &str,
    ) -> Result<http::Uri, http::Error> {
        match self {
            Self::Embed(embed) => {
                let trimmed = base.trim_end_matches('/');
                let path = embed.upstream_path(protocol, upstream_model);
                let path = match protocol {
                    Protocol::Gemini => path,
                    _ => versioned(trimmed, &path),
                };
                crate::forward::upstream_uri(trimmed, &path, None)
            }
            Self::OpenAi(chat) if chat.legacy => {
                let trimmed = base.trim_end_matches('/');
                crate::forward::upstream_uri(trimmed, &versioned(trimmed, "/completions"), None)
            }
            _ => upstream_uri(protocol, base, upstream_model, self.stream()),
        }
    }

    /// Where on the channel the request goes.
    pub fn upstream_uri(&self, base: &str, upstream_model: &str) -> Result<http::Uri, http::Error> {
        self.uri_for(self.protocol(), base, upstream_model)
    }

    pub fn upstream_headers(&self, secret: &str, client: &HeaderMap, upstream: &mut HeaderMap) {
        upstream_headers(self.protocol(), secret, client, upstream);
    }
}

/// Every provider: each protocol reaches them all, translated when the
/// channel speaks another protocol.
pub const PROVIDERS: &[pb::Provider] = &[
    pb::Provider::Openai,
    pb::Provider::OpenaiCompatible,
    pb::Provider::Anthropic,
    pb::Provider::Gemini,
];

/// The providers with the legacy completions API.
const COMPLETION_PROVIDERS: &[pb::Provider] =
    &[pb::Provider::Openai, pb::Provider::OpenaiCompatible];

/// The providers with an embeddings API.
const EMBEDDING_PROVIDERS: &[pb::Provider] = &[
    pb::Provider::Openai,
    pb::Provider::OpenaiCompatible,
    pb::Provider::Gemini,
];

/// The protocol a channel of this provider speaks.
pub fn protocol_of(provider: pb::Provider) -> Protocol {
    match provider {
        pb::Provider::Anthropic => Protocol::Anthropic,
        pb::Provider::Gemini => Protocol::Gemini,
        _ => Protocol::OpenAi,
    }
}

/// Where on a channel speaking `protocol` a request goes. OpenAI and
/// Anthropic paths get one `/v1` (a base that already ends in `/v1`, as
/// OpenAI-compatible servers are often configured, keeps it); Gemini's
/// carry their model and stream with `alt=sse`.
pub fn upstream_uri(
    protocol: Protocol,
    base: &str,
    upstream_model: &str,
    stream: bool,
) -> Result<http::Uri, http::Error> {
    let trimmed = base.trim_end_matches('/');
    match protocol {
        Protocol::OpenAi => {
            crate::forward::upstream_uri(trimmed, &versioned(trimmed, "/chat/completions"), None)
        }
        Protocol::Anthropic => {
            crate::forward::upstream_uri(trimmed, &versioned(trimmed, "/messages"), None)
        }
        Protocol::Responses => {
            crate::forward::upstream_uri(trimmed, &versioned(trimmed, "/responses"), None)
        }
        Protocol::Gemini => crate::forward::upstream_uri(
            trimmed,
            &gemini::upstream_path(upstream_model, stream),
            stream.then_some("alt=sse"),
        ),
    }
}

/// `path` under `/v1`, unless the base already ends in it.
fn versioned(base: &str, path: &str) -> String {
    if base.ends_with("/v1") {
        path.to_owned()
    } else {
        format!("/v1{path}")
    }
}

/// The provider as a refusal names it.
pub fn provider_label(provider: pb::Provider) -> &'static str {
    match provider {
        pb::Provider::Openai => "OpenAI",
        pb::Provider::OpenaiCompatible => "OpenAI-compatible",
        pb::Provider::Anthropic => "Anthropic",
        pb::Provider::Gemini => "Gemini",
        pb::Provider::Unspecified => "unknown",
    }
}

/// The provider key in the provider's header, and the protocol headers
/// the client's request carries on (Anthropic's version and betas).
pub fn upstream_headers(
    protocol: Protocol,
    secret: &str,
    client: &HeaderMap,
    upstream: &mut HeaderMap,
) {
    let mut set = |name: HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            upstream.insert(name, value);
        }
    };
    match protocol {
        Protocol::OpenAi | Protocol::Responses => {
            set(header::AUTHORIZATION, &format!("Bearer {secret}"));
        }
        Protocol::Gemini => set(HeaderName::from_static("x-goog-api-key"), secret),
        Protocol::Anthropic => {
            set(HeaderName::from_static("x-api-key"), secret);
            let version = client
                .get("anthropic-version")
                .and_then(|value| value.to_str().ok())
                .unwrap_or(ANTHROPIC_VERSION);
            set(HeaderName::from_static("anthropic-version"), version);
            if let Some(beta) = client
                .get("anthropic-beta")
                .and_then(|value| value.to_str().ok())
            {
                set(HeaderName::from_static("anthropic-beta"), beta);
            }
        }
    }
}

/// The text a whole answer delivered, for an estimate without usage.
pub fn answer_text(protocol: Protocol, answer: &serde_json::Value) -> String {
    match protocol {
        Protocol::OpenAi => openai::answer_text(answer),
        Protocol::Anthropic => anthropic::answer_text(answer),
        Protocol::Gemini => gemini::answer_text(answer),
        Protocol::Responses => responses::answer_text(answer),
    }
}

/// Why the answer ended, when this answer or stream event says: OpenAI's
/// `finish_reason`, Anthropic's `stop_reason`, Gemini's `finishReason`.
pub fn finish_reason(protocol: Protocol, document: &serde_json::Value) -> Option<String> {
    let reason = match protocol {
        Protocol::OpenAi => document.get("choices")?.get(0)?.get("finish_reason"),
        Protocol::Anthropic => document
            .get("stop_reason")
            .or_else(|| document.get("delta")?.get("stop_reason")),
        Protocol::Gemini => document.get("candidates")?.get(0)?.get("finishReason"),
        // A response's status (a stream's, in its closing event).
        Protocol::Responses => document
            .get("response")
            .unwrap_or(document)
            .get("status")
            .filter(|status| status != &"in_progress"),
    }?;
    reason
        .as_str()
        .filter(|reason| !reason.is_empty())
        .map(str::to_owned)
}

/// The text one stream event delivered.
pub fn event_text(protocol: Protocol, event: &serde_json::Value) -> String {
    match protocol {
        Protocol::OpenAi => openai::chunk_text(event),
        Protocol::Anthropic => anthropic::event_text(event),
        Protocol::Gemini => gemini::answer_text(event),
        Protocol::Responses => responses::event_text(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finish_reasons_are_read_where_each_protocol_puts_them() {
        let read =
            |protocol, text: &str| finish_reason(protocol, &serde_json::from_str(text).unwrap());
        assert_eq!(
            read(
                Protocol::OpenAi,
                r#"{"choices": [{"finish_reason": "length"}]}"#
            )
            .as_deref(),
            Some("length")
        );
        assert_eq!(
            read(
                Protocol::OpenAi,
                r#"{"choices": [{"finish_reason": null}]}"#
            ),
            None
        );
        assert_eq!(
            read(
                Protocol::Anthropic,
                r#"{"type": "message_delta", "delta": {"stop_reason": "end_turn"}}"#
            )
            .as_deref(),
            Some("end_turn")
        );
        assert_eq!(
            read(
                Protocol::Gemini,
                r#"{"candidates": [{"finishReason": "STOP"}]}"#
            )
            .as_deref(),
            Some("STOP")
        );
    }

    #[test]
    fn channel_urls_get_their_protocols_paths() {
        let openai =
            Generation::parse(Protocol::OpenAi, br#"{"model": "g", "messages": [{}]}"#).unwrap();
        let uri = |base| openai.upstream_uri(base, "g").unwrap().to_string();
        assert_eq!(
            uri("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(
            uri("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1/chat/completions"
        );
        assert_eq!(
            uri("https://host/proxy"),
            "https://host/proxy/v1/chat/completions"
        );
        let gemini = Generation::parse_gemini(br#"{"contents": [{}]}"#, "gem", true).unwrap();
        assert_eq!(
            gemini
                .upstream_uri("https://g.example", "gem-2")
                .unwrap()
                .to_string(),
            "https://g.example/v1beta/models/gem-2:streamGenerateContent?alt=sse"
        );
        let mut upstream = HeaderMap::new();
        gemini.upstream_headers("g-key", &HeaderMap::new(), &mut upstream);
        assert_eq!(upstream["x-goog-api-key"], "g-key");
    }

    #[test]
    fn each_protocol_sends_the_key_in_its_own_header() {
        let anthropic = Generation::parse(
            Protocol::Anthropic,
            br#"{"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}"#,
        )
        .unwrap();
        let mut client = HeaderMap::new();
        client.insert("anthropic-beta", HeaderValue::from_static("tools-2024"));
        let mut upstream = HeaderMap::new();
        anthropic.upstream_headers("sk-ant", &client, &mut upstream);
        assert_eq!(upstream["x-api-key"], "sk-ant");
        assert_eq!(upstream["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(upstream["anthropic-beta"], "tools-2024");
        assert!(!upstream.contains_key("authorization"));
        let openai = Generation::parse(
            Protocol::OpenAi,
            br#"{"model": "g", "messages": [{"role": "user", "content": "x"}]}"#,
        )
        .unwrap();
        let mut upstream = HeaderMap::new();
        openai.upstream_headers("sk-oai", &client, &mut upstream);
        assert_eq!(upstream["authorization"], "Bearer sk-oai");
        assert!(openai.hides_usage_chunk());
        assert_eq!(anthropic.max_tokens(), Some(5));
    }
}
