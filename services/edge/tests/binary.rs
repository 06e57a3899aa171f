//! The `gateway-edge` binary starts, describes itself, and refuses a bad
//! config with the key at fault. (It also makes `cargo test` build the
//! binary, which the crash tests in tests/crash.rs run.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_describes_the_binary_and_bad_config_names_its_key() {
    let help = Command::new(env!("CARGO_BIN_EXE_gateway-edge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("gateway-edge"), "{text}");

    let bad = Command::new(env!("CARGO_BIN_EXE_gateway-edge"))
        .env_clear()
        .env("GATEWAY_EDGE_SPOOL_FULL", "explode")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let errors = String::from_utf8_lossy(&bad.stderr);
    assert!(errors.contains("spool_full"), "{errors}");
}
