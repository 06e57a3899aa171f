//! The stream budget guard. Lowering max tokens keeps most answers inside
//! what was reserved; this catches the rest (a provider that overshoots,
//! the tokenizer's error): while a stream passes, its completion tokens
//! are counted, and when they pass what the reservation covers (with a
//! little slack for the tokenizer) the guard asks quota for another step. If quota refuses, the stream is ended
//! cleanly in the client's protocol (finish reason `length`, Anthropic's
//! `max_tokens`, Gemini's `MAX_TOKENS`), the provider is let go, and what
//! was delivered is billed.
//!
//! The steps are extra reservations on the same scopes and balance: they
//! only prove the money is there while the stream runs. The request's
//! Commit carries the real usage; the steps are released after it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use gateway_proto::quota::v1 as quota;
use gateway_proto::quota::v1::quota_service_client::QuotaServiceClient;
use serde_json::{Value, json};

use super::usage::{Protocol, Tokens};
use crate::grpc::Authed;

/// The smallest step a top-up asks for, in completion tokens.
const MIN_STEP: i64 = 64;
/// Tokens past the allowance before the guard acts: the tokenizer's count
/// is not the provider's, and an answer that ends at its max tokens must
/// not be cut for a count a few tokens high. A tenth, at least this many.
const MIN_SLACK: i64 = 16;

type Pending = Pin<Box<dyn Future<Output = Option<String>> + Send>>;

/// How to ask quota for one more step.
pub struct TopUp {
    pub quota: QuotaServiceClient<Authed>,
    /// The request's Check, repeated with each step's tokens and cost.
    pub check: quota::CheckRequest,
    /// Micro-USD of one completion token at the caller's price.
    pub micros_per_token: f64,
}

pub struct Guard {
    /// The prompt's tokens as estimated, for the closing usage.
    pub prompt: i64,
    /// Completion tokens the reservations cover.
    allowance: i64,
    counted: i64,
    step: i64,
    top_up: TopUp,
    pending: Option<Pending>,
    /// The steps granted, released when the stream is done.
    steps: Vec<String>,
    /// Quota refused a step: the stream was ended here.
    pub tripped: bool,
}

impl Guard {
    pub fn new(prompt: i64, allowance: i64, top_up: TopUp) -> Self {
        Self {
            prompt,
            allowance: allowance.max(1),
            counted: 0,
            step: (allowance / 2).max(MIN_STEP),
            top_up,
            pending: None,
            steps: Vec::new(),
            tripped: false,
        }
    }

    /// Counts the completion text an event delivered.
    pub fn count(&mut self, text: &str) {
        if !text.is_empty() {
            self.counted = self.counted.saturating_add(super::tokens::count(text));
        }
    }

    pub fn counted(&self) -> i64 {
        self.counted
    }

    /// Past what is reserved, beyond the slack (a drained stream stops
    /// reading here).
    pub fn over(&self) -> bool {
        let slack = (self.allowance / 10).max(MIN_SLACK);
        self.counted > self.allowance.saturating_add(slack)
    }

    /// Whether the stream may read on: at once while within the allowance,
    /// else once quota granted another step; `false` when it refused.
    pub fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            if self.tripped {
                return Poll::Ready(false);
            }
            if self.pending.is_none() {
                if !self.over() {
                    return Poll::Ready(true);
                }
                self.pending = Some(self.ask());
            }
            let Some(pending) = self.pending.as_mut() else {
                continue;
            };
            let granted = ready!(pending.as_mut().poll(cx));
            self.pending = None;
            match granted {
                Some(reservation) => {
                    self.steps.push(reservation);
                    self.allowance = self.allowance.saturating_add(self.step);
                }
                None => {
                    tracing::info!(
                        counted = self.counted,
                        allowance = self.allowance,
                        "stream budget exhausted; ending the stream"
                    );
                    metrics::counter!("edge_ai_stream_budget_cuts_total").increment(1);
                    self.tripped = true;
                }
            }
        }
    }

    fn ask(&self) -> Pending {
        let mut quota = self.top_up.quota.clone();
        let mut check = self.top_up.check.clone();
        check.estimated_tokens = self.step;
        // Rounded up: a step is never priced below what it may cost.
        let cost = (self.top_up.micros_per_token * self.step as f64).ceil();
        check.estimated_cost_micros = if cost.is_finite() {
            cost as i64
        } else {
            i64::MAX
        };
        Box::pin(async move {
            let deadline = std::time::Duration::from_millis(250);
            match tokio::time::timeout(deadline, quota.check(check)).await {
                Ok(Ok(answer)) if answer.get_ref().allowed => {
                    Some(answer.into_inner().reservation_id)
                }
                _ => None,
            }
        })
    }
}

impl Drop for Guard {
    /// The steps are released once the stream is done; the request's own
    /// Commit bills what was used.
    fn drop(&mut self) {
        if self.steps.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut quota = self.top_up.quota.clone();
        let check = &self.top_up.check;
        let releases: Vec<quota::CommitRequest> = self
            .steps
            .drain(..)
            .map(|reservation_id| quota::CommitRequest {
                reservation_id,
                outcome: quota::CommitOutcome::Failure.into(),
                tenant_id: check.tenant_id.clone(),
                scopes: check.scopes.clone(),
                balance_owner: check.balance_owner.clone(),
                ..quota::CommitRequest::default()
            })
            .collect();
        runtime.spawn(async move {
            for release in releases {
                if let Err(status) = quota.commit(release).await {
                    tracing::debug!(%status, "releasing a stream's top-up failed; it will lapse");
                }
            }
        });
    }
}

/// Where a passed-through stream stands, for ending it in its own
/// protocol: the model, and Anthropic's open content block.
#[derive(Debug, Default)]
pub struct Place {
    pub model: String,
    open_block: Option<u64>,
}

impl Place {
    /// Follows one event of the stream.
    pub fn follow(&mut self, protocol: Protocol, document: &Value) {
        if let Some(model) = document["model"]
            .as_str()
            .or_else(|| document["message"]["model"].as_str())
            .or_else(|| document["modelVersion"].as_str())
        {
            model.clone_into(&mut self.model);
        }
        if protocol != Protocol::Anthropic {
            return;
        }
        match document["type"].as_str() {
            Some("content_block_start") => self.open_block = document["index"].as_u64(),
            Some("content_block_stop") => self.open_block = None,
            _ => {}
        }
    }

    /// The events that end the stream for running out of budget, in
    /// `protocol`, with the usage counted so far.
    pub fn closing(&self, protocol: Protocol, tokens: Tokens, wants_usage: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let data = |event: Option<&str>, data: &Value, out: &mut Vec<u8>| {
            super::translate::sse_data(event, data, out);
        };
        match protocol {
            Protocol::OpenAi => {
                let chunk = json!({"id": "chatcmpl-budget", "object": "chat.completion.chunk",
                    "created": super::translate::now_secs(), "model": self.model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]});
                data(None, &chunk, &mut out);
                if wants_usage {
                    let usage = json!({"id": "chatcmpl-budget", "object": "chat.completion.chunk",
                        "created": super::translate::now_secs(), "model": self.model, "choices": [],
                        "usage": {"prompt_tokens": tokens.prompt, "completion_tokens": tokens.completion,
                            "total_tokens": tokens.prompt.saturating_add(tokens.completion)}});
                    data(None, &usage, &mut out);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            Protocol::Anthropic => {
                if let Some(index) = self.open_block {
                    let stop = json!({"type": "content_block_stop", "index": index});
                    data(Some("content_block_stop"), &stop, &mut out);
                }
                let delta = json!({"type": "message_delta",
                    "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                    "usage": {"output_tokens": tokens.completion}});
                data(Some("message_delta"), &delta, &mut out);
                data(
                    Some("message_stop"),
                    &json!({"type": "message_stop"}),
                    &mut out,
                );
            }
            Protocol::Responses => {
                let usage = json!({"input_tokens": tokens.prompt,
                    "output_tokens": tokens.completion,
                    "total_tokens": tokens.prompt.saturating_add(tokens.completion)});
                let response = json!({"object": "response", "status": "incomplete",
                    "model": self.model, "incomplete_details": {"reason": "max_output_tokens"},
                    "output": [], "usage": usage});
                let event = json!({"type": "response.incomplete", "response": response});
                data(Some("response.incomplete"), &event, &mut out);
            }
            Protocol::Gemini => {
                let chunk = json!({"candidates": [{"content": {"role": "model",
                    "parts": [{"text": ""}]}, "finishReason": "MAX_TOKENS", "index": 0}],
                    "usageMetadata": {"promptTokenCount": tokens.prompt,
                        "candidatesTokenCount": tokens.completion,
                        "totalTokenCount": tokens.prompt.saturating_add(tokens.completion)},
                    "modelVersion": self.model});
                data(None, &chunk, &mut out);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens {
            prompt: 12,
            completion: 40,
            cached: 0,
        }
    }

    fn events(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect()
    }

    #[test]
    fn each_protocol_is_ended_with_its_own_max_tokens_events() {
        let mut place = Place::default();
        place.follow(
            Protocol::OpenAi,
            &json!({"model": "gpt-x", "choices": [{"delta": {"content": "a"}}]}),
        );
        let openai = place.closing(Protocol::OpenAi, tokens(), true);
        let sent = events(&openai);
        assert_eq!(sent[0]["choices"][0]["finish_reason"], "length");
        assert_eq!(sent[0]["model"], "gpt-x");
        assert_eq!(sent[1]["usage"]["completion_tokens"], 40);
        assert!(openai.ends_with(b"data: [DONE]\n\n"));
        let unasked = place.closing(Protocol::OpenAi, tokens(), false);
        assert_eq!(events(&unasked).len(), 1, "no usage chunk unless asked");

        let mut place = Place::default();
        let start =
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "text"}});
        place.follow(Protocol::Anthropic, &start);
        let anthropic = place.closing(Protocol::Anthropic, tokens(), true);
        let sent = events(&anthropic);
        assert_eq!(sent[0], json!({"type": "content_block_stop", "index": 2}));
        assert_eq!(sent[1]["delta"]["stop_reason"], "max_tokens");
        assert_eq!(sent[2]["type"], "message_stop");
        place.follow(
            Protocol::Anthropic,
            &json!({"type": "content_block_stop", "index": 2}),
        );
        let closed = place.closing(Protocol::Anthropic, tokens(), true);
        assert_eq!(
            events(&closed)[0]["type"],
            "message_delta",
            "no block left open"
        );

        let gemini = Place::default().closing(Protocol::Gemini, tokens(), false);
        let sent = events(&gemini);
        assert_eq!(sent[0]["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(sent[0]["usageMetadata"]["candidatesTokenCount"], 40);
    }
}
