//! Mock LLM providers on loopback ports for the AI gateway's tests: each
//! speaks one provider's protocol (JSON and SSE), records what it was
//! sent, and misbehaves on demand (429 with Retry-After, 500, a slow first
//! byte, a stream cut mid-way, usage missing or malformed).

pub mod openai;

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How a mock answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// A normal answer, with usage.
    Answer,
    /// A normal answer that reports no usage.
    NoUsage,
    /// Usage with nonsense in it (negative and non-numeric counts).
    MalformedUsage,
    /// 429 with this `Retry-After` (seconds).
    RateLimited(u64),
    /// 500 with a provider error body.
    ServerError,
    /// The answer after this long.
    SlowFirstByte(Duration),
    /// A stream that stops after its first event (no usage, no end).
    CutMidStream,
}

/// One request a mock received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: serde_json::Value,
}

/// What tests share with a running mock.
#[derive(Debug, Clone)]
pub struct Control {
    behaviour: Arc<Mutex<Behaviour>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Control {
    fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour: Arc::new(Mutex::new(behaviour)),
            received: Arc::default(),
        }
    }

    /// From now on, answer like this.
    pub fn set(&self, behaviour: Behaviour) {
        *self
            .behaviour
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = behaviour;
    }

    pub fn behaviour(&self) -> Behaviour {
        self.behaviour
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Every request so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn record(&self, received: Received) {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(received);
    }
}
