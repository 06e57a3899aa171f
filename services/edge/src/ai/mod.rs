//! The AI gateway's protocol pieces: the SSE parser streams pass through,
//! and the usage each provider reports.

pub mod sse;
pub mod usage;
