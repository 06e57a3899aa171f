//! `gateway-console`: the web console as its own process.

use std::process::ExitCode;

use gateway_console::{BinaryConfig, Console};
use gateway_runtime::process::{BinarySpec, Process};

const SPEC: BinarySpec = BinarySpec {
    binary: "gateway-console",
    service_name: "console",
    about: "the gateway's web console",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let listener = gateway_runtime::bind("console http", config.console.listen_addr).await?;
    let console = Console::new(config.console)?;
    process.mark_ready();
    console.serve(listener, process.shutdown).await
}
