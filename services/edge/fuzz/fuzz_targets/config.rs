//! Config files (TOML) and environment lines, loaded as the edge loads its own.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway_edge::fuzzing::config(data);
});
