//! The `gatewayctl` binary: the command line of [`gatewayctl::run`].

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    gatewayctl::run(std::env::args().collect(), gatewayctl::Io::system()).await
}
