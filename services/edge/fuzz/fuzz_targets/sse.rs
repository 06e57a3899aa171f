//! The SSE parser and the usage extractors on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::sse_and_usage(data);
});
