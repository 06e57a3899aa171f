//! `gatewayd`: the whole suite in one process.

use std::process::ExitCode;

use gateway_identity::BootstrapOutcome;
use gateway_runtime::process::{BinarySpec, Process};
use gatewayd::{Listeners, Suite, SuiteConfig};

const SPEC: BinarySpec = BinarySpec {
    binary: "gatewayd",
    service_name: "gatewayd",
    about: "the whole gateway suite in one process (SQLite + in-memory limits by default)",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

#[allow(clippy::print_stdout)] // the start-up banner is for the person who ran it
async fn run(config: SuiteConfig, process: Process) -> anyhow::Result<()> {
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
    println!(
        "  ops       http  {}  (/health/live, /health/ready, /metrics)",
        config.runtime.ops_addr
    );
    println!("try: grpcurl -plaintext {} list", addresses.identity);
    process.mark_ready();
    suite.serve(listeners, process.shutdown).await
}
