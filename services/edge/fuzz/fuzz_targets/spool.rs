//! Usage spool segments: replayed records round-trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::spool(data);
});
