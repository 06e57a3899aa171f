//! `allocs-per-request`: the standalone edge, configured exactly like the
//! `gateway-edge` binary (`GATEWAY_EDGE_*` and the rest), with every heap
//! allocation counted. A client thread sends `ALLOCS_REQUESTS` sequential
//! requests for `ALLOCS_PATH` with `X-API-Key: $ALLOCS_KEY` on one
//! keep-alive connection after a warm-up, and the count over that window,
//! divided by the requests, is printed: `allocations bytes` per request.
//!
//! The client reuses its buffers, so in the window it allocates nothing;
//! what is counted is the edge's per-request work plus its share of the
//! background (leases, the usage stream), which is per-request cost too.
//! `deploy/bench/allocs.sh` runs it against `gatewayd --demo`.

#![allow(clippy::print_stdout)]

mod client;

use std::process::ExitCode;
use std::time::Duration;

use gateway_edge::{BinaryConfig, Edge};
use gateway_runtime::process::{BinarySpec, Process};
use stats_alloc::{Region, StatsAlloc};

// The system allocator with counters (stable Rust can wrap only that one
// in a static): the count of calls is the same whichever allocator serves
// them; the service binaries use mimalloc.
#[global_allocator]
static ALLOCATOR: StatsAlloc<std::alloc::System> = StatsAlloc::system();

const SPEC: BinarySpec = BinarySpec {
    binary: "allocs-per-request",
    service_name: "edge",
    about: "heap allocations per request of the edge",
    flags: &[],
    flags_usage: "",
};

const WARMUP: usize = 2_000;

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let path = std::env::var("ALLOCS_PATH").unwrap_or_else(|_| "/demo/echo/".to_owned());
    let key = std::env::var("ALLOCS_KEY").map_err(|_| anyhow::anyhow!("ALLOCS_KEY is required"))?;
    let requests: usize = std::env::var("ALLOCS_REQUESTS")
        .map_or(Ok(20_000), |text| text.parse())
        .map_err(|_| anyhow::anyhow!("ALLOCS_REQUESTS: a number"))?;
    let listener = gateway_runtime::bind("edge http", config.edge.listen_addr).await?;
    let addr = listener.local_addr()?;
    let egress = gateway_egress::EgressPolicy::from_config(&config.egress)
        .map_err(|message| anyhow::anyhow!("egress.allow: {message}"))?;
    let edge = Edge::new(config.edge, &config.auth, egress, &process.shutdown)?;
    let serving = tokio::spawn(edge.serve(listener, process.shutdown.clone(), Duration::ZERO));

    let request = client::request(&path, &key);
    let counted = tokio::task::spawn_blocking(move || {
        let mut client = client::Client::connect_when_served(addr, &request)?;
        client.send_many(&request, WARMUP)?;
        let region = Region::new(&ALLOCATOR);
        client.send_many(&request, requests)?;
        // The usage stream acks and the lease refills of the window.
        std::thread::sleep(Duration::from_millis(200));
        anyhow::Ok(region.change())
    })
    .await??;
    let per = |count: usize| count as f64 / requests as f64;
    println!(
        "{:.1} {:.0}",
        per(counted.allocations + counted.reallocations),
        per(counted.bytes_allocated)
    );
    process.shutdown.cancel();
    serving.await?;
    Ok(())
}
