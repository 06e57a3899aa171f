//! `gatewayctl`: the admin CLI over the gateway's gRPC APIs.
//!
//! Commands grow with the services; today it checks the health of every
//! service the way a load balancer or an operator would.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
#[command(name = "gatewayctl", about = "Administer the gateway suite over gRPC")]
struct Cli {
    #[command(flatten)]
    endpoints: Endpoints,
    #[command(subcommand)]
    command: CommandKind,
}

#[derive(Debug, clap::Args)]
struct Endpoints {
    #[arg(
        long,
        env = "GATEWAYCTL_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    identity_url: String,
    #[arg(
        long,
        env = "GATEWAYCTL_CATALOG_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    catalog_url: String,
    #[arg(
        long,
        env = "GATEWAYCTL_QUOTA_URL",
        default_value = "http://127.0.0.1:50053",
        global = true
    )]
    quota_url: String,
    #[arg(
        long,
        env = "GATEWAYCTL_USAGE_URL",
        default_value = "http://127.0.0.1:50054",
        global = true
    )]
    usage_url: String,
    /// Per-call timeout in milliseconds.
    #[arg(long, default_value_t = 2000, global = true)]
    timeout_ms: u64,
}

#[derive(Debug, Subcommand)]
enum CommandKind {
    /// Ask every service's grpc.health.v1.Health whether it is SERVING.
    Health,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        CommandKind::Health => health(&cli.endpoints).await,
    }
}

#[allow(clippy::print_stdout)] // a CLI's output
async fn health(endpoints: &Endpoints) -> ExitCode {
    let timeout = Duration::from_millis(endpoints.timeout_ms);
    let checks = [
        (
            "identity",
            &endpoints.identity_url,
            "gateway.identity.v1.IdentityService",
        ),
        (
            "catalog",
            &endpoints.catalog_url,
            "gateway.catalog.v1.CatalogService",
        ),
        (
            "quota",
            &endpoints.quota_url,
            "gateway.quota.v1.QuotaService",
        ),
        (
            "usage",
            &endpoints.usage_url,
            "gateway.usage.v1.UsageService",
        ),
    ];
    let mut all_serving = true;
    for (name, url, service) in checks {
        let status = check(url, service, timeout).await;
        let serving = matches!(status, Ok(ServingStatus::Serving));
        all_serving &= serving;
        match status {
            Ok(status) => println!("{name:<9} {url:<26} {}", status.as_str_name()),
            Err(error) => println!("{name:<9} {url:<26} UNREACHABLE ({error})"),
        }
    }
    if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn check(url: &str, service: &str, timeout: Duration) -> Result<ServingStatus, String> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|error| format!("invalid URL: {error}"))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|status| format!("{}: {}", status.code(), status.message()))?;
    Ok(response.into_inner().status())
}
