//! AI request bodies decoded as each protocol, estimated and encoded for every channel.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::ai_request(data);
});
