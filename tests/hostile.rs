//! Hostile HTTP against the running edge, on raw sockets: request
//! smuggling with both Content-Length and Transfer-Encoding, conflicting
//! lengths, bad chunk sizes, obs-fold, NUL and bare CR in headers, a space
//! before the colon, huge header counts and request lines, slowloris, a
//! pipelining flood and an HTTP/2 rapid reset. Each gets the status RFC
//! 9112 asks for and the connection closed where it says so; nothing
//! panics, memory stays bounded, and the edge serves normally afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod edge_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway_e2e::{Backend, TestSuite};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// What came back on one connection: each response's status, and whether
/// the edge closed the connection (rather than the read timing out).
#[derive(Debug)]
struct Exchange {
    statuses: Vec<u16>,
    closed: bool,
}

/// Writes `request`, then reads until the edge closes or `quiet` passes
/// without a byte.
async fn exchange(edge: SocketAddr, request: &[u8], quiet: Duration) -> Exchange {
    let mut stream = TcpStream::connect(edge).await.unwrap();
    // A reset while writing is the edge refusing early: read what it said.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    let closed = loop {
        match tokio::time::timeout(quiet, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => break true,
            Ok(Ok(read)) => answer.extend_from_slice(&buffer[..read]),
            Err(_) => break false,
        }
    };
    Exchange {
        statuses: statuses(&answer),
        closed,
    }
}

/// The status of every response head in `answer`.
fn statuses(answer: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(answer);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// `(name, request, statuses allowed for the first answer)`: every case
/// must also close the connection and answer nothing more.
fn refused_cases(key: &str) -> Vec<(&'static str, Vec<u8>, &'static [u16])> {
    let head = |extra: &str| {
        format!("POST /acme/echo/ HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\n{extra}")
    };
    let smuggled =
        format!("GET /acme/echo/smuggled HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\n\r\n");
    let many: String = (0..5_000)
        .map(|index| format!("X-H{index}: v\r\n"))
        .collect();
    let cases: Vec<(&str, String, &[u16])> = vec![
        (
            // RFC 9112 6.3: reject, or let chunked win and close after
            // answering; hyper does the latter, so nothing is smuggled.
            "Content-Length with Transfer-Encoding",
            format!(
                "{}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400, 200],
        ),
        (
            "two different Content-Lengths",
            format!(
                "{}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "a Content-Length list",
            format!("{}Content-Length: 5, 6\r\n\r\nhello!{smuggled}", head("")),
            &[400],
        ),
        (
            "a chunk size that is not hex",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "a chunk size past 64 bits",
            format!(
                "{}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\nhello\r\n0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "chunked not the final transfer coding",
            format!(
                "{}Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400, 501],
        ),
        (
            "obs-fold",
            format!(
                "{}X-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "NUL in a header value",
            format!(
                "{}X-Nul: a\0b\r\nContent-Length: 0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "a bare CR in a header value",
            format!(
                "{}X-Cr: a\rb\r\nContent-Length: 0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "whitespace before the colon",
            format!(
                "{}X-Space : a\r\nContent-Length: 0\r\n\r\n{smuggled}",
                head("")
            ),
            &[400],
        ),
        (
            "5,000 headers",
            format!("{}{many}Content-Length: 0\r\n\r\n{smuggled}", head("")),
            &[431, 400],
        ),
        (
            "a 100 KiB request line",
            format!(
                "GET /acme/echo/{} HTTP/1.1\r\nHost: edge\r\n\r\n{smuggled}",
                "a".repeat(100 * 1024)
            ),
            &[414, 431, 400],
        ),
    ];
    cases
        .into_iter()
        .map(|(name, request, allowed)| (name, request.into_bytes(), allowed))
        .collect()
}

async fn assert_refused_and_closed(edge: SocketAddr, key: &str) {
    let mut wrong = Vec::new();
    for (name, request, allowed) in refused_cases(key) {
        let answer = exchange(edge, &request, Duration::from_secs(3)).await;
        let status = answer.statuses.first().copied();
        let right = answer.statuses.len() <= 1
            && answer.closed
            && status.is_some_and(|status| allowed.contains(&status));
        if !right {
            wrong.push(format!(
                "{name}: expected one of {allowed:?} then close, got {answer:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A head sent a byte at a time, slower than the header timeout allows:
/// the edge closes the connection on its own.
async fn slowloris_is_cut_off(edge: SocketAddr, timeout: Duration) {
    let mut stream = TcpStream::connect(edge).await.unwrap();
    stream
        .write_all(b"GET /acme/echo/ HTTP/1.1\r\nHost: edge\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0; 1024];
    for byte in b"X-Slow: ".iter().cycle() {
        if stream.write_all(&[*byte]).await.is_err() {
            break;
        }
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer));
        if let Ok(Ok(0) | Err(_)) = read.await {
            break;
        }
        assert!(
            started.elapsed() < timeout * 5,
            "the slow head was never cut off"
        );
    }
    assert!(
        started.elapsed() >= timeout / 2,
        "cut off before the timeout"
    );
}

/// 500 requests in one write: 500 answers, in order, on one connection.
async fn a_pipelining_flood_is_answered_in_order(edge: SocketAddr, key: &str) {
    let one = format!("GET /acme/echo/flood HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\n\r\n");
    let mut flood = one.repeat(499);
    flood.push_str(&one.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n"));
    let answer = exchange(edge, flood.as_bytes(), Duration::from_secs(10)).await;
    assert_eq!(
        answer.statuses.len(),
        500,
        "{:?}",
        &answer.statuses[..5.min(answer.statuses.len())]
    );
    assert!(answer.statuses.iter().all(|status| *status == 200));
    assert!(answer.closed);
}

/// Streams opened and reset at once, over and over (CVE-2023-44487): the
/// edge ends the connection (GOAWAY) rather than working for ever, and
/// serves new connections.
async fn an_http2_rapid_reset_is_bounded(edge: SocketAddr, key: &str) -> usize {
    let stream = TcpStream::connect(edge).await.unwrap();
    let (client, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(connection);
    let mut sent = 0;
    let mut client = client;
    for _ in 0..20_000 {
        let Ok(ready) = client.ready().await else {
            break;
        };
        client = ready;
        let request = http::Request::get(format!("http://{edge}/acme/echo/reset"))
            .header("x-api-key", key)
            .body(())
            .unwrap();
        let Ok((response, send)) = client.send_request(request, true) else {
            break;
        };
        // Dropping both resets the stream (RST_STREAM CANCEL).
        drop((response, send));
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(ended.is_ok(), "the connection survived {sent} resets");
    sent
}

/// One plain request answers 200.
async fn served(edge: SocketAddr, key: &str) -> bool {
    let one = format!(
        "GET /acme/echo/ok HTTP/1.1\r\nHost: edge\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
    );
    exchange(edge, one.as_bytes(), Duration::from_secs(5))
        .await
        .statuses
        == [200]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_http_gets_the_rfc_answer_and_bounded_memory() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let header_timeout = Duration::from_secs(1);
    let suite = TestSuite::start_with(Backend::Sqlite, |config| {
        config.edge.header_read_timeout_ms = 1_000;
    })
    .await
    .unwrap();
    let tenant = suite.tenant("acme").await;
    let upstream = edge_support::start_upstream().await;
    edge_support::register_api(&suite, &tenant, upstream).await;
    let (_, key) = edge_support::create_key(&suite, &tenant, "hostile", "").await;
    let edge = suite.addresses.edge;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !served(edge, &key).await {
        assert!(Instant::now() < deadline, "the edge never served the API");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before = rss_kib();

    for _ in 0..3 {
        assert_refused_and_closed(edge, &key).await;
    }
    slowloris_is_cut_off(edge, header_timeout).await;
    a_pipelining_flood_is_answered_in_order(edge, &key).await;
    let resets = an_http2_rapid_reset_is_bounded(edge, &key).await;

    assert!(served(edge, &key).await, "the edge stopped serving");
    let grown_mib = rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 128,
        "memory grew {grown_mib} MiB ({resets} h2 resets)"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "something panicked");
    suite.stop().await.unwrap();
}
