//! The AI gateway's pieces: channel selection with cooldowns, each
//! protocol's error bodies, the SSE parser streams pass through, and the
//! usage each provider reports.

pub mod channels;
pub mod errors;
pub mod sse;
pub mod usage;
