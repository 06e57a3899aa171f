//! An edge binary with a plugin of its own: it refuses requests that carry
//! `X-Block: yes` before quota or the upstream see them, and stamps every
//! upstream response with `X-Edge-Plugin`. Configured like `gateway-edge`
//! (`GATEWAY_EDGE_*`, `GATEWAY_AUTH_ADMIN_KEY`, `GATEWAY_EGRESS_ALLOW`).
//!
//! ```sh
//! cargo run -p gateway-edge --example custom_plugin
//! ```

use std::process::ExitCode;

use gateway_edge::body::EdgeBody;
use gateway_edge::plugin::{Answered, EdgePlugin, RequestInfo};
use gateway_edge::{BinaryConfig, Edge};
use gateway_runtime::process::{BinarySpec, Process};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// The plugin: a request hook and a response hook.
struct BlockHeader;

impl EdgePlugin for BlockHeader {
    fn name(&self) -> &str {
        "block-header"
    }

    fn on_request(&self, request: &RequestInfo<'_>) -> Option<Response<EdgeBody>> {
        let blocked = request
            .headers
            .get("x-block")
            .is_some_and(|value| value == "yes");
        blocked.then(|| {
            gateway_edge::problem::response(
                StatusCode::FORBIDDEN,
                "blocked by the block-header plugin",
                request.request_id,
            )
        })
    }

    fn on_response(&self, _answered: &Answered<'_>, headers: &mut HeaderMap) {
        headers.insert("x-edge-plugin", HeaderValue::from_static("block-header"));
    }
}

const SPEC: BinarySpec = BinarySpec {
    binary: "custom_plugin",
    service_name: "edge",
    about: "the edge with an example plugin",
    flags: &[],
    flags_usage: "",
};

#[tokio::main]
async fn main() -> ExitCode {
    gateway_runtime::process::run(SPEC, run).await
}

async fn run(config: BinaryConfig, process: Process) -> anyhow::Result<()> {
    let listener = gateway_runtime::bind("edge http", config.edge.listen_addr).await?;
    let egress = gateway_egress::EgressPolicy::from_config(&config.egress)
        .map_err(|message| anyhow::anyhow!("egress.allow: {message}"))?;
    let plugins: Vec<Box<dyn EdgePlugin>> = vec![Box::new(BlockHeader)];
    let edge = Edge::with_plugins(
        config.edge,
        &config.auth,
        egress,
        plugins,
        &process.shutdown,
    )?;
    process.mark_ready();
    edge.serve(listener, process.shutdown, config.runtime.shutdown_grace())
        .await;
    Ok(())
}
