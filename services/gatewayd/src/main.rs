//! `gatewayd`: the whole suite in one process.

use std::process::ExitCode;

use gateway_identity::BootstrapOutcome;
use gateway_runtime::process::{BinarySpec, Process};
use gatewayd::{Listeners, Suite, SuiteConfig};

// Each request allocates and frees; mimalloc does that faster than glibc
// malloc, with less fragmentation (the edge's profile showed 12% of its
// CPU in malloc and free).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SPEC: BinarySpec = BinarySpec {
    binary: "gatewayd",
    service_name: "gatewayd",
    about: "the whole gateway suite in one process (SQLite + in-memory limits by default)",
    flags: &["--demo"],
    flags_usage: " [--demo]",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

#[allow(clippy::print_stdout)] // the start-up banner is for the person who ran it
async fn run(mut config: SuiteConfig, process: Process) -> anyhow::Result<()> {
    let demo = process.flags.iter().any(|flag| flag == "--demo");
    // The demo upstream is up before the edge, which may reach exactly it.
    let demo_upstream = if demo {
        let upstream = gatewayd::demo::Upstream::prepare(&config.demo).await?;
        upstream.allow_in(&mut config.egress);
        Some(upstream)
    } else {
        None
    };
    let listeners = Listeners::bind(&config).await?;
    let addresses = listeners.addresses()?;
    let suite = Suite::open(&config, &addresses).await?;
    match &suite.bootstrap {
        BootstrapOutcome::CreatedWithGeneratedPassword { username, password } => {
            println!("created superadmin {username:?} with password {password}");
            println!("  (shown only now; set GATEWAY_BOOTSTRAP_PASSWORD to choose it)");
        }
        BootstrapOutcome::Created { username } => {
            println!(
                "created superadmin {username:?} with the password from GATEWAY_BOOTSTRAP_PASSWORD"
            );
        }
        BootstrapOutcome::AlreadyBootstrapped => {}
    }
    println!("gatewayd is up:");
    println!("  identity  grpc  {}", addresses.identity);
    println!("  catalog   grpc  {}", addresses.catalog);
    println!("  quota     grpc  {}", addresses.quota);
    println!("  usage     grpc  {}", addresses.usage);
    println!("  edge      http  {}", addresses.edge);
    println!("  console   http  http://{}", addresses.console);
    println!(
        "  ops       http  {}  (/health/live, /health/ready, /metrics)",
        config.runtime.ops_addr
    );
    println!("try: grpcurl -plaintext {} list", addresses.identity);
    let admin_key = suite.admin_key();
    let shutdown = process.shutdown.clone();
    // Registered before anything can mark the process ready.
    process.readiness.register(gatewayd::EDGE_CATALOG);
    let serving = tokio::spawn(suite.serve(
        listeners,
        process.shutdown.clone(),
        process.readiness.clone(),
    ));
    if let Some(upstream) = &demo_upstream {
        match gatewayd::demo::seed(&addresses, &admin_key, &config.demo, upstream).await {
            Ok(demo) => {
                println!(
                    "demo: tenant 'demo', API 'echo', plan {}/minute and {}/month, key {}",
                    config.demo.requests_per_minute, config.demo.requests_per_month, demo.key
                );
                println!("demo: (the edge picks the API up within a second)");
                println!("{}", demo.curl);
            }
            Err(error) => {
                shutdown.cancel();
                let _ = serving.await;
                return Err(error.context("seeding the demo"));
            }
        }
    }
    process.mark_ready();
    serving.await?
}
