//! The egress guard in the upstream connector: DNS answers the policy
//! refuses are dropped before any connection is made, literal addresses are
//! checked before connecting, and the address actually connected to is
//! checked again, so a name that re-resolves to an internal address is
//! refused too.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use gateway_egress::{EgressPolicy, Refused};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Resolves names with the system resolver and keeps only the answers the
/// policy allows; none left is a refusal.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: Arc<EgressPolicy>,
}

impl Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = BoxFuture<Result<Self::Response, io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let answers = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = answers
                .filter(|addr| match policy.check_ip(addr.ip()) {
                    Ok(()) => true,
                    Err(refused) => {
                        refusal = Some(refused);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refusal) {
                (true, Some(refused)) => Err(io::Error::other(refused)),
                _ => Ok(allowed.into_iter()),
            }
        })
    }
}

/// The edge's TCP connector: hyper's, behind the policy.
#[derive(Clone)]
pub struct GuardedConnector {
    inner: HttpConnector<GuardedResolver>,
    policy: Arc<EgressPolicy>,
}

impl GuardedConnector {
    pub fn new(
        policy: EgressPolicy,
        configure: impl FnOnce(&mut HttpConnector<GuardedResolver>),
    ) -> Self {
        let policy = Arc::new(policy);
        let mut inner = HttpConnector::new_with_resolver(GuardedResolver {
            policy: Arc::clone(&policy),
        });
        configure(&mut inner);
        Self { inner, policy }
    }
}

/// The port a request to `uri` connects to.
fn port_of(uri: &Uri) -> u16 {
    uri.port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

/// A host that is an IP literal, which hyper connects to without asking
/// the resolver.
fn literal_ip(uri: &Uri) -> Option<IpAddr> {
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    host.parse().ok()
}

impl Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(BoxError::from)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let policy = Arc::clone(&self.policy);
        let mut inner = self.inner.clone();
        Box::pin(async move {
            // hyper connects to a literal without asking the resolver.
            if let Some(ip) = literal_ip(&uri) {
                policy.check(SocketAddr::new(ip, port_of(&uri)))?;
            }
            let stream = inner.call(uri).await?;
            let peer = stream.inner().peer_addr()?;
            policy.check(peer)?;
            Ok(stream)
        })
    }
}

/// Whether a client error was the egress policy refusing the connection.
pub fn refused(error: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(*refused);
        }
        // io::Error's source() skips the error it wraps; look inside.
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(*inner);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_egress::AddressClass;

    fn connector(policy: EgressPolicy) -> GuardedConnector {
        GuardedConnector::new(policy, |_| {})
    }

    async fn connect(connector: &mut GuardedConnector, url: &str) -> Result<(), Option<Refused>> {
        let uri: Uri = url.parse().unwrap();
        match connector.call(uri).await {
            Ok(_) => Ok(()),
            Err(error) => Err(refused(error.as_ref())),
        }
    }

    #[tokio::test]
    async fn literal_and_resolved_loopback_are_refused_before_connecting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut strict = connector(EgressPolicy::strict());
        let loopback = Some(Refused {
            class: AddressClass::Loopback,
        });
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://0x7f.1:{port}/"),
            format!("http://2130706433:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            assert_eq!(connect(&mut strict, &url).await, Err(loopback), "{url}");
        }
        // Nothing reached the listener.
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(50), listener.accept()).await;
        assert!(accepted.is_err(), "a refused address was connected to");
    }

    #[tokio::test]
    async fn every_special_class_is_refused_before_any_packet_is_sent() {
        // Literals are judged before connecting, so no traffic leaves.
        let mut strict = connector(EgressPolicy::strict());
        for url in [
            "http://10.0.0.1/",
            "http://172.16.0.1/",
            "http://192.168.0.1/",
            "http://169.254.169.254/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://240.0.0.1/",
            "http://192.0.2.1/",
            "http://[::]/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a00:1]/",
        ] {
            let refused = connect(&mut strict, url).await;
            assert!(matches!(refused, Err(Some(_))), "{url}: {refused:?}");
        }
    }

    #[tokio::test]
    async fn an_allowed_address_connects_and_its_neighbours_do_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = listener.local_addr().unwrap();
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed = other.local_addr().unwrap();
        let mut guarded = connector(EgressPolicy::strict().allowing(open));
        assert_eq!(
            connect(&mut guarded, &format!("http://{open}/")).await,
            Ok(())
        );
        assert_eq!(
            connect(&mut guarded, &format!("http://localhost:{}/", open.port())).await,
            Ok(())
        );
        let refused = connect(&mut guarded, &format!("http://{closed}/")).await;
        assert!(matches!(refused, Err(Some(_))), "{refused:?}");
        // A name resolving to the allowed IP but another port is refused
        // once connected.
        let refused = connect(
            &mut guarded,
            &format!("http://localhost:{}/", closed.port()),
        )
        .await;
        assert!(matches!(refused, Err(Some(_))), "{refused:?}");
    }
}
