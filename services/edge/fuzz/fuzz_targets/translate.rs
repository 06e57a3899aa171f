//! The protocol adapters (requests, answers, stream events, embeddings) on
//! arbitrary JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::translation(data);
});
