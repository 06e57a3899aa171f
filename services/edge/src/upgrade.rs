//! WebSocket and other HTTP/1.1 upgrades: authenticated and admitted at
//! the handshake like any request; once the upstream answers 101 the edge
//! splices the two connections and counts the bytes both ways, and the
//! exchange is accounted (one usage event) when the tunnel closes.

use http::header::{self, HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::account::{Accounting, Ended, Exchange};
use crate::body::Seen;

/// The protocol a request asks to upgrade to (`Upgrade` with `Connection:
/// upgrade`), if any.
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    wants
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts back the two headers hop-by-hop hygiene removed.
pub fn restore(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Splices client and upstream once both sides have upgraded, then
/// accounts the exchange with the bytes each way.
pub fn splice(
    client: OnUpgrade,
    upstream: OnUpgrade,
    accounting: Accounting,
    exchange: Exchange,
    in_flight: impl Send + 'static,
) {
    tokio::spawn(async move {
        let _in_flight = in_flight;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "upgrade did not complete");
                let ended = Ended {
                    status: 101,
                    error: Some("the upgrade did not complete".to_owned()),
                    attempts: 1,
                    ..Ended::default()
                };
                accounting.finish(exchange, ended);
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let copied = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        let (up, down) = copied.unwrap_or((0, 0));
        let ended = Ended {
            status: 101,
            request: Seen {
                bytes: up,
                complete: true,
                ..Seen::default()
            },
            response: Seen {
                bytes: down,
                complete: true,
                ..Seen::default()
            },
            attempts: 1,
            ..Ended::default()
        };
        accounting.finish(exchange, ended);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upgrade_needs_both_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert_eq!(requested(&headers), None);
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(requested(&headers).unwrap(), "websocket");
        let mut restored = HeaderMap::new();
        restore(&mut restored, HeaderValue::from_static("websocket"));
        assert_eq!(restored["connection"], "upgrade");
        assert_eq!(restored["upgrade"], "websocket");
    }
}
