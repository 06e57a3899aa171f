//! `gateway-console`: the web console as its own process.

use std::process::ExitCode;

use gateway_console::Console;
use gateway_runtime::process::{BinarySpec, Process};

gateway_runtime::process_config! {
    /// The configuration of the standalone `gateway-console` binary.
    pub struct BinaryConfig { console: gateway_console::Config }
}

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
