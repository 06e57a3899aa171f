//! Bearer tokens against an API JWT policy and the admin token verifier.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::jwt(data);
});
