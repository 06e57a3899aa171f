//! The `gateway-usage` binary starts, describes itself, and refuses a bad
//! config with the key at fault. (It also makes `cargo test` build the
//! binary, which the chaos test in tests/chaos.rs runs.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_describes_the_binary_and_bad_config_names_its_key() {
    let help = Command::new(env!("CARGO_BIN_EXE_gateway-usage"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("gateway-usage"), "{text}");

    let bad = Command::new(env!("CARGO_BIN_EXE_gateway-usage"))
        .env_clear()
        .env("GATEWAY_USAGE_LISTEN_ADDR", "not an address")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let errors = String::from_utf8_lossy(&bad.stderr);
    assert!(errors.contains("listen_addr"), "{errors}");
}
