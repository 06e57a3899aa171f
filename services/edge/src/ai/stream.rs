//! A streamed answer on its way to the client: passed through event by
//! event (never the whole stream), its usage read as it passes, the usage
//! chunk hidden from a client that did not ask for it, the time to the
//! first event measured. If the client goes away mid-stream, the rest of
//! the upstream is read in the background, within a bound, to reach the
//! final usage the provider will bill.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;

use super::guard::{Guard, Place};
use super::sse::Parser;
use super::translate::{Collector, Translator};
use super::usage::{Protocol, Reported, Tokens};
use crate::body::{BoxError, EdgeBody};

/// Longest SSE event accepted from a provider.
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Delivered text kept for an estimate when no usage comes.
const MAX_TEXT_BYTES: usize = 1024 * 1024;

/// How a stream ended, for accounting.
#[derive(Debug, Default)]
pub struct StreamEnd {
    pub tokens: Option<Tokens>,
    /// What the client was sent, for a token estimate without usage.
    pub text: String,
    /// When the first event with data was passed on.
    pub first_event: Option<Instant>,
    /// The last finish reason an event gave.
    pub finish_reason: Option<String>,
    /// The upstream reached its end.
    pub complete: bool,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// The first bytes sent, when the channel captures bodies.
    pub captured: Option<Vec<u8>>,
    pub truncated: bool,
    /// The budget guard ended the stream.
    pub budget_cut: bool,
    /// The whole answer, when it was gathered for the completion cache and
    /// the stream said how it ended.
    pub answer: Option<crate::ai::canonical::Answer>,
}

/// How long, and how much, the edge keeps reading after the client left.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    pub time: Duration,
    pub bytes: u64,
}

type OnEnd = Box<dyn FnOnce(StreamEnd) + Send>;

struct State {
    inner: EdgeBody,
    parser: Parser,
    reported: Reported,
    protocol: Protocol,
    hide_usage: bool,
    end: StreamEnd,
    on_end: OnEnd,
    drain: Drain,
    capture: usize,
    translator: Option<Translator>,
    guard: Option<Guard>,
    place: Place,
    collector: Option<Collector>,
}

pub struct Observed {
    state: Option<State>,
}

/// What the stream needs to know about the request.
pub struct Watch {
    pub protocol: Protocol,
    /// Drop OpenAI's usage-only chunk (the client did not ask for it).
    pub hide_usage: bool,
    pub drain: Drain,
    /// Keep up to this many bytes of what is sent, for the audit log.
    pub capture: Option<usize>,
    /// Re-encodes the provider's events in the client's protocol when the
    /// channel speaks another one (`protocol` is the provider's).
    pub translator: Option<Translator>,
    /// Ends the stream when its tokens outgrow the budget.
    pub guard: Option<Guard>,
    /// Gathers the answer for the completion cache.
    pub collector: Option<Collector>,
}

impl Observed {
    pub fn new(inner: EdgeBody, watch: Watch, on_end: OnEnd) -> Self {
        Self {
            state: Some(State {
                inner,
                parser: Parser::new(MAX_EVENT_BYTES),
                reported: Reported::default(),
                protocol: watch.protocol,
                hide_usage: watch.hide_usage,
                end: StreamEnd {
                    captured: watch.capture.map(|_| Vec::new()),
                    ..StreamEnd::default()
                },
                on_end,
                drain: watch.drain,
                capture: watch.capture.unwrap_or(0),
                translator: watch.translator,
                guard: watch.guard,
                place: Place::default(),
                collector: watch.collector,
            }),
        }
    }
}

impl State {
    /// The bytes to pass on for one upstream chunk.
    fn take_in(&mut self, data: &[u8]) -> Result<Bytes, BoxError> {
        let events = self.parser.push(data)?;
        let mut out = BytesMut::new();
        for event in events {
            let document = serde_json::from_str::<serde_json::Value>(&event.data).ok();
            if let Some(document) = &document {
                self.reported.observe(self.protocol, document);
                if let Some(collector) = self.collector.as_mut() {
                    collector.take(document);
                }
                // Only a guard ever closes a stream itself.
                if self.guard.is_some() {
                    self.place.follow(self.protocol, document);
                }
                if let Some(reason) = super::request::finish_reason(self.protocol, document) {
                    self.end.finish_reason = Some(reason);
                }
                if self.hide_usage && super::openai::is_usage_chunk(document) {
                    continue;
                }
                let text = super::request::event_text(self.protocol, document);
                if let Some(guard) = self.guard.as_mut() {
                    guard.count(&text);
                }
                if !text.is_empty() && self.end.text.len() < MAX_TEXT_BYTES {
                    self.end.text.push_str(&text);
                }
            }
            if self.end.first_event.is_none() && !event.data.is_empty() {
                self.end.first_event = Some(Instant::now());
            }
            match (&mut self.translator, &document) {
                (None, _) => out.extend_from_slice(&event.raw),
                (Some(translator), Some(document)) => {
                    let mut translated = Vec::new();
                    translator.event(document, &mut translated);
                    out.extend_from_slice(&translated);
                }
                // `[DONE]`, pings and comments of the provider's protocol.
                (Some(_), None) => {}
            }
        }
        Ok(self.sent(out.freeze()))
    }

    /// Counts and captures what goes to the client.
    fn sent(&mut self, out: Bytes) -> Bytes {
        self.end.bytes += out.len() as u64;
        if let Some(captured) = self.end.captured.as_mut() {
            let room = self.capture.saturating_sub(captured.len());
            self.end.truncated |= out.len() > room;
            captured.extend_from_slice(&out[..out.len().min(room)]);
        }
        out
    }

    /// The closing events for a stream the budget guard ends, in the
    /// client's protocol, with the usage counted so far.
    fn cut(&mut self) -> Bytes {
        self.end.budget_cut = true;
        let (prompt, completion) = self
            .guard
            .as_ref()
            .map_or((0, 0), |guard| (guard.prompt, guard.counted()));
        let tokens = Tokens {
            prompt,
            completion,
            cached: 0,
        };
        let closing = match self.translator.as_mut() {
            Some(translator) => {
                let mut closing = Vec::new();
                translator.cut(tokens, &mut closing);
                closing
            }
            None => self.place.closing(self.protocol, tokens, !self.hide_usage),
        };
        self.sent(Bytes::from(closing))
    }

    /// What goes to the client after the provider's last event: an
    /// unterminated last event, or the client protocol's closing events.
    fn tail(&mut self) -> Bytes {
        let rest = match self.translator.as_mut() {
            Some(translator) => {
                let mut closing = Vec::new();
                translator.end(self.reported.tokens, &mut closing);
                Bytes::from(closing)
            }
            None => Bytes::copy_from_slice(self.parser.pending()),
        };
        self.sent(rest)
    }

    fn finish(mut self, complete: bool) {
        self.end.complete = complete;
        self.end.tokens = self.reported.tokens;
        self.end.answer = self
            .collector
            .take()
            .and_then(|collector| collector.answer(self.reported.tokens));
        (self.on_end)(self.end);
    }

    /// Reads what the provider still sends, within the drain bound, for
    /// its final usage; the client is gone, so nothing is passed on.
    async fn drain(mut self) {
        let deadline = tokio::time::Instant::now() + self.drain.time;
        let mut read = 0_u64;
        let complete = loop {
            let frame = tokio::time::timeout_at(deadline, self.inner.frame()).await;
            match frame {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        read += data.len() as u64;
                        let sent = self.end.bytes;
                        if self.take_in(&data).is_err() || read > self.drain.bytes {
                            break false;
                        }
                        // Nobody is reading: no top-ups, stop at the budget.
                        if self.guard.as_ref().is_some_and(Guard::over) {
                            break false;
                        }
                        self.end.bytes = sent;
                    }
                }
                Ok(None) => break true,
                Ok(Some(Err(_))) | Err(_) => break false,
            }
        };
        self.finish(complete);
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            let Some(state) = self.state.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(guard) = state.guard.as_mut()
                && !ready!(guard.poll_room(cx))
            {
                let Some(mut state) = self.state.take() else {
                    return Poll::Ready(None);
                };
                let closing = state.cut();
                state.finish(false);
                return Poll::Ready(Some(Ok(Frame::data(closing))));
            }
            match ready!(Pin::new(&mut state.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    match state.take_in(&data) {
                        Ok(out) if out.is_empty() => {}
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(error) => {
                            if let Some(state) = self.state.take() {
                                state.finish(false);
                            }
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
                Some(Err(error)) => {
                    if let Some(state) = self.state.take() {
                        state.finish(false);
                    }
                    return Poll::Ready(Some(Err(error)));
                }
                None => {
                    let Some(mut state) = self.state.take() else {
                        return Poll::Ready(None);
                    };
                    let rest = state.tail();
                    state.finish(true);
                    return Poll::Ready((!rest.is_empty()).then(|| Ok(Frame::data(rest))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let Some(state) = self.state.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(state.drain());
            }
            Err(_) => state.finish(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn upstream(chunks: &[&'static str]) -> EdgeBody {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk.as_bytes()))))
            .collect();
        http_body_util::StreamBody::new(tokio_stream::iter(frames)).boxed_unsync()
    }

    fn watched(body: EdgeBody, hide_usage: bool) -> (Observed, Arc<Mutex<Option<StreamEnd>>>) {
        let ended = Arc::new(Mutex::new(None));
        let sink = Arc::clone(&ended);
        let watch = Watch {
            protocol: Protocol::OpenAi,
            hide_usage,
            drain: Drain {
                time: Duration::from_secs(1),
                bytes: 1 << 20,
            },
            capture: Some(64),
            translator: None,
            guard: None,
            collector: Collector::new(Protocol::OpenAi),
        };
        let observed = Observed::new(
            body,
            watch,
            Box::new(move |end| *sink.lock().unwrap() = Some(end)),
        );
        (observed, ended)
    }

    const STREAM: [&str; 4] = [
        "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}],\"usage\":null}\n\ndata: {\"choices\":[],\"usage\":",
        "{\"prompt_tokens\":7,\"completion_tokens\":2}}\n\n",
        "data: [DONE]\n\n",
    ];

    #[tokio::test]
    async fn usage_is_read_and_hidden_from_a_client_that_did_not_ask() {
        let (observed, ended) = watched(upstream(&STREAM), true);
        let sent = observed.collect().await.unwrap().to_bytes();
        let sent = String::from_utf8(sent.to_vec()).unwrap();
        assert!(!sent.contains("prompt_tokens"), "{sent}");
        assert!(sent.ends_with("data: [DONE]\n\n"));
        let end = ended.lock().unwrap().take().unwrap();
        assert!(end.complete);
        assert_eq!(
            end.tokens,
            Some(Tokens {
                prompt: 7,
                completion: 2,
                cached: 0
            })
        );
        assert_eq!(end.text, "Hello");
        assert_eq!(end.bytes, sent.len() as u64);
        assert_eq!(end.captured.as_deref(), Some(&sent.as_bytes()[..64]));
        assert!(end.truncated);
        assert!(end.first_event.is_some());
    }

    #[tokio::test]
    async fn the_answer_is_gathered_only_from_a_stream_that_says_how_it_ended() {
        let (observed, ended) = watched(upstream(&STREAM), true);
        observed.collect().await.unwrap();
        let end = ended.lock().unwrap().take().unwrap();
        assert_eq!(end.answer, None, "no finish reason: not a whole answer");
        let finished = [
            STREAM[0],
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        ];
        let (observed, ended) = watched(upstream(&finished), true);
        observed.collect().await.unwrap();
        let answer = ended.lock().unwrap().take().unwrap().answer.unwrap();
        assert_eq!(answer.text(), "Hello");
        assert_eq!(answer.finish, crate::ai::canonical::Finish::Stop);
    }

    #[tokio::test]
    async fn a_client_that_asked_gets_the_usage_chunk() {
        let (observed, _) = watched(upstream(&STREAM), false);
        let sent = observed.collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&sent).contains("\"prompt_tokens\":7"));
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_billed_from_the_drained_rest() {
        let (mut observed, ended) = watched(upstream(&STREAM), true);
        let first = observed.frame().await.unwrap().unwrap();
        assert!(first.is_data());
        drop(observed);
        for _ in 0..100 {
            if ended.lock().unwrap().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let end = ended
            .lock()
            .unwrap()
            .take()
            .expect("accounted after the drain");
        assert_eq!(
            end.tokens,
            Some(Tokens {
                prompt: 7,
                completion: 2,
                cached: 0
            })
        );
        assert!(end.complete, "the upstream was read to its end");
    }
}
