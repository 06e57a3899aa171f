//! `gateway-quota`: the quota service as its own process.

use std::process::ExitCode;

use anyhow::Context as _;
use gateway_quota::{BinaryConfig, Quota};
use gateway_runtime::process::{BinarySpec, Process};

// Each request allocates and frees; mimalloc does that faster than glibc
// malloc, with less fragmentation (the edge's profile showed 12% of its
// CPU in malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPEC: BinarySpec = BinarySpec {
    binary: "gateway-quota",
    service_name: "quota",
    about: "plans, rate limits, balances and vouchers",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let listener = gateway_runtime::bind("quota grpc", config.quota.listen_addr).await?;
    let service = Quota::open(&config.quota, &config.auth)
        .await
        .context("failed to open the quota store")?;
    process.mark_ready();
    service
        .serve(listener, process.shutdown, &config.runtime)
        .await
        .context("quota server failed")
}
