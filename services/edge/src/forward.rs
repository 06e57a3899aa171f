//! Stage: forward. The upstream request goes out on a pooled hyper client
//! whose connector enforces the egress policy, TLS (rustls) and the
//! connect deadline (TCP connect plus TLS handshake); failures are told
//! apart so the pipeline answers each with the right status.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use gateway_egress::EgressPolicy;
use http::{Request, Response, Uri};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use tower::Service;

use crate::body::{BoxError, EdgeBody};
use crate::egress::GuardedConnector;

/// The connect deadline passed: nothing reached the upstream.
#[derive(Debug, thiserror::Error)]
#[error("the upstream connection was not established in time")]
pub struct ConnectTimedOut;

/// The full connector stack under a deadline.
#[derive(Clone)]
pub struct Timed {
    inner: HttpsConnector<GuardedConnector>,
    deadline: Duration,
}

type Connection = <HttpsConnector<GuardedConnector> as Service<Uri>>::Response;

impl Service<Uri> for Timed {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let deadline = self.deadline;
        Box::pin(async move {
            match tokio::time::timeout(deadline, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(Box::new(ConnectTimedOut) as BoxError),
            }
        })
    }
}

pub type UpstreamClient = Client<Timed, EdgeBody>;

/// Why an upstream request produced no response.
#[derive(Debug)]
pub enum Failure {
    /// The egress policy refused the address.
    Refused(gateway_egress::Refused),
    ConnectTimeout(Duration),
    /// Connection refused, reset, DNS failure and the like.
    Connect,
    /// The response head did not come within the read timeout.
    ReadTimeout(Duration),
    /// The request failed after it was sent (or while its body streamed).
    Upstream,
}

fn chain_has<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.is::<E>() {
            return true;
        }
        current = error.source();
    }
    false
}

/// Pooled clients, one per distinct connect deadline (most APIs share the
/// edge default, so usually one).
pub struct Forwarder {
    egress: EgressPolicy,
    tls: rustls::ClientConfig,
    clients: Mutex<HashMap<Duration, UpstreamClient>>,
}

impl Forwarder {
    pub fn new(upstream_ca_file: &str, egress: EgressPolicy) -> Result<Self, String> {
        Ok(Self {
            egress,
            tls: crate::tls::client_config(upstream_ca_file)?,
            clients: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, connect: Duration) -> UpstreamClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(connect)
            .or_insert_with(|| {
                let connector = GuardedConnector::new(self.egress.clone(), |connector| {
                    connector.set_nodelay(true);
                    connector.enforce_http(false);
                });
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(self.tls.clone())
                    .https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(connector);
                Client::builder(hyper_util::rt::TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .pool_max_idle_per_host(256)
                    .build(Timed {
                        inner: https,
                        deadline: connect,
                    })
            })
            .clone()
    }

    /// Sends `request`; the response head must come within `read`.
    pub async fn send(
        &self,
        request: Request<EdgeBody>,
        connect: Duration,
        read: Duration,
    ) -> Result<Response<Incoming>, Failure> {
        let client = self.client(connect);
        match tokio::time::timeout(read, client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => {
                tracing::debug!(%error, "upstream request failed");
                Err(if let Some(refused) = crate::egress::refused(&error) {
                    Failure::Refused(refused)
                } else if chain_has::<ConnectTimedOut>(&error) {
                    Failure::ConnectTimeout(connect)
                } else if error.is_connect() {
                    Failure::Connect
                } else {
                    Failure::Upstream
                })
            }
            Err(_) => Err(Failure::ReadTimeout(read)),
        }
    }
}

impl Forwarder {
    /// A health probe: `GET url` within `timeout`, through the same egress
    /// policy; the status, or `None` when nothing answered.
    pub async fn probe(&self, url: &str, timeout: Duration) -> Option<u16> {
        let uri: Uri = url.parse().ok()?;
        let empty = http_body_util::Empty::<bytes::Bytes>::new().map_err(|never| match never {});
        let mut request = Request::new(empty.boxed_unsync());
        *request.uri_mut() = uri;
        request.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("gateway-edge-health-check"),
        );
        let response = self.send(request, timeout, timeout).await.ok()?;
        Some(response.status().as_u16())
    }
}

/// The upstream URI: the target's base path, then the request path, then
/// the query as sent.
pub fn upstream_uri(target: &str, path: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let base: Uri = target.parse()?;
    let base_path = base.path().trim_end_matches('/');
    let path_and_query = match query {
        Some(query) => format!("{base_path}{path}?{query}"),
        None => format!("{base_path}{path}"),
    };
    let mut parts = base.into_parts();
    parts.path_and_query = Some(path_and_query.parse()?);
    Ok(Uri::from_parts(parts)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_uris_keep_the_base_path_and_the_query() {
        let uri =
            upstream_uri("http://127.0.0.1:9000/base/", "/v1/items", Some("a=1&b=2")).unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9000/base/v1/items?a=1&b=2"
        );
        let uri = upstream_uri("http://upstream", "/", None).unwrap();
        assert_eq!(uri.to_string(), "http://upstream/");
    }

    #[tokio::test]
    async fn a_connect_that_never_completes_is_a_connect_timeout() {
        // A listener with a full accept backlog never completes a TLS
        // handshake: the deadline covers connect plus handshake.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let forwarder = Forwarder::new("", EgressPolicy::strict().allowing(addr)).unwrap();
        let request = Request::builder()
            .uri(format!("https://{addr}/"))
            .body(
                http_body_util::Empty::<bytes::Bytes>::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap();
        let failure = forwarder
            .send(request, Duration::from_millis(100), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(failure, Failure::ConnectTimeout(_)), "{failure:?}");
        drop(listener);
    }
}
