//! `health`: each service's grpc.health.v1 answer, as a load balancer
//! or an operator would ask it.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::ctx::{Ctx, Endpoints};
use crate::error::{CliError, CliResult, Exit};
use crate::output;

pub async fn run(ctx: &Ctx, endpoints: &Endpoints, timeout: Duration) -> CliResult<()> {
    let checks = [
        (
            "identity",
            &endpoints.identity,
            "gateway.identity.v1.IdentityService",
        ),
        (
            "catalog",
            &endpoints.catalog,
            "gateway.catalog.v1.CatalogService",
        ),
        ("quota", &endpoints.quota, "gateway.quota.v1.QuotaService"),
        ("usage", &endpoints.usage, "gateway.usage.v1.UsageService"),
    ];
    let mut all_serving = true;
    let mut rows = Vec::new();
    for (name, url, service) in checks {
        let status = match check(url, service, timeout).await {
            Ok(status) => {
                all_serving &= status == ServingStatus::Serving;
                status.as_str_name().to_owned()
            }
            Err(error) => {
                all_serving = false;
                format!("UNREACHABLE ({error})")
            }
        };
        rows.push(vec![name.to_owned(), url.clone(), status]);
    }
    let text = match ctx.format {
        output::Format::Table => output::table(["SERVICE", "URL", "STATUS"], rows),
        format => {
            let value = rows
                .into_iter()
                .map(|row| serde_json::json!({"service": row[0], "url": row[1], "status": row[2]}))
                .collect();
            output::encode(format, &serde_json::Value::Array(value))?
        }
    };
    ctx.print(&text)?;
    if all_serving {
        Ok(())
    } else {
        Err(CliError::new(
            Exit::Unavailable,
            "UNAVAILABLE: not every service is serving",
        ))
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
        .map_err(|status| {
            format!(
                "{}: {}",
                crate::error::code_name(status.code()),
                status.message()
            )
        })?;
    Ok(response.into_inner().status())
}
