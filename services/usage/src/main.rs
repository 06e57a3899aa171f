//! `gateway-usage`: the usage service as its own process.

use std::process::ExitCode;

use anyhow::Context as _;
use gateway_runtime::process::{BinarySpec, Process};
use gateway_usage::{BinaryConfig, Usage};

// Each request allocates and frees; mimalloc does that faster than glibc
// malloc, with less fragmentation (the edge's profile showed 12% of its
// CPU in malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPEC: BinarySpec = BinarySpec {
    binary: "gateway-usage",
    service_name: "usage",
    about: "usage events, audit logs and stats",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let listener = gateway_runtime::bind("usage grpc", config.usage.listen_addr).await?;
    let service = Usage::open(&config.usage, &config.auth)
        .await
        .context("failed to open the usage store")?;
    process.mark_ready();
    service
        .serve(listener, process.shutdown, &config.runtime)
        .await
        .context("usage server failed")
}
