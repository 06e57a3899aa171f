//! `bare-proxy`: the smallest reverse proxy on the edge's HTTP stack, with
//! the edge's server and client settings (hyper's auto server with header
//! timeouts, hyper-util's pooled client, TCP_NODELAY, mimalloc) and nothing
//! else: no auth, no limits, no usage. Its throughput is the floor the
//! HTTP stack sets under the edge, measured beside nginx in `edge.sh`.
//!
//! ```text
//! bare-proxy 127.0.0.1:18083 http://127.0.0.1:18081
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use http::Uri;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

struct Proxy {
    client: Client<HttpConnector, Incoming>,
    upstream: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .context("usage: bare-proxy LISTEN_ADDR UPSTREAM_URL")?;
    let upstream = args
        .next()
        .context("usage: bare-proxy LISTEN_ADDR UPSTREAM_URL")?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let proxy = Arc::new(Proxy {
        client: Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector),
        upstream: upstream.trim_end_matches('/').to_owned(),
    });
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let proxy = Arc::clone(&proxy);
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let service = service_fn(move |request| Arc::clone(&proxy).forward(request));
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Proxy {
    async fn forward(
        self: Arc<Self>,
        mut request: http::Request<Incoming>,
    ) -> Result<http::Response<Body>, Infallible> {
        let target = request
            .uri()
            .path_and_query()
            .map_or("/", |target| target.as_str());
        let Ok(uri) = format!("{}{target}", self.upstream).parse::<Uri>() else {
            return Ok(status(http::StatusCode::BAD_REQUEST));
        };
        *request.uri_mut() = uri;
        Ok(match self.client.request(request).await {
            Ok(response) => response.map(http_body_util::BodyExt::boxed_unsync),
            Err(_) => status(http::StatusCode::BAD_GATEWAY),
        })
    }
}

fn status(code: http::StatusCode) -> http::Response<Body> {
    let empty = http_body_util::Empty::new().map_err(|never| match never {});
    let mut response = http::Response::new(empty.boxed_unsync());
    *response.status_mut() = code;
    response
}
