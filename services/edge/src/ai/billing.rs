//! Billing an AI answer once it has ended: its tokens (reported, else
//! counted), their cost at the caller's price, the budget lease settled,
//! and one usage event with what the audit log keeps.

use bytes::Bytes;
use gateway_pricing::Usage;

use super::money::{self, Payer};
use super::request;
use super::stream::StreamEnd;
use super::usage::{Protocol, Reported, Tokens};
use crate::account::{AiOutcome, Ended, Exchange};
use crate::body::Seen;

/// What the audit log keeps of an exchange whose channel captures bodies.
pub(super) struct Audit {
    pub(super) cap: usize,
    pub(super) request_body: Bytes,
    pub(super) response_headers: Vec<gateway_proto::usage::v1::HttpHeader>,
    pub(super) response_content_type: String,
}

/// How the answer reached the client.
pub(super) struct Delivered {
    pub(super) bytes: u64,
    pub(super) complete: bool,
    /// The first bytes sent, when capturing, and whether more were sent.
    pub(super) captured: Option<(Vec<u8>, bool)>,
}

/// The first `cap` bytes of `bytes`, and whether it was longer.
pub(super) fn truncated(mut bytes: Vec<u8>, cap: usize) -> (Vec<u8>, bool) {
    let longer = bytes.len() > cap;
    bytes.truncate(cap);
    (bytes, longer)
}

/// What billing an answer needs once it has ended.
pub(super) struct Billing {
    pub(super) accounting: crate::account::Accounting,
    pub(super) prices: std::sync::Arc<gateway_catalog_client::CatalogView>,
    pub(super) payer_tenant: String,
    pub(super) payer_group: Option<String>,
    pub(super) outcome: AiOutcome,
    pub(super) prompt_estimate: i64,
    pub(super) protocol: Protocol,
    pub(super) attempts: u32,
    pub(super) bytes_in: u64,
    pub(super) audit: Option<Audit>,
    /// What the usage event's error says (the budget guard's cut).
    pub(super) note: Option<String>,
    /// Where a complete answer is stored, when the completion cache
    /// applies.
    pub(super) fill: Option<super::cache::Fill>,
    /// The share of the price charged: 100, or a cache hit's.
    pub(super) cost_percent: u32,
}

impl Billing {
    pub(super) fn settle_answer(mut self, exchange: Exchange, status: u16, seen: Seen) {
        let bytes = seen.captured.unwrap_or_default();
        let answer = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
        let mut reported = Reported::default();
        if let Some(answer) = &answer {
            reported.observe(self.protocol, answer);
        }
        let text = answer
            .as_ref()
            .map(|answer| request::answer_text(self.protocol, answer))
            .unwrap_or_default();
        let produced = (200..300).contains(&status);
        // Set before when the answer's usage is the edge's own count.
        self.outcome.estimated |= reported.tokens.is_none() && produced;
        self.outcome.finish_reason = answer
            .as_ref()
            .and_then(|answer| request::finish_reason(self.protocol, answer))
            .unwrap_or_default();
        let tokens = reported
            .tokens
            .or_else(|| produced.then(|| self.estimated(&text)));
        // An answer that parsed whole was delivered whole.
        if let (Some(fill), Some(answer)) = (self.fill.take(), &answer)
            && produced
        {
            let mut stored = super::translate::decode_answer(self.protocol, answer);
            stored.usage = tokens;
            fill.store(stored);
        }
        let captured = self
            .audit
            .as_ref()
            .map(|audit| truncated(bytes.clone(), audit.cap));
        let delivered = Delivered {
            bytes: seen.bytes,
            complete: seen.complete,
            captured,
        };
        self.settle(exchange, status, tokens, delivered);
    }

    pub(super) fn settle_stream(mut self, exchange: Exchange, status: u16, mut end: StreamEnd) {
        if end.budget_cut {
            self.note = Some("the stream was ended by the budget guard".to_owned());
        }
        // A cut stream's usage, if any came, is only partial.
        self.outcome.estimated = end.tokens.is_none() || !end.complete;
        self.outcome.time_to_first_token = end
            .first_event
            .map(|first| first.saturating_duration_since(exchange.started));
        self.outcome.finish_reason = if end.budget_cut {
            "length".to_owned()
        } else {
            end.finish_reason.clone().unwrap_or_default()
        };
        let counted = self.estimated(&end.text);
        let tokens = match end.tokens {
            // Cut short: what was delivered may be more than reported.
            Some(reported) if !end.complete => Tokens {
                completion: reported.completion.max(counted.completion),
                ..reported
            },
            Some(reported) => reported,
            None => counted,
        };
        if let (Some(fill), Some(mut answer)) = (self.fill.take(), end.answer.take())
            && end.complete
            && !end.budget_cut
            && (200..300).contains(&status)
        {
            answer.usage = Some(tokens);
            fill.store(answer);
        }
        let tokens = Some(tokens);
        let delivered = Delivered {
            bytes: end.bytes,
            complete: end.complete,
            captured: end.captured.map(|captured| (captured, end.truncated)),
        };
        self.settle(exchange, status, tokens, delivered);
    }

    /// Without reported usage: the prompt as estimated, the delivered text
    /// counted with the tokenizer.
    pub(super) fn estimated(&self, text: &str) -> Tokens {
        Tokens {
            prompt: self.prompt_estimate,
            completion: super::tokens::count(text),
            cached: 0,
        }
    }

    /// The outcome's tokens and their cost at the caller's price.
    fn price(&mut self, tokens: Tokens) {
        let usage = Usage {
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cached_tokens: tokens.cached,
        };
        let payer = Payer {
            tenant_id: &self.payer_tenant,
            group_id: self.payer_group.as_deref(),
        };
        self.outcome.prompt_tokens = tokens.prompt;
        self.outcome.completion_tokens = tokens.completion;
        self.outcome.cached_tokens = tokens.cached;
        let cost = money::quote(self.prices.prices(), payer, &self.outcome.model, &usage)
            .map_or(0, |quote| quote.cost_micros);
        self.outcome.cost_micros = cost.saturating_mul(i64::from(self.cost_percent)) / 100;
    }

    pub(super) fn settle(
        mut self,
        mut exchange: Exchange,
        status: u16,
        tokens: Option<Tokens>,
        delivered: Delivered,
    ) {
        if let Some(tokens) = tokens {
            self.price(tokens);
        }
        // Admitted from a budget lease: settled here, not by Commit.
        if let Some(ticket) = exchange.admitted.local.take() {
            let outcome = &self.outcome;
            let used = outcome
                .prompt_tokens
                .saturating_add(outcome.completion_tokens);
            ticket.settle(used, outcome.cost_micros);
        }
        let (response_headers, response_content_type, request_captured) = match self.audit {
            Some(audit) => {
                let request = truncated(audit.request_body.to_vec(), audit.cap);
                (
                    audit.response_headers,
                    audit.response_content_type,
                    Some(request),
                )
            }
            None => (Vec::new(), String::new(), None),
        };
        let (response_captured, response_truncated) = match delivered.captured {
            Some((captured, truncated)) => (Some(captured), truncated),
            None => (None, false),
        };
        let ended = Ended {
            status,
            request: Seen {
                bytes: self.bytes_in,
                truncated: request_captured.as_ref().is_some_and(|(_, longer)| *longer),
                captured: request_captured.map(|(captured, _)| captured),
                complete: true,
                failed: false,
            },
            response: Seen {
                bytes: delivered.bytes,
                captured: response_captured,
                truncated: response_truncated,
                complete: delivered.complete,
                failed: false,
            },
            response_headers,
            response_content_type,
            upstream_micros: Some(
                i64::try_from(exchange.started.elapsed().as_micros()).unwrap_or(i64::MAX),
            ),
            attempts: self.attempts,
            error: self.note,
            ai: Some(self.outcome),
            ..Ended::default()
        };
        self.accounting.finish(exchange, ended);
    }
}
