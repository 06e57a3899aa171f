//! `gateway-catalog`: the catalog service as its own process.

use std::process::ExitCode;

use anyhow::Context as _;
use gateway_catalog::{BinaryConfig, Catalog};
use gateway_runtime::process::{BinarySpec, Process};

// Each request allocates and frees; mimalloc does that faster than glibc
// malloc, with less fragmentation (the edge's profile showed 12% of its
// CPU in malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPEC: BinarySpec = BinarySpec {
    binary: "gateway-catalog",
    service_name: "catalog",
    about: "APIs, routes, upstreams, AI channels and prices",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let listener = gateway_runtime::bind("catalog grpc", config.catalog.listen_addr).await?;
    let secrets = gateway_secrets::SecretBox::from_config(&config.secrets)?;
    let egress = gateway_egress::EgressPolicy::from_config(&config.egress)
        .map_err(|message| anyhow::anyhow!("egress.allow: {message}"))?;
    let service = Catalog::open(&config.catalog, &config.auth, &secrets, egress)
        .await
        .context("failed to open the catalog store")?;
    process.mark_ready();
    service
        .serve(listener, process.shutdown, &config.runtime)
        .await
        .context("catalog server failed")
}
