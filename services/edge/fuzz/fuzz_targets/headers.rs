//! Request header lines through every header reader of the edge.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::headers(data);
});
