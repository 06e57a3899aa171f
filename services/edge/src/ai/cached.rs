//! The completion cache on the AI path: whether a request uses it (its
//! key, one of its groups or a candidate channel opts in; the client's
//! `Cache-Control: no-cache` skips the lookup, `no-store` skips both),
//! answers served from it (JSON, or a well-formed stream in the client's
//! protocol, billed at the configured share of their price), and which
//! answers are stored (complete ones, from an opted-in caller or channel,
//! not shortened to fit a budget).

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::billing::{Billing, Delivered};
use super::cache::{Fill, Key};
use super::canonical::Answer;
use super::channels::Candidate;
use super::request;
use super::serve::{Answered, Asked};
use super::translate;
use crate::account::Exchange;
use crate::body::EdgeBody;
use crate::cache::X_CACHE;
use crate::pipeline::Proxy;

/// How one request uses the cache.
pub(super) struct Plan {
    key: Key,
    /// The key or one of its groups opts in (else only channels that do).
    by_caller: bool,
    lookup: bool,
    store: bool,
}

impl Proxy {
    pub(super) fn cache_plan(
        &self,
        asked: &Asked<'_>,
        candidates: &[Candidate<'_>],
    ) -> Option<Plan> {
        let principal = &asked.caller.principal;
        let by_caller = principal.completion_cache
            || principal.groups.iter().any(|group| group.completion_cache);
        let by_channel = candidates
            .iter()
            .any(|candidate| candidate.channel.completion_cache);
        if !by_caller && !by_channel {
            return None;
        }
        let (lookup, store) = directives(&asked.headers);
        if !lookup && !store {
            return None;
        }
        let chat = asked.request.canonical()?;
        Some(Plan {
            key: Key::new(&principal.tenant_id, &chat),
            by_caller,
            lookup,
            store,
        })
    }

    /// The stored answer to this request, if it has one.
    pub(super) async fn completion_cached(&self, asked: &Asked<'_>) -> Option<Answer> {
        let plan = asked.cache.as_ref().filter(|plan| plan.lookup)?;
        self.ai.cache.get(&plan.key).await
    }

    /// Where the answer goes once it has ended whole, if it is stored.
    pub(super) fn cache_fill(
        &self,
        asked: &Asked<'_>,
        answered: &Answered<'_, '_>,
    ) -> Option<Fill> {
        let plan = asked.cache.as_ref().filter(|plan| plan.store)?;
        let opted = plan.by_caller || answered.candidate.channel.completion_cache;
        // An answer shortened to fit this caller's budget is not the answer.
        let whole = answered.max_tokens == asked.request.max_tokens();
        (opted && whole).then(|| Fill::new(Arc::clone(&self.ai.cache), plan.key.clone()))
    }

    /// A cached answer in the client's protocol, billed as a hit.
    pub(super) fn cache_hit(
        &self,
        asked: &Asked<'_>,
        answer: &Answer,
        exchange: Exchange,
    ) -> Response<EdgeBody> {
        let (protocol, model) = (asked.request.protocol(), asked.request.model());
        let json = translate::encode_answer(protocol, answer, model);
        let streamed = asked.request.stream();
        let (body, content_type) = if streamed {
            let wants_usage = !asked.request.hides_usage_chunk();
            let events = translate::replay(protocol, model, wants_usage, answer);
            (events, "text/event-stream")
        } else {
            (json.to_string().into_bytes(), "application/json")
        };
        let mut billing = self.hit_billing(asked, streamed);
        billing.outcome.finish_reason = request::finish_reason(protocol, &json).unwrap_or_default();
        billing.outcome.estimated = answer.usage.is_none();
        let tokens = answer
            .usage
            .unwrap_or_else(|| billing.estimated(&answer.text()));
        let delivered = Delivered {
            bytes: body.len() as u64,
            complete: true,
            captured: None,
        };
        billing.settle(exchange, StatusCode::OK.as_u16(), Some(tokens), delivered);
        let mut response = Response::new(crate::body::full(body.into()));
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        response
    }

    fn hit_billing(&self, asked: &Asked<'_>, streamed: bool) -> Billing {
        let mut billing = self.unsent_billing(asked, streamed);
        billing.outcome.cache_hit = true;
        billing.cost_percent = self.ai.cache.hit_cost_percent;
        billing
    }
}

/// Marks an answer the cache applied to but did not serve (looked up
/// and missed, or skipped by the client's `no-cache`).
pub(super) fn mark_miss(plan: Option<&Plan>, headers: &mut http::HeaderMap) {
    if plan.is_some() {
        headers.insert(X_CACHE, HeaderValue::from_static("MISS"));
    }
}

/// `(lookup, store)` as the client's `Cache-Control` allows.
fn directives(headers: &http::HeaderMap) -> (bool, bool) {
    let mut allowed = (true, true);
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value
            .split(',')
            .map(|part| part.trim().to_ascii_lowercase())
        {
            match directive.as_str() {
                "no-store" => allowed = (false, false),
                "no-cache" => allowed.0 = false,
                _ => {}
            }
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(value).unwrap_or(HeaderValue::from_static("")),
        );
        headers
    }

    #[test]
    fn the_client_can_skip_the_lookup_or_the_cache() {
        assert_eq!(directives(&http::HeaderMap::new()), (true, true));
        assert_eq!(directives(&with("no-cache")), (false, true));
        assert_eq!(directives(&with("max-age=0, No-Store")), (false, false));
    }
}
